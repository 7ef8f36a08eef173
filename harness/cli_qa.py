"""The QA commands: ``failures`` (what fails, by slice, with diffs, and the flaky examples of repeated runs)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.errors import EXIT_OK


def cmd_failures(args: argparse.Namespace) -> int:
    from harness.cli_gate import _console, _context
    from harness.failures import failure_report, flaky_examples

    project, store, _ = _context(args)
    project.model(args.model)
    with store.read() as con:
        slices, failures = failure_report(con, args.model, args.suite, by=args.by, limit=args.limit)
        flaky = flaky_examples(con, args.model, args.suite, limit=args.limit)
    if args.format == "json":
        json.dump({"slices": [s.as_dict() for s in slices], "failures": [f.as_dict() for f in failures],
                   "flaky": [x.as_dict() for x in flaky]}, sys.stdout, indent=2, default=str)
        print()
        return EXIT_OK
    if not slices:
        print(f"No completed runs of {args.model} match.", file=sys.stderr)
        return EXIT_OK
    from rich.table import Table

    method = "Wilson" if all(s.estimate.method == "wilson" for s in slices) else "Wilson; bootstrap for repeated runs"
    t = Table(title=f"{args.model}: pass rate by {args.by}, worst first (95% CI: {method})", title_justify="left")
    for col in ("suite", args.by, "pass rate", "95% CI", "n"):
        t.add_column(col, justify="right" if col in ("pass rate", "95% CI", "n") else "left", no_wrap=True)
    for s in slices:
        e = s.estimate
        t.add_row(s.suite, s.key, f"{e.value:.3f}", f"[{e.low:.3f}, {e.high:.3f}]", str(e.n))
    con = _console()
    con.print(t)
    f = Table(title=f"Failing examples (first {args.limit}; errors first, then most fields wrong)",
              title_justify="left", show_lines=True)
    for col in ("suite", "example", "tags", "expected → got (and vs source: answer on the source → got)"):
        f.add_column(col, overflow="fold")
    for x in failures:
        if x.error:
            what = f"[red]error:[/] {x.error}"
        elif x.diff or x.vs_source:
            what = "\n".join([f"{k}: {exp!r} → {got!r}" for k, (exp, got) in x.diff.items()]
                             + [f"[yellow]vs {x.source}:[/] {k}: {was!r} → {got!r}"
                                for k, (was, got) in x.vs_source.items()])
        else:
            what = x.reason or f"{x.expected!r} → {x.output!r}"
        if x.pass_rate is not None:
            what += f"\n[yellow]{x.pass_rate:.0%} of repeats passed[/]"
        f.add_row(x.suite, x.example_id, ", ".join(x.tags), what)
    con.print(f)
    if flaky:
        _print_flaky(con, flaky, args.limit)
    return EXIT_OK


def _print_flaky(con: Any, flaky: list[Any], limit: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    t = Table(title=f"Flaky examples of repeated runs (first {limit}): answers that flip between pass and fail",
              title_justify="left", show_lines=True)
    for col in ("suite", "example", "pass rate", "answers (repeats that gave them)"):
        t.add_column(col, overflow="fold", justify="right" if col == "pass rate" else "left")
    for x in flaky:
        answers = "\n".join(f"{'[green]pass[/]' if a['passed'] else '[red]fail[/]'} ×{len(a['repeats'])} "
                            f"(repeats {', '.join(map(str, a['repeats']))}): {escape(repr(a['output']))}"
                            for a in x.answers)
        t.add_row(x.suite, x.example_id, f"{x.pass_rate:.2f} of {x.repeats}", answers)
    con.print(t)


def cmd_perturb(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.cli import _load_suites, _project
    from harness.generate import perturb_suite
    from harness.suites import link_sources, load_suite

    project = _project(args)
    suite = _load_suites(project, [args.suite])[0]
    names = [n.strip() for n in args.with_.split(",") if n.strip()]
    out = Path(args.out) if "/" in args.out else suite.path.parent / args.out
    n = perturb_suite(suite, names, out, seed=args.seed, force=args.force, sample=args.sample)
    written = load_suite(out)  # what was written validates like any suite
    link_sources([written], {suite.name: suite.path})
    print(f"wrote {n} examples to {out}/ from {len({e.source_id for e in written.examples})} sources of "
          f"'{suite.name}' x {len(names)} perturbations; run it: tollgate run --model MODEL --suite {out.name}")
    return EXIT_OK


def cmd_lint(args: argparse.Namespace) -> int:
    from pathlib import Path

    from harness.cli import _project
    from harness.errors import EXIT_GATE_FAILED
    from harness.lint import fix_duplicates, lint_file
    from harness.overlap import TrainingIndex
    from harness.suites import read_suite_header

    targets: list[tuple[Path, dict[str, Any]]] = [(Path(f), {}) for f in args.file or []]
    if not args.file or args.suite:
        project = _project(args)
        index = TrainingIndex()
        for td in {p for p in project.training_data.values() if p is not None and p.is_file()}:
            index.add_file(td)
        for d in project.suite_dirs:
            entry, _ = read_suite_header(d)
            if entry.lm_eval is not None or (args.suite and (entry.name or d.name) not in args.suite):
                continue
            fields = next((c["json_fields"].get("fields") for c in entry.checks or []
                           if isinstance(c, dict) and isinstance(c.get("json_fields"), dict)), None)
            leak = index if index and entry.kind != "train_sample" else None
            targets.append((d / entry.data, {"required": fields, "training": leak}))
    findings = []
    for path, kwargs in targets:
        found = lint_file(path, **kwargs)
        findings.extend(found)
        if args.fix:
            report = fix_duplicates(path, found)
            if report["removed"]:
                out = path.with_name(path.name + ".lint-fix.json")
                out.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
                print(f"{path}: removed {len(report['removed'])} exact duplicate line(s); report in {out}",
                      file=sys.stderr)
    if args.format == "json":
        json.dump([f.as_dict() for f in findings], sys.stdout, indent=2, ensure_ascii=False)
        print()
    else:
        from rich.table import Table

        from harness.cli_gate import _console

        t = Table(title=f"Lint: {len(targets)} file(s), {len(findings)} finding(s)", title_justify="left",
                  show_lines=True)
        for col in ("file", "check", "severity", "lines", "what"):
            t.add_column(col, overflow="fold")
        for f in findings:
            lines = ", ".join(map(str, f.lines[:6])) + (" …" if len(f.lines) > 6 else "")
            colour = "red" if f.severity == "error" else "yellow"
            t.add_row(Path(f.file).name if len(targets) == 1 else f.file, f.check, f"[{colour}]{f.severity}[/]",
                      lines, f.message)
        _console().print(t)
    return EXIT_GATE_FAILED if any(f.severity == "error" for f in findings) else EXIT_OK


def cmd_new(args: argparse.Namespace) -> int:
    from harness.cli import _load_suites, _project
    from harness.generate import new_suite
    from harness.suites import load_suite

    project = _project(args)
    source = _load_suites(project, [args.from_])[0] if args.from_ else None
    out = new_suite(project.root / "suites" / args.name, kind=args.kind, source=source, force=args.force)
    load_suite(out)
    print(f"created {out}/ (suite.yaml and one example to copy); add examples to {out / 'examples.jsonl'}, then "
          f"'tollgate validate'")
    return EXIT_OK


def cmd_perturbations(args: argparse.Namespace) -> int:
    from harness.perturbations import perturbations

    for name in perturbations:
        p = perturbations.get(name)
        print(f"{name:<13} {p.effect:<14} {p.description}")
    return EXIT_OK


def add_parsers(sub: Any) -> None:
    suite = sub.add_parser("suite", help="write suites: generate adversarial ones from existing suites")
    ssub = suite.add_subparsers(dest="suite_command", metavar="ACTION", required=True)
    s = ssub.add_parser("new", help="scaffold a suite, optionally in the format of an existing one")
    s.add_argument("name")
    s.add_argument("--kind", default="edge",
                   choices=("train_sample", "validation", "heldout", "edge", "general", "baseline"))
    s.add_argument("--from", dest="from_", metavar="SUITE", help="copy this suite's prompt, task and checks")
    s.add_argument("--force", action="store_true")
    s.set_defaults(func=cmd_new)
    s = ssub.add_parser("perturb", help="an edge suite of perturbed copies, each linked to its source")
    s.add_argument("suite", help="the source suite")
    s.add_argument("--with", dest="with_", required=True, metavar="NAMES",
                   help="comma-separated perturbations (see 'tollgate suite perturbations')")
    s.add_argument("--out", required=True, help="name of the new suite (a folder beside the source) or a path")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--sample", type=int, metavar="N", help="perturb N sources drawn with the seed (default all)")
    s.add_argument("--force", action="store_true", help="overwrite an existing suite")
    s.set_defaults(func=cmd_perturb)
    s = ssub.add_parser("lint", help="duplicates, label conflicts, missing fields, leakage, untagged examples")
    s.add_argument("suite", nargs="*", help="suites to lint (default: every suite of the project)")
    s.add_argument("--file", action="append", help="also lint this JSONL file (repeatable), e.g. a training export")
    s.add_argument("--fix", action="store_true", help="remove exact duplicates only, with a report beside the file")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_lint)
    s = ssub.add_parser("perturbations", help="list the registered perturbations")
    s.set_defaults(func=cmd_perturbations)

    s = sub.add_parser("failures", help="what fails: pass rate per tag with CIs, failing examples with diffs")
    s.add_argument("model")
    s.add_argument("--suite", action="append", help="only this suite (repeatable)")
    s.add_argument("--by", choices=("tag", "perturbation", "none"), default="tag")
    s.add_argument("--limit", type=int, default=20, help="failing examples to show (default 20)")
    s.add_argument("--format", choices=("table", "json"), default="table")
    s.set_defaults(func=cmd_failures)
