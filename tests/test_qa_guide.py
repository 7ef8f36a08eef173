"""docs/qa-guide.md cannot rot: every file it shows is written and every ``$`` command it shows is
run, in order, on a copy of the demo project, with the exit code the guide states (default 0)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from guides import run_guide, steps

# the session's full demo (tests/conftest.py: full_demo) runs inside the first test that asks for it
pytestmark = pytest.mark.timeout(1800)

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "qa-guide.md"


def test_the_guide_has_steps_and_a_setup_block():
    s = steps(GUIDE.read_text(encoding="utf-8"))
    assert sum(k == "run" for k, _, _ in s) >= 10 and sum(k == "file" for k, _, _ in s) >= 3
    assert "make demo" in GUIDE.read_text(encoding="utf-8")  # the fixture below is that step


@pytest.fixture
def guide_run(full_demo, tmp_path):
    work = tmp_path / "tollgate-demo"
    return work, run_guide(GUIDE, full_demo[2], work)


def test_every_command_in_the_guide_runs_as_it_says(guide_run):
    work, log = guide_run
    out = {cmd: p for cmd, p in log}
    bad = next(p for cmd, p in log if cmd.startswith("tollgate validate") and p.returncode == 2)
    assert "invariant_to" in bad.stderr and "dates-099" in bad.stderr
    results = json.loads(subprocess.run([sys.executable, "-m", "harness.cli", "results", "--format", "json",
                                         "--model", "candidate"], cwd=work, capture_output=True, text=True,
                                        check=True).stdout)
    by = {(r["suite"], r["metric"]): r for r in results}
    assert by["edge-qa", "pass"]["n"] == 120 and by["edge-qa", "invariance"]["n"] == 120
    assert by["edge-dates", "invariance"]["n"] == 1 and by["edge-dates", "directional"]["n"] == 1
    assert by["qa-test_dates", "pass"]["n"] == 3
    failures = next(p for cmd, p in out.items() if "--format json" in cmd and "failures" in cmd)
    report = json.loads(failures.stdout)
    assert {s["slice"] for s in report["slices"]} >= {"(all)", "police_report"}
