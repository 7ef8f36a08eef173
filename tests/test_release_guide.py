"""docs/release-guide.md cannot rot: its files are written and its ``$`` commands run, in order, on a
copy of the demo project (which has lived its three simulated weeks), with the exit codes it states."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from guides import run_guide, steps

# the session's full demo (tests/conftest.py: full_demo) runs inside the first test that asks for it
pytestmark = pytest.mark.timeout(1800)

GUIDE = Path(__file__).resolve().parents[1] / "docs" / "release-guide.md"


def test_the_release_guide_runs_as_it_says(full_demo, tmp_path):
    assert sum(k == "run" for k, _, _ in steps(GUIDE.read_text(encoding="utf-8"))) >= 10
    work = tmp_path / "tollgate-demo"
    log = run_guide(GUIDE, full_demo[2], work)
    out = dict(log)
    ingest = [p for cmd, p in log if cmd.startswith("tollgate feedback ingest")]
    assert "row 3, column 'value'" in ingest[0].stderr and "row 4, column 'kind'" in ingest[0].stderr
    assert "2 stored" in ingest[1].stdout and "2 rejected" in ingest[1].stdout
    assert "0 stored" in ingest[2].stdout
    assert (work / "logs" / "feedback-export.rejected.jsonl").read_text().count("\n") == 2
    assert "retrain" in out["tollgate monitor"].stdout.lower()
    status = json.loads(subprocess.run([sys.executable, "-m", "harness.cli", "rollout", "status", "--json"], cwd=work,
                                       capture_output=True, text=True, check=True).stdout)
    assert status["production"] == "production" and status["candidate"] == "rolled_back"
    assert status["overfit"] == "candidate"
