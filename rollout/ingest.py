"""Ingesting production traffic and user feedback: JSONL, CSV or Parquet, streamed in chunks.

A file is validated whole before anything is stored (pandera, lazily, so every bad row is
reported with its row number, column and problem), then inserted a chunk per transaction: a
killed ingest leaves whole chunks, and running it again completes it. Re-ingesting
the same file adds nothing: traffic is keyed by (request id, model), feedback by a hash of its
content. Memory stays bounded by the chunk size, whatever the file's length.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import store as st
from harness.errors import TollgateInputError
from harness.hashing import hash_obj

CHUNK = 50_000
MAX_ROW_BYTES = 1 << 20
ARMS = ("production", "shadow", "beta")
FEEDBACK_KINDS = ("thumb", "rating", "comment", "correction")
TRAFFIC_COLUMNS = ("request_id", "ts", "user_id", "arm", "model", "input", "output", "latency_ms", "prompt_tokens",
                   "completion_tokens", "error")
FEEDBACK_COLUMNS = ("request_id", "kind", "value", "ts", "user_id")
THUMBS = {"up": "1", "down": "0", "1": "1", "0": "0", "true": "1", "false": "0", "+1": "1", "-1": "0",
          "👍": "1", "👎": "0"}


@dataclass
class Problem:
    row: int  # 1-based data row (the line for JSONL, the line after the header for CSV)
    column: str
    problem: str

    def __str__(self) -> str:
        return f"row {self.row}, column '{self.column}': {self.problem}"


@dataclass
class IngestReport:
    file: str
    rows: int
    stored: int
    duplicates: int
    rejected: int
    rejected_file: str | None = None


# -- reading ------------------------------------------------------------------------------------------
def _chunks(path: Path) -> Iterator[tuple[int, Any]]:
    """(first row number, DataFrame of strings/objects) chunks of any supported format."""
    import pandas as pd

    suffix = path.suffix.lower()
    if not path.exists():
        raise TollgateInputError("file not found.", file=path)
    if suffix in (".jsonl", ".ndjson"):
        yield from _jsonl_chunks(path)
    elif suffix == ".csv":
        try:
            reader = pd.read_csv(path, dtype=object, keep_default_na=False, chunksize=CHUNK, encoding="utf-8")
            row = 1
            for df in reader:
                yield row, df.replace({"": None})
                row += len(df)
        except UnicodeDecodeError as exc:
            raise TollgateInputError(f"is not valid UTF-8 ({exc.reason} at byte {exc.start}); save it as UTF-8.",
                                     file=path) from None
        except pd.errors.ParserError as exc:
            raise TollgateInputError(f"is not valid CSV: {exc}.", file=path) from None
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:  # pyarrow.ArrowInvalid: not a parquet file
            raise TollgateInputError(f"is not a readable Parquet file: {exc}.", file=path) from None
        row = 1
        for batch in pf.iter_batches(batch_size=CHUNK):
            df = batch.to_pandas()
            yield row, df
            row += len(df)
    else:
        raise TollgateInputError(f"has an unknown format '{suffix}'; use .jsonl, .csv or .parquet.", file=path)


def _jsonl_chunks(path: Path) -> Iterator[tuple[int, Any]]:
    rows: list[dict[str, Any]] = []
    first = 1
    lineno = 0
    with path.open("rb") as f:
        while True:
            raw = f.readline(MAX_ROW_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_ROW_BYTES and not raw.endswith(b"\n"):
                raise TollgateInputError(f"is longer than {MAX_ROW_BYTES:,} bytes.", file=path, line=lineno)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TollgateInputError(f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x}); save the file as UTF-8.",
                                         file=path, line=lineno) from None
            if not text.strip():
                rows.append({})  # keeps row numbers equal to line numbers; dropped below
                continue
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as exc:
                raise TollgateInputError(f"is not valid JSON: {exc.msg} at column {exc.colno}.", file=path,
                                         line=lineno) from None
            if not isinstance(obj, dict):
                raise TollgateInputError(f"must be a JSON object, found {type(obj).__name__}.", file=path,
                                         line=lineno)
            rows.append(obj)
            if len(rows) >= CHUNK:
                yield first, _frame(rows)
                first += len(rows)
                rows = []
    if rows:
        yield first, _frame(rows)


def _frame(rows: list[dict[str, Any]]) -> Any:
    import pandas as pd

    df = pd.DataFrame.from_records(rows).astype(object)
    df.index = range(len(df))
    return df[[bool(r) for r in rows]]  # blank lines: gone, their row numbers kept


# -- validation ---------------------------------------------------------------------------------------
def _traffic_schema(models: set[str]) -> Any:
    import pandera.pandas as pa

    def present(s: Any) -> Any:
        return s.notna() & (s.astype(str).str.strip() != "")

    def ts_ok(s: Any) -> Any:
        import pandas as pd

        return pd.to_datetime(s, errors="coerce", utc=True, format="mixed").notna()

    def number(s: Any, integer: bool = False) -> Any:
        import pandas as pd

        v = pd.to_numeric(s, errors="coerce")
        ok = s.isna() | (v.notna() & (v >= 0))
        return ok & (s.isna() | (v % 1 == 0)) if integer else ok

    return pa.DataFrameSchema({
        "request_id": pa.Column(None, pa.Check(present, error="must be a non-empty id")),
        "ts": pa.Column(None, pa.Check(ts_ok, error="must be an ISO 8601 time, e.g. 2026-11-27T09:30:00Z")),
        "user_id": pa.Column(None, nullable=True, required=False),
        "arm": pa.Column(None, pa.Check(lambda s: s.isna() | s.isin(ARMS), error=f"must be one of {', '.join(ARMS)}"),
                         nullable=True, required=False),
        "model": pa.Column(None, pa.Check(lambda s: s.isin(sorted(models)),
                                            error=f"must be a model of tollgate.yaml ({', '.join(sorted(models))})")),
        "input": pa.Column(None, pa.Check(present, error="must be the request: text or an object of fields")),
        "output": pa.Column(None, nullable=True, required=False),
        "latency_ms": pa.Column(None, pa.Check(number, error="must be a number of milliseconds >= 0"),
                                nullable=True, required=False),
        "prompt_tokens": pa.Column(None, pa.Check(lambda s: number(s, True), error="must be a count >= 0"),
                                   nullable=True, required=False),
        "completion_tokens": pa.Column(None, pa.Check(lambda s: number(s, True), error="must be a count >= 0"),
                                       nullable=True, required=False),
        "error": pa.Column(None, nullable=True, required=False),
    }, strict=True, name="traffic")


def _feedback_schema() -> Any:
    import pandera.pandas as pa

    def ts_ok(s: Any) -> Any:
        import pandas as pd

        return pd.to_datetime(s, errors="coerce", utc=True, format="mixed").notna()

    return pa.DataFrameSchema({
        "request_id": pa.Column(None, pa.Check(lambda s: s.notna() & (s.astype(str).str.strip() != ""),
                                                 error="must be a non-empty id")),
        "kind": pa.Column(None, pa.Check(lambda s: s.isin(FEEDBACK_KINDS),
                                           error=f"must be one of {', '.join(FEEDBACK_KINDS)}")),
        "value": pa.Column(None, nullable=True),
        "ts": pa.Column(None, pa.Check(ts_ok, error="must be an ISO 8601 time")),
        "user_id": pa.Column(None, nullable=True, required=False),
    }, strict=True, name="feedback")


def feedback_value(kind: str, value: Any) -> str | None:
    """The stored form of a value (thumb '1'/'0', rating '1'..'5', text, correction JSON), or None if invalid."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if kind == "thumb":
        return THUMBS.get(str(value).strip().lower())
    if kind == "rating":
        try:
            r = float(value)
        except (TypeError, ValueError):
            return None
        return str(int(r)) if r == int(r) and 1 <= r <= 5 else None
    if kind == "correction":
        if isinstance(value, dict):
            return json.dumps(value, ensure_ascii=False, sort_keys=True)
        text = str(value)
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            return text if text.strip() else None
        return json.dumps(obj, ensure_ascii=False, sort_keys=True) if isinstance(obj, dict) else text
    text = str(value)
    return text if text.strip() else None


def _problems(schema: Any, df: Any, first_row: int) -> list[Problem]:
    import pandera.pandas as pa

    try:
        schema.validate(df, lazy=True)
        return []
    except pa.errors.SchemaErrors as exc:
        out = []
        for rec in exc.failure_cases.to_dict("records"):
            col, check, case, idx = rec["column"], str(rec["check"]), rec["failure_case"], rec["index"]
            if check == "column_in_schema":
                out.append(Problem(first_row, str(case), f"unknown column (allowed: {', '.join(schema.columns)})"))
            elif check == "column_in_dataframe":
                out.append(Problem(first_row, str(case), "required column is missing"))
            elif idx is None or idx != idx:
                out.append(Problem(first_row, str(col), check))
            else:
                out.append(Problem(first_row + int(idx), str(col),
                                   f"{'must not be empty' if check == 'not_nullable' else check}; got {case!r}"))
        return out


def _traffic_rows(df: Any, source: str, now: Any) -> Any:
    import pandas as pd

    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in TRAFFIC_COLUMNS})
    out["request_id"] = out["request_id"].astype(str)
    out["arm"] = out["arm"].fillna("production")
    out["ts"] = pd.to_datetime(out["ts"], utc=True, format="mixed").dt.tz_localize(None)
    out["input"] = [json.dumps(v, ensure_ascii=False) if not isinstance(v, str) or not v.lstrip().startswith("{")
                    else v for v in out["input"]]
    for c in ("latency_ms",):
        out[c] = pd.to_numeric(out[c], errors="coerce")
    for c in ("prompt_tokens", "completion_tokens"):
        out[c] = pd.to_numeric(out[c], errors="coerce").astype("Int64")
    out["source"] = source
    out["ingested_at"] = now
    return out


def _feedback_rows(df: Any, source: str, now: Any, first_row: int) -> tuple[Any, list[Problem]]:
    import pandas as pd

    out = pd.DataFrame({c: df[c] if c in df.columns else None for c in FEEDBACK_COLUMNS})
    values, problems = [], []
    for i, (kind, value) in enumerate(zip(out["kind"], out["value"], strict=True)):
        v = feedback_value(kind, value) if kind in FEEDBACK_KINDS else None
        values.append(v)
        if v is None and kind in FEEDBACK_KINDS:
            hint = {"thumb": "up or down (1/0, true/false)", "rating": "a whole number 1 to 5",
                    "comment": "non-empty text", "correction": "the right answer (a JSON object or text)"}[kind]
            problems.append(Problem(first_row + int(df.index[i]), "value", f"a {kind} must be {hint}; got {value!r}"))
    out["value"] = values
    out["request_id"] = out["request_id"].astype(str)
    out["ts"] = pd.to_datetime(out["ts"], utc=True, format="mixed").dt.tz_localize(None)
    out["feedback_id"] = [hash_obj(r, k, v, str(t)) for r, k, v, t in
                          zip(out["request_id"], out["kind"], out["value"], out["ts"], strict=True)]
    out["source"] = source
    out["ingested_at"] = now
    return out, problems


# -- the two commands -----------------------------------------------------------------------------------
def ingest(path: Path, store: st.Store, *, kind: str, models: set[str] | None = None, skip_invalid: bool = False,
           rejected_path: Path | None = None, max_problems: int = 20) -> IngestReport:
    """Validate ``path`` whole, then store it in one transaction (``kind``: traffic or feedback)."""
    now = st.utcnow()
    source = path.name
    problems: list[Problem] = []
    n = 0
    bad_rows: set[int] = set()
    for first, df in _chunks(path):  # pass 1: validate everything, store nothing
        n += len(df)
        if kind == "traffic":
            found = _problems(_traffic_schema(models or set()), df, first)
        else:
            found = _problems(_feedback_schema(), df, first)
            if not any(p.problem.startswith(("unknown column", "required column")) for p in found):
                found += _feedback_rows(df, source, now, first)[1]
        problems += found
        bad_rows |= {p.row for p in found}
    if n == 0:
        raise TollgateInputError("holds no rows.", file=path)
    problems.sort(key=lambda p: (p.row, p.column))
    structural = [p for p in problems if p.problem.startswith(("unknown column", "required column"))]
    if problems and (not skip_invalid or structural):
        shown = "; ".join(map(str, (structural or problems)[:max_problems]))
        more = f"; and {len(problems) - max_problems} more" if len(problems) > max_problems else ""
        hint = "" if structural else " Fix them, or pass --skip-invalid to store the valid rows and write the " \
                                     "rejected ones to a file."
        raise TollgateInputError(f"{len(bad_rows)} invalid row(s), nothing stored: {shown}{more}.{hint}", file=path)
    stored = 0
    rejected_file = None
    if bad_rows:
        rejected_file = str(rejected_path or path.with_name(path.stem + ".rejected.jsonl"))
        _write_rejected(path, bad_rows, problems, Path(rejected_file))
    # pass 2: one transaction per chunk keeps memory bounded; a killed ingest leaves whole chunks
    # and the same command resumes (rows already stored are skipped by key)
    for first, df in _chunks(path):
        keep = [first + int(i) not in bad_rows for i in df.index]
        df = df[keep]
        if df.empty:
            continue
        with store.write() as con:
            before = con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0]
            if kind == "traffic":
                rows = _traffic_rows(df, source, now)
                con.register("_in", rows)
                con.execute("INSERT INTO traffic (request_id, model, arm, ts, user_id, input, output, latency_ms, "
                            "prompt_tokens, completion_tokens, error, source, ingested_at) "
                            "SELECT request_id, model, arm, ts, user_id, input, output, latency_ms, prompt_tokens, "
                            "completion_tokens, error, source, ingested_at FROM _in ON CONFLICT DO NOTHING")
            else:
                rows, _ = _feedback_rows(df, source, now, first)
                con.register("_in", rows)
                con.execute("INSERT INTO feedback (feedback_id, request_id, kind, value, ts, user_id, source, "
                            "ingested_at) SELECT feedback_id, request_id, kind, value, ts, user_id, source, "
                            "ingested_at FROM _in ON CONFLICT DO NOTHING")
            con.unregister("_in")
            stored += con.execute(f"SELECT count(*) FROM {kind}").fetchall()[0][0] - before
    valid = n - len(bad_rows)
    return IngestReport(str(path), n, stored, valid - stored, len(bad_rows), rejected_file)


def _write_rejected(path: Path, bad_rows: set[int], problems: list[Problem], out: Path) -> None:
    why: dict[int, list[str]] = {}
    for p in problems:
        why.setdefault(p.row, []).append(f"{p.column}: {p.problem}")
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for first, df in _chunks(path):
            for i, rec in zip(df.index, df.to_dict("records"), strict=True):
                row = first + int(i)
                if row in bad_rows:
                    clean = {k: v for k, v in rec.items() if not (isinstance(v, float) and v != v)}
                    f.write(json.dumps({"row": row, "problems": why.get(row, []), "record": clean},
                                       ensure_ascii=False, default=str) + "\n")
    tmp.replace(out)
