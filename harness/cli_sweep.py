"""``tollgate sweep``: the books of Optuna studies judged by Tollgate, and the selection of one trial.

A study is run from Python (``harness.sweep.TollgateObjective``); these commands read what it
recorded. ``select`` is the one step that touches the held-out suites: it registers the chosen
checkpoint as a model and evaluates it, alone, on them, and puts its validation score (the best of
many, hence optimistic) beside its held-out score.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any

from harness.errors import EXIT_OK, TollgateInputError


def _books(args: argparse.Namespace) -> tuple[Any, Any]:
    from harness.cli import _project
    from harness.store import Store

    project = _project(args)
    return project, Store(project.store_path, traffic_parquet=None)


def cmd_sweep_list(args: argparse.Namespace) -> int:
    from harness import sweep_books as books

    _, store = _books(args)
    with store.read() as con:
        rows = books.studies(con)
    if args.format == "json":
        json.dump(rows, sys.stdout, indent=2, default=str)
        print()
        return EXIT_OK
    if not rows:
        print("no study recorded yet: run an Optuna study with harness.sweep.TollgateObjective (docs/sweeps.md).")
        return EXIT_OK
    from rich.table import Table

    t = Table(title="Studies judged by Tollgate", title_justify="left")
    for col in ("study", "suite", "metric", "trials", "complete", "pruned", "failed", "best"):
        t.add_column(col, justify="left" if col in ("study", "suite", "metric") else "right")
    for r in rows:
        t.add_row(r["study"], r["suite"], f"{r['metric']} ({r['direction'][:3]})", str(r["trials"]),
                  str(r["complete"]), str(r["pruned"]), str(r["failed"]), _num(r["best"]))
    _console().print(t)
    return EXIT_OK


def study_report(store: Any, project: Any, name: str) -> dict[str, Any]:
    """A study with its trials, the best one, and (once selected) the held-out score beside it."""
    from harness import store as st
    from harness import sweep_books as books
    from harness.report import summarize

    with store.read() as con:
        info = books.study(con, name)
        trials = books.trials(con, name)
        best = books.best_trial(trials, info["direction"])
        selected = [{"model": m, **origin} for m in project.registered
                    if (origin := _selected_from(project, m)).get("study") == name]
        for sel in selected:
            runs = [r for r in st.latest_runs(con, model=sel["model"]) if r["suite_kind"] == "heldout"]
            sel["heldout"] = [{"suite": r.suite, "value": r.estimate.value, "low": r.estimate.low,
                               "high": r.estimate.high, "n": r.estimate.n}
                              for r in summarize(con, runs) if r.metric == info["metric"]]
    return {"study": info, "trials": trials, "best": best["trial"] if best else None, "selected": selected}


def cmd_sweep_report(args: argparse.Namespace) -> int:
    project, store = _books(args)
    rep = study_report(store, project, args.study)
    if args.format == "json":
        json.dump(rep, sys.stdout, indent=2, default=str)
        print()
        return EXIT_OK
    from rich.table import Table

    info, trials = rep["study"], rep["trials"]
    t = Table(title=f"Study {info['study']}: {info['metric']} on '{info['suite']}' ({info['direction']}), "
                    f"95% CIs", title_justify="left")
    for col in ("trial", "state", "params", info["metric"], "n", "slices (n: value)", "time"):
        t.add_column(col, justify="right" if col in ("trial", "n", "time") else "left")
    for r in trials:
        value = "" if r["value"] is None else _num(r["value"])
        if r["state"] == "COMPLETE" and r["low"] is not None:
            value += f" [{_num(r['low'])}, {_num(r['high'])}]"
        state = r["state"].lower() + (" *best" if r["trial"] == rep["best"] else "")
        if r["state"] == "FAIL" and r["error"]:
            state += f": {r['error'][:60]}"
        steps = ", ".join(f"{s['n']}: {_num(s['value'])}" for s in r["intermediate"])
        t.add_row(str(r["trial"]), state, _params(r["params"]), value, "" if r["n"] is None else str(r["n"]),
                  steps, "" if r["duration_s"] is None else f"{r['duration_s']:.0f} s")
    _console().print(t)
    n_done = sum(r["state"] == "COMPLETE" for r in trials)
    if rep["best"] is not None and n_done > 1:
        print(f"The best of {_tried(trials)}: its {info['metric']} on '{info['suite']}' is optimistic (chosen for "
              f"being highest); its held-out score after `tollgate sweep select` is the honest one.")
    for sel in rep["selected"]:
        held = "; ".join(f"{h['suite']} {_num(h['value'])} [{_num(h['low'])}, {_num(h['high'])}] (n={h['n']})"
                         for h in sel["heldout"]) or "not run yet"
        print(f"selected: trial {sel.get('trial')} as model '{sel['model']}'; held-out {info['metric']}: {held}")
    return EXIT_OK


def cmd_sweep_select(args: argparse.Namespace) -> int:
    import yaml

    from harness import sweep_books as books
    from harness.project import REGISTERED_DIR, load_project

    project, store = _books(args)
    with store.read() as con:
        info = books.study(con, args.study)
        trials = books.trials(con, args.study)
    if args.trial is None:
        chosen = books.best_trial(trials, info["direction"])
        if chosen is None:
            raise TollgateInputError(f"study '{args.study}' has no completed trial to select.", field="STUDY")
    else:
        chosen = next((t for t in trials if t["trial"] == args.trial), None)
        if chosen is None or chosen["state"] != "COMPLETE":
            raise TollgateInputError(f"study '{args.study}' has no completed trial {args.trial}; completed: "
                                     f"{[t['trial'] for t in trials if t['state'] == 'COMPLETE']}.", field="--trial")
    name = args.name
    if name in project.models and project.registered.get(name) is None:
        raise TollgateInputError(f"model '{name}' is defined in {project.path.name}; choose another name.",
                                 field="--as")
    template = project.model(info["template_model"])
    entry = _model_entry(project, info["template_model"], chosen["checkpoint"])
    n_done = sum(t["state"] == "COMPLETE" for t in trials)
    doc = {"selected_from": {"study": args.study, "trial": chosen["trial"], "params": chosen["params"],
                             "validation": {"suite": info["suite"], "metric": info["metric"], "value": chosen["value"],
                                            "low": chosen["low"], "high": chosen["high"], "n": chosen["n"]},
                             "completed_trials": n_done,
                             "pruned_trials": sum(t["state"] == "PRUNED" for t in trials),
                             "selected_at": datetime.now(UTC).isoformat(timespec="seconds")},
           "model": entry}
    path = project.root / REGISTERED_DIR / f"{_file_name(name)}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    previous = path.read_bytes() if path.exists() else None
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(f"# Registered by 'tollgate sweep select {args.study} --as {name}': trial {chosen['trial']} "
                   f"of {n_done} completed.\n" + yaml.safe_dump(doc, sort_keys=False), encoding="utf-8")
    tmp.replace(path)
    try:  # the project must still load with it: a registration that breaks it is taken back
        project = load_project(project.path)
    except BaseException:
        path.write_bytes(previous) if previous is not None else path.unlink()
        raise
    print(f"registered trial {chosen['trial']} of '{args.study}' as model '{name}' ({template.adapter}, "
          f"{chosen['checkpoint']}) in {path.relative_to(project.root)}", file=sys.stderr)
    if args.no_run:
        return EXIT_OK
    from harness.cli import _load_suites
    from harness.runner import run_suites
    from harness.suites import suite_headers

    heldout = [s for s in _load_suites(project, list(suite_headers(project.suite_dirs)), with_sources=True)
               if s.kind == "heldout"]
    if not heldout:
        print("the project has no held-out suite to run the selected model on.", file=sys.stderr)
        return EXIT_OK
    run_suites(project, name, heldout, store, show_progress=not args.no_progress)
    rep = study_report(store, project, args.study)
    sel = next(s for s in rep["selected"] if s["model"] == name)
    print(f"{info['metric']} of trial {chosen['trial']} on validation '{info['suite']}': {_num(chosen['value'])} "
          f"[{_num(chosen['low'])}, {_num(chosen['high'])}], the best of {_tried(trials)}, so optimistic "
          f"(the winner's curse)")
    for h in sel["heldout"]:
        print(f"{info['metric']} on held-out '{h['suite']}': {_num(h['value'])} [{_num(h['low'])}, {_num(h['high'])}]"
              f" (n={h['n']}): the estimate to trust")
    return EXIT_OK


def _model_entry(project: Any, template: str, checkpoint: str) -> dict[str, Any]:
    """The template model's project-file entry, with the trial's weights."""
    from harness.yamlfile import load_yaml

    if template in project.registered:
        raw = dict(load_yaml(project.registered[template]).data["model"])
    else:
        raw = dict(project.doc.data["models"][template])
    raw.update(path=checkpoint, role="candidate")
    raw.pop("version", None)
    raw.pop("training_data", None)
    return raw


def _selected_from(project: Any, model: str) -> dict[str, Any]:
    from harness.yamlfile import load_yaml

    return dict(load_yaml(project.registered[model]).data.get("selected_from") or {})


def _file_name(name: str) -> str:
    if not name or name.startswith(".") or any(c in name for c in "/\\:\0") or not name.isprintable():
        raise TollgateInputError(f"'{name}' cannot be a model's file name: use letters, digits, '-', '_' or '.'.",
                                 field="--as")
    return name


def _tried(trials: list[dict[str, Any]]) -> str:
    """How many trials the winner was chosen from: pruned ones were compared too, on their slices."""
    done = sum(t["state"] == "COMPLETE" for t in trials)
    pruned = sum(t["state"] == "PRUNED" for t in trials)
    return f"{done} completed trials" + (f" ({done + pruned} judged, {pruned} pruned)" if pruned else "")


def _params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_num(v) if isinstance(v, float) else v}" for k, v in params.items())


def _num(x: Any) -> str:
    if x is None:
        return ""
    return f"{x:.3g}" if abs(x) < 0.001 and x != 0 else f"{x:.3f}"


def _console() -> Any:
    from rich.console import Console

    return Console(width=max(120, Console().width))


def add_parsers(sub: Any) -> None:
    sweep = sub.add_parser("sweep", help="Optuna studies judged by Tollgate: report, select a trial (docs/sweeps.md)")
    ssub = sweep.add_subparsers(dest="sweep_command", required=True, metavar="COMMAND")
    s = ssub.add_parser("list", help="every recorded study with its trial counts and best value")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_sweep_list)
    s = ssub.add_parser("report", help="every trial: params, validation metric with CI, pruned or not, time")
    s.add_argument("study", metavar="STUDY")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_sweep_report)
    s = ssub.add_parser("select", help="register a trial's checkpoint as a model and run it on the held-out suites")
    s.add_argument("study", metavar="STUDY")
    s.add_argument("--as", dest="name", required=True, metavar="NAME", help="the model name to register")
    s.add_argument("--trial", type=int, help="this trial instead of the best completed one")
    s.add_argument("--no-run", action="store_true", help="register only; do not run the held-out suites")
    s.add_argument("--no-progress", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_sweep_select)
