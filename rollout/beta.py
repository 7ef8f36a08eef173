"""Beta traffic: a sticky share of users is served by the candidate; their feedback is compared
with production users' over the same days, with anytime-valid intervals (``rollout.sequential``),
so ``tollgate beta report`` can be read every day without inflating false alarms.

The primary measure is the thumbs-up rate (non-inferiority within ``rollout.beta.non_inferior``);
star ratings are reported beside it, on the same footing. A verdict needs ``min_feedback`` rated
requests per arm whatever the interval says: the first handful of users decide nothing.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

from rollout.sequential import SequentialEstimate, bernoulli_diff_cs, beta_verdict, mean_diff_cs


@dataclass
class BetaReport:
    candidate: str
    production: str | None
    since: str | None
    thumbs: dict[str, Any]  # arm -> {"up": k, "n": n}
    ratings: dict[str, Any]  # arm -> {"mean": m, "n": n}
    thumbs_diff: SequentialEstimate | None
    ratings_diff: SequentialEstimate | None
    verdict: str
    reason: str
    p_value: float | None
    more_per_arm: int | None
    daily: list[dict[str, Any]] = field(default_factory=list)  # the interval as it stood each day

    def as_dict(self) -> dict[str, Any]:
        return json.loads(json.dumps(asdict(self), default=str))


def beta_since(con: Any, model: str) -> Any:
    """When the model's current beta period began (its first beta request if the logs predate the event)."""
    from rollout.stages import period_start

    return period_start(con, model, "beta", "beta")


def _feedback(con: Any, candidate: str, since: Any) -> list[tuple]:
    """(day, arm, thumb '1'/'0' or None, rating or None) per request with feedback, beta arm and production arm."""
    params: list[Any] = [candidate]
    when = ""
    if since is not None:
        when = " AND t.ts >= ?"
        params.append(since)
    return con.execute(f"""
        WITH fb AS (
            SELECT request_id, arg_max(value, ts) FILTER (WHERE kind = 'thumb') AS thumb,
                   CAST(arg_max(value, ts) FILTER (WHERE kind = 'rating') AS DOUBLE) AS rating
            FROM feedback WHERE kind IN ('thumb', 'rating') GROUP BY request_id)
        SELECT CAST(date_trunc('day', t.ts) AS DATE), t.arm, fb.thumb, fb.rating
        FROM traffic t JOIN fb USING (request_id)
        WHERE ((t.arm = 'beta' AND t.model = ?) OR t.arm = 'production'){when}
        ORDER BY t.ts""", params).fetchall()


def beta_report(con: Any, candidate: str, policy: Any) -> BetaReport:
    """The comparison and the beta gate's verdict (``policy``: RolloutPolicy.beta)."""
    since = beta_since(con, candidate)
    rows = _feedback(con, candidate, since)
    prod = con.execute("SELECT model FROM traffic WHERE arm = 'production' ORDER BY ts DESC LIMIT 1").fetchall()
    production = prod[0][0] if prod else None
    ups = {"beta": 0, "production": 0}
    ns = {"beta": 0, "production": 0}
    ratings: dict[str, list[float]] = {"beta": [], "production": []}
    daily = []
    day = None
    for d, arm, thumb, rating in rows:
        if day is not None and d != day:
            daily.append(_snapshot(day, ups, ns, policy.alpha))
        day = d
        if thumb is not None:
            ns[arm] += 1
            ups[arm] += thumb == "1"
        if rating is not None:
            ratings[arm].append(float(rating))
    if day is not None:
        daily.append(_snapshot(day, ups, ns, policy.alpha))
    thumbs_diff = bernoulli_diff_cs(ups["beta"], ns["beta"], ups["production"], ns["production"], policy.alpha) \
        if ns["beta"] or ns["production"] else None
    ratings_diff = mean_diff_cs(ratings["beta"], ratings["production"], 1, 5, policy.alpha) \
        if ratings["beta"] and ratings["production"] else None
    if thumbs_diff is not None and (ns["beta"] or not ratings_diff):
        v = beta_verdict(thumbs_diff, policy.non_inferior, policy.min_feedback)
    elif ratings_diff is not None:  # ratings only: the margin on the 1-5 scale is four times the rate's
        v = beta_verdict(ratings_diff, policy.non_inferior * 4, policy.min_feedback)
    else:
        v = None
    verdict = v.verdict if v else "inconclusive"
    reason = v.reason if v else (f"no feedback on beta or production requests yet; each arm needs "
                                 f"{policy.min_feedback} rated requests.")
    return BetaReport(candidate, production, str(since) if since else None,
                      {a: {"up": ups[a], "n": ns[a]} for a in ns},
                      {a: {"mean": (sum(r) / len(r)) if r else None, "n": len(r)} for a, r in ratings.items()},
                      thumbs_diff, ratings_diff, verdict, reason, v.p_value if v else None,
                      v.more_per_arm if v else policy.min_feedback, daily)


def _snapshot(day: Any, ups: dict[str, int], ns: dict[str, int], alpha: float) -> dict[str, Any]:
    est = bernoulli_diff_cs(ups["beta"], ns["beta"], ups["production"], ns["production"], alpha)
    return {"day": str(day), "n_beta": ns["beta"], "n_production": ns["production"], "diff": est.diff,
            "low": est.low, "high": est.high}


def print_beta(rep: BetaReport, decision_id: str, console: Any) -> None:
    from rich.table import Table

    from harness.intervals import wilson
    from rollout.monitor import spark

    t = Table(title=f"Beta: {rep.candidate} vs production ({rep.production}) since {rep.since or 'the first request'}",
              title_justify="left")
    for col in ("arm", "thumbs up [95% Wilson CI]", "rated", "mean rating", "ratings"):
        t.add_column(col, justify="left" if col == "arm" else "right")
    for arm in ("beta", "production"):
        th, ra = rep.thumbs[arm], rep.ratings[arm]
        e = wilson(th["up"], th["n"]) if th["n"] else None
        t.add_row(arm, f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}]" if e else "—", f"{th['n']:,}",
                  f"{ra['mean']:.2f}" if ra["mean"] is not None else "—", f"{ra['n']:,}")
    console.print(t)
    if rep.thumbs_diff is not None and rep.thumbs_diff.n_a and rep.thumbs_diff.n_b:
        d = rep.thumbs_diff
        console.print(f"  thumbs-up difference (beta - production): {d.diff:+.3f}, anytime-valid "
                      f"{1 - d.alpha:.0%} CS [{d.low:+.3f}, {d.high:+.3f}]")
    if rep.daily:
        lows = [x["low"] for x in rep.daily]
        console.print(f"  lower bound day by day: {spark(lows)}  ({rep.daily[0]['day']} .. {rep.daily[-1]['day']})")
    console.print(f"  · {rep.reason}")
    console.print(f"Beta verdict: [bold]{rep.verdict.upper()}[/]   (decision {decision_id[:12]})")
