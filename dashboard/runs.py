"""Runs: every evaluation run with its model, suite version, stage, duration, cache hits and errors."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.context import load

ANY = "(any)"
LIMIT = 1000


def render() -> None:
    ctx = load()
    ui.header("Runs", "Every evaluation run: model, suite version, stage, duration, cache hits, errors.", ctx)
    ui.stop_if_nothing(ctx)
    totals = ctx.read("harness.queries:run_totals")
    if not totals["runs"]:
        st.info("No run yet: `tollgate run --model NAME` (or `tollgate demo` to see an example).")
        ui.refreshed(ctx)
        return
    c = st.columns(4)
    c[0].metric("Runs", f"{totals['runs']:,}",
                help=f"{totals['completed']:,} completed, {totals['running']:,} running, "
                     f"{totals['other']:,} interrupted or failed")
    c[1].metric("Completed", f"{totals['completed']:,}")
    share = totals["cached"] / totals["examples"] if totals["examples"] else None
    c[2].metric("Served from the cache", ui.pct(share, 0),
                help=f"{totals['cached']:,} of {totals['examples']:,} example results were reused, not recomputed")
    c[3].metric("Errors", f"{totals['errors']:,}", help="examples whose model call failed (timeouts, crashes)")

    models = ctx.read("harness.queries:models_with_results")
    f1, f2 = st.columns(2)
    model = f1.selectbox("Model", [ANY, *models], key="runs_model")
    status = f2.selectbox("Status", [ANY, "completed", "running", "interrupted", "failed"], key="runs_status")
    rows = ctx.read("harness.queries:runs_list", model=None if model == ANY else model,
                    status=None if status == ANY else status, limit=LIMIT)
    if not rows:
        st.info("No run matches this filter.")
        ui.refreshed(ctx)
        return
    st.altair_chart(charts.runs_chart(rows), width="stretch")
    df = pd.DataFrame(rows)
    df["started_at"] = df["started_at"].astype(str).str[:19]
    df["cache hits"] = [f"{r['n_cached']}/{r['n_done']}" for r in rows]
    show = df[["started_at", "model", "suite", "suite_version", "suite_kind", "stage", "status", "duration_s",
               "n_examples", "cache hits", "n_errors", "model_version", "run_id"]]
    st.markdown(f"**{len(rows):,} run(s)**" + (f" (the newest {LIMIT:,})" if len(rows) == LIMIT else ""))
    st.dataframe(show.rename(columns={"started_at": "started (UTC)", "suite_version": "suite version",
                                      "suite_kind": "kind", "duration_s": "duration (s)", "n_examples": "examples",
                                      "n_errors": "errors", "model_version": "model version"}),
                 hide_index=True, width="stretch",
                 column_config={"duration (s)": st.column_config.NumberColumn(format="%.1f")})
    ui.refreshed(ctx)
