"""The referee against selection on the test set: how many models each held-out suite has judged.

A held-out suite's score is an unbiased estimate only for a model that was not chosen by it. Every
model compared on the same version of a held-out suite spends a little of that: pick the best of
14 fine-tunes on it and the winner's score is optimistic by the luck that made it the winner.
So the store is asked how many distinct models (by fingerprint: other weights are another model,
whatever their name) have a completed run on each version (content hash) of each held-out suite;
a changed suite is a fresh suite and starts again at zero.

``compare`` and ``gate`` print :func:`warning` for a version that has judged more than
:data:`WARN_AFTER` models, and the gate fails a policy's ``max_selections_per_heldout`` with
:func:`selection_rule`. The query is here rather than in ``store`` because it is this module's one
job; like every query it takes its values as parameters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

# A held-out suite that judged a base model, the production model and one candidate has chosen
# nothing; a fourth model means candidates were compared on it.
WARN_AFTER = 3


@dataclass
class HeldoutUse:
    """One version of one held-out suite and the models it has judged."""

    suite: str
    suite_hash: str
    n_models: int
    models: list[str]
    first_used: datetime | None
    last_used: datetime | None
    current: bool = False  # the newest version of the suite the store has runs of
    fingerprints: list[str] = field(default_factory=list)

    @property
    def version(self) -> str:
        return self.suite_hash[:12]

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["first_used"] = str(self.first_used)[:19] if self.first_used else None
        d["last_used"] = str(self.last_used)[:19] if self.last_used else None
        return d


def heldout_uses(con: Any, suites: list[str] | None = None, *, as_of: datetime | None = None,
                 kind: str = "heldout") -> list[HeldoutUse]:
    """Per (held-out suite, content hash): the distinct models with a completed run on it.

    ``as_of`` counts only runs finished by then, so a recorded decision recomputes to the same count
    however many models were run since. Newest version of each suite first.
    """
    sql = """
        SELECT suite, suite_hash, count(DISTINCT model_fingerprint) AS n_models,
               list(DISTINCT model) AS models, list(DISTINCT model_fingerprint) AS fingerprints,
               min(started_at) AS first_used, max(finished_at) AS last_used
        FROM runs WHERE status = 'completed' AND suite_kind = ?"""
    params: list[Any] = [kind]
    if suites is not None:
        sql += " AND list_contains(?, suite)"
        params.append(list(suites))
    if as_of is not None:
        sql += " AND finished_at <= ?"
        params.append(as_of)
    sql += " GROUP BY suite, suite_hash ORDER BY suite, max(finished_at) DESC"
    out: list[HeldoutUse] = []
    for suite, h, n, models, fps, first, last in con.execute(sql, params).fetchall():
        current = not out or out[-1].suite != suite
        out.append(HeldoutUse(suite, h, int(n), sorted(models), first, last, current, sorted(fps)))
    return out


def uses_of(con: Any, versions: dict[str, str] | Iterable[tuple[str, str]], *,
            as_of: datetime | None = None) -> list[HeldoutUse]:
    """The uses of these suite versions (suite -> content hash, or pairs); one no completed run used counts 0."""
    pairs = sorted(set(versions.items() if isinstance(versions, dict) else versions))
    if not pairs:
        return []
    found = {(u.suite, u.suite_hash): u for u in heldout_uses(con, sorted({s for s, _ in pairs}), as_of=as_of)}
    return [found.get((s, h)) or HeldoutUse(s, h, 0, [], None, None) for s, h in pairs]


def warning(use: HeldoutUse) -> str:
    """What ``compare``, ``gate`` and the dashboard say about an overused held-out suite version."""
    names = ", ".join(use.models[:6]) + (f" and {len(use.models) - 6} more" if len(use.models) > 6 else "")
    return (f"{use.suite} (version {use.version}) has judged {use.n_models} models since it last changed "
            f"({names}): its scores are optimistic for whichever model was chosen on it; judge the final choice "
            f"on a fresh held-out suite.")


def overused(uses: list[HeldoutUse], limit: int = WARN_AFTER) -> list[HeldoutUse]:
    return [u for u in uses if u.n_models > limit]


def selection_rule(use: HeldoutUse, limit: int) -> dict[str, Any]:
    """The gate's verdict on one held-out suite version under ``max_selections_per_heldout``.

    Not a statistical test: the count is known exactly, so the rule passes or fails, never
    inconclusive. Returned as the fields of a ``gates.RuleResult``.
    """
    evidence = {"suite_hash": use.suite_hash, "n_models": use.n_models, "models": use.models,
                "limit": limit}
    if use.n_models > limit:
        reason = (f"{use.suite} (version {use.version}) has judged {use.n_models} models ({', '.join(use.models)}); "
                  f"the policy allows {limit}: a fresh held-out suite is required (a new or changed "
                  f"suites/{use.suite}, run by the models to compare).")
        verdict = "fail"
    else:
        reason = f"{use.suite} (version {use.version}) has judged {use.n_models} of at most {limit} models."
        verdict = "pass"
    return {"verdict": verdict, "reason": reason, "comparison": evidence}
