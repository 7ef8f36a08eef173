"""The dashboard's charts (Altair, which ships with Streamlit): each takes the few aggregated rows a
query returned and draws them with their intervals. No chart ever receives raw per-request rows."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd

KIND_ORDER = ["train_sample", "validation", "heldout", "edge", "shadow", "general", "baseline"]
ARM_COLOURS = {"production": "#0969da", "beta": "#bf3989", "shadow": "#8c959f"}


def _arm_scale() -> alt.Scale:
    return alt.Scale(domain=list(ARM_COLOURS), range=list(ARM_COLOURS.values()))


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame(rows)


def pass_rate_chart(rows: list[dict[str, Any]], by: str) -> alt.Chart:
    """Pass rate with its 95% interval, models side by side, one row per suite (or suite · slice)."""
    df = _frame(rows)
    df["label"] = df["suite"] if by == "suite" else df["suite"] + " · " + df["slice"].astype(str)
    rank = {k: i for i, k in enumerate(KIND_ORDER)}
    df["_order"] = [(rank.get(k, len(rank)), s, sl) for k, s, sl in zip(df["kind"], df["suite"], df["slice"],
                                                                        strict=True)]
    labels = list(dict.fromkeys(df.sort_values("_order")["label"]))
    df = df.drop(columns=["_order"])
    base = alt.Chart(df).encode(
        y=alt.Y("label:N", sort=labels, title=None, axis=alt.Axis(labelLimit=360)),
        yOffset=alt.YOffset("model:N"),
        color=alt.Color("model:N", title="model", scale=alt.Scale(scheme="tableau10")),
        tooltip=["model", "suite", "slice", alt.Tooltip("rate:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "passed", "n"])
    bars = base.mark_bar(opacity=0.8).encode(x=alt.X("rate:Q", title="pass rate (95% Wilson CI)",
                                                     scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format=".0%")))
    rules = base.mark_rule(color="#24292f").encode(x="low:Q", x2="high:Q")
    return (bars + rules).properties(height=pass_rate_height(rows))


def pass_rate_height(rows: list[dict[str, Any]]) -> int:
    labels = {(r["suite"], r["slice"]) for r in rows}
    models = {r["model"] for r in rows}
    return max(160, min(4000, 9 * len(labels) * len(models) + 14 * len(labels) + 60))


def gap_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    """Per model: the metric on each kind of suite, train_sample first, with intervals: the gap at a glance."""
    df = _frame(rows)
    suites = list(dict.fromkeys(df.sort_values(["order", "suite"], kind="stable")["suite"]))
    base = alt.Chart(df).encode(
        x=alt.X("suite:N", sort=suites, title=None, axis=alt.Axis(labelAngle=-40, labelOverlap=False)),
        color=alt.Color("kind:N", sort=KIND_ORDER, title="kind of suite"),
        tooltip=["model", "suite", "kind", "metric", alt.Tooltip("value:Q", format=".3f"),
                 alt.Tooltip("low:Q", format=".3f"), alt.Tooltip("high:Q", format=".3f"), "n"])
    points = base.mark_point(filled=True, size=90).encode(
        y=alt.Y("value:Q", title="score (95% CI)", scale=alt.Scale(domain=[0, 1])))
    bars = base.mark_rule(strokeWidth=2).encode(y="low:Q", y2="high:Q")
    return (bars + points).properties(height=230, width=alt.Step(44)).facet(
        facet=alt.Facet("model:N", title=None, header=alt.Header(labelFontSize=14, labelFontWeight="bold")),
        columns=2).resolve_scale(x="independent")


def before_after_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    """General suites: the base model (before) and the fine-tune (after), side by side with intervals."""
    df = _frame(rows)
    base = alt.Chart(df).encode(
        x=alt.X("suite:N", title=None, axis=alt.Axis(labelAngle=0)),
        xOffset=alt.XOffset("when:N", sort=["before", "after"]),
        color=alt.Color("when:N", sort=["before", "after"], title=None,
                        scale=alt.Scale(range=["#8c959f", "#0969da"])),
        tooltip=["suite", "model", "when", alt.Tooltip("value:Q", format=".3f"), alt.Tooltip("low:Q", format=".3f"),
                 alt.Tooltip("high:Q", format=".3f"), "n"])
    bars = base.mark_bar().encode(y=alt.Y("value:Q", title="score (95% CI)", scale=alt.Scale(domain=[0, 1])))
    rules = base.mark_rule(color="#24292f").encode(y="low:Q", y2="high:Q")
    return (bars + rules).properties(height=240)


def forest_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    """Paired rules: candidate minus reference with its interval, the tolerated margin as a red tick."""
    df = _frame(rows)
    order = list(dict.fromkeys(df["rule"]))
    base = alt.Chart(df).encode(y=alt.Y("rule:N", sort=order, title=None, axis=alt.Axis(labelLimit=420)),
                                tooltip=["rule", alt.Tooltip("difference:Q", format="+.3f"),
                                         alt.Tooltip("low:Q", format="+.3f"), alt.Tooltip("high:Q", format="+.3f"),
                                         "verdict"])
    colour = alt.Color("verdict:N", scale=alt.Scale(domain=["pass", "fail", "inconclusive"],
                                                    range=["#1a7f37", "#cf222e", "#9a6700"]), title="verdict")
    ci = base.mark_rule(strokeWidth=3).encode(x=alt.X("low:Q", title="difference, candidate − reference (95% CI)"),
                                              x2="high:Q", color=colour)
    point = base.mark_point(filled=True, size=80).encode(x="difference:Q", color=colour)
    zero = alt.Chart(pd.DataFrame({"x": [0.0]})).mark_rule(strokeDash=[4, 4], color="#57606a").encode(x="x:Q")
    margin = base.mark_tick(color="#cf222e", thickness=2, size=18).encode(x="margin:Q")
    return (ci + point + margin + zero).properties(height=forest_height(rows))


def forest_height(rows: list[dict[str, Any]]) -> int:
    return max(90, 40 * len({r["rule"] for r in rows}) + 50)


def band_chart(rows: list[dict[str, Any]], *, y: str, low: str, high: str, series: str, title: str,
               domain: list[float] | None = None, fmt: str = ".3f") -> alt.Chart:
    """A line per series over time with its confidence band (beta feedback)."""
    df = _frame(rows)
    scale = alt.Scale(domain=domain) if domain else alt.Scale(zero=False)
    base = alt.Chart(df).encode(x=alt.X("period:T", title=None),
                                color=alt.Color(f"{series}:N", title=None, scale=alt.Scale(scheme="tableau10")))
    band = base.mark_area(opacity=0.18).encode(y=alt.Y(f"{low}:Q", title=title, scale=scale), y2=f"{high}:Q")
    line = base.mark_line(point=True).encode(
        y=f"{y}:Q", tooltip=[alt.Tooltip("period:T"), series, alt.Tooltip(f"{y}:Q", format=fmt),
                             alt.Tooltip(f"{low}:Q", format=fmt), alt.Tooltip(f"{high}:Q", format=fmt)])
    return (band + line).properties(height=260)


def sequence_chart(rows: list[dict[str, Any]], margin: float) -> alt.Chart:
    """The anytime-valid interval of beta minus production, as it stood each day."""
    df = _frame(rows)
    base = alt.Chart(df).encode(x=alt.X("day:T", title=None))
    band = base.mark_area(opacity=0.2, color="#bf3989").encode(
        y=alt.Y("low:Q", title="beta − production"), y2="high:Q")
    line = base.mark_line(point=True, color="#bf3989").encode(
        y="diff:Q", tooltip=[alt.Tooltip("day:T"), alt.Tooltip("diff:Q", format="+.3f"),
                             alt.Tooltip("low:Q", format="+.3f"), alt.Tooltip("high:Q", format="+.3f"),
                             "n_beta", "n_production"])
    lines = alt.Chart(pd.DataFrame({"y": [0.0, -margin], "what": ["no difference", "tolerated drop"]})).mark_rule(
        strokeDash=[4, 4]).encode(y="y:Q", color=alt.Color("what:N", title=None,
                                                            scale=alt.Scale(range=["#57606a", "#cf222e"])))
    return (band + line + lines).properties(height=240)


def volume_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    df = _frame(rows)
    return alt.Chart(df).mark_bar().encode(
        x=alt.X("period:T", title=None), y=alt.Y("sum(requests):Q", title="requests"),
        color=alt.Color("arm:N", scale=_arm_scale()),
        tooltip=[alt.Tooltip("period:T"), "arm", "model", "requests", "errors"]).properties(height=220)


def latency_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    df = _frame(rows)
    long = df.melt(id_vars=["period", "arm", "model"], value_vars=["latency_p50", "latency_p95"],
                   var_name="measure", value_name="ms")
    long["measure"] = long["measure"].map({"latency_p50": "median", "latency_p95": "95th percentile"})
    return alt.Chart(long).mark_line(point=True).encode(
        x=alt.X("period:T", title=None), y=alt.Y("ms:Q", title="latency (ms)"),
        color=alt.Color("arm:N", title=None, scale=_arm_scale()),
        strokeDash=alt.StrokeDash("measure:N", title=None),
        tooltip=[alt.Tooltip("period:T"), "arm", "model", "measure", alt.Tooltip("ms:Q", format=".0f")]).properties(
        height=220)


def runs_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    df = _frame(rows)
    df = df[df["duration_s"].notna()]
    return alt.Chart(df).mark_circle(size=60, opacity=0.8).encode(
        x=alt.X("started_at:T", title="started"), y=alt.Y("duration_s:Q", title="duration (s)"),
        color=alt.Color("model:N", scale=alt.Scale(scheme="tableau10")),
        tooltip=["model", "suite", "stage", "status", alt.Tooltip("duration_s:Q", format=".1f"), "n_examples",
                 "n_cached", "n_errors", alt.Tooltip("started_at:T", format="%Y-%m-%d %H:%M:%S")]).properties(
        height=220)


def cost_frontier_chart(rows: list[dict[str, Any]]) -> alt.Chart:
    """Each priced model: accuracy (95% CI) against cost per 1,000 requests; a line through the frontier."""
    df = _frame(rows)
    df["on_frontier"] = df["frontier"].map({True: "frontier", False: "dominated"}).fillna("—")
    currency = ", ".join(sorted({c for c in df["currency"] if c})) or "price"
    x = alt.X("cost_per_1k:Q", title=f"cost per 1,000 requests ({currency})", scale=alt.Scale(zero=True))
    base = alt.Chart(df).encode(
        x=x, tooltip=["model", alt.Tooltip("accuracy:Q", format=".3f"), alt.Tooltip("accuracy_low:Q", format=".3f"),
                      alt.Tooltip("accuracy_high:Q", format=".3f"), alt.Tooltip("cost_per_1k:Q", format=".4g"),
                      alt.Tooltip("latency_p50_ms:Q", format=".1f"), alt.Tooltip("latency_p95_ms:Q", format=".1f"),
                      "on_frontier"])
    colour = alt.Color("on_frontier:N", title=None, scale=alt.Scale(domain=["frontier", "dominated"],
                                                                   range=["#0969da", "#8c959f"]))
    bars = base.mark_rule(strokeWidth=2).encode(y=alt.Y("accuracy_low:Q", title="accuracy (95% CI)",
                                                        scale=alt.Scale(domain=[0, 1])), y2="accuracy_high:Q",
                                                color=colour)
    points = base.mark_point(filled=True, size=90).encode(y="accuracy:Q", color=colour)
    labels = base.mark_text(align="left", dx=8, dy=-6).encode(y="accuracy:Q", text="model:N")
    front = alt.Chart(df[df["frontier"] == True].sort_values("cost_per_1k")).mark_line(  # noqa: E712
        color="#0969da", strokeDash=[4, 4]).encode(x="cost_per_1k:Q", y="accuracy:Q")
    return (bars + front + points + labels).properties(height=300)
