"""Suites and failures (QA): pass rate per suite, tag or perturbation with intervals, models side by
side; then the failing examples themselves — input, expected and actual output with the JSON fields
diffed, the check's reason — filtered by suite, tag, perturbation, model and stage, each adversarial
example linked to the example it was rewritten from."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st

from dashboard import charts, ui
from dashboard.context import Context, load

PAGE_SIZE = 20
ANY = "(any)"


def render() -> None:
    ctx = load()
    ui.header("Suites and failures", "Which examples fail, sliced by suite, tag and perturbation, with the diff.", ctx)
    ui.stop_if_nothing(ctx)
    models = ctx.read("harness.queries:models_with_results")
    if not models:
        st.info("No completed run yet: `tollgate run --model NAME` evaluates a model (or run `tollgate demo` to see "
                "an example).")
        ui.refreshed(ctx)
        return
    qp = st.query_params
    if qp.get("example") and qp.get("suite"):
        _example_view(ctx, qp["suite"], qp["example"], models)
        st.divider()
    catalog = ctx.read("harness.queries:suite_catalog")
    suites = [s["name"] for s in catalog]
    stages = ctx.read("harness.queries:stages")

    st.subheader("Pass rate per slice")
    c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
    chosen_models = c1.multiselect("Models", models, default=models, key="sf_models")
    chosen_suites = c2.multiselect("Suites (none: all)", suites, key="sf_suites")
    by = c3.radio("Slice by", ["suite", "tag", "perturbation"], horizontal=True, key="sf_by")
    stage = c4.selectbox("Stage", [ANY, *stages], key="sf_stage")
    stage_v = None if stage == ANY else stage
    if not chosen_models:
        st.info("Pick at least one model.")
    else:
        rows = ctx.read("harness.queries:pass_rates", chosen_models, by=by, suites=chosen_suites or None, stage=stage_v)
        if not rows:
            st.info("No results for this choice of models, suites and stage.")
        else:
            st.altair_chart(charts.pass_rate_chart(rows, by), width="stretch", height=charts.pass_rate_height(rows))
            st.caption("Pass rate: the share of examples on which every check passed (an error counts as a failure). "
                       "The black line is its 95% Wilson confidence interval; n is the number of examples.")
            with st.expander("The numbers"):
                df = pd.DataFrame(rows)
                df["pass rate [95% CI]"] = [ui.ci(r["rate"], r["low"], r["high"]) for r in rows]
                st.dataframe(df[["model", "suite", "kind", "slice", "pass rate [95% CI]", "passed", "n"]],
                             hide_index=True, width="stretch")

    st.subheader("Failing examples")
    options = ctx.read("harness.queries:slice_options", chosen_models or models, chosen_suites or None)
    f1, f2, f3 = st.columns(3)
    by_role = next((n for n, c in ctx.project.models.items() if c.role == "candidate" and n in models), models[0])
    wanted = qp.get("model") if qp.get("model") in models else by_role
    model = f1.selectbox("Model", models, index=models.index(wanted), key="sf_fail_model")
    tag = f2.selectbox("Tag", [ANY, *options["tags"]], key="sf_tag")
    pert = f3.selectbox("Perturbation", [ANY, *options["perturbations"]], key="sf_pert")
    total, failures = ctx.read("harness.queries:failing_examples", model, suites=chosen_suites or None,
                               tag=None if tag == ANY else tag, perturbation=None if pert == ANY else pert,
                               stage=stage_v, limit=PAGE_SIZE,
                               offset=PAGE_SIZE * (st.session_state.get("sf_page", 1) - 1))
    pages = max(1, -(-total // PAGE_SIZE))
    if not failures and st.session_state.get("sf_page", 1) > pages:  # the filter changed under a later page
        st.session_state["sf_page"] = 1
        st.rerun()
    st.markdown(f"**{total:,}** failing example(s) of **{model}** for this filter: errors first, then held-out and "
                f"edge suites, the lowest scores first; {PAGE_SIZE} a page.")
    if pages > 1:
        st.number_input("Page", min_value=1, max_value=pages, step=1, key="sf_page", help=f"{pages} pages")
        st.caption(f"of {pages}")
    for f in failures:
        _failure(f, model)
    _flaky(ctx, model, chosen_suites or None)
    ui.refreshed(ctx)


def _flaky(ctx: Context, model: str, suites: list[str] | None) -> None:
    """The flaky examples of the model's repeated runs (``--repeats``): answers that flip between pass and fail."""
    flaky = ctx.read("harness.failures:flaky_examples", model, suites=suites, limit=PAGE_SIZE)
    if not flaky:
        return
    st.subheader("Flaky examples")
    st.caption(f"Examples of **{model}**'s repeated runs whose answers flip between pass and fail, the closest to a "
               "coin flip first; pass rate is the share of the example's repeats that passed. Gates and comparisons "
               "count each example once, by that share.")
    for x in flaky:
        with st.expander(f"{x.suite} · {x.example_id} — {x.pass_rate:.0%} of {x.repeats} repeats passed"):
            st.caption("tags: " + (", ".join(x.tags) or "none"))
            st.markdown("**Expected**")
            st.code(_pretty(x.expected), language="json", wrap_lines=True)
            st.dataframe(pd.DataFrame([{"verdict": "pass" if a["passed"] else "fail", "times": len(a["repeats"]),
                                        "repeats": ", ".join(map(str, a["repeats"])),
                                        "seeds": ", ".join(map(str, a["seeds"])),
                                        "answer": a["output"] if a["output"] is not None else "(no answer)"}
                                       for a in x.answers]), hide_index=True, width="stretch")


def _failure(f: dict[str, Any], model: str) -> None:
    what = (f["error"] and f"error: {f['error']}") or f["reason"] or "failed"
    with st.expander(f"{f['suite']} · {f['example_id']} — {str(what)[:140]}"):
        st.caption("tags: " + (", ".join(f["tags"]) or "none") + (f" · stage {f['stage']}" if f["stage"] else ""))
        if f["diff"]:
            st.markdown("**Fields the answer got wrong**")
            st.table(pd.DataFrame([{"field": k, "expected": _s(v[0]), "got": _s(v[1])} for k, v in f["diff"].items()])
                     .set_index("field"))
        c1, c2 = st.columns(2)
        c1.markdown("**Input**")
        c1.code(_pretty(f["input"]), language="json", wrap_lines=True)
        c2.markdown("**Expected**")
        c2.code(_pretty(f["expected"]), language="json", wrap_lines=True)
        c2.markdown("**Actual output**")
        c2.code(f["output"] if f["output"] is not None else "(no answer)", wrap_lines=True)
        st.markdown(f"**Check's reason:** {f['reason'] or '—'}"
                    + (f"  \n**Error:** `{f['error']}`" if f["error"] else ""))
        if f["source"]:
            moved = ", ".join(f"{k}: {_s(a)} → {_s(b)}" for k, a, b in
                              ((k, *v) for k, v in f["vs_source"].items())) or "nothing moved"
            st.markdown(f"Rewritten from **{f['source']}** in `{f['source_suite']}`; against the answer on the source: "
                        f"{moved}.")
            _link_to_example(f["source_suite"], f["source"], model, f"{f['suite']}/{f['example_id']}")


def _link_to_example(suite: str, example_id: str, model: str, origin: str) -> None:
    """Opens the source example at the top of this page; the URL (``?suite=..&example=..``) can be shared."""
    st.button(f"Open the source example {example_id}", icon=":material/undo:", key=f"src_{origin}",
              on_click=_open_example, args=(suite, example_id, model), type="tertiary")


def _open_example(suite: str, example_id: str, model: str) -> None:
    st.query_params.update({"suite": suite, "example": example_id, "model": model})


def _example_view(ctx: Context, suite: str, example_id: str, models: list[str]) -> None:
    st.subheader(f"Example {example_id} in {suite}")
    d = ctx.read("harness.queries:example_detail", suite, example_id)
    if d is None:
        st.info(f"No stored result for example '{example_id}' of suite '{suite}'.")
        return
    c1, c2 = st.columns(2)
    c1.markdown("**Input**")
    c1.code(_pretty(d["input"]), language="json", wrap_lines=True)
    c2.markdown("**Expected**")
    c2.code(_pretty(d["expected"]), language="json", wrap_lines=True)
    st.table(pd.DataFrame([{"model": a["model"], "passed": "yes" if a["passed"] else "no", "answer": a["output"],
                            "reason": a["error"] or a["reason"] or ""} for a in d["answers"]]).set_index("model"))
    if st.button("Close this example", key="sf_close_example"):
        for k in ("suite", "example"):
            st.query_params.pop(k, None)
        st.rerun()


def _pretty(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return json.dumps(value, indent=2, ensure_ascii=False)
    return "" if value is None else str(value)


def _s(v: Any) -> str:
    return "—" if v is None else str(v)
