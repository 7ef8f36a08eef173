"""Confidence intervals for one metric: Wilson for proportions, bootstrap for everything else.

Every number Tollgate shows comes with its 95% interval and its n, because a pass rate of 0.9 on
20 examples and on 2,000 examples are different evidence. Bootstrap seeds are fixed so the same
data always prints the same interval.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.estimates import Estimate

DEFAULT_SEED = 20261126
N_RESAMPLES = 2000
BOOTSTRAP_RESAMPLES = 10_000  # the gate's paired comparisons
LARGE_N, BINS = 50_000, 512  # above LARGE_N examples, continuous values are resampled by bin


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
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact at the ends: the bounds are 0 and 1
    high = 1.0 if successes == n else min(1.0, centre + half)  # there, not 1e-17 of rounding beside them
    return Estimate(p, low, high, n, "wilson")


def bootstrap_means(values: np.ndarray, seed: int, resamples: int = BOOTSTRAP_RESAMPLES) -> np.ndarray:
    """Means of ``resamples`` bootstrap resamples of ``values``, vectorised in chunks.

    One seeded generator draws the indices, so the same data and seed give the same array on
    every machine (numpy's PCG64 stream is stable across versions).

    Pass/fail differences and field accuracies take a handful of distinct values. Then a resample
    is fully described by how many times it drew each value, a multinomial draw: the same
    bootstrap distribution at O(resamples x distinct values) instead of O(resamples x n), which
    turns 100,000 paired examples x 10,000 resamples from a billion draws into a few thousand.
    """
    x = np.asarray(values, dtype=float)
    n = len(x)
    rng = np.random.default_rng(seed)
    distinct, counts = np.unique(x, return_counts=True)
    if n and len(distinct) <= min(256, n // 8):
        draws = rng.multinomial(n, counts / n, size=resamples)
        return draws @ distinct / n
    if n > LARGE_N:
        # Many distinct values and many examples (a continuous score on 100,000 examples): group the
        # values into BINS equal-width bins, each represented by the mean of its members, and draw
        # multinomial counts over the bins. A resampled mean moves by at most half a bin width
        # (1/1024 of the data's range); the sample mean itself is unchanged.
        edges = np.linspace(distinct[0], distinct[-1], BINS + 1)
        which = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, BINS - 1)
        sizes = np.bincount(which, minlength=BINS)
        keep = sizes > 0
        means = np.bincount(which, weights=x, minlength=BINS)[keep] / sizes[keep]
        draws = rng.multinomial(n, sizes[keep] / n, size=resamples)
        return draws @ means / n
    out = np.empty(resamples)
    chunk = max(1, min(resamples, 2_000_000 // max(1, n)))
    for start in range(0, resamples, chunk):
        k = min(chunk, resamples - start)
        idx = rng.integers(0, n, size=(k, n))
        out[start:start + k] = x[idx].mean(axis=1)
    return out


def bootstrap_mean(values: Any, confidence: float = 0.95, seed: int = DEFAULT_SEED,
                   n_resamples: int = N_RESAMPLES) -> Estimate:
    """BCa bootstrap interval of a mean (Efron 1987), falling back to percentile when BCa is undefined.

    For a mean the jackknife acceleration has a closed form, a = sum(d^3) / (6 sum(d^2)^1.5) with
    d = x - mean, so the interval costs one vector of resampled means: no n x n jackknife, which
    is what makes 100,000 examples take milliseconds rather than minutes.
    """
    from scipy.special import ndtr, ndtri

    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap")
    mean = float(x.mean())
    if n == 1 or np.all(x == x[0]):
        return Estimate(mean, mean, mean, n, "bootstrap")
    boot = bootstrap_means(x, seed, n_resamples)
    alpha = (1 - confidence) / 2
    below = (np.sum(boot < mean) + 0.5 * np.sum(boot == mean)) / len(boot)
    d = x - mean
    a = float(np.sum(d ** 3) / (6 * np.sum(d ** 2) ** 1.5))
    if 0 < below < 1:
        z0 = float(ndtri(below))
        qs = []
        for z in (ndtri(alpha), ndtri(1 - alpha)):
            qs.append(float(ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))))
        lo, hi = np.quantile(boot, qs)
        if math.isfinite(lo) and math.isfinite(hi):
            return Estimate(mean, float(lo), float(hi), n, "bootstrap-bca")
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Estimate(mean, float(lo), float(hi), n, "bootstrap-percentile")


def micro_f1(tp: Any, fp: Any, fn: Any, confidence: float = 0.95, seed: int = DEFAULT_SEED,
             n_resamples: int = N_RESAMPLES) -> Estimate:
    """Micro-averaged F1 over examples, with a BCa bootstrap interval that resamples whole examples.

    Examples are grouped by their (tp, fp, fn) counts, which repeat a lot, so a resample is a
    multinomial draw over the groups; the jackknife (leave one example out) has a closed form.
    """
    from scipy.special import ndtr, ndtri

    rows = np.stack([np.asarray(a, dtype=float) for a in (tp, fp, fn)], axis=1) if len(tp) else np.empty((0, 3))
    n = len(rows)

    def f1(t: Any, f_p: Any, f_n: Any) -> Any:
        d = 2 * t + f_p + f_n
        return np.where(d > 0, 2 * t / np.where(d > 0, d, 1), 1.0)

    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, "bootstrap")
    tot = rows.sum(axis=0)
    value = float(f1(*tot))
    if n == 1:
        return Estimate(value, value, value, 1, "bootstrap")
    groups, counts = np.unique(rows, axis=0, return_counts=True)
    rng = np.random.default_rng(seed)
    sums = rng.multinomial(n, counts / n, size=n_resamples) @ groups  # (resamples, 3) totals
    boot = f1(sums[:, 0], sums[:, 1], sums[:, 2])
    jack = f1(*(tot[None, :] - groups).T)  # leave one example of each group out
    d = np.repeat(np.average(jack, weights=counts) - jack, counts)
    alpha = (1 - confidence) / 2
    below = (np.sum(boot < value) + 0.5 * np.sum(boot == value)) / len(boot)
    denom = np.sum(d ** 2) ** 1.5
    if 0 < below < 1 and denom > 0:
        a = float(np.sum(d ** 3) / (6 * denom))
        z0 = float(ndtri(below))
        qs = [float(ndtr(z0 + (z0 + z) / (1 - a * (z0 + z)))) for z in (ndtri(alpha), ndtri(1 - alpha))]
        lo, hi = np.quantile(boot, qs)
        return Estimate(value, float(lo), float(hi), n, "bootstrap-bca")
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return Estimate(value, float(lo), float(hi), n, "bootstrap-percentile")


def estimate(values: Any, confidence: float = 0.95) -> Estimate:
    """Wilson when every value is 0 or 1 (a proportion), bootstrap otherwise."""
    x = np.asarray(values, dtype=float)
    x = x[~np.isnan(x)]
    if len(x) and np.all((x == 0) | (x == 1)):
        return wilson(int(x.sum()), len(x), confidence)
    return bootstrap_mean(x, confidence)
