"""What is stored, summarised: each run's metrics with 95% intervals, ready to print or export.

The CLI and (later) the dashboard call these functions; they return data, not text.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from harness import store as st
from harness.intervals import Estimate, estimate, micro_f1


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
    if name == "latency_ms":
        return (3, name)
    return (2 if "." in name else 1, name)


def summarize(con: Any, runs: list[dict[str, Any]]) -> list[MetricRow]:
    """One row per (run, metric): the mean with its interval; micro-F1 where checks count fields."""
    if not runs:
        return []
    cols = st.metric_values(con, [r["run_id"] for r in runs])
    run_ids = np.asarray(cols["run_id"], dtype=object)
    metrics = np.asarray(cols["metric"], dtype=object)
    values = np.asarray(cols["value"], dtype=float)
    counts = np.asarray(cols["counts"], dtype=object)
    rows: list[MetricRow] = []
    for run in runs:
        in_run = run_ids == run["run_id"]
        names = sorted(set(metrics[in_run]), key=_metric_order)
        for name in names:
            sel = in_run & (metrics == name)
            rows.append(_row(run, name, estimate(values[sel])))
            cs = [json.loads(c) for c in counts[sel] if c]
            if cs and all({"tp", "fp", "fn"} <= c.keys() for c in cs):
                f1 = micro_f1([c["tp"] for c in cs], [c["fp"] for c in cs], [c["fn"] for c in cs])
                rows.append(_row(run, f"{name}.micro_f1", f1))
        if not names:
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
