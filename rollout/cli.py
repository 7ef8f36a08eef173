"""The rollout commands (registered through the ``tollgate.commands`` entry point): traffic and
feedback ingestion, shadow replay and report, beta report, the stage machine, the router, monitoring.

Exit codes follow the house rule: 0 ok / gate passed, 1 gate failed, 2 bad input, 3 inconclusive.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import EXIT_OK

VERDICT_EXIT = {"pass": 0, "fail": 1, "inconclusive": 3}


def _ctx(args: argparse.Namespace) -> tuple[Any, Any]:
    from harness.project import find_project, load_project
    from harness.traffic_parquet import project_store

    project = load_project(find_project(explicit=args.project))
    return project, project_store(project)


def _actor(args: argparse.Namespace) -> str:
    return getattr(args, "actor", None) or getpass.getuser()


def _release_manager(project: Any, args: argparse.Namespace) -> str:
    """The actor of a stage change: --actor or the OS user, who must be a release manager when the
    project names any (``dashboard.release_managers`` or ``TOLLGATE_RELEASE_MANAGERS``)."""
    from harness.errors import TollgateInputError
    from harness.policy import release_managers

    actor = _actor(args)
    allowed = set(release_managers(project.dashboard))
    if allowed and actor not in allowed:
        raise TollgateInputError(f"'{actor}' is not a release manager of this project (they are: "
                                 f"{', '.join(sorted(allowed))}); stage changes are theirs to make.", field="--actor")
    return actor


def _console() -> Any:
    from rich.console import Console

    return Console(width=max(100, min(160, __import__("shutil").get_terminal_size((120, 24)).columns)))


def _ci(e: Any) -> str:
    return "—" if e is None else f"{e.value:.3f} [{e.low:.3f}, {e.high:.3f}] (n={e.n})"


# -- ingest ---------------------------------------------------------------------------------------------
def cmd_ingest(args: argparse.Namespace) -> int:
    from rollout.ingest import ingest

    project, store = _ctx(args)
    rep = ingest(Path(args.file), store, kind=args.kind, models=set(project.models), skip_invalid=args.skip_invalid,
                 rejected_path=Path(args.rejected) if args.rejected else None)
    print(f"{rep.file}: {rep.rows:,} rows, {rep.stored:,} stored, {rep.duplicates:,} already stored"
          + (f", {rep.rejected:,} rejected (written to {rep.rejected_file})" if rep.rejected else ""))
    return EXIT_OK


# -- shadow -----------------------------------------------------------------------------------------------
def cmd_shadow_replay(args: argparse.Namespace) -> int:
    from harness.executors import executor_from_args
    from rollout.shadow import replay

    project, store = _ctx(args)
    executor = executor_from_args(args)
    try:
        out = replay(project, store, args.model, limit=args.limit, show_progress=not args.no_progress,
                     executor=executor)
    finally:
        executor.close()
    print(f"shadow replay {out.model}: {out.answered:,} of {out.requests:,} logged production requests answered "
          f"({out.errors} errors) in {out.duration_s:.1f} s; {out.already:,} were answered before.")
    return EXIT_OK


def cmd_shadow_report(args: argparse.Namespace) -> int:
    from rollout.promote import record_decision
    from rollout.shadow import rollout_suite, shadow_report

    project, store = _ctx(args)
    project.model(args.model)
    with store.read() as con:
        rep = shadow_report(con, args.model, project.rollout.shadow, rollout_suite(project))
    did = record_decision(store, candidate=args.model, reference=rep.production, kind="shadow",
                          policy=project.rollout.shadow, verdict=rep.verdict, evidence=rep.as_dict(),
                          actor=_actor(args))
    if args.json:
        print(json.dumps({"decision_id": did, **rep.as_dict()}, indent=2))
        return VERDICT_EXIT[rep.verdict]
    from rich.table import Table

    t = Table(title=f"Shadow: {args.model} on {rep.pairs:,} requests production ({rep.production}) answered",
              title_justify="left")
    t.add_column("measure")
    t.add_column("value [95% CI]", justify="right")
    t.add_row("same answer as production", _ci(rep.agreement))
    for k, e in rep.field_agreement.items():
        t.add_row(f"  same {k}", _ci(e))
    t.add_row("candidate errors", _ci(rep.candidate_errors))
    t.add_row("production errors", _ci(rep.production_errors))
    if rep.latency:
        lat = rep.latency
        t.add_row("latency: median candidate / production",
                  f"{lat.get('median_candidate', float('nan')):.1f} / {lat.get('median_production', float('nan')):.1f}"
                  f" ms (x{lat.get('median_ratio', float('nan')):.2f}, Wilcoxon p={lat.get('p_value', 1):.2g})")
    if rep.corrections:
        c = rep.corrections
        t.add_row(f"right vs users' corrections (n={c['n']})",
                  f"{c['candidate']:.3f} vs {c['reference']:.3f}, diff {c['difference']:+.3f} "
                  f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}], McNemar p={c['p_value']:.2g}")
    con = _console()
    con.print(t)
    for r in rep.reasons:
        con.print(f"  · {r}")
    con.print(f"Shadow verdict: [bold]{rep.verdict.upper()}[/]   (decision {did[:12]})")
    return VERDICT_EXIT[rep.verdict]


# -- beta ---------------------------------------------------------------------------------------------------
def cmd_beta_report(args: argparse.Namespace) -> int:
    from rollout.beta import beta_report, print_beta
    from rollout.promote import record_decision

    project, store = _ctx(args)
    project.model(args.model)
    with store.read() as con:
        rep = beta_report(con, args.model, project.rollout.beta)
    did = record_decision(store, candidate=args.model, reference=rep.production, kind="beta",
                          policy=project.rollout.beta, verdict=rep.verdict, evidence=rep.as_dict(),
                          actor=_actor(args))
    if args.json:
        print(json.dumps({"decision_id": did, **rep.as_dict()}, indent=2, default=str))
    else:
        print_beta(rep, did, _console())
    return VERDICT_EXIT[rep.verdict]


# -- the stage machine ----------------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    from rich.table import Table

    from rollout.promote import current
    from rollout.stages import gate_needed

    project, store = _ctx(args)
    a = current(project, store)
    if args.json:
        print(json.dumps({m: a.stage_of(m).label() for m in project.models}, indent=2))
        return EXIT_OK
    t = Table(title="Rollout: every model's stage", title_justify="left")
    for col in ("model", "stage", "next step", "what the next step needs"):
        t.add_column(col)
    needs = {"offline": "the offline gate (tollgate gate MODEL --against production) to pass",
             "shadow": "the shadow gate (tollgate shadow report MODEL) to pass",
             "beta": "the beta gate (tollgate beta report MODEL) to pass"}
    from rollout.stages import next_stage

    for m in project.models:
        s = a.stage_of(m)
        if s.name == "production":
            t.add_row(m, "[bold]production[/]", "—", "serves every user not in beta")
            continue
        nxt = next_stage(s, project.rollout.beta_steps)
        t.add_row(m, s.label(), nxt.label(), needs[gate_needed(s)])
    _console().print(t)
    return EXIT_OK


def _print_move(move: Any) -> None:
    forced = " (FORCED past the gate)" if move.forced else ""
    print(f"{move.model}: {move.frm.label()} -> {move.to.label()}{forced}; event {move.event_id[:12]}"
          + (f", decision {move.decision_id[:12]} ({move.verdict})" if move.decision_id else ""))


def cmd_advance(args: argparse.Namespace) -> int:
    from rollout.promote import MoveRefusedError, advance

    project, store = _ctx(args)
    try:
        move = advance(project, store, args.model, actor=_release_manager(project, args), reason=args.reason,
                       force=args.force)
    except MoveRefusedError as exc:
        print(f"refused: the gate of this stage says {exc.verdict.upper()} (decision "
              f"{(exc.decision_id or '')[:12]}; 'tollgate decisions --id ID' shows all of it):", file=sys.stderr)
        for line in evidence_lines(exc.evidence):
            print(f"  · {line}", file=sys.stderr)
        print("Fix the cause, or pass --force with a --reason (the event records that it was forced).",
              file=sys.stderr)
        return VERDICT_EXIT.get(exc.verdict, 1)
    _print_move(move)
    return EXIT_OK


def evidence_lines(evidence: Any) -> list[str]:
    """The sentences that explain a verdict: the failing or undecided rules, or the report's reasons."""
    ev = evidence if isinstance(evidence, dict) else {}
    if ev.get("rules"):
        return [f"{r.get('name') or r.get('rule')}: {r['verdict']} — {r.get('reason', '')}" for r in ev["rules"]
                if r.get("verdict") != "pass"]
    if ev.get("reasons"):
        return list(ev["reasons"])
    if ev.get("reason"):
        return [ev["reason"]]
    return [json.dumps(ev, default=str)[:2000]]


def cmd_rollback(args: argparse.Namespace) -> int:
    from rollout.promote import rollback

    project, store = _ctx(args)
    move = rollback(project, store, actor=_release_manager(project, args), reason=args.reason, model=args.model)
    _print_move(move)
    if move.to.name == "rolled_back":
        from rollout.promote import current

        print(f"production is served by '{current(project, store).production}' again, from the next request on.")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from rich.table import Table

    from rollout.stages import events

    _, store = _ctx(args)
    with store.read() as con:
        rows = events(con, args.model)
    if args.json:
        print(json.dumps(rows, indent=2, default=str))
        return EXIT_OK
    t = Table(title="Rollout audit trail (append-only)", title_justify="left")
    for col in ("time (UTC)", "model", "from", "to", "actor", "reason", "decision", "forced"):
        t.add_column(col, overflow="fold")
    for e in rows:
        to = f"beta {e['share']:.0%}" if e["to_stage"] == "beta" and e["share"] else e["to_stage"]
        t.add_row(str(e["ts"])[:19], e["model"], e["from_stage"], to, e["actor"], e["reason"],
                  (e["decision_id"] or "")[:12], "yes" if e["forced"] else "")
    _console().print(t)
    return EXIT_OK


def cmd_serve(args: argparse.Namespace) -> int:
    import os

    from harness.errors import TollgateInputError
    from rollout.router import serve

    project, _ = _ctx(args)
    key = None
    if args.api_key_env:
        key = os.environ.get(args.api_key_env)
        if not key:
            raise TollgateInputError(f"environment variable {args.api_key_env} is empty or unset.",
                                     field="--api-key-env")
    serve(project, host=args.host, port=args.port, queue_size=args.queue, api_key=key)
    return EXIT_OK


def cmd_monitor(args: argparse.Namespace) -> int:
    from rollout.monitor import monitor, print_monitor

    project, store = _ctx(args)
    with store.read() as con:
        rep = monitor(con, project, model=args.model, period=args.period)
    if args.json:
        print(json.dumps(rep.as_dict(), indent=2, default=str))
    else:
        print_monitor(rep, _console())
    return 1 if rep.retrain_recommended else EXIT_OK


# -- parsers --------------------------------------------------------------------------------------------------
def add_parser(sub: Any) -> None:
    for kind, what in (("traffic", "production requests and responses"), ("feedback", "users' feedback")):
        s = sub.add_parser(kind, help=f"{what}: ingest a JSONL, CSV or Parquet file")
        ss = s.add_subparsers(dest=f"{kind}_cmd", required=True)
        p = ss.add_parser("ingest", help=f"validate and store {what} (idempotent)")
        p.add_argument("file")
        p.add_argument("--skip-invalid", action="store_true", help="store the valid rows, write the rejected ones")
        p.add_argument("--rejected", help="where to write rejected rows (default: FILE.rejected.jsonl)")
        p.set_defaults(func=cmd_ingest, kind=kind)

    s = sub.add_parser("shadow", help="shadow traffic: replay production requests on a candidate, compare the pairs")
    ss = s.add_subparsers(dest="shadow_cmd", required=True)
    p = ss.add_parser("replay", help="run MODEL on logged production requests it has not answered")
    p.add_argument("model")
    p.add_argument("--limit", type=int)
    p.add_argument("--no-progress", action="store_true")
    from harness.executors import add_executor_arguments

    add_executor_arguments(p)
    p.set_defaults(func=cmd_shadow_replay)
    p = ss.add_parser("report", help="paired comparison with production and the shadow gate's verdict")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_shadow_report)

    s = sub.add_parser("beta", help="beta traffic: users' feedback on the candidate vs production")
    ss = s.add_subparsers(dest="beta_cmd", required=True)
    p = ss.add_parser("report", help="feedback of beta users vs production users, anytime-valid intervals")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    p.add_argument("--actor")
    p.set_defaults(func=cmd_beta_report)

    s = sub.add_parser("rollout", help="stages: status, advance, rollback, history")
    ss = s.add_subparsers(dest="rollout_cmd", required=True)
    p = ss.add_parser("status", help="every model's stage and what its next step needs")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_status)
    p = ss.add_parser("advance", help="candidate -> shadow -> beta steps -> production, if the gate passes")
    p.add_argument("model")
    p.add_argument("--actor", help="who (default: your user name)")
    p.add_argument("--reason", required=True)
    p.add_argument("--force", action="store_true", help="move even if the gate does not pass (audited)")
    p.set_defaults(func=cmd_advance)
    p = ss.add_parser("rollback", help="production back to the previous model at once (or MODEL out of shadow/beta)")
    p.add_argument("model", nargs="?")
    p.add_argument("--actor")
    p.add_argument("--reason", required=True)
    p.set_defaults(func=cmd_rollback)
    p = ss.add_parser("history", help="the audit trail of every stage change")
    p.add_argument("--model")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_history)

    p = sub.add_parser("serve", help="the live router: OpenAI-compatible, production + shadow + sticky beta")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8080)
    p.add_argument("--queue", type=int, default=10_000, help="log queue size (shadow copies dropped when full)")
    p.add_argument("--api-key-env", metavar="VAR", help="require 'Authorization: Bearer $VAR' on /v1/* and /feedback")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("monitor", help="production quality over time, input drift, retrain recommendation")
    p.add_argument("--model", help="default: the model in production")
    p.add_argument("--period", choices=("day", "week"), default="day")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_monitor)
