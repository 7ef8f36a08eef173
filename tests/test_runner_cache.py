"""The runner's promises: results stored with CIs, nothing recomputed, errors kept, kills resumed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
from conftest import run_cli, write_suite

from harness.cli import main

STORE = Path(".tollgate/tollgate.duckdb")


def _q(root: Path, sql: str, params: list | None = None):
    con = duckdb.connect(str(root / STORE), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def _run_json(capsys, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert main(["run", "--model", "echo", "--no-progress", "--format", "json", *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_run_stores_every_example_with_scores_and_a_wilson_interval(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    rows = _run_json(capsys)
    em = next(r for r in rows if r["metric"] == "exact_match")
    # 20 examples, every 4th expects "x" which the echo model never says: 15/20.
    assert (em["value"], em["n"], em["ci_method"]) == (0.75, 20, "wilson")
    assert 0.53 < em["ci_low"] < 0.54 and 0.88 < em["ci_high"] < 0.89
    assert _q(echo_project, "SELECT count(*), count(*) FILTER (WHERE passed) FROM results") == [(20, 15)]
    reason = _q(echo_project, "SELECT reason FROM results WHERE example_id = 'e0'")[0][0]
    assert reason == "expected 'x', got 'w0'"


def test_second_run_is_served_entirely_from_the_cache(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    _run_json(capsys)
    rows = _run_json(capsys)
    assert rows[0]["cached"] == 20
    assert _q(echo_project, "SELECT count(*) FILTER (WHERE cached) FROM results") == [(20,)]
    assert _q(echo_project, "SELECT status, n_cached FROM runs ORDER BY started_at") == [
        ("completed", 0), ("completed", 20)]


def test_changed_checks_rescore_stored_answers_without_calling_the_model(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    _run_json(capsys)
    suite = echo_project / "suites" / "words" / "suite.yaml"
    suite.write_text(suite.read_text().replace("checks: [exact_match]", "checks: [exact_match, contains]"))
    monkeypatch.setenv("ECHO_DELAY", "5")  # were the model called, 20 examples would take 100 s
    t0 = time.perf_counter()
    rows = _run_json(capsys)
    assert time.perf_counter() - t0 < 5
    assert {r["metric"] for r in rows} == {"pass", "exact_match", "contains", "latency_ms"}
    assert rows[0]["cached"] == 20


def test_a_changed_model_is_never_served_from_the_cache(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    _run_json(capsys)
    src = echo_project / "mymodels.py"
    src.write_text(src.read_text().replace("return prompt.split()[-1]", "return prompt.split()[-1].upper()"))
    import importlib

    import mymodels  # the project folder is on sys.path after the first run

    importlib.reload(mymodels)
    rows = _run_json(capsys)
    em = next(r for r in rows if r["metric"] == "exact_match")
    assert rows[0]["cached"] == 0 and em["value"] == 0.0


def test_errors_are_stored_counted_and_retried_next_time(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    write_suite(echo_project, "flaky", [{"id": "ok", "input": "say a", "expected": "a"},
                                        {"id": "bad", "input": "say FAIL", "expected": "FAIL"}])
    rows = _run_json(capsys, "--suite", "flaky")
    by = {r["metric"]: r for r in rows}
    assert by["pass"]["errors"] == 1
    assert (by["pass"]["n"], by["pass"]["value"]) == (2, 0.5)  # an error is not a pass
    assert (by["exact_match"]["n"], by["exact_match"]["value"]) == (1, 1.0)  # checks score answered examples
    err = _q(echo_project, "SELECT error FROM results WHERE example_id = 'bad'")[0][0]
    assert err == "RuntimeError: endpoint timed out"
    rows = _run_json(capsys, "--suite", "flaky")
    assert rows[0]["cached"] == 1 and rows[0]["errors"] == 1  # the error was tried again, not cached


def test_killed_run_resumes_and_computes_only_the_rest(echo_project):
    write_suite(echo_project, "slow", [{"id": f"s{i:03d}", "input": f"say v{i}", "expected": f"v{i}"}
                                       for i in range(120)])
    env = {**os.environ, "ECHO_DELAY": "0.03"}
    cmd = [sys.executable, "-m", "harness.cli", "run", "--model", "echo", "--suite", "slow", "--no-progress",
           "--commit-every", "10"]
    proc = subprocess.Popen(cmd, cwd=echo_project, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        done = 0
        while time.monotonic() < deadline and done < 30:
            time.sleep(0.1)
            try:
                done = _q(echo_project, "SELECT count(*) FROM results")[0][0]
            except duckdb.Error:
                continue  # locked by the writer at this instant, or not created yet
        assert done >= 30
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    stored = _q(echo_project, "SELECT count(*) FROM results")[0][0]
    assert stored % 10 == 0 and 30 <= stored < 120, "only whole batches are stored"

    res = run_cli("run", "--model", "echo", "--suite", "slow", "--no-progress", "--format", "json", cwd=echo_project)
    assert res.returncode == 0, res.stderr
    assert json.loads(res.stdout)[0]["cached"] == stored
    runs = _q(echo_project, "SELECT status, n_done, n_cached FROM runs ORDER BY started_at")
    assert runs == [("interrupted", stored, 0), ("completed", 120, stored)]
    # exactly one result per example in the finished run, all correct, as an uninterrupted run gives
    assert _q(echo_project, "SELECT count(DISTINCT example_id), bool_and(passed) FROM results r JOIN runs USING "
                            "(run_id) WHERE status = 'completed'") == [(120, True)]


def test_editing_a_python_check_rescores_instead_of_serving_stale_scores(echo_project, monkeypatch, capsys):
    monkeypatch.chdir(echo_project)
    (echo_project / "mychecks.py").write_text("def ok(output, expected, input):\n    return True\n")
    suite = echo_project / "suites" / "words" / "suite.yaml"
    suite.write_text(suite.read_text().replace("checks: [exact_match]",
                                               "checks: [{python: {function: 'mychecks:ok'}}]"))
    assert next(r for r in _run_json(capsys) if r["metric"] == "python")["value"] == 1.0
    (echo_project / "mychecks.py").write_text("def ok(output, expected, input):\n    return False\n")
    import importlib

    import mychecks

    importlib.reload(mychecks)
    assert next(r for r in _run_json(capsys) if r["metric"] == "python")["value"] == 0.0


def test_a_run_that_crashes_is_recorded_as_failed_not_completed(echo_project, monkeypatch, capsys):
    import pytest

    from harness import executors

    monkeypatch.chdir(echo_project)

    def broken(*args, **kwargs):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(executors, "answer_work", broken)
    with pytest.raises(RuntimeError):
        main(["run", "--model", "echo", "--no-progress"])
    assert _q(echo_project, "SELECT status, n_done FROM runs") == [("failed", 0)]
    assert main(["results"]) == 0 and "No completed runs" in capsys.readouterr().err
