"""How often the claims table's rule gives a verdict when there is nothing to find, and how often
it finds an effect of a stated size: :func:`calibrate`.

Every kind of claim of :mod:`refine_iqa_lib.evaluation.claims` is run, many times, on synthetic
data through the same functions the claims table uses (:mod:`refine_iqa_lib.evaluation.statistics`:
the paired differences, their tests and :func:`~refine_iqa_lib.evaluation.statistics.judge`):

* **null** scenarios: two models with the same item-level distribution (each item has its own
  difficulty; both models answer it from that same distribution), a retained share exactly at
  one half, flat AR(1) training curves; and for "differ little", a true difference exactly at the
  equivalence margin. Any *supports* or *contradicts* is a false verdict: the rule should give one
  at most about 5 % of the time;
* **effect** scenarios: the same data with a planted effect of a stated size; the share of
  *supports* is the rule's power.

The sizes default to the ``tiny`` profile's test sets (:data:`SIZES`). Each simulation draws its
data from ``default_rng([seed, scenario, simulation])``: the table is the same every time.

>>> t = calibrate(n_sims=40, kinds=("accuracy",), sizes={"questions": 200}, n_resamples=300, power=False)
>>> t[["kind", "null", "sims"]].values.tolist()[0], bool((t["decided"] <= 0.15).all())
(['accuracy', True, 40], True)
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import pandas as pd

from refine_iqa_lib.evaluation.statistics import (N_RESAMPLES, Interval, ar1_curves, correlation_difference,
                                                  group_gain_difference, judge, paired_mean_difference,
                                                  retained_share_difference, window_difference)

__all__ = ["KINDS", "SIZES", "calibrate", "srcc_noise"]

#: Claim kind -> the claims it stands for and how they are judged.
KINDS = {
    "accuracy": "S1 - base description accuracy, the Q-Bench accuracy rows: McNemar exact test and interval",
    "iou": "S1 - base grounding IoU: interval, at least 10 items differ",
    "hard_vs_easy": "Stage-1's gain on Hard minus Easy images: exact sign-flip test and interval",
    "keeps": "S2 keeps more than half of S1's description gain: exact sign-flip test and interval",
    "srcc": "SRCC(S2) - SRCC(base): paired bootstrap interval",
    "srcc_plcc_mean": "(SRCC+PLCC)/2 differences (Tables 5-6): paired bootstrap interval",
    "equivalence": "think and no-think differ little: interval inside +-0.05 SRCC",
    "curve": "a curve's last 10 % minus its first 10 % (think collapse, Fig. 4): moving-block t",
    "two_curves": "two runs' last 10 % (think ends shorter without PD): moving-block t",
}
#: Test-set sizes of the ``tiny`` profile: perception images (of which Hard), Q-Bench questions,
#: scoring pictures, Stage-2 logged steps and the 10 % window.
SIZES = {"images": 1003, "hard": 572, "questions": 500, "pictures": 600, "steps": 150, "window": 15}
#: The correlation of the simulated predictors with MOS (SRCC), about the stand-in's.
BASE_SRCC = 0.85
#: The noise autocorrelations of the simulated training curves.
RHOS = (0.0, 0.6, 0.9)


def srcc_noise(srcc: float) -> float:
    """The noise SD ``s`` such that ``mos + s e`` (``mos``, ``e`` standard normal) has Spearman
    correlation ``srcc`` with ``mos`` (``srcc = 6 / pi arcsin(r / 2)``, ``r = 1 / sqrt(1 + s^2)``).

    >>> round(srcc_noise(0.85), 3)
    0.591
    """
    r = 2.0 * math.sin(math.pi * srcc / 6.0)
    return math.sqrt(1.0 / (r * r) - 1.0)


def _bern(rng, p):
    return (rng.random(np.shape(p)) < p).astype(float)


def _judged(make: Callable[[int], Interval], n_resamples: int, direction: str = "greater",
            margin: float | None = None) -> str:
    """``judge`` of ``make(n_resamples)``; the bootstrap skipped when the exact test alone already
    makes the verdict inconclusive (the verdict is the same, the interval unused)."""
    first = make(0)
    if first.test is not None and not first.test.lets_through():
        return judge(first, direction, margin)
    return judge(make(n_resamples), direction, margin)


# --------------------------------------------------------------------------------------------
# one simulation of each item kind: (rng, n_resamples, seed) -> verdict


def _accuracy(n: int, gain: float, redrawn: float | None = None):
    def one(rng, B, seed):
        q = rng.beta(2, 2, n)
        b = _bern(rng, q)
        if redrawn is None:
            a = _bern(rng, np.minimum(q + gain, 1.0))
        else:   # nearly the same model: a few answers drawn again
            a = b.copy()
            again = rng.random(n) < redrawn
            a[again] = _bern(rng, q[again])
        return _judged(lambda r: paired_mean_difference(a, b, binary=True, n_resamples=r, seed=seed), B)
    return one


def _iou(n: int, gain: float):
    def one(rng, B, seed):
        u = rng.beta(2, 5, n)
        a = np.clip(u + gain + rng.normal(0, 0.1, n), 0, 1)
        b = np.clip(u + rng.normal(0, 0.1, n), 0, 1)
        return _judged(lambda r: paired_mean_difference(a, b, binary=False, n_resamples=r, seed=seed), B)
    return one


def _hard_vs_easy(n: int, hard: int, gain_hard: float, gain_easy: float):
    def one(rng, B, seed):
        q = rng.beta(2, 2, n)
        on_hard = np.arange(n) < hard
        base = _bern(rng, q)
        s1 = _bern(rng, np.minimum(q + np.where(on_hard, gain_hard, gain_easy), 1.0))
        return _judged(lambda r: group_gain_difference((s1[on_hard], base[on_hard]), (s1[~on_hard], base[~on_hard]),
                                                       binary=True, n_resamples=r, seed=seed), B)
    return one


def _keeps(n: int, kept: float):
    def one(rng, B, seed):
        q = rng.beta(2, 2, n)
        base, s1 = _bern(rng, q), _bern(rng, np.minimum(q + 0.3, 1.0))
        s2 = np.where(rng.random(n) < kept, s1, base)      # each answer S1's with probability `kept`
        return _judged(lambda r: retained_share_difference(s2, s1, base, binary=True, n_resamples=r, seed=seed), B)
    return one


def _correlation(n: int, statistic: str, srcc_a: float, srcc_b: float, direction: str = "greater",
                 margin: float | None = None):
    sa, sb = srcc_noise(srcc_a), srcc_noise(srcc_b)

    def one(rng, B, seed):
        mos = rng.normal(size=n)
        pa, pb = mos + sa * rng.normal(size=n), mos + sb * rng.normal(size=n)
        return judge(correlation_difference(pa, pb, mos, statistic, n_resamples=B, seed=seed), direction, margin)
    return one


# --------------------------------------------------------------------------------------------
# curves, vectorised over simulations: (rng, sims) -> verdicts


def _curve(n: int, k: int, rho: float, shape: str, size: float, direction: str):
    t = np.linspace(0.0, 1.0, n)
    trend = {"flat": 0 * t, "linear": size * t, "collapse": -size * (1.0 - np.exp(-t / 0.15))}[shape]

    def many(rng, sims):
        out = window_difference(ar1_curves(rho, (sims, n), rng) + trend, k)
        return [judge(Interval(v, lo, hi, n), direction) for v, lo, hi in zip(out["value"], out["low"], out["high"])]
    return many


def _two_curves(n: int, k: int, rho: float, shift: float):
    def many(rng, sims):
        x, y = ar1_curves(rho, (sims, n), rng) + shift, ar1_curves(rho, (sims, n), rng)
        out = window_difference(x, k, y, k)
        return [judge(Interval(v, lo, hi, 2 * n)) for v, lo, hi in zip(out["value"], out["low"], out["high"])]
    return many


def _scenarios(sizes: dict, rhos, power: bool, margin: float) -> list[tuple]:
    """``(kind, null, setting, effect, n, one-simulation function or None, many-simulations function or None)``."""
    s = {**SIZES, **sizes}
    q, im, pics, steps, k = s["questions"], s["images"], s["pictures"], s["steps"], s["window"]
    out = [
        ("accuracy", True, "independent answers, item difficulty ~ Beta(2, 2)", "none", q, _accuracy(q, 0.0), None),
        ("accuracy", True, "nearly the same model: 2 % of answers drawn again", "none", q,
         _accuracy(q, 0.0, redrawn=0.02), None),
        ("iou", True, "IoU ~ Beta(2, 5) per item, each model + N(0, 0.1)", "none", im, _iou(im, 0.0), None),
        ("hard_vs_easy", True, f"{s['hard']} Hard / {im - s['hard']} Easy images, no gain", "none", im,
         _hard_vs_easy(im, s["hard"], 0.0, 0.0), None),
        ("hard_vs_easy", True, "the same +10 pp gain on Hard and Easy", "none", im,
         _hard_vs_easy(im, s["hard"], 0.1, 0.1), None),
        ("keeps", True, "S1 +30 pp over base; each S2 answer S1's or base's, 1/2 each", "none", im,
         _keeps(im, 0.5), None),
        ("srcc", True, f"both predictors SRCC {BASE_SRCC}", "none", pics,
         _correlation(pics, "srcc", BASE_SRCC, BASE_SRCC), None),
        ("srcc_plcc_mean", True, f"both predictors SRCC {BASE_SRCC}", "none", pics,
         _correlation(pics, "srcc_plcc_mean", BASE_SRCC, BASE_SRCC), None),
        ("equivalence", True, f"SRCC {BASE_SRCC + margin:.2f} vs {BASE_SRCC}: difference at the margin", "none", pics,
         _correlation(pics, "srcc", BASE_SRCC + margin, BASE_SRCC, "equivalent", margin), None),
    ]
    out += [("curve", True, f"flat AR(1) curve, rho = {r}", "none", steps, None,
             _curve(steps, k, r, "flat", 0, "greater")) for r in rhos]
    out += [("two_curves", True, f"two flat AR(1) curves, rho = {r}", "none", 2 * steps, None,
             _two_curves(steps, k, r, 0.0)) for r in rhos]
    if not power:
        return out
    out += [
        ("accuracy", False, "independent answers", "each item +5 pp more likely right", q, _accuracy(q, 0.05), None),
        ("accuracy", False, "independent answers", "each item +10 pp more likely right", q, _accuracy(q, 0.10), None),
        ("iou", False, "IoU ~ Beta(2, 5)", "+0.01 IoU", im, _iou(im, 0.01), None),
        ("iou", False, "IoU ~ Beta(2, 5)", "+0.02 IoU", im, _iou(im, 0.02), None),
        ("hard_vs_easy", False, "no gain on Easy", "+10 pp on Hard", im, _hard_vs_easy(im, s["hard"], 0.1, 0.0), None),
        ("hard_vs_easy", False, "no gain on Easy", "+20 pp on Hard", im, _hard_vs_easy(im, s["hard"], 0.2, 0.0), None),
        ("keeps", False, "S1 +30 pp over base", "S2 keeps 60 % of S1's answers", im, _keeps(im, 0.6), None),
        ("keeps", False, "S1 +30 pp over base", "S2 keeps 75 % of S1's answers", im, _keeps(im, 0.75), None),
        ("srcc", False, f"base SRCC {BASE_SRCC}", "+0.02 SRCC", pics,
         _correlation(pics, "srcc", BASE_SRCC + 0.02, BASE_SRCC), None),
        ("srcc", False, f"base SRCC {BASE_SRCC}", "+0.05 SRCC", pics,
         _correlation(pics, "srcc", BASE_SRCC + 0.05, BASE_SRCC), None),
        ("srcc_plcc_mean", False, f"base SRCC {BASE_SRCC}", "+0.02 SRCC", pics,
         _correlation(pics, "srcc_plcc_mean", BASE_SRCC + 0.02, BASE_SRCC), None),
        ("srcc_plcc_mean", False, f"base SRCC {BASE_SRCC}", "+0.05 SRCC", pics,
         _correlation(pics, "srcc_plcc_mean", BASE_SRCC + 0.05, BASE_SRCC), None),
        ("equivalence", False, f"SRCC {BASE_SRCC} both", "no difference (supports = inside the margin)", pics,
         _correlation(pics, "srcc", BASE_SRCC, BASE_SRCC, "equivalent", margin), None),
    ]
    for r in rhos:
        out += [("curve", False, f"AR(1) noise, rho = {r}", "linear rise of 2 noise SD", steps, None,
                 _curve(steps, k, r, "linear", 2.0, "greater")),
                ("curve", False, f"AR(1) noise, rho = {r}", "collapse by 2 noise SD (exp, scale 15 % of the run)",
                 steps, None, _curve(steps, k, r, "collapse", 2.0, "less")),
                ("two_curves", False, f"AR(1) noise, rho = {r}", "one run 1 noise SD higher", 2 * steps, None,
                 _two_curves(steps, k, r, 1.0))]
    return out


def calibrate(n_sims: int | dict = 1000, kinds=tuple(KINDS), sizes: dict | None = None, rhos=RHOS,
              n_resamples: int = N_RESAMPLES, power: bool = True, n_power_sims: int | dict | None = None,
              seed: int = 0) -> pd.DataFrame:
    """The false-verdict rate and the power of the claims rule, one row per scenario.

    ``n_sims``: simulations per null scenario (an int, or ``{kind: int}``); ``n_power_sims`` per
    effect scenario (default: ``n_sims``); ``kinds``: keys of :data:`KINDS`; ``sizes``: overrides
    of :data:`SIZES`; ``rhos``: the curves' noise autocorrelations; ``n_resamples``: bootstrap
    resamples of each interval (the claims use :data:`~refine_iqa_lib.evaluation.statistics.N_RESAMPLES`);
    ``power=False`` runs the null scenarios only.

    Columns: ``kind``, ``null`` (True: any verdict is false), ``setting``, ``effect`` (the planted
    effect), ``n`` (items or logged steps), ``sims``, the shares of ``supports`` / ``contradicts``
    / ``inconclusive``, ``decided`` (supports + contradicts: the false-verdict rate of a null row)
    and ``mc_se`` (its Monte-Carlo standard error). The share of ``supports`` of an effect row is the power.
    """
    from refine_iqa_lib.evaluation.claims import EQUIVALENCE_MARGIN

    unknown = sorted(set(kinds) - set(KINDS))
    if unknown:
        raise ValueError(f"calibrate: unknown kind(s) {unknown}; expected some of {sorted(KINDS)}")

    def count(table, kind):
        return int(table.get(kind, 0) if isinstance(table, dict) else table)

    rows = []
    for index, (kind, null, setting, effect, n, one, many) in enumerate(_scenarios(sizes or {}, rhos, power,
                                                                                  EQUIVALENCE_MARGIN)):
        if kind not in kinds:
            continue
        sims = count(n_sims, kind) if null or n_power_sims is None else count(n_power_sims, kind)
        if sims <= 0:
            continue
        if many is not None:
            verdicts = many(np.random.default_rng([seed, index]), sims)
        else:
            verdicts = [one(np.random.default_rng([seed, index, s]), n_resamples, s) for s in range(sims)]
        shares = {v: verdicts.count(v) / sims for v in ("supports", "contradicts", "inconclusive")}
        decided = shares["supports"] + shares["contradicts"]
        rows.append({"kind": kind, "null": null, "setting": setting, "effect": effect, "n": int(n), "sims": sims,
                     **shares, "decided": decided, "mc_se": math.sqrt(max(decided * (1 - decided), 1e-12) / sims)})
    return pd.DataFrame(rows, columns=["kind", "null", "setting", "effect", "n", "sims", "supports", "contradicts",
                                       "inconclusive", "decided", "mc_se"])
