"""Confidence intervals for evaluation numbers, and the one verdict rule of the claims table.

Every interval is a seeded **percentile bootstrap** over test items, computed by
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

All statistics are vectorised along ``axis`` (scipy hands them a whole batch of resamples at once);
a statistic is a name of :data:`STATISTICS` or a callable ``f(*columns, axis=-1)``.

>>> iv = bootstrap_ci([0, 1, 1, 1, 0, 1, 1, 1], "mean", n_resamples=1000, seed=0)
>>> iv.value, iv.n, 0.3 < iv.low < iv.value < iv.high <= 1.0
(0.75, 8, True)
>>> format_interval(0.623, 0.551, 0.694, 2)
'0.62 [0.55, 0.69]'
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

#: The settings every interval of the project uses unless told otherwise.
N_RESAMPLES = 2000
CONFIDENCE = 0.95
METHOD = "percentile"
DIRECTIONS = ("greater", "less", "equivalent")
VERDICTS = ("supports", "contradicts", "inconclusive")


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


def srcc_stat(pred, mos, axis: int = -1):
    """Spearman rank correlation along ``axis`` (average ranks for ties, as ``scipy.stats.spearmanr``).

    >>> float(srcc_stat([3, 1, 2], [0.3, 0.1, 0.25]))
    1.0
    """
    return pearson_stat(stats.rankdata(pred, axis=axis), stats.rankdata(mos, axis=axis), axis=axis)


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

    def record(self) -> dict:
        """The result files' layout of an interval: ``{"low", "high", "n"}`` (NaN kept; written as null)."""
        return {"low": self.low, "high": self.high, "n": self.n}


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


def pooled_over_seeds(intervals: Sequence[Interval], confidence: float = CONFIDENCE, seed: int = 0) -> Interval:
    """The mean over training seeds of one statistic, with an interval over **seeds and items**.

    ``intervals``: one per seed, each from :func:`bootstrap_ci` / :func:`paired_difference_ci` on
    the same items with the same bootstrap seed and number of resamples (so that resample ``b``
    draws the same item indices in every seed: items are crossed with seeds). Resample ``b`` of
    the pooled statistic draws ``k`` seeds with replacement (``default_rng(seed)``) and averages
    their item-resample ``b``: a two-stage bootstrap, seeds then items. Value: the mean of the
    seeds' values; ``n``: items per seed (the smallest); resamples where a drawn seed's statistic
    is undefined are left out (``n_undefined``).

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
    if any(iv.distribution is None for iv in intervals):
        raise ValueError("pooled_over_seeds: an interval without its bootstrap distribution; expected "
                         "intervals from bootstrap_ci / paired_difference_ci")
    sizes = {len(iv.distribution) for iv in intervals}
    if len(sizes) != 1:
        raise ValueError(f"pooled_over_seeds: bootstrap distributions of different lengths {sorted(sizes)}; "
                         "expected the same number of resamples for every seed")
    value = float(np.mean([iv.value for iv in intervals]))
    n = min(int(iv.n) for iv in intervals)
    if len(intervals) == 1:
        return intervals[0]
    dist = np.stack([np.asarray(iv.distribution, dtype=float) for iv in intervals])   # seeds x resamples
    k, B = dist.shape
    picks = np.random.default_rng(seed).integers(0, k, size=(B, k))
    pooled = dist[picks, np.arange(B)[:, None]].mean(axis=1)
    ok = np.isfinite(pooled)
    if not ok.any():
        return Interval(value, float("nan"), float("nan"), n, int(B), pooled)
    alpha = (1.0 - float(confidence)) / 2.0
    low, high = (float(v) for v in np.percentile(pooled[ok], [100 * alpha, 100 * (1 - alpha)]))
    return Interval(value, low, high, n, int((~ok).sum()), pooled)


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
# verdicts and display


def verdict(ci_low: float, ci_high: float, direction: str = "greater", margin: float | None = None) -> str:
    """The claims table's rule on the interval ``[ci_low, ci_high]`` of a difference.

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
