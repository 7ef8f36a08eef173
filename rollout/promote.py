"""``tollgate rollout advance | rollback``: moves between stages, each one checked against the gate of
the stage it leaves, recorded as an append-only event with the decision it relied on.

The offline gate (the suites) guards the way into shadow, the shadow gate (paired traffic) the way
into beta, the beta gate (users' feedback, anytime-valid) every beta step and production. A
refused move shows the failing evidence; ``--force`` overrides it only with a reason, and the
event says it was forced.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from harness import store as st
from harness.errors import TollgateInputError
from harness.hashing import hash_obj
from rollout.stages import Assignment, Stage, assignment, check_move, gate_needed, next_stage, record


class MoveRefusedError(Exception):
    """The stage's gate did not pass: exit code 1 (fail) or 3 (inconclusive), with the evidence."""

    def __init__(self, verdict: str, evidence: Any, decision_id: str | None) -> None:
        super().__init__(verdict)
        self.verdict, self.evidence, self.decision_id = verdict, evidence, decision_id


@dataclass
class Move:
    model: str
    frm: Stage
    to: Stage
    event_id: str
    decision_id: str | None
    verdict: str | None
    forced: bool
    evidence: Any = None
    also: list[str] | None = None  # the events this move caused (the old production model retired)


def initial_production(project: Any) -> str | None:
    """Before any event, the model with ``role: production`` in tollgate.yaml serves production."""
    return next((m for m, c in project.models.items() if c.role == "production"), None)


def current(project: Any, store: st.Store) -> Assignment:
    if not store.path.exists():
        return Assignment(production=initial_production(project), stages={} if initial_production(project) is None
                          else {initial_production(project): Stage("production")},
                          production_history=[m for m in [initial_production(project)] if m])
    with store.read() as con:
        return assignment(con, initial_production(project))


def record_decision(store: st.Store, *, candidate: str, reference: str | None, kind: str, policy: Any, verdict: str,
                    evidence: dict[str, Any], actor: str) -> str:
    """Shadow and beta verdicts land in the same decision records as the offline gate's."""
    from harness.version import code_version

    decision_id = uuid.uuid4().hex
    with store.write() as con:
        st.insert_decision(con, {
            "decision_id": decision_id, "candidate": candidate, "reference": reference,
            "candidate_fingerprint": None, "reference_fingerprint": None,
            "policy_hash": hash_obj(kind, policy.model_dump()), "suite_hashes": {"gate": kind},
            "verdict": verdict, "evidence": {"gate": kind, **evidence}, "seed": 0,
            "code_version": code_version(), "actor": actor, "created_at": st.utcnow()})
    return decision_id


def judge_stage(project: Any, store: st.Store, model: str, stage: Stage, production: str | None,
                actor: str) -> tuple[str, Any, str | None]:
    """(verdict, evidence, decision id) of the gate guarding the way out of ``stage``."""
    which = gate_needed(stage)
    if which == "offline":
        from harness.cli_gate import _base_of, _context_for, judge

        proj, _, kinds = _context_for(project.path)
        decision, decision_id = judge(proj, store, kinds, model, production, _base_of(proj, None), actor)
        return decision.verdict, decision.as_dict(), decision_id
    if which == "shadow":
        from rollout.shadow import rollout_suite, shadow_report

        with store.read() as con:
            rep = shadow_report(con, model, project.rollout.shadow, rollout_suite(project))
        evidence = rep.as_dict()
        did = record_decision(store, candidate=model, reference=rep.production, kind="shadow",
                              policy=project.rollout.shadow, verdict=rep.verdict, evidence=evidence, actor=actor)
        return rep.verdict, evidence, did
    from rollout.beta import beta_report

    with store.read() as con:
        rep = beta_report(con, model, project.rollout.beta)
    evidence = rep.as_dict()
    did = record_decision(store, candidate=model, reference=rep.production, kind="beta", policy=project.rollout.beta,
                          verdict=rep.verdict, evidence=evidence, actor=actor)
    return rep.verdict, evidence, did


def advance(project: Any, store: st.Store, model: str, *, actor: str, reason: str, force: bool = False) -> Move:
    """One step forward, if the gate of the current stage passes (or ``force`` with a reason)."""
    project.model(model)
    if not reason.strip():
        raise TollgateInputError("say why: every stage change is audited with its reason.", field="--reason")
    a = current(project, store)
    frm = a.stage_of(model)
    to = next_stage(frm, project.rollout.beta_steps)
    check_move(a, model, to)
    try:
        verdict, evidence, decision_id = judge_stage(project, store, model, frm, a.production, actor)
    except TollgateInputError as exc:  # the gate cannot even be evaluated (no rules, no traffic table...)
        if not force:
            raise
        verdict, evidence, decision_id = "not evaluated", {"error": str(exc)}, None
    if verdict != "pass" and not force:
        raise MoveRefusedError(verdict, evidence, decision_id)
    also = []
    with store.write() as con:  # one transaction: the new production and the retired one, or neither
        a2 = assignment(con, initial_production(project))
        if a2.stage_of(model) != frm:
            raise TollgateInputError(f"'{model}' moved to {a2.stage_of(model).label()} while this command ran; "
                                     f"check 'tollgate rollout status' and try again.", field="MODEL")
        if to.name == "production" and a2.production:
            also.append(record(con, a2.production, Stage("production"), Stage("retired"), actor,
                               f"replaced by {model}: {reason}", decision_id, force))
        event = record(con, model, frm, to, actor, reason, decision_id, force and verdict != "pass")
    return Move(model, frm, to, event, decision_id, verdict, force and verdict != "pass", evidence, also)


def rollback(project: Any, store: st.Store, *, actor: str, reason: str, model: str | None = None) -> Move:
    """Production back to the model it replaced (no model given), or a shadow/beta model back to
    candidate. No gate: rolling back must be instant."""
    if not reason.strip():
        raise TollgateInputError("say why: every stage change is audited with its reason.", field="--reason")
    with store.write() as con:
        a = assignment(con, initial_production(project))
        if model is not None and a.stage_of(model).name in ("shadow", "beta"):
            event = record(con, model, a.stage_of(model), Stage("candidate"), actor, reason, None, False)
            return Move(model, a.stage_of(model), Stage("candidate"), event, None, None, False)
        if model is not None and model != a.production:
            raise TollgateInputError(f"'{model}' is in {a.stage_of(model).label()}: nothing to roll back.",
                                     field="MODEL")
        # back to the last model that left production by being replaced, never to one rolled back
        previous = [m for m in a.production_history[:-1] if m != a.production and a.stage_of(m).name == "retired"]
        if a.production is None or not previous:
            raise TollgateInputError("production has no previous model to return to (a model that was rolled "
                                     "back must pass its gates again).", field="rollback")
        back = previous[-1]
        also = [record(con, back, a.stage_of(back), Stage("production"), actor, f"rollback: {reason}", None, False)]
        event = record(con, a.production, Stage("production"), Stage("rolled_back"), actor, f"rolled back: {reason}",
                       None, False)
    return Move(a.production, Stage("production"), Stage("rolled_back"), event, None, None, False, also=also)
