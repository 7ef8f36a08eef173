"""lm-eval as a suite: real lm-eval runs on a tiny model, the export round trip, offline errors."""

from __future__ import annotations

import json
import sys

import duckdb
import pytest
from conftest import write_project, write_suite

from harness.cli import main

WORDS = ["claim", "policy", "damage", "injury", "report", "vehicle", "doctor", "estimate"]


@pytest.fixture
def project(tmp_path, tiny_causal_dir, monkeypatch):
    write_project(tmp_path, f"""\
  tiny:
    adapter: hf-causal
    path: {tiny_causal_dir}
    role: base
    options: {{batch_size: 8}}
  rules:
    adapter: python
    options: {{callable: "os:getcwd"}}
""")
    rows = [{"id": f"q{i:02d}", "input": {"text": f"The {WORDS[i % 8]} was filed on day {i}. It is a",
                                          "options": [WORDS[(i + k) % 8] for k in range(4)]},
             "expected": i % 4} for i in range(40)]
    write_suite(tmp_path, "mc", rows, kind="general", task="choice", prompt="{{ text }}",
                extra="choices_field: options\nchecks: [choice_accuracy, {choice_accuracy: {normalize: length}}]\n")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def lm_suite(root, tasks: str = "[mc]", include: str = "exported", name: str = "mc-lm") -> None:
    d = root / "suites" / name
    d.mkdir(parents=True)
    (d / "suite.yaml").write_text(f"kind: general\nlm_eval:\n  tasks: {tasks}\n  include_path: ../../{include}\n")


def per_example(root, suite: str, metric: str) -> dict[str, float]:
    con = duckdb.connect(str(root / ".tollgate" / "tollgate.duckdb"), read_only=True)
    rows = con.execute("""SELECT s.example_id, s.value FROM scores s JOIN runs r USING (run_id)
                          WHERE r.suite = ? AND s.metric = ? AND r.status = 'completed'""", [suite, metric]).fetchall()
    con.close()
    return dict(rows)


def test_a_suite_scores_the_same_in_tollgate_and_in_lm_eval(project, tiny_causal_dir, capsys):
    assert main(["run", "--model", "tiny", "--suite", "mc", "--no-progress"]) == 0
    assert main(["export-lm-eval", "mc", "exported"]) == 0
    lm_suite(project)
    assert main(["run", "--model", "tiny", "--suite", "mc-lm", "--no-progress"]) == 0
    native = per_example(project, "mc", "choice_accuracy")
    native_norm = per_example(project, "mc", "choice_accuracy#2")
    bridged = {k.split("/")[1]: v for k, v in per_example(project, "mc-lm", "acc").items()}
    bridged_norm = {k.split("/")[1]: v for k, v in per_example(project, "mc-lm", "acc_norm").items()}
    assert len(native) == len(bridged) == 40
    # lm-eval numbers its documents; the exported file keeps Tollgate's order
    assert [native[f"q{i:02d}"] for i in range(40)] == [bridged[str(i)] for i in range(40)]
    assert [native_norm[f"q{i:02d}"] for i in range(40)] == [bridged_norm[str(i)] for i in range(40)]
    # and lm-eval run directly, outside Tollgate, on the same folder and model directory
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    monkey_cwd = project / "exported" / "mc"
    import os

    os.chdir(monkey_cwd)
    res = simple_evaluate(model="hf", model_args={"pretrained": str(tiny_causal_dir), "device": "cpu"},
                          tasks=["mc"], task_manager=TaskManager(include_path=str(project / "exported")),
                          bootstrap_iters=0)
    os.chdir(project)
    direct = res["results"]["mc"]["acc,none"]
    assert abs(direct - sum(native.values()) / 40) < 1e-9
    assert abs(res["results"]["mc"]["acc_norm,none"] - sum(native_norm.values()) / 40) < 1e-9


def test_lm_eval_runs_are_stored_per_example_with_their_config_and_cached(project, capsys):
    assert main(["export-lm-eval", "mc", "exported"]) == 0
    lm_suite(project)
    capsys.readouterr()
    assert main(["run", "--model", "tiny", "--suite", "mc-lm", "--no-progress", "--format", "json"]) == 0
    rows = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["acc"]["n"] == 40 and rows["acc"]["stage"] == "pre-finetune"
    con = duckdb.connect(str(project / ".tollgate" / "tollgate.duckdb"), read_only=True)
    config = json.loads(con.execute("SELECT config FROM runs WHERE suite = 'mc-lm'").fetchone()[0])
    con.close()
    assert config["lm_eval"]["version"].startswith("0.") and "mc" in config["lm_eval"]["tasks"]
    assert main(["run", "--model", "tiny", "--suite", "mc-lm", "--no-progress", "--format", "json"]) == 0
    again = {r["metric"]: r for r in json.loads(capsys.readouterr().out)}
    assert again["acc"]["cached"] == 40 and again["acc"]["value"] == rows["acc"]["value"]


def test_baseline_runs_the_general_suites_and_results_filter_by_stage(project, capsys):
    assert main(["baseline", "--model", "tiny", "--tasks", "general", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["results", "--stage", "pre-finetune", "--format", "json"]) == 0
    assert {r["suite"] for r in json.loads(capsys.readouterr().out)} == {"mc"}
    assert main(["results", "--stage", "post-finetune", "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out) == []


def test_a_task_that_needs_a_download_is_refused_offline(project, capsys):
    task = project / "tasks" / "hub"
    task.mkdir(parents=True)
    (task / "hub.yaml").write_text("task: hub\ndataset_path: hellaswag\noutput_type: multiple_choice\n")
    lm_suite(project, "[hub]", "tasks", "hubby")
    capsys.readouterr()
    assert main(["validate"]) == 2
    err = capsys.readouterr().err
    assert "hub.yaml" in err and "field 'dataset_path'" in err and "cannot be downloaded" in err


def test_an_unknown_task_and_a_missing_data_file_are_named(project, capsys):
    lm_suite(project, "[nope]", "tasks", "a")
    (project / "tasks").mkdir()
    assert main(["validate"]) == 2
    assert "no lm-eval task 'nope'" in capsys.readouterr().err
    (project / "suites" / "a" / "suite.yaml").write_text("kind: general\nlm_eval: {tasks: [t], include_path: "
                                                         "../../tasks}\n")
    (project / "tasks" / "t.yaml").write_text("task: t\ndataset_path: json\ndataset_kwargs: {data_files: "
                                              "{test: gone.jsonl}}\n")
    assert main(["validate"]) == 2
    assert "gone.jsonl" in capsys.readouterr().err


def test_lm_eval_missing_or_on_a_python_model_is_a_clear_error(project, capsys, monkeypatch):
    assert main(["export-lm-eval", "mc", "exported"]) == 0
    lm_suite(project)
    capsys.readouterr()
    assert main(["run", "--model", "rules", "--suite", "mc-lm", "--no-progress"]) == 2
    assert "need an hf-causal or openai model" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "lm_eval", None)
    assert main(["run", "--model", "tiny", "--suite", "mc-lm", "--no-progress"]) == 2
    assert "lm-eval is not installed" in capsys.readouterr().err
