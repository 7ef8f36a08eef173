"""Ingesting production traffic and user feedback: JSONL, CSV or Parquet.

DuckDB reads the file natively (never row by row in Python) into a staging table, and an explicit
schema written as SQL checks validates every row at once: each bad row is reported with its row
number, column and problem. Staging, checks and the insert are one transaction, so a bad file or
a killed ingest stores nothing, and memory is capped by DuckDB's limit (it spills to disk), not by
the file's length. Re-ingesting the same file adds nothing: traffic is keyed by (request id,
model), feedback by a hash of its content. The rare file DuckDB cannot even read (bytes that are
not UTF-8, a line over the size limit) is scanned by Python to name the exact line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from harness import store as st
from harness.errors import TollgateInputError
from harness.yamlfile import printable_errors

MAX_ROW_BYTES = 1 << 20
MAX_TOKENS = 2**31  # the store's INTEGER columns
MEMORY_LIMIT = "512MB"
ARMS = ("production", "shadow", "beta")
FEEDBACK_KINDS = ("thumb", "rating", "comment", "correction")
TRAFFIC_COLUMNS = ("request_id", "ts", "user_id", "arm", "model", "input", "output", "latency_ms", "prompt_tokens",
                   "completion_tokens", "error")
TRAFFIC_REQUIRED = ("request_id", "ts", "model", "input")
FEEDBACK_COLUMNS = ("request_id", "kind", "value", "ts", "user_id")
FEEDBACK_REQUIRED = ("request_id", "kind", "value", "ts")
JSON_VALUED = ("input", "value")  # text, or an object kept as JSON
THUMBS = {"up": "1", "down": "0", "1": "1", "0": "0", "true": "1", "false": "0", "+1": "1", "-1": "0",
          "👍": "1", "👎": "0"}
VALUE_HINT = {"thumb": "up or down (1/0, true/false)", "rating": "a whole number 1 to 5",
              "comment": "non-empty text", "correction": "the right answer (a JSON object or text)"}


@dataclass
class Problem:
    row: int  # 1-based data row: the line for JSONL, the line after the header for CSV, the row for Parquet
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


def feedback_value(kind: str, value: Any) -> str | None:
    """The stored form of one value (thumb '1'/'0', rating '1'..'5', text, correction JSON), or None if
    invalid. The router validates POST /feedback with it; files get the same rules in SQL below."""
    if value is None or (isinstance(value, float) and value != value):
        return None
    if kind == "thumb":
        return THUMBS.get(str(value).strip().lower())
    if kind == "rating":
        try:
            r = float(value)
        except (TypeError, ValueError, OverflowError):
            return None
        return str(int(r)) if math.isfinite(r) and 1 <= r <= 5 and r == int(r) else None
    if kind == "correction":
        try:
            if isinstance(value, dict):
                return json.dumps(value, ensure_ascii=False, sort_keys=True)
            text = str(value)
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                return text if text.strip() else None
            return json.dumps(obj, ensure_ascii=False, sort_keys=True) if isinstance(obj, dict) else text
        except (RecursionError, ValueError):  # nested past what JSON can carry
            return None
    text = str(value)
    return text if text.strip() else None


# -- staging: any format into one table of text columns, with row numbers -----------------------------
def _stage(con: Any, path: Path, columns: tuple[str, ...]) -> list[str]:
    """Create ``_stage(_row, _raw, <columns as VARCHAR>, <col>_json)``; returns the columns present.

    ``<col>_json`` keeps a value's JSON form, which matters for ``input`` (text or an object of
    fields) and a correction's ``value``.
    """
    suffix = path.suffix.lower()
    if not path.exists():
        raise TollgateInputError("file not found.", file=path)
    p = str(path)
    if suffix in (".jsonl", ".ndjson"):
        try:
            con.execute("""CREATE TEMP TABLE _lines AS
                SELECT row_number() OVER () AS _row, line FROM read_csv(?, columns={'line': 'VARCHAR'},
                    delim='\x01', quote='', escape='', header=false, auto_detect=false, max_line_size=?)""",
                        [p, MAX_ROW_BYTES + 1])
        except Exception as exc:  # duckdb.InvalidInputException: not UTF-8, or a line over the limit
            _scan_for_error(path)
            line = _line_with(path, b"\x01")
            raise TollgateInputError(f"cannot be read as JSON lines: {str(exc).splitlines()[0]}.", file=path,
                                     line=line) from None
        con.execute("UPDATE _lines SET line = NULL WHERE trim(line) = ''")  # blank lines keep their numbers
        bad = con.execute("""SELECT _row, ok, typ FROM (
                                 SELECT _row, json_valid(line) AS ok,
                                        CASE WHEN json_valid(line) THEN json_type(line) END AS typ
                                 FROM _lines WHERE line IS NOT NULL)
                             WHERE NOT ok OR typ <> 'OBJECT' ORDER BY _row LIMIT 1""").fetchall()
        if bad:
            row, valid, typ = bad[0]
            raise TollgateInputError("is not valid JSON." if not valid else
                                     f"must be a JSON object, found {str(typ).lower()}.", file=path, line=row)
        # one parse for every text value, one for each value whose JSON form matters, one for the keys
        paths = "[" + ", ".join(f"'$.{c}'" for c in columns) + "]"
        text = ", ".join(f"v[{i + 1}] AS {c}" for i, c in enumerate(columns))
        as_json = ", ".join(f"json_extract(line, '$.{c}') AS {c}_json" if c in JSON_VALUED
                            else f"NULL::JSON AS {c}_json" for c in columns)
        con.execute(f"""CREATE TEMP TABLE _stage AS
                        SELECT _row, line AS _raw, {text}, {as_json}, json_keys(line) AS _keys
                        FROM (SELECT _row, line, json_extract_string(line, {paths}) AS v FROM _lines
                              WHERE line IS NOT NULL)""")
        keys = con.execute("SELECT DISTINCT unnest(_keys) FROM _stage").fetchall()
        return [k for (k,) in keys]
    if suffix == ".csv":
        reader = "read_csv(?, all_varchar=true, header=true, max_line_size=?)"
        params: list[Any] = [p, MAX_ROW_BYTES + 1]
    elif suffix == ".parquet":
        reader = "read_parquet(?)"
        params = [p]
    else:
        raise TollgateInputError(f"has an unknown format '{suffix}'; use .jsonl, .csv or .parquet.", file=path)
    try:
        present = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {reader}", params).fetchall()]
    except Exception as exc:  # duckdb.Error: unreadable file
        if suffix == ".csv":
            _scan_for_error(path)  # not UTF-8, or a line over the limit: name the line
        msg = str(exc).splitlines()[0]
        raise TollgateInputError(f"cannot be read as {suffix[1:].upper()}: {msg}.", file=path) from None
    sel = []
    for c in columns:
        if c in present:
            sel.append(f'CAST("{c}" AS VARCHAR) AS {c}, '
                       f'CASE WHEN json_valid(CAST("{c}" AS VARCHAR)) AND json_type(CAST("{c}" AS VARCHAR)) = '
                       f"'OBJECT' THEN CAST(\"{c}\" AS JSON) ELSE to_json(CAST(\"{c}\" AS VARCHAR)) END AS {c}_json")
        else:
            sel.append(f"NULL::VARCHAR AS {c}, NULL::JSON AS {c}_json")
    try:
        con.execute(f"""CREATE TEMP TABLE _stage AS SELECT row_number() OVER () AS _row,
                        CAST(to_json(t) AS VARCHAR) AS _raw, {', '.join(sel)}, ? AS _keys FROM {reader} t""",
                    [present, *params])
    except Exception as exc:
        if suffix == ".csv":
            _scan_for_error(path)
        msg = str(exc).splitlines()[0]
        raise TollgateInputError(f"cannot be read as {suffix[1:].upper()}: {msg}.", file=path) from None
    return present


def _line_with(path: Path, needle: bytes) -> int | None:
    """The first line holding ``needle`` (a control byte DuckDB's line reader refuses), if any."""
    with path.open("rb") as f:
        for n, raw in enumerate(f, 1):
            if needle in raw:
                return n
    return None


def _scan_for_error(path: Path) -> None:
    """Find the exact line DuckDB could not read (not UTF-8, over the size cap) and say what is wrong."""
    from harness.examples import read_lines

    for _ in read_lines(path, max_line_bytes=MAX_ROW_BYTES):
        pass


# -- the schema, as SQL checks --------------------------------------------------------------------------
def _present(c: str) -> str:
    return f"({c} IS NOT NULL AND trim({c}) <> '')"


def _ts_ok(c: str) -> str:
    """A real moment: DuckDB also parses 'infinity' and '-infinity', which no request happened at."""
    return (f"(coalesce(isfinite(try_cast({c} AS TIMESTAMPTZ)), FALSE) OR "
            f"coalesce(isfinite(try_cast({c} AS TIMESTAMP)), FALSE))")


def _checks(kind: str, models: set[str]) -> list[tuple[str, str, str]]:
    """(column, SQL condition that is TRUE for a bad row, problem) — the file's schema."""
    if kind == "traffic":
        listed = ", ".join(sorted(models)) or "none"
        return [
            ("request_id", f"NOT {_present('request_id')}", "must be a non-empty id"),
            ("ts", f"NOT {_ts_ok('ts')}", "must be an ISO 8601 time, e.g. 2026-11-27T09:30:00Z"),
            ("model", "model IS NULL OR NOT list_contains($models, model)",
             f"must be a model of tollgate.yaml ({listed})"),
            ("arm", "arm IS NOT NULL AND NOT list_contains($arms, arm)", f"must be one of {', '.join(ARMS)}"),
            ("input", "input_json IS NULL OR json_type(input_json) NOT IN ('VARCHAR', 'OBJECT') OR "
                      "(json_type(input_json) = 'VARCHAR' AND trim(input) = '') OR input_json = '{}'",
             "must be the request: text or an object of fields"),
            ("latency_ms", "latency_ms IS NOT NULL AND coalesce(NOT isfinite(try_cast(latency_ms AS DOUBLE)) OR "
                           "try_cast(latency_ms AS DOUBLE) < 0, TRUE)", "must be a finite number of milliseconds >= 0"),
            *((c, f"{c} IS NOT NULL AND coalesce(NOT isfinite(try_cast({c} AS DOUBLE)) OR try_cast({c} AS DOUBLE) < 0 "
                  f"OR try_cast({c} AS DOUBLE) >= {MAX_TOKENS} OR try_cast({c} AS DOUBLE) % 1 <> 0, TRUE)",
               f"must be a whole count >= 0 and below {MAX_TOKENS:,}") for c in ("prompt_tokens", "completion_tokens")),
        ]
    value_bad = " OR ".join(f"(kind = '{k}' AND _value IS NULL)" for k in FEEDBACK_KINDS)
    return [
        ("request_id", f"NOT {_present('request_id')}", "must be a non-empty id"),
        ("kind", "kind IS NULL OR NOT list_contains($kinds, kind)", f"must be one of {', '.join(FEEDBACK_KINDS)}"),
        ("ts", f"NOT {_ts_ok('ts')}", "must be an ISO 8601 time"),
        ("value", f"list_contains($kinds, kind) AND ({value_bad})", "VALUE"),
    ]


def _feedback_value_sql() -> str:
    """feedback_value() in SQL: the normalised value, or NULL when the value is not valid for its kind."""
    thumbs = ", ".join(f"'{k}': '{v}'" for k, v in THUMBS.items())
    return f"""CASE kind
        WHEN 'thumb' THEN MAP {{{thumbs}}}[lower(trim(value))]
        WHEN 'rating' THEN CASE WHEN try_cast(value AS DOUBLE) BETWEEN 1 AND 5
                                 AND try_cast(value AS DOUBLE) % 1 = 0
                            THEN CAST(CAST(try_cast(value AS DOUBLE) AS INTEGER) AS VARCHAR) END
        WHEN 'correction' THEN CASE WHEN json_type(value_json) = 'OBJECT' THEN CAST(value_json AS VARCHAR)
                                    WHEN trim(value) <> '' THEN value END
        WHEN 'comment' THEN CASE WHEN trim(value) <> '' THEN value END END"""


def _problems(con: Any, kind: str, models: set[str], limit: int) -> tuple[list[Problem], int]:
    """(the first ``limit`` problems, how many rows have any); every problem stays in table ``_bad``."""
    parts = []
    for column, bad, problem in _checks(kind, models):
        value = column if column != "input" else "CAST(input_json AS VARCHAR)"
        got = f"coalesce(chr(39) || left({value}, 80) || chr(39), 'nothing')"
        hint = "CASE kind " + " ".join(f"WHEN '{k}' THEN '{h}'" for k, h in VALUE_HINT.items()) + " END"
        msg = (f"'a ' || kind || ' must be ' || {hint} || '; got ' || {got}" if problem == "VALUE"
               else f"'{problem}; got ' || {got}")
        parts.append(f"SELECT _row, '{column}' AS col, {msg} AS problem FROM _stage WHERE {bad}")
    sql = f"CREATE TEMP TABLE _bad AS {' UNION ALL '.join(parts)}"
    values = {"models": sorted(models), "arms": list(ARMS), "kinds": list(FEEDBACK_KINDS)}
    con.execute(sql, {k: v for k, v in values.items() if f"${k}" in sql})
    rows = con.execute("SELECT _row, col, problem FROM _bad ORDER BY _row, col LIMIT ?", [limit]).fetchall()
    n_bad = con.execute("SELECT count(DISTINCT _row) FROM _bad").fetchall()[0][0]
    return [Problem(r, c, p) for r, c, p in rows], n_bad


# the valid staged rows as traffic rows (parameters: source, ingested_at)
TRAFFIC_SELECT = """SELECT request_id, model, coalesce(arm, 'production') AS arm,
                   coalesce(CAST(try_cast(ts AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP),
                            try_cast(ts AS TIMESTAMP)) AS ts,
                   user_id, CAST(input_json AS VARCHAR) AS input, output, try_cast(latency_ms AS DOUBLE) AS latency_ms,
                   CAST(try_cast(prompt_tokens AS DOUBLE) AS INTEGER) AS prompt_tokens,
                   CAST(try_cast(completion_tokens AS DOUBLE) AS INTEGER) AS completion_tokens, error,
                   ? AS source, ? AS ingested_at
            FROM _stage WHERE _row NOT IN (SELECT _row FROM _bad)"""


# -- the command ----------------------------------------------------------------------------------------------
@printable_errors()  # a bad value with a line break is echoed escaped: the message stays one line
def ingest(path: Path, store: st.Store, *, kind: str, models: set[str] | None = None, skip_invalid: bool = False,
           rejected_path: Path | None = None, max_problems: int = 20) -> IngestReport:
    """Validate ``path`` whole in a scratch database, then store it in one transaction (``kind``:
    traffic or feedback). A rejected file never touches the store, not even to create it."""
    import tempfile

    import duckdb

    columns, required = ((TRAFFIC_COLUMNS, TRAFFIC_REQUIRED) if kind == "traffic"
                         else (FEEDBACK_COLUMNS, FEEDBACK_REQUIRED))
    with tempfile.TemporaryDirectory(prefix="tollgate-ingest-") as spill:
        con = duckdb.connect()
        try:
            con.execute(f"SET memory_limit = '{MEMORY_LIMIT}'")
            con.execute("SET temp_directory = ?", [spill])  # the staging tables spill here beyond the limit
            n, n_bad, rejected_file = _validate(con, path, kind, columns, required, models or set(), skip_invalid,
                                                rejected_path, max_problems)
            stored = _insert(con, store, path, kind)
        finally:
            con.close()
    return IngestReport(str(path), n, stored, n - n_bad - stored, n_bad, rejected_file)


def _validate(con: Any, path: Path, kind: str, columns: tuple[str, ...], required: tuple[str, ...],
              models: set[str], skip_invalid: bool, rejected_path: Path | None,
              max_problems: int) -> tuple[int, int, str | None]:
    """Stage and check the file: (rows, bad rows, rejected file); raises on any problem unless skipping."""
    present = _stage(con, path, columns)
    n = con.execute("SELECT count(*) FROM _stage").fetchall()[0][0]
    if n == 0:
        raise TollgateInputError("holds no rows.", file=path)
    unknown = sorted(set(present) - set(columns))
    missing = [c for c in required if c not in present]
    if unknown or missing:
        what = (f"unknown column '{unknown[0]}' (allowed: {', '.join(columns)})" if unknown
                else f"required column '{missing[0]}' is missing")
        where = None
        if unknown and path.suffix.lower() in (".jsonl", ".ndjson"):
            where = con.execute("SELECT min(_row) FROM _stage WHERE list_contains(_keys, ?)",
                                [unknown[0]]).fetchall()[0][0]
        raise TollgateInputError(f"{what}; nothing stored.", file=path, line=where, field=(unknown or missing)[0])
    if kind == "feedback":
        con.execute(f"ALTER TABLE _stage ADD COLUMN _value VARCHAR; UPDATE _stage SET _value = "
                    f"{_feedback_value_sql()}")
    problems, n_bad = _problems(con, kind, models, max_problems)
    if problems and not skip_invalid:
        shown = "; ".join(map(str, problems))
        more = f"; and more in {n_bad - len({p.row for p in problems})} other row(s)" \
            if n_bad > len({p.row for p in problems}) else ""
        raise TollgateInputError(f"{n_bad} invalid row(s), nothing stored: {shown}{more}. Fix them, or pass "
                                 f"--skip-invalid to store the valid rows and write the rejected ones to a "
                                 f"file.", file=path)
    rejected_file = None
    if n_bad:
        out = rejected_path or path.with_name(path.stem + ".rejected.jsonl")
        if not out.parent.is_dir():
            raise TollgateInputError(f"cannot write the rejected rows: folder {out.parent} does not exist.",
                                     field="--rejected")
        _write_rejected(con, out)
        rejected_file = str(out)
    return n, n_bad, rejected_file


def _insert(con: Any, store: st.Store, path: Path, kind: str) -> int:
    """The valid rows into the store, in one transaction on the store's own file; returns how many were new."""
    now = st.utcnow()
    if kind == "traffic" and store.traffic_parquet is not None:
        return _write_parquet(con, store, path, now)
    if kind == "traffic":
        sql = """INSERT INTO s.traffic (request_id, model, arm, ts, user_id, input, output, latency_ms,
                        prompt_tokens, completion_tokens, error, source, ingested_at)
            """ + TRAFFIC_SELECT + """
            ON CONFLICT DO NOTHING"""
    else:
        sql = """INSERT INTO s.feedback (feedback_id, request_id, kind, value, ts, user_id, source, ingested_at)
            SELECT sha256(concat_ws(chr(31), request_id, kind, _value, CAST(t AS VARCHAR))), request_id, kind,
                   _value, t, user_id, ?, ?
            FROM (SELECT *, coalesce(CAST(try_cast(ts AS TIMESTAMPTZ) AT TIME ZONE 'UTC' AS TIMESTAMP),
                                     try_cast(ts AS TIMESTAMP)) AS t
                  FROM _stage WHERE _row NOT IN (SELECT _row FROM _bad))
            ON CONFLICT DO NOTHING"""
    store.migrate()
    with store.attached(con, "s"):
        con.begin()
        try:
            before = con.execute(f"SELECT count(*) FROM s.{kind}").fetchall()[0][0]
            con.execute(sql, [path.name, now])
            stored = con.execute(f"SELECT count(*) FROM s.{kind}").fetchall()[0][0] - before
        except BaseException:
            con.rollback()
            raise
        con.commit()  # a commit that fails (a full disk) ends the transaction itself, stored or not
    return stored


def _write_parquet(con: Any, store: st.Store, path: Path, now: Any) -> int:
    """Parquet mode: the valid rows, less those already stored (in the files or the table), as new
    files under the traffic root (``harness.traffic_parquet``); returns how many were new."""
    from harness import traffic_parquet as tp

    root = store.traffic_parquet
    assert root is not None
    con.execute(f"CREATE TEMP TABLE _ingest AS {TRAFFIC_SELECT}", [path.name, now])
    store.migrate()  # the table part of the view (traffic stored before the switch)
    with store.attached(con, "s"):
        return tp.write_rows(con, "_ingest", root, "s.main.traffic")


def _write_rejected(con: Any, out: Path) -> None:
    """The rejected rows, each with its row number and problems, in a file that can be fixed and re-ingested."""
    rows = con.execute("""SELECT s._row, list(b.col || ': ' || b.problem ORDER BY b.col), any_value(s._raw)
                          FROM _stage s JOIN _bad b USING (_row) GROUP BY s._row ORDER BY s._row""").fetchall()
    tmp = out.with_name(out.name + ".tmp")
    with tmp.open("w", encoding="utf-8") as f:
        for row, problems, raw in rows:
            f.write(json.dumps({"row": row, "problems": problems, "record": json.loads(raw)}, ensure_ascii=False)
                    + "\n")
    tmp.replace(out)
