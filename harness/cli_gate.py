"""The verdict commands: ``compare``, ``gate``, ``overfit``, ``power``, ``decisions``.

Like ``cli.py`` they parse and print; the work is in ``gates``, ``overfit`` and ``stats``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import math
import sys
import uuid
from typing import Any

from harness.errors import EXIT_GATE_FAILED, EXIT_INCONCLUSIVE, EXIT_OK, TollgateInputError

VERDICT_EXIT = {"pass": EXIT_OK, "fail": EXIT_GATE_FAILED, "inconclusive": EXIT_INCONCLUSIVE}
COLOURS = {"pass": "green", "fail": "red", "inconclusive": "yellow"}


def _context(args: argparse.Namespace) -> tuple[Any, Any, dict[str, str]]:
    from harness.project import find_project

    return _context_for(find_project(explicit=args.project))


def _context_for(path: Any) -> tuple[Any, Any, dict[str, str]]:
    """The project, its store and each suite's kind: what every verdict command starts from."""
    from harness.project import load_project
    from harness.store import Store
    from harness.suites import read_suite_header

    project = load_project(path)
    kinds = {}
    for d in project.suite_dirs:
        entry, _ = read_suite_header(d)
        kinds[entry.name or d.name] = entry.kind
    return project, Store(project.store_path), kinds


def _base_of(project: Any, explicit: str | None) -> str | None:
    if explicit:
        project.model(explicit)
        return explicit
    return next((n for n, m in project.models.items() if m.role == "base"), None)


def _fmt(x: float | None, d: int = 3, sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and (math.isnan(x) or math.isinf(x))):
        return "—"
    return f"{x:+.{d}f}" if sign else f"{x:.{d}f}"


def _console() -> Any:
    from rich.console import Console

    return Console(width=max(150, Console().width))


# -- compare -------------------------------------------------------------------------------------
def cmd_compare(args: argparse.Namespace) -> int:
    from harness import store as st
    from harness.stats import paired_compare

    project, store, kinds = _context(args)
    for m in args.models:
        project.model(m)
    if args.cost:
        from harness.cli_cost import compare_cost

        return compare_cost(args, project, store, kinds)
    if len(args.models) != 2:
        raise TollgateInputError(f"compare takes two models, a candidate and a reference; got {len(args.models)}.",
                                 field="MODEL", hint="With --cost it takes two or more.")
    args.candidate, args.reference = args.models
    rows = []
    versions: dict[str, str] = {}
    with store.read() as con:
        mine = {r["suite"]: r for r in st.latest_runs(con, model=args.candidate, suites=args.suite, stage=args.stage)}
        theirs = {r["suite"]: r for r in st.latest_runs(con, model=args.reference, suites=args.suite,
                                                         stage=args.reference_stage or args.stage)}
        for suite in sorted(set(mine) & set(theirs)):
            a_run, b_run = mine[suite], theirs[suite]
            if a_run["suite_hash"] != b_run["suite_hash"]:
                print(f"note: {suite}: the two models ran different versions of the suite; skipped.", file=sys.stderr)
                continue
            if kinds.get(suite) == "heldout":
                versions[suite] = a_run["suite_hash"]
            metrics = args.metric or [m for m in st.run_metric_names(con, a_run["run_id"])
                                      if m not in ("error", "latency_ms") and "." not in m]
            for metric in metrics:
                a = st.example_values(con, a_run["run_id"], metric)
                b = st.example_values(con, b_run["run_id"], metric)
                ids = sorted(set(a) & set(b))
                if not ids:
                    continue
                comp, _ = paired_compare(metric, [a[i] for i in ids], [b[i] for i in ids], seed=project.gate.seed,
                                         resamples=project.gate.resamples)
                rows.append({"suite": suite, **comp.as_dict()})
        warnings = _selection_warnings(con, versions)
    if not rows:
        raise TollgateInputError(f"{args.candidate} and {args.reference} have no completed runs on a common suite.",
                                 hint="Run both models on the same suites first.")
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2)
        print()
        _say(warnings)
        return EXIT_OK
    from rich.table import Table

    t = Table(title=f"{args.candidate} vs {args.reference} (paired, same examples; 95% CIs)", title_justify="left")
    for col in ("suite", "metric", args.candidate, args.reference, "difference [95% CI]", "test", "p", "n",
                "discordant"):
        t.add_column(col, justify="left" if col in ("suite", "metric", "test") else "right", no_wrap=True)
    for r in rows:
        disc = f"{r['discordant'][0]}/{r['discordant'][1]}" if r["discordant"] else ""
        t.add_row(r["suite"], r["metric"], _fmt(r["candidate"]), _fmt(r["reference"]),
                  f"{_fmt(r['difference'], sign=True)} [{_fmt(r['ci_low'], sign=True)}, "
                  f"{_fmt(r['ci_high'], sign=True)}]",
                  r["test"], _fmt(r["p_value"], 4), str(r["n"]), disc)
    _console().print(t)
    _say(["discordant: examples only the candidate passed / only the reference passed.", *warnings])
    return EXIT_OK


def _selection_warnings(con: Any, versions: Any) -> list[str]:
    """The warning for each of these held-out suite versions that has judged more than WARN_AFTER models."""
    from harness.selection import overused, uses_of, warning

    return [f"warning: {warning(use)}" for use in overused(uses_of(con, versions))]


def _say(lines: list[str]) -> None:
    """Notes and warnings on stderr, after the table (where they are read), never mixed into JSON."""
    sys.stdout.flush()
    for line in lines:
        print(line, file=sys.stderr)


# -- gate ----------------------------------------------------------------------------------------
def judge(project: Any, store: Any, kinds: dict[str, str], candidate: str, reference: str | None,
          base: str | None, actor: str, pinned: dict[str, dict[str, str]] | None = None) -> tuple[Any, str]:
    """Evaluate the gate and write its decision record; returns (decision, decision id)."""
    from harness import store as st
    from harness.gates import evaluate_gate
    from harness.version import code_version

    probes = _probes_if_asked(project)
    current = None if pinned is not None else current_versions(project, [m for m in (candidate, reference) if m])
    now = st.utcnow()  # the decision's time: held-out suites' uses are counted up to it, on replay too
    with store.read() as con:
        decision = evaluate_gate(con, candidate=candidate, reference=reference, policy=project.gate,
                                 suite_kinds=kinds, base=base, training_data=project.training_data.get(candidate),
                                 pinned_runs=pinned, probes=probes, current=current, costs=project.costs, as_of=now)
    evidence = decision.as_dict()
    evidence["runs"] = [r.runs for r in decision.rules if r.runs]
    decision_id = uuid.uuid4().hex
    with store.write() as con:
        st.insert_decision(con, {
            "decision_id": decision_id, "candidate": candidate, "reference": reference,
            "candidate_fingerprint": decision.fingerprints.get(candidate),
            "reference_fingerprint": decision.fingerprints.get(reference) if reference else None,
            "policy_hash": decision.policy_hash, "suite_hashes": decision.suite_hashes,
            "verdict": decision.verdict, "evidence": evidence, "seed": decision.seed,
            "code_version": code_version(), "actor": actor, "created_at": now})
    return decision, decision_id


def current_versions(project: Any, models: list[str]) -> dict[str, dict[str, str]]:
    """Today's fingerprints of these models and content hashes of every suite: results made by
    other weights or on another suite version must not decide a gate."""
    from harness.adapters import adapters
    from harness.suite_hashes import CACHE_FILE, suite_hashes

    fps = {m: adapters.get(project.models[m].adapter).fingerprint(project.models[m]) for m in models}
    return {"models": fps, "suites": suite_hashes(project.suite_dirs, project.store_path.parent / CACHE_FILE)}


def _probes_if_asked(project: Any) -> list[Any] | None:
    from harness.overfit import project_probes
    from harness.policy import OverfitRule

    wanted = any(isinstance(r, OverfitRule) and "memorisation" in r.no_overfitting for r in project.gate.rules)
    return project_probes(project.suite_dirs, project.gate.seed) if wanted else None


def cmd_gate(args: argparse.Namespace) -> int:
    project, store, kinds = _context(args)
    project.model(args.candidate)
    if args.against:
        project.model(args.against)
    decision, decision_id = judge(project, store, kinds, args.candidate, args.against,
                                  _base_of(project, args.base), args.actor or getpass.getuser())
    if args.json:
        json.dump({"decision_id": decision_id, **decision.as_dict()}, sys.stdout, indent=2)
        print()
    else:
        print_decision(decision, decision_id)
    from harness.selection import WARN_AFTER, HeldoutUse, warning

    for use in decision.heldout_use:
        if use["n_models"] > WARN_AFTER:
            print(f"warning: {warning(HeldoutUse(**use))}", file=sys.stderr)
    return VERDICT_EXIT[decision.verdict]


def print_decision(decision: Any, decision_id: str) -> None:
    from rich.table import Table

    against = f" against {decision.reference}" if decision.reference else ""
    t = Table(title=f"Gate: {decision.candidate}{against}", title_justify="left", show_lines=True)
    for col in ("rule", "verdict", "candidate [95% CI]", "reference", "difference [95% CI]", "p (adj.)", "why"):
        t.add_column(col, justify="left", overflow="fold", no_wrap=col in ("verdict", "p (adj.)"),
                     ratio=3 if col == "why" else None)
    for r in decision.rules:
        cand = r.candidate or {}
        ref = r.reference or {}
        comp = r.comparison if r.comparison and "difference" in r.comparison else {}
        p = r.p_pass_adjusted if r.p_pass_adjusted is not None else r.p_pass
        t.add_row(("[b]critical[/b] " if r.critical else "") + r.rule,
                  f"[{COLOURS[r.verdict]}]{r.verdict}[/]",
                  f"{_fmt(cand.get('value'))} [{_fmt(cand.get('low'))}, {_fmt(cand.get('high'))}]" if cand else "",
                  _fmt(ref.get("value")) if ref else "",
                  (f"{_fmt(comp.get('difference'), sign=True)} [{_fmt(comp.get('ci_low'), sign=True)}, "
                   f"{_fmt(comp.get('ci_high'), sign=True)}]") if comp else "",
                  _fmt(p, 4), r.reason)
    con = _console()
    con.print(t)
    con.print(f"[b]Verdict: [{COLOURS[decision.verdict]}]{decision.verdict.upper()}[/][/b]   "
              f"(decision {decision_id[:12]}, policy {decision.policy_hash[:12]}, seed {decision.seed})")


# -- overfit -------------------------------------------------------------------------------------
def cmd_overfit(args: argparse.Namespace) -> int:
    from harness.overfit import FLAG_NAMES, overfitting_flags, project_probes
    from harness.runner import run_suites

    project, store, _ = _context(args)
    project.model(args.model)
    probes = project_probes(project.suite_dirs, project.gate.seed)
    if args.memorisation:
        if not probes:
            raise TollgateInputError("the project has no train_sample suite to build a memorisation probe from.",
                                     field="--memorisation")
        run_suites(project, args.model, [p for p, _ in probes], store, show_progress=not args.no_progress)
    with store.read() as con:
        flags = overfitting_flags(con, args.model, base=_base_of(project, args.base),
                                  training_data=project.training_data.get(args.model), settings=project.gate.overfit,
                                  seed=project.gate.seed, resamples=min(project.gate.resamples, 5000),
                                  only=FLAG_NAMES, probes=probes)
    if args.json:
        json.dump([f.as_dict() for f in flags], sys.stdout, indent=2, default=str)
        print()
    else:
        from rich.table import Table

        t = Table(title=f"Overfitting flags: {args.model}", title_justify="left", show_lines=True)
        t.add_column("flag")
        t.add_column("raised")
        t.add_column("evidence", overflow="fold")
        for f in flags:
            mark = {True: "[red]RAISED[/]", False: "[green]no[/]", None: "[yellow]unknown[/]"}[f.raised]
            t.add_row(f.name, mark, f.explanation)
        _console().print(t)
    if any(f.raised for f in flags):
        return EXIT_GATE_FAILED
    return EXIT_INCONCLUSIVE if any(f.raised is None for f in flags) else EXIT_OK


# -- power ---------------------------------------------------------------------------------------
def cmd_power(args: argparse.Namespace) -> int:
    from harness.stats import minimum_detectable_effect, paired_sample_size

    p = args.baseline_rate
    if not 0 < p < 1:
        raise TollgateInputError("must be between 0 and 1.", field="--baseline-rate")
    if not 0 < args.margin < 1:
        raise TollgateInputError("must be between 0 and 1.", field="--margin")
    if not 0 < args.alpha < 0.5:
        raise TollgateInputError("must be between 0 and 0.5 (one-sided).", field="--alpha")
    if not 0.5 < args.power < 1:
        raise TollgateInputError("must be between 0.5 and 1.", field="--power")
    if args.discordance is not None and not 0 < args.discordance <= 1:
        raise TollgateInputError("must be in (0, 1].", field="--discordance")
    disc = args.discordance if args.discordance is not None else 2 * p * (1 - p)
    n = paired_sample_size(disc, args.margin, args.alpha, args.power)
    print(f"To show a candidate is not worse than a reference at {p:.3f} by more than {args.margin:g} "
          f"(one-sided alpha {args.alpha:g}, power {args.power:g}, paired, discordance {disc:.3f}"
          f"{'' if args.discordance is not None else ' assumed: independent errors'}):")
    print(f"  {n} examples")
    if args.n:
        mde = minimum_detectable_effect(args.n, disc, args.alpha, args.power)
        if math.isnan(mde):
            print(f"With {args.n} examples no difference is detectable at this discordance (even one where every "
                  f"disagreement favours the same model).")
        else:
            print(f"With {args.n} examples the smallest difference detectable is {mde:.4f}.")
    if args.discordance is None:
        print("Models that err on the same examples disagree less: pass --discordance from 'tollgate compare' "
              "(discordant pairs / n) for a tighter figure.", file=sys.stderr)
    return EXIT_OK


# -- decisions -----------------------------------------------------------------------------------
def cmd_decisions(args: argparse.Namespace) -> int:
    from harness import store as st

    project, store, kinds = _context(args)
    with store.read() as con:
        rows = st.list_decisions(con, candidate=args.candidate, decision_id=args.id)
    if args.verify:
        if len(rows) != 1:
            raise TollgateInputError(f"--verify needs exactly one decision; {len(rows)} match.", field="--id")
        return verify(project, store, kinds, rows[0])
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, default=str)
        print()
        return EXIT_OK
    from rich.table import Table

    t = Table(title="Decisions (newest first; never edited)", title_justify="left")
    for col in ("id", "time", "candidate", "reference", "verdict", "actor", "policy"):
        t.add_column(col, no_wrap=True)
    for r in rows:
        t.add_row(r["decision_id"][:12], str(r["created_at"])[:19], r["candidate"], r["reference"] or "",
                  f"[{COLOURS[r['verdict']]}]{r['verdict']}[/]", r["actor"], r["policy_hash"][:12])
    _console().print(t)
    return EXIT_OK


def verify(project: Any, store: Any, kinds: dict[str, str], row: dict[str, Any]) -> int:
    """Recompute a stored decision from its own evidence (pinned runs, policy, seed) and compare."""
    from harness.gates import evaluate_gate
    from harness.policy import GatePolicy

    ev = row["evidence"]
    if "policy" not in ev:  # a shadow or beta verdict: judged on the traffic of its day, not on pinned runs
        raise TollgateInputError(f"decision {row['decision_id'][:12]} is a {ev.get('gate', 'traffic')} gate "
                                 f"verdict; only offline gate decisions are recomputed from their pinned runs.",
                                 field="--verify")
    pinned = list(ev.get("runs", []))
    policy = GatePolicy.model_validate(ev["policy"])
    from harness.overfit import project_probes

    probes = project_probes(project.suite_dirs, policy.seed)
    from harness.project import CostEntry

    costs = {**project.costs, **{m: CostEntry.model_validate(p) for m, p in (ev.get("prices") or {}).items()}}
    with store.read() as con:
        again = evaluate_gate(con, candidate=row["candidate"], reference=row["reference"], policy=policy,
                              suite_kinds=kinds, base=_base_of(project, None),
                              training_data=project.training_data.get(row["candidate"]), pinned_runs=pinned,
                              probes=probes, costs=costs, as_of=row["created_at"])
    same = json.dumps(again.as_dict()["rules"], sort_keys=True) == json.dumps(ev["rules"], sort_keys=True)
    print(f"decision {row['decision_id'][:12]}: stored verdict {row['verdict']}, recomputed {again.verdict}; "
          f"evidence {'identical' if same else 'DIFFERENT'}.")
    return EXIT_OK if same and again.verdict == row["verdict"] else EXIT_GATE_FAILED


def add_parsers(sub: Any) -> None:
    s = sub.add_parser("compare", help="paired comparison of two models on the suites both ran; with --cost, "
                                       "accuracy against cost of two or more")
    s.add_argument("models", nargs="+", metavar="MODEL",
                   help="the candidate, then the reference (with --cost: two or more models)")
    s.add_argument("--cost", action="store_true",
                   help="accuracy (default: pass on the held-out suites) against cost per 1,000 requests, size and "
                        "speed; marks the frontier")
    s.add_argument("--suite", action="append", help="only this suite (repeatable)")
    s.add_argument("--metric", action="append", help="only this metric (repeatable; default: every check; "
                                                     "with --cost one metric, default pass)")
    s.add_argument("--stage", help="only runs of this stage (pre-finetune, post-finetune, shadow, beta)")
    s.add_argument("--reference-stage", help="the reference's stage when it differs (e.g. pre-finetune)")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_compare)

    s = sub.add_parser("gate", help="apply the gate policy: exit 0 pass, 1 fail, 3 inconclusive, 2 bad input")
    s.add_argument("candidate")
    s.add_argument("--against", metavar="MODEL", help="the reference model (usually production)")
    s.add_argument("--base", metavar="MODEL", help="base model for the forgetting flag (default: role base)")
    s.add_argument("--actor", help="who asks (default: the OS user); stored with the decision")
    s.add_argument("--json", action="store_true", help="the decision as JSON on stdout")
    s.set_defaults(func=cmd_gate)

    s = sub.add_parser("overfit", help="overfitting flags with their evidence")
    s.add_argument("model")
    s.add_argument("--base", metavar="MODEL", help="base model for the forgetting flag (default: role base)")
    s.add_argument("--memorisation", action="store_true",
                   help="run the model on counterfactual copies of its train_sample examples first (stored)")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_overfit)

    s = sub.add_parser("power", help="how many examples a suite needs to decide a margin")
    s.add_argument("--baseline-rate", type=float, required=True, help="the reference's pass rate, e.g. 0.9")
    s.add_argument("--margin", type=float, required=True, help="the non-inferiority margin, e.g. 0.02")
    s.add_argument("--discordance", type=float, help="share of examples where the models disagree")
    s.add_argument("--alpha", type=float, default=0.05)
    s.add_argument("--power", type=float, default=0.8)
    s.add_argument("--n", type=int, help="also: the smallest difference this many examples can detect")
    s.set_defaults(func=cmd_power)

    s = sub.add_parser("decisions", help="the recorded gate decisions (an audit trail)")
    s.add_argument("--candidate")
    s.add_argument("--id", help="a decision id or its prefix")
    s.add_argument("--verify", action="store_true", help="recompute the decision from its evidence")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_decisions)

