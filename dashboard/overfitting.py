"""Overfitting: did the model learn its task or its data? Per model, one metric on the training sample,
validation, held-out, edge cases, shadow traffic and general benchmarks side by side (the gap is
visible at a glance); each overfitting flag with its evidence; the base model before and after."""

from __future__ import annotations

from typing import Any

import streamlit as st

from dashboard import charts, ui
from dashboard.context import Context, load

FLAG_MARKS = {True: ":red[**RAISED**]", False: ":green[**down**]", None: ":orange[**unknown**]"}
FLAG_MEANING = {
    "gap": "scores on its own training sample above held-out: it memorised rather than generalised",
    "optimism": "held-out above edge cases: the clean split flatters it",
    "forgetting": "worse than the base model on general benchmarks: fine-tuning cost general ability",
    "contamination": "evaluated examples also occur in its training data: the score is inflated",
    "memorisation": "on copies of training documents with one value swapped, it answers the original value",
}


def render() -> None:
    ctx = load()
    ui.header("Overfitting", "Did the model learn its task, or its data? Compare its scores across kinds of suites.",
              ctx)
    ui.stop_if_nothing(ctx)
    models = ctx.read("harness.queries:models_with_results")
    if not models:
        st.info("No completed run yet: `tollgate run --model NAME` (or `tollgate demo` to see an example).")
        ui.refreshed(ctx)
        return
    metric = ctx.project.gate.overfit.metric
    chosen = st.multiselect("Models", models, default=models, key="of_models")
    rows = _chart_rows(ctx, chosen, metric) if chosen else []
    if rows:
        st.markdown(f"**{metric}** on each suite, from the model's own training sample (left) to new documents, edge "
                    f"cases, shadow traffic and general benchmarks (right). A model that learned its task scores about "
                    f"the same everywhere but the edge cases; a big drop after train_sample is the overfitting gap.")
        st.altair_chart(charts.gap_chart(rows), width="content")
        st.caption("Dots: the score; bars: its 95% confidence interval. General benchmarks (lm-eval) have no "
                   f"{metric}; they show their own accuracy. Shadow: the share of reviewers' corrected requests the "
                   "model answered right (from the latest shadow gate decision).")
    elif chosen:
        st.info("None of these models has a completed run.")

    st.subheader("Flags")
    project_models = [m for m in ctx.project.models if m in models] or models
    default = "overfit" if "overfit" in project_models else project_models[0]
    model = st.selectbox("Model", project_models, index=project_models.index(default), key="of_flag_model")
    flags = ctx.compute("dashboard.overfitting:flags", model)
    for f in flags:
        mark = FLAG_MARKS[f["raised"]]
        with st.container(border=True):
            st.markdown(f"**{f['name']}** — {mark}  \n*{FLAG_MEANING.get(f['name'], '')}*")
            st.markdown(f["explanation"])
    st.caption("A flag is down only when the evidence clears its threshold; when it cannot tell it is *unknown*, "
               "never silently fine.")

    st.subheader("Before and after: the base model on general benchmarks")
    base = next((n for n, c in ctx.project.models.items() if c.role == "base"), None)
    if base is None:
        st.info("No model has `role: base` in tollgate.yaml, so there is no 'before'.")
    else:
        general = _before_after(ctx, base, model, metric)
        if not general:
            st.info(f"No general or baseline suite was run on both {base} and {model}: "
                    f"`tollgate baseline --model {model} --tasks general`.")
        else:
            st.altair_chart(charts.before_after_chart(general), width="stretch")
            st.caption(f"Grey: {base} before fine-tuning; blue: {model}. Bars are 95% confidence intervals; the "
                       f"forgetting flag above tests the paired difference.")
    ui.refreshed(ctx)


def _chart_rows(ctx: Context, models: list[str], metric: str) -> list[dict[str, Any]]:
    rows = ctx.read("harness.queries:gap_chart", models, metric)
    order = {k: i for i, k in enumerate(charts.KIND_ORDER)}
    for r in rows:
        r["order"] = order.get(r["kind"], len(order))
    for m in models:
        shadow = ctx.read("harness.queries:latest_decision", m, None, "shadow")
        corr = ((shadow or {}).get("evidence") or {}).get("corrections") or {}
        if corr.get("n") and corr.get("candidate") is not None:
            from harness.intervals import wilson

            e = wilson(round(corr["candidate"] * corr["n"]), corr["n"])
            rows.append({"model": m, "suite": "shadow traffic", "kind": "shadow", "metric": "right vs correction",
                         "value": e.value, "low": e.low, "high": e.high, "n": e.n, "ci_method": "wilson",
                         "order": order["shadow"]})
    return rows


def _before_after(ctx: Context, base: str, model: str, metric: str) -> list[dict[str, Any]]:
    rows = ctx.read("harness.queries:gap_chart", [base, model], metric)
    general = [r for r in rows if r["kind"] in ("general", "baseline")]
    have = {(r["model"], r["suite"]) for r in general}
    out = []
    for r in general:
        if (base, r["suite"]) in have and (model, r["suite"]) in have:
            out.append({**r, "when": "before" if r["model"] == base else "after"})
    if base == model:
        return []
    return sorted(out, key=lambda r: (r["suite"], r["when"] != "before"))


def flags(ctx: Context, model: str) -> list[dict[str, Any]]:
    """Every overfitting flag of ``model`` with its evidence, computed from the stored runs (read-only)."""
    from harness.overfit import FLAG_NAMES, overfitting_flags, project_probes

    project = ctx.project
    base = next((n for n, c in project.models.items() if c.role == "base"), None)
    probes = project_probes(project.suite_dirs, project.gate.seed)
    with ctx.store.read() as con:
        out = overfitting_flags(con, model, base=base, training_data=project.training_data.get(model),
                                settings=project.gate.overfit, seed=project.gate.seed,
                                resamples=min(project.gate.resamples, 2000), only=FLAG_NAMES, probes=probes)
    return [f.as_dict() for f in out]

