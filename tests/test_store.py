"""The store: migrations by version in one transaction, and readers that never see a lock error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import duckdb
import pytest
from conftest import write_suite

from harness import store as st
from harness.errors import TollgateInputError


def test_a_new_store_gets_the_whole_schema(tmp_path):
    s = st.Store(tmp_path / "t.duckdb")
    assert s.migrate() == st.SCHEMA_VERSION
    with s.read() as con:
        assert st.schema_version(con) == st.SCHEMA_VERSION
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert {"models", "suites", "examples", "runs", "results", "scores", "schema_version"} <= tables


def test_an_older_store_is_upgraded_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    con.execute(st.MIGRATIONS[0])
    con.execute("INSERT INTO schema_version VALUES (1, now())")
    con.execute("INSERT INTO models VALUES ('m', 'fp', 'python', NULL, NULL, NULL, NULL, now())")
    con.close()
    s = st.Store(path)
    s.migrate()
    with s.read() as con:
        assert [r[0] for r in con.execute("SELECT version FROM schema_version ORDER BY 1").fetchall()] == list(
            range(1, st.SCHEMA_VERSION + 1))
        indexes = {r[0] for r in con.execute("SELECT index_name FROM duckdb_indexes()").fetchall()}
        assert "results_result_key" in indexes
        assert con.execute("SELECT name FROM models").fetchall() == [("m",)]


def test_a_failing_migration_leaves_the_store_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "s.duckdb"
    st.Store(path).migrate()
    monkeypatch.setattr(st, "MIGRATIONS", [*st.MIGRATIONS, "CREATE TABLE ok (x INT); SELECT * FROM nope;"])
    monkeypatch.setattr(st, "SCHEMA_VERSION", len(st.MIGRATIONS))
    with pytest.raises(duckdb.CatalogException):
        st.Store(path).migrate()
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == len(st.MIGRATIONS) - 1
    assert "ok" not in {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    con.close()


def test_a_store_from_a_newer_tollgate_is_refused(tmp_path):
    path = tmp_path / "s.duckdb"
    st.Store(path).migrate()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version VALUES (999, now())")
    con.close()
    with pytest.raises(TollgateInputError, match="newer than this Tollgate"):
        st.Store(path).migrate()


def test_write_rolls_back_the_whole_transaction_on_error(tmp_path):
    s = st.Store(tmp_path / "s.duckdb")
    with pytest.raises(RuntimeError), s.write() as con:
        st.register_model(con, name="m", fingerprint="f", adapter="python", uri=None, role=None, version=None,
                          settings={})
        raise RuntimeError("boom")
    with s.read() as con:
        assert con.execute("SELECT count(*) FROM models").fetchone()[0] == 0


READER = textwrap.dedent("""
    import json, sys, time
    from harness.store import Store
    s = Store(sys.argv[1], busy_timeout_s=30)
    seen, errors, polls = [], [], 0
    t_end = time.monotonic() + 90
    while time.monotonic() < t_end and (not seen or seen[-1] < int(sys.argv[2])):
        try:
            with s.read() as con:
                n = con.execute("SELECT count(*) FROM results").fetchone()[0]
                per_run = con.execute("SELECT count(*) FROM results GROUP BY run_id").fetchall()
            seen.append(n)
            polls += 1
        except Exception as exc:
            errors.append(repr(exc))
        time.sleep(0.01)
    print(json.dumps({"seen": seen, "errors": errors, "polls": polls}))
""")


def test_a_reader_polling_during_a_run_sees_no_lock_error_and_only_whole_batches(echo_project):
    write_suite(echo_project, "long", [{"id": f"l{i}", "input": f"say q{i}", "expected": f"q{i}"} for i in range(150)])
    env = {**os.environ, "ECHO_DELAY": "0.02"}
    st.Store(echo_project / ".tollgate" / "tollgate.duckdb").migrate()
    reader = subprocess.Popen([sys.executable, "-c", READER, str(echo_project / ".tollgate" / "tollgate.duckdb"),
                               "150"], stdout=subprocess.PIPE, text=True, env=env)
    time.sleep(0.3)
    writer = subprocess.run([sys.executable, "-m", "harness.cli", "run", "--model", "echo", "--suite", "long",
                             "--no-progress", "--commit-every", "10"], cwd=echo_project, env=env,
                            capture_output=True, text=True, timeout=120)
    out, _ = reader.communicate(timeout=60)
    assert writer.returncode == 0, writer.stderr
    report = json.loads(out)
    assert report["errors"] == []
    assert report["polls"] > 20
    assert all(n % 10 == 0 for n in report["seen"]), "a reader saw a half-written batch"
    assert max(report["seen"]) == 150 and len(set(report["seen"])) > 3, "the reader did not read during the run"


def _can_flock(path, mode) -> bool:
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, mode | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.mark.skipif(sys.platform == "win32", reason="flock is POSIX")
def test_every_open_of_the_file_is_under_the_sidecar_lock_writers_alone_readers_together(tmp_path):
    """DuckDB reads the file's headers before it takes its own lock and keeps them: a writer that
    opened while another process committed worked from the older headers, and its checkpoint
    dropped that commit (docs/reliability.md). So a write holds ``<store>.lock`` exclusively from
    open to close, a read holds it shared."""
    import fcntl

    s = st.Store(tmp_path / "t.duckdb")
    s.migrate()
    with s.write():
        assert not _can_flock(s.lock_path, fcntl.LOCK_SH)
        with s.write():  # nested in one thread: as DuckDB allows it
            pass
    with s.read():
        assert _can_flock(s.lock_path, fcntl.LOCK_SH) and not _can_flock(s.lock_path, fcntl.LOCK_EX)
        with s.read():
            pass
    assert _can_flock(s.lock_path, fcntl.LOCK_EX)
