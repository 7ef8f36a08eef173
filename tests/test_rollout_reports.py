"""Shadow replay, the shadow and beta reports and production monitoring, checked against numbers
computed by hand, on a real DuckDB file and python-adapter models."""

from __future__ import annotations

import json
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_project, write_suite

from harness import store as st
from harness.cli import main
from harness.policy import BetaGate, ShadowGate
from harness.project import load_project
from rollout.beta import beta_report
from rollout.monitor import monitor, spark
from rollout.records import insert_feedback, insert_traffic, traffic_row
from rollout.shadow import rollout_suite, shadow_report
from rollout.stages import Stage, record

T0 = datetime(2026, 3, 2, 9, 0)

MODELS = """\
  prod:
    adapter: python
    role: production
    options: {callable: "mymodels:prod"}
  cand:
    adapter: python
    options: {callable: "mymodels:cand"}
  worse:
    adapter: python
    options: {callable: "mymodels:prod"}
  slow:
    adapter: python
    options: {callable: "mymodels:prod"}
"""
# cand echoes its prompt and logs every call; it is "killed" (Ctrl-C) on its KILL_AT-th call if that file exists
MYMODELS = textwrap.dedent("""\
    from pathlib import Path
    HERE = Path(__file__).parent
    def prod(prompt):
        return "prod: " + prompt
    def cand(prompt):
        calls = HERE / "calls.txt"
        with calls.open("a") as f:
            f.write(prompt.replace("\\n", " ") + "\\n")
        kill = HERE / "KILL_AT"
        if kill.exists() and len(calls.read_text().splitlines()) == int(kill.read_text()):
            raise KeyboardInterrupt
        return prompt
""")


def make_project(root: Path, rollout: str | None = "rollout:\n  suite: claims\n") -> Path:
    (root / "mymodels.py").write_text(MYMODELS)
    write_project(root, MODELS, suites="  - suites/*\n" + (rollout or ""))
    write_suite(root, "claims", [{"id": "c1", "input": {"doc": "x"}, "expected": {"name": "A", "amount": 10}}],
                prompt="Claim document: {{ doc }}", extra="checks: [json_fields]\n")
    return root


def store_of(root: Path) -> st.Store:
    return st.Store(root / ".tollgate" / "tollgate.duckdb")


@pytest.fixture
def project(tmp_path, monkeypatch, capsys) -> Path:
    make_project(tmp_path)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def log_production(root: Path, n: int, *, fields: bool = True) -> None:
    with store_of(root).write() as con:
        insert_traffic(con, [traffic_row(f"r{i:03d}", "prod", "production",
                                         {"doc": f"claim {i}"} if fields else f"question {i}", "ok",
                                         user_id=f"u{i}", latency_ms=100.0, ts=T0 + timedelta(minutes=i))
                             for i in range(n)])


def q(root: Path, sql: str, params: list | None = None) -> list[tuple]:
    with store_of(root).read() as con:
        return con.execute(sql, params or []).fetchall()


def calls(root: Path) -> list[str]:
    p = root / "calls.txt"
    return p.read_text().splitlines() if p.exists() else []


# -- shadow replay ------------------------------------------------------------------------------------------------
def test_replay_answers_each_logged_production_request_once_and_resumes(project, capsys):
    log_production(project, 30)
    assert main(["shadow", "replay", "cand", "--limit", "10", "--no-progress"]) == 0
    assert "10 of 10 logged production requests answered" in capsys.readouterr().out
    assert q(project, "SELECT count(*) FROM traffic WHERE arm = 'shadow'") == [(10,)]
    # the first ten in time order were answered
    assert [r[0] for r in q(project, "SELECT request_id FROM traffic WHERE arm = 'shadow' ORDER BY 1")] == \
        [f"r{i:03d}" for i in range(10)]
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "20 of 20" in out and "10 were answered before" in out
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 0
    assert "0 of 0" in capsys.readouterr().out
    assert len(calls(project)) == 30  # the model ran once per request, never twice
    rows = q(project, "SELECT s.request_id, s.user_id, s.output, s.source, p.user_id FROM traffic s "
                      "JOIN traffic p ON p.request_id = s.request_id AND p.arm = 'production' "
                      "WHERE s.arm = 'shadow' AND s.model = 'cand' ORDER BY 1")
    assert len(rows) == 30 and len({r[0] for r in rows}) == 30
    # fields rendered with the rollout suite's template; the user id carried over from production
    assert rows[7][1:] == ("u7", "Claim document: claim 7", "replay", "u7")


def test_a_killed_replay_keeps_its_finished_batches_and_the_rerun_does_the_rest(project, capsys):
    log_production(project, 80)
    (project / "KILL_AT").write_text("40")  # Ctrl-C in the second batch of 32
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 130
    assert q(project, "SELECT count(*) FROM traffic WHERE arm = 'shadow'") == [(32,)]
    (project / "KILL_AT").unlink()
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 0
    assert "48 of 48" in capsys.readouterr().out
    assert q(project, "SELECT count(*), count(DISTINCT request_id) FROM traffic WHERE arm = 'shadow'") == [(80, 80)]
    done = calls(project)
    assert len(done) == 40 + 48 and len(set(done)) == 80  # only the unfinished batch ran twice


def test_a_negative_replay_limit_is_bad_input(project, capsys):
    log_production(project, 3)
    assert main(["shadow", "replay", "cand", "--limit", "-1", "--no-progress"]) == 2
    assert "--limit" in capsys.readouterr().err


def test_replay_of_field_inputs_without_rollout_suite_is_bad_input(tmp_path, monkeypatch, capsys):
    make_project(tmp_path, rollout=None)
    monkeypatch.chdir(tmp_path)
    log_production(tmp_path, 5)
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "rollout.suite" in err and "prompt template" in err
    assert q(tmp_path, "SELECT count(*) FROM traffic WHERE arm = 'shadow'") == [(0,)]
    assert calls(tmp_path) == []  # refused before the model ran


def test_replay_of_text_inputs_needs_no_suite(tmp_path, monkeypatch, capsys):
    make_project(tmp_path, rollout=None)
    monkeypatch.chdir(tmp_path)
    log_production(tmp_path, 5, fields=False)
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 0
    assert q(tmp_path, "SELECT output FROM traffic WHERE arm = 'shadow' ORDER BY request_id LIMIT 1") == \
        [("question 0",)]


def test_a_rollout_suite_the_project_lacks_is_bad_input(tmp_path, monkeypatch, capsys):
    make_project(tmp_path, rollout="rollout:\n  suite: clams\n")
    monkeypatch.chdir(tmp_path)
    log_production(tmp_path, 3)
    assert main(["shadow", "replay", "cand", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "tollgate.yaml" in err and "rollout.suite" in err and "'clams'" in err and "claims" in err


# -- shadow report ------------------------------------------------------------------------------------------------
PROD = {"name": "A", "amount": 10}
# request -> (candidate answer or None for an error, the reviewer's correction or None)
CASES = {
    **{f"r{i:02d}": (PROD, PROD if i < 6 else None) for i in range(12)},  # identical; 6 corrected, both right
    "r12": ({"name": "B", "amount": 10}, {"name": "B", "amount": 10}),  # only the candidate right
    "r13": ({"name": "B", "amount": 10}, {"name": "B", "amount": 10}),
    "r14": ({"name": "B", "amount": 10}, {"name": "b", "amount": 10.0}),  # normalised: still right
    "r15": ({"name": "A", "amount": 11}, PROD),  # only production right
    "r16": ({"name": "A", "amount": 11}, None),
    "r17": ({"name": "C", "amount": 99}, {"name": "Z", "amount": 1}),  # both wrong
    "r18": (None, PROD),  # the candidate failed: no pair for accuracy
    "r19": (PROD, PROD),  # production failed
}


def log_shadow(root: Path, candidate: str = "cand", cand_ms: float = 120.0) -> None:
    with store_of(root).write() as con:
        rows = []
        for i, (rid, (answer, _)) in enumerate(CASES.items()):
            ts = T0 + timedelta(minutes=i)
            rows.append(traffic_row(rid, "prod", "production", {"doc": rid}, None if rid == "r19" else
                                    json.dumps(PROD), latency_ms=100.0 + i, ts=ts,
                                    error="upstream 500" if rid == "r19" else None))
            rows.append(traffic_row(rid, candidate, "shadow", {"doc": rid}, None if answer is None else
                                    json.dumps(answer), latency_ms=cand_ms + i, ts=ts,
                                    error="timeout" if answer is None else None))
        insert_traffic(con, rows)
        for i, (rid, (_, correction)) in enumerate(CASES.items()):
            if correction is not None:
                insert_feedback(con, rid, "correction", json.dumps(correction), ts=T0 + timedelta(hours=1, minutes=i))


def test_shadow_report_numbers_match_a_hand_count(project, capsys):
    log_shadow(project)
    assert main(["shadow", "report", "cand", "--json"]) == 3  # 20 pairs < the default 200: inconclusive
    d = json.loads(capsys.readouterr().out)
    assert d["pairs"] == 20 and d["production"] == "prod" and d["candidate"] == "cand"
    # 18 pairs without an error: 12 identical; name same on 12 + r15, r16; amount same on 12 + r12-r14
    assert (d["agreement"]["value"], d["agreement"]["n"]) == (pytest.approx(12 / 18), 18)
    assert d["field_agreement"]["name"]["value"] == pytest.approx(14 / 18)
    assert d["field_agreement"]["amount"]["value"] == pytest.approx(15 / 18)
    assert (d["candidate_errors"]["value"], d["candidate_errors"]["n"]) == (pytest.approx(1 / 20), 20)
    assert d["production_errors"]["value"] == pytest.approx(1 / 20)
    # corrections on error-free pairs: r00-r05, r12-r15, r17 = 11; candidate right on 9, production on 7
    c = d["corrections"]
    assert c["n"] == 11 and c["test"] == "mcnemar-exact"
    assert (c["candidate"], c["reference"]) == (pytest.approx(9 / 11), pytest.approx(7 / 11))
    assert c["discordant"] == [3, 1] and c["difference"] == pytest.approx(2 / 11)
    assert c["p_value"] == pytest.approx(0.625)  # exact McNemar, 3 vs 1: 2 * P(X <= 1 | n=4, 1/2) = 10/16
    lat = d["latency"]
    assert lat["n"] == 18 and lat["median_ratio"] == pytest.approx(128.5 / 108.5)
    assert lat["median_difference_ms"] == pytest.approx(20.0) and lat["prob_slower"] == 1.0
    assert "200" in d["reasons"][0] and d["verdict"] == "inconclusive"
    # the report's decision lands in the decision records
    (row,) = q(project, "SELECT candidate, reference, verdict, evidence->>'gate' FROM decisions WHERE decision_id = ?",
               [d["decision_id"]])
    assert row == ("cand", "prod", "inconclusive", "shadow")


def _report(root: Path, candidate: str, **policy) -> object:
    project = load_project(root / "tollgate.yaml")
    with store_of(root).read() as con:
        return shadow_report(con, candidate, ShadowGate(**policy), rollout_suite(project))


def test_shadow_verdicts(project):
    log_shadow(project)  # candidate right on 9/11 corrections, production 7/11; 5% errors; 1.2x latency
    base = {"min_pairs": 20, "min_corrections": 10, "non_inferior": 0.3, "max_error_rate": 0.2}
    rep = _report(project, "cand", **{**base, "min_pairs": 21})
    assert rep.verdict == "inconclusive" and rep.reasons == ["20 paired requests; the shadow gate needs 21 (1 more)."]
    rep = _report(project, "cand", **base)
    assert rep.verdict == "pass", rep.reasons
    assert rep.corrections["p_noninferior"] < 0.05
    assert _report(project, "cand", **{**base, "min_corrections": 12}).verdict == "inconclusive"  # 11 < 12
    assert _report(project, "cand", **{**base, "non_inferior": 0.05}).verdict == "inconclusive"  # not shown yet
    # candidate errors 1/20 = 0.05, Wilson interval [0.009, 0.236]: above the limit is inconclusive,
    # the whole interval above it fails
    assert _report(project, "cand", **{**base, "max_error_rate": 0.02}).verdict == "inconclusive"
    assert _report(project, "cand", **{**base, "max_error_rate": 0.005}).verdict == "fail"
    # 3x slower, every pair: the latency ratio fails the gate
    log_shadow(project, "slow", cand_ms=300.0)
    rep = _report(project, "slow", **base)
    assert rep.verdict == "fail" and rep.latency["median_ratio"] > 2.0
    assert any("latency" in r and "limit 2.0x" in r for r in rep.reasons)
    assert _report(project, "slow", **{**base, "max_latency_ratio": 4.0}).verdict == "pass"
    assert _report(project, "slow", **{**base, "max_latency_ratio": None}).verdict == "pass"


def test_a_candidate_worse_on_corrections_fails_the_shadow_gate(project, capsys):
    with store_of(project).write() as con:
        rows = []
        for i in range(40):
            ts = T0 + timedelta(minutes=i)
            rows.append(traffic_row(f"w{i}", "prod", "production", {"doc": str(i)}, json.dumps(PROD),
                                    latency_ms=100.0, ts=ts))
            rows.append(traffic_row(f"w{i}", "worse", "shadow", {"doc": str(i)},
                                    json.dumps(PROD if i < 20 else {"name": "A", "amount": 0}), latency_ms=100.0,
                                    ts=ts))
            insert_feedback(con, f"w{i}", "correction", json.dumps(PROD), ts=ts + timedelta(hours=1))
        insert_traffic(con, rows)
    policy = {"min_pairs": 40, "min_corrections": 30, "non_inferior": 0.05}
    rep = _report(project, "worse", **policy)
    assert tuple(rep.corrections["discordant"]) == (0, 20) and rep.corrections["p_inferior"] < 0.05
    assert rep.verdict == "fail" and "worse by more than 0.05" in " ".join(rep.reasons)
    (project / "tollgate.yaml").write_text((project / "tollgate.yaml").read_text() +
                                           "  shadow: {min_pairs: 40, min_corrections: 30, non_inferior: 0.05}\n")
    capsys.readouterr()
    assert main(["shadow", "report", "worse"]) == 1
    assert "FAIL" in capsys.readouterr().out


# -- beta report --------------------------------------------------------------------------------------------------
def add_feedback(con, rows: list[tuple[str, str, str, datetime]]) -> None:
    """Many feedback rows at once, as ``insert_feedback`` writes them one by one (request, kind, value, ts)."""
    import pyarrow as pa

    from harness.hashing import hash_obj

    now = st.utcnow()
    con.register("_fb", pa.Table.from_pylist([
        {"feedback_id": hash_obj(r, k, v, str(t)), "request_id": r, "kind": k, "value": v, "ts": t, "source": "test",
         "ingested_at": now} for r, k, v, t in rows]))
    con.execute("INSERT INTO feedback (feedback_id, request_id, kind, value, ts, source, ingested_at) "
                "SELECT feedback_id, request_id, kind, value, ts, source, ingested_at FROM _fb")
    con.unregister("_fb")


def log_beta(con, day: datetime, arm: str, model: str, ups: int, downs: int, tag: str, ratings: list[int] = ()):
    rows, feedback = [], []
    for i in range(ups + downs):
        rid = f"{tag}-{arm}-{day:%m%d}-{i}"
        rows.append(traffic_row(rid, model, arm, "hi", "ok", user_id=f"{arm}-user-{i}", ts=day + timedelta(minutes=i)))
        feedback.append((rid, "thumb", "1" if i < ups else "0", day + timedelta(minutes=i, seconds=30)))
        if i < len(ratings):
            feedback.append((rid, "rating", str(ratings[i]), day + timedelta(minutes=i, seconds=40)))
    insert_traffic(con, rows)
    add_feedback(con, feedback)


def test_beta_report_counts_thumbs_per_arm_and_keeps_a_daily_series(project, capsys):
    s = store_of(project)
    d1, d2 = T0, T0 + timedelta(days=1)
    with s.write() as con:
        log_beta(con, d1, "beta", "cand", 4, 2, "a", ratings=[5, 4])
        log_beta(con, d1, "production", "prod", 3, 2, "a", ratings=[2])
        log_beta(con, d2, "beta", "cand", 1, 1, "b")
        log_beta(con, d2, "production", "prod", 2, 0, "b")
        # a user who changes their mind: the latest thumb counts, once
        insert_feedback(con, f"a-production-{d1:%m%d}-4", "thumb", "1", ts=d1 + timedelta(hours=5))
        # another candidate's beta traffic is not this candidate's
        log_beta(con, d1, "beta", "worse", 0, 9, "z")
    with s.read() as con:
        rep = beta_report(con, "cand", BetaGate(min_feedback=5))
    assert rep.thumbs == {"beta": {"up": 5, "n": 8}, "production": {"up": 6, "n": 7}}
    assert rep.ratings["beta"] == {"mean": 4.5, "n": 2} and rep.ratings["production"] == {"mean": 2.0, "n": 1}
    assert rep.since == str(d1)  # no stage event: the first beta request
    assert [(x["day"], x["n_beta"], x["n_production"]) for x in rep.daily] == [("2026-03-02", 6, 5),
                                                                                ("2026-03-03", 8, 7)]
    assert rep.daily[0]["diff"] == pytest.approx(4 / 6 - 4 / 5)
    assert rep.daily[-1]["diff"] == pytest.approx(5 / 8 - 6 / 7) == rep.thumbs_diff.diff
    assert rep.daily[-1]["low"] == rep.thumbs_diff.low
    assert rep.verdict == "inconclusive"  # 8 vs 7 decide nothing, whatever the margin
    assert main(["beta", "report", "cand", "--json"]) == 3
    d = json.loads(capsys.readouterr().out)
    assert d["thumbs"] == rep.thumbs and d["verdict"] == "inconclusive"
    assert q(project, "SELECT verdict, evidence->>'gate' FROM decisions WHERE decision_id = ?",
             [d["decision_id"]]) == [("inconclusive", "beta")]


@pytest.mark.parametrize(("up_beta", "up_prod", "n", "min_feedback", "verdict", "code"), [
    (285, 225, 300, 100, "pass", 0),  # 95% vs 75%: clearly non-inferior
    (90, 270, 300, 100, "fail", 1),  # 30% vs 90%: clearly worse
    (285, 225, 300, 400, "inconclusive", 3),  # the same evidence, but fewer than min_feedback per arm
    (240, 240, 300, 100, "inconclusive", 3),  # equal rates: the interval still holds -margin
])
def test_beta_verdicts(project, capsys, up_beta, up_prod, n, min_feedback, verdict, code):
    with store_of(project).write() as con:
        log_beta(con, T0, "beta", "cand", up_beta, n - up_beta, "v")
        log_beta(con, T0, "production", "prod", up_prod, n - up_prod, "v")
    with store_of(project).read() as con:
        rep = beta_report(con, "cand", BetaGate(min_feedback=min_feedback, non_inferior=0.1))
    assert rep.verdict == verdict, rep.reason
    if verdict == "inconclusive" and min_feedback > n:
        assert rep.more_per_arm >= min_feedback - n and f"{min_feedback:,} observations" in rep.reason
    (project / "tollgate.yaml").write_text((project / "tollgate.yaml").read_text() +
                                           f"  beta: {{min_feedback: {min_feedback}, non_inferior: 0.1}}\n")
    assert main(["beta", "report", "cand"]) == code


def test_beta_report_starts_at_the_beta_event_when_traffic_follows_it(project):
    s = store_of(project)
    with s.write() as con:  # last month's logs: both arms, beta users unhappy
        log_beta(con, T0, "beta", "cand", 0, 5, "old")
        log_beta(con, T0, "production", "prod", 5, 0, "old")
    with s.read() as con:
        rep = beta_report(con, "cand", BetaGate(min_feedback=1))
    assert rep.since == str(T0) and rep.thumbs["beta"] == {"up": 0, "n": 5}
    with s.write() as con:
        record(con, "cand", Stage("shadow"), Stage("beta", 0.05), "ana", "go", None, False)
    with s.read() as con:  # the event, but no traffic after it yet: still the logs' period
        assert beta_report(con, "cand", BetaGate(min_feedback=1)).thumbs["beta"]["n"] == 5
    with s.write() as con:
        (event_ts,) = con.execute("SELECT ts FROM stage_events").fetchone()
        log_beta(con, event_ts + timedelta(minutes=1), "beta", "cand", 3, 0, "new")
        log_beta(con, event_ts + timedelta(minutes=1), "production", "prod", 1, 1, "new")
    with s.read() as con:
        rep = beta_report(con, "cand", BetaGate(min_feedback=1))
    assert rep.since == str(event_ts)
    assert rep.thumbs == {"beta": {"up": 3, "n": 3}, "production": {"up": 1, "n": 2}}  # only after the event


# -- monitoring ---------------------------------------------------------------------------------------------------
def log_days(root: Path, ups_per_day: list[int], n: int = 40, long_last: bool = False) -> None:
    with store_of(root).write() as con:
        rows, feedback = [], []
        for d, ups in enumerate(ups_per_day):
            day = T0 + timedelta(days=d)
            last = d == len(ups_per_day) - 1
            for i in range(n):
                rid = f"m{d}-{i}"
                text = f"claim {i} " + ("with a very long description of the accident " * 8 if long_last and last
                                        else "short")
                rows.append(traffic_row(rid, "prod", "production", text, "ok", user_id=f"u{i}",
                                        ts=day + timedelta(minutes=i)))
                feedback.append((rid, "thumb", "1" if i < ups else "0", day + timedelta(minutes=i, seconds=9)))
        insert_traffic(con, rows)
        add_feedback(con, feedback)


def _monitor(root: Path):
    project = load_project(root / "tollgate.yaml")
    with store_of(root).read() as con:
        return monitor(con, project)


def test_monitor_recommends_retraining_on_a_clear_drop_in_the_last_period(project, capsys):
    log_days(project, [34, 33, 35, 14])
    rep = _monitor(project)
    assert rep.model == "prod" and [p.thumbs for p in rep.periods] == [40, 40, 40, 40]
    assert [p.start for p in rep.periods] == ["2026-03-02", "2026-03-03", "2026-03-04", "2026-03-05"]
    from scipy.stats import fisher_exact

    p = fisher_exact([[14, 26], [102, 18]], alternative="less").pvalue
    assert rep.quality["p_value"] == pytest.approx(p) and p < 0.05
    assert rep.quality["baseline"] == pytest.approx(102 / 120) and rep.quality["latest"] == pytest.approx(14 / 40)
    assert rep.retrain_recommended and "fell from 0.850 to 0.350" in rep.reasons[0]
    assert main(["monitor"]) == 1
    assert "Retrain recommended: YES" in capsys.readouterr().out


def test_monitor_does_not_flag_a_stable_series(project, capsys):
    log_days(project, [34, 33, 35, 33])
    rep = _monitor(project)
    assert not rep.retrain_recommended and rep.quality["p_value"] > 0.05
    assert rep.drift["input_length"]["significant"] is False
    assert "no significant quality drop or input drift" in rep.reasons[0]
    assert main(["monitor", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["retrain_recommended"] is False


def test_monitor_detects_input_length_drift_with_ks(project):
    log_days(project, [34, 33, 35, 34], long_last=True)
    rep = _monitor(project)
    from scipy.stats import ks_2samp

    short = [len(json.dumps(f"claim {i} short")) for i in range(40)] * 3
    long = [len(json.dumps(f"claim {i} " + "with a very long description of the accident " * 8)) for i in range(40)]
    ks = ks_2samp(short, long)
    d = rep.drift["input_length"]
    assert d["test"] == "ks-2samp" and d["statistic"] == pytest.approx(ks.statistic) == 1.0
    assert d["p_value"] == pytest.approx(ks.pvalue) and d["significant"] is True
    assert not rep.retrain_recommended  # drift alone: watch, do not retrain
    assert "drifted" in rep.reasons[0] and "do not retrain yet" in rep.reasons[0]


def test_monitor_counts_a_users_latest_thumb_as_the_beta_report_does(project):
    log_days(project, [34, 33, 35, 34])
    with store_of(project).write() as con:  # on the last day, every user changed their mind to a thumb down
        add_feedback(con, [(f"m3-{i}", "thumb", "0", T0 + timedelta(days=3, minutes=i, seconds=50)) for i in range(40)])
    rep = _monitor(project)
    assert rep.periods[-1].thumbs_up == 0
    assert rep.retrain_recommended


def test_monitor_needs_more_periods_than_its_baseline(project):
    log_days(project, [30, 30])
    rep = _monitor(project)
    assert not rep.retrain_recommended and rep.quality == {} and "needs 4" in rep.reasons[0]


def test_spark():
    assert spark([0, 1, None, 2]) == "▁▅ █"
    assert spark([]) == "" and spark([None]) == ""
    assert spark([3, 3]) == "▁▁" and spark([0, float("nan"), 7]) == "▁ █"
    assert spark(list(range(8))) == "▁▂▃▄▅▆▇█"
