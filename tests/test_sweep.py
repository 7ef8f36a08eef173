"""Optuna studies judged by Tollgate: a real study with a real pruner over the demo's shipped
checkpoints (the training function is fake-fast: it returns a prepared checkpoint chosen by the
learning rate), the books in the store, ``tollgate sweep report|select``, and the mistakes a user
makes (a held-out suite as the objective, an unknown study, a training function that raises)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import optuna
import pytest
from conftest import run_cli

from harness import store as st
from harness import sweep_books as books
from harness.errors import TollgateInputError
from harness.sweep import TollgateObjective, trial_model_name

optuna.logging.set_verbosity(optuna.logging.ERROR)
N_VALIDATION = 24


@pytest.fixture(scope="module")
def demo_project(tmp_path_factory) -> Path:
    """A small claims project (24 validation, 16 held-out examples) with the four shipped checkpoints."""
    from demo.data import generate
    from demo.stages import WEIGHTS, write_data, write_project

    root = tmp_path_factory.mktemp("sweep") / "proj"
    root.mkdir()
    data = generate(seed=7, n_train=200, n_validation=N_VALIDATION, n_heldout=16, n_train_sample=16,
                    edge_per_kind=1)
    write_data(root, data)
    write_project(root)
    for name in ("base", "production", "candidate", "small"):
        shutil.copytree(WEIGHTS / name, root / "models" / name)
    return root


@pytest.fixture
def project(demo_project: Path, tmp_path: Path) -> Path:
    """A fresh copy (its own store) per test; the models folder is shared, not copied."""
    root = tmp_path / "proj"
    shutil.copytree(demo_project, root, ignore=shutil.ignore_patterns(".tollgate", "models"))
    (root / "models").symlink_to(demo_project / "models")
    return root


def by_lr(root: Path):
    """Fake-fast training: a low learning rate 'converges' (the candidate), a middling one is half
    trained (production's early checkpoint), a high one diverges (the base model, no extraction)."""
    def train(params: dict) -> Path:
        lr = params["lr"]
        name = "candidate" if lr < 3e-3 else "production" if lr < 2e-2 else "base"
        return root / "models" / name
    return train


SPACE = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True),
         "batch_size": optuna.distributions.CategoricalDistribution([16, 32])}


def run_study(root: Path, name: str, n_trials: int, train=None, **kw) -> optuna.Study:
    objective = TollgateObjective(project=root, suite="validation", metric=kw.pop("metric", "pass"),
                                  train=train or by_lr(root), space=SPACE, **kw)
    study = optuna.create_study(direction="maximize", study_name=name,
                                sampler=optuna.samplers.TPESampler(seed=3, n_startup_trials=4),
                                pruner=optuna.pruners.SuccessiveHalvingPruner(min_resource=6, reduction_factor=2))
    study.optimize(objective, n_trials=n_trials)
    return study


def stored(root: Path, name: str) -> list[dict]:
    with st.Store(root / ".tollgate" / "tollgate.duckdb").read() as con:
        return books.trials(con, name)


def test_a_study_is_judged_pruned_and_recorded(project: Path) -> None:
    study = run_study(project, "lr-bs", 8)
    rows = {r["trial"]: r for r in stored(project, "lr-bs")}
    assert sorted(rows) == [t.number for t in study.trials]
    pruned = [t for t in study.trials if t.state == optuna.trial.TrialState.PRUNED]
    assert pruned, "the pruner stopped no trial: the intermediate values are not reaching Optuna"
    store = st.Store(project / ".tollgate" / "tollgate.duckdb")
    with store.read() as con:
        for t in study.trials:
            row = rows[t.number]
            assert row["state"] == t.state.name
            assert row["params"] == t.params
            assert row["model"] == trial_model_name("lr-bs", t.number)
            # every reported intermediate value is the metric of exactly the examples scored so far
            assert {s["n"]: s["value"] for s in row["intermediate"]}.items() >= t.intermediate_values.items()
            for s in row["intermediate"]:
                values = st.example_values(con, s["run_id"], "pass", errors_count=True)
                assert len(values) == s["n"]
                assert sum(values.values()) / s["n"] == pytest.approx(s["value"])
            runs = con.execute("SELECT n_examples, n_done, n_cached FROM runs WHERE model = ? ORDER BY started_at",
                               [row["model"]]).fetchall()
            computed = sum(done - cached for _, done, cached in runs)  # 0 for a checkpoint an earlier trial scored
            assert computed <= max(s["n"] for s in row["intermediate"]), "a slice recomputed cached answers"
            if t.number == 0:
                assert computed == max(s["n"] for s in row["intermediate"])
            if t.state == optuna.trial.TrialState.COMPLETE:
                assert row["value"] == pytest.approx(t.value)
                assert row["n"] == N_VALIDATION and row["low"] <= row["value"] <= row["high"]
            else:
                assert max(s["n"] for s in row["intermediate"]) < N_VALIDATION
    # the candidate's checkpoint is the best: the study found it
    best = books.best_trial(list(rows.values()), "maximize")
    assert best["trial"] == study.best_trial.number and best["params"]["lr"] < 3e-3


def test_a_failing_training_function_fails_its_trial_and_the_study_goes_on(project: Path) -> None:
    calls = []

    def flaky(params: dict) -> Path:
        calls.append(params)
        if len(calls) == 2:
            raise RuntimeError("CUDA out of memory (simulated)")
        return project / "models" / "candidate"

    study = run_study(project, "flaky", 3, train=flaky)
    states = [t.state.name for t in study.trials]
    assert states[1] == "FAIL" and states.count("FAIL") == 1 and len(states) == 3
    rows = stored(project, "flaky")
    assert rows[1]["state"] == "FAIL" and "CUDA out of memory" in rows[1]["error"]
    assert rows[2]["state"] in ("COMPLETE", "PRUNED")


def test_a_checkpoint_that_is_not_a_folder_fails_its_trial(project: Path) -> None:
    study = run_study(project, "nowhere", 1, train=lambda p: project / "no-such-checkpoint")
    assert study.trials[0].state.name == "FAIL"
    assert "not a checkpoint folder" in stored(project, "nowhere")[0]["error"]


def test_objective_mistakes_are_said_before_any_training(project: Path) -> None:
    train = by_lr(project)
    with pytest.raises(TollgateInputError, match=r"kind 'heldout'.*validation") as exc:
        TollgateObjective(project=project, suite="heldout", train=train)
    assert "winner's curse" in str(exc.value)
    with pytest.raises(TollgateInputError, match="unknown suite 'nope'"):
        TollgateObjective(project=project, suite="nope", train=train)
    with pytest.raises(TollgateInputError, match="unknown model 'ghost'"):
        TollgateObjective(project=project, train=train, model="ghost")
    with pytest.raises(TollgateInputError, match="slices"):
        TollgateObjective(project=project, train=train, slices=(0.5, 0.25))


def test_an_unknown_metric_stops_the_study(project: Path) -> None:
    with pytest.raises(TollgateInputError, match=r"no metric 'f2'.*pass"):
        run_study(project, "typo", 3, metric="f2")
    assert [r["state"] for r in stored(project, "typo")] == ["FAIL"]


def test_a_new_study_under_an_old_name_is_refused(project: Path) -> None:
    run_study(project, "again", 1)
    with pytest.raises(TollgateInputError, match="already has a trial 0"):
        run_study(project, "again", 1)


def test_sweep_report_and_select_on_the_held_out_suites(project: Path) -> None:
    study = run_study(project, "claims-lr-bs", 6)
    rep = run_cli("sweep", "report", "claims-lr-bs", cwd=project)
    assert rep.returncode == 0, rep.stderr
    for t in study.trials:
        assert t.state.name.lower() in rep.stdout
    assert "*best" in rep.stdout and "optimistic" in rep.stdout
    listed = run_cli("sweep", "list", "--format", "json", cwd=project)
    (row,) = json.loads(listed.stdout)
    assert row["study"] == "claims-lr-bs" and row["trials"] == 6

    sel = run_cli("sweep", "select", "claims-lr-bs", "--as", "swept", "--no-progress", cwd=project)
    assert sel.returncode == 0, sel.stderr
    assert "winner's curse" in sel.stdout and "held-out 'heldout'" in sel.stdout
    reg = project / ".tollgate" / "models" / "swept.yaml"
    assert reg.is_file()
    with st.Store(project / ".tollgate" / "tollgate.duckdb").read() as con:
        runs = con.execute("SELECT suite, suite_kind FROM runs WHERE model = 'swept'").fetchall()
    assert runs and {k for _, k in runs} == {"heldout"}, "select ran the chosen model on something else"
    # the registered model is a model like any other
    res = run_cli("results", "--model", "swept", "--format", "json", cwd=project)
    assert res.returncode == 0 and {r["suite"] for r in json.loads(res.stdout)} == {"heldout"}
    rep = run_cli("sweep", "report", "claims-lr-bs", "--format", "json", cwd=project)
    (chosen,) = json.loads(rep.stdout)["selected"]
    assert chosen["model"] == "swept" and chosen["trial"] == study.best_trial.number and chosen["heldout"]


def test_sweep_command_mistakes_exit_2(project: Path) -> None:
    run_study(project, "s", 2)
    res = run_cli("sweep", "report", "nope", cwd=project)
    assert res.returncode == 2 and "no study named 'nope'" in res.stderr and "s" in res.stderr
    res = run_cli("sweep", "select", "s", "--as", "production", "--no-run", cwd=project)
    assert res.returncode == 2 and "defined in tollgate.yaml" in res.stderr
    res = run_cli("sweep", "select", "s", "--as", "x", "--trial", "99", "--no-run", cwd=project)
    assert res.returncode == 2 and "no completed trial 99" in res.stderr
    res = run_cli("sweep", "select", "s", "--as", "../evil", "--no-run", cwd=project)
    assert res.returncode == 2 and "--as" in res.stderr
    assert not (project / ".tollgate" / "models").exists() or not list((project / ".tollgate" / "models").iterdir())


def test_a_broken_registration_file_names_itself(project: Path) -> None:
    models = project / ".tollgate" / "models"
    models.mkdir(parents=True)
    (models / "hand-edited.yaml").write_text("model:\n  adapter: hf-causal\n  colour: blue\n")
    res = run_cli("validate", cwd=project)
    assert res.returncode == 2
    assert "hand-edited.yaml" in res.stderr and "line 3" in res.stderr and "colour" in res.stderr


def test_the_dashboard_shows_the_study(project: Path, monkeypatch) -> None:
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    study = run_study(project, "dash", 5)
    sel = run_cli("sweep", "select", "dash", "--as", "picked", "--no-progress", cwd=project)
    assert sel.returncode == 0, sel.stderr
    monkeypatch.setenv("TOLLGATE_PROJECT", str(project / "tollgate.yaml"))
    st.cache_data.clear()
    at = AppTest.from_function(_sweeps_page, default_timeout=120).run()
    assert not at.exception, at.exception
    text = "\n".join(str(e.value) for kind in ("markdown", "caption", "info") for e in getattr(at, kind))
    assert "model **picked**" in text and "optimistic" in text
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Trials"] == "5"
    assert metrics["Pruned"] == str(sum(t.state.name == "PRUNED" for t in study.trials))
    (table,) = at.dataframe
    assert list(table.value["trial"]) == [t.number for t in study.trials]


def _sweeps_page() -> None:
    from dashboard.shell import main

    main("sweeps")


def test_the_sweeps_guide_runs_as_it_says(demo_project: Path, tmp_path: Path, monkeypatch) -> None:
    """docs/sweeps.md on the small claims project, with 4 training steps a trial instead of 240."""
    from guides import run_guide, steps

    guide = Path(__file__).resolve().parents[1] / "docs" / "sweeps.md"
    assert sum(k == "run" for k, _, _ in steps(guide.read_text(encoding="utf-8"))) >= 8
    monkeypatch.setenv("SWEEP_STEPS", "4")
    monkeypatch.setenv("SWEEP_TRIALS", "4")
    work = tmp_path / "guide"
    out = dict(run_guide(guide, demo_project, work))
    report = out["tollgate sweep report claims-lr-bs"].stdout
    assert report.count("complete") + report.count("pruned") + report.count("fail") >= 4
    assert "winner's curse" in out["tollgate sweep select claims-lr-bs --as swept"].stdout
    repeated = out["tollgate run --model swept --suite heldout --repeats 5 --temperature 0.7 --no-progress"].stdout
    assert "pass@5" in repeated and "flaky" in repeated
    frontier = out["tollgate compare --cost swept production small"].stdout
    assert all(m in frontier for m in ("swept", "production", "small"))
