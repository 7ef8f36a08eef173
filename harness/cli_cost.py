"""``tollgate compare A B C --cost``: accuracy against cost per 1,000 requests, size and speed.

It parses and prints; the measuring and the frontier are in ``harness.cost``.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from harness.cli_gate import _console, _fmt, _say, _selection_warnings
from harness.errors import EXIT_OK, TollgateInputError


def compare_cost(args: argparse.Namespace, project: Any, store: Any, kinds: dict[str, str]) -> int:
    """``compare A B ... --cost``: accuracy against cost per 1,000 requests, the frontier marked."""
    from harness import store as st
    from harness.cost import frontier_rows, human_bytes, human_count

    if len(args.models) < 2:
        raise TollgateInputError("compare --cost takes two or more models.", field="MODEL")
    if args.metric and len(args.metric) > 1:
        raise TollgateInputError("compare --cost plots one metric; give --metric once.", field="--metric")
    if args.suite:
        unknown = [s for s in args.suite if s not in kinds]
        if unknown:
            raise TollgateInputError(f"unknown suite '{unknown[0]}'; the project has: "
                                     f"{', '.join(sorted(kinds)) or 'none'}.", field="--suite")
    metric = args.metric[0] if args.metric else "pass"
    models = {m: project.models[m] for m in dict.fromkeys(args.models)}
    with store.read() as con:
        rows, notes = frontier_rows(con, models, project.costs, suites=args.suite, metric=metric)
        runs = st.runs_by_id(con, [rid for r in rows for rid in r.profile.runs])
        warnings = _selection_warnings(con, {(r["suite"], r["suite_hash"]) for r in runs
                                             if kinds.get(r["suite"]) == "heldout"})
    if all(r.accuracy is None for r in rows):
        raise TollgateInputError(f"none of {', '.join(models)} has a completed run on "
                                 f"{', '.join(args.suite) if args.suite else 'a held-out suite'}.",
                                 field="--suite", hint="Run the models first, or name a suite with --suite.")
    said = [f"note: {n}" for n in notes] + warnings
    if args.format == "json":
        json.dump([r.as_dict() for r in rows], sys.stdout, indent=2, default=str)
        print()
        _say(said)
        return EXIT_OK
    from rich.table import Table

    suites = sorted({s for r in rows for s in r.suites})
    t = Table(title=f"Accuracy ({metric} on {', '.join(suites)}, 95% CI) against cost per 1,000 requests",
              title_justify="left")
    for col in ("model", "accuracy [95% CI]", "n", "latency p50 / p95 (ms)", "throughput (ex/s)", "params", "size",
                "cost / 1k", "frontier"):
        t.add_column(col, justify="left" if col in ("model", "frontier") else "right", no_wrap=True)
    for r in rows:
        p = r.profile
        cost = f"{p.cost_per_1k:.4g} {p.currency}" if p.cost_per_1k is not None else (
            "no price" if p.pricing == "no price" else "unmeasured")
        mark = {True: "[green]● frontier[/]", False: "dominated", None: "—"}[r.frontier]
        t.add_row(r.profile.model, f"{_fmt(r.accuracy)} [{_fmt(r.low)}, {_fmt(r.high)}]", str(r.n_accuracy),
                  f"{_fmt(p.latency_p50_ms, 1)} / {_fmt(p.latency_p95_ms, 1)}", _fmt(p.throughput_per_s, 1),
                  human_count(p.parameters), human_bytes(p.size_bytes), cost, mark)
    _console().print(t)
    _say(["frontier: no other model is at least as accurate for at most the cost (point estimates; overlapping "
          "intervals mean the order is not settled). Throughput: examples per second of answering time "
          "(1000 / mean latency); 'no price': the model has no cost: in tollgate.yaml.", *said])
    return EXIT_OK
