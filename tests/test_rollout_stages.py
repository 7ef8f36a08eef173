"""The stage machine: a fold of append-only events, gated moves (offline, shadow, beta gates computed
for real on python-adapter models and a real DuckDB file), forced moves, rollback, the audit trail,
sticky beta buckets and the start of a stage's period."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from conftest import write_project, write_suite

from harness import store as st
from harness.cli import main
from harness.errors import TollgateInputError
from harness.project import load_project
from rollout.promote import MoveRefusedError, advance
from rollout.records import insert_traffic, traffic_row
from rollout.stages import (
    Assignment,
    Stage,
    assignment,
    beta_bucket,
    events,
    gate_needed,
    next_stage,
    period_start,
    record,
    serves,
)

# -- the fold, the steps, the buckets --------------------------------------------------------------------------


def _store(tmp_path: Path) -> st.Store:
    s = st.Store(tmp_path / "s.duckdb")
    s.migrate()
    return s


def test_before_any_event_the_role_production_model_serves_and_every_other_model_is_a_candidate(tmp_path):
    s = _store(tmp_path)
    with s.read() as con:
        a = assignment(con, "p0")
    assert (a.production, a.shadow, a.beta, a.beta_share) == ("p0", None, None, 0.0)
    assert a.stage_of("p0") == Stage("production") and a.stage_of("c1") == Stage("candidate")
    assert a.production_history == ["p0"]
    with s.read() as con:
        assert assignment(con, None).production is None


def test_the_assignment_is_the_fold_of_the_events(tmp_path):
    s = _store(tmp_path)
    steps = [
        ("c1", Stage("candidate"), Stage("shadow")),
        ("c1", Stage("shadow"), Stage("beta", 0.05)),
        ("c1", Stage("beta", 0.05), Stage("beta", 0.25)),
    ]
    seen = []
    for model, frm, to in steps:
        with s.write() as con:
            record(con, model, frm, to, "ana", "step", None, False)
        with s.read() as con:
            seen.append(assignment(con, "p0"))
    assert seen[0].shadow == "c1" and seen[0].beta is None and seen[0].stage_of("c1").label() == "shadow"
    assert seen[1].shadow is None and (seen[1].beta, seen[1].beta_share) == ("c1", 0.05)
    assert seen[1].stage_of("c1").label() == "beta 5%"
    assert (seen[2].beta, seen[2].beta_share, seen[2].production) == ("c1", 0.25, "p0")
    with s.write() as con:  # promotion: the old production retired, the candidate serves
        record(con, "p0", Stage("production"), Stage("retired"), "ana", "replaced", "d1", False)
        record(con, "c1", Stage("beta", 0.25), Stage("production"), "ana", "promote", "d1", False)
    with s.read() as con:
        a = assignment(con, "p0")
        evs = events(con)
    assert (a.production, a.beta, a.beta_share, a.shadow) == ("c1", None, 0.0, None)
    assert a.stage_of("p0").name == "retired" and a.production_history == ["p0", "c1"]
    assert [e["to_stage"] for e in evs] == ["shadow", "beta", "beta", "retired", "production"]
    assert [e["share"] for e in evs][:3] == [None, 0.05, 0.25]
    with s.read() as con:
        assert [e["model"] for e in events(con, "p0")] == ["p0"]


def test_next_stage_walks_the_beta_steps_in_order_and_names_the_gate_of_each_move():
    steps = [0.05, 0.25]
    walk = [Stage("candidate")]
    while walk[-1].name != "production":
        walk.append(next_stage(walk[-1], steps))
    assert [s.label() for s in walk] == ["candidate", "shadow", "beta 5%", "beta 25%", "production"]
    assert [gate_needed(s) for s in walk[:-1]] == ["offline", "shadow", "beta", "beta"]
    assert next_stage(Stage("retired"), steps) == Stage("shadow")
    with pytest.raises(TollgateInputError, match="already in production"):
        next_stage(Stage("production"), steps)


def _bucket(user: str, salt: str) -> float:
    """Independent of the code under test: the first 8 bytes of sha256('salt:user'), over 2**64."""
    return int.from_bytes(hashlib.sha256(f"{salt}:{user}".encode()).digest()[:8], "big") / 2**64


def test_beta_bucket_is_a_fixed_function_of_salt_and_user():
    # literal values: a change of hash would silently move every beta user to another arm
    assert beta_bucket("alice", "s3cret") == pytest.approx(0.07661782969868468, abs=1e-15)
    assert beta_bucket("user-42", "tollgate") == pytest.approx(0.8631820061164456, abs=1e-15)
    for user in ("alice", "bob", "user-1", "ünïcode", ""):
        for salt in ("tollgate", "s3cret"):
            assert beta_bucket(user, salt) == _bucket(user, salt)
    assert beta_bucket("alice", "s3cret") != beta_bucket("alice", "tollgate")  # the salt matters


def test_beta_is_sticky_and_monotone_in_the_share():
    users = [f"user-{i}" for i in range(4000)]
    a5 = Assignment(production="prod", beta="cand", beta_share=0.05)
    a25 = Assignment(production="prod", beta="cand", beta_share=0.25)
    in5 = {u for u in users if serves(a5, u, "salt") == ("cand", "beta")}
    in25 = {u for u in users if serves(a25, u, "salt") == ("cand", "beta")}
    assert in5 < in25  # nobody in beta at 5% leaves it at 25%
    assert in5 == {u for u in users if _bucket(u, "salt") < 0.05}
    assert 0.04 < len(in5) / len(users) < 0.06 and 0.23 < len(in25) / len(users) < 0.27
    assert all(serves(a5, u, "salt") == ("prod", "production") for u in users if u not in in5)
    assert {serves(a5, u, "salt") for u in sorted(in5)[:50]} == {("cand", "beta")}  # same answer every call
    assert serves(a25, None, "salt") == ("prod", "production")  # no user id: never in beta
    assert serves(Assignment(production="prod"), users[0], "salt") == ("prod", "production")


def test_period_start_is_the_event_time_when_traffic_follows_it_else_the_first_request_of_the_arm(tmp_path):
    s = _store(tmp_path)
    with s.read() as con:
        assert period_start(con, "cand", "beta", "beta") is None
    old = datetime(2026, 1, 5, 9, 0)
    with s.write() as con:
        insert_traffic(con, [traffic_row(f"r{i}", "cand", "beta", "hi", "ok", ts=old + timedelta(hours=i))
                             for i in range(3)])
        insert_traffic(con, [traffic_row("p0", "prod", "production", "hi", "ok", ts=old - timedelta(days=3))])
    with s.read() as con:
        assert period_start(con, "cand", "beta", "beta") == old  # no event: the first beta request
    with s.write() as con:
        record(con, "cand", Stage("shadow"), Stage("beta", 0.05), "ana", "go", None, False)
    with s.read() as con:
        (event_ts,) = con.execute("SELECT ts FROM stage_events").fetchone()
        assert period_start(con, "cand", "beta", "beta") == old  # logs predate the event (a backfill)
    with s.write() as con:
        insert_traffic(con, [traffic_row("late", "cand", "beta", "hi", "ok", ts=event_ts + timedelta(seconds=5))])
    with s.read() as con:
        assert period_start(con, "cand", "beta", "beta") == event_ts  # traffic follows the event
    with s.write() as con:  # a beta -> beta step is no new beta period
        record(con, "cand", Stage("beta", 0.05), Stage("beta", 0.25), "ana", "step", None, False)
    with s.read() as con:
        assert period_start(con, "cand", "beta", "beta") == event_ts


# -- the walk through real gates ---------------------------------------------------------------------------------
MODELS = """\
  good:
    adapter: python
    role: candidate
    options: {callable: "gmodels:good"}
  ref:
    adapter: python
    role: production
    options: {callable: "gmodels:ref"}
  bad:
    adapter: python
    options: {callable: "gmodels:bad"}
"""
# Example i is answered right ("a") by good unless i % 20 == 0, by ref unless i % 5 == 0, by bad if i is even.
GMODELS = textwrap.dedent("""\
    def _i(prompt):
        return int(prompt.split("q")[-1])
    def good(prompt):
        return "a" if _i(prompt) % 20 != 0 else "b"
    def ref(prompt):
        return "a" if _i(prompt) % 5 != 0 else "b"
    def bad(prompt):
        return "a" if _i(prompt) % 2 == 0 else "b"
""")
POLICY = """\
gate:
  rules:
    - {suite: heldout, non_inferior: 0.02}
rollout:
  suite: heldout
  beta_steps: [0.05, 0.25]
  shadow: {min_pairs: 60, min_corrections: 30, non_inferior: 0.05}
  beta: {min_feedback: 100, non_inferior: 0.1}
"""
T0 = datetime(2026, 3, 2, 8, 0)


def _iso(t: datetime) -> str:
    return t.isoformat() + "Z"


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture(scope="module")
def _evaluated(tmp_path_factory) -> Path:
    """A project whose three models ran the held-out suite: built once, copied for each test."""
    root = tmp_path_factory.mktemp("stages") / "project"
    (root / "suites").mkdir(parents=True)
    (root / "gmodels.py").write_text(GMODELS)
    write_project(root, MODELS, suites="  - suites/*\n" + POLICY)
    write_suite(root, "heldout", [{"id": f"{i:04d}", "input": f"q{i}", "expected": "a"} for i in range(200)],
                extra="checks: [exact_match]\n")
    cwd, path = os.getcwd(), list(sys.path)
    os.chdir(root)
    try:
        for m in ("good", "ref", "bad"):
            assert main(["run", "--model", m, "--no-progress"]) == 0
    finally:
        os.chdir(cwd)
        sys.path[:] = path
        sys.modules.pop("gmodels", None)
    return root


@pytest.fixture
def project(_evaluated, tmp_path, monkeypatch, capsys) -> Path:
    root = tmp_path / "project"
    shutil.copytree(_evaluated, root)
    monkeypatch.chdir(root)
    monkeypatch.delenv("TOLLGATE_RELEASE_MANAGERS", raising=False)  # anyone may move stages here
    capsys.readouterr()
    return root


def _db(root: Path):
    import duckdb

    return duckdb.connect(str(root / ".tollgate" / "tollgate.duckdb"), read_only=True)


def _count(root: Path, sql: str, params: list | None = None) -> int:
    con = _db(root)
    try:
        return con.execute(sql, params or []).fetchone()[0]
    finally:
        con.close()


def _status(capsys) -> dict:
    capsys.readouterr()
    assert main(["rollout", "status", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _history(capsys) -> list[dict]:
    capsys.readouterr()
    assert main(["rollout", "history", "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def _advance(capsys, model: str, *extra: str, reason: str = "gate passed") -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["rollout", "advance", model, "--actor", "ana", "--reason", reason, *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def _shadow_evidence(root: Path) -> None:
    """100 logged production requests answered by ref, the candidate's shadow answers (replayed for real),
    and reviewers' corrections ("a") on the first 60: good is right on 57, ref on 48."""
    _jsonl(root / "prod.jsonl", [
        {"request_id": f"s{i}", "ts": _iso(T0 + timedelta(minutes=i)), "user_id": f"u{i}", "model": "ref",
         "input": f"q{i}", "output": "a" if i % 5 else "b", "latency_ms": 40 + i % 7} for i in range(100)])
    _jsonl(root / "corrections.jsonl", [
        {"request_id": f"s{i}", "kind": "correction", "value": "a", "ts": _iso(T0 + timedelta(hours=3))}
        for i in range(60)])
    assert main(["traffic", "ingest", "prod.jsonl"]) == 0
    assert main(["shadow", "replay", "good", "--no-progress"]) == 0
    assert main(["feedback", "ingest", "corrections.jsonl"]) == 0


def _beta_evidence(root: Path, name: str, up_beta: int, up_prod: int, n: int = 300) -> None:
    """``n`` beta requests answered by good and ``n`` production requests answered by ref, each with a thumb."""
    t = T0 + timedelta(days=2)
    traffic, thumbs = [], []
    for arm, model, ups in (("beta", "good", up_beta), ("production", "ref", up_prod)):
        for i in range(n):
            rid = f"{name}-{arm}-{i}"
            traffic.append({"request_id": rid, "ts": _iso(t + timedelta(minutes=i)), "user_id": f"{arm}{i}",
                            "arm": arm, "model": model, "input": f"q{i}", "output": "a", "latency_ms": 40})
            thumbs.append({"request_id": rid, "kind": "thumb", "value": "up" if i < ups else "down",
                           "ts": _iso(t + timedelta(minutes=i, seconds=30))})
    _jsonl(root / f"{name}-traffic.jsonl", traffic)
    _jsonl(root / f"{name}-thumbs.jsonl", thumbs)
    assert main(["traffic", "ingest", f"{name}-traffic.jsonl"]) == 0
    assert main(["feedback", "ingest", f"{name}-thumbs.jsonl"]) == 0


def test_a_candidate_walks_every_stage_through_real_gates_and_the_trail_records_it(project, capsys):
    root = project
    n_dec = _count(root, "SELECT count(*) FROM decisions")

    # candidate -> shadow: the offline gate (good is 95% right, ref 80%: non-inferior)
    code, out, err = _advance(capsys, "good", reason="offline gate passed")
    assert code == 0, err
    assert "candidate -> shadow" in out
    assert _status(capsys) == {"good": "shadow", "ref": "production", "bad": "candidate"}

    # shadow -> beta without traffic: inconclusive (exit 3), a decision but no event
    code, _, err = _advance(capsys, "good")
    assert code == 3 and "INCONCLUSIVE" in err and "paired requests" in err
    assert _count(root, "SELECT count(*) FROM stage_events") == 1
    assert _count(root, "SELECT count(*) FROM decisions WHERE candidate = 'good' AND evidence->>'gate' = 'shadow' "
                        "AND verdict = 'inconclusive'") == 1

    _shadow_evidence(root)
    assert _count(root, "SELECT count(*) FROM traffic WHERE arm = 'shadow' AND model = 'good'") == 100
    code, out, err = _advance(capsys, "good", reason="shadow gate passed")
    assert code == 0, err
    assert "shadow -> beta 5%" in out
    assert _status(capsys)["good"] == "beta 5%"

    # beta 5% -> 25% without feedback: inconclusive; then with users' thumbs (beta 95%, production 75%): pass
    code, _, err = _advance(capsys, "good")
    assert code == 3, err
    _beta_evidence(root, "week1", up_beta=285, up_prod=225)
    code, out, err = _advance(capsys, "good", reason="beta gate passed")
    assert code == 0, err
    assert "beta 5% -> beta 25%" in out
    code, out, err = _advance(capsys, "good", reason="ready")
    assert code == 0, err
    assert "beta 25% -> production" in out
    assert _status(capsys) == {"good": "production", "ref": "retired", "bad": "candidate"}

    trail = _history(capsys)
    assert [(e["model"], e["from_stage"], e["to_stage"], e["share"]) for e in trail] == [
        ("good", "candidate", "shadow", None), ("good", "shadow", "beta", 0.05), ("good", "beta", "beta", 0.25),
        ("ref", "production", "retired", None), ("good", "beta", "production", None)]
    assert all(e["actor"] == "ana" and e["forced"] is False and e["decision_id"] for e in trail)
    assert [e["reason"] for e in trail] == ["offline gate passed", "shadow gate passed", "beta gate passed",
                                            "replaced by good: ready", "ready"]
    assert trail[3]["decision_id"] == trail[4]["decision_id"]  # the retirement relied on the same decision
    con = _db(root)
    try:
        gates = [con.execute("SELECT evidence->>'gate', verdict FROM decisions WHERE decision_id = ?",
                             [e["decision_id"]]).fetchone() for e in trail]
        kinds = [r[0] for r in con.execute("SELECT DISTINCT evidence->>'gate' FROM decisions").fetchall()]
    finally:
        con.close()
    assert [g[1] for g in gates] == ["pass"] * 5
    assert [g[0] for g in gates[1:]] == ["shadow", "beta", "beta", "beta"]
    assert {"shadow", "beta"} <= set(kinds)
    # 4 moves + 2 refused moves judged: 6 new decisions
    assert _count(root, "SELECT count(*) FROM decisions") == n_dec + 6

    # rollback: production returns to ref at once, without a gate
    capsys.readouterr()
    assert main(["rollout", "rollback", "--actor", "bo", "--reason", "complaints"]) == 0
    assert _status(capsys) == {"good": "rolled_back", "ref": "production", "bad": "candidate"}
    last = _history(capsys)[-2:]
    assert {(e["model"], e["to_stage"], e["actor"]) for e in last} == {("ref", "production", "bo"),
                                                                      ("good", "rolled_back", "bo")}
    assert all("complaints" in e["reason"] and e["decision_id"] is None for e in last)
    # a second rollback has nowhere to go: the rolled-back model must pass its gates again
    assert main(["rollout", "rollback", "--actor", "bo", "--reason", "again"]) == 2
    assert "must pass its gates again" in capsys.readouterr().err


def test_a_failing_candidate_is_refused_with_evidence_a_decision_and_no_event(project, capsys):
    root = project
    n_dec = _count(root, "SELECT count(*) FROM decisions")
    code, _, err = _advance(capsys, "bad")
    assert code == 1
    assert "refused" in err and "FAIL" in err and "heldout" in err and "--force" in err
    assert _count(root, "SELECT count(*) FROM stage_events") == 0
    assert _count(root, "SELECT count(*) FROM decisions") == n_dec + 1
    assert _count(root, "SELECT count(*) FROM decisions WHERE candidate = 'bad' AND reference = 'ref' "
                        "AND verdict = 'fail'") == 1
    # the same through the API: the refusal carries the verdict, the evidence and the decision it wrote
    project_obj = load_project(root / "tollgate.yaml")
    with pytest.raises(MoveRefusedError) as info:
        advance(project_obj, st.Store(project_obj.store_path), "bad", actor="ana", reason="try")
    assert info.value.verdict == "fail" and info.value.evidence["verdict"] == "fail"
    assert _count(root, "SELECT count(*) FROM decisions WHERE decision_id = ? AND verdict = 'fail'",
                  [info.value.decision_id]) == 1
    assert _count(root, "SELECT count(*) FROM stage_events") == 0
    assert _status(capsys)["bad"] == "candidate"


def test_force_moves_past_a_failed_gate_only_with_a_reason_and_the_event_says_forced(project, capsys):
    root = project
    n_dec = _count(root, "SELECT count(*) FROM decisions")
    for reason in ("", "   "):
        code, _, err = _advance(capsys, "bad", "--force", reason=reason)
        assert code == 2 and "--reason" in err and "say why" in err
    assert _count(root, "SELECT count(*) FROM stage_events") == 0
    assert _count(root, "SELECT count(*) FROM decisions") == n_dec  # refused before any gate ran
    with pytest.raises(SystemExit) as usage:  # argparse: --reason is required
        main(["rollout", "advance", "bad", "--force"])
    assert usage.value.code == 2
    code, out, err = _advance(capsys, "bad", "--force", reason="exec override, see ticket 12")
    assert code == 0, err
    assert "FORCED" in out
    (e,) = _history(capsys)
    assert (e["model"], e["to_stage"], e["forced"], e["reason"]) == ("bad", "shadow", True,
                                                                     "exec override, see ticket 12")
    assert _count(root, "SELECT count(*) FROM decisions WHERE decision_id = ? AND verdict = 'fail'",
                  [e["decision_id"]]) == 1  # the event points at the failing decision it overrode


def test_an_empty_reason_is_bad_input_for_every_move(project, capsys):
    for args in (["rollout", "advance", "good", "--reason", ""], ["rollout", "rollback", "--reason", ""]):
        capsys.readouterr()
        assert main(args) == 2
        assert "--reason" in capsys.readouterr().err
    assert _count(project, "SELECT count(*) FROM stage_events") == 0


def test_one_model_at_a_time_in_shadow_or_beta_and_rollback_returns_it_to_candidate(project, capsys):
    root = project
    assert _advance(capsys, "good")[0] == 0
    n_dec = _count(root, "SELECT count(*) FROM decisions")
    code, _, err = _advance(capsys, "bad", "--force", reason="both at once?")
    assert code == 2 and "'good' is already in shadow" in err
    assert _count(root, "SELECT count(*) FROM stage_events") == 1
    assert _count(root, "SELECT count(*) FROM decisions") == n_dec  # refused before judging
    capsys.readouterr()
    assert main(["rollout", "rollback", "bad", "--reason", "x"]) == 2  # bad is a candidate: nothing to undo
    assert "nothing to roll back" in capsys.readouterr().err
    assert main(["rollout", "rollback", "good", "--actor", "bo", "--reason", "found a bug"]) == 0
    assert _status(capsys) == {"good": "candidate", "ref": "production", "bad": "candidate"}
    e = _history(capsys)[-1]
    assert (e["model"], e["from_stage"], e["to_stage"], e["actor"]) == ("good", "shadow", "candidate", "bo")
    assert _advance(capsys, "bad", "--force", reason="now there is room")[0] == 0
    assert _status(capsys)["bad"] == "shadow"
    # shadow -> beta with no traffic is inconclusive: forced, then rolled back out of beta
    assert _advance(capsys, "bad", reason="no traffic yet")[0] == 3
    assert _advance(capsys, "bad", "--force", reason="try it on 5%")[0] == 0
    assert _status(capsys)["bad"] == "beta 5%"
    capsys.readouterr()
    assert main(["rollout", "rollback", "bad", "--actor", "bo", "--reason", "users hate it"]) == 0
    assert _status(capsys) == {"good": "candidate", "ref": "production", "bad": "candidate"}
    e = _history(capsys)[-1]
    assert (e["model"], e["from_stage"], e["to_stage"], e["share"]) == ("bad", "beta", "candidate", None)
    # the production model has no stage after production
    code, _, err = _advance(capsys, "ref", "--force", reason="again?")
    assert code == 2 and "already in production" in err


def test_production_without_a_previous_model_cannot_be_rolled_back(project, capsys):
    capsys.readouterr()
    assert main(["rollout", "rollback", "--reason", "panic"]) == 2
    assert "no previous model" in capsys.readouterr().err
    assert _count(project, "SELECT count(*) FROM stage_events") == 0


def test_promotion_and_retirement_are_one_transaction(project, capsys, monkeypatch):
    """If writing the promotion fails after the retirement was written, neither stays."""
    import rollout.promote as promote

    root = project
    for _ in range(3):  # forced to beta 25% (the gates are tested above)
        assert _advance(capsys, "good", "--force", reason="fast track")[0] == 0
    real = promote.record

    def failing(con, model, frm, to, *args):
        if to.name == "production":
            raise RuntimeError("disk full")
        return real(con, model, frm, to, *args)

    monkeypatch.setattr(promote, "record", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        advance(load_project(root / "tollgate.yaml"), st.Store(root / ".tollgate" / "tollgate.duckdb"), "good",
                actor="ana", reason="ship it", force=True)
    assert _count(root, "SELECT count(*) FROM stage_events WHERE to_stage = 'retired'") == 0
    monkeypatch.setattr(promote, "record", real)
    assert _status(capsys) == {"good": "beta 25%", "ref": "production", "bad": "candidate"}
    assert _advance(capsys, "good", "--force", reason="ship it")[0] == 0
    assert _status(capsys) == {"good": "production", "ref": "retired", "bad": "candidate"}
    # exactly one model in production, whatever the trail holds
    with st.Store(root / ".tollgate" / "tollgate.duckdb").read() as con:
        a = assignment(con, "ref")
    assert [m for m, s in a.stages.items() if s.name == "production"] == ["good"]
