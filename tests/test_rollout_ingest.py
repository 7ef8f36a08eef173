"""Traffic and feedback ingestion: JSONL, CSV and Parquet, idempotent, every bad file refused whole
with exit 2, one message naming the file, the row and the column, and the store left untouched."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import write_project

from harness import store as st
from harness.cli import main
from rollout.ingest import ingest

MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
  cand:
    adapter: python
    options: {callable: "mymodels:prod"}
"""


def row(i: int, **over) -> dict:
    r = {"request_id": f"r{i}", "ts": f"2026-03-02T09:{i % 60:02d}:00Z", "user_id": f"u{i}", "arm": "production",
         "model": "prod", "input": f"question {i}", "output": f"answer {i}", "latency_ms": 100 + i,
         "prompt_tokens": 10, "completion_tokens": 3}
    r.update(over)
    return {k: v for k, v in r.items() if v is not ...}


def jsonl(path: Path, rows: list[dict | str]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


def csv(path: Path, rows: list[dict]) -> Path:
    import pandas as pd

    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def parquet(path: Path, rows: list[dict]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    columns = list(dict.fromkeys(k for r in rows for k in r))  # every row's keys, not only the first row's
    pq.write_table(pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows]), path)
    return path


def db(root: Path) -> Path:
    return root / ".tollgate" / "tollgate.duckdb"


def digest(root: Path) -> str | None:
    p = db(root)
    return hashlib.sha256(p.read_bytes()).hexdigest() if p.exists() else None


def q(root: Path, sql: str, params: list | None = None) -> list[tuple]:
    with st.Store(db(root)).read() as con:
        return con.execute(sql, params or []).fetchall()


@pytest.fixture(scope="module")
def _seeded(tmp_path_factory) -> Path:
    """A store holding ten production requests, made once and copied for each test."""
    root = tmp_path_factory.mktemp("seed")
    jsonl(root / "seed.jsonl", [row(i, request_id=f"seed{i}") for i in range(10)])
    ingest(root / "seed.jsonl", st.Store(db(root)), kind="traffic", models={"prod"})
    return db(root)


@pytest.fixture
def project(_seeded, tmp_path, monkeypatch) -> Path:
    """A project whose store already holds ten production requests."""
    (tmp_path / "mymodels.py").write_text("def prod(prompt):\n    return prompt\n")
    write_project(tmp_path, MODELS)
    db(tmp_path).parent.mkdir()
    shutil.copyfile(_seeded, db(tmp_path))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def expect_rejected(root: Path, capsys, args: list[str], *fragments: str, patterns: tuple[str, ...] = ()) -> str:
    """Exit 2, one line on stderr holding every fragment and pattern, no traceback, the store untouched."""
    before = digest(root)
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, f"the error must be one paragraph: {err}"
    for f in fragments:
        assert f in err, f"{f!r} not in: {err}"
    for p in patterns:
        assert re.search(p, err), f"/{p}/ not in: {err}"
    assert digest(root) == before, "a rejected file must not change the store"
    return err


# -- formats, normalisation, idempotency --------------------------------------------------------------------
ROWS = [
    row(1),
    row(2, input={"doc": "Claim 2: rear-ended at a light", "lang": "en"}, arm=..., user_id=...),
    row(3, ts="2026-03-02T11:30:00+02:00", latency_ms=12.5, prompt_tokens=..., completion_tokens=...,
        output=..., error="upstream timeout"),
    row(4, model="cand", arm="shadow", input="Grüße, 東京 ✓"),
]
STORED = {  # request -> (model, arm, ts, user, input JSON, output, latency, prompt, completion, error)
    "r1": ("prod", "production", "2026-03-02 09:01:00", "u1", "question 1", "answer 1", 101.0, 10, 3, None),
    "r2": ("prod", "production", "2026-03-02 09:02:00", None, {"doc": "Claim 2: rear-ended at a light", "lang": "en"},
           "answer 2", 102.0, 10, 3, None),
    "r3": ("prod", "production", "2026-03-02 09:30:00", "u3", "question 3", None, 12.5, None, None, "upstream timeout"),
    "r4": ("cand", "shadow", "2026-03-02 09:04:00", "u4", "Grüße, 東京 ✓", "answer 4", 104.0, 10, 3, None),
}


def stored_rows(root: Path, source: str) -> dict:
    rows = q(root, "SELECT request_id, model, arm, CAST(ts AS VARCHAR), user_id, input, output, latency_ms, "
                   "prompt_tokens, completion_tokens, error FROM traffic WHERE source = ? ORDER BY 1", [source])
    return {r[0]: (*r[1:4], r[4], json.loads(r[5]), *r[6:]) for r in rows}


def _csv_rows() -> list[dict]:
    out = []
    for r in ROWS:
        r = dict(r)
        if isinstance(r["input"], dict):
            r["input"] = json.dumps(r["input"])
        out.append(r)
    return out


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_every_format_stores_the_same_rows(project, capsys, fmt):
    path = project / f"traffic.{fmt}"
    {"jsonl": lambda: jsonl(path, ROWS), "csv": lambda: csv(path, _csv_rows()),
     "parquet": lambda: parquet(path, _csv_rows())}[fmt]()
    assert main(["traffic", "ingest", path.name]) == 0
    assert "4 rows, 4 stored, 0 already stored" in capsys.readouterr().out
    assert stored_rows(project, path.name) == STORED


def test_reingesting_adds_nothing_in_any_format(project, capsys):
    jsonl(project / "t.jsonl", ROWS)
    assert main(["traffic", "ingest", "t.jsonl"]) == 0
    before = q(project, "SELECT count(*) FROM traffic")
    capsys.readouterr()
    assert main(["traffic", "ingest", "t.jsonl"]) == 0
    assert "4 rows, 0 stored, 4 already stored" in capsys.readouterr().out
    csv(project / "t.csv", _csv_rows())  # the same requests exported another way
    assert main(["traffic", "ingest", "t.csv"]) == 0
    assert "0 stored, 4 already stored" in capsys.readouterr().out
    assert q(project, "SELECT count(*) FROM traffic") == before
    rep = ingest(project / "t.jsonl", st.Store(db(project)), kind="traffic", models={"prod", "cand"})
    assert (rep.rows, rep.stored, rep.duplicates, rep.rejected) == (4, 0, 4, 0)


def test_the_same_request_answered_by_two_models_is_two_rows(project, capsys):
    jsonl(project / "t.jsonl", [row(7), row(7, model="cand", arm="shadow")])
    assert main(["traffic", "ingest", "t.jsonl"]) == 0
    assert q(project, "SELECT model, arm FROM traffic WHERE request_id = 'r7' ORDER BY 1") == [
        ("cand", "shadow"), ("prod", "production")]


# -- bad input: exit 2, the file, the row, the column, nothing written ----------------------------------------
def _bad(i: int, **over) -> list[dict]:
    return [row(1), {**row(2), **over}, row(3)]


@pytest.mark.parametrize(("rows", "column", "shown"), [
    (_bad(2, model="gpt-9"), "model", "gpt-9"),
    (_bad(2, ts="yesterday"), "ts", "yesterday"),
    (_bad(2, ts="2026-02-30T10:00:00Z"), "ts", "2026-02-30"),
    (_bad(2, latency_ms=-5), "latency_ms", "-5"),
    (_bad(2, latency_ms="fast"), "latency_ms", "fast"),
    (_bad(2, prompt_tokens=2.5), "prompt_tokens", "2.5"),
    (_bad(2, completion_tokens=-1), "completion_tokens", "-1"),
    (_bad(2, arm="canary"), "arm", "canary"),
    (_bad(2, request_id=""), "request_id", ""),
    (_bad(2, input=""), "input", ""),
], ids=["unknown-model", "bad-ts", "impossible-date", "negative-latency", "text-latency", "fractional-tokens",
        "negative-tokens", "bad-arm", "empty-id", "empty-input"])
def test_a_bad_value_is_refused_naming_file_row_and_column(project, capsys, rows, column, shown):
    jsonl(project / "logs.jsonl", rows)
    err = expect_rejected(project, capsys, ["traffic", "ingest", "logs.jsonl"], "logs.jsonl", f"column '{column}'",
                          "nothing stored", "--skip-invalid", patterns=(r"\brow 2\b",))
    assert re.search(r"\brow [13]\b", err) is None  # only the bad row is named
    assert shown in err


def test_bad_values_in_csv_name_the_data_row(project, capsys):
    csv(project / "logs.csv", [row(1, model="gpt-9"), row(2), row(3, ts="yesterday", latency_ms=-5),
                               row(4, prompt_tokens=2.5, arm="canary"), row(5)])
    err = expect_rejected(project, capsys, ["traffic", "ingest", "logs.csv"], "logs.csv", "3 invalid row(s)",
                          "gpt-9", "yesterday", "2.5", "canary",
                          patterns=(r"row 1, column 'model'", r"row 3, column 'ts'", r"row 3, column 'latency_ms'",
                                    r"row 4, column 'prompt_tokens'", r"row 4, column 'arm'"))
    assert re.search(r"\brow [25]\b", err) is None


def test_a_bad_value_in_parquet_names_its_row(project, capsys):
    parquet(project / "logs.parquet", [row(1), row(2), row(3, latency_ms=-1.0)])
    expect_rejected(project, capsys, ["traffic", "ingest", "logs.parquet"], "logs.parquet", "column 'latency_ms'",
                    patterns=(r"\brow 3\b",))


def test_every_problem_of_a_file_is_reported_in_one_message(project, capsys):
    jsonl(project / "many.jsonl", [row(1), row(2, model="nope"), row(3), row(4, ts="soon", latency_ms=-1),
                                   row(5, arm="canary")])
    err = expect_rejected(project, capsys, ["traffic", "ingest", "many.jsonl"], "many.jsonl", "3 invalid row(s)",
                          patterns=(r"row 2, column 'model'", r"row 4, column 'ts'", r"row 4, column 'latency_ms'",
                                    r"row 5, column 'arm'"))
    assert "row 1," not in err and "row 3," not in err


def test_an_unknown_column_is_refused_naming_it_and_its_row(project, capsys):
    jsonl(project / "t.jsonl", [row(1), row(2), {**row(3), "temprature": 0.2}])
    expect_rejected(project, capsys, ["traffic", "ingest", "t.jsonl"], "t.jsonl", "'temprature'", "unknown column",
                    patterns=(r"\b(row|line) 3\b",))
    csv(project / "t.csv", [{**row(1), "temprature": 0.2}])
    expect_rejected(project, capsys, ["traffic", "ingest", "t.csv"], "t.csv", "'temprature'", "unknown column")


def test_an_unknown_column_is_refused_even_with_skip_invalid(project, capsys):
    jsonl(project / "t.jsonl", [{**row(1), "temprature": 0.2}, row(2)])
    expect_rejected(project, capsys, ["traffic", "ingest", "t.jsonl", "--skip-invalid"], "'temprature'")
    assert not (project / "t.rejected.jsonl").exists()


@pytest.mark.parametrize("fmt", ["jsonl", "csv", "parquet"])
def test_a_missing_required_column_is_refused(project, capsys, fmt):
    rows = [{k: v for k, v in row(i).items() if k != "model"} for i in range(3)]
    path = project / f"t.{fmt}"
    {"jsonl": jsonl, "csv": csv, "parquet": parquet}[fmt](path, rows)
    expect_rejected(project, capsys, ["traffic", "ingest", path.name], f"t.{fmt}", "'model'", "missing")


@pytest.mark.parametrize(("name", "content", "fragments", "patterns"), [
    pytest.param("empty.jsonl", b"", ("empty.jsonl", "no rows"), (), id="empty-jsonl"),
    pytest.param("blank.jsonl", b"\n\n  \n", ("blank.jsonl", "no rows"), (), id="blank-jsonl"),
    pytest.param("empty.csv", b"", ("empty.csv",), (), id="empty-csv"),
    pytest.param("header.csv", b"request_id,ts,model,input\n", ("header.csv", "no rows"), (), id="header-only-csv"),
    pytest.param("latin1.jsonl", json.dumps(row(1)).encode() + b'\n{"request_id": "r2", "input": "caf\xe9"}\n',
                 ("latin1.jsonl", "UTF-8"), (r"\b(row|line) 2\b",), id="non-utf8-jsonl"),
    pytest.param("latin1.csv", b"request_id,ts,model,input\nr1,2026-03-02T09:00:00Z,prod,caf\xe9\n",
                 ("latin1.csv", "UTF-8"), (), id="non-utf8-csv"),
    pytest.param("huge.jsonl", json.dumps(row(1)).encode() + b"\n" +
                 json.dumps(row(2, input="x" * (1 << 21))).encode() + b"\n",
                 ("huge.jsonl", "1,048,576"), (r"\b(row|line) 2\b",), id="huge-line"),
    pytest.param("broken.jsonl", json.dumps(row(1)).encode() + b'\n{"request_id": "r2", \n' +
                 json.dumps(row(3)).encode(), ("broken.jsonl", "JSON"), (r"\b(row|line) 2\b",),
                 id="invalid-json-line"),
    pytest.param("list.jsonl", json.dumps(row(1)).encode() + b"\n[1, 2]\n", ("list.jsonl", "object"),
                 (r"\b(row|line) 2\b",), id="json-array-line"),
    pytest.param("logs.txt", json.dumps(row(1)).encode() + b"\n", ("logs.txt", "'.txt'", ".jsonl, .csv or .parquet"),
                 (), id="unknown-extension"),
    pytest.param("fake.parquet", b"PAR1 this is not parquet", ("fake.parquet",), (), id="not-parquet"),
])
def test_an_unreadable_file_is_refused(project, capsys, name, content, fragments, patterns):
    (project / name).write_bytes(content)
    expect_rejected(project, capsys, ["traffic", "ingest", name], *fragments, patterns=patterns)


def test_a_missing_file_is_refused(project, capsys):
    expect_rejected(project, capsys, ["traffic", "ingest", "nope.jsonl"], "nope.jsonl", "not found")


def test_a_rejected_file_in_a_fresh_project_creates_no_store(tmp_path, monkeypatch, capsys):
    (tmp_path / "mymodels.py").write_text("def prod(prompt):\n    return prompt\n")
    write_project(tmp_path, MODELS)
    monkeypatch.chdir(tmp_path)
    jsonl(tmp_path / "t.jsonl", [row(1, model="nope")])
    assert main(["traffic", "ingest", "t.jsonl"]) == 2
    assert not db(tmp_path).exists(), "bad input must write nothing, not even an empty store"


def test_row_numbers_are_line_numbers_across_blank_lines_and_a_long_file(project, capsys):
    rows: list[dict | str] = [row(i) for i in range(1, 60_001)]
    rows[2] = ""  # line 3 is blank: skipped, yet later rows keep their line numbers
    rows[4] = row(5, ts="never")
    rows[50_000] = row(50_001, latency_ms=-3)  # far into the file (past any chunk boundary)
    jsonl(project / "long.jsonl", rows)
    expect_rejected(project, capsys, ["traffic", "ingest", "long.jsonl"], "2 invalid row(s)",
                    patterns=(r"row 5, column 'ts'", r"row 50001, column 'latency_ms'"))


# -- --skip-invalid -------------------------------------------------------------------------------------------
def test_skip_invalid_stores_the_valid_rows_and_writes_the_rejected_ones(project, capsys):
    rows = [row(1), row(2, model="nope", latency_ms=-1), row(3), row(4, ts="soon"), row(5)]
    jsonl(project / "t.jsonl", rows)
    assert main(["traffic", "ingest", "t.jsonl", "--skip-invalid"]) == 0
    out = capsys.readouterr().out
    assert "5 rows, 3 stored" in out and "2 rejected" in out and "t.rejected.jsonl" in out
    assert [r[0] for r in q(project, "SELECT request_id FROM traffic WHERE source = 't.jsonl' ORDER BY 1")] == \
        ["r1", "r3", "r5"]
    rejected = [json.loads(x) for x in (project / "t.rejected.jsonl").read_text().splitlines()]
    assert [r["row"] for r in rejected] == [2, 4]
    assert sorted(p.split(":")[0] for p in rejected[0]["problems"]) == ["latency_ms", "model"]
    assert rejected[1]["problems"][0].startswith("ts:") and "soon" in rejected[1]["problems"][0]
    assert rejected[0]["record"]["request_id"] == "r2" and rejected[0]["record"]["model"] == "nope"
    # fixed and ingested again: the rejected rows go in, nothing else doubles
    fixed = [{**r["record"], "model": "prod", "latency_ms": 7, "ts": "2026-03-02T10:00:00Z"} for r in rejected]
    jsonl(project / "fixed.jsonl", fixed)
    capsys.readouterr()
    assert main(["traffic", "ingest", "fixed.jsonl"]) == 0
    assert "2 stored" in capsys.readouterr().out


def test_skip_invalid_writes_where_it_is_told(project, capsys):
    csv(project / "t.csv", [row(1), row(2, arm="canary")])
    (project / "out").mkdir()
    assert main(["traffic", "ingest", "t.csv", "--skip-invalid", "--rejected", "out/bad-rows.jsonl"]) == 0
    (rej,) = [json.loads(x) for x in (project / "out" / "bad-rows.jsonl").read_text().splitlines()]
    assert rej["row"] == 2 and rej["problems"][0].startswith("arm:") and rej["record"]["arm"] == "canary"
    assert not (project / "t.rejected.jsonl").exists()


def test_a_rejected_file_in_a_missing_folder_is_no_crash(project, capsys):
    csv(project / "t.csv", [row(1), row(2, arm="canary")])
    code = main(["traffic", "ingest", "t.csv", "--skip-invalid", "--rejected", "nowhere/bad-rows.jsonl"])
    err = capsys.readouterr().err
    if code == 2:  # refused: then it says where, and stored nothing
        assert "nowhere" in err and q(project, "SELECT count(*) FROM traffic WHERE source = 't.csv'") == [(0,)]
    else:  # or the folder is made
        assert code == 0 and (project / "nowhere" / "bad-rows.jsonl").exists()


# -- feedback ---------------------------------------------------------------------------------------------------
def fb(rid: str, kind: str, value, minute: int = 0) -> dict:
    return {"request_id": rid, "kind": kind, "value": value, "ts": f"2026-03-02T12:{minute:02d}:00Z"}


def test_feedback_values_are_normalised_per_kind(project, capsys):
    rows = [fb("a", "thumb", v, i) for i, v in enumerate(["up", "down", "1", "0", "true", "false", "UP", 1, 0])]
    rows += [fb("b", "rating", v, i) for i, v in enumerate([1, 5, "3", 4.0])]
    rows += [fb("c", "comment", "the date was wrong", 0),
             fb("d", "correction", {"name": "Ana Lima", "amount": 1200.5, "date": None}, 0),
             fb("e", "correction", "the claim was filed on 3 May", 0)]
    jsonl(project / "fb.jsonl", rows)
    assert main(["feedback", "ingest", "fb.jsonl"]) == 0
    got = q(project, "SELECT request_id, kind, value FROM feedback ORDER BY request_id, ts")
    thumbs = [v for r, k, v in got if k == "thumb"]
    assert thumbs == ["1", "0", "1", "0", "1", "0", "1", "1", "0"]
    assert [v for r, k, v in got if k == "rating"] == ["1", "5", "3", "4"]
    assert ("c", "comment", "the date was wrong") in got
    (corr,) = [v for r, k, v in got if r == "d"]
    assert json.loads(corr) == {"name": "Ana Lima", "amount": 1200.5, "date": None}  # kept as JSON, not as a repr
    assert [v for r, k, v in got if r == "e"] == ["the claim was filed on 3 May"]
    capsys.readouterr()
    assert main(["feedback", "ingest", "fb.jsonl"]) == 0  # idempotent
    assert f"{len(rows)} rows, 0 stored, {len(rows)} already stored" in capsys.readouterr().out


def test_feedback_from_csv_keeps_a_correction_object_as_json(project, capsys):
    csv(project / "fb.csv", [fb("d", "correction", json.dumps({"name": "Ana", "amount": 3})), fb("a", "thumb", "down"),
                             fb("b", "rating", "2")])
    assert main(["feedback", "ingest", "fb.csv"]) == 0
    got = dict(q(project, "SELECT kind, value FROM feedback"))
    assert json.loads(got["correction"]) == {"name": "Ana", "amount": 3}
    assert (got["thumb"], got["rating"]) == ("0", "2")


@pytest.mark.parametrize(("bad", "shown"), [
    (fb("x", "rating", 9), "9"),
    (fb("x", "rating", 2.5), "2.5"),
    (fb("x", "rating", 0), "0"),
    (fb("x", "rating", "great"), "great"),
    (fb("x", "thumb", "meh"), "meh"),
    (fb("x", "comment", "  "), ""),
])
def test_a_bad_feedback_value_is_refused(project, capsys, bad, shown):
    jsonl(project / "fb.jsonl", [fb("a", "thumb", "up"), bad])
    err = expect_rejected(project, capsys, ["feedback", "ingest", "fb.jsonl"], "fb.jsonl", "column 'value'",
                          f"a {bad['kind']} must be", patterns=(r"\brow 2\b",))
    assert shown in err


def test_feedback_kind_and_value_problems_are_reported_together(project, capsys):
    jsonl(project / "fb.jsonl", [fb("a", "like", "yes"), fb("b", "rating", 9), fb("c", "thumb", "up"),
                                 {**fb("d", "thumb", "up"), "ts": "later"}])
    expect_rejected(project, capsys, ["feedback", "ingest", "fb.jsonl"], "3 invalid row(s)",
                    patterns=(r"row 1, column 'kind'", r"row 2, column 'value'", r"row 4, column 'ts'"))
    capsys.readouterr()
    assert main(["feedback", "ingest", "fb.jsonl", "--skip-invalid"]) == 0
    assert q(project, "SELECT request_id, value FROM feedback") == [("c", "1")]
    assert [json.loads(x)["row"] for x in (project / "fb.rejected.jsonl").read_text().splitlines()] == [1, 2, 4]


def test_feedback_with_a_traffic_column_is_refused(project, capsys):
    jsonl(project / "fb.jsonl", [{**fb("a", "thumb", "up"), "model": "prod"}])
    expect_rejected(project, capsys, ["feedback", "ingest", "fb.jsonl"], "'model'", "unknown column")


# -- bounded memory ---------------------------------------------------------------------------------------------
MEASURE = textwrap.dedent("""\
    import json, resource, sys
    from pathlib import Path
    from harness.store import Store
    from rollout.ingest import ingest

    big, store = Path(sys.argv[1]), Path(sys.argv[2])
    warm = store.with_name("warm.jsonl")  # load every library first: only the file's cost is measured
    warm.write_text(json.dumps({"request_id": "w", "ts": "2026-03-02T09:00:00Z", "model": "prod",
                                "input": "x"}) + "\\n")
    ingest(warm, Store(store.with_name("warm.duckdb")), kind="traffic", models={"prod"})
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rep = ingest(big, Store(store), kind="traffic", models={"prod"})
    grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"stored": rep.stored, "rows": rep.rows, "grew_mb": grew / 1024}))
""")


def test_a_200k_row_file_ingests_in_bounded_memory(tmp_path):
    """A 54 MB, 200,000-row file. Holding it whole in pandas (and validating it) costs about 600 MB of
    peak RSS; streaming it (chunks, or DuckDB reading the file under its memory limit) well under 400 MB."""
    big = tmp_path / "big.jsonl"
    with big.open("w") as f:
        for i in range(200_000):
            f.write(json.dumps({"request_id": f"r{i}", "ts": "2026-03-02T09:00:00Z", "user_id": f"u{i % 977}",
                                "model": "prod", "input": f"please extract the fields of claim number {i}",
                                "output": "x" * 40, "latency_ms": i % 300, "prompt_tokens": 12,
                                "completion_tokens": 7}) + "\n")
    script = tmp_path / "measure.py"
    script.write_text(MEASURE)
    p = subprocess.run([sys.executable, str(script), str(big), str(tmp_path / "s.duckdb")], capture_output=True,
                       text=True, timeout=120, cwd=Path(__file__).parent.parent)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads(p.stdout.strip().splitlines()[-1])
    assert m["rows"] == m["stored"] == 200_000
    assert m["grew_mb"] < 500, f"peak RSS grew by {m['grew_mb']:.0f} MB for a {big.stat().st_size >> 20} MB file"
    with st.Store(tmp_path / "s.duckdb").read() as con:
        assert con.execute("SELECT count(DISTINCT request_id), sum(latency_ms) FROM traffic").fetchone() == \
            (200_000, float(sum(i % 300 for i in range(200_000))))
