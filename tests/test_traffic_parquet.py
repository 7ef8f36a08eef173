"""Traffic kept as hive-partitioned Parquet (``rollout.traffic.parquet``), queried in place: the same
file ingested into the DuckDB file and into a Parquet root gives the same shadow, beta and monitor
figures; re-ingest adds nothing; the router writes readable files; the DuckDB file holds no traffic."""

from __future__ import annotations

import json
import shutil
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import httpx
import pytest
from conftest import write_project, write_suite

from harness.cli import main
from harness.errors import TollgateInputError
from harness.policy import BetaGate, ShadowGate
from harness.project import load_project
from harness.traffic_parquet import project_store
from rollout.beta import beta_report
from rollout.monitor import monitor
from rollout.records import insert_traffic, traffic_row
from rollout.shadow import rollout_suite, shadow_report
from rollout.stages import Stage, record

T0 = datetime(2026, 3, 2, 9, 0)
DAYS = 6
MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
  cand:
    adapter: python
    role: candidate
    options: {callable: "mymodels:cand"}
"""
MYMODELS = textwrap.dedent("""\
    def prod(prompt):
        return "prod:" + prompt
    def cand(prompt):
        return "cand:" + prompt
""")
PARQUET = "  traffic:\n    parquet: traffic/\n"


def make_project(root: Path, parquet: bool) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(MYMODELS)
    write_project(root, MODELS, suites="  - suites/*\nrollout:\n  suite: claims\n" + (PARQUET if parquet else ""))
    write_suite(root, "claims", [{"id": "c1", "input": {"doc": "x"}, "expected": {"name": "A", "amount": 10}}],
                prompt="Claim document: {{ doc }}", extra="checks: [json_fields]\n")
    return root


def traffic_rows() -> list[dict]:
    """Six days: production answers, the candidate's shadow copies, beta users on the candidate."""
    good, bad = json.dumps({"name": "A", "amount": 10}), json.dumps({"name": "B", "amount": 10})
    rows = []
    for d in range(DAYS):
        for i in range(40):
            ts = (T0 + timedelta(days=d, minutes=7 * i)).isoformat() + "Z"
            rid = f"d{d}-r{i}"
            beta = i % 5 == 0
            doc = {"doc": f"claim {d} {i}" + " words" * (i % 7 if d < DAYS - 1 else 9)}
            rows.append({"request_id": rid, "ts": ts, "user_id": f"u{i}", "arm": "beta" if beta else "production",
                         "model": "cand" if beta else "prod", "input": doc, "output": good if i % 4 else bad,
                         "latency_ms": 100 + i, "prompt_tokens": 10, "completion_tokens": 3})
            if not beta:
                rows.append({"request_id": rid, "ts": ts, "user_id": f"u{i}", "arm": "shadow", "model": "cand",
                             "input": doc, "output": good if i % 3 else bad, "latency_ms": 120 + i})
    return rows


def feedback_rows() -> list[dict]:
    rows = []
    for d in range(DAYS):
        for i in range(40):
            ts = (T0 + timedelta(days=d, minutes=7 * i + 1)).isoformat() + "Z"
            up = (i + d) % 3 != 0 if d < DAYS - 1 else i % 2 == 0
            rows.append({"request_id": f"d{d}-r{i}", "kind": "thumb", "value": "up" if up else "down", "ts": ts,
                         "user_id": f"u{i}"})
            if i % 2 == 1:
                rows.append({"request_id": f"d{d}-r{i}", "kind": "correction", "value": {"name": "A", "amount": 10},
                             "ts": ts})
    return rows


def jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def figures(root: Path) -> dict:
    project = load_project(root / "tollgate.yaml")
    with project_store(project).read() as con:
        return {"shadow": shadow_report(con, "cand", ShadowGate(min_pairs=10, min_corrections=5),
                                         rollout_suite(project)).as_dict(),
                "beta": beta_report(con, "cand", BetaGate(min_feedback=10)).as_dict(),
                "monitor": monitor(con, project).as_dict(),
                "traffic": con.execute("SELECT count(*), count(DISTINCT request_id), sum(latency_ms), min(ts), "
                                       "max(ts) FROM traffic").fetchall()}


def table_rows(root: Path) -> int:
    con = duckdb.connect(str(root / ".tollgate" / "tollgate.duckdb"), read_only=True)
    try:
        return con.execute("SELECT count(*) FROM traffic").fetchall()[0][0]
    finally:
        con.close()


def parquet_files(root: Path) -> list[Path]:
    return sorted((root / "traffic").glob("*/*.parquet"))


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> tuple[Path, Path]:
    """The same traffic and feedback files ingested into a DuckDB-file project and a Parquet project."""
    base = tmp_path_factory.mktemp("pq")
    tfile, ffile = jsonl(base / "traffic.jsonl", traffic_rows()), jsonl(base / "feedback.jsonl", feedback_rows())
    roots = make_project(base / "file", parquet=False), make_project(base / "parquet", parquet=True)
    for root in roots:
        for kind, f in (("traffic", tfile), ("feedback", ffile)):
            assert main(["--project", str(root), kind, "ingest", str(f)]) == 0
    return roots


def test_the_same_traffic_gives_the_same_figures_in_the_file_and_in_parquet(ingested):
    file_root, pq_root = ingested
    assert table_rows(file_root) > 0 and table_rows(pq_root) == 0  # nothing copied into the database file
    a, b = figures(file_root), figures(pq_root)
    assert a["traffic"][0][0] == len(traffic_rows())
    assert a["shadow"]["verdict"] and a["beta"]["verdict"] and a["monitor"]
    assert a == b


def test_parquet_is_partitioned_by_date_and_reingest_adds_nothing(ingested, capsys):
    _, pq_root = ingested
    dates = sorted(p.name for p in (pq_root / "traffic").iterdir())
    assert dates == [f"date={(T0 + timedelta(days=d)).date()}" for d in range(DAYS)]
    files = parquet_files(pq_root)
    assert len(files) == DAYS  # one ingest: one file per date
    assert not list((pq_root / "traffic").glob("*/*.tmp"))
    size = (pq_root / ".tollgate" / "tollgate.duckdb").stat().st_size
    capsys.readouterr()
    assert main(["--project", str(pq_root), "traffic", "ingest", str(pq_root.parent / "traffic.jsonl")]) == 0
    assert parquet_files(pq_root) == files  # no new file, no rewritten file
    assert (pq_root / ".tollgate" / "tollgate.duckdb").stat().st_size == size
    # the files are plain hive-partitioned Parquet any reader takes
    n = duckdb.sql(f"SELECT count(*) FROM read_parquet('{pq_root}/traffic/**/*.parquet', "
                   f"hive_partitioning = true)").fetchall()[0][0]
    assert n == len(traffic_rows())


def test_new_rows_add_a_file_and_rows_from_before_the_switch_stay_visible(tmp_path):
    root = make_project(tmp_path / "p", parquet=False)
    rows = traffic_rows()
    assert main(["--project", str(root), "traffic", "ingest", str(jsonl(tmp_path / "old.jsonl", rows[:50]))]) == 0
    (root / "tollgate.yaml").write_text((root / "tollgate.yaml").read_text().replace(
        "  suite: claims\n", "  suite: claims\n" + PARQUET))
    # an overlapping file: only the rows not in the table are new
    assert main(["--project", str(root), "traffic", "ingest", str(jsonl(tmp_path / "new.jsonl", rows[40:120]))]) == 0
    assert table_rows(root) == 50
    project = load_project(root / "tollgate.yaml")
    with project_store(project).read() as con:
        assert con.execute("SELECT count(*), count(DISTINCT (request_id, model)) FROM traffic").fetchall() == \
            [(120, 120)]
    files = parquet_files(root)
    with project_store(project).write() as con:  # as the router and shadow replay write
        assert insert_traffic(con, [traffic_row("x1", "prod", "production", "hi", "prod:hi", ts=T0),
                                    traffic_row("d0-r1", "prod", "production", "dup", "dup", ts=T0)]) == 1
    assert len(parquet_files(root)) == len(files) + 1


def test_the_router_writes_parquet_files_read_in_place(tmp_path):
    import socket
    import threading
    import time

    import uvicorn

    from rollout.router import create_app

    root = make_project(tmp_path / "r", parquet=True)
    project = load_project(root / "tollgate.yaml")
    store = project_store(project)
    store.migrate()
    with store.write() as con:
        record(con, "cand", Stage("candidate"), Stage("shadow"), "test", "test", None, False)
    app = create_app(project, store, flush_s=0.05)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline
        time.sleep(0.01)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{sock.getsockname()[1]}", timeout=30) as c:
            ids = []
            for i in range(12):
                r = c.post("/v1/completions", json={"prompt": f"q{i}", "user": f"u{i}"})
                assert r.status_code == 200
                ids.append(r.json()["id"])
            assert c.post("/feedback", json={"request_id": ids[0], "kind": "thumb", "value": "up"}).status_code == 202
    finally:
        server.should_exit = True
        thread.join(120)
        sock.close()
    assert not thread.is_alive()
    assert parquet_files(root) and table_rows(root) == 0
    with project_store(project).read() as con:
        rows = con.execute("SELECT arm, count(*) FROM traffic GROUP BY 1 ORDER BY 1").fetchall()
        assert rows == [("production", 12), ("shadow", 12)]
        # feedback stays in the database file and still joins to the traffic in Parquet
        assert con.execute("SELECT t.output FROM feedback f JOIN traffic t USING (request_id) "
                           "WHERE t.arm = 'production'").fetchall() == [("prod:q0",)]


def test_an_object_store_root_without_httpfs_is_a_clear_error(tmp_path, monkeypatch):
    root = make_project(tmp_path / "s3", parquet=False)
    (root / "tollgate.yaml").write_text((root / "tollgate.yaml").read_text().replace(
        "  suite: claims\n", "  suite: claims\n  traffic:\n    parquet: s3://bucket/traffic\n"))
    project = load_project(root / "tollgate.yaml")
    store = project_store(project)
    assert store.traffic_parquet == "s3://bucket/traffic"
    store.migrate()
    try:
        duckdb.connect().execute("LOAD httpfs")
    except duckdb.Error:
        pass
    else:
        pytest.skip("httpfs is installed here: an s3 root would be used for real")
    monkeypatch.setenv("HOME", str(tmp_path))  # no extension cache; the download fails offline
    with pytest.raises(TollgateInputError, match="httpfs"), store.read():
        pass


def test_a_url_scheme_duckdb_cannot_write_is_refused_by_validation(tmp_path):
    root = make_project(tmp_path / "ftp", parquet=False)
    (root / "tollgate.yaml").write_text((root / "tollgate.yaml").read_text().replace(
        "  suite: claims\n", "  suite: claims\n  traffic:\n    parquet: ftp://host/x\n"))
    with pytest.raises(TollgateInputError, match="parquet"):
        load_project(root / "tollgate.yaml")


def test_copying_a_parquet_project_moves_its_traffic(ingested, tmp_path):
    """The root is resolved against the project folder, so a copied project reads its own files."""
    _, pq_root = ingested
    copy = tmp_path / "copy"
    shutil.copytree(pq_root, copy)
    assert figures(copy)["traffic"] == figures(pq_root)["traffic"]
