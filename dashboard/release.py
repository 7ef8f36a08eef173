"""Release (release managers): may the candidate replace production, yes or no, and why?

The newest stored gate decision for the two models (``tollgate gate`` writes them; the page never
re-judges), each rule's evidence, the rollout stage of every model with the audit trail, and the
two buttons that change state — advance and roll back — for release managers only.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from dashboard import actions, charts, ui
from dashboard.auth import current_user, is_release_manager
from dashboard.context import Context, load
from harness.hashing import hash_obj

LAST_ACTION = "tollgate_last_action"
PRODUCTION = "(production)"  # the rollback form's choice: production back to the model it replaced


def _default_pair(ctx: Context, models: list[str], assignment: Any) -> tuple[str, str]:
    qp = st.query_params
    by_role = {c.role: n for n, c in ctx.project.models.items()}
    cand = qp.get("candidate") or by_role.get("candidate") or models[0]
    ref = qp.get("reference") or by_role.get("production") or assignment.production or models[-1]
    if cand not in models:
        cand = models[0]
    if ref not in models:
        ref = next((m for m in models if m != cand), models[0])
    return cand, ref


def render() -> None:
    ctx = load()
    ui.header("Release", "May this candidate replace production? The gate's verdict, its evidence, and the rollout.",
              ctx)
    ui.stop_if_nothing(ctx)
    project = ctx.project
    models = list(project.models)
    a = ctx.compute("dashboard.release:_assignment")
    cand_default, ref_default = _default_pair(ctx, models, a)
    c1, c2 = st.columns(2)
    candidate = c1.selectbox("Candidate", models, index=models.index(cand_default), key="rel_candidate")
    others = [m for m in models if m != candidate] or models
    reference = c2.selectbox("Against", others, index=others.index(ref_default) if ref_default in others else 0,
                             key="rel_reference")
    st.query_params.update({"candidate": candidate, "reference": reference})

    decision = ctx.read("harness.queries:latest_decision", candidate, reference)
    _verdict_section(candidate, reference, decision)
    _heldout_section(ctx)
    st.divider()
    _cost_section(ctx)
    st.divider()
    _rollout_section(ctx, a)
    st.divider()
    _actions_section(ctx, a)
    ui.refreshed(ctx)


def _assignment(ctx: Context) -> Any:
    from rollout.promote import current

    return current(ctx.project, ctx.store)


# -- the verdict ------------------------------------------------------------------------------------------
def _verdict_section(candidate: str, reference: str, decision: dict[str, Any] | None) -> None:
    st.subheader(f"{candidate} against {reference}")
    if decision is None:
        ui.verdict_badge(None, "Verdict")
        st.info(f"The gate has not judged {candidate} against {reference} yet. Run "
                f"`tollgate gate {candidate} --against {reference}` (it records its decision here), then refresh.")
        return
    ui.verdict_badge(decision["verdict"])
    ev = decision["evidence"]
    rules = ev.get("rules") or []
    counts = {v: sum(r.get("verdict") == v for r in rules) for v in ("pass", "fail", "inconclusive")}
    st.markdown(_plain_reason(decision["verdict"], counts, rules))
    st.caption(f"Decided {str(decision['created_at'])[:19]} UTC by {decision['actor']} · decision "
               f"`{decision['decision_id'][:12]}` · policy `{decision['policy_hash'][:12]}` · seed {decision['seed']}. "
               f"`tollgate decisions --id {decision['decision_id'][:12]} --verify` recomputes it.")
    table = pd.DataFrame([_rule_row(r) for r in rules])
    if not table.empty:
        ui.verdict_table(table.set_index("rule"))
        st.caption("candidate / reference: the metric on the same examples with its 95% confidence interval (the range "
                   "the true value lies in, 19 times out of 20). difference: candidate minus reference, paired. "
                   "p: the one-sided p-value that the rule passes (Holm-adjusted unless the rule is critical).")
    paired = [_forest_row(r) for r in rules if (r.get("comparison") or {}).get("difference") is not None]
    if paired:
        st.markdown("**Paired differences against the tolerated margin** (left of the red tick is worse than "
                    "allowed; the bar is the 95% interval)")
        st.altair_chart(charts.forest_chart(paired), width="stretch", height=charts.forest_height(paired))


def _plain_reason(verdict: str, counts: dict[str, int], rules: list[dict[str, Any]]) -> str:
    n = len(rules)
    if verdict == "pass":
        return f"**Yes.** All {n} rules of the policy pass: the evidence clears every threshold."
    failing = [r for r in rules if r.get("verdict") == "fail"]
    unsure = [r for r in rules if r.get("verdict") == "inconclusive"]
    if verdict == "fail":
        names = "; ".join(f"{r.get('rule')}: {r.get('reason', '')}" for r in failing[:3])
        return f"**No.** {counts['fail']} of {n} rules fail — {names}"
    needs = [f"{r.get('rule')} (about {r['n_needed']} examples)" for r in unsure if r.get("n_needed")]
    return (f"**Not yet.** {counts['inconclusive']} of {n} rules cannot tell with the evidence stored"
            + (f"; more examples would decide: {', '.join(needs)}." if needs else "."))


def _estimate(d: dict[str, Any] | None) -> str:
    if not d:
        return ""
    text = ui.ci(d.get("value"), d.get("low"), d.get("high"))
    return text + (f" (n={d['n']})" if d.get("n") is not None else "")


def _rule_row(r: dict[str, Any]) -> dict[str, Any]:
    comp = r.get("comparison") or {}
    p = r.get("p_pass_adjusted") if r.get("p_pass_adjusted") is not None else r.get("p_pass")
    diff = ui.ci(comp.get("difference"), comp.get("ci_low"), comp.get("ci_high"), sign=True) \
        if comp.get("difference") is not None else ""
    return {"rule": ("critical · " if r.get("critical") else "") + str(r.get("rule")),
            "verdict": ui.VERDICT_MARKS.get(r.get("verdict"), r.get("verdict")),
            "candidate": _estimate(r.get("candidate")), "reference": _estimate(r.get("reference")),
            "difference [95% CI]": diff, "n": str(comp.get("n") or (r.get("candidate") or {}).get("n") or ""),
            "p": ui.pval(p), "why": r.get("reason", "")}


def _forest_row(r: dict[str, Any]) -> dict[str, Any]:
    comp = r["comparison"]
    margin = -(r.get("threshold") or 0.0) if r.get("condition") == "non_inferior" else 0.0
    return {"rule": r.get("rule"), "difference": comp["difference"], "low": comp.get("ci_low"),
            "high": comp.get("ci_high"), "margin": margin, "verdict": r.get("verdict")}


# -- selection on the test set -----------------------------------------------------------------------------
def _heldout_uses(con: Any) -> list[dict[str, Any]]:
    from harness.selection import heldout_uses

    return [u.as_dict() for u in heldout_uses(con)]


def _heldout_section(ctx: Context) -> None:
    """How many models each held-out suite version has judged: scores chosen on it are optimistic."""
    from harness.selection import WARN_AFTER, HeldoutUse, warning

    uses = [u for u in ctx.read("dashboard.release:_heldout_uses") if u["current"]]
    if not uses:
        return
    st.markdown("**Held-out suites: models judged on each since it last changed**")
    limit = ctx.project.gate.max_selections_per_heldout
    for u in uses:
        if u["n_models"] > (limit if limit is not None else WARN_AFTER):
            st.warning(warning(HeldoutUse(**u)) + (f" The policy allows {limit}: the gate fails until the suite is "
                                                   f"renewed." if limit is not None else ""))
    st.table(pd.DataFrame([{"suite": u["suite"], "version": u["suite_hash"][:12], "models judged": u["n_models"],
                            "which": ", ".join(u["models"]), "first used": u["first_used"] or "",
                            "last used": u["last_used"] or ""} for u in uses]).set_index("suite"))
    st.caption(f"Every model compared on a held-out suite spends some of its honesty: the best of many looks better "
               f"on it than it is. Shown as a warning above {WARN_AFTER} models (a base, production and one "
               f"candidate choose nothing); `gate: max_selections_per_heldout` in tollgate.yaml makes the gate fail "
               f"beyond a limit. Changing the suite's examples starts the count again.")


# -- cost ---------------------------------------------------------------------------------------------------------
def _frontier(ctx: Context) -> dict[str, Any]:
    from harness.cost import frontier_rows

    with ctx.store.read() as con:
        rows, notes = frontier_rows(con, ctx.project.models, ctx.project.costs)
    return {"rows": [r.as_dict() for r in rows], "notes": notes}


def _cost_section(ctx: Context) -> None:
    from harness.cost import human_bytes, human_count

    st.subheader("Accuracy against cost")
    data = ctx.compute("dashboard.release:_frontier")
    rows = [r for r in data["rows"] if r["accuracy"] is not None]
    if not rows:
        st.caption("No model has a completed run on a held-out suite yet: `tollgate run --model NAME`.")
        return
    priced = [r for r in rows if r["cost_per_1k"] is not None]
    if priced:
        st.markdown("**Pass rate on the held-out suites (95% CI) against cost per 1,000 requests** (the line joins "
                    "the frontier: models no other beats on both)")
        st.altair_chart(charts.cost_frontier_chart(priced), width="stretch")
    unpriced = [r["model"] for r in rows if r["cost_per_1k"] is None]
    if unpriced:
        st.caption(f"Not on the chart, no price: {', '.join(unpriced)} (add `cost: {{per_hour: ...}}` or per-token "
                   f"prices to the model in tollgate.yaml).")
    for n in data["notes"]:
        st.caption(n)
    table = pd.DataFrame([{
        "model": r["model"], "accuracy [95% CI]": ui.ci(r["accuracy"], r["accuracy_low"], r["accuracy_high"]),
        "latency p50 / p95 (ms)": f"{ui.num(r['latency_p50_ms'], 1)} / {ui.num(r['latency_p95_ms'], 1)}",
        "throughput (ex/s)": ui.num(r["throughput_per_s"], 1), "params": human_count(r["parameters"]),
        "size": human_bytes(r["size_bytes"]),
        "cost / 1k": (f"{r['cost_per_1k']:.4g} {r['currency']}" if r["cost_per_1k"] is not None else "no price"),
        "frontier": {True: "frontier", False: "dominated", None: "—"}[r["frontier"]]} for r in rows])
    st.table(table.set_index("model"))
    st.caption("Latency over each model's newest run of each held-out suite; throughput is examples per second of "
               "answering time (1000 / mean latency). `tollgate compare A B --cost` prints the same table.")


# -- the rollout --------------------------------------------------------------------------------------------
def _rollout_section(ctx: Context, a: Any) -> None:
    from rollout.stages import gate_needed, next_stage

    st.subheader("Rollout: where every model is")
    needs = {"offline": "the offline gate (the suites) to pass", "shadow": "the shadow gate (paired traffic) to pass",
             "beta": "the beta gate (users' feedback) to pass"}
    rows = []
    for m in ctx.project.models:
        s = a.stage_of(m)
        if s.name == "production":
            rows.append({"model": m, "stage": "production", "next step": "—", "what it needs": "serves every user "
                                                                                                "not in beta"})
            continue
        nxt = next_stage(s, ctx.project.rollout.beta_steps)
        rows.append({"model": m, "stage": s.label(), "next step": nxt.label(), "what it needs": needs[gate_needed(s)]})
    st.table(pd.DataFrame(rows).set_index("model"))
    trail = ctx.read("rollout.queries:audit_trail", limit=100)
    st.markdown("**Audit trail** (every stage change, newest first; append-only)")
    if not trail:
        st.caption("No stage changes yet.")
        return
    df = pd.DataFrame(trail).drop(columns=["event_id"])
    df["ts"] = df["ts"].astype(str).str[:19]
    df["forced"] = df["forced"].map({True: "yes", False: ""})
    df["decision"] = df["decision"].fillna("")
    st.dataframe(df.rename(columns={"ts": "time (UTC)", "from_stage": "from", "to_stage": "to"}), hide_index=True,
                 width="stretch", height=min(420, 38 + 35 * len(df)))


# -- the actions ----------------------------------------------------------------------------------------------
def _actions_section(ctx: Context, a: Any) -> None:
    from rollout.stages import next_stage

    st.subheader("Advance or roll back")
    user = current_user()
    allowed = is_release_manager(user, ctx.settings)
    if allowed:
        st.caption(f"Acting as **{user}**: your name goes into the audit trail with the reason you give.")
    else:
        st.caption("Only release managers can move a model (log in in the sidebar). You may look; any move you try is "
                   "refused and nothing changes.")
    last = st.session_state.pop(LAST_ACTION, None)
    if last:
        _show_outcome(last)
    project = ctx.project
    movable = [m for m in project.models if a.stage_of(m).name != "production"]
    # the forms' choices describe the current stages: a new state gets new widgets, never a stale label
    state = hash_obj([(m, a.stage_of(m).label()) for m in project.models], a.production_history)[:10]
    left, right = st.columns(2)
    with left.form("advance_form", clear_on_submit=True):
        st.markdown("**Advance** one stage, if the gate of its current stage passes")
        labels = {m: f"{m}: {a.stage_of(m).label()} → {next_stage(a.stage_of(m), project.rollout.beta_steps).label()}"
                  for m in movable}
        model = st.selectbox("Model", movable, format_func=lambda m: labels[m], key=f"advance_model_{state}")
        reason = st.text_input("Reason (required, goes into the audit trail)", key="advance_reason")
        go = st.form_submit_button("Advance", type="primary")
    if go and model:
        with st.spinner(f"Judging the gate for {model}…"):
            out = actions.advance(project, ctx.store, model, user=user, reason=reason)
        _after(out)
    with right.form("rollback_form", clear_on_submit=True):
        st.markdown("**Roll back**: at once, no gate")
        targets = [PRODUCTION] + [m for m in project.models if a.stage_of(m).name in ("shadow", "beta")]
        # as rollout.promote.rollback: back to the last model replaced in production, never one rolled back
        prev = [m for m in a.production_history[:-1] if m != a.production and a.stage_of(m).name == "retired"]

        def label(m: str) -> str:
            if m == PRODUCTION:
                return (f"production: {a.production} → {prev[-1]}" if prev and a.production
                        else "production (no previous model to return to)")
            return f"{m}: {a.stage_of(m).label()} → candidate"

        target = st.selectbox("What", targets, format_func=label, key=f"rollback_target_{state}")
        reason_rb = st.text_input("Reason (required, goes into the audit trail)", key="rollback_reason")
        go_rb = st.form_submit_button("Roll back")
    if go_rb:
        out = actions.rollback(project, ctx.store, user=user, reason=reason_rb,
                               model=None if target == PRODUCTION else target)
        _after(out)


def _after(out: actions.Outcome) -> None:
    st.session_state[LAST_ACTION] = out.as_dict()
    if out.ok:
        st.cache_data.clear()
        st.rerun()
    _show_outcome(st.session_state.pop(LAST_ACTION))


def _show_outcome(out: dict[str, Any]) -> None:
    box = st.success if out["ok"] else st.error
    box(out["message"])
    if out.get("evidence"):
        with st.container(border=True):
            st.markdown("**Why the gate refused** (`tollgate decisions --id "
                        f"{(out.get('decision_id') or '')[:12]}` shows all of it):")
            for line in out["evidence"]:
                st.markdown(f"- {line}")
