"""Reading a suite's ``examples.jsonl``: bytes to checked records, or one clear error.

Each line is decoded and parsed on its own so an error names its line; the records are then
validated as a table with pandera (required fields, types, unique ids, no unknown fields). A bad
file is rejected whole: a suite is never half loaded.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from harness.behaviour import Directional, parse_directional
from harness.errors import TollgateInputError
from harness.hashing import hash_obj
from harness.yamlfile import field_path, printable_errors, show

MAX_LINE_BYTES = 1 << 20  # 1 MiB: an example bigger than this is almost surely a broken export
FIELDS = ("id", "input", "expected", "tags", "invariant_to", "directional")
REQUIRED = ("id", "input", "expected")


@dataclass(frozen=True)
class Example:
    id: str
    input: Any
    expected: Any
    tags: tuple[str, ...]
    line: int
    hash: str
    invariant_to: str | None = None
    directional: Directional | None = None

    @property
    def source_id(self) -> str | None:
        """The example whose answer this one is compared with (behavioural tests), if any."""
        return self.invariant_to or (self.directional.of if self.directional else None)

    def as_record(self) -> dict[str, Any]:
        rec = {"id": self.id, "input": self.input, "expected": self.expected, "tags": list(self.tags)}
        if self.invariant_to is not None:
            rec["invariant_to"] = self.invariant_to
        if self.directional is not None:
            rec["directional"] = self.directional.as_dict()
        return rec


def read_lines(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, str]]:
    """(line number, text) of every line, decoded on its own so an error names its line: a line over
    the size cap or not UTF-8 is an input error. Suites and traffic files share it."""
    try:
        f = path.open("rb")
    except FileNotFoundError:
        raise TollgateInputError("data file not found.", file=path) from None
    except IsADirectoryError:
        raise TollgateInputError("is a directory, expected a data file.", file=path) from None
    except OSError as exc:
        raise TollgateInputError(f"cannot read: {exc.strerror}.", file=path) from None
    except ValueError:  # a NUL in the name
        raise TollgateInputError("is not a usable file name.", file=path) from None
    with f:
        lineno = 0
        while True:
            raw = f.readline(max_line_bytes + 1)
            if not raw:
                return
            lineno += 1
            if len(raw) > max_line_bytes and not raw.endswith(b"\n"):
                raise TollgateInputError(
                    f"line is longer than {max_line_bytes:,} bytes; one record must stay under that size.",
                    file=path, line=lineno, hint="Is this file really one JSON object per line?")
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise TollgateInputError(
                    f"is not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1}); "
                    "save the file as UTF-8.", file=path, line=lineno) from None
            yield lineno, text[1:] if lineno == 1 and text.startswith("\ufeff") else text


def read_jsonl(path: Path, *, max_line_bytes: int = MAX_LINE_BYTES) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line; any undecodable line is an input error."""
    rows: list[tuple[int, dict[str, Any]]] = []
    for lineno, text in read_lines(path, max_line_bytes=max_line_bytes):
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise TollgateInputError(f"is not valid JSON: {exc.msg.removesuffix(' at')} at column {exc.colno}.",
                                     file=path, line=lineno) from None
        except ValueError as exc:  # a number past Python's 4300-digit limit
            raise TollgateInputError(f"is not usable JSON: {exc}.", file=path, line=lineno) from None
        except RecursionError:
            raise TollgateInputError("is not usable JSON: it is nested too deeply.", file=path, line=lineno) from None
        if not isinstance(obj, dict):
            raise TollgateInputError(f"must be a JSON object, found {type(obj).__name__}.", file=path, line=lineno)
        if "\\u" in text:  # an escape may decode to a lone surrogate, which no UTF-8 file or store can hold
            try:
                json.dumps(obj, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError as exc:
                raise TollgateInputError(f"holds the escape {exc.object[exc.start]!a}, a lone surrogate, which is "
                                         "not valid Unicode.", file=path, line=lineno) from None
            except RecursionError:
                raise TollgateInputError("is not usable JSON: it is nested too deeply.", file=path,
                                         line=lineno) from None
        rows.append((lineno, obj))
    return rows


def _schema() -> Any:
    import pandera.pandas as pa

    def each(pred: Any, msg: str) -> Any:
        return pa.Check(lambda s: s.map(pred).astype(bool), error=msg)

    return pa.DataFrameSchema(
        {
            "id": pa.Column(None, each(lambda v: isinstance(v, str) and v.strip() != "",
                                       "must be a non-empty string or an integer"), unique=True),
            "input": pa.Column(None, each(lambda v: (isinstance(v, str) and v.strip() != "")
                                          or (isinstance(v, dict) and len(v) > 0),
                                          "must be non-empty text or a non-empty object of template fields")),
            "expected": pa.Column(None, nullable=True),
            "tags": pa.Column(None, each(lambda v: v is None or (isinstance(v, list)
                                                                 and all(isinstance(t, str) for t in v)),
                                         "must be a list of strings"), nullable=True),
            "invariant_to": pa.Column(None, each(lambda v: v is None or (isinstance(v, str) and v.strip() != ""),
                                                 "must be the id of the source example"), nullable=True,
                                      required=False),
            "directional": pa.Column(None, each(lambda v: v is None or isinstance(v, dict),
                                                "must be an object: {of: source id, changes: [...], keeps: [...]}"),
                                     nullable=True, required=False),
        },
        strict=True,
        name="examples",
    )


def _frame(rows: list[tuple[int, dict[str, Any]]]) -> Any:
    import pandas as pd

    records = []
    for _, obj in rows:
        for key in ("id", "invariant_to"):  # integer ids are ids too
            if isinstance(obj.get(key), int) and not isinstance(obj.get(key), bool):
                obj[key] = str(obj[key])
        d = obj.get("directional")
        if isinstance(d, dict) and isinstance(d.get("of"), int) and not isinstance(d.get("of"), bool):
            d["of"] = str(d["of"])
        records.append(dict(obj))
    df = pd.DataFrame.from_records(records)
    for col in FIELDS:
        if col not in df.columns and col == "tags":
            df[col] = None
    return df.astype(object)


def validate_rows(path: Path, rows: list[tuple[int, dict[str, Any]]]) -> list[Example]:
    """Validate parsed lines with the pandera schema and build :class:`Example` objects."""
    if not rows:
        raise TollgateInputError("holds no examples; a suite needs at least one.", file=path)
    lines = [ln for ln, _ in rows]
    for ln, obj in rows:
        for f in REQUIRED:
            if f not in obj:
                unknown = sorted(set(obj) - set(FIELDS))
                hint = f" (found unknown field {show(unknown[0])}: a typo?)" if unknown else ""
                raise TollgateInputError(f"is required but missing{hint}.", file=path, line=ln, field=f)
        ex_id = obj["id"]  # checked here too: a list or an object as id would break the uniqueness check
        if not (isinstance(ex_id, str) or (isinstance(ex_id, int) and not isinstance(ex_id, bool)) or ex_id is None):
            raise TollgateInputError(f"must be a non-empty string or an integer; got {show(ex_id)}.", file=path,
                                     line=ln, field="id")
    import pandera.pandas as pa

    df = _frame(rows)
    try:
        _schema().validate(df, lazy=True)
    except pa.errors.SchemaErrors as exc:
        raise _schema_error(path, exc.failure_cases, lines, rows) from None
    examples = []
    for (ln, obj), rec in zip(rows, df.to_dict("records"), strict=True):
        tags = tuple(obj.get("tags") or ())
        ex_id = str(rec["id"])
        directional = None
        if obj.get("directional") is not None:
            directional = parse_directional(obj["directional"], file=path, line=ln)
        if obj.get("invariant_to") is not None and directional is not None:
            raise TollgateInputError("an example is either invariant_to a source or directional, not both.",
                                     file=path, line=ln, field="directional")
        ex = Example(id=ex_id, input=obj["input"], expected=obj["expected"], tags=tags, line=ln, hash="",
                     invariant_to=obj.get("invariant_to"), directional=directional)
        if ex.source_id == ex_id:
            raise TollgateInputError("an example cannot be compared with itself.", file=path, line=ln,
                                     field="invariant_to" if ex.invariant_to else "directional.of")
        examples.append(replace(ex, hash=hash_obj(ex.as_record())))
    return examples


def _schema_error(path: Path, fc: Any, lines: list[int], rows: list[tuple[int, dict[str, Any]]]) -> TollgateInputError:
    problems: list[tuple[int, str, str]] = []
    for rec in fc.to_dict("records"):
        col, check, case, idx = rec["column"], str(rec["check"]), rec["failure_case"], rec["index"]
        if check == "column_in_schema":
            ln = next((ln for ln, obj in rows if case in obj), lines[0])
            problems.append((ln, field_path((case,)) or "", f"unknown field (allowed: {', '.join(FIELDS)})."))
        elif check == "field_uniqueness":
            dup_lines = [lines[i] for i, (_, obj) in enumerate(rows) if str(obj.get("id")) == str(case)]
            problems.append((dup_lines[-1] if dup_lines else lines[0], "id",
                             f"duplicate id {show(case)} (lines {', '.join(map(str, dup_lines[:5]))}"
                             f"{', …' if len(dup_lines) > 5 else ''}); ids must be unique."))
        elif check == "not_nullable":
            problems.append((lines[int(idx)] if idx is not None and idx == idx else lines[0], str(col),
                             "must not be null."))
        elif idx is not None and idx == idx:  # not NaN
            problems.append((lines[int(idx)], str(col), f"{check}; got {show(case)}."))
        else:
            problems.append((lines[0], str(col), f"{check}."))
    problems = sorted(set(problems))
    ln, field, msg = problems[0]
    if len(problems) > 1:
        rest = "; ".join(f"line {p[0]} field '{p[1]}': {p[2].rstrip('.')}" for p in problems[1:3])
        more = f"; and {len(problems) - 3} more" if len(problems) > 3 else ""
        msg += f" Also: {rest}{more}."
    return TollgateInputError(msg, file=path, line=ln, field=field)


@printable_errors()
def load_examples(path: Path) -> list[Example]:
    return validate_rows(path, read_jsonl(path))
