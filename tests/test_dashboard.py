"""The dashboard without a browser: its query functions against reference values on small stores, the
release managers' authentication, and the pages' logic through Streamlit's AppTest (the helpful
page for an empty or old store, a viewer refused, a release manager's move audited under their name).
The real-browser tests are in test_dashboard_browser.py."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import run_cli, write_suite

from harness.intervals import wilson

FAST = 1000  # PBKDF2 iterations for tests' hashes: the format records them, so verification follows


# -- a small real project: two python models run on two suites ------------------------------------------------
MODELS = """\
def good(prompt):
    return prompt.split()[-1]

def half(prompt):
    word = prompt.split()[-1]
    i = int(word[1:])
    if i == 7:
        raise RuntimeError("endpoint timed out")
    return "wrong" if i % 3 == 0 else word
"""


def held_examples() -> list[dict]:
    return [{"id": f"h{i}", "input": f"say w{i}", "expected": f"w{i}",
             "tags": ["even" if i % 2 == 0 else "odd"] + (["long"] if i % 5 == 0 else [])} for i in range(40)]


def edgy_examples() -> list[dict]:
    return [{"id": f"h{i}~caps", "input": f"SAY w{i}", "expected": f"w{i}",
             "tags": ["perturbation:caps", f"source:h{i}"]} for i in range(10)]


def half_passes(i: int) -> bool:
    return i != 7 and i % 3 != 0


def write_mini(root: Path, *, release_managers: dict[str, str] | None = None, extra_model: bool = False) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "mymodels.py").write_text(MODELS)
    dash = ""
    if release_managers:
        dash = "dashboard:\n  release_managers:\n" + "".join(f"    {k}: '{v}'\n" for k, v in release_managers.items())
    other = "  other:\n    adapter: python\n    options: {callable: 'mymodels:good'}\n" if extra_model else ""
    (root / "tollgate.yaml").write_text(textwrap.dedent("""\
        store: .tollgate/tollgate.duckdb
        models:
          cand:
            adapter: python
            role: candidate
            options: {callable: "mymodels:good"}
          prod:
            adapter: python
            role: production
            options: {callable: "mymodels:half"}
        """) + other + textwrap.dedent("""\
        suites:
          - suites/*
        gate:
          rules:
            - {suite: held, metric: pass, min: 0.5}
        """) + dash)
    write_suite(root, "held", held_examples(), extra="checks: [exact_match]\n")
    write_suite(root, "edgy", edgy_examples(), kind="edge", extra="checks: [exact_match]\nsource_suite: held\n")
    return root / "tollgate.yaml"


@pytest.fixture(scope="module")
def mini(tmp_path_factory) -> Path:
    """The small project, both models run on both suites, and one offline gate decision stored."""
    root = tmp_path_factory.mktemp("mini") / "proj"
    write_mini(root)
    for model in ("cand", "prod"):
        res = run_cli("run", "--model", model, "--no-progress", cwd=root)
        assert res.returncode == 0, res.stderr
    res = run_cli("gate", "cand", "--against", "prod", "--actor", "ci", cwd=root)
    assert res.returncode == 0, res.stdout + res.stderr
    return root


def _store(root: Path):
    from harness.store import Store

    return Store(root / ".tollgate" / "tollgate.duckdb")


# -- authentication ------------------------------------------------------------------------------------------
def test_hash_token_is_salted_pbkdf2_and_verifies():
    from dashboard.auth import hash_token, verify_token

    a, b = hash_token("s3cret", iterations=FAST), hash_token("s3cret", iterations=FAST)
    assert a != b  # a fresh salt each time
    algorithm, iterations, salt, digest = a.split("$")
    assert (algorithm, iterations, len(digest)) == ("pbkdf2_sha256", str(FAST), 64)
    import hashlib

    assert digest == hashlib.pbkdf2_hmac("sha256", b"s3cret", salt.encode(), FAST).hex()
    assert verify_token("s3cret", a) and verify_token("s3cret", b)
    assert not verify_token("s3cret ", a) and not verify_token("", a)


def test_wrong_token_unknown_name_and_malformed_hash_are_refused():
    from dashboard.auth import check, hash_token
    from harness.policy import DashboardSettings

    settings = DashboardSettings(release_managers={"ana": hash_token("tok", iterations=FAST), "bad": "md5$x"})
    env: dict[str, str] = {}
    assert check("ana", "tok", settings, env)
    assert check(" ana ", "tok", settings, env)
    assert not check("ana", "wrong", settings, env)
    assert not check("bob", "tok", settings, env)
    assert not check("bad", "x", settings, env)
    assert not check("ana", "", settings, env)


def test_release_managers_from_the_environment_add_to_and_override_the_project_file():
    from dashboard.auth import check, hash_token, is_release_manager
    from harness.policy import DashboardSettings, env_release_managers

    settings = DashboardSettings(release_managers={"ana": hash_token("old", iterations=FAST)})
    env = {"TOLLGATE_RELEASE_MANAGERS": f"ana={hash_token('new', iterations=FAST)}, "
                                        f"bo={hash_token('b', iterations=FAST)},junk"}
    assert set(env_release_managers(env)) == {"ana", "bo"}
    assert check("bo", "b", settings, env)
    assert check("ana", "new", settings, env) and not check("ana", "old", settings, env)
    assert is_release_manager("bo", settings, env) and not is_release_manager("cy", settings, env)
    assert not is_release_manager(None, settings, env)


def test_hash_token_command_reads_stdin_or_flag(tmp_path):
    from dashboard.auth import verify_token

    p = subprocess.run([sys.executable, "-m", "harness.cli", "dashboard", "hash-token"], input="pa ss\n",
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 0, p.stderr
    assert verify_token("pa ss", p.stdout.strip())
    res = run_cli("dashboard", "hash-token", "--token", "xyz", cwd=tmp_path)
    assert res.returncode == 0 and verify_token("xyz", res.stdout.strip())
    p = subprocess.run([sys.executable, "-m", "harness.cli", "dashboard", "hash-token"], input="",
                       capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert p.returncode == 2 and "no token" in p.stderr


def test_dashboard_command_runs_streamlit_on_the_project(mini, monkeypatch):
    from dashboard import cli

    seen = {}
    monkeypatch.setattr(cli.os, "execve", lambda exe, argv, env: seen.update(argv=argv, env=env))
    import argparse

    cli.cmd_dashboard(argparse.Namespace(project=str(mini), port=8599, host="127.0.0.1"))
    argv = seen["argv"]
    assert argv[1:4] == ["-m", "streamlit", "run"] and argv[4].endswith("dashboard/app.py")
    assert argv[argv.index("--server.port") + 1] == "8599"
    assert argv[argv.index("--server.address") + 1] == "127.0.0.1"
    assert argv[-2:] == ["--project", str(mini / "tollgate.yaml")]
    assert seen["env"]["TOLLGATE_PROJECT"] == str(mini / "tollgate.yaml")
    assert run_cli("dashboard", "--port", "0", cwd=mini).returncode == 2


# -- evaluation queries ------------------------------------------------------------------------------------------
def test_wilson_in_sql_matches_the_harness_interval():
    import duckdb

    from harness.queries import wilson_sql

    low, high = wilson_sql("k", "n")
    con = duckdb.connect()
    for k, n in [(0, 10), (3, 10), (10, 10), (25, 40), (1, 1), (999, 1000)]:
        lo, hi = con.execute(f"SELECT {low}, {high} FROM (SELECT ? AS k, ? AS n)", [k, n]).fetchall()[0]
        ref = wilson(k, n)
        assert lo == pytest.approx(ref.low, abs=1e-12) and hi == pytest.approx(ref.high, abs=1e-12)


def test_pass_rates_per_suite_tag_and_perturbation_match_reference_counts(mini):
    from harness import queries as q

    with _store(mini).read() as con:
        by_suite = {(r["model"], r["suite"]): r for r in q.pass_rates(con, by="suite")}
        by_tag = {(r["model"], r["suite"], r["slice"]): r for r in q.pass_rates(con, ["prod"], by="tag")}
        by_pert = {(r["suite"], r["slice"]): r for r in q.pass_rates(con, ["prod"], by="perturbation")}
    held = held_examples()
    k = sum(half_passes(i) for i in range(40))
    r = by_suite[("prod", "held")]
    assert (r["passed"], r["n"]) == (k, 40)  # the errored example counts as a failure
    assert (r["low"], r["high"]) == pytest.approx((wilson(k, 40).low, wilson(k, 40).high))
    assert (by_suite[("cand", "held")]["passed"], by_suite[("cand", "edgy")]["passed"]) == (40, 10)
    for tag in ("even", "odd", "long"):
        idx = [i for i, e in enumerate(held) if tag in e["tags"]]
        got = by_tag[("prod", "held", tag)]
        assert (got["passed"], got["n"]) == (sum(half_passes(i) for i in idx), len(idx))
        assert got["low"] == pytest.approx(wilson(got["passed"], got["n"]).low)
    # source: and perturbation: tags are not tags; an example with no other tag is "(untagged)"
    assert by_tag[("prod", "edgy", "(untagged)")]["n"] == 10
    assert not any(s.startswith(("source:", "perturbation:")) for (_, _, s) in by_tag)
    assert (by_pert[("edgy", "caps")]["passed"], by_pert[("edgy", "caps")]["n"]) == (
        sum(half_passes(i) for i in range(10)), 10)
    assert by_pert[("held", "(source)")]["n"] == 40


def test_failing_examples_filter_page_and_link_to_their_source(mini):
    from harness import queries as q

    with _store(mini).read() as con:
        total, page = q.failing_examples(con, "prod", limit=5)
        total_all, everything = q.failing_examples(con, "prod", limit=100)
        long_total, long_rows = q.failing_examples(con, "prod", tag="long", suites=["held"], limit=100)
        _, caps = q.failing_examples(con, "prod", perturbation="caps", limit=100)
        _, page2 = q.failing_examples(con, "prod", limit=5, offset=5)
        assert q.failing_examples(con, "cand", limit=5) == (0, [])
        detail = q.example_detail(con, "held", "h3")
    expected_total = sum(not half_passes(i) for i in range(40)) + sum(not half_passes(i) for i in range(10))
    assert total == total_all == expected_total == len(everything)
    assert len(page) == 5
    # errors first (h7 errs in both suites), then held-out before edge cases
    assert [(f["suite"], f["example_id"]) for f in everything[:2]] == [("held", "h7"), ("edgy", "h7~caps")]
    assert all("timed out" in f["error"] for f in everything[:2]) and not any(f["error"] for f in everything[2:])
    assert [f["suite"] for f in everything[2:]] == sorted((f["suite"] for f in everything[2:]), key="held".__ne__)
    assert [f["example_id"] for f in page2] == [f["example_id"] for f in everything[5:10]]
    assert long_total == sum(not half_passes(i) for i in range(0, 40, 5)) == len(long_rows)
    h3 = next(f for f in everything if f["example_id"] == "h3")
    assert (h3["expected"], h3["output"], h3["input"]) == ("w3", "wrong", "say w3")
    assert h3["reason"]
    assert {f["example_id"] for f in caps} == {f"h{i}~caps" for i in range(10) if not half_passes(i)}
    assert all(f["source"] == f["example_id"].split("~")[0] and f["source_suite"] == "held" for f in caps)
    assert detail["expected"] == "w3"
    assert {a["model"]: a["passed"] for a in detail["answers"]} == {"cand": True, "prod": False}


def test_runs_list_totals_and_gap_chart(mini):
    from harness import queries as q

    with _store(mini).read() as con:
        runs = q.runs_list(con)
        totals = q.run_totals(con)
        only = q.runs_list(con, model="prod", suite="held")
        gap = {(r["model"], r["suite"]): r for r in q.gap_chart(con, None, "exact_match")}
        gap_pass = {(r["model"], r["suite"]): r for r in q.gap_chart(con, ["prod"], "pass")}
        cat = q.suite_catalog(con)
        options = q.slice_options(con)
    assert len(runs) == 4 and totals["runs"] == 4 and totals["completed"] == 4
    assert totals["examples"] == 100 and totals["errors"] == 2
    assert [(r["model"], r["suite"], r["n_errors"], r["status"]) for r in only] == [("prod", "held", 1, "completed")]
    assert runs[0]["started_at"] >= runs[-1]["started_at"]
    assert len(only[0]["suite_version"]) == 12
    # exact_match is scored on answered examples only (the error is left out), as the overfitting flags do
    r = gap[("prod", "held")]
    answered = [i for i in range(40) if i != 7]
    k = sum(i % 3 != 0 for i in answered)
    assert (r["metric"], r["n"], r["value"]) == ("exact_match", 39, pytest.approx(k / 39))
    assert (r["low"], r["high"]) == pytest.approx((wilson(k, 39).low, wilson(k, 39).high))
    rp = gap_pass[("prod", "held")]
    assert (rp["metric"], rp["n"], rp["value"]) == ("pass", 40, pytest.approx(sum(map(half_passes, range(40))) / 40))
    assert [c["name"] for c in cat] == ["held", "edgy"] and cat[1]["source_suite"] == "held"
    assert options == {"tags": ["even", "long", "odd"], "perturbations": ["caps"]}


def test_latest_decision_reads_the_stored_gate_without_rejudging(mini):
    from harness import queries as q

    with _store(mini).read() as con:
        d = q.latest_decision(con, "cand", "prod")
        assert q.latest_decision(con, "prod", "cand") is None
        assert q.latest_decision(con, "cand", None, "shadow") is None
        summaries = q.decision_summaries(con)
    assert d["verdict"] == "pass" and d["actor"] == "ci"
    assert d["evidence"]["rules"][0]["verdict"] == "pass"
    assert summaries[0]["gate"] == "offline" and summaries[0]["candidate"] == "cand"


def test_store_status_reports_missing_old_and_empty_stores_without_upgrading(tmp_path):
    import duckdb

    from harness.queries import store_status
    from harness.store import MIGRATIONS, SCHEMA_VERSION, Store

    missing = store_status(Store(tmp_path / "none.duckdb"))
    assert not missing.exists and not missing.usable
    empty = Store(tmp_path / "empty.duckdb")
    empty.migrate()
    s = store_status(empty)
    assert s.usable and s.empty and s.schema_version == SCHEMA_VERSION
    old = tmp_path / "old.duckdb"
    _old_store(old)
    s = store_status(Store(old))
    assert s.schema_version == 3 and not s.usable
    con = duckdb.connect(str(old), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_version").fetchone()[0] == 3  # untouched
    con.close()
    assert len(MIGRATIONS) == SCHEMA_VERSION


def _old_store(path: Path) -> None:
    import duckdb

    from harness.store import MIGRATIONS

    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER NOT NULL, applied_at TIMESTAMP NOT NULL)")
    for v in range(1, 4):
        con.execute(MIGRATIONS[v - 1])
        con.execute("INSERT INTO schema_version VALUES (?, now())", [v])
    con.close()


# -- rollout queries ------------------------------------------------------------------------------------------
DAY0 = datetime(2026, 3, 2, 9, 0)


@pytest.fixture
def traffic_store(tmp_path):
    """Three days of traffic in three arms with thumbs, ratings, comments and corrections; returns
    (store, rows) where rows are (request, arm, model, day, latency, thumb, rating)."""
    from harness.store import Store
    from rollout.records import insert_feedback, insert_traffic, traffic_row

    store = Store(tmp_path / "t.duckdb")
    store.migrate()
    rows, traffic = [], []
    for day in range(3):
        for j in range(12):
            arm, model = ("beta", "cand") if j % 3 == 0 else ("production", "prod")
            rid = f"r{day}-{j}"
            latency = 10.0 * (j + 1) + day
            thumb = None if j == 11 else ("1" if (j + day) % 4 else "0")
            rating = (j % 5) + 1 if j % 2 == 0 else None
            rows.append((rid, arm, model, day, latency, thumb, rating))
            ts = DAY0 + timedelta(days=day, minutes=j)
            traffic.append(traffic_row(rid, model, arm, {"document": "x" * j}, "out", latency_ms=latency, ts=ts,
                                       user_id=f"u{j}", source="test"))
            if arm == "production":  # the shadow copy of the same request
                traffic.append(traffic_row(rid, "cand", "shadow", {"document": "x"}, "out", latency_ms=latency * 2,
                                           ts=ts, source="test"))
    with store.write() as con:
        insert_traffic(con, traffic)
        for rid, _, _, day, _, thumb, rating in rows:
            ts = DAY0 + timedelta(days=day, hours=1)
            if thumb is not None:
                insert_feedback(con, rid, "thumb", "0" if thumb == "1" else "1", ts=ts - timedelta(minutes=5),
                                source="test")  # superseded by the later thumb
                insert_feedback(con, rid, "thumb", thumb, ts=ts, source="test")
            if rating is not None:
                insert_feedback(con, rid, "rating", str(rating), ts=ts, source="test")
        insert_feedback(con, "r2-3", "comment", "the date is wrong", ts=DAY0 + timedelta(days=2, hours=3),
                        source="test")
        insert_feedback(con, "r1-1", "correction", '{"a": 1}', ts=DAY0 + timedelta(days=1, hours=3), source="test")
    return store, rows


def test_traffic_per_day_and_arm_with_latency_percentiles(traffic_store):
    import numpy as np

    from rollout import queries as rq

    store, rows = traffic_store
    with store.read() as con:
        got = {(str(r["period"])[:10], r["arm"]): r for r in rq.traffic_by_period(con, period="day")}
        span = rq.traffic_span(con)
        hourly = rq.traffic_by_period(con, period="hour", arms=["beta"])
        with pytest.raises(ValueError):
            rq.traffic_by_period(con, period="fortnight")
    assert span["requests"] == 36 + 24 and span["first"] == DAY0
    assert rq.auto_period(span) == "hour" and rq.auto_period({"first": None}) == "day"
    for day in range(3):
        d = (DAY0 + timedelta(days=day)).date().isoformat()
        for arm in ("production", "beta"):
            lat = [r[4] for r in rows if r[3] == day and r[1] == arm]
            r = got[(d, arm)]
            assert r["requests"] == len(lat) and r["errors"] == 0
            assert r["latency_p50"] == pytest.approx(np.quantile(lat, 0.5))
            assert r["latency_p95"] == pytest.approx(np.quantile(lat, 0.95))
        assert got[(d, "shadow")]["requests"] == 8
    assert {r["arm"] for r in hourly} == {"beta"} and sum(r["requests"] for r in hourly) == 12


def test_feedback_per_day_and_arm_has_wilson_bands_and_counts_each_request_once(traffic_store):
    import statistics

    from rollout import queries as rq

    store, rows = traffic_store
    with store.read() as con:
        got = {(str(r["period"])[:10], r["arm"]): r for r in rq.feedback_by_period(con, period="day")}
        notes = rq.latest_feedback_text(con)
        betas = rq.beta_models(con)
    assert betas == ["cand"]
    for day in range(3):
        d = (DAY0 + timedelta(days=day)).date().isoformat()
        for arm in ("production", "beta"):
            sel = [r for r in rows if r[3] == day and r[1] == arm]
            thumbs = [r[5] for r in sel if r[5] is not None]
            up = sum(t == "1" for t in thumbs)
            ratings = [r[6] for r in sel if r[6] is not None]
            r = got[(d, arm)]
            assert (r["up"], r["thumbs"]) == (up, len(thumbs))
            ref = wilson(up, len(thumbs))
            assert (r["thumbs_rate"], r["thumbs_low"], r["thumbs_high"]) == pytest.approx((ref.value, ref.low,
                                                                                           ref.high))
            assert r["ratings"] == len(ratings) and r["rating_mean"] == pytest.approx(statistics.mean(ratings))
            if len(ratings) > 1:
                half = 1.959963984540054 * statistics.stdev(ratings) / len(ratings) ** 0.5
                assert r["rating_low"] == pytest.approx(max(1.0, statistics.mean(ratings) - half))
        assert (d, "shadow") not in got
    assert [(n["kind"], n["value"], n["arm"], n["model"]) for n in notes] == [
        ("comment", "the date is wrong", "beta", "cand"), ("correction", '{"a": 1}', "production", "prod")]


def test_audit_trail_newest_first_with_beta_share(tmp_path):
    from harness.store import Store
    from rollout import queries as rq
    from rollout.stages import Stage, record

    store = Store(tmp_path / "a.duckdb")
    with store.write() as con:
        record(con, "cand", Stage("candidate"), Stage("shadow"), "ana", "offline gate passed", "d" * 32, False)
        record(con, "cand", Stage("shadow"), Stage("beta", 0.25), "bo", "shadow gate passed", None, True)
    with store.read() as con:
        trail = rq.audit_trail(con)
        only = rq.audit_trail(con, model="other")
    assert [(e["actor"], e["to_stage"], e["forced"]) for e in trail] == [("bo", "beta 25%", True),
                                                                        ("ana", "shadow", False)]
    assert trail[1]["decision"] == "d" * 12 and only == []


# -- actions, checked on the server -------------------------------------------------------------------------------
def test_actions_refuse_anyone_not_a_release_manager_and_write_nothing(mini, monkeypatch):
    from dashboard import actions
    from harness.project import load_project

    project = load_project(mini / "tollgate.yaml")
    store = _store(mini)
    before = _events(mini)
    for user in (None, "mallory"):
        out = actions.advance(project, store, "cand", user=user, reason="looks fine")
        assert not out.ok and out.refused_by == "auth" and "nothing was changed" in out.message
        out = actions.rollback(project, store, user=user, reason="x")
        assert not out.ok and out.refused_by == "auth"
    assert _events(mini) == before


def _events(root: Path) -> list[dict]:
    res = run_cli("rollout", "history", "--json", cwd=root)
    assert res.returncode == 0, res.stderr
    return json.loads(res.stdout)


# -- the pages through AppTest ----------------------------------------------------------------------------------
def _app(start: str) -> None:
    from dashboard.shell import main

    main(start)


def _apptest(project: Path, start: str, monkeypatch, query: dict | None = None):
    import streamlit as st
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("TOLLGATE_PROJECT", str(project))
    st.cache_data.clear()
    at = AppTest.from_function(_app, args=(start,), default_timeout=120)
    at.query_params.update(query or {})
    return at.run()


def _text(at) -> str:
    parts = [e.value for kind in ("markdown", "info", "error", "success", "warning", "caption", "title", "subheader")
             for e in getattr(at, kind)]
    return "\n".join(str(p) for p in parts)


PAGES = ("release", "failures", "overfitting", "beta", "sweeps", "runs")


@pytest.mark.parametrize("page", PAGES)
def test_every_page_explains_an_empty_store_instead_of_a_traceback(tmp_path, monkeypatch, page):
    write_mini(tmp_path / "p")
    at = _apptest(tmp_path / "p" / "tollgate.yaml", page, monkeypatch)
    assert not at.exception
    text = _text(at)
    assert "Nothing to show yet" in text and "tollgate demo" in text


def test_an_older_store_gets_a_message_and_is_not_upgraded_by_viewing(tmp_path, monkeypatch):
    root = tmp_path / "p"
    write_mini(root)
    _old_store(root / ".tollgate" / "tollgate.duckdb")
    at = _apptest(root / "tollgate.yaml", "release", monkeypatch)
    assert not at.exception
    assert "older Tollgate" in _text(at) and "tollgate results" in _text(at)
    from harness.queries import store_status

    assert store_status(_store(root)).schema_version == 3


def test_a_missing_project_gets_a_message(tmp_path, monkeypatch):
    at = _apptest(tmp_path / "nowhere" / "tollgate.yaml", "runs", monkeypatch)
    assert not at.exception
    assert "project file not found" in _text(at) and "tollgate demo" in _text(at)


@pytest.mark.parametrize("page", PAGES)
def test_every_page_renders_the_small_project(mini, monkeypatch, page):
    at = _apptest(mini / "tollgate.yaml", page, monkeypatch)
    assert not at.exception, at.exception
    assert "Data last refreshed" in _text(at)
    if page == "release":
        assert "Verdict: PASS" in _text(at)
    if page == "beta":
        assert "No traffic stored yet" in _text(at)


def test_a_model_without_results_is_explained_on_the_release_page(mini, monkeypatch, tmp_path):
    import shutil

    root = tmp_path / "copy"
    shutil.copytree(mini, root)
    write_mini(root, extra_model=True)
    at = _apptest(root / "tollgate.yaml", "release", monkeypatch, {"candidate": "other", "reference": "prod"})
    assert not at.exception
    assert "has not judged other against prod" in _text(at) and "tollgate gate other --against prod" in _text(at)


def _box(at, label: str):
    return next(s for s in at.selectbox if s.label == label)


def _click(at, label: str):
    return next(b for b in at.button if b.label == label).click().run()


def test_a_viewer_is_refused_and_a_release_manager_advances_with_their_name_in_the_audit(mini, monkeypatch,
                                                                                          tmp_path):
    import shutil

    from dashboard.auth import hash_token

    root = tmp_path / "copy"
    shutil.copytree(mini, root)
    write_mini(root, release_managers={"ana": hash_token("open sesame", iterations=FAST)})
    at = _apptest(root / "tollgate.yaml", "release", monkeypatch)
    assert "Viewing as a guest" in _text(at)
    # a viewer: the button works, the server refuses, nothing is written
    _box(at, "Model").select("cand")
    at.text_input(key="advance_reason").input("gate passed")
    at = _click(at, "Advance")
    assert not at.exception
    assert any("Refused: you are not logged in" in e.value for e in at.error)
    assert _events(root) == []
    # a wrong token does not log in
    at.sidebar.text_input(key="tollgate_login_name").input("ana")
    at.sidebar.text_input(key="tollgate_login_token").input("guess")
    at = _click(at, "Log in")
    assert any("wrong token" in e.value for e in at.sidebar.error)
    # the release manager
    at.sidebar.text_input(key="tollgate_login_name").input("ana")
    at.sidebar.text_input(key="tollgate_login_token").input("open sesame")
    at = _click(at, "Log in")
    assert at.session_state["tollgate_user"] == "ana"
    _box(at, "Model").select("cand")
    at.text_input(key="advance_reason").input("offline gate passed")
    at = _click(at, "Advance")
    assert not at.exception
    assert any("cand: candidate → shadow" in s.value for s in at.success), _text(at)
    events = _events(root)
    assert [(e["model"], e["to_stage"], e["actor"], e["reason"]) for e in events] == [
        ("cand", "shadow", "ana", "offline gate passed")]
    # an empty reason is refused by the stage machine, with its message
    _box(at, "Model").select("cand")
    at = _click(at, "Advance")
    assert any("Refused: say why" in e.value for e in at.error)
    assert len(_events(root)) == 1
    # rollback out of shadow, by the same user
    _box(at, "What").select("cand")
    at.text_input(key="rollback_reason").input("wrong dates in shadow")
    at = _click(at, "Roll back")
    assert any("Rolled back by ana" in s.value for s in at.success)
    assert _events(root)[-1]["actor"] == "ana" and _events(root)[-1]["to_stage"] == "candidate"


def test_a_page_waits_for_a_writer_holding_the_store_instead_of_showing_a_lock_error(mini, monkeypatch, tmp_path):
    import shutil
    import time

    root = tmp_path / "copy"
    shutil.copytree(mini, root)
    db = root / ".tollgate" / "tollgate.duckdb"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import sys, time, duckdb
        con = duckdb.connect({str(db)!r})
        con.begin()
        con.execute("INSERT INTO schema_version VALUES (99, now())")
        print("locked", flush=True)
        time.sleep(2.0)
        con.rollback()
        con.close()
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        at = _apptest(root / "tollgate.yaml", "runs", monkeypatch)
        waited = time.perf_counter() - t0
    finally:
        holder.wait(timeout=30)
    assert not at.exception
    assert "Data last refreshed" in _text(at) and "4 run(s)" in _text(at)
    assert waited > 0.5  # it retried until the writer let go, and said nothing about locks
    assert not any("lock" in e.value.lower() for e in at.error)


def test_a_failing_rewrite_links_to_its_source_example(mini, monkeypatch):
    at = _apptest(mini / "tollgate.yaml", "failures", monkeypatch, {"model": "prod"})
    assert not at.exception
    text = _text(at)
    assert "failing example(s) of **prod**" in text
    assert "Rewritten from **h3** in `held`" in text
    at = _click(at, "Open the source example h3")
    assert not at.exception
    assert any(s.value == "Example h3 in held" for s in at.subheader)
    answers = at.table[0].value
    assert list(answers.index) == ["cand", "prod"] and list(answers["passed"]) == ["yes", "no"]
