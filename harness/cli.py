"""The ``tollgate`` command: parses arguments, calls library functions, prints what they return.

Heavy modules (torch, transformers, pandas, scipy) are imported inside the commands that need
them, so ``tollgate --help`` stays instant. Every user error becomes exit code 2 here, in one place.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path
from typing import Any

from harness.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_OK, StoreBusyError, TollgateInputError


def _project(args: argparse.Namespace) -> Any:
    from harness.project import find_project, load_project

    return load_project(find_project(explicit=args.project))


def _load_suites(project: Any, names: list[str] | None, *, with_sources: bool = False) -> list[Any]:
    """The named suites (default all), validated; ``with_sources`` adds the suites that behavioural
    examples compare with, ahead of them, and checks every such reference."""
    from harness.suites import link_sources, load_suite, suite_headers

    headers = suite_headers(project.suite_dirs)
    if names:
        unknown = [n for n in names if n not in headers]
        if unknown:
            raise TollgateInputError(f"unknown suite '{unknown[0]}'; the project has: "
                                     f"{', '.join(sorted(headers)) or 'none'}.", field="--suite")
        chosen = [headers[n] for n in dict.fromkeys(names)]
    else:
        chosen = list(headers.values())
    if not chosen:
        raise TollgateInputError("the project has no suites.", file=project.path, field="suites")
    suites = [load_suite(d) for d in chosen]
    linked = link_sources(suites, headers)
    return linked if with_sources else suites


# -- commands ----------------------------------------------------------------------------------
def cmd_init(args: argparse.Namespace) -> int:
    from harness.scaffold import init_project

    target = Path(args.dir)
    files = init_project(target, force=args.force)
    print(f"Created a Tollgate project in {target}/:")
    for f in files:
        print(f"  {f.relative_to(target)}")
    print(f"\nNext:  cd {target} && tollgate validate && tollgate run --model rules")
    return EXIT_OK


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.project import check_model_paths

    project = _project(args)
    check_model_paths(project)
    suites = _load_suites(project, None)
    n = sum(len(s.examples) for s in suites)
    print(f"ok: {project.path} — {len(project.models)} model(s), {len(suites)} suite(s), {n} example(s)")
    for s in suites:
        print(f"  {s.name:<24} {s.kind:<12} {s.task:<9} {len(s.examples):>6} examples  {s.content_hash[:12]}")
    return EXIT_OK


def cmd_run(args: argparse.Namespace) -> int:
    from harness.executors import executor_from_args
    from harness.project import check_model_paths
    from harness.report import stored_results
    from harness.runner import run_suites
    from harness.store import Store

    project = _project(args)
    project.model(args.model)
    check_model_paths(project, only=args.model)
    suites = _load_suites(project, args.suite, with_sources=True)
    if args.repeats is not None:
        from harness.repeats import check_repeats

        check_repeats(args.repeats)
    executor = executor_from_args(args)
    store = Store(project.store_path)
    try:
        outcomes = run_suites(project, args.model, suites, store, stage=args.stage, executor=executor,
                              show_progress=not args.no_progress, commit_every=args.commit_every,
                              repeats=args.repeats, temperature=args.temperature,
                              named_suites=getattr(args, "named_suites", True) and bool(args.suite))
    finally:
        executor.close()
    rows = [r for r in stored_results(store, model=args.model, suites=[o.suite for o in outcomes])
            if r.run_id in {o.run_id for o in outcomes}]
    _emit(rows, args.format, title=f"{args.model}: this run")
    return EXIT_OK


def cmd_results(args: argparse.Namespace) -> int:
    from harness.report import stored_results
    from harness.store import Store

    project = _project(args)
    if args.model:
        project.model(args.model)
    rows = stored_results(Store(project.store_path), model=args.model, suites=args.suite, stage=args.stage)
    if not rows:
        print("No completed runs match.", file=sys.stderr)
    _emit(rows, args.format, title="stored results (newest completed run per model and suite)")
    return EXIT_OK


def cmd_baseline(args: argparse.Namespace) -> int:
    """``run`` over suites chosen by kind: the pre-fine-tune "before" every later number needs."""
    from harness.suites import read_suite_header

    project = _project(args)
    project.model(args.model)
    kinds = {"general": ("general", "baseline"), "all": None}[args.tasks]
    names = []
    for d in project.suite_dirs:
        entry, _ = read_suite_header(d)
        if kinds is None or entry.kind in kinds:
            names.append(entry.name or d.name)
    if not names:
        raise TollgateInputError("the project has no general or baseline suite.", file=project.path, field="suites")
    args.suite = names
    args.named_suites = False  # chosen by kind: a deterministic suite among them runs once, not refused
    return cmd_run(args)


def cmd_export(args: argparse.Namespace) -> int:
    from harness.lmeval_export import export_suite

    project = _project(args)
    suite = _load_suites(project, [args.suite])[0]
    folder = export_suite(suite, Path(args.dir))
    print(f"wrote lm-eval task '{folder.name}' to {folder}/ — run it with: "
          f"lm_eval --model hf --model_args pretrained=PATH --include_path {args.dir} --tasks {folder.name}")
    return EXIT_OK


# -- output -------------------------------------------------------------------------------------
def _emit(rows: list[Any], fmt: str, title: str) -> None:
    if fmt == "json":
        json.dump([r.as_dict() for r in rows], sys.stdout, indent=2)
        print()
    elif fmt == "csv":
        dicts = [r.as_dict() for r in rows]
        if dicts:
            w = csv.DictWriter(sys.stdout, fieldnames=list(dicts[0]))
            w.writeheader()
            w.writerows(dicts)
    elif rows:
        _table(rows, title)


def _fmt(x: float | None, digits: int = 3) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def _table(rows: list[Any], title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for col, just in (("model", "left"), ("suite", "left"), ("kind", "left"), ("metric", "left"),
                      ("value", "right"), ("95% CI", "right"), ("n", "right"), ("errors", "right"),
                      ("cached", "right"), ("time", "right")):
        t.add_column(col, justify=just, no_wrap=col in ("suite", "metric", "95% CI"))  # type: ignore[arg-type]
    last = None
    for r in rows:
        e = r.estimate
        first = (r.model, r.suite) != last
        last = (r.model, r.suite)
        if first and t.row_count:
            t.add_section()
        t.add_row(r.model if first else "", r.suite if first else "", r.kind if first else "",
                  ("  " if "." in r.metric else "") + r.metric, _fmt(e.value),
                  f"[{_fmt(e.low)}, {_fmt(e.high)}]", str(e.n),
                  str(r.n_errors) if first else "", str(r.n_cached) if first else "",
                  f"{r.duration_s:.1f}s" if first and r.duration_s is not None else "")
    Console(width=max(120, Console().width)).print(t)


# -- parser -------------------------------------------------------------------------------------
def _add_sampling_arguments(s: argparse.ArgumentParser) -> None:
    """``--repeats`` and ``--temperature``: answer each example k times, with a sampling temperature."""
    s.add_argument("--repeats", type=int, metavar="K",
                   help="answer each example K times, each with its own seed (default: the suite's or the model's "
                        "'repeats:', else 1); metrics become per-example means, plus pass@K, pass^K and flaky")
    s.add_argument("--temperature", type=float, metavar="T",
                   help="sampling temperature for this run, instead of the model's (part of the cache key)")


def build_parser() -> argparse.ArgumentParser:
    from harness.executors import add_executor_arguments

    p = argparse.ArgumentParser(
        prog="tollgate",
        description="Evaluate fine-tuned LLMs, store every result, and gate their promotion.",
        epilog="Exit codes: 0 ok / gate passed, 1 gate failed, 2 bad input, 3 inconclusive.",
    )
    p.add_argument("--project", metavar="PATH", help="tollgate.yaml (default: found in . or a parent)")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    s = sub.add_parser("init", help="create a project: tollgate.yaml, an example suite and model")
    s.add_argument("dir", nargs="?", default=".", help="folder to create it in (default: here)")
    s.add_argument("--force", action="store_true", help="overwrite an existing tollgate.yaml")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("validate", help="check tollgate.yaml, every suite and data file (exit 0 or 2)")
    s.set_defaults(func=cmd_validate)

    s = sub.add_parser("run", help="evaluate a model on suites; cached results are reused")
    s.add_argument("--model", required=True, help="a model name from tollgate.yaml")
    s.add_argument("--suite", action="append", help="a suite name (repeatable; default: all)")
    s.add_argument("--stage", help="stage label stored with the run (default: pre-finetune for the base "
                                   "model, post-finetune otherwise)")
    s.add_argument("--format", choices=("table", "json", "csv"), default="table")
    s.add_argument("--no-progress", action="store_true", help="no progress bar")
    s.add_argument("--commit-every", type=int, default=32, metavar="N",
                   help="examples per committed batch (default 32)")
    _add_sampling_arguments(s)
    add_executor_arguments(s)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("results", help="stored results per suite with 95%% confidence intervals")
    s.add_argument("--model", help="only this model")
    s.add_argument("--suite", action="append", help="only this suite (repeatable)")
    s.add_argument("--stage", help="only runs of this stage")
    s.add_argument("--format", choices=("table", "json", "csv"), default="table")
    s.set_defaults(func=cmd_results)

    s = sub.add_parser("baseline", help="run the general/baseline suites (or all) on a model, e.g. before "
                                         "fine-tuning")
    s.add_argument("--model", required=True)
    s.add_argument("--tasks", choices=("all", "general"), default="all",
                   help="all suites (default) or only general and baseline ones")
    s.add_argument("--stage", help="default: pre-finetune for the base model, post-finetune otherwise")
    s.add_argument("--format", choices=("table", "json", "csv"), default="table")
    s.add_argument("--no-progress", action="store_true")
    s.add_argument("--commit-every", type=int, default=32, metavar="N")
    _add_sampling_arguments(s)
    add_executor_arguments(s)
    s.set_defaults(func=cmd_baseline)

    s = sub.add_parser("export-lm-eval", help="write a choice or generate suite as an lm-eval task folder")
    s.add_argument("suite")
    s.add_argument("dir")
    s.set_defaults(func=cmd_export)

    from harness import cli_gate, cli_qa, cli_sweep

    cli_gate.add_parsers(sub)
    cli_qa.add_parsers(sub)
    cli_sweep.add_parsers(sub)
    for add_parser in _plugin_commands():
        add_parser(sub)
    return p


def _plugin_commands() -> list[Any]:
    """Commands contributed by the packages above the core (the demo, rollout, the dashboard).

    They register under the ``tollgate.commands`` entry point group, so ``harness`` never imports
    them; each entry is a cheap ``add_parser(subparsers)`` whose command imports its work lazily.
    """
    from importlib.metadata import entry_points

    return [ep.load() for ep in sorted(entry_points(group="tollgate.commands"), key=lambda e: e.name)]


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TollgateInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except StoreBusyError as exc:
        print(f"error: {exc}. Is another tollgate command writing? Try again when it ends.", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("\ninterrupted: every finished batch is stored; run the same command again to resume.",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:  # a full disk or a read-only store is the user's to fix: no traceback
        from harness.store import STORAGE_HINT, storage_problem

        problem = storage_problem(exc)
        if problem is None:
            raise
        print(f"error: cannot write: {problem}. {STORAGE_HINT}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
