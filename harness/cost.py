"""What a model costs to serve: its size, its measured speed, and a price per 1,000 requests.

- **Size**: parameters and bytes on disk of a model folder (``hf-*`` adapters), read without torch:
  the parameter count is the sum of the tensor shapes in the ``*.safetensors`` headers (each file
  starts with an 8-byte little-endian length and that many bytes of JSON), the size is the sum of
  the folder's file sizes. A python callable or an endpoint has neither ("n/a").
- **Speed**: latency p50/p95 over the error-free results of the model's newest completed run of each
  suite. A result served from the cache keeps the latency measured when those weights computed it
  (the cache key holds the model's fingerprint), so re-running a suite does not erase the
  measurement. Throughput is examples per second of *answering* time: 1000 / the mean latency,
  where an adapter that batches records each example's share of its batch's time. Model loading,
  scoring and store writes are left out: they are not what a serving machine spends per request.
- **Price**: from ``cost:`` in ``tollgate.yaml``. ``per_hour`` (the serving machine) gives
  ``per_hour / (throughput * 3600) * 1000`` per 1,000 requests; per-token prices give the mean
  prompt and completion tokens per request times the prices (a token price left out is free). A
  model without ``cost:`` has "no price", never 0.

Each request gets its own cost (its latency, or its tokens), so the mean is the cost per 1,000
requests and a gate rule ``max_cost_per_1k`` can test that mean like any other score. The SQL is
here rather than in ``store``: reading these three columns is this module's job.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from harness.errors import TollgateInputError


# -- size ---------------------------------------------------------------------------------------------------
def safetensors_parameters(path: Path) -> int:
    """Elements of every tensor in one ``.safetensors`` file, from its header alone.

    Packed quantised weights (an int32 holding eight 4-bit values) count as stored.
    """
    from harness.adapters.hf_loading import safetensors_tensors

    bad = TollgateInputError("is not a valid safetensors file (its header cannot be read).", file=path)
    return sum(math.prod(shape) for shape, _ in safetensors_tensors(Path(path), bad))


def folder_bytes(path: Path) -> int:
    """Bytes of every file under a folder (links followed, as a Hugging Face cache snapshot needs)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += (Path(dirpath) / name).stat().st_size
            except OSError:  # a dangling link
                continue
    return total


def model_size(cfg: Any) -> tuple[int | None, int | None]:
    """(parameters, bytes on disk) of a model folder; (None, None) for a model without one."""
    path = getattr(cfg, "path", None)
    if path is None or not Path(path).is_dir():
        return None, None
    weights = sorted(Path(path).glob("*.safetensors"))
    params = sum(safetensors_parameters(p) for p in weights) if weights else None
    return params, folder_bytes(Path(path))


# -- speed and price ------------------------------------------------------------------------------------------
def request_measures(con: Any, run_ids: list[str]) -> dict[str, Any]:
    """Per error-free result of these runs: example_id, latency_ms, prompt_tokens, completion_tokens
    (numpy columns; a missing token count is NaN). Errors are judged by ``max_error_rate``."""
    return con.execute("""
        SELECT run_id, example_id, latency_ms::DOUBLE AS latency_ms, prompt_tokens::DOUBLE AS prompt_tokens,
               completion_tokens::DOUBLE AS completion_tokens
        FROM results WHERE list_contains(?, run_id) AND error IS NULL
        ORDER BY run_id, example_id""", [list(run_ids)]).fetchnumpy()


def request_costs(price: Any, m: dict[str, Any]) -> tuple[Any, str]:
    """Each request's cost, expressed per 1,000 such requests (so the mean is the cost per 1k), and
    what it was computed from; an empty array when the results lack what the price needs."""
    import numpy as np

    lat = np.asarray(m["latency_ms"], dtype=float)
    if price.per_hour is not None:
        ok = np.isfinite(lat)
        # one request held the machine latency_ms: per_hour / 3_600_000 per ms, times 1000 requests
        return price.per_hour * lat[ok] / 3600.0, "per hour of the serving machine, over measured latency"
    pp, pc = price.per_1k_prompt_tokens or 0.0, price.per_1k_completion_tokens or 0.0
    pt = np.asarray(m["prompt_tokens"], dtype=float)
    ct = np.asarray(m["completion_tokens"], dtype=float)
    ok = np.ones(len(pt), dtype=bool)
    if pp:
        ok &= np.isfinite(pt)
    if pc:
        ok &= np.isfinite(ct)
    if not ok.any():
        return np.zeros(0), "per token, but its results hold no token counts"
    # tokens/1000 per request times the price per 1k tokens, times 1000 requests
    return np.nan_to_num(pt[ok]) * pp + np.nan_to_num(ct[ok]) * pc, "per token, over its requests' tokens"


@dataclass
class CostProfile:
    """One model: size, speed and price, with where they came from."""

    model: str
    adapter: str
    parameters: int | None = None
    size_bytes: int | None = None
    n: int = 0  # error-free results measured
    latency_p50_ms: float | None = None
    latency_p95_ms: float | None = None
    throughput_per_s: float | None = None
    mean_prompt_tokens: float | None = None
    mean_completion_tokens: float | None = None
    pricing: str = "no price"  # "per hour", "per token" or "no price"
    cost_per_1k: float | None = None
    currency: str | None = None
    note: str = ""
    runs: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _mean(x: Any) -> float | None:
    import numpy as np

    x = np.asarray(x, dtype=float)
    x = x[np.isfinite(x)]
    return float(x.mean()) if len(x) else None


def profile(con: Any, cfg: Any, price: Any, run_ids: list[str]) -> CostProfile:
    """Size, speed and cost of one model over the results of these runs (its newest per suite)."""
    import numpy as np

    p = CostProfile(model=cfg.name, adapter=cfg.adapter, runs=list(run_ids))
    p.parameters, p.size_bytes = model_size(cfg)
    m = request_measures(con, run_ids) if run_ids else {"latency_ms": [], "prompt_tokens": [],
                                                         "completion_tokens": []}
    lat = np.asarray(m["latency_ms"], dtype=float)
    lat = lat[np.isfinite(lat)]
    p.n = len(lat)
    if len(lat):
        p.latency_p50_ms = float(np.quantile(lat, 0.5))
        p.latency_p95_ms = float(np.quantile(lat, 0.95))
        mean = float(lat.mean())
        p.throughput_per_s = 1000.0 / mean if mean > 0 else None
    p.mean_prompt_tokens = _mean(m["prompt_tokens"])
    p.mean_completion_tokens = _mean(m["completion_tokens"])
    if price is None:
        p.note = "no price: add cost: {per_hour: ...} or per-token prices to the model in tollgate.yaml"
        return p
    p.pricing = "per hour" if price.per_hour is not None else "per token"
    p.currency = price.currency
    if not run_ids:
        p.note = "no completed runs to measure"
        return p
    costs, how = request_costs(price, m)
    if len(costs):
        p.cost_per_1k = float(np.mean(costs))
    p.note = how
    return p


# -- the frontier -----------------------------------------------------------------------------------------------
def pareto_frontier(points: list[tuple[float | None, float | None]]) -> list[bool | None]:
    """For (accuracy, cost) points: True on the frontier (no other point is at least as accurate and at
    most as costly, and better in one), False when dominated, None when either value is unknown."""
    known = [(i, a, c) for i, (a, c) in enumerate(points) if a is not None and c is not None
             and not (math.isnan(a) or math.isnan(c))]
    out: list[bool | None] = [None] * len(points)
    for i, a, c in known:
        out[i] = not any(a2 >= a and c2 <= c and (a2 > a or c2 < c) for j, a2, c2 in known if j != i)
    return out


@dataclass
class FrontierRow:
    """One model on the accuracy/cost plane, with the evidence for both coordinates."""

    profile: CostProfile
    metric: str
    suites: list[str]
    accuracy: float | None = None
    low: float | None = None
    high: float | None = None
    n_accuracy: int = 0
    frontier: bool | None = None

    def as_dict(self) -> dict[str, Any]:
        return {**self.profile.as_dict(), "metric": self.metric, "suites": self.suites, "accuracy": self.accuracy,
                "accuracy_low": self.low, "accuracy_high": self.high, "accuracy_n": self.n_accuracy,
                "frontier": self.frontier}


def frontier_rows(con: Any, models: dict[str, Any], prices: dict[str, Any], *, suites: list[str] | None = None,
                  metric: str = "pass") -> tuple[list[FrontierRow], list[str]]:
    """Accuracy (pooled over ``suites``, default every held-out suite the models ran, with its 95% CI)
    and cost of each model, frontier marked; and notes on what makes the points less comparable.

    ``models`` maps names to their configs (``project.models``), ``prices`` to their ``CostEntry``.
    """
    import numpy as np

    from harness import store as st
    from harness.intervals import estimate

    latest = [r for r in st.latest_runs(con, suites=suites) if r["model"] in models and r["suite_kind"] != "probe"]
    if suites is None:
        latest = [r for r in latest if r["suite_kind"] == "heldout"]
    chosen = sorted({r["suite"] for r in latest})
    notes = []
    for s in chosen:
        versions = {r["suite_hash"] for r in latest if r["suite"] == s}
        if len(versions) > 1:
            notes.append(f"{s}: the models ran {len(versions)} different versions of it; their accuracies are not "
                         f"on the same examples.")
    rows = []
    for name, cfg in models.items():
        mine = [r for r in latest if r["model"] == name]
        values: list[float] = []
        for r in mine:
            if metric not in st.run_metric_names(con, r["run_id"]):
                raise TollgateInputError(f"metric '{metric}' is not produced by suite '{r['suite']}'.",
                                         field="--metric")
            values += list(st.example_values(con, r["run_id"], metric).values())
        row = FrontierRow(profile(con, cfg, prices.get(name), [r["run_id"] for r in mine]), metric,
                          sorted(r["suite"] for r in mine))
        if values:
            est = estimate(np.asarray(values, dtype=float))
            row.accuracy, row.low, row.high, row.n_accuracy = est.value, est.low, est.high, est.n
        if not mine:
            notes.append(f"{name} has no completed run on {', '.join(chosen) or 'a held-out suite'}.")
        rows.append(row)
    currencies = {r.profile.currency for r in rows if r.profile.currency}
    if len(currencies) > 1:
        notes.append(f"prices are in several currencies ({', '.join(sorted(currencies))}): the frontier compares "
                     f"them as if they were one.")
    for row, on in zip(rows, pareto_frontier([(r.accuracy, r.profile.cost_per_1k) for r in rows]), strict=True):
        row.frontier = on
    return rows, notes


def human_bytes(n: int | None) -> str:
    if n is None:
        return "n/a"
    size = float(n)
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if size < 1000 or unit == "TB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{n} B"


def human_count(n: int | None) -> str:
    if n is None:
        return "n/a"
    for unit, div in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= div:
            return f"{n / div:.1f}{unit}"
    return str(n)
