"""Confidence intervals for one metric: Wilson for proportions, bootstrap for everything else.

Every number Tollgate shows comes with its 95% interval and its n, because a pass rate of 0.9 on
20 examples and on 2,000 examples are different evidence. Bootstrap seeds are fixed so the same
data always prints the same interval.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_SEED = 20261126
N_RESAMPLES = 2000


@dataclass(frozen=True)
class Estimate:
    """A metric's value with its confidence interval, its n and how the interval was made."""

    value: float
    low: float
    high: float
    n: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def z_value(confidence: float) -> float:
    from scipy.special import ndtri

    return float(ndtri(0.5 + confidence / 2))


def wilson(successes: int, n: int, confidence: float = 0.95) -> Estimate:
    """Wilson score interval: honest near 0 and 1, where the normal interval breaks down."""
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "wilson")
    z = z_value(confidence)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return Estimate(p, max(0.0, centre - half), min(1.0, centre + half), n, "wilson")


def bootstrap_mean(values: Any, confidence: float = 0.95, seed: int = DEFAULT_SEED,
                   n_resamples: int = N_RESAMPLES) -> Estimate:
    """BCa bootstrap interval of a mean (scipy), falling back to percentile when BCa is undefined."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap")
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Estimate(mean, mean, mean, n, "bootstrap")
    return _bootstrap((x,), np.mean, mean, confidence, seed, n_resamples)


def micro_f1(tp: Any, fp: Any, fn: Any, confidence: float = 0.95, seed: int = DEFAULT_SEED,
             n_resamples: int = N_RESAMPLES) -> Estimate:
    """Micro-averaged F1 over examples, with a bootstrap interval that resamples whole examples."""
    tp, fp, fn = (np.asarray(a, dtype=float) for a in (tp, fp, fn))
    n = len(tp)

    def f1(a: Any, b: Any, c: Any, axis: int = -1) -> Any:
        t = a.sum(axis=axis)
        d = 2 * t + b.sum(axis=axis) + c.sum(axis=axis)
        return np.where(d > 0, 2 * t / np.where(d > 0, d, 1), 1.0)

    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap")
    value = float(f1(tp, fp, fn))
    if n == 1:
        return Estimate(value, value, value, 1, "bootstrap")
    return _bootstrap((tp, fp, fn), f1, value, confidence, seed, n_resamples)


def _bootstrap(data: tuple[Any, ...], statistic: Any, value: float, confidence: float, seed: int,
               n_resamples: int) -> Estimate:
    import warnings

    from scipy.stats import bootstrap

    rng = np.random.default_rng(seed)
    n = len(data[0])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for method in ("BCa", "percentile"):
            res = bootstrap(data, statistic, paired=True, vectorized=True, confidence_level=confidence,
                            n_resamples=n_resamples, method=method, random_state=rng, batch=200)
            lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
            if math.isfinite(lo) and math.isfinite(hi):
                return Estimate(value, lo, hi, n, f"bootstrap-{method.lower()}")
    return Estimate(value, math.nan, math.nan, n, "bootstrap")


def estimate(values: Any, confidence: float = 0.95) -> Estimate:
    """Wilson when every value is 0 or 1 (a proportion), bootstrap otherwise."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) and np.all((x == 0) | (x == 1)):
        return wilson(int(x.sum()), len(x), confidence)
    return bootstrap_mean(x, confidence)
