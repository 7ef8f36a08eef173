"""Paired statistics: McNemar, Wilcoxon, paired bootstrap, Holm and sample sizes against statsmodels, scipy,
formulas computed independently here, published values, and seeded simulations of size, power and coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.stats import binom, binomtest, fisher_exact, mannwhitneyu, norm, ttest_1samp, wilcoxon
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.multitest import multipletests
from statsmodels.stats.power import NormalIndPower

from harness.stats import (
    Comparison,
    bootstrap_means,
    bootstrap_p_value,
    holm,
    mcnemar_exact,
    mean_sample_size,
    mean_shift_test,
    minimum_detectable_effect,
    paired_compare,
    paired_noninferiority_test,
    paired_sample_size,
    percentile_ci,
    unpaired_compare,
)

SMALL = [0, 1, 2, 3, 5, 8, 13]
LARGE = [50, 99, 100, 101, 500, 1000, 3000]
BC_GRID = sorted({(b, c) for b in SMALL for c in SMALL}
                 | {(b, c) for b in LARGE for c in LARGE}
                 | {(0, 1000), (1000, 0), (1, 2999), (12, 2), (2, 12), (30, 70)})


def _pairs(b: int, c: int, both: int, neither: int) -> tuple[np.ndarray, np.ndarray]:
    """Aligned pass/fail arrays with b candidate-only passes, c reference-only passes (shuffled, seeded)."""
    cand = np.array([1] * b + [0] * c + [1] * both + [0] * neither, dtype=float)
    ref = np.array([0] * b + [1] * c + [1] * both + [0] * neither, dtype=float)
    perm = np.random.default_rng(b * 1000 + c).permutation(len(cand))
    return cand[perm], ref[perm]


# ---------------------------------------------------------------------------------------------------------------
# mcnemar_exact


@pytest.mark.parametrize(("b", "c"), BC_GRID)
def test_mcnemar_exact_two_sided_matches_statsmodels(b, c):
    # statsmodels reads the discordant cells off the diagonal; the concordant cells must not matter.
    expected = mcnemar(np.array([[17, b], [c, 4]]), exact=True).pvalue
    assert mcnemar_exact(b, c) == pytest.approx(expected, abs=1e-12)
    assert mcnemar_exact(b, c, "two-sided") == mcnemar_exact(b, c)


@pytest.mark.parametrize(("b", "c"), [(b, c) for (b, c) in BC_GRID if b + c > 0])
def test_mcnemar_exact_one_sided_is_the_binomial_test_on_discordant_pairs(b, c):
    n = b + c
    greater = mcnemar_exact(b, c, "greater")
    less = mcnemar_exact(b, c, "less")
    assert greater == pytest.approx(binomtest(b, n, 0.5, alternative="greater").pvalue, abs=1e-12)
    assert less == pytest.approx(binomtest(b, n, 0.5, alternative="less").pvalue, abs=1e-12)
    # The same tails from the binomial distribution itself: P(X >= b) and P(X <= b), X ~ Bin(b + c, 1/2).
    assert greater == pytest.approx(binom.sf(b - 1, n, 0.5), abs=1e-12)
    assert less == pytest.approx(binom.cdf(b, n, 0.5), abs=1e-12)


def test_mcnemar_exact_without_discordant_pairs_is_one_for_every_alternative():
    for alternative in ("two-sided", "greater", "less"):
        assert mcnemar_exact(0, 0, alternative) == 1.0


def test_mcnemar_exact_matches_the_published_value_for_12_vs_2_discordant_pairs():
    # Armitage & Berry (1994, p. 127), as worked in the StatsDirect manual (exact matched-pairs test):
    # 50 sputum specimens, 12 grew only on medium A and 2 only on medium B -> exact two-sided P = 0.0129.
    # By hand: 2 * (C(14,0) + C(14,1) + C(14,2)) / 2**14 = 2 * 106 / 16384 = 0.012939...
    assert mcnemar_exact(12, 2) == pytest.approx(212 / 16384, abs=1e-15)
    assert round(mcnemar_exact(12, 2), 4) == 0.0129


def test_mcnemar_exact_greater_means_the_candidate_wins_more_discordant_pairs():
    assert mcnemar_exact(12, 2, "greater") < 0.01 < 0.99 < mcnemar_exact(12, 2, "less")
    assert mcnemar_exact(2, 12, "less") == pytest.approx(mcnemar_exact(12, 2, "greater"), abs=1e-15)
    # Two-sided is symmetric in b and c.
    assert mcnemar_exact(2, 12) == pytest.approx(mcnemar_exact(12, 2), abs=1e-15)


def test_mcnemar_exact_rejects_an_unknown_alternative():
    with pytest.raises((KeyError, ValueError)):
        mcnemar_exact(3, 1, "bigger")


# ---------------------------------------------------------------------------------------------------------------
# paired_compare: pass/fail


def test_paired_compare_on_pass_fail_counts_discordant_pairs_and_uses_exact_mcnemar():
    cand, ref = _pairs(b=9, c=4, both=30, neither=7)  # n = 50
    comp, boot = paired_compare("accuracy", cand, ref, seed=3, resamples=2000)
    assert isinstance(comp, Comparison)
    assert comp.metric == "accuracy"
    assert comp.n == 50
    assert comp.discordant == (9, 4)  # (candidate-only passes, reference-only passes)
    assert comp.candidate == pytest.approx(39 / 50)
    assert comp.reference == pytest.approx(34 / 50)
    assert comp.difference == pytest.approx(5 / 50)
    assert comp.test == "mcnemar-exact"
    assert comp.paired is True
    assert comp.p_value == mcnemar_exact(9, 4)
    assert comp.p_value == pytest.approx(mcnemar(np.array([[30, 9], [4, 7]]), exact=True).pvalue, abs=1e-12)
    assert boot.shape == (2000,)


def test_paired_compare_detects_pass_fail_data_given_as_booleans_or_ints():
    cand, ref = _pairs(b=6, c=1, both=10, neither=3)
    as_bool = paired_compare("m", cand.astype(bool), ref.astype(bool), resamples=200)[0]
    as_int = paired_compare("m", cand.astype(int).tolist(), ref.astype(int).tolist(), resamples=200)[0]
    assert as_bool.test == as_int.test == "mcnemar-exact"
    assert as_bool.discordant == as_int.discordant == (6, 1)


def test_paired_compare_of_identical_pass_fail_arrays_has_p_one_and_a_zero_interval():
    cand, _ = _pairs(b=0, c=0, both=20, neither=5)
    comp, boot = paired_compare("m", cand, cand.copy(), resamples=500)
    assert comp.p_value == 1.0
    assert comp.discordant == (0, 0)
    assert comp.difference == 0.0
    assert comp.ci_low == comp.ci_high == 0.0
    assert np.all(boot == 0.0)


# ---------------------------------------------------------------------------------------------------------------
# paired_compare: scores


def test_paired_compare_on_scores_uses_wilcoxon_signed_rank_dropping_zero_differences():
    rng = np.random.default_rng(42)
    ref = rng.uniform(0, 1, 60).round(2)
    cand = np.clip(ref + rng.normal(0.05, 0.1, 60), 0, 1).round(2)
    cand[:5] = ref[:5]  # some zero differences, which zero_method="wilcox" drops
    comp, _ = paired_compare("rouge", cand, ref, resamples=500)
    assert comp.test == "wilcoxon-signed-rank"
    assert comp.paired is True
    assert comp.discordant is None
    assert comp.p_value == pytest.approx(wilcoxon(cand, ref, zero_method="wilcox").pvalue, abs=1e-12)
    assert comp.candidate == pytest.approx(cand.mean())
    assert comp.reference == pytest.approx(ref.mean())
    assert comp.difference == pytest.approx((cand - ref).mean())


def test_paired_compare_of_identical_score_arrays_has_p_one():
    x = np.linspace(0.1, 0.9, 30)
    comp, _ = paired_compare("score", x, x.copy(), resamples=200)
    assert comp.test == "wilcoxon-signed-rank"
    assert comp.p_value == 1.0
    assert comp.difference == 0.0


def test_paired_compare_treats_pass_fail_data_as_scores_when_told_binary_false():
    cand, ref = _pairs(b=9, c=2, both=20, neither=9)
    comp, _ = paired_compare("m", cand, ref, binary=False, resamples=200)
    assert comp.test == "wilcoxon-signed-rank"
    assert comp.p_value == pytest.approx(wilcoxon(cand, ref, zero_method="wilcox").pvalue, abs=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# paired_compare: the bootstrap interval and input checks


def test_paired_bootstrap_is_the_bootstrap_of_the_per_example_differences():
    cand, ref = _pairs(b=11, c=5, both=60, neither=24)
    comp, boot = paired_compare("m", cand, ref, seed=17, resamples=1500, confidence=0.9)
    assert np.array_equal(boot, bootstrap_means(cand - ref, 17, 1500))
    assert (comp.ci_low, comp.ci_high) == percentile_ci(boot, 0.9)
    assert (comp.ci_low, comp.ci_high) == tuple(np.quantile(boot, [0.05, 0.95]))


@pytest.mark.parametrize("seed", [0, 1, 7, 12345])
def test_paired_bootstrap_interval_contains_the_observed_mean_difference(seed):
    rng = np.random.default_rng(seed)
    cand, ref = (rng.random(120) < 0.8).astype(float), (rng.random(120) < 0.75).astype(float)
    comp, _ = paired_compare("m", cand, ref, seed=seed, resamples=2000)
    assert comp.ci_low < comp.difference < comp.ci_high
    scores_c, scores_r = rng.normal(0.6, 0.2, 80), rng.normal(0.55, 0.2, 80)
    comp, _ = paired_compare("m", scores_c, scores_r, seed=seed, resamples=2000)
    assert comp.ci_low < comp.difference < comp.ci_high


def test_paired_bootstrap_is_identical_for_the_same_seed_and_different_for_another():
    cand, ref = _pairs(b=14, c=6, both=50, neither=30)
    a, boot_a = paired_compare("m", cand, ref, seed=5, resamples=1000)
    b, boot_b = paired_compare("m", cand.copy(), ref.copy(), seed=5, resamples=1000)
    c, boot_c = paired_compare("m", cand, ref, seed=6, resamples=1000)
    assert a == b
    assert np.array_equal(boot_a, boot_b)
    assert not np.array_equal(boot_a, boot_c)
    # The test statistic does not depend on the seed; only the interval does.
    assert (a.p_value, a.difference) == (c.p_value, c.difference)


def test_paired_compare_rejects_arrays_of_different_lengths():
    with pytest.raises(ValueError, match="same length"):
        paired_compare("m", [1, 0, 1], [1, 0])


def test_paired_compare_of_no_examples_is_nan_and_serialises_nan_as_none():
    comp, boot = paired_compare("m", [], [])
    assert comp.n == 0 and comp.test == "none" and len(boot) == 0
    assert math.isnan(comp.p_value) and math.isnan(comp.difference)
    d = comp.as_dict()
    assert d["p_value"] is None and d["ci_low"] is None and d["paired"] is True


# ---------------------------------------------------------------------------------------------------------------
# paired versus unpaired


def test_paired_mcnemar_sees_a_difference_that_the_unpaired_test_misses():
    # 200 examples, the models agree on 186: candidate wins 12 discordant pairs and loses 2.
    # Candidate passes 148 + 12 = 160 (0.80), reference 148 + 2 = 150 (0.75).
    cand, ref = _pairs(b=12, c=2, both=148, neither=38)
    paired, _ = paired_compare("accuracy", cand, ref, resamples=1000)
    unpaired, _ = unpaired_compare("accuracy", cand, ref, resamples=1000)
    assert (paired.candidate, paired.reference) == (pytest.approx(0.80), pytest.approx(0.75))
    assert paired.discordant == (12, 2)
    assert paired.p_value == pytest.approx(212 / 16384)  # 0.0129, see the published-value test above
    assert paired.p_value < 0.05
    # Fisher on the pass rates alone (160/200 vs 150/200) ignores the pairing and finds nothing.
    assert unpaired.p_value == pytest.approx(fisher_exact([[160, 40], [150, 50]]).pvalue, abs=1e-12)
    assert unpaired.p_value > 0.05
    assert unpaired.paired is False
    assert "unpaired" in unpaired.test
    assert unpaired.test.startswith("fisher-exact")
    assert unpaired.difference == pytest.approx(paired.difference)
    # Pairing removes the between-example variance, so the paired interval is much narrower.
    assert paired.ci_high - paired.ci_low < 0.6 * (unpaired.ci_high - unpaired.ci_low)


def test_unpaired_compare_on_scores_uses_mann_whitney():
    rng = np.random.default_rng(9)
    x, y = rng.normal(0.6, 0.2, 70), rng.normal(0.5, 0.2, 90)
    comp, boot = unpaired_compare("score", x, y, seed=4, resamples=500)
    assert comp.test == "mann-whitney-u (unpaired)"
    assert comp.paired is False
    assert comp.p_value == pytest.approx(mannwhitneyu(x, y).pvalue, abs=1e-12)
    assert comp.difference == pytest.approx(x.mean() - y.mean())
    assert comp.ci_low < comp.difference < comp.ci_high
    again, boot_again = unpaired_compare("score", x, y, seed=4, resamples=500)
    assert again == comp and np.array_equal(boot, boot_again)


def test_unpaired_compare_of_an_empty_side_is_nan():
    comp, boot = unpaired_compare("m", [], [1, 0, 1])
    assert math.isnan(comp.p_value) and comp.paired is False and len(boot) == 0


# ---------------------------------------------------------------------------------------------------------------
# holm


HOLM_VECTORS = [
    [0.01, 0.04, 0.03, 0.005],
    [0.5],
    [0.01, 0.01, 0.01],  # ties
    [0.02, 0.02, 0.04, 0.04, 0.001],  # ties in the middle
    [0.9, 0.95, 0.99, 0.999, 1.0],  # near 1: clipped at 1
    [0.3, 0.001, 0.6, 0.45, 0.2, 0.01],
    [0.04, 0.03],  # the step-down makes the larger p's adjusted value non-decreasing
    [1e-10, 0.5, 1e-8, 0.049999, 0.05],
    list(np.random.default_rng(1).uniform(0, 0.2, 25)),
    list(np.random.default_rng(2).beta(0.3, 1.0, 40)),
]


@pytest.mark.parametrize("p", HOLM_VECTORS)
def test_holm_matches_statsmodels(p):
    expected = multipletests(p, method="holm")[1]
    got = holm(list(p))
    assert isinstance(got, list) and len(got) == len(p)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_holm_hand_computed_example():
    # p = [0.01, 0.04, 0.03, 0.005], m = 4. Sorted ascending with multipliers m, m-1, ...:
    #   0.005 * 4 = 0.02   (index 3)
    #   0.01  * 3 = 0.03   (index 0)
    #   0.03  * 2 = 0.06   (index 2)
    #   0.04  * 1 = 0.04 -> running max keeps 0.06   (index 1)
    # Adjusted, in the original order: [0.03, 0.06, 0.06, 0.02].
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03, 0.005]), [0.03, 0.06, 0.06, 0.02], rtol=0, atol=1e-15)


def test_holm_never_lowers_a_p_value_never_exceeds_one_and_keeps_the_order():
    p = list(np.random.default_rng(3).uniform(0, 1, 30))
    adj = holm(p)
    assert all(a >= q for a, q in zip(adj, p, strict=True))
    assert all(0.0 <= a <= 1.0 for a in adj)
    order = np.argsort(p, kind="stable")
    assert all(adj[order[i]] <= adj[order[i + 1]] for i in range(len(p) - 1))


def test_holm_of_no_p_values_is_empty():
    assert holm([]) == []


# ---------------------------------------------------------------------------------------------------------------
# bootstrap_means


def test_bootstrap_means_shape_and_determinism_per_seed():
    x = np.random.default_rng(0).normal(size=40)
    a = bootstrap_means(x, seed=11, resamples=300)
    assert a.shape == (300,)
    assert np.array_equal(a, bootstrap_means(x.copy(), seed=11, resamples=300))
    assert not np.array_equal(a, bootstrap_means(x, seed=12, resamples=300))


def test_bootstrap_means_centre_and_spread_match_the_sample():
    x = np.random.default_rng(8).exponential(2.0, size=100)
    boot = bootstrap_means(x, seed=1, resamples=10_000)
    se = x.std() / math.sqrt(len(x))  # the bootstrap standard error of a mean is the plug-in sd / sqrt(n)
    assert abs(boot.mean() - x.mean()) < 4 * se / math.sqrt(len(boot))
    assert boot.std() == pytest.approx(se, rel=0.05)
    # Resampled means lie within the data's range.
    assert x.min() <= boot.min() and boot.max() <= x.max()


@pytest.mark.parametrize(("n", "resamples"), [(5, 1000), (50_000, 100)])
def test_bootstrap_means_chunking_equals_one_draw_of_all_indices(n, resamples):
    # For n = 50_000 the function draws in chunks of 40 rows (2_000_000 // n); for n = 5 in a single chunk.
    # Either way the result must be what one draw of a (resamples, n) index matrix from the same seed gives.
    x = np.random.default_rng(n).random(n)
    got = bootstrap_means(x, seed=99, resamples=resamples)
    idx = np.random.default_rng(99).integers(0, n, size=(resamples, n))
    assert np.array_equal(got, x[idx].mean(axis=1))


def test_bootstrap_means_of_few_distinct_values_draw_the_same_distribution_as_resampled_indices():
    # Paired pass/fail differences take three values: the multinomial shortcut must give the bootstrap
    # distribution that resampling indices gives (compared by KS test and by quantiles), not just a number.
    from scipy.stats import ks_2samp

    n = 800
    x = np.random.default_rng(5).choice([-1.0, 0.0, 1.0], p=[0.1, 0.75, 0.15], size=n)
    fast = bootstrap_means(x, seed=3, resamples=20_000)
    slow = x[np.random.default_rng(4).integers(0, n, size=(20_000, n))].mean(axis=1)
    assert ks_2samp(fast, slow).pvalue > 0.001
    assert np.quantile(fast, [0.025, 0.5, 0.975]) == pytest.approx(np.quantile(slow, [0.025, 0.5, 0.975]), abs=0.003)
    assert np.array_equal(fast, bootstrap_means(x, seed=3, resamples=20_000))  # still determined by the seed


def test_bootstrap_means_of_many_continuous_values_by_bins_match_index_resampling():
    from scipy.stats import ks_2samp

    n = 60_000  # above LARGE_N: binned
    x = np.random.default_rng(6).normal(0.1, 1.0, size=n)
    fast = bootstrap_means(x, seed=3, resamples=4_000)
    slow = np.array([x[np.random.default_rng(100 + i).integers(0, n, n)].mean() for i in range(1_000)])
    assert ks_2samp(fast, slow).pvalue > 0.001
    assert fast.mean() == pytest.approx(x.mean(), abs=3 * x.std() / math.sqrt(n) / math.sqrt(4_000) + 1e-4)
    assert fast.std() == pytest.approx(x.std() / math.sqrt(n), rel=0.06)


def test_bootstrap_means_of_constant_data_are_that_constant():
    assert np.all(bootstrap_means(np.full(17, 0.25), seed=0, resamples=50) == 0.25)


# ---------------------------------------------------------------------------------------------------------------
# bootstrap_p_value


def test_bootstrap_p_value_above_counts_resamples_at_or_below_the_threshold_plus_one():
    boot = np.arange(10.0)  # 0, 1, ..., 9
    # H0: statistic <= 2. Resamples 0, 1, 2 are on the wrong side (ties count against): (3 + 1) / (10 + 1).
    assert bootstrap_p_value(boot, 2.0, "above") == pytest.approx(4 / 11)
    assert bootstrap_p_value(boot, 2.5, "above") == pytest.approx(4 / 11)


def test_bootstrap_p_value_below_counts_resamples_at_or_above_the_threshold_plus_one():
    boot = np.arange(10.0)
    # H0: statistic >= 2. Resamples 2..9 are on the wrong side: (8 + 1) / (10 + 1).
    assert bootstrap_p_value(boot, 2.0, "below") == pytest.approx(9 / 11)
    assert bootstrap_p_value(boot, 2.5, "below") == pytest.approx(8 / 11)


def test_bootstrap_p_value_is_never_zero_and_at_most_one():
    boot = np.linspace(1.0, 2.0, 999)
    assert bootstrap_p_value(boot, 0.0, "above") == pytest.approx(1 / 1000)  # the +1 correction
    assert bootstrap_p_value(boot, 3.0, "above") == 1.0
    assert bootstrap_p_value(boot, 3.0, "below") == pytest.approx(1 / 1000)
    assert bootstrap_p_value(boot, 0.0, "below") == 1.0


def test_bootstrap_p_value_of_no_resamples_is_one():
    assert bootstrap_p_value(np.array([]), 0.0, "above") == 1.0
    assert bootstrap_p_value(np.array([]), 0.0, "below") == 1.0


# ---------------------------------------------------------------------------------------------------------------
# paired_sample_size, minimum_detectable_effect, mean_sample_size


def _connor(discordance: float, effect: float, alpha: float, power: float) -> float:
    """Connor (1987), one-sided: n = (z_{1-a} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2."""
    za, zb = norm.ppf(1 - alpha), norm.ppf(power)
    return (za * math.sqrt(discordance) + zb * math.sqrt(discordance - effect**2)) ** 2 / effect**2


@pytest.mark.parametrize("discordance", [0.05, 0.1, 0.2, 0.35, 0.6])
@pytest.mark.parametrize("fraction", [0.05, 0.2, 0.5, 0.9])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.025, 0.9), (0.1, 0.5), (0.01, 0.95)])
def test_paired_sample_size_is_connor_1987(discordance, fraction, alpha, power):
    effect = fraction * discordance
    assert paired_sample_size(discordance, effect, alpha, power) == math.ceil(_connor(discordance, effect, alpha,
                                                                                      power))


def test_paired_sample_size_matches_a_published_calculator_value():
    # powerandsamplesize.com, "Compare Paired Proportions: McNemar's Z-test, 1-Sided" (HyLown; cites Connor 1987):
    # p01 = 0.45, p10 = 0.05, alpha = 0.05, beta = 0.10 -> ceiling(n) = 23 (n = 22.8 by the R code on that page).
    assert paired_sample_size(0.5, 0.4, alpha=0.05, power=0.9) == 23
    assert _connor(0.5, 0.4, 0.05, 0.9) == pytest.approx(22.8, abs=0.05)


def test_paired_sample_size_grows_for_smaller_effects_more_power_smaller_alpha_more_discordance():
    base = paired_sample_size(0.2, 0.05)
    assert paired_sample_size(0.2, 0.03) > base
    assert paired_sample_size(0.2, 0.05, power=0.9) > base
    assert paired_sample_size(0.2, 0.05, alpha=0.01) > base
    assert paired_sample_size(0.4, 0.05) > base
    sizes = [paired_sample_size(0.2, e) for e in (0.01, 0.02, 0.05, 0.1, 0.15, 0.2)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == len(sizes)


@pytest.mark.parametrize("effect", [0.0, -0.01, -0.5])
def test_paired_sample_size_of_no_or_negative_effect_is_infinite(effect):
    assert math.isinf(paired_sample_size(0.2, effect))


@pytest.mark.parametrize("discordance", [0.05, 0.2, 0.5])
@pytest.mark.parametrize("n", [50, 200, 1000, 10_000])
def test_minimum_detectable_effect_inverts_paired_sample_size(n, discordance):
    mde = minimum_detectable_effect(n, discordance)
    if math.isnan(mde):
        # Not even the largest possible effect (every discordant pair a win) is detectable with n examples.
        assert paired_sample_size(discordance, discordance) > n
        return
    assert 0 < mde <= discordance
    assert paired_sample_size(discordance, mde) <= n
    assert paired_sample_size(discordance, mde * (1 - 1e-6)) > n
    assert paired_sample_size(discordance, mde * 0.99) > n


def test_minimum_detectable_effect_shrinks_with_more_examples_and_is_nan_when_hopeless():
    mdes = [minimum_detectable_effect(n, 0.2) for n in (100, 400, 1600, 6400)]
    assert mdes == sorted(mdes, reverse=True)
    # Roughly 1/sqrt(n) once the effect is small relative to the discordance.
    assert mdes[2] / mdes[3] == pytest.approx(2.0, rel=0.05)
    assert math.isnan(minimum_detectable_effect(1, 0.2))


@pytest.mark.parametrize("sd", [0.1, 0.3, 1.0, 24.0])
@pytest.mark.parametrize("effect", [0.01, 0.05, 0.2, 5.0])
@pytest.mark.parametrize(("alpha", "power"), [(0.05, 0.8), (0.025, 0.9)])
def test_mean_sample_size_is_the_one_sided_normal_approximation(sd, effect, alpha, power):
    n = ((norm.ppf(1 - alpha) + norm.ppf(power)) * sd / effect) ** 2
    assert mean_sample_size(sd, effect, alpha, power) == max(2, math.ceil(n))
    if n < 5:
        return  # statsmodels' root finder does not converge below a handful of examples
    # statsmodels' one-sample normal power (ratio=0), solved for n, agrees before rounding.
    solved = NormalIndPower().solve_power(effect_size=effect / sd, alpha=alpha, power=power, ratio=0,
                                          alternative="larger")
    assert solved == pytest.approx(n, rel=1e-6)


def test_mean_sample_size_matches_a_published_calculator_value():
    # powerandsamplesize.com, "Test 1 Mean: 1-Sample, 1-Sided" (cites Rosner 2010, pp. 224, 230):
    # mu = 115, mu0 = 120, sd = 24, alpha = 0.05, beta = 0.20 -> ceiling(n) = 143.
    assert mean_sample_size(24.0, 5.0) == 143


def test_mean_sample_size_is_at_least_two_and_infinite_without_an_effect():
    assert mean_sample_size(0.01, 10.0) == 2
    assert math.isinf(mean_sample_size(1.0, 0.0))
    assert math.isinf(mean_sample_size(1.0, -0.1))
    assert mean_sample_size(1.0, 0.1) > mean_sample_size(1.0, 0.2)
    assert mean_sample_size(1.0, 0.1, power=0.9) > mean_sample_size(1.0, 0.1)


# ---------------------------------------------------------------------------------------------------------------
# paired_noninferiority_test (Nam 1997, Tango 1998) and mean_shift_test


def _score_test_by_numerical_mle(b: int, c: int, n: int, margin: float) -> float:
    """p for non-inferiority computed independently: maximise the multinomial likelihood of (b, c, rest) under
    H0 p10 - p01 = -margin numerically, then z = (b - c + n*margin) / sqrt(n * (p10 + p01 - (p10 - p01)**2))."""
    m = n - b - c

    def nll(p01: float) -> float:
        cells = ((b, p01 - margin), (c, p01), (m, 1 - 2 * p01 + margin))
        return -sum(k * math.log(max(p, 1e-300)) for k, p in cells if k)

    p01 = minimize_scalar(nll, bounds=(margin, (1 + margin) / 2), method="bounded", options={"xatol": 1e-13}).x
    p10 = p01 - margin
    z = (b - c + n * margin) / math.sqrt(n * (p10 + p01 - (p10 - p01) ** 2))
    return float(norm.sf(z))


NI_GRID = [(b, c, n, d) for n in (20, 60, 300) for d in (0.01, 0.05, 0.1)
           for b, c in ((0, 0), (0, 3), (3, 0), (5, 9), (12, 2), (n // 4, n // 5), (n // 2, n // 2))]


@pytest.mark.parametrize(("b", "c", "n", "margin"), NI_GRID)
def test_paired_noninferiority_score_test_uses_the_constrained_maximum_likelihood_variance(b, c, n, margin):
    p_pass, p_fail = paired_noninferiority_test(b, c, n, margin)
    assert p_pass == pytest.approx(_score_test_by_numerical_mle(b, c, n, margin), abs=1e-6)
    assert p_pass + p_fail == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(("b", "c"), [(1, 0), (0, 1), (12, 2), (2, 12), (30, 41), (100, 80)])
def test_paired_noninferiority_with_no_margin_is_mcnemars_uncorrected_z_test(b, c):
    # At margin 0 the constrained MLE is p01 = p10 = (b + c) / 2n and the score statistic is (b - c) / sqrt(b + c).
    p_pass, p_fail = paired_noninferiority_test(b, c, 200, 0.0)
    z = (b - c) / math.sqrt(b + c)
    assert p_pass == pytest.approx(norm.sf(z), abs=1e-12)
    assert p_fail == pytest.approx(norm.cdf(z), abs=1e-12)
    chi2 = mcnemar(np.array([[50, b], [c, 50]]), exact=False, correction=False)
    assert 2 * min(p_pass, p_fail) == pytest.approx(chi2.pvalue, abs=1e-12)


def test_paired_noninferiority_passes_more_easily_with_a_wider_margin_and_more_wins():
    ps = [paired_noninferiority_test(5, 8, 200, d)[0] for d in (0.0, 0.02, 0.05, 0.1)]
    assert ps == sorted(ps, reverse=True)
    assert paired_noninferiority_test(10, 5, 200, 0.03)[0] < paired_noninferiority_test(5, 10, 200, 0.03)[0]


def test_paired_noninferiority_of_identical_models_with_a_margin_passes_on_enough_examples():
    # Every example concordant: the constrained MLE sits on the boundary p01 = margin, p10 = 0, so
    # z = n*margin / sqrt(n*margin*(1 - margin)) = sqrt(n*margin / (1 - margin)).
    p_pass, p_fail = paired_noninferiority_test(0, 0, 300, 0.05)
    assert p_pass == pytest.approx(norm.sf(math.sqrt(300 * 0.05 / 0.95)), abs=1e-12)
    assert p_pass < 0.05 < p_fail


def test_paired_noninferiority_of_identical_models_with_no_margin_is_no_evidence_either_way():
    # BUG (harness/stats.py, paired_noninferiority_test, the `var <= 0` branch): with margin 0 and no discordant
    # pairs the variance is 0, and since the observed difference 0 is not > -0 the function returns (1.0, 0.0):
    # p_fail = 0 declares the candidate inferior with certainty although it answered every example exactly as the
    # reference did (the gate then fails a `non_inferior: 0` rule, which the policy allows, ge=0). The statistic is
    # 0/0 here; like mean_shift_test for constant data equal to the shift, the answer should be (1.0, 1.0).
    p_pass, p_fail = paired_noninferiority_test(0, 0, 100, 0.0)
    assert p_pass == 1.0
    assert p_fail == 1.0


def test_paired_noninferiority_of_no_examples_is_one_both_ways():
    assert paired_noninferiority_test(0, 0, 0, 0.05) == (1.0, 1.0)


@pytest.mark.parametrize(("p10", "p01", "n", "margin"), [(0.05, 0.10, 200, 0.05), (0.10, 0.20, 100, 0.10)])
def test_paired_noninferiority_rejects_about_5_percent_at_the_margin(p10, p01, n, margin):
    # True difference exactly -margin (the boundary of H0): the score test should hold its nominal size.
    cells = np.random.default_rng(31).multinomial(n, [p10, p01, 1 - p10 - p01], size=2000)
    rate = np.mean([paired_noninferiority_test(int(x[0]), int(x[1]), n, margin)[0] < 0.05 for x in cells])
    assert 0.03 <= rate <= 0.07


def test_mean_shift_test_is_the_one_sided_one_sample_t_test():
    x = np.random.default_rng(5).normal(0.02, 0.1, 80)
    for shift in (-0.05, 0.0, 0.02, 0.1):
        greater, less = mean_shift_test(x, shift)
        assert greater == pytest.approx(ttest_1samp(x, shift, alternative="greater").pvalue, abs=1e-12)
        assert less == pytest.approx(ttest_1samp(x, shift, alternative="less").pvalue, abs=1e-12)


def test_mean_shift_test_of_constant_data_is_decided_by_the_side_of_the_shift():
    assert mean_shift_test(np.full(10, 0.3), 0.2) == (0.0, 1.0)
    assert mean_shift_test(np.full(10, 0.1), 0.2) == (1.0, 0.0)
    assert mean_shift_test(np.full(10, 0.2), 0.2) == (1.0, 1.0)
    assert mean_shift_test(np.array([]), 0.0) == (1.0, 1.0)


# ---------------------------------------------------------------------------------------------------------------
# Size, power and coverage


def _mcnemar_greater_rejection_rate(n: int, p_discordant: float, p_win: float, alpha: float = 0.05) -> float:
    """Exact probability that one-sided McNemar ('greater') rejects: the number of discordant pairs is
    Bin(n, p_discordant) and the candidate's wins among them Bin(m, p_win)."""
    total = 0.0
    for m in range(n + 1):
        pm = binom.pmf(m, n, p_discordant)
        if pm < 1e-12:
            continue
        # The p-value falls as b grows, so the rejection region is b >= the first rejecting b.
        b_crit = next((b for b in range(m + 1) if mcnemar_exact(b, m - b, "greater") < alpha), None)
        if b_crit is not None:
            total += pm * binom.sf(b_crit - 1, m, p_win)
    return total


def test_one_sided_mcnemar_exact_size_is_at_most_alpha_under_no_difference():
    # Both models pass independently with p = 0.8 on 150 examples: discordance 2 * 0.8 * 0.2 = 0.32, and each
    # discordant pair is a fair coin. The conditional exact test is conservative: size 0.037 here.
    size = _mcnemar_greater_rejection_rate(150, 0.32, 0.5)
    assert 0.02 < size <= 0.05


def test_one_sided_mcnemar_rejects_about_5_percent_or_less_of_null_simulations():
    rng = np.random.default_rng(20260101)
    reps, n = 400, 150
    rejected = 0
    for _ in range(reps):
        cand = (rng.random(n) < 0.8).astype(float)
        ref = (rng.random(n) < 0.8).astype(float)
        b, c = int(np.sum((cand == 1) & (ref == 0))), int(np.sum((cand == 0) & (ref == 1)))
        rejected += mcnemar_exact(b, c, "greater") < 0.05
    assert rejected / reps <= 0.07  # the exact size is 0.037 (previous test); 0.07 allows simulation noise


# A real difference: candidate 0.88 vs reference 0.80 with discordance 0.2, i.e. p10 = 0.14 (candidate only),
# p01 = 0.06 (reference only), p11 = 0.74, p00 = 0.06.
CELLS_ALT = {"both": 0.74, "cand_only": 0.14, "ref_only": 0.06, "neither": 0.06}


def test_one_sided_mcnemar_power_for_a_real_difference_matches_its_exact_value():
    # Exact power at n = 150: discordant pairs ~ Bin(150, 0.2), wins among them ~ Bin(m, 0.14 / 0.2 = 0.7).
    power = _mcnemar_greater_rejection_rate(150, 0.2, 0.7)
    assert 0.6 < power < 0.75  # 0.663; Connor's normal approximation asks for 192 examples (191.1) for 80%
    assert paired_sample_size(0.2, 0.08) == 192


def test_one_sided_mcnemar_rejects_most_simulations_with_a_real_difference():
    rng = np.random.default_rng(777)
    reps, n = 400, 150
    p = list(CELLS_ALT.values())
    rejected = wrong_way = 0
    for _ in range(reps):
        cells = rng.choice(4, size=n, p=p)
        b, c = int(np.sum(cells == 1)), int(np.sum(cells == 2))
        rejected += mcnemar_exact(b, c, "greater") < 0.05
        wrong_way += mcnemar_exact(b, c, "less") < 0.05
    assert rejected / reps > 0.6
    assert wrong_way == 0


def test_paired_bootstrap_95_interval_covers_zero_in_about_95_percent_of_null_simulations():
    rng = np.random.default_rng(4242)
    reps, n = 400, 150
    covered = 0
    for rep in range(reps):
        cand = (rng.random(n) < 0.8).astype(float)
        ref = (rng.random(n) < 0.8).astype(float)
        comp, _ = paired_compare("m", cand, ref, seed=rep, resamples=500)
        covered += comp.ci_low <= 0.0 <= comp.ci_high
    assert 0.93 <= covered / reps <= 0.97
