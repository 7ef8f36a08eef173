"""The stage machine: candidate -> shadow -> beta (each share of ``beta_steps``) -> production, and
rollback from any stage.

The state is never stored as such: it is the fold of the append-only ``stage_events`` table, so
the audit trail and the state cannot disagree. Before any event, the model with ``role:
production`` in tollgate.yaml serves production and every other model is a ``candidate``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from harness import store as st
from harness.errors import TollgateInputError

STAGES = ("candidate", "shadow", "beta", "production", "retired", "rolled_back")


@dataclass(frozen=True)
class Stage:
    name: str  # one of STAGES
    share: float | None = None  # beta: the share of users the model serves

    def label(self) -> str:
        return f"beta {self.share:.0%}" if self.name == "beta" and self.share is not None else self.name


@dataclass
class Assignment:
    """Who serves what right now: what the router reads before every request."""

    production: str | None
    shadow: str | None = None
    beta: str | None = None
    beta_share: float = 0.0
    stages: dict[str, Stage] = field(default_factory=dict)
    production_history: list[str] = field(default_factory=list)  # oldest first, current last

    def stage_of(self, model: str) -> Stage:
        return self.stages.get(model, Stage("candidate"))


def events(con: Any, model: str | None = None) -> list[dict[str, Any]]:
    sql = ("SELECT event_id, model, from_stage, to_stage, share, actor, reason, decision_id, forced, ts "
           "FROM stage_events")
    params: list[Any] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    cols = ("event_id", "model", "from_stage", "to_stage", "share", "actor", "reason", "decision_id", "forced", "ts")
    return [dict(zip(cols, r, strict=True)) for r in con.execute(sql + " ORDER BY ts, event_id", params).fetchall()]


def assignment(con: Any, initial_production: str | None) -> Assignment:
    """Fold the events into the current assignment."""
    stages: dict[str, Stage] = {}
    history = [initial_production] if initial_production else []
    if initial_production:
        stages[initial_production] = Stage("production")
    for e in events(con):
        stages[e["model"]] = Stage(e["to_stage"], e["share"])
        if e["to_stage"] == "production":
            history.append(e["model"])
    live = [m for m, s in stages.items() if s.name == "production"]
    prod = history[-1] if history and history[-1] in live else (live[-1] if live else None)
    shadow = next((m for m, s in stages.items() if s.name == "shadow"), None)
    beta = next(((m, s.share or 0.0) for m, s in stages.items() if s.name == "beta"), (None, 0.0))
    return Assignment(production=prod, shadow=shadow, beta=beta[0], beta_share=beta[1], stages=stages,
                      production_history=history)


def record(con: Any, model: str, frm: Stage, to: Stage, actor: str, reason: str, decision_id: str | None,
           forced: bool) -> str:
    event_id = uuid.uuid4().hex
    con.execute("INSERT INTO stage_events (event_id, model, from_stage, to_stage, share, actor, reason, decision_id, "
                "forced, ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [event_id, model, frm.name, to.name, to.share, actor, reason, decision_id, forced, st.utcnow()])
    return event_id


def next_stage(current: Stage, steps: list[float]) -> Stage:
    """Where ``advance`` takes a model from ``current``."""
    if current.name in ("candidate", "retired", "rolled_back"):
        return Stage("shadow")
    if current.name == "shadow":
        return Stage("beta", steps[0])
    if current.name == "beta":
        later = [s for s in steps if s > (current.share or 0.0)]
        return Stage("beta", later[0]) if later else Stage("production")
    raise TollgateInputError("is already in production; there is no stage after it.", field="MODEL")


def gate_needed(current: Stage) -> str:
    """Which evidence a move out of ``current`` relies on."""
    return {"candidate": "offline", "retired": "offline", "rolled_back": "offline", "shadow": "shadow",
            "beta": "beta"}[current.name]


def check_move(a: Assignment, model: str, to: Stage) -> None:
    """One model at a time in shadow or beta: the router has one candidate to mirror or serve."""
    other = a.shadow if a.shadow != model else None
    other = other or (a.beta if a.beta != model else None)
    if to.name in ("shadow", "beta") and other:
        raise TollgateInputError(f"'{other}' is already in {a.stage_of(other).label()}; promote it or roll it back "
                                 f"before '{model}' enters {to.label()}.", field="MODEL")
    if to.name == "production" and a.production == model:
        raise TollgateInputError(f"'{model}' already serves production.", field="MODEL")


def beta_bucket(user_id: str, salt: str) -> float:
    """A user's fixed place in [0, 1): beta serves the users below the current share, so a user
    stays in beta as the share grows, across restarts, and nobody can pick their arm."""
    import hashlib

    digest = hashlib.sha256(f"{salt}:{user_id}".encode()).digest()
    return int.from_bytes(digest, "big") / 2**256


def serves(a: Assignment, user_id: str | None, salt: str) -> tuple[str | None, str]:
    """(model, arm) for one user's request: the beta model for users in the beta share, else production."""
    if a.beta and user_id and beta_bucket(user_id, salt) < a.beta_share:
        return a.beta, "beta"
    return a.production, "production"


def period_start(con: Any, model: str, stage: str, arm: str) -> Any:
    """When the model's current ``stage`` began, as its traffic shows it.

    Normally the stage event's time. Logs exported from elsewhere and ingested later (a backfill, or
    the demo's simulated weeks) may all predate the event; then the period starts at the model's
    first request in ``arm``, so the comparison covers what the logs hold and says so by its date.
    """
    ev = con.execute("SELECT max(ts) FROM stage_events WHERE model = ? AND to_stage = ? AND from_stage <> ?",
                     [model, stage, stage]).fetchall()[0][0]
    if ev is not None and con.execute("SELECT count(*) FROM traffic WHERE model = ? AND arm = ? AND ts >= ?",
                                      [model, arm, ev]).fetchall()[0][0]:
        return ev
    return con.execute("SELECT min(ts) FROM traffic WHERE model = ? AND arm = ?", [model, arm]).fetchall()[0][0]
