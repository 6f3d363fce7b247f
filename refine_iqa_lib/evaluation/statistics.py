"""Confidence intervals for evaluation numbers, the exact tests of paired answers, the training-curve
rule, and the one verdict rule of the claims table.

**Intervals.** Every interval over test items is a seeded **percentile bootstrap** computed by
``scipy.stats.bootstrap(method="percentile")`` (this module only chooses the statistic, the seed
and the pairing):

* means and accuracies (perception, Q-Bench): the items are resampled;
* SRCC / PLCC (scoring): the *images* are resampled, each image's ``(pred, mos)`` pair kept
  together (``paired=True``);
* a difference between two models on the **same** items (:func:`paired_difference_ci`): the item
  indices are drawn once per resample and the statistic is computed on both models' columns of
  that resample, so that item difficulty cancels out of the difference.

Why percentile and not BCa: at the embedded scale many statistics are degenerate on a resample
(an accuracy of 0 or 1 on 8 items, an SRCC of a constant resample) where BCa's jackknife
acceleration is undefined and scipy returns NaN; the percentile interval stays defined, and for
SRCC it needs no jackknife pass over thousands of images. Resamples on which the statistic is
undefined (NaN, e.g. a constant resample for SRCC) are left out of the percentiles
(:attr:`Interval.n_undefined` counts them).

**Paired per-item differences** (:func:`paired_mean_difference`, :func:`group_gain_difference`,
:func:`retained_share_difference`) also count the items that push the difference up and down
(:class:`SignTest`) and, for right/wrong answers, test it exactly: a percentile bootstrap of a
difference that rests on a handful of discordant items excludes 0 far more often than 5 % of the
time (4 discordant pairs, all one way, give an interval above 0; their exact p is 0.125).
:func:`sign_flip_test` is the exact randomisation test of the items' contributions under random
signs; for 0/1 answers it is **McNemar's exact test**, ``scipy.stats.binomtest`` on the discordant
pairs.

**Training curves** (:func:`curve_difference_ci`): the difference of two windows' means, judged
against the curve's own autocorrelated noise (see the function).

**Verdict** (:func:`judge`): the interval rule of :func:`verdict`, and for a difference that carries a
:class:`SignTest` also at least :data:`MIN_DISCORDANT` items that differ and, for an exact test,
``p < ALPHA``. A predictor that gives every item the same score counts as SRCC = PLCC = 0
(:func:`zero_if_constant`), so that it loses against any model that ranks.

All statistics are vectorised along ``axis`` (scipy hands them a whole batch of resamples at once);
a statistic is a name of :data:`STATISTICS` or a callable ``f(*columns, axis=-1)``.

>>> iv = bootstrap_ci([0, 1, 1, 1, 0, 1, 1, 1], "mean", n_resamples=1000, seed=0)
>>> iv.value, iv.n, 0.3 < iv.low < iv.value < iv.high <= 1.0
(0.75, 8, True)
>>> format_interval(0.623, 0.551, 0.694, 2)
'0.62 [0.55, 0.69]'
"""
from __future__ import annotations

import functools
import math
import warnings
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
from scipy import signal, stats

#: The settings every interval of the project uses unless told otherwise.
N_RESAMPLES = 2000
CONFIDENCE = 0.95
METHOD = "percentile"
DIRECTIONS = ("greater", "less", "equivalent")
VERDICTS = ("supports", "contradicts", "inconclusive")
#: Level of the exact tests (two-sided), the complement of :data:`CONFIDENCE`.
ALPHA = 0.05
#: A paired difference resting on fewer items that differ between the models is never decided.
MIN_DISCORDANT = 10
#: A training curve with windows of fewer logged values, or fewer values in all, is never decided.
MIN_WINDOW_STEPS = 2
MIN_CURVE_STEPS = 10
#: :attr:`SignTest.method` of the three kinds of count.
MCNEMAR = "McNemar exact"
SIGN_FLIP = "exact sign-flip"
COUNTS_ONLY = "counts only"


# --------------------------------------------------------------------------------------------
# vectorised statistics


def mean_stat(x, axis: int = -1):
    """Mean along ``axis`` (accuracy of 0/1 items, mean IoU, ...)."""
    return np.mean(np.asarray(x, dtype=float), axis=axis)


def pearson_stat(x, y, axis: int = -1):
    """Pearson correlation along ``axis``; NaN where either side is constant.

    >>> round(float(pearson_stat([1, 2, 3, 4], [1, 3, 2, 4])), 3), bool(np.isnan(pearson_stat([1, 1, 1], [1, 2, 3])))
    (0.8, True)
    """
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    den = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    flat = (np.ptp(x, axis=-1) == 0) | (np.ptp(y, axis=-1) == 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / den
    return np.where(flat, np.nan, np.clip(r, -1.0, 1.0))


def average_ranks(x, axis: int = -1) -> np.ndarray:
    """Ranks 1..n along ``axis``, tied values sharing their average rank: ``scipy.stats.rankdata``
    (``method="average"``) in a few vectorised passes after one sort (several times faster on a
    batch of bootstrap resamples). A slice holding a NaN is all NaN.

    >>> average_ranks([30, 10, 20, 10]).tolist()
    [4.0, 1.5, 3.0, 1.5]
    """
    a = np.moveaxis(np.asarray(x, dtype=float), axis, -1)
    n = a.shape[-1]
    if n == 0:
        return np.moveaxis(a.copy(), -1, axis)
    order = np.argsort(a, axis=-1)
    s = np.take_along_axis(a, order, axis=-1)
    idx = np.broadcast_to(np.arange(n), s.shape)
    first = np.ones(s.shape, dtype=bool)
    first[..., 1:] = s[..., 1:] != s[..., :-1]
    last = np.ones(s.shape, dtype=bool)
    last[..., :-1] = first[..., 1:]
    start = np.maximum.accumulate(np.where(first, idx, 0), axis=-1)
    end = np.flip(np.minimum.accumulate(np.flip(np.where(last, idx, n - 1), axis=-1), axis=-1), axis=-1)
    ranks = np.empty(s.shape)
    np.put_along_axis(ranks, order, (start + end) / 2.0 + 1.0, axis=-1)
    ranks = np.where(np.isnan(a).any(axis=-1, keepdims=True), np.nan, ranks)
    return np.moveaxis(ranks, -1, axis)


def srcc_stat(pred, mos, axis: int = -1):
    """Spearman rank correlation along ``axis`` (average ranks for ties, as ``scipy.stats.spearmanr``).

    >>> float(srcc_stat([3, 1, 2], [0.3, 0.1, 0.25]))
    1.0
    """
    return pearson_stat(average_ranks(pred, axis=axis), average_ranks(mos, axis=axis), axis=axis)


def plcc_stat(pred, mos, axis: int = -1):
    """Raw Pearson correlation of predictions with MOS (the project's default PLCC)."""
    return pearson_stat(pred, mos, axis=axis)


def srcc_plcc_mean_stat(pred, mos, axis: int = -1):
    """Mean of SRCC and raw PLCC: the scoring entry of Tables 5-6."""
    return 0.5 * (srcc_stat(pred, mos, axis=axis) + plcc_stat(pred, mos, axis=axis))


#: Statistic name -> (vectorised function, number of columns it takes).
STATISTICS: dict[str, tuple[Callable, int]] = {
    "mean": (mean_stat, 1), "srcc": (srcc_stat, 2), "plcc": (plcc_stat, 2), "srcc_plcc_mean": (srcc_plcc_mean_stat, 2),
}


def _statistic(statistic) -> Callable:
    if callable(statistic):
        return statistic
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; expected a callable or one of {sorted(STATISTICS)}")
    return STATISTICS[statistic][0]


def zero_if_constant(statistic: str | Callable) -> Callable:
    """``statistic(pred, mos)`` with a **constant predictor counted as 0**.

    A model that gives every image the same score (e.g. every numeric answer unparsable and scored
    the fallback) ranks nothing: its SRCC and PLCC are undefined (NaN), which would let it escape any
    comparison. Counted as 0 - no better than chance - it loses against any model that ranks. The
    rule applies wherever ``pred`` is constant, on all items or on one bootstrap resample; a
    constant ``mos`` (no ranking to find) stays undefined.

    >>> f = zero_if_constant("srcc")
    >>> float(f([2.5, 2.5, 2.5], [1, 2, 3])), float(f([1, 2, 3], [1, 2, 3])), bool(np.isnan(f([1, 2, 3], [2, 2, 2])))
    (0.0, 1.0, True)
    """
    stat = _statistic(statistic)

    def counted(pred, mos, axis: int = -1):
        out = np.asarray(stat(pred, mos, axis=axis), dtype=float)
        flat = ((np.ptp(np.asarray(pred, dtype=float), axis=axis) == 0)
                & (np.ptp(np.asarray(mos, dtype=float), axis=axis) > 0))
        return np.where(flat, 0.0, out)

    counted.__name__ = f"{getattr(stat, '__name__', 'statistic')}_zero_if_constant"
    return counted


def is_constant(values) -> bool:
    """Whether every value is the same (a degenerate predictor; see :func:`zero_if_constant`)."""
    v = np.asarray(values, dtype=float)
    return bool(v.size and np.ptp(v) == 0)


def _columns(data, same_length: bool = True) -> tuple[np.ndarray, ...]:
    """``data`` as a tuple of 1-D float arrays (one array, or a tuple/list of arrays), of equal
    length unless ``same_length`` is False (independent samples)."""
    if isinstance(data, tuple) or (isinstance(data, list) and data and np.ndim(data[0]) == 1):
        cols = tuple(np.asarray(c, dtype=float).ravel() for c in data)
    else:
        cols = (np.asarray(data, dtype=float).ravel(),)
    sizes = {c.size for c in cols}
    if same_length and len(sizes) != 1:
        raise ValueError(f"columns of unequal length {sorted(sizes)}; expected one value per item in each")
    return cols


# --------------------------------------------------------------------------------------------
# intervals


@dataclass(frozen=True)
class SignTest:
    """The items for and against a paired difference, and an exact test of the difference on them.

    ``n_positive`` / ``n_negative``: items whose contribution to the difference is > 0 / < 0 (for
    two models' right/wrong answers, the discordant pairs); ``p_value``: the two-sided p of
    :func:`sign_flip_test`, NaN when only the counts are kept (``method`` :data:`COUNTS_ONLY`);
    ``contributions``: each item's share of the difference (summing to it), kept for pooling
    over seeds.
    """

    n_positive: int
    n_negative: int
    p_value: float
    method: str
    contributions: np.ndarray | None = field(default=None, repr=False, compare=False)

    @property
    def n_discordant(self) -> int:
        """Items on which the two sides differ."""
        return self.n_positive + self.n_negative

    def oriented(self, direction: str = "greater") -> tuple[int, int]:
        """``(n_better, n_worse)``: the counts in the paper's direction (``"less"`` swaps them)."""
        return (self.n_negative, self.n_positive) if direction == "less" else (self.n_positive, self.n_negative)

    def lets_through(self, alpha: float = ALPHA, min_discordant: int = MIN_DISCORDANT) -> bool:
        """Whether the interval may decide: at least ``min_discordant`` items differ and, for an
        exact test, ``p < alpha`` (a counts-only test needs the items alone)."""
        if self.n_discordant < min_discordant:
            return False
        return math.isnan(self.p_value) or self.p_value < alpha


@dataclass(frozen=True)
class Interval:
    """A statistic on all items (``value``) and its bootstrap interval ``[low, high]`` over ``n`` items."""

    value: float
    low: float
    high: float
    n: int
    n_undefined: int = 0
    #: the bootstrap distribution (one value per resample; NaN where undefined), for
    #: :func:`pooled_over_seeds`; None for intervals that were not bootstrapped
    distribution: np.ndarray | None = field(default=None, repr=False, compare=False)
    #: the items for and against a paired per-item difference, with its exact test (:func:`judge`)
    test: SignTest | None = None
    #: the ids of the items, in the order the values were paired (checked by :func:`pooled_over_seeds`)
    items: tuple[str, ...] | None = field(default=None, repr=False)
    #: how the interval was computed when it is not the plain percentile bootstrap (a note for the reader)
    method: str = ""

    def record(self) -> dict:
        """The result files' layout of an interval: ``{"low", "high", "n"}`` (NaN kept; written as null)."""
        return {"low": self.low, "high": self.high, "n": self.n}


def _no_interval(value: float, n: int, n_resamples: int = 0, method: str = "") -> Interval:
    """A value without an interval (NaN bounds; a NaN distribution so that pooling stays undefined)."""
    return Interval(float(value), float("nan"), float("nan"), int(n), 0,
                    np.full(int(n_resamples), float("nan")), method=method)


def bootstrap_ci(data, statistic: str | Callable = "mean", n_resamples: int = N_RESAMPLES,
                 confidence: float = CONFIDENCE, seed: int = 0, paired: bool | None = None,
                 batch: int | None = 500) -> Interval:
    """Seeded percentile bootstrap interval of ``statistic`` over the items of ``data``.

    ``data``: one array of per-item values, or a tuple of per-item columns (``(pred, mos)`` for
    SRCC/PLCC). ``paired`` (default: True for several columns) resamples the items jointly, so
    a pair ``(pred, mos)`` stays a pair; ``paired=False`` resamples each column on its own (two
    independent samples, e.g. Easy and Hard images, which may differ in size; ``n`` is then their
    total). Fewer than 2 items in a column, or a statistic that is undefined on every resample,
    give a NaN interval.

    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> mos = rng.uniform(0, 5, 200); pred = mos + rng.normal(0, 1, 200)
    >>> iv = bootstrap_ci((pred, mos), "srcc", seed=0)
    >>> iv.low < iv.value < iv.high, round(iv.value, 3) == round(float(stats.spearmanr(pred, mos).statistic), 3)
    (True, True)
    """
    cols = _columns(data, same_length=paired is not False)
    stat = _statistic(statistic)
    paired = len(cols) > 1 if paired is None else bool(paired)
    n = int(cols[0].size) if paired or len(cols) == 1 else int(sum(c.size for c in cols))
    smallest = min(c.size for c in cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        value = float(stat(*cols, axis=-1)) if smallest else float("nan")
    if smallest < 2:
        return Interval(value, float("nan"), float("nan"), n, 0, np.full(int(n_resamples), float("nan")))
    with warnings.catch_warnings():  # a constant bootstrap distribution is a valid percentile interval
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        res = stats.bootstrap(cols, stat, n_resamples=int(n_resamples), confidence_level=float(confidence),
                              method=METHOD, paired=paired,
                              vectorized=True, batch=batch, rng=np.random.default_rng(seed))
    low, high = (float(v) for v in (res.confidence_interval.low, res.confidence_interval.high))
    dist = np.asarray(res.bootstrap_distribution, dtype=float)
    undefined = int((~np.isfinite(dist)).sum())
    if undefined and np.isfinite(dist).any():  # undefined resamples left out of the percentiles
        alpha = (1.0 - float(confidence)) / 2.0
        low, high = (float(v) for v in np.percentile(dist[np.isfinite(dist)], [100 * alpha, 100 * (1 - alpha)]))
    return Interval(value, low, high, n, undefined, dist)


def paired_difference_ci(a, b, statistic: str | Callable = "mean", n_resamples: int = N_RESAMPLES,
                         confidence: float = CONFIDENCE, seed: int = 0, batch: int | None = 500) -> Interval:
    """Interval of ``statistic(a) - statistic(b)`` for two models on the **same** items.

    ``a`` and ``b`` are each one array of per-item values or a tuple of columns (``(pred_a, mos)``
    and ``(pred_b, mos)`` for SRCC), row ``i`` of both being item ``i``. The item indices are
    resampled once per bootstrap resample and the statistic computed on both models' rows of that
    resample (scipy's ``paired=True`` over all columns).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> base = rng.binomial(1, 0.5, 400); better = np.where(rng.random(400) < 0.3, 1, base)
    >>> d = paired_difference_ci(better, base, "mean", seed=0)
    >>> round(d.value, 3), d.low > 0
    (0.125, True)
    """
    ca, cb = _columns(a), _columns(b)
    if ca[0].size != cb[0].size:
        raise ValueError(f"{ca[0].size} items for the first model and {cb[0].size} for the second; "
                         "a paired difference needs the same items (match them by id first)")
    stat, k = _statistic(statistic), len(ca)

    def difference(*cols, axis=-1):
        return stat(*cols[:k], axis=axis) - stat(*cols[k:], axis=axis)

    return bootstrap_ci(ca + cb, difference, n_resamples, confidence, seed, paired=True, batch=batch)


# --------------------------------------------------------------------------------------------
# exact tests of paired per-item differences


def _magnitude_groups(magnitudes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct nonzero magnitudes (equal to 1e-9 relative) and how many items have each."""
    scale = float(magnitudes.max())
    keys, inverse, counts = np.unique(np.round(magnitudes / scale, 9), return_inverse=True, return_counts=True)
    values = np.array([magnitudes[inverse == i].mean() for i in range(len(keys))])
    return values, counts


def sign_flip_test(contributions, exact: bool = True) -> SignTest:
    """Exact two-sided test of a paired difference from its items' contributions.

    ``contributions``: each item's share of the difference (e.g. ``(a_i - b_i) / n`` for a
    difference of means), summing to it. Under the null each nonzero contribution is equally likely
    to have either sign; ``p`` is the probability, over all sign patterns, of a sum at least as far
    from 0 as the observed one. With one magnitude (two models' 0/1 answers: the discordant pairs)
    this is **McNemar's exact test**, ``scipy.stats.binomtest(n_positive, n_discordant, 0.5)``;
    with two (a contrast of 0/1 answers, e.g. ``s2 - (s1 + base) / 2`` or gains on two groups of
    different sizes) the two binomial counts are enumerated exactly. ``exact=False`` keeps the
    counts only (``p`` NaN), for continuous values (IoU) whose interval decides alone.

    >>> t = sign_flip_test(np.array([1, 1, 1, 1, 0, 0]) / 6)   # 4 discordant pairs, all one way
    >>> (t.n_positive, t.n_negative, t.p_value, t.method)
    (4, 0, 0.125, 'McNemar exact')
    >>> sign_flip_test([0.5, 0.5, 0.5, 1.0, 1.0, -0.5]).p_value == 10 / 64   # 10 of 64 sign patterns reach |sum| >= 3
    True
    """
    c = np.asarray(contributions, dtype=float).ravel()
    if not np.isfinite(c).all():
        raise ValueError(f"sign_flip_test: {int((~np.isfinite(c)).sum())} undefined contribution(s); "
                         "expected one finite value per item")
    scale = float(np.abs(c).max()) if c.size else 0.0
    pos, neg = c > 1e-12 * scale, c < -1e-12 * scale
    npos, nneg = int(pos.sum()), int(neg.sum())
    if not exact:
        return SignTest(npos, nneg, float("nan"), COUNTS_ONLY, c)
    if npos + nneg == 0:
        return SignTest(0, 0, 1.0, SIGN_FLIP, c)
    nonzero = pos | neg
    values, counts = _magnitude_groups(np.abs(c[nonzero]))
    if len(values) == 1:
        return SignTest(npos, nneg, float(stats.binomtest(npos, npos + nneg, 0.5).pvalue), MCNEMAR, c)
    if len(values) > 2:
        raise ValueError(f"sign_flip_test: the contributions take {len(values)} distinct magnitudes; the exact "
                         "test is for 0/1 answers and their contrasts (at most 2 magnitudes); use exact=False "
                         "for continuous values")
    observed = abs(float(c.sum()))
    (a, b), (ca, cb) = values, counts
    xa, xb = np.arange(ca + 1), np.arange(cb + 1)
    pa, pb = stats.binom.pmf(xa, ca, 0.5), stats.binom.pmf(xb, cb, 0.5)
    sb = b * (2 * xb - cb)
    threshold = observed - 1e-9 * (a * ca + b * cb)
    p = 0.0
    for lo in range(0, ca + 1, 256):                      # chunks of the outer sum, to bound memory
        sa = a * (2 * xa[lo:lo + 256] - ca)
        far = np.abs(sa[:, None] + sb[None, :]) >= threshold
        p += float((pa[lo:lo + 256, None] * pb[None, :] * far).sum())
    return SignTest(npos, nneg, min(1.0, p), SIGN_FLIP, c)


def _binary(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isin(values, (0.0, 1.0)).all():
        bad = values[~np.isin(values, (0.0, 1.0))][:3]
        raise ValueError(f"{what}: expected 0/1 answers (right/wrong per item) for an exact test; got values such as "
                         f"{bad.tolist()}")
    return values


def _ids(items, n: int, what: str) -> tuple[str, ...] | None:
    if items is None:
        return None
    ids = tuple(str(i) for i in items)
    if len(ids) != n:
        raise ValueError(f"{what}: {len(ids)} item ids for {n} values; expected one id per item")
    return ids


def paired_mean_difference(a, b, binary: bool, n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                           seed: int = 0, items=None) -> Interval:
    """``mean(a) - mean(b)`` of two models on the same items, its paired bootstrap interval and
    the items for and against (:class:`SignTest` on ``(a_i - b_i) / n``).

    ``binary``: the values are right/wrong answers (0/1), tested by McNemar's exact test; otherwise
    (IoU) only the counts are kept and the interval decides (:func:`judge`). ``items``: the item
    ids, row ``i`` of ``a`` and ``b`` being item ``i``. ``n_resamples=0`` skips the bootstrap
    (NaN bounds): the counts and test alone.

    >>> base = np.array([1, 0] * 50 + [0] * 4); s1 = np.array([1, 0] * 50 + [1] * 4)
    >>> d = paired_mean_difference(s1, base, binary=True, seed=0)
    >>> round(d.value, 4), d.low > 0, d.test.n_discordant, d.test.p_value, judge(d)   # interval > 0, yet 4 pairs
    (0.0385, True, 4, 0.125, 'inconclusive')
    """
    va, vb = (np.asarray(x, dtype=float).ravel() for x in (a, b))
    if va.size != vb.size:
        raise ValueError(f"{va.size} items for the first model and {vb.size} for the second; "
                         "a paired difference needs the same items (match them by id first)")
    if binary:
        _binary(va, "paired_mean_difference (first model)")
        _binary(vb, "paired_mean_difference (second model)")
    ids = _ids(items, va.size, "paired_mean_difference")
    test = sign_flip_test((va - vb) / max(va.size, 1), exact=binary)
    if n_resamples:
        iv = paired_difference_ci(va, vb, "mean", n_resamples, confidence, seed)
    else:
        iv = _no_interval(float(va.mean() - vb.mean()) if va.size else float("nan"), va.size)
    return replace(iv, test=test, items=ids)


def mean_difference(x, y, axis: int = -1):
    """``mean(x) - mean(y)`` along ``axis``: the statistic of two independent samples."""
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def group_gain_difference(first: tuple, second: tuple, binary: bool, n_resamples: int = N_RESAMPLES,
                          confidence: float = CONFIDENCE, seed: int = 0, items=None) -> Interval:
    """``(mean(a1) - mean(b1)) - (mean(a2) - mean(b2))``: two models' paired difference on one group
    of items minus the same difference on another group (e.g. Hard minus Easy images).

    ``first = (a1, b1)``, ``second = (a2, b2)``, each pair on the same items. The interval resamples
    the two groups' per-item differences independently; the test counts each item's contribution
    ``(a1 - b1) / n1`` or ``-(a2 - b2) / n2`` (:func:`sign_flip_test`, exact for 0/1 answers:
    two magnitudes when the groups differ in size). ``items``: the first group's ids then the second's.

    >>> hard = (np.array([1] * 30 + [0] * 30), np.array([0] * 10 + [1] * 20 + [0] * 30))
    >>> easy = (np.array([1, 0] * 20), np.array([1, 0] * 20))
    >>> d = group_gain_difference(hard, easy, binary=True, seed=0)
    >>> round(d.value, 3), d.test.n_positive, d.test.n_negative, judge(d)
    (0.167, 10, 0, 'supports')
    """
    pairs = []
    for name, (a, b) in (("first group", first), ("second group", second)):
        va, vb = (np.asarray(x, dtype=float).ravel() for x in (a, b))
        if va.size != vb.size:
            raise ValueError(f"group_gain_difference ({name}): {va.size} and {vb.size} values; expected the same items")
        if binary:
            _binary(va, f"group_gain_difference ({name})")
            _binary(vb, f"group_gain_difference ({name})")
        pairs.append(va - vb)
    d1, d2 = pairs
    ids = _ids(items, d1.size + d2.size, "group_gain_difference")
    test = sign_flip_test(np.concatenate([d1 / max(d1.size, 1), -d2 / max(d2.size, 1)]), exact=binary)
    if n_resamples:
        iv = bootstrap_ci((d1, d2), mean_difference, n_resamples, confidence, seed, paired=False)
    else:
        value = float(d1.mean() - d2.mean()) if d1.size and d2.size else float("nan")
        iv = _no_interval(value, d1.size + d2.size)
    return replace(iv, test=test, items=ids)


def retained_stat(later, gained, base, axis: int = -1):
    """``mean(later) - 1/2 mean(gained) - 1/2 mean(base)``: > 0 when ``later`` keeps more than half of
    ``gained``'s gain over ``base``."""
    return np.mean(later, axis=axis) - 0.5 * np.mean(gained, axis=axis) - 0.5 * np.mean(base, axis=axis)


def retained_share_difference(later, gained, base, binary: bool, n_resamples: int = N_RESAMPLES,
                              confidence: float = CONFIDENCE, seed: int = 0, items=None) -> Interval:
    """:func:`retained_stat` of three models on the same items, its paired bootstrap interval and the
    items for and against (contributions ``(later_i - gained_i / 2 - base_i / 2) / n``; exact
    sign-flip test for 0/1 answers, whose contributions take two magnitudes, 1/2n and 1/n).

    >>> s1 = np.array([1] * 40 + [0] * 20); base = np.array([0] * 40 + [0] * 20)
    >>> s2 = np.array([1] * 36 + [0] * 4 + [0] * 20)    # keeps 36 of S1's 40 gains
    >>> d = retained_share_difference(s2, s1, base, binary=True, seed=0)
    >>> round(d.value, 3), d.test.n_positive, d.test.n_negative, judge(d)
    (0.267, 36, 4, 'supports')
    """
    cols = [np.asarray(x, dtype=float).ravel() for x in (later, gained, base)]
    if len({c.size for c in cols}) != 1:
        raise ValueError(f"retained_share_difference: {[c.size for c in cols]} values; expected the same items "
                         "for all three")
    if binary:
        for name, col in zip(("later", "gained", "base"), cols):
            _binary(col, f"retained_share_difference ({name})")
    n = cols[0].size
    ids = _ids(items, n, "retained_share_difference")
    test = sign_flip_test((cols[0] - 0.5 * cols[1] - 0.5 * cols[2]) / max(n, 1), exact=binary)
    if n_resamples:
        iv = bootstrap_ci(tuple(cols), retained_stat, n_resamples, confidence, seed, paired=True)
    else:
        iv = _no_interval(float(retained_stat(*cols)) if n else float("nan"), n)
    return replace(iv, test=test, items=ids)


def correlation_difference(pred_a, pred_b, mos, statistic: str = "srcc", n_resamples: int = N_RESAMPLES,
                           confidence: float = CONFIDENCE, seed: int = 0, items=None) -> Interval:
    """``statistic(pred_a, mos) - statistic(pred_b, mos)`` on the same images (paired bootstrap over
    images), a constant predictor counting 0 (:func:`zero_if_constant`). No per-item test: the
    interval decides.

    >>> mos = np.linspace(0, 5, 40); good = mos + np.sin(np.arange(40))
    >>> d = correlation_difference(good, np.full(40, 2.5), mos, "srcc", seed=0)
    >>> d.value > 0.8 and d.low > 0.5, judge(d)
    (True, 'supports')
    """
    pa, pb, m = (np.asarray(x, dtype=float).ravel() for x in (pred_a, pred_b, mos))
    ids = _ids(items, m.size, "correlation_difference")
    iv = paired_difference_ci((pa, m), (pb, m), zero_if_constant(statistic), n_resamples, confidence, seed)
    return replace(iv, items=ids)


# --------------------------------------------------------------------------------------------
# training curves: the difference of two windows' means against the curve's own noise


def trend_residuals(curve, axis: int = -1) -> np.ndarray:
    """The curve minus its least-squares quadratic in the step index, along ``axis``: what is left
    of the curve once a smooth trend (a rise, a fall, a levelling off) is taken out.

    >>> bool(np.abs(trend_residuals([1.0, 4.0, 9.0, 16.0, 25.0])).max() < 1e-9)
    True
    """
    y = np.moveaxis(np.asarray(curve, dtype=float), axis, -1)
    n = y.shape[-1]
    if n < 4:
        return np.moveaxis(y - y.mean(axis=-1, keepdims=True), -1, axis)
    t = np.linspace(-1.0, 1.0, n)
    x = np.stack([np.ones(n), t, t * t], axis=1)
    hat = x @ np.linalg.pinv(x)                       # projection onto the quadratic trends
    return np.moveaxis(y - y @ hat.T, -1, axis)


def autocorrelation_length(residuals, axis: int = -1) -> np.ndarray:
    """First lag ``h >= 1`` at which the sample autocorrelation of ``residuals`` falls below
    ``2 / sqrt(n)`` (the usual band of no correlation), at most ``n // 3``; 1 for a constant series.

    >>> int(autocorrelation_length(np.random.default_rng(0).normal(size=200)))
    1
    """
    r = np.moveaxis(np.asarray(residuals, dtype=float), axis, -1)
    n = r.shape[-1]
    rc = r - r.mean(axis=-1, keepdims=True)
    g0 = (rc * rc).sum(axis=-1)
    top = max(1, n // 3)
    out = np.full(g0.shape, top, dtype=int)
    found = g0 <= 0                                    # constant: no correlation to span
    out = np.where(found, 1, out)
    band = 2.0 / math.sqrt(max(n, 1))
    with np.errstate(invalid="ignore", divide="ignore"):
        for h in range(1, top + 1):
            below = ((rc[..., h:] * rc[..., :n - h]).sum(axis=-1) / g0 < band) & ~found
            out = np.where(below, h, out)
            found |= below
            if found.all():
                break
    return out


def _stretch_mean_square(r: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Mean over every ``k``-step stretch of the square of its mean, along the last axis (``k`` per row)."""
    n = r.shape[-1]
    c = np.concatenate([np.zeros(r.shape[:-1] + (1,)), np.cumsum(r, axis=-1)], axis=-1)
    out = np.empty(r.shape[:-1])
    for b in np.unique(k):
        rows = k == b
        m = (c[rows][..., b:] - c[rows][..., :n - b + 1]) / b
        out[rows] = (m * m).mean(axis=-1)
    return out


def _block_variance(r: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`window_mean_variance` of 2-D trend residuals (curves x steps)."""
    n, k = r.shape[-1], int(window)
    block = np.clip(np.maximum(k, autocorrelation_length(r)), 1, max(k, n // 3))
    var = _stretch_mean_square(r, np.full(len(r), k))
    long = np.clip(2 * block, 1, max(1, n // 4))
    long_run = long * _stretch_mean_square(r, long) / np.maximum(1.0 - 3.0 * long / n, 0.25)
    return var + 3.0 * long_run / n, block


def window_mean_variance(curve, window: int) -> tuple[np.ndarray, np.ndarray]:
    """``(variance of a window's mean, block length)`` of a curve (last axis; leading axes are curves).

    The **moving-block bootstrap** variance, computed exactly rather than by resampling: the curve's
    :func:`trend_residuals` are cut into blocks of ``L = max(window, autocorrelation_length)``
    steps (the blocks at least as long as the correlation they must keep), and a window's mean in
    the bootstrap curve is the mean of a ``window``-long stretch of one block, every stretch equally
    likely; its variance is the mean square of all stretch means. Taking the trend out makes the
    residuals vary less than the noise by about ``3 sigma2_LR / n`` (three fitted coefficients;
    ``sigma2_LR`` the long-run variance, estimated the same way from stretches of ``2 L`` steps,
    at most ``n // 4``), which is added back.

    >>> v, block = window_mean_variance(np.random.default_rng(0).normal(size=(200, 300)), 10)
    >>> round(float(v.mean()) * 10, 1), set(block.tolist())     # white noise: 1 / window, blocks of one window
    (1.0, {10})
    """
    y = np.asarray(curve, dtype=float)
    y2 = y.reshape(-1, y.shape[-1])
    var, block = _block_variance(trend_residuals(y2), window)
    return var.reshape(y.shape[:-1]), block.reshape(y.shape[:-1])


def _lag1(r: np.ndarray) -> np.ndarray:
    rc = r - r.mean(axis=-1, keepdims=True)
    den = (rc * rc).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (rc[..., 1:] * rc[..., :-1]).sum(axis=-1) / den
    return np.where(den > 0, out, 0.0)


def _window_t(x: np.ndarray, kx: int, y: np.ndarray | None, ky: int | None):
    """``(D, SE, residual lag-1 autocorrelation, block length of x)`` for 2-D curves (curves x
    steps): ``D`` = last-window mean - first-window mean of ``x`` (``y`` None) or last-window mean of
    ``x`` - last-window mean of ``y``; the autocorrelation is the larger of the two curves'."""
    rx = trend_residuals(x)
    vx, lx = _block_variance(rx, kx)
    if y is None:
        return x[:, -kx:].mean(axis=-1) - x[:, :kx].mean(axis=-1), np.sqrt(2.0 * vx), _lag1(rx), lx
    ry = trend_residuals(y)
    vy, _ = _block_variance(ry, ky)
    d = x[:, -kx:].mean(axis=-1) - y[:, -ky:].mean(axis=-1)
    return d, np.sqrt(vx + vy), np.maximum(_lag1(rx), _lag1(ry)), lx


#: Autocorrelations at which the null distribution of the window statistic is simulated.
RHO_GRID = (-0.5, -0.4, -0.3, -0.2, -0.1, 0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.85, 0.9, 0.93, 0.95,
            0.97, 0.98, 0.99)
#: Simulated flat curves per autocorrelation of :data:`RHO_GRID`.
NULL_CURVES = 2000
#: An autocorrelation of the grid is plausible for a curve when the curve's residual lag-1
#: autocorrelation lies between these quantiles of its simulated distribution there.
PLAUSIBLE = (0.1, 0.9)


def ar1_curves(rho: float, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    """Stationary AR(1) noise of unit variance, ``x_t = rho x_(t-1) + e_t``, along the last axis of ``shape``.

    >>> x = ar1_curves(0.9, (4000, 60), np.random.default_rng(0))
    >>> round(float(x.var()), 1), round(float(np.corrcoef(x[:, 1:].ravel(), x[:, :-1].ravel())[0, 1]), 1)
    (1.0, 0.9)
    """
    e = rng.normal(size=shape)
    e[..., 0] /= math.sqrt(max(1.0 - rho * rho, 1e-12))
    return signal.lfilter([1.0], [1.0, -rho], e, axis=-1) * math.sqrt(max(1.0 - rho * rho, 0.0))


@functools.lru_cache(maxsize=32)
def _curve_null(nx: int, kx: int, ny: int, ky: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(plausible band of the residual lag-1 autocorrelation, its median, simulated T = D / SE)``
    per autocorrelation of :data:`RHO_GRID`, on flat AR(1) curves of these lengths (seeded by the
    lengths: the same table every time)."""
    rng = np.random.default_rng([nx, kx, ny, ky])
    bands, medians, ts = [], [], []
    for rho in RHO_GRID:
        x = ar1_curves(float(rho), (NULL_CURVES, nx), rng)
        y = ar1_curves(float(rho), (NULL_CURVES, ny), rng) if ny else None
        d, se, r1, _ = _window_t(x, kx, y, ky if ny else None)
        bands.append(np.quantile(r1, PLAUSIBLE))
        medians.append(np.median(r1))
        ts.append(d / se)
    return np.stack(bands), np.asarray(medians), np.stack(ts)


def _critical(r1: np.ndarray, nx: int, kx: int, ny: int, ky: int, confidence: float) -> tuple[np.ndarray, np.ndarray]:
    """``(critical value, grid index it comes from)`` for residual autocorrelations ``r1``: the largest
    ``confidence`` quantile of ``|T|`` over the grid autocorrelations plausible for ``r1``
    (:data:`PLAUSIBLE`), or at the grid point of the nearest median when none is."""
    bands, medians, ts = _curve_null(nx, kx, ny, ky)
    crit = np.quantile(np.abs(ts), float(confidence), axis=1)
    plausible = (r1[..., None] >= bands[:, 0]) & (r1[..., None] <= bands[:, 1])
    top = np.argmax(np.where(plausible, crit, -np.inf), axis=-1)
    nearest = np.argmin(np.abs(r1[..., None] - medians), axis=-1)
    at = np.where(plausible.any(axis=-1), top, nearest)
    return crit[at], at


def window_difference(x, window: int, y=None, window_y: int | None = None, confidence: float = CONFIDENCE) -> dict:
    """The training-curve rule, vectorised over curves (leading axes; steps along the last axis).

    ``D`` = mean of the last ``window`` values of ``x`` minus the mean of its first ``window``
    (``y`` None: a curve's change over training), or minus the mean of the last ``window_y``
    values of ``y`` (two runs at the end of training). Its standard error ``SE`` is the
    moving-block one (:func:`window_mean_variance`; the two windows of one curve, far apart, are
    taken as independent). The interval is ``D -+ c SE``. The critical value ``c`` is simulated:
    on flat AR(1) curves of the same lengths, at each autocorrelation of :data:`RHO_GRID` under
    which this curve's residual lag-1 autocorrelation is typical (between the 10th and 90th
    percentiles of its simulated values there; for two curves the larger of the two
    autocorrelations), the ``confidence`` quantile of ``|D / SE|``, and the largest of them. The
    block standard error carries the curve's own dependence; the simulation corrects what a few
    dozen steps cannot estimate: with 15-step windows and strong autocorrelation, a t or normal
    quantile alone lets a flat curve through far more than 5 % of the time. Windows of fewer than
    :data:`MIN_WINDOW_STEPS` values, curves of fewer than :data:`MIN_CURVE_STEPS` values or of
    fewer than three windows give NaN bounds.

    Returns arrays ``value``, ``low``, ``high``, ``se``, ``critical``, ``rho`` (the grid
    autocorrelation the critical value comes from) and ``block`` (the block length, of ``x``).
    """
    x = np.asarray(x, dtype=float)
    yy = None if y is None else np.asarray(y, dtype=float)
    kx = int(window)
    ky = None if yy is None else int(window_y if window_y is not None else window)
    nx, ny = x.shape[-1], (0 if yy is None else yy.shape[-1])
    lead = x.shape[:-1]
    x2 = x.reshape(-1, nx)
    y2 = None if yy is None else yy.reshape(-1, ny)
    if kx < 1 or nx < kx or (y2 is not None and (ky < 1 or ny < ky)):
        raise ValueError(f"window_difference: windows of {kx} / {ky} values for curves of {nx} / {ny}; expected "
                         "windows of at least one value, no longer than their curve")
    short = (kx < MIN_WINDOW_STEPS or nx < max(3 * kx, MIN_CURVE_STEPS)
             or (y2 is not None and (ky < MIN_WINDOW_STEPS or ny < max(3 * ky, MIN_CURVE_STEPS))))
    if short:
        other = x2[:, :kx] if y2 is None else y2[:, -ky:]
        d = x2[:, -kx:].mean(axis=-1) - other.mean(axis=-1)
        nan = np.full(d.shape, np.nan)
        out = {"value": d, "low": nan, "high": nan, "se": nan, "critical": nan, "rho": nan,
               "block": np.zeros(d.shape, dtype=int)}
    else:
        d, se, r1, block = _window_t(x2, kx, y2, ky)
        crit, at = _critical(r1, nx, kx, ny, ky or 0, confidence)
        out = {"value": d, "low": d - crit * se, "high": d + crit * se, "se": se, "critical": crit,
               "rho": np.asarray(RHO_GRID)[at], "block": block}
    return {key: v.reshape(lead) for key, v in out.items()}


def curve_difference_ci(x, window: int, y=None, window_y: int | None = None, n_resamples: int = N_RESAMPLES,
                        confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """:func:`window_difference` of one curve (or two), as an :class:`Interval` over its logged values.

    ``distribution`` (for :func:`pooled_over_seeds`): ``D - SE T*``, ``T*`` drawn from the simulated
    null at the nearest grid autocorrelation and rescaled to the interpolated critical value, so that
    its percentiles reproduce the interval. ``method`` says the block length, the autocorrelation and
    the critical value.

    >>> rng = np.random.default_rng(0)
    >>> flat = rng.normal(size=150); falling = flat - np.linspace(0, 3, 150)
    >>> judge(curve_difference_ci(flat, 15), "less"), judge(curve_difference_ci(falling, 15), "less")
    ('inconclusive', 'supports')
    """
    xs = np.asarray(x, dtype=float).ravel()
    ys = None if y is None else np.asarray(y, dtype=float).ravel()
    n = xs.size + (0 if ys is None else ys.size)
    kx = int(window)
    ky = None if ys is None else int(window_y if window_y is not None else window)
    out = {k: np.asarray(v) for k, v in window_difference(xs, kx, ys, ky, confidence).items()}
    value = float(out["value"])
    if not np.isfinite(out["low"]):
        return _no_interval(value, n, n_resamples, f"under {MIN_CURVE_STEPS} logged values, {MIN_WINDOW_STEPS} per "
                                                   "window or 3 windows: too short to judge against its own noise")
    se, crit, rho = float(out["se"]), float(out["critical"]), float(out["rho"])
    _, _, ts = _curve_null(xs.size, kx, 0 if ys is None else ys.size, ky or 0)
    sample = ts[RHO_GRID.index(rho)]
    scale = crit / float(np.quantile(np.abs(sample), float(confidence)))
    draws = np.random.default_rng(seed).choice(sample, size=int(n_resamples)) * scale
    method = (f"moving-block t: blocks of {int(out['block'])} steps, critical value {crit:.2f} "
              f"(flat AR(1) curves, autocorrelation up to {rho:.2f})")
    return Interval(value, float(out["low"]), float(out["high"]), n, 0, value - se * draws, method=method)


# --------------------------------------------------------------------------------------------
# pooling over seeds


def _first_ids(ids: list[str], shown: int = 5) -> str:
    return ", ".join(ids[:shown]) + (", ..." if len(ids) > shown else "")


def _check_same_items(intervals: Sequence[Interval], labels: Sequence) -> None:
    """Every interval that names its items names the same ones, in the same order, as the first."""
    named = [iv.items is not None for iv in intervals]
    if not any(named):
        return
    if not all(named):
        missing = [str(lab) for lab, ok in zip(labels, named) if not ok]
        raise ValueError(f"pooled_over_seeds: seed(s) {', '.join(missing)} do not name their items; expected "
                         "every seed's interval over identified items")
    ref = intervals[0].items
    for lab, iv in zip(labels[1:], intervals[1:]):
        if iv.items == ref:
            continue
        lost = sorted(set(ref) - set(iv.items))
        extra = sorted(set(iv.items) - set(ref))
        what = []
        if lost:
            what.append(f"lacks {len(lost)} item(s) of seed {labels[0]} ({_first_ids(lost)})")
        if extra:
            what.append(f"has {len(extra)} item(s) seed {labels[0]} lacks ({_first_ids(extra)})")
        if not what:
            what.append("holds the same items in another order")
        raise ValueError(f"pooled_over_seeds: seed {lab} " + " and ".join(what) + "; seeds are pooled over the same "
                         "items, matched by id")


def pooled_over_seeds(intervals: Sequence[Interval], confidence: float = CONFIDENCE, seed: int = 0,
                      labels: Sequence | None = None) -> Interval:
    """The mean over training seeds of one statistic, with an interval over **seeds and items**.

    ``intervals``: one per seed, each from :func:`bootstrap_ci` / :func:`paired_difference_ci` (or
    the paired tests above) on the same items with the same bootstrap seed and number of resamples
    (so that resample ``b`` draws the same item indices in every seed: items are crossed with
    seeds). Intervals that name their items (:attr:`Interval.items`) must name the same ones in the
    same order: otherwise a ``ValueError`` names the seed (``labels``, default 0, 1, ...) and the
    items it lacks or adds. Resample ``b`` of the pooled statistic draws ``k`` seeds with
    replacement (``default_rng(seed)``) and averages their item-resample ``b``: a two-stage
    bootstrap, seeds then items. Value: the mean of the seeds' values; ``n``: items per seed (the
    smallest); resamples where a drawn seed's statistic is undefined are left out
    (``n_undefined``). When every seed carries a :class:`SignTest`, the pooled one tests all
    seeds' items together (their contributions divided by ``k``, so that they sum to the pooled value).

    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> per_seed = [paired_difference_ci(rng.binomial(1, p, 300), rng.binomial(1, 0.5, 300), seed=0)
    ...             for p in (0.75, 0.7, 0.72)]
    >>> pooled = pooled_over_seeds(per_seed)
    >>> round(pooled.value, 3) == round(float(np.mean([iv.value for iv in per_seed])), 3), pooled.low > 0
    (True, True)
    >>> one = pooled_over_seeds(per_seed[:1]); (one.low, one.high) == (per_seed[0].low, per_seed[0].high)
    True
    """
    if not intervals:
        raise ValueError("pooled_over_seeds: no interval; expected one per seed")
    labels = list(range(len(intervals))) if labels is None else list(labels)
    if len(labels) != len(intervals):
        raise ValueError(f"pooled_over_seeds: {len(labels)} labels for {len(intervals)} intervals")
    if any(iv.distribution is None for iv in intervals):
        raise ValueError("pooled_over_seeds: an interval without its bootstrap distribution; expected "
                         "intervals from bootstrap_ci / paired_difference_ci")
    sizes = {len(iv.distribution) for iv in intervals}
    if len(sizes) != 1:
        raise ValueError(f"pooled_over_seeds: bootstrap distributions of different lengths {sorted(sizes)}; "
                         "expected the same number of resamples for every seed")
    _check_same_items(intervals, labels)
    value = float(np.mean([iv.value for iv in intervals]))
    n = min(int(iv.n) for iv in intervals)
    if len(intervals) == 1:
        return intervals[0]
    tests = [iv.test for iv in intervals]
    test = None
    if all(t is not None and t.contributions is not None for t in tests):
        test = sign_flip_test(np.concatenate([t.contributions for t in tests]) / len(tests),
                              exact=all(t.method != COUNTS_ONLY for t in tests))
    dist = np.stack([np.asarray(iv.distribution, dtype=float) for iv in intervals])   # seeds x resamples
    k, B = dist.shape
    picks = np.random.default_rng(seed).integers(0, k, size=(B, k))
    pooled = dist[picks, np.arange(B)[:, None]].mean(axis=1)
    ok = np.isfinite(pooled)
    common = {"test": test, "items": intervals[0].items, "method": intervals[0].method}
    if not ok.any():
        return Interval(value, float("nan"), float("nan"), n, int(B), pooled, **common)
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = (float(v) for v in np.percentile(pooled[ok], [100 * alpha, 100 * (1 - alpha)]))
    return Interval(value, low, high, n, int((~ok).sum()), pooled, **common)


# --------------------------------------------------------------------------------------------
# verdicts and display


def verdict(ci_low: float, ci_high: float, direction: str = "greater", margin: float | None = None) -> str:
    """The interval rule on ``[ci_low, ci_high]``, the interval of a difference (see :func:`judge`).

    The difference is measured as the paper states it (e.g. S2 - base for "S2 beats base"):

    * ``direction="greater"`` (the paper says the difference is positive): **supports** when the
      whole interval lies above 0, **contradicts** when it lies wholly below 0, otherwise
      **inconclusive**; ``"less"`` is the mirror image;
    * ``direction="equivalent"`` ("differ little", with a stated ``margin``): **supports** when the
      whole interval lies inside ``(-margin, margin)``, **contradicts** when it lies wholly outside
      ``[-margin, margin]``, otherwise **inconclusive**.

    A missing (NaN) bound is always inconclusive.

    >>> verdict(0.02, 0.10), verdict(-0.10, -0.02), verdict(-0.01, 0.05)
    ('supports', 'contradicts', 'inconclusive')
    >>> verdict(-0.10, -0.02, "less"), verdict(float("nan"), 0.3)
    ('supports', 'inconclusive')
    >>> verdict(-0.03, 0.04, "equivalent", margin=0.05), verdict(0.06, 0.2, "equivalent", margin=0.05)
    ('supports', 'contradicts')
    """
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown direction {direction!r}; expected one of {DIRECTIONS}")
    lo, hi = float(ci_low) if ci_low is not None else math.nan, float(ci_high) if ci_high is not None else math.nan
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if direction == "equivalent":
        if margin is None or not margin > 0:
            raise ValueError(f"an equivalence verdict needs a positive margin; got {margin!r}")
        if -margin < lo and hi < margin:
            return "supports"
        return "contradicts" if lo > margin or hi < -margin else "inconclusive"
    if direction == "less":
        lo, hi = -hi, -lo
    return "supports" if lo > 0 else "contradicts" if hi < 0 else "inconclusive"


def judge(iv: Interval, direction: str = "greater", margin: float | None = None, alpha: float = ALPHA,
          min_discordant: int = MIN_DISCORDANT) -> str:
    """The claims table's verdict on a difference: the one rule every claim goes through.

    * The interval rule (:func:`verdict`) on ``[iv.low, iv.high]``;
    * and, when the difference carries a :class:`SignTest` (a paired per-item difference), the
      interval may decide only if at least ``min_discordant`` items differ between the models and,
      for an exact test (McNemar for right/wrong answers), ``p < alpha``: otherwise
      **inconclusive**. A supports / contradicts verdict is thus one the exact test and the
      interval agree on.

    >>> judge(Interval(0.4, 0.1, 0.8, 1003, test=SignTest(4, 0, 0.125, MCNEMAR)))      # 4 discordant pairs
    'inconclusive'
    >>> judge(Interval(2.0, 0.5, 3.5, 1003, test=SignTest(25, 5, 0.0003, MCNEMAR))), judge(Interval(0.4, 0.1, 0.8, 600))
    ('supports', 'supports')
    """
    by_interval = verdict(iv.low, iv.high, direction, margin)
    if iv.test is None or iv.test.lets_through(alpha, min_discordant):
        return by_interval
    return "inconclusive"


def format_interval(value: Any, low: Any = None, high: Any = None, decimals: int = 2, suffix: str = "") -> str:
    """``0.62 [0.55, 0.69]`` (the interval left off when it is missing; ``""`` for a missing value).

    >>> format_interval(62.4, 55.0, 69.25, 1, "%"), format_interval(0.5, None, None), format_interval(None)
    ('62.4% [55.0, 69.2]', '0.50', '')
    """
    def ok(v):
        return v is not None and not (isinstance(v, float) and math.isnan(v)) and not (
            isinstance(v, (np.floating, np.integer)) and not np.isfinite(v))

    if not ok(value):
        return ""
    text = f"{float(value):.{decimals}f}{suffix}"
    if ok(low) and ok(high):
        text += f" [{float(low):.{decimals}f}, {float(high):.{decimals}f}]"
    return text


def format_ci(value: Any, leaf: dict | None, decimals: int = 2, suffix: str = "") -> str:
    """:func:`format_interval` of a value and its result-file interval ``{"low", "high", "n"}`` (or None).

    >>> format_ci(0.5, {"low": 0.25, "high": 0.75, "n": 8}), format_ci(0.5, None)
    ('0.50 [0.25, 0.75]', '0.50')
    """
    leaf = leaf or {}
    return format_interval(value, leaf.get("low"), leaf.get("high"), decimals, suffix)


def interval_record(values: Sequence[float] | np.ndarray, seed: int = 0, n_resamples: int = N_RESAMPLES,
                    confidence: float = CONFIDENCE) -> dict | None:
    """``{"low", "high", "n"}`` of the mean of ``values`` (NaN values left out), None for no values:
    the leaf of a result file's ``ci`` dict for an accuracy or a mean IoU."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return bootstrap_ci(v, "mean", n_resamples, confidence, seed).record()
