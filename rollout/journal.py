"""The router's write-ahead journal: every logged row is in a file before its user gets an answer.

The router answers a user before the store thread has written that request's row (the store is
written in batches, a few times a second), so a ``kill -9``, an out-of-memory kill or a crash of the
process would otherwise lose the rows still queued. Each row is appended to a journal file (one JSON
line, handed to the operating system at once: a killed process loses nothing; a power cut can lose
what the disk had not flushed) when it is queued, and the file is emptied once everything in it is
committed. A router that starts finds the journals of routers that died (a journal's lock is held
for as long as its router lives), stores their rows (inserts are idempotent: a row already committed
is not stored twice) and deletes them.
"""

from __future__ import annotations

import fcntl
import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from harness import store as st
from rollout.records import insert_feedback, insert_traffic

_TIMES = ("ts", "ingested_at")


def journal_dir(store: st.Store) -> Path:
    return store.path.parent / "router-journal"


def _encode(kind: str, row: dict[str, Any]) -> str:
    out = {k: (v.isoformat() if k in _TIMES and isinstance(v, datetime) else v) for k, v in row.items()}
    return json.dumps({"kind": kind, "row": out}, ensure_ascii=False) + "\n"


def _decode(line: str) -> tuple[str, dict[str, Any]]:
    doc = json.loads(line)
    row = {k: (datetime.fromisoformat(v) if k in _TIMES and isinstance(v, str) else v) for k, v in doc["row"].items()}
    return doc["kind"], row


class Journal:
    """One router's journal: numbered segment files, each locked for as long as its router lives.

    Rows are committed in the order they were appended (the store thread writes its queue first in,
    first out, and retries a failed batch before taking more), so a count of committed rows says
    which segments are no longer needed. Not thread-safe: the store thread's lock guards it.
    """

    ROWS_PER_SEGMENT = 4096

    def __init__(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.prefix = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.appended = self.committed = 0
        self._sealed: list[tuple[Any, Path, int]] = []  # (open file, path, rows appended when sealed)
        self._n = 0
        self._open()

    def _open(self) -> None:
        self._n += 1
        self.path = self.folder / f"{self.prefix}-{self._n:06d}.jsonl"
        self._f = self.path.open("a", encoding="utf-8")
        fcntl.flock(self._f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._in_file = 0

    def append(self, kind: str, row: dict[str, Any]) -> None:
        self._f.write(_encode(kind, row))
        self._f.flush()  # in the kernel now: survives the death of this process
        self.appended += 1
        self._in_file += 1
        if self._in_file >= self.ROWS_PER_SEGMENT:
            self._sealed.append((self._f, self.path, self.appended))
            self._open()

    def mark_committed(self, n: int) -> None:
        """``n`` more rows, the oldest not yet committed, are in the store: drop what no longer matters."""
        self.committed += n
        while self._sealed and self._sealed[0][2] <= self.committed:
            f, path, _ = self._sealed.pop(0)
            path.unlink(missing_ok=True)
            f.close()
        if self.committed >= self.appended and self._in_file:
            self._f.truncate(0)
            self._f.seek(0)
            self._in_file = 0

    def close(self) -> None:
        """Close; files still holding uncommitted rows stay for the next router to store."""
        for f, _, _ in self._sealed:
            f.close()
        self._f.close()
        if self.committed >= self.appended:
            self.path.unlink(missing_ok=True)


def replay_orphans(store: st.Store) -> tuple[int, int]:
    """Store the rows of journals whose router died, then delete them; returns (rows found, rows newly
    stored: the others had been committed before the router died)."""
    folder = journal_dir(store)
    if not folder.is_dir():
        return 0, 0
    found = stored = 0
    for path in sorted(folder.glob("*.jsonl")):
        with path.open("r+", encoding="utf-8") as f:
            try:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # its router is alive
            rows = []
            for line in f:
                if not line.endswith("\n"):  # a line cut by the kill: its user never got an answer
                    continue
                try:
                    rows.append(_decode(line))
                except (ValueError, KeyError, TypeError):
                    print(f"tollgate serve: {path}: a journal line that is not a row was skipped.", file=sys.stderr)
            if rows:
                with store.write() as con:
                    stored += insert_traffic(con, [r for k, r in rows if k == "traffic"])
                    stored += sum(insert_feedback(con, **r) for k, r in rows if k == "feedback")
            found += len(rows)
        path.unlink(missing_ok=True)
    return found, stored
