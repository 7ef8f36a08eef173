"""The router's journal: bounded while rows are committed, replayed once by the next router."""

from __future__ import annotations

import json

from harness.store import Store
from rollout.journal import Journal, journal_dir, replay_orphans
from rollout.records import traffic_row


def _rows(n: int, start: int = 0) -> list[dict]:
    return [traffic_row(f"r{i}", "prod", "production", f"prompt {i}", f"answer {i}", user_id="u") for i in
            range(start, start + n)]


def _stored(store: Store) -> int:
    with store.read() as con:
        return con.execute("SELECT count(*) FROM traffic").fetchone()[0]


def test_committed_segments_are_deleted_so_the_journal_stays_small(tmp_path, monkeypatch):
    monkeypatch.setattr(Journal, "ROWS_PER_SEGMENT", 50)
    j = Journal(tmp_path / "j")
    for k in range(40):  # 40 batches of 30 rows, each committed a batch later (the queue is never empty)
        for row in _rows(30, 30 * k):
            j.append("traffic", row)
        if k:
            j.mark_committed(30)
        assert len(list((tmp_path / "j").glob("*.jsonl"))) <= 3
    j.mark_committed(30)
    files = list((tmp_path / "j").glob("*.jsonl"))
    assert len(files) == 1 and files[0].stat().st_size == 0  # everything committed: nothing kept
    j.close()
    assert not list((tmp_path / "j").glob("*.jsonl"))


def test_a_dead_routers_journal_is_stored_once_and_a_live_ones_is_left_alone(tmp_path):
    store = Store(tmp_path / ".tollgate" / "tollgate.duckdb")
    store.migrate()
    dead = Journal(journal_dir(store))
    for row in _rows(20):
        dead.append("traffic", row)
    dead.append("feedback", {"request_id": "r1", "kind": "thumb", "value": "1", "user_id": "u",
                             "ts": _rows(1)[0]["ts"]})
    dead.mark_committed(5)  # the first five were committed before it died ...
    with store.write() as con:
        from rollout.records import insert_traffic

        insert_traffic(con, _rows(5))
    dead._f.write(json.dumps({"kind": "traffic", "row": {"request_id": "cut"}})[:20])  # ... mid-write
    dead._f.flush()
    dead._f.close()  # the process is gone: its lock with it

    live = Journal(journal_dir(store))
    live.append("traffic", _rows(1, 100)[0])

    assert replay_orphans(store) == (21, 16)  # 15 traffic rows and the thumb were new; the cut line skipped
    assert _stored(store) == 20
    with store.read() as con:
        assert con.execute("SELECT count(*) FROM feedback").fetchone()[0] == 1
    assert replay_orphans(store) == (0, 0)  # deleted once stored; the live journal untouched
    assert live.path.exists() and _stored(store) == 20
    live.close()
