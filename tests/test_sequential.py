"""Anytime-valid beta statistics and the latency comparison: the boundary against its closed form and
confseq's reference values, seeded simulations of peeking (error rate, coverage, power, p-values),
the verdict's three outcomes, and the latency tests against scipy and hand-computed examples."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import mannwhitneyu, norm, wilcoxon

from rollout.sequential import (
    BERNOULLI_SIGMA,
    LATENCY_FAIL_AT,
    LATENCY_MARGINAL_AT,
    SequentialEstimate,
    bernoulli_diff_cs,
    best_rho,
    beta_verdict,
    classify_latency,
    latency_comparison,
    mean_diff_cs,
    msprt_p_value,
    normal_mixture_boundary,
    normal_mixture_cs,
    normal_mixture_log_martingale,
    observations_to_decide,
    paired_latency_comparison,
    two_arm_radius,
    two_arm_rho,
)

ALPHA = 0.05
REPS = 400
N_PER_ARM = 2000
EVERY = 20  # look after every batch of 20 observations per arm: 100 looks


def mc_ceiling(rate: float, reps: int) -> float:
    """Nominal rate plus three Monte Carlo standard errors: a simulated rate above it is a real excess."""
    return rate + 3 * math.sqrt(rate * (1 - rate) / reps)


def bernoulli_looks(seed: int, p_a: float, p_b: float, reps: int = REPS, n: int = N_PER_ARM,
                    every: int = EVERY) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative successes of both arms at each look (reps x looks) and the per-arm n at each look."""
    rng = np.random.default_rng(seed)
    ka = np.cumsum(rng.random((reps, n)) < p_a, axis=1)[:, every - 1::every]
    kb = np.cumsum(rng.random((reps, n)) < p_b, axis=1)[:, every - 1::every]
    return ka, kb, np.arange(every, n + 1, every)


def naive_z_radius(ka: np.ndarray, kb: np.ndarray, n: np.ndarray) -> np.ndarray:
    """The fixed-n 95% Wald interval of a difference of proportions, as if each look were the only one."""
    pa, pb = ka / n, kb / n
    return norm.ppf(1 - ALPHA / 2) * np.sqrt(pa * (1 - pa) / n + pb * (1 - pb) / n)


# ---------------------------------------------------------------------------------------------------------------
# The boundary


@pytest.mark.parametrize("v", [0.5, 1, 10, 100, 1234.5, 1e6])
@pytest.mark.parametrize("alpha", [0.01, 0.05, 0.2])
@pytest.mark.parametrize("rho", [0.1, 1, 12.6, 500])
def test_boundary_is_the_closed_form(v, alpha, rho):
    expected = math.sqrt((v + rho) * math.log((v + rho) / (rho * alpha**2)))
    assert normal_mixture_boundary(v, alpha, rho) == pytest.approx(expected, rel=1e-12)


def test_boundary_vectorised_matches_scalar():
    v = np.array([1.0, 10.0, 1000.0])
    out = normal_mixture_boundary(v, 0.05, 3.0)
    assert out.shape == (3,)
    assert list(out) == pytest.approx([normal_mixture_boundary(float(x), 0.05, 3.0) for x in v], rel=1e-12)


def test_against_confseq_reference_values():
    # gostevehoward/confseq, test/uniform_boundaries_unittest.cpp, TestTwoSidedNormalMixture ("all target
    # values are from a reference implementation in R"): best_rho(100, 0.05) = 12.60056,
    # log_superMG(s=10, v=100) = -0.6510052, bound(v=100, log(1/0.05)) = 30.35209.
    rho = best_rho(100, 0.05)
    assert rho == pytest.approx(12.60056, abs=1e-5)
    assert normal_mixture_log_martingale(10, 100, rho) == pytest.approx(-0.6510052, abs=1e-5)
    assert normal_mixture_boundary(100, 0.05, rho) == pytest.approx(30.35209, abs=1e-5)


def test_best_rho_closed_form_by_hand():
    # rho = m / (2 log(1/alpha) + log(1 + 2 log(1/alpha))), worked for m = 500, alpha = 0.01.
    two_log = 2 * math.log(100)
    assert best_rho(500, 0.01) == pytest.approx(500 / (two_log + math.log(1 + two_log)), rel=1e-12)


@pytest.mark.parametrize(("v_opt", "alpha"), [(50, 0.05), (250, 0.05), (1000, 0.01), (5000, 0.1)])
def test_best_rho_makes_the_boundary_nearly_tightest_at_the_planned_time(v_opt, alpha):
    grid = np.geomspace(v_opt / 1000, v_opt * 10, 20_000)
    bounds = np.sqrt((v_opt + grid) * np.log((v_opt + grid) / (grid * alpha**2)))
    assert normal_mixture_boundary(v_opt, alpha, best_rho(v_opt, alpha)) <= bounds.min() * 1.002


def test_two_arm_rho_makes_the_interval_nearly_tightest_at_the_planned_n():
    grid = np.geomspace(0.5, 5000, 5000)
    radii = [two_arm_radius(1000, 1000, 0.5, ALPHA, r) for r in grid]
    assert two_arm_radius(1000, 1000, 0.5, ALPHA, two_arm_rho(1000, 0.5, ALPHA)) <= min(radii) * 1.002


def test_log_martingale_crosses_log_one_over_alpha_exactly_at_the_boundary():
    for v, rho in [(5.0, 1.0), (100.0, 12.6), (4000.0, 300.0)]:
        b = normal_mixture_boundary(v, ALPHA, rho)
        assert normal_mixture_log_martingale(b, v, rho) == pytest.approx(math.log(1 / ALPHA), rel=1e-12)
        assert normal_mixture_log_martingale(-b, v, rho) == pytest.approx(math.log(1 / ALPHA), rel=1e-12)


def test_two_arm_radius_closed_form_by_hand():
    # Product of the arms' mixtures, projected on mu_a - mu_b:
    # sqrt((2 log(1/alpha) + sum log((V_k + rho)/rho)) * sum (V_k + rho) / n_k^2), V_k = sigma^2 n_k.
    n_a, n_b, sigma, rho = 300, 1700, 0.5, 40.0
    va, vb = sigma**2 * n_a, sigma**2 * n_b
    c = 2 * math.log(1 / ALPHA) + math.log((va + rho) / rho) + math.log((vb + rho) / rho)
    expected = math.sqrt(c * ((va + rho) / n_a**2 + (vb + rho) / n_b**2))
    assert two_arm_radius(n_a, n_b, sigma, ALPHA, rho) == pytest.approx(expected, rel=1e-12)
    assert math.isinf(two_arm_radius(0, 10, sigma, ALPHA, rho))


def test_two_arm_radius_shrinks_like_the_fixed_n_variance_proxy():
    # Up to the slowly growing log term the width follows sqrt(sigma^2 (1/n_a + 1/n_b)).
    n = np.array([1000, 4000, 16000])
    r = two_arm_radius(n, n, 0.5)
    assert np.all(np.diff(r) < 0)
    assert 1.6 < r[0] / r[1] < 2.0 and 1.6 < r[1] / r[2] < 2.0  # a factor 2 per 4x n, minus the log's growth


# ---------------------------------------------------------------------------------------------------------------
# One stream


def test_one_stream_cs_is_time_uniform_and_a_fixed_n_interval_is_not():
    rng = np.random.default_rng(11)
    reps, n = 300, 2000
    x = rng.normal(0.0, 1.0, size=(reps, n))
    ever_cs = 0
    for row in x:
        cs = normal_mixture_cs(row, sigma=1.0, alpha=ALPHA, n_opt=500)
        ever_cs += bool(np.any((cs.low > 0) | (cs.high < 0)))
    t = np.arange(1, n + 1)
    z = np.abs(np.cumsum(x, axis=1) / t) > norm.ppf(0.975) / np.sqrt(t)
    ever_z = np.mean(np.any(z[:, 9::10], axis=1))  # the fixed-n interval, checked every 10 observations
    assert ever_cs / reps <= mc_ceiling(ALPHA, reps)
    assert ever_z > 2 * ALPHA


def test_one_stream_cs_fields():
    cs = normal_mixture_cs([1.0, 0.0, 1.0, 1.0], sigma=0.5, n_opt=100)
    assert list(cs.mean) == pytest.approx([1.0, 0.5, 2 / 3, 0.75])
    assert cs.rho == pytest.approx(best_rho(0.25 * 100, ALPHA))
    radius = normal_mixture_boundary(0.25 * 4, ALPHA, cs.rho) / 4
    assert cs.high[-1] - cs.mean[-1] == pytest.approx(radius)
    with pytest.raises(ValueError):
        normal_mixture_cs([], sigma=1.0)


# ---------------------------------------------------------------------------------------------------------------
# Two arms: simulations of peeking


def test_peeking_under_no_difference_keeps_the_false_alarm_rate_and_the_naive_interval_does_not():
    ka, kb, n = bernoulli_looks(1, 0.7, 0.7)
    diff = (ka - kb) / n
    radius = two_arm_radius(n, n, BERNOULLI_SIGMA, ALPHA)
    cs_ever = np.mean(np.any(np.abs(diff) >= radius, axis=1))
    naive_ever = np.mean(np.any(np.abs(diff) >= naive_z_radius(ka, kb, n), axis=1))
    naive_last = np.mean(np.abs(diff[:, -1]) >= naive_z_radius(ka, kb, n)[:, -1])
    assert cs_ever <= mc_ceiling(ALPHA, REPS)
    assert naive_ever > 2 * ALPHA  # the reason this module exists
    assert naive_last <= mc_ceiling(ALPHA, REPS)  # the naive interval is fine at one pre-planned look


def test_peeking_at_the_worst_case_rate_of_one_half():
    # p = 1/2 is where sigma = 1/2 is tight (no slack from the sub-Gaussian bound).
    ka, kb, n = bernoulli_looks(2, 0.5, 0.5)
    radius = two_arm_radius(n, n, BERNOULLI_SIGMA, ALPHA)
    assert np.mean(np.any(np.abs((ka - kb) / n) >= radius, axis=1)) <= mc_ceiling(ALPHA, REPS)


def test_coverage_of_a_non_null_difference_at_every_look_with_an_unbalanced_random_split():
    # Beta gets each request with probability 0.25, so n_a and n_b differ and drift at random.
    rng = np.random.default_rng(3)
    reps, units, p_a, p_b = REPS, 6000, 0.55, 0.45
    to_a = rng.random((reps, units)) < 0.25
    y = np.where(to_a, rng.random((reps, units)) < p_a, rng.random((reps, units)) < p_b)
    looks = slice(99, units, 50)
    n_a = np.cumsum(to_a, axis=1)[:, looks]
    n_b = np.cumsum(~to_a, axis=1)[:, looks]
    s_a = np.cumsum(y & to_a, axis=1)[:, looks]
    s_b = np.cumsum(y & ~to_a, axis=1)[:, looks]
    diff = s_a / np.maximum(n_a, 1) - s_b / np.maximum(n_b, 1)
    radius = two_arm_radius(n_a, n_b, BERNOULLI_SIGMA, ALPHA)
    covered_always = np.all(np.abs(diff - (p_a - p_b)) < radius, axis=1)
    assert np.mean(covered_always) >= 1 - ALPHA - 3 * math.sqrt(ALPHA * (1 - ALPHA) / reps)
    assert np.all(n_a > 0)


def test_power_for_a_ten_point_difference_and_the_price_of_peeking():
    ka, kb, _ = bernoulli_looks(4, 0.75, 0.65)
    ests = [bernoulli_diff_cs(int(a), N_PER_ARM, int(b), N_PER_ARM) for a, b in zip(ka[:, -1], kb[:, -1], strict=True)]
    assert np.mean([e.low > 0 for e in ests]) > 0.9
    cs_radius = two_arm_radius(N_PER_ARM, N_PER_ARM, BERNOULLI_SIGMA, ALPHA)
    fixed_radius = np.mean(naive_z_radius(ka[:, -1], kb[:, -1], N_PER_ARM))
    assert 1.0 < cs_radius / fixed_radius < 2.5


def test_bernoulli_estimate_fields_and_clipping():
    e = bernoulli_diff_cs(1400, 2000, 1300, 2000)
    assert e.diff == pytest.approx(0.05)
    radius = two_arm_radius(2000, 2000, 0.5, ALPHA, two_arm_rho(1000, 0.5, ALPHA))
    assert (e.low, e.high) == pytest.approx((0.05 - radius, 0.05 + radius))
    assert (e.n_a, e.n_b, e.alpha, e.sigma) == (2000, 2000, ALPHA, 0.5)
    tiny = bernoulli_diff_cs(3, 3, 0, 3)
    assert (tiny.low, tiny.high) == (pytest.approx(-1.0), 1.0)  # clipped to the range of a difference
    empty = bernoulli_diff_cs(0, 0, 5, 10)
    assert math.isnan(empty.diff) and (empty.low, empty.high) == (-1.0, 1.0)
    assert empty.as_dict()["diff"] is None
    for bad in [(5, 4, 1, 4), (-1, 4, 1, 4), (1, 4, 1, -4)]:
        with pytest.raises(ValueError):
            bernoulli_diff_cs(*bad)


def test_a_larger_planned_n_trades_early_width_for_late_width():
    early_small, early_big = (two_arm_radius(100, 100, 0.5, n_opt=k) for k in (100, 10_000))
    late_small, late_big = (two_arm_radius(10_000, 10_000, 0.5, n_opt=k) for k in (100, 10_000))
    assert early_small < early_big and late_big < late_small


# ---------------------------------------------------------------------------------------------------------------
# Bounded ratings


def test_mean_diff_cs_on_zero_one_values_is_the_bernoulli_interval():
    rng = np.random.default_rng(5)
    a, b = rng.random(300) < 0.6, rng.random(500) < 0.5
    m = mean_diff_cs(a, b, 0, 1)
    e = bernoulli_diff_cs(int(a.sum()), 300, int(b.sum()), 500)
    assert (m.diff, m.low, m.high) == pytest.approx((e.diff, e.low, e.high))


def test_ratings_use_sigma_half_the_range_and_hold_under_peeking():
    m = mean_diff_cs([5, 4, 3, 5], [1, 2, 3], 1, 5)
    assert m.sigma == 2.0 and m.diff == pytest.approx(4.25 - 2.0)
    # Stars skewed towards 4-5, the same distribution in both arms, looked at every 20 ratings.
    rng = np.random.default_rng(6)
    probs = [0.05, 0.05, 0.15, 0.35, 0.4]
    xa = rng.choice(np.arange(1, 6), p=probs, size=(REPS, 1000))
    xb = rng.choice(np.arange(1, 6), p=probs, size=(REPS, 1000))
    n = np.arange(20, 1001, 20)
    diff = (np.cumsum(xa, axis=1) - np.cumsum(xb, axis=1))[:, 19::20] / n
    radius = two_arm_radius(n, n, 2.0, ALPHA)
    assert np.mean(np.any(np.abs(diff) >= radius, axis=1)) <= mc_ceiling(ALPHA, REPS)
    with pytest.raises(ValueError):
        mean_diff_cs([0, 3], [3], 1, 5)
    with pytest.raises(ValueError):
        mean_diff_cs([2], [3], 5, 1)


# ---------------------------------------------------------------------------------------------------------------
# Always-valid p-value


def test_always_valid_p_value_under_peeking_at_the_least_favourable_null():
    margin = 0.05
    ka, kb, n = bernoulli_looks(7, 0.65, 0.70, reps=300)  # true diff = -margin: the hardest null
    rejected = 0
    naive_rejected = 0
    for a_row, b_row in zip(ka, kb, strict=True):
        p = 1.0
        for a, b, m in zip(a_row, b_row, n, strict=True):
            p = msprt_p_value(bernoulli_diff_cs(int(a), int(m), int(b), int(m)), margin, previous=p)
        rejected += p <= ALPHA
        z = ((a_row - b_row) / n + margin) / np.sqrt(0.65 * 0.35 / n + 0.7 * 0.3 / n)
        naive_rejected += bool(np.any(norm.sf(z) <= ALPHA))
    assert rejected / 300 <= mc_ceiling(ALPHA, 300)
    assert naive_rejected / 300 > 2 * ALPHA


def test_p_value_is_the_dual_of_the_confidence_sequence():
    rng = np.random.default_rng(8)
    for _ in range(300):
        n_a, n_b = (int(x) for x in rng.integers(1, 3000, size=2))
        e = bernoulli_diff_cs(int(rng.binomial(n_a, 0.6)), n_a, int(rng.binomial(n_b, 0.58)), n_b)
        for margin in (0.0, 0.02, 0.05):
            p = msprt_p_value(e, margin)
            if abs(e.low + margin) > 1e-9:
                assert (p <= ALPHA) == (e.low > -margin)


def test_p_value_running_minimum_and_null_side():
    e = bernoulli_diff_cs(1500, 2000, 1300, 2000)
    p = msprt_p_value(e, 0.0)
    assert 0 < p < 1e-6
    # by hand: -1/2 sum log((V+rho)/rho) + gap^2 / (2 s^2), s^2 = sum (V + rho) / n^2
    v, rho = 0.25 * 2000, e.rho
    log_lambda = -math.log((v + rho) / rho) + 0.1**2 / (2 * 2 * (v + rho) / 2000**2)
    assert p == pytest.approx(math.exp(-log_lambda), rel=1e-9)
    assert msprt_p_value(bernoulli_diff_cs(1300, 2000, 1500, 2000), 0.05) == 1.0
    assert msprt_p_value(bernoulli_diff_cs(1300, 2000, 1500, 2000), 0.05, previous=0.01) == 0.01
    assert msprt_p_value(bernoulli_diff_cs(0, 0, 1, 2), 0.05) == 1.0


# ---------------------------------------------------------------------------------------------------------------
# beta_verdict


def test_verdict_pass():
    v = beta_verdict(bernoulli_diff_cs(1420, 2000, 1400, 2000), margin=0.05, min_n=500)
    assert v.verdict == "pass" and v.more_per_arm is None
    assert v.p_value <= ALPHA and "non-inferior" in v.reason and "always valid" in v.reason


def test_verdict_fail():
    v = beta_verdict(bernoulli_diff_cs(1100, 2000, 1400, 2000), margin=0.05, min_n=500)
    assert v.verdict == "fail" and v.more_per_arm is None and v.p_value == 1.0
    assert "more than the margin" in v.reason


def test_verdict_inconclusive_says_how_many_more():
    est = bernoulli_diff_cs(700, 1000, 690, 1000)
    v = beta_verdict(est, margin=0.02, min_n=100)
    assert v.verdict == "inconclusive" and v.more_per_arm is not None and v.more_per_arm > 0
    assert f"{v.more_per_arm:,}" in v.reason and "estimate" in v.reason


def test_verdict_below_min_n_is_inconclusive_even_when_the_interval_decides():
    est = bernoulli_diff_cs(290, 300, 100, 300)  # overwhelming, but the beta has only 300 observations
    assert est.low > 0
    v = beta_verdict(est, margin=0.05, min_n=1000)
    assert v.verdict == "inconclusive" and v.more_per_arm == 700 and "1,000" in v.reason
    assert beta_verdict(est, margin=0.05, min_n=300).verdict == "pass"


def test_verdict_on_the_margin_cannot_be_decided_by_more_data():
    v = beta_verdict(bernoulli_diff_cs(650, 1000, 700, 1000), margin=0.05)
    assert v.verdict == "inconclusive" and v.more_per_arm is None and "sits on the margin" in v.reason


def test_verdict_refuses_a_negative_margin():
    with pytest.raises(ValueError):
        beta_verdict(bernoulli_diff_cs(1, 2, 1, 2), margin=-0.1)


def test_more_observations_is_positive_shrinks_as_n_grows_and_is_the_first_decisive_n():
    margin = 0.02
    needed = []
    for n in (200, 400, 800, 1600):
        est = bernoulli_diff_cs(int(0.71 * n), n, int(0.70 * n), n)  # the same rates at every n
        more = observations_to_decide(est, margin)
        assert more is not None and more > 0
        gap = est.diff + margin
        assert two_arm_radius(n + more, n + more, 0.5, ALPHA, est.rho) < gap
        assert two_arm_radius(n + more - 1, n + more - 1, 0.5, ALPHA, est.rho) >= gap
        needed.append(more)
    assert needed == sorted(needed, reverse=True) and len(set(needed)) == 4
    # Taking the estimate at its word: with the same rates at n + more (rounded up to whole percents), it passes.
    n = math.ceil((400 + needed[1]) / 100) * 100
    assert beta_verdict(bernoulli_diff_cs(round(0.71 * n), n, round(0.70 * n), n), margin).verdict == "pass"


def test_estimate_carries_what_the_projection_needs():
    est = SequentialEstimate(0.0, -0.1, 0.1, 100, 100, ALPHA, "test", 0.5, 10.0)
    assert est.as_dict()["rho"] == 10.0
    assert observations_to_decide(est, 0.05) > 0


# ---------------------------------------------------------------------------------------------------------------
# Latency


def test_latency_matches_scipy():
    rng = np.random.default_rng(9)
    cand = rng.lognormal(np.log(220), 0.4, size=400)
    prod = rng.lognormal(np.log(200), 0.4, size=500)
    r = latency_comparison(cand, prod)
    ref = mannwhitneyu(cand, prod, alternative="two-sided")
    assert r.u_statistic == ref.statistic and r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.prob_slower == pytest.approx(ref.statistic / (400 * 500))
    # U/(n1 n2) is P(candidate > production) + P(tie)/2, counted over all pairs
    assert r.prob_slower == pytest.approx(np.mean(cand[:, None] > prod[None, :]))
    assert r.median_ratio == pytest.approx(np.median(cand) / np.median(prod))
    assert (r.n_candidate, r.n_production) == (400, 500)


def test_latency_hand_examples():
    # Every candidate latency above every production one: U = n1 n2 = 6; exact two-sided p = 2 / C(5, 2) = 0.2.
    r = latency_comparison([300, 400, 500], [100, 200])
    assert (r.u_statistic, r.prob_slower, r.p_value) == (6.0, 1.0, pytest.approx(0.2))
    assert (r.median_candidate, r.median_production, r.median_ratio) == (400.0, 150.0, pytest.approx(400 / 150))
    assert r.classification == "pass"  # all slower, but 5 requests cannot show it at 5%
    # Ties count half: pairs (2,2) tie 0.5, (2,4) 0, (3,2) 1, (3,4) 0 -> U = 1.5 of 4 pairs.
    r = latency_comparison([2.0, 3.0], [2.0, 4.0])
    assert r.u_statistic == pytest.approx(1.5) and r.prob_slower == pytest.approx(1.5 / 4)


@pytest.mark.parametrize(("p", "prob", "expected"), [
    (0.2, 0.9, "pass"),  # not significant: no call, however large it looks
    (0.01, 0.50, "pass"),
    (0.01, LATENCY_MARGINAL_AT - 1e-9, "pass"),
    (0.01, LATENCY_MARGINAL_AT, "marginal"),
    (0.01, LATENCY_FAIL_AT - 1e-9, "marginal"),
    (0.01, LATENCY_FAIL_AT, "fail"),
    (0.01, 0.2, "pass"),  # significantly faster
    (ALPHA, 0.9, "pass"),  # p must be below alpha
])
def test_latency_classification_thresholds(p, prob, expected):
    assert classify_latency(p, prob) == expected


def test_latency_classification_end_to_end():
    rng = np.random.default_rng(10)
    base = rng.lognormal(np.log(200), 0.3, size=3000)
    same = rng.lognormal(np.log(200), 0.3, size=3000)
    assert latency_comparison(same, base).classification == "pass"
    # lognormal sigma 0.3: a 10% slowdown is P(slower) = Phi(log 1.1 / (0.3 sqrt 2)) = 0.59, a 30% one 0.73
    assert latency_comparison(base * 1.1, rng.lognormal(np.log(200), 0.3, size=3000)).classification == "marginal"
    assert latency_comparison(base * 1.3, rng.lognormal(np.log(200), 0.3, size=3000)).classification == "fail"
    with pytest.raises(ValueError):
        latency_comparison([], [1.0])
    with pytest.raises(ValueError):
        latency_comparison([1.0, float("nan")], [1.0])


def test_paired_latency_matches_scipy_wilcoxon():
    rng = np.random.default_rng(12)
    prod = rng.lognormal(np.log(200), 0.5, size=300)
    cand = prod * rng.lognormal(0.03, 0.05, size=300)  # same requests, about 3% slower
    r = paired_latency_comparison(cand, prod)
    ref = wilcoxon(cand, prod, zero_method="wilcox", alternative="two-sided")
    assert r.statistic == ref.statistic and r.p_value == pytest.approx(ref.pvalue, rel=1e-12)
    assert r.median_difference_ms == pytest.approx(np.median(cand - prod))
    assert r.prob_slower == pytest.approx(np.mean(cand > prod))
    assert r.n == 300 and r.p_value < 1e-6
    # the unpaired test on the same (paired) data sees nothing: request-to-request spread swamps a 3% shift
    assert latency_comparison(cand, prod).p_value > 0.05


def test_paired_latency_hand_example():
    # Differences +10, +20, -5, +30, 0: the zero is dropped; ranks of |d| = 2, 3, 1, 4;
    # W = min(sum of positive ranks 9, sum of negative ranks 1) = 1; exact two-sided p = 2 * 2/16 = 0.25.
    cand = [110, 220, 295, 430, 500]
    prod = [100, 200, 300, 400, 500]
    r = paired_latency_comparison(cand, prod)
    assert r.statistic == 1.0 and r.p_value == pytest.approx(0.25)
    assert r.median_difference_ms == 10.0 and r.prob_slower == pytest.approx((3 + 0.5) / 5)
    same = paired_latency_comparison([1.0, 2.0], [1.0, 2.0])
    assert (same.p_value, same.classification) == (1.0, "pass")
    with pytest.raises(ValueError):
        paired_latency_comparison([1.0, 2.0], [1.0])
