"""Suite lint finds the data problems it names, and --fix only ever removes exact duplicates."""

from __future__ import annotations

import json

from conftest import ECHO_MODEL, write_project, write_suite

from harness.cli import main
from harness.lint import lint_file


def ex(i, doc, exp, tags=("t",)):
    return {"id": f"e{i}", "input": {"doc": doc}, "expected": exp, "tags": list(tags)}


def test_lint_finds_duplicates_conflicts_near_duplicates_missing_and_empty_fields(tmp_path):
    long = "the claimant reported a broken arm after the accident on the ring road near the hospital yesterday"
    rows = [ex(0, "Anna Berg crashed.", {"name": "Anna", "injury": "arm"}),
            ex(1, "anna berg crashed", {"name": "Anna", "injury": "arm"}),          # duplicate after normalising
            ex(2, "Bob Lee crashed.", {"name": "Bob", "injury": "leg"}),
            ex(3, "Bob Lee crashed.", {"name": "Bob", "injury": "neck"}),          # conflicting label
            ex(4, long, {"name": "C", "injury": "arm"}),
            ex(5, long + " evening", {"name": "C", "injury": "arm"}),              # near duplicate
            ex(6, "Dan Moe crashed.", {"name": "Dan"}),                            # missing 'injury'
            ex(7, "   ", {"name": "E", "injury": "x"}, tags=()),                   # empty input, untagged
            ]
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = {(f.check, tuple(f.lines)) for f in lint_file(path)}
    assert ("duplicate", (1, 2)) in found
    assert ("label-conflict", (3, 4)) in found
    assert ("near-duplicate", (5, 6)) in found
    assert ("missing-field", (7,)) in found
    assert ("empty-field", (8,)) in found and ("untagged", (8,)) in found


def test_lint_cli_exits_1_on_errors_and_fix_removes_only_exact_duplicates(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodels.py").write_text("def echo(p):\n    return p\n")
    train = [ex(i, f"training document number {i} about claim {i * 7} with details", "x") for i in range(20)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in train))
    write_project(tmp_path, ECHO_MODEL.replace("    adapter: python\n", "    adapter: python\n"
                                               "    training_data: train.jsonl\n"))
    rows = [ex(0, "a fresh document about a claim", "x"), ex(1, "a fresh document about a claim", "x"),
            {**train[3], "id": "leak"}]
    write_suite(tmp_path, "held", rows, prompt="{{ doc }}")
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["suite", "lint", "--format", "json"]) == 1  # leakage is an error
    checks = {f["check"] for f in json.loads(capsys.readouterr().out)}
    assert checks == {"duplicate", "leakage"}
    assert main(["suite", "lint", "--fix", "--format", "json"]) == 1
    data = (tmp_path / "suites" / "held" / "examples.jsonl").read_text().splitlines()
    assert [json.loads(r)["id"] for r in data] == ["e0", "leak"]  # the copy went, the leak stays for a human
    report = json.loads((tmp_path / "suites" / "held" / "examples.jsonl.lint-fix.json").read_text())
    assert [r["line"] for r in report["removed"]] == [2]
