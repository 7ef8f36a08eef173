"""The dashboard's two state changes, advance and roll back, checked on the server.

Each runs through ``rollout.promote`` with ``actor=`` the logged-in user: the audit row names who
acted, never a free-text field. A viewer (nobody logged in, or a name that is not a release manager
now) is refused here, whatever the browser sent, and nothing is written. A move the stage's gate
refuses comes back with its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dashboard.auth import is_release_manager


@dataclass
class Outcome:
    ok: bool
    message: str
    verdict: str | None = None
    decision_id: str | None = None
    evidence: list[str] = field(default_factory=list)
    refused_by: str | None = None  # "auth", "gate" or "input"

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "message": self.message, "verdict": self.verdict, "decision_id": self.decision_id,
                "evidence": self.evidence, "refused_by": self.refused_by}


def _not_allowed(user: str | None) -> Outcome:
    who = f"'{user}' is not a release manager" if user else "you are not logged in"
    return Outcome(False, f"Refused: {who}. Only release managers listed in tollgate.yaml (or "
                          f"TOLLGATE_RELEASE_MANAGERS) may change a model's stage; nothing was changed.",
                   refused_by="auth")


def advance(project: Any, store: Any, model: str, *, user: str | None, reason: str) -> Outcome:
    """One stage forward for ``model`` if its current stage's gate passes."""
    from harness.errors import TollgateInputError
    from rollout.cli import evidence_lines
    from rollout.promote import MoveRefusedError
    from rollout.promote import advance as promote_advance

    if not is_release_manager(user, project.dashboard):
        return _not_allowed(user)
    try:
        move = promote_advance(project, store, model, actor=user, reason=reason)
    except MoveRefusedError as exc:
        return Outcome(False, f"Refused by the gate: it says {exc.verdict.upper()}; {model} stays where it is.",
                       verdict=exc.verdict, decision_id=exc.decision_id, evidence=evidence_lines(exc.evidence),
                       refused_by="gate")
    except TollgateInputError as exc:
        return Outcome(False, f"Refused: {exc.message}", refused_by="input")
    text = f"{move.model}: {move.frm.label()} → {move.to.label()}, recorded as {user}'s move"
    if move.decision_id:
        text += f" (gate {move.verdict}, decision {move.decision_id[:12]})"
    return Outcome(True, text + ".", verdict=move.verdict, decision_id=move.decision_id)


def rollback(project: Any, store: Any, *, user: str | None, reason: str, model: str | None = None) -> Outcome:
    """Production back to the model it replaced (``model`` None), or ``model`` out of shadow/beta."""
    from harness.errors import TollgateInputError
    from rollout.promote import current
    from rollout.promote import rollback as promote_rollback

    if not is_release_manager(user, project.dashboard):
        return _not_allowed(user)
    try:
        move = promote_rollback(project, store, actor=user, reason=reason, model=model)
    except TollgateInputError as exc:
        return Outcome(False, f"Refused: {exc.message}", refused_by="input")
    if move.frm.name == "production":
        now = current(project, store).production
        return Outcome(True, f"Rolled back by {user}: {move.model} left production ({move.to.label()}); production "
                             f"is served by '{now}' again from the next request on.")
    return Outcome(True, f"Rolled back by {user}: {move.model} left {move.frm.label()} and is a candidate again.")
