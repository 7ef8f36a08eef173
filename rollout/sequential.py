"""Anytime-valid statistics for beta traffic, and the latency comparison for shadow traffic.

Release managers look at the beta arm every day. A fixed-n interval checked daily is a different
test every day, and the chance that one of them excludes "no difference" by luck grows with every
look (about 40% after a hundred looks at a nominal 5%, in tests/test_sequential.py's simulations).
The intervals here are *confidence sequences*: one interval per sample size, all of them valid at
once, so the reader may look as often as they like and stop whenever they like. The price is width
(about 2x a fixed-n Wald interval for rates near 0.7 at 2,000 per arm); paying it is the point.

Construction (implemented here from the papers; the ``confseq`` library is not usable in this
environment because its sdist needs a C++/Boost build, so its unit-test values serve only as
reference values in ``tests/test_sequential.py``):

* Robbins (1970), "Statistical methods related to the law of the iterated logarithm"; Howard,
  Ramdas, McAuliffe & Sekhon (2021), "Time-uniform, nonparametric, nonasymptotic confidence
  sequences", Annals of Statistics 49(2). For a sum ``S_t`` of conditionally sub-Gaussian
  increments with variance process ``V_t``, mixing ``exp(lambda S - lambda^2 V / 2)`` over
  ``lambda ~ N(0, 1/rho)`` gives the nonnegative supermartingale

      M_t = sqrt(rho / (V_t + rho)) * exp(S_t^2 / (2 (V_t + rho)))

  and Ville's inequality, P(exists t: M_t >= 1/alpha) <= alpha, gives the two-sided normal mixture
  boundary ``|S_t| < sqrt((V_t + rho) log((V_t + rho) / (rho alpha^2)))`` for all t at once.
  ``rho`` sets where the boundary is tightest; the paper's (approximately) optimal choice for a
  target intrinsic time ``m`` is ``rho = m / (2 log(1/alpha) + log(1 + 2 log(1/alpha)))``.
* Two arms, counts only: each arm's sum is sub-Gaussian on its own (Hoeffding's lemma: a value in
  [lower, upper] has sigma = (upper - lower) / 2, so sigma = 1/2 for a thumbs-up). The product of
  the two arms' mixtures is a supermartingale in the joint stream whatever the order of arrivals;
  its confidence set for (mean_a, mean_b) is an ellipse, and projecting the ellipse on
  mean_a - mean_b gives a closed-form interval whose width scales with
  sqrt(sigma^2 (1/n_a + 1/n_b)), the fixed-n variance proxy of a difference of two means. Unlike
  pairing the i-th observations of the two arms, it uses every observation of an unbalanced split
  and needs only the counts.
* The always-valid p-value is the same martingale read the other way: ``p_t = min(1, 1/Lambda_t)``
  with a running minimum, where ``Lambda_t`` is the product mixture at the least favourable point
  of the null. ``p_t <= alpha`` exactly when the confidence sequence has excluded the null value,
  so verdict and p-value never disagree.

Assumptions, stated because the guarantee rests on them: observations within an arm are
independent draws (or at least conditionally sub-Gaussian around their mean given the past) and
which arm the next request goes to does not depend on the answers; if the true rate drifts, the
sequence covers the running average of the rates. ``rho`` must be fixed before the rollout (it is
set from a planned sample size, never from the data). The sub-Gaussian constant is worst-case
(sigma^2 = 1/4 is the variance of a fair coin), so for rates far from 0.5 the sequence is
conservative; it is never anti-conservative.

Latency (shadow traffic) is a fixed-sample comparison of two distributions: Mann-Whitney U for
unpaired samples and Wilcoxon signed-rank when candidate and production answered the same requests
(the usual shadow setup: pair them, an unpaired test on paired data is a bug).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_ALPHA = 0.05
PLANNED_N = 1000  # per arm: where the beta sequences are tightest unless the caller says otherwise
BERNOULLI_SIGMA = 0.5  # Hoeffding: a value in [0, 1] is sub-Gaussian with sigma = 1/2

# Vargha & Delaney (2000) magnitudes of the probability of superiority A = P(candidate > production):
# 0.56 small, 0.64 medium, 0.71 large. A latency regression of "small" size is marginal, "medium" fails.
LATENCY_MARGINAL_AT = 0.56
LATENCY_FAIL_AT = 0.64


# ---------------------------------------------------------------------------------------------------------------
# The normal mixture boundary (one stream)


def best_rho(v_opt: float, alpha: float = DEFAULT_ALPHA) -> float:
    """``rho`` that makes the two-sided normal mixture boundary (nearly) tightest at intrinsic time ``v_opt``.

    Howard et al. (2021): minimising the boundary at ``v_opt`` gives, to a close approximation,
    ``rho = v_opt / (2 log(1/alpha) + log(1 + 2 log(1/alpha)))``. Choosing it from a *planned*
    sample size keeps the sequence valid; choosing it from the data seen so far would not.
    """
    if v_opt <= 0:
        raise ValueError(f"v_opt must be positive, not {v_opt}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    two_log = 2 * math.log(1 / alpha)
    return v_opt / (two_log + math.log(1 + two_log))


def normal_mixture_boundary(v: Any, alpha: float = DEFAULT_ALPHA, rho: float = 1.0) -> Any:
    """Two-sided normal mixture boundary ``sqrt((v + rho) log((v + rho) / (rho alpha^2)))`` for a sum.

    With probability at least 1 - alpha, ``|S_t| < boundary(V_t)`` for every t simultaneously when
    ``S_t`` is a sum of centred, conditionally sub-Gaussian increments with variance process ``V_t``.
    Vectorised over ``v``.
    """
    if rho <= 0:
        raise ValueError(f"rho must be positive, not {rho}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    v = np.asarray(v, dtype=float)
    out = np.sqrt((v + rho) * np.log((v + rho) / (rho * alpha * alpha)))
    return float(out) if out.ndim == 0 else out


def normal_mixture_log_martingale(s: Any, v: Any, rho: float) -> Any:
    """log of the normal mixture supermartingale ``sqrt(rho/(v+rho)) exp(s^2 / (2(v+rho)))``.

    Crossing ``log(1/alpha)`` is exactly crossing :func:`normal_mixture_boundary`.
    """
    s, v = np.asarray(s, dtype=float), np.asarray(v, dtype=float)
    out = 0.5 * np.log(rho / (v + rho)) + s * s / (2 * (v + rho))
    return float(out) if out.ndim == 0 else out


@dataclass(frozen=True)
class MixtureCS:
    """A confidence sequence for one stream's mean: the interval after each of the first n observations."""

    t: np.ndarray
    mean: np.ndarray
    low: np.ndarray
    high: np.ndarray
    alpha: float
    rho: float


def normal_mixture_cs(x: Any, sigma: float, alpha: float = DEFAULT_ALPHA, *, n_opt: int = PLANNED_N,
                      rho: float | None = None) -> MixtureCS:
    """Confidence sequence for the mean of one stream of sub-Gaussian(``sigma``) observations.

    ``mean_t +/- boundary(sigma^2 t) / t`` holds for all t at once with probability 1 - alpha.
    ``rho`` defaults to :func:`best_rho` at the planned ``n_opt`` observations.
    """
    xs = np.asarray(x, dtype=float)
    if xs.ndim != 1 or len(xs) == 0:
        raise ValueError("x must be a non-empty one-dimensional sequence")
    if sigma <= 0:
        raise ValueError(f"sigma must be positive, not {sigma}")
    r = best_rho(sigma * sigma * n_opt, alpha) if rho is None else rho
    t = np.arange(1, len(xs) + 1)
    mean = np.cumsum(xs) / t
    radius = normal_mixture_boundary(sigma * sigma * t, alpha, r) / t
    return MixtureCS(t, mean, mean - radius, mean + radius, alpha, r)


# ---------------------------------------------------------------------------------------------------------------
# Two arms: beta minus production


def two_arm_rho(n_opt: float, sigma: float, alpha: float = DEFAULT_ALPHA) -> float:
    """Per-arm ``rho`` that makes the two-arm interval (nearly) tightest at ``n_opt`` observations per arm.

    The product of two mixtures pays ``log((V + rho)/rho)`` once per arm, so at a balanced split the
    width at ``n_opt`` is the one-stream objective at level ``sqrt(alpha)``: ``best_rho(sigma^2 n_opt,
    sqrt(alpha))``.
    """
    return best_rho(sigma * sigma * n_opt, math.sqrt(alpha))


def _spread_and_threshold(n_a: Any, n_b: Any, sigma: float, alpha: float, rho: float) -> tuple[Any, Any]:
    """Scale ``s`` of the projected ellipse (mean units) and its threshold ``c``; radius = sqrt(c) * s.

    Arm k's confidence set is ``n_k^2 (mean_k - mu_k)^2 / (V_k + rho) < ...`` with ``V_k = sigma^2 n_k``;
    jointly ``sum_k n_k^2 (mean_k - mu_k)^2 / (V_k + rho) < c`` with
    ``c = 2 log(1/alpha) + sum_k log((V_k + rho)/rho)``, and its shadow on ``mu_a - mu_b`` is
    ``+/- sqrt(c * sum_k (V_k + rho) / n_k^2)``. An empty arm makes the spread infinite.
    """
    n_a = np.asarray(n_a, dtype=float)
    n_b = np.asarray(n_b, dtype=float)
    s2 = sigma * sigma
    va, vb = s2 * n_a, s2 * n_b
    with np.errstate(divide="ignore", invalid="ignore"):
        spread2 = np.where((n_a > 0) & (n_b > 0),
                           (va + rho) / np.maximum(n_a, 1) ** 2 + (vb + rho) / np.maximum(n_b, 1) ** 2, np.inf)
    c = 2 * math.log(1 / alpha) + np.log((va + rho) / rho) + np.log((vb + rho) / rho)
    return np.sqrt(spread2), c


def two_arm_radius(n_a: Any, n_b: Any, sigma: float, alpha: float = DEFAULT_ALPHA, rho: float | None = None,
                   *, n_opt: int = PLANNED_N) -> Any:
    """Half-width of the anytime-valid interval of ``mean_a - mean_b`` at ``n_a``/``n_b`` observations.

    Vectorised over the counts (a whole monitoring history at once); infinite while an arm is empty.
    """
    r = two_arm_rho(n_opt, sigma, alpha) if rho is None else rho
    spread, c = _spread_and_threshold(n_a, n_b, sigma, alpha, r)
    out = np.sqrt(c) * spread
    return float(out) if np.ndim(out) == 0 else out


@dataclass(frozen=True)
class SequentialEstimate:
    """Beta minus production with an anytime-valid interval: valid however often it has been looked at."""

    diff: float
    low: float
    high: float
    n_a: int
    n_b: int
    alpha: float
    method: str
    sigma: float = BERNOULLI_SIGMA  # sub-Gaussian constant of one observation
    rho: float = 1.0  # mixture tuning, fixed before the rollout

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in d.items()}


def _diff_estimate(sum_a: float, n_a: int, sum_b: float, n_b: int, sigma: float, alpha: float, n_opt: int,
                   method: str) -> SequentialEstimate:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), not {alpha}")
    if n_opt < 1:
        raise ValueError(f"n_opt must be at least 1, not {n_opt}")
    rho = two_arm_rho(n_opt, sigma, alpha)
    span = 2 * sigma  # the difference of two means in [lower, upper] lies in [-span, span]
    if n_a == 0 or n_b == 0:
        return SequentialEstimate(math.nan, -span, span, n_a, n_b, alpha, method, sigma, rho)
    diff = sum_a / n_a - sum_b / n_b
    radius = two_arm_radius(n_a, n_b, sigma, alpha, rho)
    return SequentialEstimate(diff, max(-span, diff - radius), min(span, diff + radius), n_a, n_b, alpha, method,
                              sigma, rho)


def bernoulli_diff_cs(k_a: int, n_a: int, k_b: int, n_b: int, alpha: float = DEFAULT_ALPHA, *,
                      n_opt: int = PLANNED_N) -> SequentialEstimate:
    """Anytime-valid interval of the thumbs-up rate of arm a (beta) minus arm b (production), from counts.

    Each thumbs-up is a Bernoulli, sub-Gaussian with sigma = 1/2 whatever its rate; the interval is
    the two-arm normal mixture projection (module docstring), tightest near ``n_opt`` per arm.
    """
    for k, n, arm in ((k_a, n_a, "a"), (k_b, n_b, "b")):
        if n < 0 or not 0 <= k <= n:
            raise ValueError(f"arm {arm}: need 0 <= successes <= n, got {k} of {n}")
    return _diff_estimate(float(k_a), int(n_a), float(k_b), int(n_b), BERNOULLI_SIGMA, alpha, n_opt,
                          "normal-mixture CS, two-arm product (Bernoulli, sigma=1/2)")


def mean_diff_cs(x_a: Any, x_b: Any, lower: float, upper: float, alpha: float = DEFAULT_ALPHA, *,
                 n_opt: int = PLANNED_N) -> SequentialEstimate:
    """Anytime-valid interval of mean(x_a) - mean(x_b) for bounded values (e.g. 1-5 star ratings).

    Same construction as :func:`bernoulli_diff_cs` with sigma = (upper - lower)/2, the worst case for
    values confined to [lower, upper]; values outside the range are refused, since the guarantee
    rests on the bound.
    """
    if not upper > lower:
        raise ValueError(f"need lower < upper, got [{lower}, {upper}]")
    a, b = np.asarray(x_a, dtype=float).ravel(), np.asarray(x_b, dtype=float).ravel()
    for arr, arm in ((a, "a"), (b, "b")):
        if np.any(np.isnan(arr)) or np.any(arr < lower) or np.any(arr > upper):
            raise ValueError(f"arm {arm}: values must lie in [{lower}, {upper}]")
    sigma = (upper - lower) / 2
    return _diff_estimate(float(a.sum()), len(a), float(b.sum()), len(b), sigma, alpha, n_opt,
                          f"normal-mixture CS, two-arm product (bounded [{lower:g}, {upper:g}], sigma={sigma:g})")


def msprt_p_value(est: SequentialEstimate, margin: float = 0.0, previous: float = 1.0) -> float:
    """Always-valid p-value for H0: diff <= -margin (beta worse than production by at least the margin).

    ``Lambda_t`` is the two-arm product mixture at the least favourable null point on the line
    ``mu_a - mu_b = -margin``; minimising the quadratic form on that line gives
    ``log Lambda = sum_k 1/2 log(rho/(V_k + rho)) + (diff + margin)^2 / (2 s^2)``. When the estimate is
    on the null side the p-value is 1 (a larger null value only makes the mixture bigger, so the
    one-sided use stays valid). ``p = min(previous, 1, 1/Lambda)``: pass the last p to keep the
    running minimum across looks. ``p <= alpha`` exactly when ``est.low > -margin``.
    """
    if est.n_a == 0 or est.n_b == 0 or math.isnan(est.diff):
        return min(previous, 1.0)
    gap = est.diff + margin
    if gap <= 0:
        return min(previous, 1.0)
    spread, c = _spread_and_threshold(est.n_a, est.n_b, est.sigma, est.alpha, est.rho)
    log_penalty = float(c) - 2 * math.log(1 / est.alpha)  # sum_k log((V_k + rho)/rho)
    log_lambda = -0.5 * log_penalty + gap * gap / (2 * float(spread) ** 2)
    return min(previous, 1.0, math.exp(-log_lambda) if log_lambda < 700 else 0.0)


# ---------------------------------------------------------------------------------------------------------------
# The beta verdict


@dataclass(frozen=True)
class BetaVerdict:
    """pass / fail / inconclusive for non-inferiority of the beta arm, with a sentence a person can read."""

    verdict: str
    reason: str
    p_value: float  # always valid, for H0: diff <= -margin
    more_per_arm: int | None  # inconclusive only: estimated further observations per arm; None if none would do

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def observations_to_decide(est: SequentialEstimate, margin: float, max_n: int = 10**9) -> int | None:
    """Roughly how many more observations per arm would make the current difference decisive.

    An estimate, not a power calculation: it assumes the point estimate stays where it is and both
    arms grow by the same amount, and finds the smallest extra n at which the interval's radius is
    below the distance from the estimate to ``-margin``. None when the estimate sits on the margin
    (no amount of data decides it at this estimate) or more than ``max_n`` would be needed.
    """
    if math.isnan(est.diff):
        return None
    gap = abs(est.diff + margin)
    if gap == 0:
        return None

    def decisive(extra: int) -> bool:
        return two_arm_radius(est.n_a + extra, est.n_b + extra, est.sigma, est.alpha, est.rho) < gap

    if decisive(0):
        return 0
    hi = 1
    while not decisive(hi):
        hi *= 2
        if hi > max_n:
            return None
    lo = hi // 2  # not decisive at lo (or lo == 0), decisive at hi; the radius falls as n grows
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decisive(mid) else (mid, hi)
    return hi


def beta_verdict(est: SequentialEstimate, margin: float, min_n: int = 0) -> BetaVerdict:
    """Non-inferiority of beta against production within ``margin``, judged on the anytime-valid interval.

    pass: the lower bound is above -margin (beta is at most ``margin`` worse, at any look);
    fail: the upper bound is below -margin (beta is worse by more than the margin);
    inconclusive: the interval contains -margin, or either arm has fewer than ``min_n`` observations
    (a guard against reading the first handful of requests, whatever the interval says).
    """
    if margin < 0:
        raise ValueError(f"margin must be >= 0, not {margin}")
    p = msprt_p_value(est, margin)
    level = f"{1 - est.alpha:.0%}"
    shown = (f"difference {est.diff:+.3f} (anytime-valid {level} CS {est.low:+.3f} to {est.high:+.3f}, "
             f"n = {est.n_a:,} beta / {est.n_b:,} production)" if not math.isnan(est.diff)
             else f"no difference yet (n = {est.n_a:,} beta / {est.n_b:,} production)")
    short = min(est.n_a, est.n_b)
    if short < min_n:
        more = observations_to_decide(est, margin)
        need = min_n - short if more is None else max(min_n - short, more)
        return BetaVerdict("inconclusive", f"Too early to judge: {shown}; each arm needs at least {min_n:,} "
                           f"observations, so about {need:,} more per arm (an estimate).", p, need)
    if est.low > -margin:
        return BetaVerdict("pass", f"Beta is non-inferior: {shown} stays above -{margin:.3f}; "
                           f"p (always valid) = {p:.3g}.", p, None)
    if est.high < -margin:
        return BetaVerdict("fail", f"Beta is worse than production by more than the margin: {shown} lies below "
                           f"-{margin:.3f}.", p, None)
    more = observations_to_decide(est, margin)
    if more is None:
        tail = "the estimate sits on the margin, so more data at this estimate would not decide it"
    else:
        tail = (f"about {more:,} more observations per arm would decide it if the difference stays where it is "
                f"(an estimate, not a guarantee)")
    return BetaVerdict("inconclusive", f"Not decided yet: {shown} contains -{margin:.3f}; {tail}.", p, more)


# ---------------------------------------------------------------------------------------------------------------
# Latency (shadow traffic)


def classify_latency(p_value: float, prob_slower: float, alpha: float = DEFAULT_ALPHA,
                     marginal_at: float = LATENCY_MARGINAL_AT, fail_at: float = LATENCY_FAIL_AT) -> str:
    """Kayenta-style call: a regression must be both significant and large enough to matter.

    ``prob_slower`` is the probability of superiority P(candidate slower than production) (ties half).
    Significant (p < alpha) and ``prob_slower >= fail_at`` (Vargha-Delaney "medium", 0.64) fails;
    significant and ``>= marginal_at`` ("small", 0.56) is marginal; anything else passes, including a
    significantly *faster* candidate.
    """
    if not 0.5 <= marginal_at <= fail_at <= 1:
        raise ValueError("need 0.5 <= marginal_at <= fail_at <= 1")
    if math.isnan(p_value) or p_value >= alpha:
        return "pass"
    if prob_slower >= fail_at:
        return "fail"
    if prob_slower >= marginal_at:
        return "marginal"
    return "pass"


@dataclass(frozen=True)
class LatencyComparison:
    """Candidate vs production latency on *different* requests (unpaired): Mann-Whitney U."""

    n_candidate: int
    n_production: int
    u_statistic: float  # U of the candidate sample: pairs where the candidate is slower, ties half
    p_value: float  # two-sided
    prob_slower: float  # U / (n_candidate * n_production) = P(candidate > production) + P(tie)/2
    median_candidate: float
    median_production: float
    median_ratio: float  # candidate / production
    classification: str
    test: str = "mann-whitney-u (unpaired)"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class PairedLatencyComparison:
    """Candidate vs production latency on the *same* requests (shadow traffic): Wilcoxon signed-rank."""

    n: int
    statistic: float
    p_value: float  # two-sided
    prob_slower: float  # share of requests where the candidate was slower, ties half
    median_difference_ms: float  # median of candidate - production over requests
    median_candidate: float
    median_production: float
    median_ratio: float
    classification: str
    test: str = "wilcoxon-signed-rank (paired)"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _latencies(values: Any, name: str) -> np.ndarray:
    x = np.asarray(values, dtype=float).ravel()
    if len(x) == 0:
        raise ValueError(f"{name}: no latencies")
    if np.any(~np.isfinite(x)) or np.any(x < 0):
        raise ValueError(f"{name}: latencies must be finite and non-negative")
    return x


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 else math.nan


def latency_comparison(candidate_ms: Any, production_ms: Any, *, alpha: float = DEFAULT_ALPHA,
                       marginal_at: float = LATENCY_MARGINAL_AT, fail_at: float = LATENCY_FAIL_AT) -> LatencyComparison:
    """Compare two *unpaired* latency samples (e.g. canary vs baseline on different requests).

    Mann-Whitney U (two-sided) tests whether one distribution tends to be slower; the effect size is
    the common-language probability of superiority U/(n1 n2). Latency is skewed and heavy-tailed, so
    the comparison is rank-based and the summary is the ratio of medians, not of means. Requests
    served by both systems are paired: use :func:`paired_latency_comparison` for them.
    """
    from scipy.stats import mannwhitneyu

    c, p = _latencies(candidate_ms, "candidate_ms"), _latencies(production_ms, "production_ms")
    res = mannwhitneyu(c, p, alternative="two-sided")
    u = float(res.statistic)
    prob = u / (len(c) * len(p))
    pv = float(res.pvalue)
    mc, mp = float(np.median(c)), float(np.median(p))
    return LatencyComparison(len(c), len(p), u, pv, prob, mc, mp, _ratio(mc, mp),
                             classify_latency(pv, prob, alpha, marginal_at, fail_at))


def paired_latency_comparison(candidate_ms: Any, production_ms: Any, *, alpha: float = DEFAULT_ALPHA,
                              marginal_at: float = LATENCY_MARGINAL_AT,
                              fail_at: float = LATENCY_FAIL_AT) -> PairedLatencyComparison:
    """Compare latencies of the same requests served by both (shadow traffic), pair by pair.

    Wilcoxon signed-rank on the differences (zero differences dropped, as Wilcoxon's original and
    ``harness.stats``); pairing removes the request-to-request variation (long prompts are slow on
    both), so it detects far smaller regressions than an unpaired test. The effect size is the share
    of requests where the candidate was slower, classified with the same thresholds.
    """
    from scipy.stats import wilcoxon

    c, p = _latencies(candidate_ms, "candidate_ms"), _latencies(production_ms, "production_ms")
    if c.shape != p.shape:
        raise ValueError("paired latencies must have the same length")
    d = c - p
    if np.all(d == 0):
        stat, pv = 0.0, 1.0
    else:
        res = wilcoxon(c, p, zero_method="wilcox", alternative="two-sided")
        stat, pv = float(res.statistic), float(res.pvalue)
    prob = float(np.mean(d > 0) + 0.5 * np.mean(d == 0))
    mc, mp = float(np.median(c)), float(np.median(p))
    return PairedLatencyComparison(len(d), stat, pv, prob, float(np.median(d)), mc, mp, _ratio(mc, mp),
                                   classify_latency(pv, prob, alpha, marginal_at, fail_at))
