"""The DuckDB store: connections, schema migrations, and every query Tollgate runs.

DuckDB lets one process write a file, or many read it, never both at once. So connections are
short: a writer opens the file for one transaction (one batch of results) and closes it, and a
reader that finds the file busy waits with backoff and tries again. That keeps a dashboard
reading while a run writes, and a run killed at any instant leaves only whole transactions.
All SQL lives here and takes its values as parameters.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import random
import socket
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from harness.errors import StoreBusyError, TollgateInputError

try:
    import fcntl
except ImportError:  # not POSIX: DuckDB's own file lock only
    fcntl = None  # type: ignore[assignment]

LOCK_MARKERS = ("Could not set lock", "Conflicting lock", "database is locked", "lock on file",
                "different configuration")

MIGRATIONS: list[str] = [
    # v1: the evaluation core
    """
    CREATE TABLE models (
        name VARCHAR NOT NULL, fingerprint VARCHAR NOT NULL, adapter VARCHAR NOT NULL, uri VARCHAR,
        role VARCHAR, version VARCHAR, settings JSON, first_seen TIMESTAMP NOT NULL,
        PRIMARY KEY (name, fingerprint));
    CREATE TABLE suites (
        name VARCHAR NOT NULL, content_hash VARCHAR NOT NULL, kind VARCHAR NOT NULL, task VARCHAR NOT NULL,
        spec JSON NOT NULL, path VARCHAR, n_examples INTEGER NOT NULL, first_seen TIMESTAMP NOT NULL,
        PRIMARY KEY (name, content_hash));
    CREATE TABLE examples (
        suite_hash VARCHAR NOT NULL, example_id VARCHAR NOT NULL, example_hash VARCHAR NOT NULL,
        input JSON, expected JSON, tags VARCHAR[], line INTEGER,
        PRIMARY KEY (suite_hash, example_id));
    CREATE TABLE runs (
        run_id VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, model_fingerprint VARCHAR NOT NULL,
        suite VARCHAR NOT NULL, suite_hash VARCHAR NOT NULL, suite_kind VARCHAR NOT NULL, stage VARCHAR,
        config JSON, code_version VARCHAR, status VARCHAR NOT NULL, n_examples INTEGER NOT NULL,
        n_done INTEGER NOT NULL DEFAULT 0, n_cached INTEGER NOT NULL DEFAULT 0,
        n_errors INTEGER NOT NULL DEFAULT 0, started_at TIMESTAMP NOT NULL, finished_at TIMESTAMP,
        duration_s DOUBLE, host VARCHAR, pid INTEGER);
    CREATE TABLE results (
        run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, output_key VARCHAR NOT NULL,
        result_key VARCHAR NOT NULL, output VARCHAR, details JSON, score DOUBLE, passed BOOLEAN,
        reason VARCHAR, latency_ms DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER,
        error VARCHAR, cached BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, example_id));
    CREATE TABLE scores (
        run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, metric VARCHAR NOT NULL, value DOUBLE,
        passed BOOLEAN, reason VARCHAR, counts JSON,
        PRIMARY KEY (run_id, example_id, metric));
    """,
    # v2: the cache is looked up by key on every run
    """
    CREATE INDEX results_result_key ON results (result_key);
    CREATE INDEX results_output_key ON results (output_key);
    CREATE INDEX runs_model_suite ON runs (model, suite);
    """,
    # v3: verdicts, never updated: a re-judgement is a new row
    """
    CREATE TABLE decisions (
        decision_id VARCHAR PRIMARY KEY, candidate VARCHAR NOT NULL, reference VARCHAR,
        candidate_fingerprint VARCHAR, reference_fingerprint VARCHAR, policy_hash VARCHAR NOT NULL,
        suite_hashes JSON NOT NULL, verdict VARCHAR NOT NULL, evidence JSON NOT NULL, seed BIGINT NOT NULL,
        code_version VARCHAR, actor VARCHAR NOT NULL, created_at TIMESTAMP NOT NULL);
    """,
    # v4: real traffic (one row per model answer: the production answer a user saw, the candidate's
    # shadow copy of the same request, or a beta user's candidate answer), feedback, and the
    # append-only stage events of the rollout
    """
    CREATE TABLE traffic (
        request_id VARCHAR NOT NULL, model VARCHAR NOT NULL, arm VARCHAR NOT NULL, ts TIMESTAMP NOT NULL,
        user_id VARCHAR, input JSON NOT NULL, output VARCHAR, latency_ms DOUBLE, prompt_tokens INTEGER,
        completion_tokens INTEGER, error VARCHAR, source VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL,
        PRIMARY KEY (request_id, model));
    CREATE INDEX traffic_arm_ts ON traffic (arm, ts);
    CREATE TABLE feedback (
        feedback_id VARCHAR PRIMARY KEY, request_id VARCHAR NOT NULL, kind VARCHAR NOT NULL, value VARCHAR,
        ts TIMESTAMP NOT NULL, user_id VARCHAR, source VARCHAR NOT NULL, ingested_at TIMESTAMP NOT NULL);
    CREATE INDEX feedback_request ON feedback (request_id);
    CREATE TABLE stage_events (
        event_id VARCHAR PRIMARY KEY, model VARCHAR NOT NULL, from_stage VARCHAR NOT NULL,
        to_stage VARCHAR NOT NULL, share DOUBLE, actor VARCHAR NOT NULL, reason VARCHAR NOT NULL,
        decision_id VARCHAR, forced BOOLEAN NOT NULL, ts TIMESTAMP NOT NULL);
    """,
    # v5: a completed run never changes, so its summary (every metric with its interval) is computed
    # once, when it completes, and read from here by `tollgate results` and the dashboard
    """
    CREATE TABLE run_summaries (
        run_id VARCHAR NOT NULL, ord INTEGER NOT NULL, metric VARCHAR NOT NULL, value DOUBLE, low DOUBLE,
        high DOUBLE, n INTEGER NOT NULL, method VARCHAR NOT NULL, PRIMARY KEY (run_id, metric));
    """,
    # v6: repeated sampling and sweeps. A run with ``--repeats k`` keeps each of an example's k answers
    # in ``samples`` (its own seed and cache key) and one row per example in ``results`` whose
    # ``pass_rate`` is the share of repeats that passed (NULL for an ordinary run), so every paired test
    # sees one value per example. An Optuna study judged by Tollgate keeps its books in ``sweeps`` and
    # ``sweep_trials`` (one row per trial: parameters, state, its validation run and metric).
    """
    ALTER TABLE results ADD COLUMN pass_rate DOUBLE;
    CREATE TABLE samples (
        run_id VARCHAR NOT NULL, example_id VARCHAR NOT NULL, repeat INTEGER NOT NULL, seed BIGINT NOT NULL,
        output_key VARCHAR NOT NULL, output VARCHAR, details JSON, score DOUBLE, passed BOOLEAN,
        metrics JSON, latency_ms DOUBLE, prompt_tokens INTEGER, completion_tokens INTEGER, error VARCHAR,
        cached BOOLEAN NOT NULL, created_at TIMESTAMP NOT NULL,
        PRIMARY KEY (run_id, example_id, repeat));
    CREATE INDEX samples_output_key ON samples (output_key);
    CREATE TABLE sweeps (
        study VARCHAR PRIMARY KEY, suite VARCHAR NOT NULL, metric VARCHAR NOT NULL, direction VARCHAR NOT NULL,
        template_model VARCHAR NOT NULL, settings JSON, created_at TIMESTAMP NOT NULL);
    CREATE TABLE sweep_trials (
        study VARCHAR NOT NULL, trial INTEGER NOT NULL, model VARCHAR NOT NULL, params JSON NOT NULL,
        state VARCHAR NOT NULL, value DOUBLE, low DOUBLE, high DOUBLE, n INTEGER, intermediate JSON,
        run_id VARCHAR, checkpoint VARCHAR, error VARCHAR, started_at TIMESTAMP NOT NULL,
        finished_at TIMESTAMP, duration_s DOUBLE, PRIMARY KEY (study, trial));
    """,
]
SCHEMA_VERSION = len(MIGRATIONS)


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def _is_lock_error(exc: Exception) -> bool:
    return any(m in str(exc) for m in LOCK_MARKERS)


# What the operating system answers when a write cannot happen for a reason the user fixes: no space,
# a quota or file size limit, no permission, a read-only file system.
STORAGE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EACCES, errno.EPERM, errno.EROFS)
STORAGE_HINT = ("The disk is full, a quota or file size limit was hit, or the store or its folder is read-only. "
                "Nothing already stored is lost (every batch is one transaction): free space or fix the "
                "permissions, then run the same command again to resume.")


def storage_problem(exc: BaseException) -> str | None:
    """The first line of a DuckDB or OS error that says the disk or its permissions refused a write,
    or None for any other error (those are bugs, and keep their traceback)."""
    duckdb = sys.modules.get("duckdb")
    if isinstance(exc, OSError):
        if exc.errno not in STORAGE_ERRNOS:
            return None
        return f"{exc.strerror}: {exc.filename}" if exc.filename else (exc.strerror or str(exc))
    if duckdb is not None and isinstance(exc, duckdb.Error):
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        return text if any(os.strerror(e) in text for e in STORAGE_ERRNOS) else None
    return None


class Store:
    """One DuckDB file. Open a short transaction with :meth:`write`, a snapshot with :meth:`read`.

    With ``traffic_parquet`` (a folder or an ``s3://`` URL) traffic lives in Parquet files there:
    every connection gets a TEMP view ``traffic`` over them and the table (``harness.traffic_parquet``),
    and ``rollout.records.insert_traffic`` writes new files instead of table rows.
    """

    def __init__(self, path: Path, *, busy_timeout_s: float = 60.0, traffic_parquet: str | None = None) -> None:
        self.path = Path(path)
        self.busy_timeout_s = busy_timeout_s
        self.traffic_parquet = traffic_parquet
        self._migrated = False

    def _traffic_view(self, con: Any) -> None:
        """In Parquet mode, the view ``traffic`` on this connection, which is remembered as Parquet-mode."""
        if self.traffic_parquet is None:
            return
        from harness import traffic_parquet as tp

        try:
            tp.create_view(con, self.traffic_parquet, traffic_table(con))
        except BaseException:
            con.close()
            raise
        _PARQUET_CONNECTIONS[id(con)] = self.traffic_parquet

    # -- connections ---------------------------------------------------------------------------
    @property
    def lock_path(self) -> Path:
        return self.path.with_name(self.path.name + ".lock")

    @contextlib.contextmanager
    def _locked(self, exclusive: bool) -> Iterator[None]:
        """Hold the store's sidecar lock (``<store>.lock``): shared to read, exclusive to write.

        DuckDB reads the file's headers before it takes its own lock on the file, and does not read
        them again once it has the lock. A process that opens the store while another one commits
        and checkpoints therefore works from the headers of before that commit; if it writes, its
        own checkpoint puts the older state back and the other process's committed rows are gone
        (a reader gets "Could not read enough bytes" or an old snapshot). So every open of the file,
        and the close that checkpoints, happens under this lock: no process reads the headers while
        another writes them. A thread that already holds the lock (exclusive, or shared for a
        read) takes it again at no cost, so nested blocks that DuckDB allows still work.
        """
        held: dict[str, list[Any]] | None = getattr(_HELD, "locks", None)
        if held is None:
            held = _HELD.locks = {}
        key = str(self.lock_path)
        mine = held.get(key)
        if mine is not None and (mine[0] or not exclusive):
            mine[1] += 1
            try:
                yield
            finally:
                mine[1] -= 1
            return
        fd = self._open_lock_file()
        if fd is None:  # a read-only folder without a lock file: nobody can write here anyway
            yield
            return
        try:
            deadline = time.monotonic() + self.busy_timeout_s
            delay = 0.002
            while True:
                try:
                    fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() > deadline:
                        raise StoreBusyError(
                            f"the store {self.path} stayed locked by another process for "
                            f"{self.busy_timeout_s:.0f} s") from None
                    time.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 0.05)
            held[key] = [exclusive, 1]
            try:
                yield
            finally:
                del held[key]
                fcntl.flock(fd, fcntl.LOCK_UN)  # also for a copy of the fd a fork may hold
        finally:
            os.close(fd)

    def _open_lock_file(self) -> int | None:
        if fcntl is None:
            return None
        try:
            return os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o666)
        except OSError as exc:
            if exc.errno not in STORAGE_ERRNOS:
                raise
        try:  # a folder we may not write to: an existing lock file still locks (flock needs no write access)
            return os.open(self.lock_path, os.O_RDONLY)
        except OSError:
            return None

    @contextlib.contextmanager
    def connection(self, read_only: bool) -> Iterator[Any]:
        """A plain connection to the store, opened and closed (and so checkpointed) under its lock."""
        with self._locked(exclusive=not read_only):
            con = self._connect(read_only)
            try:
                yield con
            finally:
                con.close()

    def _connect(self, read_only: bool) -> Any:
        import duckdb

        return self._retry(lambda: duckdb.connect(str(self.path), read_only=read_only))

    @contextlib.contextmanager
    def attached(self, con: Any, alias: str) -> Iterator[None]:
        """The store attached to another DuckDB connection as ``alias`` (read-write), for bulk moves
        from a scratch database (an ingest validated in memory) in one transaction."""
        if not self._migrated:
            self.migrate()
        with self._locked(exclusive=True):
            self._retry(lambda: con.execute(f"ATTACH ? AS {alias}", [str(self.path)]))
            try:
                yield
            finally:
                con.execute(f"DETACH {alias}")

    def _retry(self, open_: Any) -> Any:
        """Open the file, waiting with backoff while another process holds its lock."""
        import duckdb

        deadline = time.monotonic() + self.busy_timeout_s
        delay = 0.01
        while True:
            try:
                return open_()
            except (duckdb.IOException, duckdb.ConnectionException, duckdb.BinderException) as exc:
                if not _is_lock_error(exc):
                    raise TollgateInputError(f"cannot open the store: {str(exc).splitlines()[0]}.", file=self.path,
                                             hint=STORAGE_HINT if storage_problem(exc) else None) from None
                if time.monotonic() > deadline:
                    raise StoreBusyError(
                        f"the store {self.path} stayed locked by another process for "
                        f"{self.busy_timeout_s:.0f} s") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 0.5)

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        """One transaction: committed whole when the block ends, rolled back on any exception."""
        if not self._migrated:
            self.migrate()
        with self.connection(read_only=False) as con:
            self._traffic_view(con)
            try:
                con.begin()
                try:
                    yield con
                except BaseException:
                    con.rollback()
                    raise
                con.commit()
            finally:
                _PARQUET_CONNECTIONS.pop(id(con), None)

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        if not self.path.exists():
            raise TollgateInputError("no store yet: nothing has been run in this project.", file=self.path,
                                     hint="Run 'tollgate run --model NAME' first.")
        if not self._migrated:
            # Readers need no write access; only a store older than this code is upgraded first.
            with self.connection(read_only=True) as con:
                outdated = _version(con) < SCHEMA_VERSION
            if outdated:
                self.migrate()
            self._migrated = True
        with self.connection(read_only=True) as con:
            self._traffic_view(con)
            try:
                yield con
            finally:
                _PARQUET_CONNECTIONS.pop(id(con), None)

    def migrate(self) -> int:
        """Create or upgrade the schema in one transaction; returns the version now in force."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.connection(read_only=False) as con:
            con.begin()
            con.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, "
                        "applied_at TIMESTAMP NOT NULL)")
            current = con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
            if current > SCHEMA_VERSION:
                con.rollback()
                raise TollgateInputError(
                    f"the store has schema version {current}, newer than this Tollgate knows "
                    f"({SCHEMA_VERSION}); upgrade Tollgate.", file=self.path)
            for version in range(current + 1, SCHEMA_VERSION + 1):
                con.execute(MIGRATIONS[version - 1])
                con.execute("INSERT INTO schema_version VALUES (?, ?)", [version, utcnow()])
            con.commit()
        self._migrated = True
        return SCHEMA_VERSION


# per thread: lock file path -> [exclusive, depth] of the store locks this thread holds
_HELD = threading.local()

# id(connection) -> Parquet traffic root, for the connections Store opened in Parquet mode
_PARQUET_CONNECTIONS: dict[int, str] = {}


def traffic_parquet_root(con: Any) -> str | None:
    """The Parquet traffic root of a connection from :meth:`Store.read`/:meth:`Store.write`, or None."""
    return _PARQUET_CONNECTIONS.get(id(con))


def traffic_table(con: Any) -> str:
    """The store's own traffic table, qualified (a TEMP view ``traffic`` may hide it)."""
    db = con.execute("SELECT current_database()").fetchall()[0][0]
    return '"' + db.replace('"', '""') + '".main.traffic'


def _version(con: Any) -> int:
    try:
        return con.execute("SELECT coalesce(max(version), 0) FROM schema_version").fetchone()[0]
    except Exception:
        return 0


# -- writes ------------------------------------------------------------------------------------
def register_model(con: Any, *, name: str, fingerprint: str, adapter: str, uri: str | None, role: str | None,
                   version: str | None, settings: dict[str, Any]) -> None:
    con.execute("INSERT OR IGNORE INTO models (name, fingerprint, adapter, uri, role, version, settings, first_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [name, fingerprint, adapter, uri, role, version, json.dumps(settings), utcnow()])


def register_suite(con: Any, *, name: str, content_hash: str, kind: str, task: str, spec: dict[str, Any],
                   path: str, examples: list[dict[str, Any]]) -> None:
    """Record a suite version and its examples once; later runs of the same version add nothing."""
    exists = con.execute("SELECT 1 FROM suites WHERE name = ? AND content_hash = ?", [name, content_hash]).fetchone()
    if exists:
        return
    con.execute("INSERT INTO suites (name, content_hash, kind, task, spec, path, n_examples, first_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [name, content_hash, kind, task, json.dumps(spec), path, len(examples), utcnow()])
    import pyarrow as pa

    tbl = pa.table({
        "suite_hash": [content_hash] * len(examples),
        "example_id": [e["id"] for e in examples],
        "example_hash": [e["hash"] for e in examples],
        "input": [json.dumps(e["input"], ensure_ascii=False) for e in examples],
        "expected": [json.dumps(e["expected"], ensure_ascii=False) for e in examples],
        "tags": [list(e["tags"]) for e in examples],
        "line": [e["line"] for e in examples],
    })
    con.register("_examples_in", tbl)
    con.execute("INSERT OR IGNORE INTO examples (suite_hash, example_id, example_hash, input, expected, tags, line) "
                "SELECT suite_hash, example_id, example_hash, input::JSON, expected::JSON, tags, line "
                "FROM _examples_in")
    con.unregister("_examples_in")


def start_run(con: Any, *, run_id: str, model: str, fingerprint: str, suite: str, suite_hash: str, suite_kind: str,
              stage: str | None, config: dict[str, Any], code_version: str, n_examples: int) -> None:
    con.execute(
        "INSERT INTO runs (run_id, model, model_fingerprint, suite, suite_hash, suite_kind, stage, config, "
        "code_version, status, n_examples, started_at, host, pid) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'running', ?, ?, ?, ?)",
        [run_id, model, fingerprint, suite, suite_hash, suite_kind, stage, json.dumps(config), code_version,
         n_examples, utcnow(), socket.gethostname(), os.getpid()])


def finish_run(con: Any, run_id: str, status: str, duration_s: float | None) -> None:
    """Close a run: its status, and counts taken from what is really stored for it."""
    if status == "completed":
        done = con.execute("SELECT count(*) FROM results WHERE run_id = ?", [run_id]).fetchone()[0]
        row = con.execute("SELECT n_examples FROM runs WHERE run_id = ?", [run_id]).fetchone()
        if row is None:  # DuckDB lost it before Store took the sidecar lock (docs/reliability.md): never silent
            raise RuntimeError(f"the store no longer holds run {run_id}, which this process started and "
                               f"committed: a committed write was lost")
        status = "completed" if done == row[0] else "failed"
    con.execute(
        """UPDATE runs SET status = ?, finished_at = CASE WHEN ? THEN ? END, duration_s = ?,
               n_done = (SELECT count(*) FROM results WHERE run_id = ?),
               n_cached = (SELECT count(*) FILTER (WHERE cached) FROM results WHERE run_id = ?),
               n_errors = (SELECT count(*) FILTER (WHERE error IS NOT NULL) FROM results WHERE run_id = ?)
           WHERE run_id = ?""",
        [status, duration_s is not None, utcnow(), duration_s, run_id, run_id, run_id, run_id])


def mark_dead_runs(con: Any) -> int:
    """Runs left 'running' by a process of this host that no longer exists were interrupted."""
    host = socket.gethostname()
    rows = con.execute("SELECT run_id, pid FROM runs WHERE status = 'running' AND host = ?", [host]).fetchall()
    dead = [rid for rid, pid in rows if pid is not None and not _pid_alive(pid)]
    for rid in dead:
        finish_run(con, rid, "interrupted", None)
    return len(dead)


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


RESULT_COLUMNS = ("run_id", "example_id", "output_key", "result_key", "output", "details", "score", "passed",
                  "reason", "latency_ms", "prompt_tokens", "completion_tokens", "error", "cached", "created_at",
                  "pass_rate")
SCORE_COLUMNS = ("run_id", "example_id", "metric", "value", "passed", "reason", "counts")


def insert_results(con: Any, results: list[dict[str, Any]], scores: list[dict[str, Any]]) -> None:
    """One batch of scored examples, moved as Arrow tables (no row-by-row inserts)."""
    import pyarrow as pa

    if results:
        tbl = pa.Table.from_pylist(results, schema=_RESULT_SCHEMA())
        con.register("_results_in", tbl)
        cols = ", ".join(RESULT_COLUMNS)
        con.execute(f"INSERT INTO results ({cols}) SELECT {cols} FROM _results_in")
        con.unregister("_results_in")
    if scores:
        tbl = pa.Table.from_pylist(scores, schema=_SCORE_SCHEMA())
        con.register("_scores_in", tbl)
        cols = ", ".join(SCORE_COLUMNS)
        con.execute(f"INSERT INTO scores ({cols}) SELECT {cols} FROM _scores_in")
        con.unregister("_scores_in")


def _RESULT_SCHEMA() -> Any:  # noqa: N802 - a constant built lazily so pyarrow loads only when writing
    import pyarrow as pa

    return pa.schema([("run_id", pa.string()), ("example_id", pa.string()), ("output_key", pa.string()),
                      ("result_key", pa.string()), ("output", pa.string()), ("details", pa.string()),
                      ("score", pa.float64()), ("passed", pa.bool_()), ("reason", pa.string()),
                      ("latency_ms", pa.float64()), ("prompt_tokens", pa.int32()),
                      ("completion_tokens", pa.int32()), ("error", pa.string()), ("cached", pa.bool_()),
                      ("created_at", pa.timestamp("us")), ("pass_rate", pa.float64())])


def _SCORE_SCHEMA() -> Any:  # noqa: N802
    import pyarrow as pa

    return pa.schema([("run_id", pa.string()), ("example_id", pa.string()), ("metric", pa.string()),
                      ("value", pa.float64()), ("passed", pa.bool_()), ("reason", pa.string()),
                      ("counts", pa.string())])


def copy_cached(con: Any, run_id: str, wanted: list[tuple[str, str]]) -> set[str]:
    """Copy finished results with the same result key into this run; returns the example ids served.

    Only results without an error are served from the cache: a timeout is retried next time. A
    repeated example comes whole: its result, its scores and its k answers in ``samples``.
    """
    if not wanted:
        return set()
    import pyarrow as pa

    con.register("_want", pa.table({"example_id": [w[0] for w in wanted], "result_key": [w[1] for w in wanted]}))
    con.execute("""
        CREATE OR REPLACE TEMP TABLE _src AS
        SELECT w.example_id AS new_id, s.run_id AS src_run, s.example_id AS src_id
        FROM _want w JOIN (
            SELECT DISTINCT ON (result_key) result_key, run_id, example_id FROM results
            WHERE error IS NULL AND result_key IN (SELECT result_key FROM _want)
            ORDER BY result_key, created_at DESC) s USING (result_key)""")
    now = utcnow()
    con.execute(f"""
        INSERT INTO results ({", ".join(RESULT_COLUMNS)})
        SELECT ?, src.new_id, r.output_key, r.result_key, r.output, r.details, r.score, r.passed, r.reason,
               r.latency_ms, r.prompt_tokens, r.completion_tokens, r.error, TRUE, ?, r.pass_rate
        FROM _src src JOIN results r ON r.run_id = src.src_run AND r.example_id = src.src_id""", [run_id, now])
    con.execute(f"""
        INSERT INTO scores ({", ".join(SCORE_COLUMNS)})
        SELECT ?, src.new_id, s.metric, s.value, s.passed, s.reason, s.counts
        FROM _src src JOIN scores s ON s.run_id = src.src_run AND s.example_id = src.src_id""", [run_id])
    con.execute(f"""
        INSERT INTO samples ({", ".join(SAMPLE_COLUMNS)})
        SELECT ?, src.new_id, s.repeat, s.seed, s.output_key, s.output, s.details, s.score, s.passed, s.metrics,
               s.latency_ms, s.prompt_tokens, s.completion_tokens, s.error, TRUE, ?
        FROM _src src JOIN samples s ON s.run_id = src.src_run AND s.example_id = src.src_id""", [run_id, now])
    served = {r[0] for r in con.execute("SELECT new_id FROM _src").fetchall()}
    con.execute("DROP TABLE _src")
    con.unregister("_want")
    return served


def cached_outputs(con: Any, output_keys: list[str]) -> dict[str, dict[str, Any]]:
    """Model outputs already computed for these keys (scored by other checks): reused, not regenerated.

    Answers of repeated runs (``samples``) count too: each of an example's k answers is cached on
    its own, so a killed repeated run resumes and a larger k computes only the new repeats.
    """
    if not output_keys:
        return {}
    rows = con.execute("""
        SELECT DISTINCT ON (output_key) output_key, output, details, latency_ms, prompt_tokens, completion_tokens
        FROM (SELECT output_key, output, details, latency_ms, prompt_tokens, completion_tokens, created_at
              FROM results WHERE error IS NULL AND output_key IN (SELECT unnest(?))
              UNION ALL
              SELECT output_key, output, details, latency_ms, prompt_tokens, completion_tokens, created_at
              FROM samples WHERE error IS NULL AND output_key IN (SELECT unnest(?)))
        ORDER BY output_key, created_at DESC""", [output_keys, output_keys]).fetchall()
    return {r[0]: {"output": r[1], "details": json.loads(r[2]) if r[2] else {}, "latency_ms": r[3],
                   "prompt_tokens": r[4], "completion_tokens": r[5]} for r in rows}


SAMPLE_COLUMNS = ("run_id", "example_id", "repeat", "seed", "output_key", "output", "details", "score", "passed",
                  "metrics", "latency_ms", "prompt_tokens", "completion_tokens", "error", "cached", "created_at")


def insert_samples(con: Any, samples: list[dict[str, Any]]) -> None:
    """One batch of answers of a repeated run (one row per example and repeat), as an Arrow table."""
    if not samples:
        return
    import pyarrow as pa

    schema = pa.schema([("run_id", pa.string()), ("example_id", pa.string()), ("repeat", pa.int32()),
                        ("seed", pa.int64()), ("output_key", pa.string()), ("output", pa.string()),
                        ("details", pa.string()), ("score", pa.float64()), ("passed", pa.bool_()),
                        ("metrics", pa.string()), ("latency_ms", pa.float64()), ("prompt_tokens", pa.int32()),
                        ("completion_tokens", pa.int32()), ("error", pa.string()), ("cached", pa.bool_()),
                        ("created_at", pa.timestamp("us"))])
    con.register("_samples_in", pa.Table.from_pylist(samples, schema=schema))
    cols = ", ".join(SAMPLE_COLUMNS)
    con.execute(f"INSERT INTO samples ({cols}) SELECT {cols} FROM _samples_in")
    con.unregister("_samples_in")


def run_samples(con: Any, run_ids: list[str], example_ids: list[str] | None = None) -> list[dict[str, Any]]:
    """The stored answers of repeated runs, in (run, example, repeat) order; optionally of some examples."""
    sql = ("SELECT run_id, example_id, repeat, seed, output, score, passed, error, cached FROM samples "
           "WHERE list_contains(?, run_id)")
    params: list[Any] = [run_ids]
    if example_ids is not None:
        sql += " AND list_contains(?, example_id)"
        params.append(example_ids)
    cur = con.execute(sql + " ORDER BY run_id, example_id, repeat", params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


# -- reads ---------------------------------------------------------------------------------------
def latest_runs(con: Any, model: str | None = None, suites: list[str] | None = None,
                stage: str | None = None, statuses: tuple[str, ...] = ("completed",)) -> list[dict[str, Any]]:
    """The newest run per (model, suite) with one of ``statuses``."""
    sql = """
        SELECT DISTINCT ON (model, suite) run_id, model, model_fingerprint, suite, suite_hash, suite_kind, stage,
               status, n_examples, n_done, n_cached, n_errors, started_at, finished_at, duration_s, code_version
        FROM runs WHERE list_contains(?, status)"""
    params: list[Any] = [list(statuses)]
    if model is not None:
        sql += " AND model = ?"
        params.append(model)
    if suites:
        sql += " AND list_contains(?, suite)"
        params.append(list(suites))
    if stage is not None:
        sql += " AND stage = ?"
        params.append(stage)
    sql += " ORDER BY model, suite, started_at DESC"
    cur = con.execute(sql, params)
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


def metric_values(con: Any, run_ids: list[str]) -> dict[str, Any]:
    """Per-example metric values of these runs as numpy columns: run_id, metric, value, counts.

    The example-level verdict (every check passed) comes as the metric ``pass`` (in a repeated run,
    the share of the example's repeats that passed: one value per example), where an example
    that errored counts as not passed (a model must not look better for timing out on hard
    examples); the other metrics are over answered examples. ``latency_ms`` is the time per example.
    """
    return con.execute("""
        SELECT run_id, example_id, metric, value, counts FROM scores WHERE list_contains(?, run_id)
        UNION ALL
        SELECT run_id, example_id, 'pass',
               CASE WHEN error IS NULL THEN coalesce(pass_rate, passed::DOUBLE) ELSE 0.0 END, NULL
        FROM results WHERE list_contains(?, run_id)
        UNION ALL
        SELECT run_id, example_id, 'latency_ms', latency_ms, NULL FROM results
        WHERE list_contains(?, run_id) AND error IS NULL AND latency_ms IS NOT NULL
        ORDER BY run_id, metric, example_id""", [run_ids, run_ids, run_ids]).fetchnumpy()


def schema_version(con: Any) -> int:
    return con.execute("SELECT max(version) FROM schema_version").fetchone()[0]


def example_values(con: Any, run_id: str, metric: str, *, errors_count: bool = False) -> dict[str, float]:
    """example_id -> value of one metric in one run.

    ``pass`` counts an errored example as 0, ``error`` is 1 for an errored example, ``latency_ms``
    is the time per example; any other name is a check's metric from the scores table. With
    ``errors_count`` (what a gate uses) an errored example also scores 0 on every metric and takes
    forever on latency, so a model cannot clear a rule by failing to answer the hard examples.
    """
    if metric == "pass":
        sql = ("SELECT example_id, CASE WHEN error IS NULL THEN coalesce(pass_rate, passed::DOUBLE) ELSE 0.0 END "
               "FROM results WHERE run_id = ?")
        params: list[Any] = [run_id]
    elif metric == "error":
        sql, params = "SELECT example_id, (error IS NOT NULL)::DOUBLE FROM results WHERE run_id = ?", [run_id]
    elif metric == "latency_ms":
        sql = ("SELECT example_id, CASE WHEN error IS NULL THEN latency_ms ELSE 'inf'::DOUBLE END FROM results "
               "WHERE run_id = ? AND (error IS NOT NULL OR latency_ms IS NOT NULL)")
        if not errors_count:
            sql += " AND error IS NULL"
        params = [run_id]
    elif errors_count:
        sql = ("SELECT r.example_id, CASE WHEN r.error IS NULL THEN s.value ELSE 0.0 END FROM results r "
               "LEFT JOIN scores s ON s.run_id = r.run_id AND s.example_id = r.example_id AND s.metric = ? "
               "WHERE r.run_id = ? AND (r.error IS NOT NULL OR s.value IS NOT NULL)")
        params = [metric, run_id]
    else:
        sql, params = "SELECT example_id, value FROM scores WHERE run_id = ? AND metric = ?", [run_id, metric]
    order = " ORDER BY 1" if errors_count and metric not in ("pass", "error") else " ORDER BY example_id"
    return {r[0]: float(r[1]) for r in con.execute(sql + order, params).fetchall()}


def run_metric_names(con: Any, run_id: str) -> list[str]:
    names = [r[0] for r in con.execute("SELECT DISTINCT metric FROM scores WHERE run_id = ? ORDER BY 1",
                                       [run_id]).fetchall()]
    return ["pass", "error", "latency_ms", *names]


def runs_by_id(con: Any, run_ids: list[str]) -> list[dict[str, Any]]:
    cur = con.execute("SELECT * FROM runs WHERE list_contains(?, run_id)", [run_ids])
    cols = [d[0] for d in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


DECISION_COLUMNS = ("decision_id", "candidate", "reference", "candidate_fingerprint", "reference_fingerprint",
                    "policy_hash", "suite_hashes", "verdict", "evidence", "seed", "code_version", "actor",
                    "created_at")


def insert_decision(con: Any, row: dict[str, Any]) -> None:
    values = [json.dumps(row[c]) if c in ("suite_hashes", "evidence") else row[c] for c in DECISION_COLUMNS]
    con.execute(f"INSERT INTO decisions ({', '.join(DECISION_COLUMNS)}) VALUES "
                f"({', '.join('?' for _ in DECISION_COLUMNS)})", values)


def list_decisions(con: Any, candidate: str | None = None, decision_id: str | None = None) -> list[dict[str, Any]]:
    sql = f"SELECT {', '.join(DECISION_COLUMNS)} FROM decisions WHERE 1 = 1"
    params: list[Any] = []
    if candidate is not None:
        sql += " AND candidate = ?"
        params.append(candidate)
    if decision_id is not None:
        sql += " AND starts_with(decision_id, ?)"
        params.append(decision_id)
    rows = con.execute(sql + " ORDER BY created_at DESC", params).fetchall()
    out = []
    for r in rows:
        d = dict(zip(DECISION_COLUMNS, r, strict=True))
        d["suite_hashes"], d["evidence"] = json.loads(d["suite_hashes"]), json.loads(d["evidence"])
        out.append(d)
    return out
