"""The failure view: pass rate per tag worst first, and failing examples with a field diff."""

from __future__ import annotations

import json
import textwrap

from conftest import write_project, write_suite

from harness.cli import main


def test_failures_by_tag_worst_first_with_field_diffs(tmp_path, monkeypatch, capsys):
    (tmp_path / "fmodels.py").write_text(textwrap.dedent("""\
        import json
        def extract(prompt):
            if "legal" in prompt:
                return json.dumps({"name": "WRONG", "date": "2024-01-01"})
            if "boom" in prompt:
                raise RuntimeError("timed out")
            return json.dumps({"name": prompt.split()[-1], "date": "2024-01-01"})
    """))
    write_project(tmp_path, '  m:\n    adapter: python\n    options: {callable: "fmodels:extract"}\n')
    rows = [{"id": f"p{i}", "input": f"plain claim by Ann{i}", "expected": {"name": f"Ann{i}", "date": "2024-01-01"},
             "tags": ["plain"]} for i in range(8)]
    rows += [{"id": f"l{i}", "input": f"legal claim by Bob{i}", "expected": {"name": f"Bob{i}", "date": "2024-01-01"},
              "tags": ["legalese"]} for i in range(4)]
    rows += [{"id": "e0", "input": "boom", "expected": {"name": "X", "date": None}, "tags": ["plain"]}]
    write_suite(tmp_path, "edge", rows, kind="edge", extra="checks: [json_fields]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["run", "--model", "m", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["failures", "m", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    slices = [(s["slice"], s["value"], s["n"]) for s in report["slices"]]
    assert slices[0] == ("(all)", 8 / 13, 13)
    assert slices[1] == ("legalese", 0.0, 4)  # worst first
    assert slices[2][0] == "plain" and slices[2][2] == 9
    first = report["failures"][0]
    assert first["example_id"] == "e0" and first["error"] == "RuntimeError: timed out"  # errors first
    diffs = {f["example_id"]: f["diff"] for f in report["failures"][1:]}
    assert diffs["l0"] == {"name": ["Bob0", "WRONG"]}  # only the wrong field, expected -> got
    assert main(["failures", "m"]) == 0
    assert "name: 'Bob0' → 'WRONG'" in capsys.readouterr().out
