"""What is stored, summarised: each run's metrics with 95% intervals, ready to print or export.

The CLI and (later) the dashboard call these functions; they return data, not text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from harness import store as st
from harness.estimates import Estimate


@dataclass
class MetricRow:
    model: str
    suite: str
    kind: str
    stage: str | None
    metric: str
    estimate: Estimate
    n_examples: int
    n_errors: int
    n_cached: int
    duration_s: float | None
    run_id: str

    def as_dict(self) -> dict[str, Any]:
        e = self.estimate
        return {"model": self.model, "suite": self.suite, "kind": self.kind, "stage": self.stage,
                "metric": self.metric, "value": _num(e.value), "ci_low": _num(e.low), "ci_high": _num(e.high),
                "n": e.n, "ci_method": e.method, "n_examples": self.n_examples, "errors": self.n_errors,
                "cached": self.n_cached, "duration_s": _num(self.duration_s), "run_id": self.run_id}


def _num(x: float | None) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else x


def _metric_order(name: str) -> tuple[int, str]:
    if name == "pass":
        return (0, name)
    if name.startswith(("pass@", "pass^")) or name == "flaky":  # a repeated run's, right after pass
        return (1, name)
    if name == "latency_ms":
        return (4, name)
    return (3 if "." in name else 2, name)


def summarize(con: Any, runs: list[dict[str, Any]]) -> list[MetricRow]:
    """One row per (run, metric): the mean with its interval; micro-F1 where checks count fields.

    Completed runs are read from their stored summary; anything else is computed from the scores.
    """
    if not runs:
        return []
    stored = _stored_summaries(con, [r["run_id"] for r in runs if r.get("status", "completed") == "completed"])
    live = [r for r in runs if r["run_id"] not in stored]
    computed: dict[str, list[MetricRow]] = {}
    for row in _compute(con, live):
        computed.setdefault(row.run_id, []).append(row)
    out: list[MetricRow] = []
    for run in runs:
        if run["run_id"] in stored:
            out += [_row(run, m, Estimate(*(math.nan if v is None else v for v in (value, low, high)), n, method))
                    for m, value, low, high, n, method in stored[run["run_id"]]]
        else:
            out += computed.get(run["run_id"], [])
    return out


def _stored_summaries(con: Any, run_ids: list[str]) -> dict[str, list[tuple]]:
    if not run_ids:
        return {}
    out: dict[str, list[tuple]] = {}
    for rid, *rest in con.execute("""SELECT run_id, metric, value, low, high, n, method FROM run_summaries
                                     WHERE list_contains(?, run_id) ORDER BY run_id, ord""", [run_ids]).fetchall():
        out.setdefault(rid, []).append(tuple(rest))
    return out


def finish_run(con: Any, run_id: str, status: str, duration_s: float | None) -> None:
    """Close a run (``store.finish_run``) and, if it completed, store its summary in the same transaction."""
    st.finish_run(con, run_id, status, duration_s)
    save_summary(con, run_id)


def save_summary(con: Any, run_id: str) -> None:
    """Store a completed run's summary (in the transaction that completes it); other statuses store none."""
    runs = [dict(zip(("run_id", "model", "suite", "suite_kind", "stage", "status", "n_examples", "n_errors",
                      "n_cached", "duration_s"), r, strict=True)) for r in con.execute(
        """SELECT run_id, model, suite, suite_kind, stage, status, n_examples, n_errors, n_cached, duration_s
           FROM runs WHERE run_id = ? AND status = 'completed'""", [run_id]).fetchall()]
    rows = _compute(con, runs)
    con.execute("DELETE FROM run_summaries WHERE run_id = ?", [run_id])
    if rows:
        con.executemany("INSERT INTO run_summaries VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                        [[run_id, i, r.metric, _num(r.estimate.value), _num(r.estimate.low), _num(r.estimate.high),
                          r.estimate.n, r.estimate.method] for i, r in enumerate(rows)])


def _compute(con: Any, runs: list[dict[str, Any]]) -> list[MetricRow]:
    if not runs:
        return []
    import numpy as np  # only for runs without a stored summary: reading summaries needs no numpy

    from harness.intervals import estimate, micro_f1

    cols = st.metric_values(con, [r["run_id"] for r in runs])  # sorted by run, then metric
    run_ids = np.asarray(cols["run_id"], dtype=object)
    metrics = np.asarray(cols["metric"], dtype=object)
    values = np.asarray(cols["value"], dtype=float)
    counts = np.asarray(cols["counts"], dtype=object)
    # one pass finds where each (run, metric) group starts: no mask over the whole column per group
    change = np.ones(len(run_ids), dtype=bool)
    change[1:] = (run_ids[1:] != run_ids[:-1]) | (metrics[1:] != metrics[:-1])
    starts = np.flatnonzero(change)
    ends = np.append(starts[1:], len(run_ids))
    groups: dict[str, dict[str, slice]] = {}
    for a, b in zip(starts, ends, strict=True):
        groups.setdefault(run_ids[a], {})[metrics[a]] = slice(a, b)
    rows: list[MetricRow] = []
    for run in runs:
        mine = groups.get(run["run_id"], {})
        for name in sorted(mine, key=_metric_order):
            sel = mine[name]
            rows.append(_row(run, name, estimate(values[sel])))
            cs = [json.loads(c) for c in counts[sel] if c]
            if cs and all({"tp", "fp", "fn"} <= c.keys() for c in cs):
                f1 = micro_f1([c["tp"] for c in cs], [c["fp"] for c in cs], [c["fn"] for c in cs])
                rows.append(_row(run, f"{name}.micro_f1", f1))
        if not mine:
            rows.append(_row(run, "pass", estimate([])))
    return rows


def _row(run: dict[str, Any], metric: str, est: Estimate) -> MetricRow:
    return MetricRow(model=run["model"], suite=run["suite"], kind=run["suite_kind"], stage=run["stage"],
                     metric=metric, estimate=est, n_examples=run["n_examples"], n_errors=run["n_errors"],
                     n_cached=run["n_cached"], duration_s=run["duration_s"], run_id=run["run_id"])


def stored_results(store: st.Store, model: str | None = None, suites: list[str] | None = None,
                   stage: str | None = None) -> list[MetricRow]:
    """The newest completed run of each (model, suite), summarised."""
    with store.read() as con:
        runs = st.latest_runs(con, model=model, suites=suites, stage=stage)
        return summarize(con, runs)
