"""Bootstrap intervals (against scipy.stats.bootstrap), the paired difference, the exact tests of paired
answers, the curve rule, the verdict rule."""
from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np
import pytest
from scipy import stats

from refine_iqa_lib.evaluation.statistics import (COUNTS_ONLY, MCNEMAR, N_RESAMPLES, SIGN_FLIP, ar1_curves,
                                                  average_ranks, bootstrap_ci, correlation_difference, curve_difference_ci,
                                                  format_interval, interval_record, is_constant, judge, mean_difference,
                                                  paired_difference_ci, paired_mean_difference, pooled_over_seeds,
                                                  sign_flip_test, srcc_stat, verdict, window_difference)


def test_mean_interval_is_scipy_percentile_bootstrap():
    x = np.random.default_rng(5).normal(0.6, 0.2, 150)
    ours = bootstrap_ci(x, "mean", n_resamples=1500, seed=7)
    ref = stats.bootstrap((x,), np.mean, n_resamples=1500, method="percentile", rng=np.random.default_rng(7))
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=1e-12)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=1e-12)
    assert ours.value == pytest.approx(x.mean()) and ours.n == 150


def test_srcc_interval_resamples_pairs_like_scipy():
    rng = np.random.default_rng(2)
    mos = rng.uniform(0, 5, 120)
    pred = np.round(mos + rng.normal(0, 1.0, 120), 1)  # rounded: ties, as parsed answers have

    def spearman(p, m):
        return stats.spearmanr(p, m).statistic

    ref = stats.bootstrap((pred, mos), spearman, paired=True, vectorized=False, n_resamples=1000,
                          method="percentile", rng=np.random.default_rng(3))
    ours = bootstrap_ci((pred, mos), "srcc", n_resamples=1000, seed=3)
    assert ours.low == pytest.approx(ref.confidence_interval.low, abs=1e-9)
    assert ours.high == pytest.approx(ref.confidence_interval.high, abs=1e-9)
    assert ours.value == pytest.approx(spearman(pred, mos))


def test_plcc_interval_matches_scipy_pearson():
    rng = np.random.default_rng(4)
    mos = rng.uniform(0, 5, 80)
    pred = 0.5 * mos + rng.normal(0, 0.8, 80)
    ref = stats.bootstrap((pred, mos), lambda p, m: stats.pearsonr(p, m).statistic, paired=True, vectorized=False,
                          n_resamples=1000, method="percentile", rng=np.random.default_rng(0))
    ours = bootstrap_ci((pred, mos), "plcc", n_resamples=1000, seed=0)
    assert (ours.low, ours.high) == pytest.approx((ref.confidence_interval.low, ref.confidence_interval.high), abs=1e-9)


def test_vectorised_srcc_equals_scipy_on_a_batch():
    rng = np.random.default_rng(0)
    p, m = rng.integers(0, 5, (6, 30)), rng.normal(size=(6, 30))
    got = srcc_stat(p, m, axis=-1)
    assert got == pytest.approx([stats.spearmanr(a, b).statistic for a, b in zip(p, m)])


def test_same_seed_same_interval_other_seed_other_interval():
    x = np.random.default_rng(1).normal(0.4, 0.3, 60)
    a, b, c = (bootstrap_ci(x, "mean", seed=s) for s in (11, 11, 12))
    assert (a.low, a.high) == (b.low, b.high)
    assert (a.low, a.high) != (c.low, c.high)
    d1 = paired_difference_ci(x, x[::-1], "mean", seed=3)
    d2 = paired_difference_ci(x, x[::-1], "mean", seed=3)
    assert d1 == d2


def test_paired_difference_finds_a_known_effect_and_no_effect():
    rng = np.random.default_rng(0)
    n = 500
    base = rng.binomial(1, 0.5, n)
    flip = rng.random(n) < 0.2  # 20 % of the items turned right: effect = 0.2 * (1 - 0.5) ~ 0.1
    better = np.where(flip, 1, base)
    d = paired_difference_ci(better, base, "mean", seed=0)
    assert d.value == pytest.approx(better.mean() - base.mean())
    assert 0 < d.low < d.value < d.high and verdict(d.low, d.high, "greater") == "supports"
    # pairing makes the interval narrower than resampling the two models independently
    unpaired = bootstrap_ci((better, base), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), paired=False, seed=0)
    assert (d.high - d.low) < (unpaired.high - unpaired.low)
    # a model against a relabelled copy of itself: the interval covers 0
    same = paired_difference_ci(base, base.copy(), "mean", seed=0)
    assert same.value == 0 and same.low == same.high == 0.0


def test_paired_srcc_difference_on_the_same_images():
    rng = np.random.default_rng(1)
    mos = rng.uniform(0, 5, 300)
    good = mos + rng.normal(0, 0.5, 300)
    bad = mos + rng.normal(0, 2.0, 300)
    d = paired_difference_ci((good, mos), (bad, mos), "srcc", seed=0, n_resamples=1000)
    assert d.value == pytest.approx(stats.spearmanr(good, mos).statistic - stats.spearmanr(bad, mos).statistic)
    assert d.low > 0
    with pytest.raises(ValueError, match="same items"):
        paired_difference_ci(good, bad[:-1])


def test_degenerate_inputs_give_defined_or_nan_intervals():
    assert bootstrap_ci([1, 1, 1, 1], "mean").record() == {"low": 1.0, "high": 1.0, "n": 4}
    one = bootstrap_ci([0.3], "mean")
    assert one.value == 0.3 and np.isnan(one.low) and np.isnan(one.high)
    # SRCC on 6 images: some resamples are constant (undefined), they are left out, not NaN-ing the interval
    iv = bootstrap_ci(([1, 2, 2, 3, 3, 3], [1, 2, 3, 4, 5, 6]), "srcc", seed=0)
    assert np.isfinite(iv.low) and np.isfinite(iv.high) and iv.n_undefined > 0
    assert interval_record([np.nan, np.nan]) is None


@pytest.mark.parametrize("low, high, direction, margin, expected", [
    (0.01, 0.2, "greater", None, "supports"),
    (-0.2, -0.01, "greater", None, "contradicts"),
    (-0.05, 0.05, "greater", None, "inconclusive"),
    (0.0, 0.2, "greater", None, "inconclusive"),       # touching 0 is not "wholly above"
    (-0.2, -0.01, "less", None, "supports"),
    (0.01, 0.2, "less", None, "contradicts"),
    (-0.04, 0.049, "equivalent", 0.05, "supports"),
    (-0.04, 0.06, "equivalent", 0.05, "inconclusive"),
    (0.051, 0.3, "equivalent", 0.05, "contradicts"),
    (-0.3, -0.06, "equivalent", 0.05, "contradicts"),
    (float("nan"), 0.3, "greater", None, "inconclusive"),
    (None, None, "equivalent", 0.05, "inconclusive"),
])
def test_verdict_rule(low, high, direction, margin, expected):
    assert verdict(low, high, direction, margin) == expected


def test_verdict_refuses_unknown_direction_and_missing_margin():
    with pytest.raises(ValueError, match="direction"):
        verdict(0, 1, "bigger")
    with pytest.raises(ValueError, match="margin"):
        verdict(0, 1, "equivalent")


def test_format_interval():
    assert format_interval(0.6234, 0.551, 0.694) == "0.62 [0.55, 0.69]"
    assert format_interval(float("nan"), 0, 1) == "" and format_interval(3.0, float("nan"), 1.0, 1) == "3.0"


def test_independent_samples_may_differ_in_size():
    rng = np.random.default_rng(0)
    hard, easy = rng.normal(0.4, 0.3, 80), rng.normal(0.1, 0.3, 50)
    iv = bootstrap_ci((hard, easy), lambda h, e, axis=-1: h.mean(axis) - e.mean(axis), paired=False, seed=0)
    assert iv.n == 130 and iv.value == pytest.approx(hard.mean() - easy.mean()) and iv.low > 0
    with pytest.raises(ValueError, match="unequal length"):
        bootstrap_ci((hard, easy), "srcc")


# --------------------------------------------------------------------------------------------
# exact tests of paired answers, the verdict rule, constant predictors, curves, pooling by item id


def test_average_ranks_are_scipys_on_a_batch_with_ties():
    x = np.random.default_rng(3).integers(0, 7, size=(50, 40)).astype(float)
    assert np.array_equal(average_ranks(x, axis=-1), stats.rankdata(x, axis=-1))
    assert np.array_equal(average_ranks(x.T, axis=0), stats.rankdata(x.T, axis=0))


def test_sign_flip_test_is_mcnemar_for_answers_and_exact_for_contrasts():
    rng = np.random.default_rng(0)
    a, b = rng.binomial(1, 0.6, 300), rng.binomial(1, 0.5, 300)
    t = sign_flip_test((a - b) / 300)
    up, down = int(((a == 1) & (b == 0)).sum()), int(((a == 0) & (b == 1)).sum())
    assert (t.n_positive, t.n_negative, t.method) == (up, down, MCNEMAR)
    assert t.p_value == pytest.approx(stats.binomtest(up, up + down, 0.5).pvalue, rel=1e-12)
    # two magnitudes (s2 - (s1 + base) / 2 of 0/1 answers): the p of all 2^m sign patterns, by brute force
    c = np.array([0.5, 0.5, -0.5, 0.5, 1.0, 1.0, -1.0, 0.5, 0.0, 1.0, 0.5])
    nz = c[c != 0]
    signs = np.array(list(itertools.product((-1, 1), repeat=nz.size)))
    brute = float((np.abs(signs @ np.abs(nz)) >= abs(c.sum()) - 1e-12).mean())
    got = sign_flip_test(c)
    assert got.method == SIGN_FLIP and got.p_value == pytest.approx(brute, rel=1e-12)
    assert (got.n_positive, got.n_negative) == (8, 2)
    with pytest.raises(ValueError, match="magnitudes"):
        sign_flip_test([0.1, 0.2, 0.3])
    assert np.isnan(sign_flip_test([0.1, -0.2, 0.3], exact=False).p_value)


def test_a_handful_of_discordant_pairs_is_never_a_verdict():
    """1,003 images, S1 and the base disagreeing on 4 (the base right on all 4): the percentile interval
    lies below 0 (the old 'contradicts'), McNemar's exact p is 0.125: inconclusive."""
    base = np.r_[np.ones(4), np.tile([1.0, 0.0], 499), [1.0]]
    s1 = np.r_[np.zeros(4), base[4:]]
    d = paired_mean_difference(s1, base, binary=True, seed=0)
    assert d.high < 0 and verdict(d.low, d.high) == "contradicts"        # the interval alone would decide
    assert (d.test.n_positive, d.test.n_negative, d.test.p_value) == (0, 4, 0.125)
    assert judge(d) == "inconclusive"
    five = paired_mean_difference(np.r_[np.ones(5), base[5:]], np.r_[np.zeros(5), base[5:]], binary=True, seed=0)
    assert five.low > 0 and five.test.p_value == 0.0625 and judge(five) == "inconclusive"
    two = paired_mean_difference([1.0, 1.0], [0.0, 0.0], binary=True, seed=0)
    assert (two.low, two.high) == (1.0, 1.0) and judge(two) == "inconclusive"   # a [1, 1] interval on 2 items
    # 12 discordant pairs, 11 one way: p = 0.006 and the interval agrees
    many = paired_mean_difference(np.r_[np.ones(11), 0.0, base[12:]], np.r_[np.zeros(11), 1.0, base[12:]],
                                  binary=True, seed=0)
    assert many.test.p_value < 0.01 and many.low > 0 and judge(many) == "supports"
    assert many.test.oriented("greater") == (11, 1) and many.test.oriented("less") == (1, 11)
    with pytest.raises(ValueError, match="0/1"):
        paired_mean_difference([0.5, 1.0], [0.0, 1.0], binary=True)


def test_continuous_differences_need_ten_items_that_differ():
    x = np.linspace(0.1, 0.9, 200)
    few = x.copy()
    few[:6] += 0.5                                                  # 6 images differ, all up
    d = paired_mean_difference(few, x, binary=False, seed=0)
    assert d.low > 0 and np.isnan(d.test.p_value) and d.test.method == COUNTS_ONLY
    assert judge(d) == "inconclusive"
    more = x.copy()
    more[:12] += 0.5
    assert judge(paired_mean_difference(more, x, binary=False, seed=0)) == "supports"


def test_a_constant_predictor_counts_zero_and_loses():
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 5, 300)
    good, flat = mos + rng.normal(0, 2.0, 300), np.full(300, 2.5)
    # without the rule the difference is undefined and nothing can be decided
    assert np.isnan(paired_difference_ci((good, mos), (flat, mos), "srcc", seed=0).value)
    d = correlation_difference(good, flat, mos, "srcc_plcc_mean", seed=0)
    assert d.value == pytest.approx(0.5 * (stats.spearmanr(good, mos).statistic + stats.pearsonr(good, mos).statistic))
    assert d.low > 0 and judge(d) == "supports" and judge(d, "less") == "contradicts"
    same = correlation_difference(flat, flat.copy(), mos, "srcc", seed=0)
    assert (same.value, same.low, same.high) == (0.0, 0.0, 0.0) and judge(same) == "inconclusive"
    assert is_constant(flat) and not is_constant(good)


def test_curve_rule_stays_near_5_percent_on_flat_autocorrelated_curves():
    """Flat AR(1) curves as long as the tiny profile's Stage-2 run, the claims' 10 % windows, 1,000 curves
    per autocorrelation: the verdict rate stays <= 7 % (Monte-Carlo error about +-1.4 %), where resampling
    the windows' steps as independent gives 9.5 % / 36.5 % / 74 %."""
    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.evaluation.claims import WINDOW

    steps = int(load_config("tiny").stage2.max_steps)
    k = max(1, round(steps * WINDOW))
    rng = np.random.default_rng(2024)
    rates = {}
    for rho in (0.0, 0.6, 0.9):
        x, y = ar1_curves(rho, (1000, steps), rng), ar1_curves(rho, (1000, steps), rng)
        one, two = window_difference(x, k), window_difference(x, k, y, k)
        rates[rho] = tuple(float(((o["low"] > 0) | (o["high"] < 0)).mean()) for o in (one, two))
    print("flat AR(1) curves, verdict rate (one curve, two curves):", rates)
    assert all(r <= 0.07 for pair in rates.values() for r in pair), rates
    # the rule it replaces: the two windows' steps resampled as independent
    old = [bootstrap_ci((c[-k:], c[:k]), mean_difference, paired=False, n_resamples=500, seed=i)
           for i, c in enumerate(ar1_curves(0.6, (150, steps), rng))]
    assert np.mean([verdict(iv.low, iv.high) != "inconclusive" for iv in old]) > 0.2


def test_curve_difference_ci_finds_a_collapse_and_refuses_short_curves():
    rng = np.random.default_rng(1)
    t = np.linspace(0, 1, 150)
    think = 60 - 50 * (1 - np.exp(-t / 0.15)) + 3 * ar1_curves(0.5, (150,), rng)
    iv = curve_difference_ci(think, 15)
    assert iv.value == pytest.approx(think[-15:].mean() - think[:15].mean())
    assert iv.high < 0 and judge(iv, "less") == "supports" and "moving-block" in iv.method
    assert len(iv.distribution) == N_RESAMPLES and np.isfinite(iv.distribution).all()
    full = 60 + 3 * ar1_curves(0.5, (150,), rng)
    two = curve_difference_ci(think, 15, full, 15)
    assert two.n == 300 and judge(two, "less") == "supports"
    short = curve_difference_ci(think[::30], 1)
    assert np.isnan(short.low) and judge(short) == "inconclusive" and "too short" in short.method


def test_pooling_over_seeds_checks_item_ids_and_pools_the_exact_test():
    rng = np.random.default_rng(0)
    ids = [f"im{i}" for i in range(200)]
    seeds = []
    for _ in range(3):
        b = rng.binomial(1, 0.5, 200)
        a = np.where(rng.random(200) < 0.1, 1, b)
        seeds.append(paired_mean_difference(a, b, binary=True, seed=0, items=ids))
    pooled = pooled_over_seeds(seeds, labels=[0, 1, 2])
    assert pooled.test.n_positive == sum(s.test.n_positive for s in seeds)
    assert pooled.test.n_negative == sum(s.test.n_negative for s in seeds)
    assert pooled.test.method == MCNEMAR and pooled.items == tuple(ids) and judge(pooled) == "supports"
    lacking = paired_mean_difference(np.ones(197), np.zeros(197), binary=True, seed=0, items=ids[3:])
    with pytest.raises(ValueError, match=r"seed 7 lacks 3 item\(s\) of seed 0 \(im0, im1, im2\)"):
        pooled_over_seeds([seeds[0], seeds[1], lacking], labels=[0, 4, 7])
    reordered = replace(seeds[1], items=tuple(reversed(ids)))
    with pytest.raises(ValueError, match="same items in another order"):
        pooled_over_seeds([seeds[0], reordered], labels=[0, 1])
    unnamed = replace(seeds[1], items=None)
    with pytest.raises(ValueError, match="do not name their items"):
        pooled_over_seeds([seeds[0], unnamed], labels=[0, 1])
