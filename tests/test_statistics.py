"""Bootstrap intervals (against scipy.stats.bootstrap), the paired difference, the verdict rule."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from refine_iqa_lib.evaluation.statistics import (bootstrap_ci, format_interval, interval_record, paired_difference_ci,
                                                  srcc_stat, verdict)


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
