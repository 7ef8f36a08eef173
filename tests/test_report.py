"""Stored run summaries: computed once when a run completes, read back identical to a live computation."""

from __future__ import annotations

from harness.cli import main
from harness.project import load_project
from harness.report import _compute, stored_results
from harness.store import Store, latest_runs


def test_a_completed_runs_summary_is_stored_once_and_equals_the_live_computation(echo_project, monkeypatch):
    monkeypatch.chdir(echo_project)
    assert main(["run", "--model", "echo", "--no-progress"]) == 0
    store = Store(load_project(echo_project / "tollgate.yaml").store_path)
    with store.read() as con:
        stored = con.execute("SELECT metric, value, n FROM run_summaries ORDER BY ord").fetchall()
        runs = latest_runs(con)
        live = _compute(con, runs)
    assert [(m, round(v, 9), n) for m, v, n in stored] == [(r.metric, round(r.estimate.value, 9), r.estimate.n)
                                                           for r in live]
    assert ("pass", 0.75, 20) in [(m, v, n) for m, v, n in stored]
    read = stored_results(store)
    assert [(r.metric, r.estimate) for r in read] == [(r.metric, r.estimate) for r in live]


def test_runs_that_did_not_complete_keep_no_summary(echo_project, monkeypatch):
    monkeypatch.chdir(echo_project)
    monkeypatch.setenv("ECHO_DELAY", "0")
    (echo_project / "suites" / "words" / "examples.jsonl").write_text(
        '{"id": "a", "input": "FAIL now", "expected": "x"}\n{"id": "b", "input": "say y", "expected": "y"}\n')
    assert main(["run", "--model", "echo", "--no-progress"]) == 0  # an errored example: still completed
    with Store(echo_project / ".tollgate" / "tollgate.duckdb").read() as con:
        status = con.execute("SELECT status FROM runs").fetchall()
        n = con.execute("SELECT count(*) FROM run_summaries").fetchall()[0][0]
    assert status == [("completed",)] and n > 0
    with Store(echo_project / ".tollgate" / "tollgate.duckdb").write() as con:
        con.execute("UPDATE runs SET status = 'interrupted'")
        con.execute("DELETE FROM run_summaries")
    assert stored_results(Store(echo_project / ".tollgate" / "tollgate.duckdb")) == []  # only completed runs show
