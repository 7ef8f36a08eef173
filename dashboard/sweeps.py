"""Sweeps: the Optuna studies Tollgate judged, trial by trial, and how each trial's validation score
grew slice by slice until it finished or the pruner stopped it; the selected trial's held-out score
beside its (optimistic) validation score."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from dashboard import ui
from dashboard.context import Context, load


def render() -> None:
    ctx = load()
    ui.header("Sweeps", "Hyperparameter studies judged by Tollgate on a validation suite: every trial, pruned or "
                        "not, and the trial selected for the held-out suites.", ctx)
    ui.stop_if_nothing(ctx)
    studies = ctx.read("harness.sweep_books:studies")
    if not studies:
        st.info("No study yet. Run an Optuna study with `harness.sweep.TollgateObjective` as its objective "
                "(docs/sweeps.md), or `tollgate demo --sweep`.")
        ui.refreshed(ctx)
        return
    names = [s["study"] for s in studies]
    name = st.selectbox("Study", names, index=len(names) - 1, key="sweep_study")
    info = next(s for s in studies if s["study"] == name)
    c = st.columns(5)
    c[0].metric("Trials", info["trials"])
    c[1].metric("Completed", info["complete"])
    c[2].metric("Pruned", info["pruned"], help="stopped early: their first slices scored too low to be worth the rest")
    c[3].metric("Failed", info["failed"], help="training or loading failed; the error is in the table")
    c[4].metric(f"Best {info['metric']}", ui.num(info["best"]),
                help="on the validation suite, and optimistic: it was chosen for being the highest")
    trials = ctx.read("harness.sweep_books:trials", name)
    st.altair_chart(slices_chart(trials, info["metric"]), width="stretch")
    st.caption(f"{info['metric']} on '{info['suite']}' after each slice of the suite (the same random order for "
               f"every trial); a line that stops early is a pruned trial.")
    st.dataframe(_table(trials), hide_index=True, width="stretch")
    for sel in ctx.compute("dashboard.sweeps:selected", name):
        held = "; ".join(f"**{h['suite']}** {ui.ci(h['value'], h['low'], h['high'])} (n={h['n']})"
                         for h in sel["heldout"]) or "not run yet"
        st.markdown(f"Selected: trial **{sel.get('trial')}** as model **{sel['model']}**. Validation "
                    f"{info['metric']} {ui.num((sel.get('validation') or {}).get('value'))} (best of "
                    f"{sel.get('completed_trials', '?')}, optimistic); held-out: {held}.")
    ui.refreshed(ctx)


def selected(ctx: Context, name: str) -> list[dict[str, Any]]:
    from harness.cli_sweep import study_report

    return study_report(ctx.store, ctx.project, name)["selected"]


def slices_chart(trials: list[dict[str, Any]], metric: str) -> alt.Chart:
    rows = [{"trial": str(t["trial"]), "state": t["state"].lower(), "examples": s["n"], "value": s["value"]}
            for t in trials for s in t["intermediate"]]
    df = pd.DataFrame(rows or [{"trial": "", "state": "", "examples": 0, "value": 0.0}])
    return alt.Chart(df).mark_line(point=True).encode(
        x=alt.X("examples:Q", title="examples scored"), y=alt.Y("value:Q", title=metric, scale=alt.Scale(zero=False)),
        color=alt.Color("trial:N", scale=alt.Scale(scheme="tableau10")),
        strokeDash=alt.StrokeDash("state:N", title="state"),
        tooltip=["trial", "state", "examples", alt.Tooltip("value:Q", format=".3f")]).properties(height=300)


def _table(trials: list[dict[str, Any]]) -> pd.DataFrame:
    return pd.DataFrame([{
        "trial": t["trial"], "state": t["state"].lower(),
        "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()),
        "value [95% CI]": ui.ci(t["value"], t["low"], t["high"]) if t["low"] is not None else ui.num(t["value"]),
        "examples": t["n"], "time (s)": None if t["duration_s"] is None else round(t["duration_s"], 1),
        "error": t["error"] or "", "run": t["run_id"] or ""} for t in trials])
