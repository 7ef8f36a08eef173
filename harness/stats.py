"""Paired statistics: comparing a candidate with a reference on the same examples.

Both models answered the same examples, so every comparison here is paired: exact McNemar on
pass/fail, a paired bootstrap of the mean difference and Wilcoxon's signed-rank test on scores.
An unpaired comparison (two different traffic arms, two different suites) is a separate function
and says so in its result. Bootstraps take an explicit seed, stored with every decision, so a
verdict can be recomputed bit for bit.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from harness.intervals import BOOTSTRAP_RESAMPLES, bootstrap_means, z_value


@dataclass(frozen=True)
class Comparison:
    """Candidate minus reference on ``n`` examples, with the test that judged it."""

    metric: str
    n: int
    candidate: float
    reference: float
    difference: float
    ci_low: float
    ci_high: float
    test: str
    p_value: float
    paired: bool
    discordant: tuple[int, int] | None = None  # (candidate-only passes, reference-only passes)

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def mcnemar_exact(b: int, c: int, alternative: str = "two-sided") -> float:
    """Exact McNemar p-value from the discordant pairs: b = only the candidate passed, c = only the
    reference passed. Under no difference each discordant pair is a fair coin (binomial, p = 1/2)."""
    from scipy.stats import binomtest

    n = b + c
    if n == 0:
        return 1.0
    alt = {"two-sided": "two-sided", "greater": "greater", "less": "less"}[alternative]
    return float(binomtest(b, n, 0.5, alternative=alt).pvalue)


def percentile_ci(boot: np.ndarray, confidence: float) -> tuple[float, float]:
    a = (1 - confidence) / 2
    lo, hi = np.quantile(boot, [a, 1 - a])
    return float(lo), float(hi)


def paired_compare(metric: str, candidate: Any, reference: Any, *, binary: bool | None = None,
                   confidence: float = 0.95, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[Comparison, np.ndarray]:
    """Compare per-example values of two models on the same examples (aligned arrays).

    Pass/fail metrics use exact McNemar; scores use Wilcoxon signed-rank (zero differences
    dropped, as Wilcoxon's original). The interval of the mean difference is a paired bootstrap
    either way; its resampled means are returned for the gate's one-sided decisions.
    """
    from scipy.stats import wilcoxon

    cand = np.asarray(candidate, dtype=float)
    ref = np.asarray(reference, dtype=float)
    if cand.shape != ref.shape:
        raise ValueError("paired arrays must have the same length")
    n = len(cand)
    if binary is None:
        binary = bool(np.all(np.isin(cand, (0.0, 1.0))) and np.all(np.isin(ref, (0.0, 1.0))))
    diff = cand - ref
    if n == 0:
        nan = math.nan
        return Comparison(metric, 0, nan, nan, nan, nan, nan, "none", nan, True), np.array([])
    boot = bootstrap_means(diff, seed, resamples)
    lo, hi = percentile_ci(boot, confidence)
    if binary:
        b = int(np.sum((cand == 1) & (ref == 0)))
        c = int(np.sum((cand == 0) & (ref == 1)))
        p = mcnemar_exact(b, c)
        comp = Comparison(metric, n, float(cand.mean()), float(ref.mean()), float(diff.mean()), lo, hi,
                          "mcnemar-exact", p, True, (b, c))
    else:
        p = 1.0 if np.all(diff == 0) else float(wilcoxon(cand, ref, zero_method="wilcox").pvalue)
        comp = Comparison(metric, n, float(cand.mean()), float(ref.mean()), float(diff.mean()), lo, hi,
                          "wilcoxon-signed-rank", p, True)
    return comp, boot


def unpaired_compare(metric: str, a: Any, b: Any, *, confidence: float = 0.95, seed: int = 0,
                     resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[Comparison, np.ndarray]:
    """Compare two independent samples (different examples: two suites, two traffic arms).

    Only for data that really are unpaired: it ignores any pairing and is far less sensitive on
    paired data. Proportions use Fisher's exact test, scores Mann-Whitney U; the interval of the
    difference in means is a two-sample bootstrap.
    """
    from scipy.stats import fisher_exact, mannwhitneyu

    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if len(x) == 0 or len(y) == 0:
        nan = math.nan
        return Comparison(metric, min(len(x), len(y)), nan, nan, nan, nan, nan, "none", nan, False), np.array([])
    rng_seed = np.random.SeedSequence(seed).spawn(2)
    bx = bootstrap_means(x, int(rng_seed[0].generate_state(1)[0]), resamples)
    by = bootstrap_means(y, int(rng_seed[1].generate_state(1)[0]), resamples)
    boot = bx - by
    lo, hi = percentile_ci(boot, confidence)
    binary = bool(np.all(np.isin(x, (0.0, 1.0))) and np.all(np.isin(y, (0.0, 1.0))))
    if binary:
        table = [[int(x.sum()), int(len(x) - x.sum())], [int(y.sum()), int(len(y) - y.sum())]]
        p, test = float(fisher_exact(table).pvalue), "fisher-exact (unpaired)"
    else:
        p, test = float(mannwhitneyu(x, y).pvalue), "mann-whitney-u (unpaired)"
    return Comparison(metric, len(x) + len(y), float(x.mean()), float(y.mean()), float(x.mean() - y.mean()), lo, hi,
                      test, p, False), boot


def holm(p_values: list[float]) -> list[float]:
    """Holm's step-down adjusted p-values (controls the family-wise error rate)."""
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def bootstrap_p_value(boot: np.ndarray, threshold: float, side: str) -> float:
    """One-sided bootstrap p-value: the share of resampled statistics on the wrong side of the
    threshold (``side="above"`` tests H0: statistic <= threshold)."""
    if side not in ("above", "below"):
        raise ValueError(f"side must be 'above' or 'below', not {side!r}")
    if len(boot) == 0:
        return 1.0
    wrong = np.sum(boot <= threshold) if side == "above" else np.sum(boot >= threshold)
    return float((wrong + 1) / (len(boot) + 1))


def paired_sample_size(discordance: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Examples needed to show a paired difference in proportions (one-sided), Connor (1987).

    ``discordance`` is the share of examples where the two models disagree (p10 + p01), ``effect``
    the true difference still to be shown (p10 - p01, or the distance to a margin).
    """
    if effect <= 0:
        return math.inf  # type: ignore[return-value]
    if discordance <= 0:
        return 0
    psi = max(discordance, effect)
    za, zb = z_value(1 - 2 * alpha), z_value(2 * power - 1)
    n = (za * math.sqrt(psi) + zb * math.sqrt(max(psi - effect**2, 0.0))) ** 2 / effect**2
    return math.ceil(n)


def minimum_detectable_effect(n: int, discordance: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """The smallest paired difference that ``n`` examples detect with the given power."""
    lo, hi = 1e-6, max(discordance, 1e-6)  # a paired difference cannot exceed the discordance
    if paired_sample_size(discordance, hi, alpha, power) > n:
        return math.nan
    for _ in range(60):
        mid = (lo + hi) / 2
        if paired_sample_size(discordance, mid, alpha, power) <= n:
            hi = mid
        else:
            lo = mid
    return hi


def mean_sample_size(sd: float, effect: float, alpha: float = 0.05, power: float = 0.8) -> int:
    """Examples needed for a one-sided test of a mean at distance ``effect`` (normal approximation)."""
    if effect <= 0:
        return math.inf  # type: ignore[return-value]
    za, zb = z_value(1 - 2 * alpha), z_value(2 * power - 1)
    return max(2, math.ceil(((za + zb) * sd / effect) ** 2))


def paired_noninferiority_test(b: int, c: int, n: int, margin: float) -> tuple[float, float]:
    """Score test of H0: p_cand - p_ref <= -margin on paired pass/fail (Nam 1997; Tango 1998).

    ``b`` = examples only the candidate passed, ``c`` = only the reference, ``n`` = all pairs.
    The variance is taken at the constrained maximum-likelihood estimate under H0, which keeps the
    test close to its nominal size where a bootstrap or Wald interval of few discordant pairs is
    too liberal. Returns (p for non-inferiority, p for inferiority beyond the margin).
    """
    from scipy.stats import norm

    d = margin
    if n == 0:
        return 1.0, 1.0
    m = n - b - c
    big_b = (b + c) * (1 + d) + 2 * d * (c + m)
    big_c = c * d * (1 + d)
    disc = max(big_b * big_b - 8 * n * big_c, 0.0)
    roots = [(big_b + s * math.sqrt(disc)) / (4 * n) for s in (1, -1)]
    valid = [x for x in roots if d - 1e-12 <= x <= (1 + d) / 2 + 1e-12]
    p01 = valid[0] if valid else max(roots)
    var = n * (2 * p01 - d - d * d)
    if var <= 0:
        observed = (b - c) / n
        if math.isclose(observed, -d, abs_tol=1e-12):
            return 1.0, 1.0  # identical answers at a zero margin: no evidence either way
        return (0.0, 1.0) if observed > -d else (1.0, 0.0)
    z = (b - c + n * d) / math.sqrt(var)
    return float(norm.sf(z)), float(norm.cdf(z))


def mean_shift_test(values: Any, shift: float) -> tuple[float, float]:
    """One-sided t-tests of the mean against ``shift``: (p for mean > shift, p for mean < shift).

    Used for scores in [0, 1] (field accuracy, paired differences of it), where the normal
    approximation of a mean of bounded values is sound from a few dozen examples.
    """
    from scipy.stats import ttest_1samp

    x = np.asarray(values, dtype=float)
    if len(x) < 2 or np.all(x == x[0]):
        mean = float(x.mean()) if len(x) else math.nan
        return (0.0, 1.0) if mean > shift else ((1.0, 0.0) if mean < shift else (1.0, 1.0))
    return (float(ttest_1samp(x, shift, alternative="greater").pvalue),
            float(ttest_1samp(x, shift, alternative="less").pvalue))
