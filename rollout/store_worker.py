"""The router's store thread: the one thread of ``tollgate serve`` that touches the store.

DuckDB does not let one process hold a read-only and a read-write connection to the same file at
once, and a writer per request would serialise on the file lock anyway. So logged rows go through
a bounded queue to this thread, which writes them in batches (one transaction per batch),
re-reads the stage assignment every ``refresh_s``, and answers reads (``/verdict``) through
futures. A user's row waits for room (backpressure) and is never dropped; a shadow row that finds
the queue full is dropped and counted. A failed write keeps its batch and retries; on shutdown
what cannot be written goes to JSONL files that ``tollgate traffic|feedback ingest`` accept.
Every queued row is first appended to a journal (``rollout.journal``), so a router killed with rows
still queued loses none: the next router on the store stores them before it serves.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from harness import store as st
from rollout.journal import Journal, journal_dir, replay_orphans
from rollout.records import insert_feedback, insert_traffic
from rollout.stages import Assignment, assignment


class Counters:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._c: dict[str, int] = defaultdict(int)

    def add(self, key: str, n: int = 1) -> None:
        with self._lock:
            self._c[key] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return defaultdict(int, self._c)


class StoreWorker:
    """The one thread that touches the store: batched writes, assignment refresh, reads on request."""

    def __init__(self, store: st.Store, production: str | None, counters: Counters, *, queue_size: int,
                 batch_size: int, flush_s: float, refresh_s: float) -> None:
        self.store, self.production, self.counters = store, production, counters
        self.queue_size, self.batch_size = max(1, queue_size), max(1, batch_size)
        self.flush_s, self.refresh_s = flush_s, refresh_s
        self._lock = threading.Lock()
        self._work = threading.Condition(self._lock)
        self._space = threading.Condition(self._lock)
        self._rows: deque[tuple[str, dict[str, Any]]] = deque()
        self._calls: deque[tuple[Future[Any], Callable[[], Any]]] = deque()
        self._batch_size = 0
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="tollgate-store", daemon=True)
        self.assignment = Assignment(production=None)
        self.last_ok = 0.0
        self.last_error: str | None = None
        self.first_refresh: Future[Assignment] = Future()
        self.journal: Journal | None = None

    def start(self) -> None:
        try:
            self.journal = Journal(journal_dir(self.store))
        except OSError as exc:  # serving matters more; say what is at risk
            print(f"tollgate serve: cannot keep a journal in {journal_dir(self.store)} ({exc}); rows still "
                  f"queued when the router is killed would be lost.", file=sys.stderr, flush=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def depth(self) -> tuple[int, int]:
        """(rows waiting in the queue, rows taken into the batch being written)."""
        with self._lock:
            return len(self._rows), self._batch_size

    def put(self, kind: str, row: dict[str, Any], *, block: bool) -> bool:
        """Queue a row for the store; when the queue is full, wait (``block``) or return False."""
        with self._lock:
            if self._closing and not self._thread.is_alive():
                raise RuntimeError("the store thread has stopped")
            if len(self._rows) >= self.queue_size:
                if not block:
                    return False
                self.counters.add("log.waits")
                while len(self._rows) >= self.queue_size:
                    if not self._thread.is_alive():
                        raise RuntimeError("the store thread has stopped")
                    self._space.wait(1.0)
            if self.journal is not None:
                self.journal.append(kind, row)  # before the user is answered: a kill cannot lose it
            self._rows.append((kind, row))
            self._work.notify()
        return True

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the store thread; its result (or exception) arrives in the future."""
        fut: Future[Any] = Future()
        with self._lock:
            if not self._thread.is_alive():
                fut.set_exception(RuntimeError("the store thread is not running"))
                return fut
            self._calls.append((fut, fn))
            self._work.notify()
        return fut

    def read(self, fn: Callable[[Any], Any]) -> Future[Any]:
        """``fn(con)`` on a read-only connection, run by the store thread."""
        def call() -> Any:
            with self.store.read() as con:
                return fn(con)
        return self.submit(call)

    def close(self) -> None:
        """Write every queued row, then stop."""
        with self._lock:
            self._closing = True
            self._work.notify()
        self._thread.join()
        if self.journal is not None:
            self.journal.close()

    # -- the thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        self._recover()
        batch: list[tuple[str, dict[str, Any]]] = []
        first_at = retry_at = next_refresh = 0.0
        failures = 0
        while True:
            with self._lock:
                while True:
                    took = 0
                    while self._rows and len(batch) < self.batch_size:
                        batch.append(self._rows.popleft())
                        took += 1
                    if took:
                        self._space.notify_all()
                        if took == len(batch):
                            first_at = time.monotonic()
                    self._batch_size = len(batch)
                    now = time.monotonic()
                    flush = bool(batch) and now >= retry_at and (
                        len(batch) >= self.batch_size or now - first_at >= self.flush_s or self._closing)
                    refresh = now >= next_refresh and not self._closing
                    done = self._closing and not self._rows and not batch
                    if self._calls or flush or refresh or done:
                        break
                    wake = ([] if self._closing else [next_refresh]) + \
                        ([max(first_at + self.flush_s, retry_at)] if batch else [])
                    self._work.wait(max(0.001, min(wake) - now) if wake else None)
                calls = list(self._calls)
                self._calls.clear()
            for fut, fn in calls:
                self._call(fut, fn)
            if refresh:
                self._call(self.first_refresh if not self.first_refresh.done() else Future(), self._refresh)
                next_refresh = time.monotonic() + self.refresh_s
            if flush:
                if self._write(batch):
                    if self.journal is not None:
                        with self._lock:
                            self.journal.mark_committed(len(batch))
                    batch, failures = [], 0
                else:
                    failures += 1
                    retry_at = time.monotonic() + min(5.0, 0.1 * 2 ** failures)
                    if self._closing and failures >= 3:
                        with self._lock:
                            batch += list(self._rows)
                            self._rows.clear()
                        self._dump(batch)
                        batch = []
            if done and not calls:
                with self._lock:
                    self._batch_size = 0
                    for fut, _ in self._calls:
                        fut.set_exception(RuntimeError("the store thread has stopped"))
                    self._calls.clear()
                return

    def _recover(self) -> None:
        """Store the journaled rows of routers that died on this store, before serving."""
        try:
            if not self.store.path.exists():
                self.store.migrate()
            found, stored = replay_orphans(self.store)
        except Exception as exc:  # the journals stay for the next start; serving goes on
            self._failed(exc)
            return
        if found:
            self.counters.add("log.recovered", stored)
            print(f"tollgate serve: stored {stored} row(s) journaled by a router that stopped before writing them "
                  f"({found - stored} of its journal were already stored).", file=sys.stderr, flush=True)

    def _call(self, fut: Future[Any], fn: Callable[[], Any]) -> None:
        if not fut.set_running_or_notify_cancel():
            return
        try:
            fut.set_result(fn())
        except BaseException as exc:
            fut.set_exception(exc)

    def _refresh(self) -> Assignment:
        try:
            if not self.store.path.exists():
                self.store.migrate()
            with self.store.read() as con:
                self.assignment = assignment(con, self.production)
        except Exception as exc:
            self._failed(exc)
            raise
        self._ok()
        return self.assignment

    def _write(self, batch: list[tuple[str, dict[str, Any]]]) -> bool:
        try:
            with self.store.write() as con:
                new = insert_traffic(con, [r for k, r in batch if k == "traffic"])
                new += sum(insert_feedback(con, **r) for k, r in batch if k == "feedback")
        except Exception as exc:
            self._failed(exc)
            self.counters.add("log.write_errors")
            return False
        self._ok()
        self.counters.add("log.rows_written", new)
        self.counters.add("log.batches")
        return True

    def _ok(self) -> None:
        self.last_ok, self.last_error = time.monotonic(), None

    def _failed(self, exc: Exception) -> None:
        self.last_error = f"{type(exc).__name__}: {exc}"
        print(f"tollgate serve: store: {self.last_error}", file=sys.stderr, flush=True)

    def _dump(self, rows: list[tuple[str, dict[str, Any]]]) -> None:
        """The store stayed unwritable at shutdown: keep the rows in files ``tollgate ... ingest`` takes."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        for kind in ("traffic", "feedback"):
            mine = [r for k, r in rows if k == kind]
            if not mine:
                continue
            path = self.store.path.parent / f"unwritten-{kind}-{stamp}.jsonl"
            with path.open("a", encoding="utf-8") as f:
                for r in mine:
                    if kind == "traffic":
                        r = {**{k: r[k] for k in ("request_id", "user_id", "arm", "model", "output", "latency_ms",
                                                  "prompt_tokens", "completion_tokens", "error")},
                             "ts": r["ts"].isoformat() + "Z", "input": json.loads(r["input"])}
                    else:
                        r = {**r, "ts": r["ts"].isoformat() + "Z"}
                    f.write(json.dumps(r, ensure_ascii=False) + "\n")
            print(f"tollgate serve: the store stayed unwritable; {len(mine)} {kind} row(s) saved to {path}: "
                  f"store them with 'tollgate {kind} ingest {path}'.", file=sys.stderr, flush=True)
