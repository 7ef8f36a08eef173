"""Every loader rejects bad input with exit 2, a message naming file, line and field, and no write."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from conftest import ECHO_MODEL, write_project, write_suite

from harness.cli import main

GOOD = [{"id": "a", "input": {"doc": "x"}, "expected": "x"}, {"id": "b", "input": {"doc": "y"}, "expected": "y"}]


def _store_digest(root: Path) -> str | None:
    p = root / ".tollgate" / "tollgate.duckdb"
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


@pytest.fixture
def project(tmp_path, monkeypatch):
    (tmp_path / "mymodels.py").write_text("def echo(p):\n    return p.split()[-1]\n")
    write_project(tmp_path, ECHO_MODEL)
    write_suite(tmp_path, "good", GOOD, prompt="{{ doc }}")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "echo", "--no-progress"]) == 0
    return tmp_path


def expect_rejected(root: Path, capsys, args: list[str], *must_contain: str) -> str:
    """Run the command, require exit 2 and every fragment in stderr, and an untouched store."""
    before = _store_digest(root)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    for fragment in must_contain:
        assert fragment in err, f"{fragment!r} not in: {err}"
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, "the error must be one paragraph"
    assert _store_digest(root) == before, "a rejected command must not write to the store"
    return err


def bad_suite(root: Path, examples_text: str | bytes, yaml_text: str | None = None) -> Path:
    d = root / "suites" / "bad"
    d.mkdir(parents=True, exist_ok=True)
    (d / "suite.yaml").write_text(yaml_text or 'name: bad\nkind: edge\nprompt: "{{ doc }}"\n')
    data = d / "examples.jsonl"
    if isinstance(examples_text, bytes):
        data.write_bytes(examples_text)
    else:
        data.write_text(examples_text)
    return d


RUN = ["run", "--model", "echo", "--no-progress"]


def test_malformed_project_yaml_names_the_line(project, capsys):
    (project / "tollgate.yaml").write_text("models:\n  echo: [unclosed\n")
    expect_rejected(project, capsys, RUN, "tollgate.yaml, line", "not valid YAML")


def test_unknown_project_key_names_the_key_path_and_line(project, capsys):
    text = (project / "tollgate.yaml").read_text().replace("    adapter: python\n",
                                                           "    adapter: python\n    temprature: 0.5\n")
    (project / "tollgate.yaml").write_text(text)
    expect_rejected(project, capsys, RUN, "line 5", "models.echo.temprature", "unknown key")


def test_wrong_type_in_project_names_the_field(project, capsys):
    (project / "tollgate.yaml").write_text(ECHO_MODEL.join(["models:\n", "    generation: {max_new_tokens: lots}\n"])
                                           + "store: .tollgate/tollgate.duckdb\n")
    expect_rejected(project, capsys, RUN, "models.echo.generation.max_new_tokens", "integer")


def test_unknown_adapter_suggests_the_close_name(project, capsys):
    text = (project / "tollgate.yaml").read_text().replace("adapter: python", "adapter: pyhton")
    (project / "tollgate.yaml").write_text(text)
    expect_rejected(project, capsys, RUN, "unknown adapter 'pyhton'", "Did you mean 'python'", "line 4")


def test_unknown_model_lists_the_known_ones(project, capsys):
    expect_rejected(project, capsys, ["run", "--model", "gpt-9", "--no-progress"], "unknown model 'gpt-9'", "echo")


def test_unknown_suite_is_rejected(project, capsys):
    expect_rejected(project, capsys, [*RUN, "--suite", "nope"], "unknown suite 'nope'", "good")


def test_malformed_suite_yaml(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n", yaml_text="kind: edge\nprompt: [\n")
    expect_rejected(project, capsys, RUN, "suite.yaml, line", "not valid YAML")


def test_unknown_check_names_file_line_and_field(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n",
              yaml_text='kind: edge\nprompt: "{{ doc }}"\nchecks:\n  - exact_match\n  - json_feilds\n')
    expect_rejected(project, capsys, RUN, "suite.yaml, line 5", "checks[1]", "unknown check 'json_feilds'",
                    "json_fields")


def test_unknown_check_option_is_rejected(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n",
              yaml_text='kind: edge\nprompt: "{{ doc }}"\nchecks:\n  - exact_match: {normalise: true}\n')
    expect_rejected(project, capsys, RUN, "line 4", "no option 'normalise'")


def test_missing_template_variable_names_the_example_line(project, capsys):
    rows = [GOOD[0], {"id": "c", "input": {"text": "z"}, "expected": "z"}]
    bad_suite(project, "".join(json.dumps(r) + "\n" for r in rows))
    expect_rejected(project, capsys, RUN, "examples.jsonl, line 2", "input.doc", "{{ doc }}")


def test_duplicate_ids_name_both_lines(project, capsys):
    rows = [GOOD[0], GOOD[1], {**GOOD[1], "expected": "other"}]
    bad_suite(project, "".join(json.dumps(r) + "\n" for r in rows))
    expect_rejected(project, capsys, RUN, "examples.jsonl, line 3", "field 'id'", "duplicate id 'b'", "lines 2, 3")


def test_non_utf8_bytes_name_the_line(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]).encode() + b"\n" + b'{"id": "q", "input": {"doc": "caf\xe9"}, '
              b'"expected": "x"}\n')
    expect_rejected(project, capsys, RUN, "examples.jsonl, line 2", "not valid UTF-8", "0xe9")


def test_empty_suite_is_rejected(project, capsys):
    bad_suite(project, "\n\n")
    expect_rejected(project, capsys, RUN, "examples.jsonl", "no examples")


def test_huge_line_is_rejected_without_reading_it_all(project, capsys):
    big = json.dumps({"id": "big", "input": {"doc": "x" * (10 * 1024 * 1024)}, "expected": "x"})
    bad_suite(project, json.dumps(GOOD[0]) + "\n" + big + "\n")
    expect_rejected(project, capsys, RUN, "examples.jsonl, line 2", "longer than 1,048,576 bytes")


def test_unknown_column_is_rejected(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n" + json.dumps({**GOOD[1], "expceted": "y"}) + "\n")
    expect_rejected(project, capsys, RUN, "line 2", "field 'expceted'", "unknown field")


def test_missing_expected_hints_at_the_typo(project, capsys):
    row = {"id": "q", "input": {"doc": "x"}, "expceted": "x"}
    bad_suite(project, json.dumps(row) + "\n")
    expect_rejected(project, capsys, RUN, "line 1", "field 'expected'", "missing", "'expceted'")


def test_invalid_json_line_names_line_and_column(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + '\n{"id": "q", "input": }\n')
    expect_rejected(project, capsys, RUN, "examples.jsonl, line 2", "not valid JSON", "column")


def test_wrong_input_type_is_rejected(project, capsys):
    bad_suite(project, json.dumps({"id": "q", "input": 42, "expected": "x"}) + "\n",
              yaml_text="kind: edge\n")
    expect_rejected(project, capsys, RUN, "line 1", "field 'input'", "non-empty text")


def test_choice_expected_outside_the_options(project, capsys):
    yaml_text = 'kind: edge\ntask: choice\nchoices: ["yes", "no"]\n'
    bad_suite(project, json.dumps({"id": "q", "input": "Is it?", "expected": "maybe"}) + "\n", yaml_text)
    expect_rejected(project, capsys, RUN, "line 1", "field 'expected'", "one of the options")


def test_choice_task_on_a_python_model_without_a_loglikelihood_callable(project, capsys):
    yaml_text = 'kind: edge\ntask: choice\nchoices: ["yes", "no"]\n'
    bad_suite(project, json.dumps({"id": "q", "input": "Is it?", "expected": "no"}) + "\n", yaml_text)
    expect_rejected(project, capsys, [*RUN, "--suite", "bad"], "choice task", "does not provide it")


def test_choice_task_on_a_model_without_loglikelihood(project, capsys):
    yaml_text = 'kind: edge\ntask: choice\nchoices: ["yes", "no"]\n'
    bad_suite(project, json.dumps({"id": "q", "input": "Is it?", "expected": "no"}) + "\n", yaml_text)
    (project / "tollgate.yaml").write_text((project / "tollgate.yaml").read_text().replace(
        'options: {callable: "mymodels:echo"}', 'url: http://127.0.0.1:9/v1\n    adapter: openai\n'
        '    options: {model: m}').replace("    adapter: python\n", ""))
    expect_rejected(project, capsys, [*RUN[:2], "echo", "--suite", "bad", "--no-progress"],
                    "choice task", "loglikelihood", "does not provide it")


def test_validate_exits_zero_on_a_good_project_and_two_on_a_bad_one(project, capsys):
    assert main(["validate"]) == 0
    assert "1 suite(s), 2 example(s)" in capsys.readouterr().out
    bad_suite(project, "")
    assert main(["validate"]) == 2


def test_missing_model_path_is_reported(project, capsys):
    (project / "tollgate.yaml").write_text(
        "models:\n  m:\n    adapter: hf-causal\n    path: models/nowhere\n")
    expect_rejected(project, capsys, ["validate"], "tollgate.yaml, line 4", "models.m.path", "does not exist")


def test_no_project_file_says_how_to_create_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["validate"]) == 2
    assert "tollgate init" in capsys.readouterr().err


def test_a_template_that_fails_on_one_example_is_caught_before_the_run(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n", yaml_text='kind: edge\nprompt: "{{ doc.title.upper() }}"\n')
    expect_rejected(project, capsys, ["validate"], "examples.jsonl, line 1", "field 'prompt'", "UndefinedError")


def test_a_sandboxed_template_cannot_reach_python_internals(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n",
              yaml_text='kind: edge\nprompt: "{{ doc.__class__.__mro__ }}"\n')
    expect_rejected(project, capsys, RUN, "field 'prompt'", "SecurityError")


def test_a_check_on_the_wrong_task_is_refused_at_load(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n", yaml_text='kind: edge\nprompt: "{{ doc }}"\n'
                                                             "checks: [choice_accuracy]\n")
    expect_rejected(project, capsys, ["validate"], "line 3", "choice_accuracy", "not 'generate'")


def test_a_check_option_of_the_wrong_type_is_refused(project, capsys):
    bad_suite(project, json.dumps(GOOD[0]) + "\n", yaml_text='kind: edge\nprompt: "{{ doc }}"\n'
                                                             "checks:\n  - json_fields: {fields: claimant_name}\n")
    expect_rejected(project, capsys, ["validate"], "line 4", "option 'fields'", "valid list")


def test_a_repeated_yaml_key_is_an_error_not_a_silent_override(project, capsys):
    text = (project / "tollgate.yaml").read_text()
    (project / "tollgate.yaml").write_text(text.replace("suites:\n", "models:\n  other: {adapter: python}\nsuites:\n"))
    expect_rejected(project, capsys, ["validate"], "key 'models' appears twice", "first on line 2")


def test_commit_every_below_one_is_a_usage_error(project, capsys):
    expect_rejected(project, capsys, [*RUN, "--commit-every", "0"], "--commit-every", "at least 1")


def test_examples_with_and_without_tags_in_one_file_are_fine(project, capsys):
    rows = [GOOD[0], {**GOOD[1], "tags": ["x"]}]
    bad_suite(project, "".join(json.dumps(r) + "\n" for r in rows))
    assert main(["validate"]) == 0


def test_init_never_overwrites_existing_files_without_force(tmp_path, capsys):
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "rules.py").write_text("# my own model\n")
    assert main(["init", str(tmp_path)]) == 2
    assert "rules.py" in capsys.readouterr().err
    assert (tmp_path / "models" / "rules.py").read_text() == "# my own model\n"
    assert not (tmp_path / "tollgate.yaml").exists()
