"""Read-only queries for the dashboard's rollout pages: traffic volume and latency per period and arm,
users' feedback per period and arm with Wilson bands, the latest comments and corrections, the audit
trail. Everything is aggregated in DuckDB (one row per period and arm), so a chart over a million
requests gets a few dozen points; values are parameters, only the period unit is chosen from a list.
"""

from __future__ import annotations

from typing import Any

from harness.queries import _dicts, wilson_sql

PERIODS = ("hour", "day", "week", "month")
USER_ARMS = ("production", "beta")  # what users saw; shadow answers are never shown to anyone


def _period(period: str) -> str:
    if period not in PERIODS:
        raise ValueError(f"period must be one of {', '.join(PERIODS)}, not {period!r}")
    return period


def traffic_span(con: Any) -> dict[str, Any]:
    """First and last request, and how many, per arm and in all."""
    rows = _dicts(con.execute("SELECT arm, count(*) AS requests, min(ts) AS first, max(ts) AS last FROM traffic "
                              "GROUP BY arm ORDER BY arm"))
    total = sum(r["requests"] for r in rows)
    first = min((r["first"] for r in rows), default=None)
    last = max((r["last"] for r in rows), default=None)
    return {"requests": total, "first": first, "last": last, "arms": rows}


def auto_period(span: dict[str, Any], max_points: int = 120) -> str:
    """The finest period that keeps a chart under ``max_points`` points per series."""
    if not span.get("first") or not span.get("last"):
        return "day"
    hours = (span["last"] - span["first"]).total_seconds() / 3600
    for period, length in (("hour", 1), ("day", 24), ("week", 24 * 7)):
        if hours / length <= max_points:
            return period
    return "month"


def traffic_by_period(con: Any, *, period: str = "day", models: list[str] | None = None,
                      arms: list[str] | None = None, since: Any = None, per_model: bool = True) -> list[dict[str, Any]]:
    """Per period, arm and model (``per_model``; else per arm, ``model`` listing the models it served):
    requests, errors, latency median / p95 / mean (ms)."""
    unit = _period(period)
    model = "model" if per_model else "string_agg(DISTINCT model, ', ' ORDER BY model) AS model"
    sql = f"""SELECT date_trunc('{unit}', ts) AS period, arm, {model}, count(*) AS requests, count(error) AS errors,
                     quantile_cont(latency_ms, 0.5) AS latency_p50, quantile_cont(latency_ms, 0.95) AS latency_p95,
                     avg(latency_ms) AS latency_mean
              FROM traffic WHERE 1 = 1"""
    params: list[Any] = []
    if models:
        sql += " AND list_contains(?, model)"
        params.append(list(models))
    if arms:
        sql += " AND list_contains(?, arm)"
        params.append(list(arms))
    if since is not None:
        sql += " AND ts >= ?"
        params.append(since)
    group = "GROUP BY ALL" if per_model else "GROUP BY period, arm"
    return _dicts(con.execute(sql + f" {group} ORDER BY period, arm", params))


def feedback_by_period(con: Any, *, period: str = "day", models: list[str] | None = None,
                       since: Any = None) -> list[dict[str, Any]]:
    """Users' feedback per period, arm and model (the traffic's time): thumbs-up rate with its 95%
    Wilson interval, and the mean rating (1-5) with a normal-approximation interval. A request's
    latest thumb and latest rating count, as in the beta report; shadow answers have no users."""
    unit = _period(period)
    where = "t.arm IN ('production', 'beta')"
    params: list[Any] = []
    if models:
        where += " AND list_contains(?, t.model)"
        params.append(list(models))
    if since is not None:
        where += " AND t.ts >= ?"
        params.append(since)
    low, high = wilson_sql("up", "thumbs")
    sql = f"""
        WITH fb AS (
            SELECT request_id, arg_max(CASE WHEN kind = 'thumb' THEN value END, ts) FILTER (WHERE kind = 'thumb')
                   AS thumb,
                   arg_max(TRY_CAST(value AS DOUBLE), ts) FILTER (WHERE kind = 'rating') AS rating
            FROM feedback WHERE kind IN ('thumb', 'rating') GROUP BY request_id),
        agg AS (
            SELECT date_trunc('{unit}', t.ts) AS period, t.arm, t.model,
                   count(fb.thumb) FILTER (WHERE fb.thumb = '1') AS up, count(fb.thumb) AS thumbs,
                   count(fb.rating) AS ratings, avg(fb.rating) AS rating_mean,
                   coalesce(stddev_samp(fb.rating), 0) AS rating_sd
            FROM traffic t JOIN fb USING (request_id) WHERE {where} GROUP BY ALL)
        SELECT period, arm, model, up, thumbs, up::DOUBLE / nullif(thumbs, 0) AS thumbs_rate,
               CASE WHEN thumbs > 0 THEN {low} END AS thumbs_low, CASE WHEN thumbs > 0 THEN {high} END AS thumbs_high,
               ratings, rating_mean,
               CASE WHEN ratings > 1 THEN greatest(1.0, rating_mean - 1.959963984540054 * rating_sd / sqrt(ratings))
                    END AS rating_low,
               CASE WHEN ratings > 1 THEN least(5.0, rating_mean + 1.959963984540054 * rating_sd / sqrt(ratings))
                    END AS rating_high
        FROM agg ORDER BY period, arm, model"""
    return _dicts(con.execute(sql, params))


def latest_feedback_text(con: Any, *, kinds: tuple[str, ...] = ("comment", "correction"),
                         models: list[str] | None = None, limit: int = 20) -> list[dict[str, Any]]:
    """The newest comments and corrections with the answer they are about (the one the user saw)."""
    sql = """SELECT f.ts, f.kind, f.value, f.user_id, f.request_id, t.arm, t.model, t.output
             FROM feedback f LEFT JOIN traffic t ON t.request_id = f.request_id AND t.arm IN ('production', 'beta')
             WHERE list_contains(?, f.kind)"""
    params: list[Any] = [list(kinds)]
    if models:
        sql += " AND list_contains(?, t.model)"
        params.append(list(models))
    sql += " ORDER BY f.ts DESC, f.feedback_id LIMIT ?"
    params.append(int(limit))
    return _dicts(con.execute(sql, params))


def beta_models(con: Any) -> list[str]:
    """Models that served beta users, the most recent first."""
    return [r[0] for r in con.execute("SELECT model FROM traffic WHERE arm = 'beta' GROUP BY model "
                                      "ORDER BY max(ts) DESC").fetchall()]


def audit_trail(con: Any, *, model: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Stage events, newest first: time, model, from, to (with the beta share), actor, reason, decision, forced."""
    sql = """SELECT ts, model, from_stage, CASE WHEN to_stage = 'beta' AND share IS NOT NULL
                                                THEN 'beta ' || round(share * 100)::INTEGER || '%' ELSE to_stage END
                                           AS to_stage,
                    actor, reason, left(decision_id, 12) AS decision, forced, event_id
             FROM stage_events"""
    params: list[Any] = []
    if model is not None:
        sql += " WHERE model = ?"
        params.append(model)
    sql += " ORDER BY ts DESC, event_id LIMIT ?"
    params.append(int(limit))
    return _dicts(con.execute(sql, params))
