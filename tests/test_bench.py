"""Every benchmark runs in ``--smoke`` mode (a tiny input, one repetition) and writes its figures, so
the scripts in ``bench/`` cannot rot. Nothing here looks at a timing: the figures of a smoke run
mean nothing, and the real ones are measured by hand (``make bench``).

The scripts run side by side, each in its own process, sharing one throw-away cache folder (the
tiny model is built once); the slowest, which start ``lm_eval``, set the pace.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))


@pytest.fixture(scope="module")
def smoke_runs(tmp_path_factory) -> dict[str, dict]:
    """Every script once with ``--smoke``, all started together: name -> exit code, output, figures."""
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    env.pop("TOLLGATE_BENCH_RESULTS", None)
    procs = {}
    for name in SCRIPTS:
        out = (tmp / f"{name}.out").open("wb")
        procs[name] = (subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), "--smoke", "--results", str(tmp / f"{name}.jsonl"),
             "--cache", str(tmp / "cache")], cwd=tmp, env=env, stdout=out, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL), out)
    deadline = time.monotonic() + 480
    runs = {}
    for name, (proc, out) in procs.items():
        try:
            rc = proc.wait(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            rc = proc.wait()
        out.close()
        results = tmp / f"{name}.jsonl"
        figures = [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []
        runs[name] = {"rc": rc, "output": (tmp / f"{name}.out").read_text(errors="replace"), "figures": figures}
    return runs


def test_there_is_a_benchmark_for_every_row_of_the_issue():
    assert sorted(["bench_cache", "bench_choice", "bench_cli", "bench_dashboard", "bench_gate",
                              "bench_generate", "bench_ingest", "bench_router"]) == SCRIPTS


def test_run_all_knows_every_benchmark():
    tree = ast.parse((BENCH / "run_all.py").read_text())
    order = next(ast.literal_eval(node.value) for node in tree.body
                 if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", None) == "ORDER")
    assert sorted(order) == SCRIPTS


@pytest.mark.slow
@pytest.mark.parametrize("name", SCRIPTS)
def test_a_benchmark_runs_in_smoke_mode_and_writes_its_figures(smoke_runs, name):
    run = smoke_runs[name]
    assert run["rc"] == 0, run["output"][-4000:]
    if name == "bench_dashboard" and not (REPO / "dashboard" / "app.py").exists():
        assert "dashboard not built yet" in run["output"] and run["figures"] == []
        return
    assert run["figures"], f"{name} wrote no figures:\n{run['output'][-2000:]}"
    for fig in run["figures"]:
        assert fig["bench"] == name and fig["smoke"] is True
        assert fig["n"] == len(fig["values"]) >= 1
        assert fig["machine"]["cpu"] and fig["machine"]["python"] and fig["date"]
        assert all(isinstance(v, (int, float)) for v in fig["values"])
    names = [f["figure"] for f in run["figures"]]
    assert len(names) == len(set(names)), "two figures share a name"
