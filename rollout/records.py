"""Rows of real traffic and feedback as the router and shadow replay write them.

One traffic row per model answer: ``production`` (what a user saw), ``shadow`` (the candidate's
copy of the same request, never shown), ``beta`` (a beta user's candidate answer). Inserts are
idempotent on (request id, model), so a replay or a retried batch never doubles a row.
"""

from __future__ import annotations

import json
from typing import Any

from harness import store as st
from harness.hashing import hash_obj

TRAFFIC_FIELDS = ("request_id", "model", "arm", "ts", "user_id", "input", "output", "latency_ms", "prompt_tokens",
                  "completion_tokens", "error", "source", "ingested_at")


def traffic_row(request_id: str, model: str, arm: str, input: Any, output: str | None, *, user_id: str | None = None,
                latency_ms: float | None = None, prompt_tokens: int | None = None,
                completion_tokens: int | None = None, error: str | None = None, source: str = "router",
                ts: Any = None) -> dict[str, Any]:
    """One answer as a traffic row; ``input`` is the request as the model got it: text, or template fields."""
    now = st.utcnow()
    return {"request_id": request_id, "model": model, "arm": arm, "ts": ts or now, "user_id": user_id,
            "input": json.dumps(input, ensure_ascii=False),
            "output": output, "latency_ms": latency_ms, "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens, "error": error, "source": source, "ingested_at": now}


def insert_traffic(con: Any, rows: list[dict[str, Any]]) -> int:
    """Insert rows (from :func:`traffic_row`); returns how many were new. On a Parquet-mode connection
    (``harness.traffic_parquet``) they are written as new Parquet files instead of table rows."""
    if not rows:
        return 0
    import pyarrow as pa

    root = st.traffic_parquet_root(con)
    before = con.execute("SELECT count(*) FROM traffic").fetchall()[0][0] if root is None else 0
    tbl = pa.Table.from_pylist([{k: r.get(k) for k in TRAFFIC_FIELDS} for r in rows], schema=pa.schema([
        ("request_id", pa.string()), ("model", pa.string()), ("arm", pa.string()), ("ts", pa.timestamp("us")),
        ("user_id", pa.string()), ("input", pa.string()), ("output", pa.string()), ("latency_ms", pa.float64()),
        ("prompt_tokens", pa.int64()), ("completion_tokens", pa.int64()), ("error", pa.string()),
        ("source", pa.string()), ("ingested_at", pa.timestamp("us"))]))
    con.register("_traffic_in", tbl)
    try:
        if root is not None:  # Parquet mode: one new file per date, the table untouched
            from harness import traffic_parquet as tp

            return tp.write_rows(con, "_traffic_in", root, st.traffic_table(con))
        cols = ", ".join(TRAFFIC_FIELDS)
        con.execute(f"INSERT INTO traffic ({cols}) SELECT {cols} FROM _traffic_in ON CONFLICT DO NOTHING")
    finally:
        con.unregister("_traffic_in")
    return con.execute("SELECT count(*) FROM traffic").fetchall()[0][0] - before


def insert_feedback(con: Any, request_id: str, kind: str, value: str, *, user_id: str | None = None,
                    source: str = "router", ts: Any = None) -> bool:
    """One feedback row (value already normalised by ``rollout.ingest.feedback_value``); False if a duplicate."""
    ts = ts or st.utcnow()
    fid = hash_obj(request_id, kind, value, str(ts))
    before = con.execute("SELECT count(*) FROM feedback WHERE feedback_id = ?", [fid]).fetchall()[0][0]
    con.execute("INSERT INTO feedback (feedback_id, request_id, kind, value, ts, user_id, source, ingested_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
                [fid, request_id, kind, value, ts, user_id, source, st.utcnow()])
    return before == 0
