"""The user's first five minutes: init, validate, run, results, and a --help that starts at once."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
import time

from conftest import run_cli


def test_help_is_fast_and_imports_no_heavy_module(tmp_path):
    code = ("import sys; from harness.cli import build_parser; build_parser(); "
            "print([m for m in ('torch', 'transformers', 'pandas', 'pandera', 'scipy', 'duckdb') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
    t0 = time.perf_counter()
    res = run_cli("--help", cwd=tmp_path)
    assert res.returncode == 0 and "validate" in res.stdout and "Exit codes" in res.stdout
    assert time.perf_counter() - t0 < 3  # generous for a loaded CI machine; bench/ measures the real figure


def test_init_validate_run_results_work_out_of_the_box(tmp_path):
    res = run_cli("init", "proj", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    proj = tmp_path / "proj"
    assert ".tollgate/" in (proj / ".gitignore").read_text()
    res = run_cli("validate", cwd=proj)
    assert res.returncode == 0 and "1 suite(s), 8 example(s)" in res.stdout, res.stderr
    res = run_cli("run", "--model", "rules", cwd=proj)
    assert res.returncode == 0, res.stderr
    assert "normalized_match" in res.stdout and "95% CI" in res.stdout and "[0.306, 0.863]" in res.stdout
    res = run_cli("results", "--model", "rules", "--format", "json", cwd=proj)
    rows = json.loads(res.stdout)
    nm = next(r for r in rows if r["metric"] == "normalized_match")
    assert (nm["value"], nm["n"], nm["suite"]) == (0.625, 8, "example")  # 3 of 8 capitals are the usual mistakes
    res = run_cli("results", "--format", "csv", cwd=proj)
    table = list(csv.DictReader(io.StringIO(res.stdout)))
    assert {r["metric"] for r in table} == {"pass", "normalized_match", "latency_ms"}
    assert run_cli("init", "proj", cwd=tmp_path).returncode == 2  # never overwrites a project silently


def test_results_before_any_run_says_so_with_exit_2(tmp_path):
    run_cli("init", "p", cwd=tmp_path)
    res = run_cli("results", cwd=tmp_path / "p")
    assert res.returncode == 2 and "no store yet" in res.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_cli("run", cwd=tmp_path).returncode == 2  # --model is required
    assert run_cli("frobnicate", cwd=tmp_path).returncode == 2
