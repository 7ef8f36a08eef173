"""Beta feedback (stakeholders): do real users like the new model as much as the current one?

Thumbs-up rate and mean rating per group of users over time with confidence bands, how many
requests and how fast, the latest comments and corrections, and the verdict of the beta gate with
how much more feedback it needs. Every technical word comes with a one-line explanation.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.context import Context, load

GLOSSARY = {
    "arm": "a group of users: **beta** users are served by the new model, **production** users by the current one.",
    "thumbs-up rate": "the share of rated answers that got a thumbs up.",
    "confidence band": "the range the true value lies in, 19 times out of 20; it narrows as feedback arrives.",
    "anytime-valid": "an interval that stays honest however often you look at it, so checking daily is fine.",
    "non-inferior": "not worse than the current model by more than the tolerated margin.",
    "CS": "confidence sequence: the anytime-valid interval of the difference between the two groups.",
    "p (always valid)": "how surprising the data would be if the new model were worse by the margin; below 0.05 "
                        "decides, and it stays valid however often it is read.",
    "p95 latency": "95 of 100 requests were answered at least this fast.",
}


def _explain(term: str) -> str:
    return f"*{term}*: {GLOSSARY[term]}"


def render() -> None:
    ctx = load()
    ui.header("Beta feedback", "How do real users rate the new model against the current one?", ctx)
    ui.stop_if_nothing(ctx)
    span = ctx.read("rollout.queries:traffic_span")
    if not span["requests"]:
        st.info("No traffic stored yet: `tollgate traffic ingest FILE` or the router (`tollgate serve`) records it; "
                "run `tollgate demo` to see an example.")
        ui.refreshed(ctx)
        return
    betas = ctx.read("rollout.queries:beta_models")
    if not betas:
        st.info("No model has served beta users yet: once a candidate reaches beta (`tollgate rollout advance`), its "
                "users' feedback appears here.")
    model = st.selectbox("New model in beta", betas, key="beta_model") if betas else None
    if model:
        rep = ctx.compute("dashboard.beta:report", model)
        _verdict(ctx, rep)
    from rollout.queries import auto_period

    period = auto_period(span)
    st.subheader(f"Feedback per {period}")
    st.markdown(" · ".join(_explain(t) for t in ("arm", "thumbs-up rate", "confidence band")))
    fb = ctx.read("rollout.queries:feedback_by_period", period=period)
    for r in fb:
        r["series"] = f"{r['arm']}: {r['model']}"
    thumbs = [r for r in fb if r["thumbs"]]
    if thumbs:
        st.altair_chart(charts.band_chart(thumbs, y="thumbs_rate", low="thumbs_low", high="thumbs_high",
                                          series="series", title="thumbs-up rate (95% band)", domain=[0, 1]),
                        width="stretch")
    ratings = [r for r in fb if r["ratings"] and r["rating_low"] is not None]
    if ratings:
        st.altair_chart(charts.band_chart(ratings, y="rating_mean", low="rating_low", high="rating_high",
                                          series="series", title="mean rating, 1-5 (95% band)", domain=[1, 5],
                                          fmt=".2f"), width="stretch")
    if not thumbs and not ratings:
        st.info("No thumbs or ratings stored yet: `tollgate feedback ingest FILE` or POST /feedback to the router.")

    st.subheader(f"Requests and latency per {period}")
    st.markdown(_explain("p95 latency") + " Only what users saw: shadow copies (answered by the new model and never "
                "shown) are left out.")
    traffic = ctx.read("rollout.queries:traffic_by_period", period=period, arms=["production", "beta"],
                       per_model=False)
    c1, c2 = st.columns(2)
    c1.altair_chart(charts.volume_chart(traffic), width="stretch")
    c2.altair_chart(charts.latency_chart(traffic), width="stretch")
    st.caption(f"{span['requests']:,} requests stored, {str(span['first'])[:10]} to {str(span['last'])[:10]}.")

    st.subheader("What users said")
    comments = ctx.read("rollout.queries:latest_feedback_text", kinds=("comment",), limit=10)
    corrections = ctx.read("rollout.queries:latest_feedback_text", kinds=("correction",), limit=10)
    if not comments and not corrections:
        st.caption("No comments or corrections yet.")
    if comments:
        st.markdown("**Latest comments**")
        st.table(pd.DataFrame([{"time (UTC)": str(c["ts"])[:16], "group": c["arm"], "model": c["model"],
                                "comment": str(c["value"])[:400]} for c in comments]).set_index("time (UTC)"))
    if corrections:
        st.markdown("**Latest corrections** — a reviewer's right answer, against what the model said")
        st.table(pd.DataFrame([{"time (UTC)": str(c["ts"])[:16], "group": c["arm"], "model": c["model"],
                                "what was corrected": _corrected(c["value"], c["output"])} for c in corrections])
                 .set_index("time (UTC)"))
    ui.refreshed(ctx)


def _corrected(correction: str | None, output: str | None) -> str:
    """'field: right (model said wrong)' for each field the reviewer changed, or the correction as text."""
    import json

    from harness.failures import field_diff

    try:
        expected = json.loads(correction or "")
    except json.JSONDecodeError:
        return str(correction)[:300]
    diff = field_diff(expected, output)
    if not isinstance(expected, dict):
        return str(expected)[:300]
    if not diff:
        return "confirmed the model's answer"
    return "; ".join(f"{k}: {want} (model said {got if got is not None else 'nothing'})"
                     for k, (want, got) in diff.items())


def report(ctx: Context, model: str) -> dict[str, Any]:
    """The beta gate's report for ``model`` (read-only; ``tollgate beta report`` records it as a decision)."""
    from rollout.beta import beta_report

    with ctx.store.read() as con:
        rep = beta_report(con, model, ctx.project.rollout.beta)
    return rep.as_dict()


def _verdict(ctx: Context, rep: dict[str, Any]) -> None:
    from harness.intervals import wilson

    policy = ctx.project.rollout.beta
    verdict = rep["verdict"]
    plain = {"pass": f"Yes: beta users like {rep['candidate']} at least as much as production users like "
                     f"{rep['production']}.",
             "fail": f"No: beta users like {rep['candidate']} less than production users like {rep['production']}.",
             "inconclusive": "Not yet: there is not enough feedback to tell."}[verdict]
    ui.verdict_badge(verdict, "Beta verdict", size="2.4rem")
    st.markdown(f"**{plain}** {rep['reason']}")
    if verdict == "inconclusive" and rep.get("more_per_arm"):
        st.markdown(f"It needs about **{rep['more_per_arm']:,} more rated requests per arm** to decide.")
    cols = st.columns(3)
    for col, arm in zip(cols[:2], ("beta", "production"), strict=True):
        th = rep["thumbs"][arm]
        e = wilson(th["up"], th["n"]) if th["n"] else None
        ra = rep["ratings"][arm]
        col.metric(f"{arm} users: thumbs up", ui.pct(e.value, 1) if e else "—",
                   help=f"95% band {ui.pct(e.low, 1)} to {ui.pct(e.high, 1)} of {th['n']:,} rated answers" if e
                   else "no thumbs yet")
        col.caption((f"95% band {ui.pct(e.low, 1)}–{ui.pct(e.high, 1)}, {th['n']:,} rated" if e else "no thumbs yet")
                    + (f" · mean rating {ra['mean']:.2f} ({ra['n']:,})" if ra["mean"] is not None else ""))
    d = rep.get("thumbs_diff")
    if d and d.get("n_a") and d.get("n_b"):
        cols[2].metric("Difference (beta − production)", ui.num(d["diff"], 3, sign=True),
                       help="anytime-valid 95% interval")
        cols[2].caption(f"anytime-valid 95% interval [{ui.num(d['low'], 3, True)}, {ui.num(d['high'], 3, True)}]")
    st.markdown(" · ".join(_explain(t) for t in ("anytime-valid", "non-inferior", "CS", "p (always valid)")) +
                f" Here the tolerated drop is {policy.non_inferior:.0%} in thumbs-up rate.")
    if rep.get("daily"):
        st.altair_chart(charts.sequence_chart(rep["daily"], policy.non_inferior), width="stretch")
        st.caption(f"The beta gate passes once the whole band is above the red line (−{policy.non_inferior:.0%}); "
                   f"since {str(rep.get('since') or '')[:10]}.")
