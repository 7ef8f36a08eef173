"""The baseline of row 5: traffic ingest as a user would write it without Tollgate.

pandas ``read_json(lines=True)``, a pandera ``DataFrameSchema`` with the checks ``tollgate traffic
ingest`` applies (required columns and no unknown ones, non-empty request ids, ISO times, known
models and arms, the input text or an object of fields, non-negative latency and token counts),
validated lazily (every problem reported), then one insert into the same DuckDB table.

    python bench/ingest_pandas.py FILE STORE MODEL[,MODEL...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from harness.store import Store

ARMS = ["production", "shadow", "beta"]


def schema(models: list[str]) -> pa.DataFrameSchema:
    def time_ok(s: pd.Series) -> pd.Series:
        return pd.to_datetime(s, errors="coerce", utc=True, format="ISO8601").notna()

    def request_ok(s: pd.Series) -> pd.Series:
        return s.map(lambda v: (isinstance(v, str) and v.strip() != "") or (isinstance(v, dict) and len(v) > 0))

    count = {"nullable": True, "required": False, "coerce": True, "checks": pa.Check.ge(0)}
    return pa.DataFrameSchema({
        "request_id": pa.Column(str, pa.Check.str_length(min_value=1), coerce=True),
        "ts": pa.Column(str, pa.Check(time_ok, error="must be an ISO 8601 time")),
        "user_id": pa.Column(str, nullable=True, required=False, coerce=True),
        "arm": pa.Column(str, pa.Check.isin(ARMS), nullable=True, required=False),
        "model": pa.Column(str, pa.Check.isin(models)),
        "input": pa.Column(object, pa.Check(request_ok, error="must be text or an object of fields")),
        "output": pa.Column(str, nullable=True, required=False, coerce=True),
        "latency_ms": pa.Column(float, **count),
        "prompt_tokens": pa.Column("Int64", **count),
        "completion_tokens": pa.Column("Int64", **count),
        "error": pa.Column(object, nullable=True, required=False),
    }, strict=True)


def main(path: Path, store_path: Path, models: list[str]) -> int:
    df = pd.read_json(path, lines=True, dtype=False)
    try:
        df = schema(models).validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        print(exc.failure_cases.head(20).to_string(), file=sys.stderr)
        return 2
    df["input"] = df["input"].map(lambda v: json.dumps(v, ensure_ascii=False))
    df["ts"] = pd.to_datetime(df["ts"], utc=True, format="ISO8601").dt.tz_localize(None)
    df["arm"] = df["arm"].fillna("production")
    df["source"] = path.name
    df["ingested_at"] = pd.Timestamp.now(tz="UTC").tz_localize(None)
    cols = ["request_id", "model", "arm", "ts", "user_id", "input", "output", "latency_ms", "prompt_tokens",
            "completion_tokens", "error", "source", "ingested_at"]
    with Store(store_path).write() as con:  # the same table, keys and indexes as Tollgate's store
        con.register("df", df[cols])
        con.execute(f"INSERT INTO traffic ({', '.join(cols)}) SELECT {', '.join(cols)} FROM df ON CONFLICT DO NOTHING")
        stored = con.execute("SELECT count(*) FROM traffic").fetchone()[0]
    print(f"{path}: {len(df):,} rows, {stored:,} stored")
    return 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3].split(",")))
