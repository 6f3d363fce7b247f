"""The claims table: each claim of the paper, the difference that tests it, its 95 % interval and a verdict.

:func:`build_claims` reads only files the pipeline wrote: the evaluators' per-item prediction
files under ``<work_dir>/eval/`` (:mod:`refine_iqa_lib.evaluation.items`) and the Stage-2 runs'
``metrics.jsonl``. The paper's numbers are read from ``results/paper/table<n>.csv``
(:func:`refine_iqa_lib.evaluation.tables.load_paper_table`); no number is written by hand.
It writes ``results/claims_<profile>.csv`` and ``results/CLAIMS.md`` (``CLAIMS_smoke.md`` for the
test suite's profile, git-ignored).

Columns (:data:`COLUMNS`): ``claim`` (the paper's claim and the table or figure it rests on),
``paper`` (the paper's numbers behind it), ``measure`` (the difference computed, oriented as the
paper states it), ``value`` (that difference on all items), ``ci_low`` / ``ci_high`` (its 95 %
interval), ``n`` (items, or logged training steps, behind the interval), ``n_better`` /
``n_worse`` (for a difference of per-item values: the items on which it goes the paper's way /
the other way - for right/wrong answers, the discordant pairs; empty for correlations and curves),
``p_value`` (the exact test's two-sided p where one decides: right/wrong answers; empty where the
interval alone decides), ``seeds`` (the run seed(s) behind the value), ``verdict``,
``degenerate`` (a model whose predictions are constant, and the rule applied) and ``note``
(what is missing, how items were matched, how many answers were unparsable, how a curve was judged).

Intervals (:mod:`refine_iqa_lib.evaluation.statistics`): every difference between two models is a
**paired** bootstrap over the same items, matched by image / question id across the models'
prediction files; SRCC / PLCC resample images with their ``(pred, mos)`` pairs. Training-curve
claims (think collapse, Fig. 4) compare the first and the last 10 % of the logged steps
(:func:`refine_iqa_lib.training.metrics.first_last_windows`) by
:func:`~refine_iqa_lib.evaluation.statistics.curve_difference_ci`: a moving-block standard error
on the curve's residuals around a quadratic trend, blocks at least a window long and as long as the
residuals' autocorrelation, with a critical value simulated on flat AR(1) curves of the same length,
so that a flat but autocorrelated curve is not read as a trend.

Verdict (:func:`refine_iqa_lib.evaluation.statistics.judge`): **supports** when the whole
interval of the difference lies on the paper's side of 0, **contradicts** when it lies wholly on
the other side, otherwise **inconclusive**. A difference of right/wrong answers (description
accuracy, Q-Bench accuracy and the contrasts built from them) must also pass McNemar's exact test
(``scipy.stats.binomtest`` on the discordant pairs; an exact sign-flip test for the contrasts) at
5 %, and any difference of per-item values must rest on at least 10 items that differ between the
models, or it is inconclusive. "Think and no-think differ little" is judged as an equivalence:
supports when the interval of SRCC(think) - SRCC(no-think) lies inside ``+-``
:data:`EQUIVALENCE_MARGIN` (0.05 SRCC), contradicts when it lies wholly outside. A model whose
scores are all the same (every numeric answer unparsable and scored the fallback) counts as
SRCC = PLCC = 0 (:func:`~refine_iqa_lib.evaluation.statistics.zero_if_constant`), so that it
loses a scoring claim instead of escaping it; scores dropped by ``eval.unparsable: drop`` are
scored the fallback here for the same reason. A claim whose inputs are missing is
**inconclusive**, its ``note`` naming what is missing. :func:`refine_iqa_lib.evaluation.calibration.calibrate`
measures how often this rule gives a verdict on synthetic data without an effect, and its power.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.evaluation.items import matched, perception_values, qbench_values, scoring_values
from refine_iqa_lib.evaluation.statistics import (MIN_DISCORDANT, Interval, correlation_difference,
                                                  curve_difference_ci, format_interval, group_gain_difference,
                                                  is_constant, judge, paired_mean_difference, pooled_over_seeds,
                                                  retained_share_difference)
from refine_iqa_lib.evaluation.tables import (EASY_HEADERS, HARD_HEADERS, T3_DATASETS, T56_DATASETS,
                                              load_paper_table)
from refine_iqa_lib.io import write_text

log = logging.getLogger(__name__)

COLUMNS = ["claim", "paper", "measure", "value", "ci_low", "ci_high", "n", "n_better", "n_worse", "p_value", "seeds",
           "verdict", "degenerate", "note"]
#: "Differ little": |SRCC(think) - SRCC(no-think)| interval inside this margin.
EQUIVALENCE_MARGIN = 0.05
#: Share of logged steps in each of the first / last windows of a training curve.
WINDOW = 0.1


@dataclass(frozen=True)
class Claim:
    """One claim: its text, how the paper's numbers read, what is measured and in which direction."""

    claim: str
    measure: str
    direction: str                          # "greater" | "less" | "equivalent" (statistics.verdict)
    paper: Callable[[], str]                # the paper's numbers, read from results/paper
    compute: Callable[["_Inputs"], Interval]
    margin: float | None = None


class _Inputs:
    """Where the prediction files and runs of one configuration are, and the interval settings."""

    def __init__(self, cfg: Config):
        from refine_iqa_lib.runs import model_paths

        self.cfg = cfg
        self.pred = cfg.work_dir / "eval"
        self.runs = model_paths(cfg)
        self.kw = {"n_resamples": cfg.eval.ci_resamples, "confidence": cfg.eval.ci_level, "seed": cfg.seed}
        self.notes: list[str] = []
        self.degenerate: list[str] = []
        wanted = [d for d in T3_DATASETS.values() if d in cfg.scoring.eval]
        self.dataset = wanted[0] if wanted else (cfg.scoring.eval[0] if cfg.scoring.eval else "koniq")

    # ---- perception (Tables 1-2) ------------------------------------------------------------
    def perception(self, models: tuple[str, ...], task: str, categories=None) -> tuple[list[str], list[np.ndarray]]:
        """The ids of the images every model answered (of ``categories``) and each model's values on them."""
        frames = [perception_values(self.pred, m, task) for m in models]
        got = matched(*frames)
        lost = max(len(f) for f in frames) - len(got[0])
        if lost:
            self.notes.append(f"{lost} image(s) not answered by every model left out")
        keep = np.ones(len(got[0]), bool) if categories is None else got[0]["category"].isin(categories).to_numpy()
        return [str(i) for i in got[0].index[keep]], [g["value"].to_numpy()[keep] for g in got]

    def perception_diff(self, a: str, b: str, task: str, scale: float) -> Interval:
        ids, (va, vb) = self.perception((a, b), task)
        return _scaled(paired_mean_difference(va, vb, binary=task == "description", items=ids, **self.kw), scale)

    # ---- scoring (Tables 3, 5, 6) -----------------------------------------------------------
    def scoring_diff(self, a: tuple[str, str, str], b: tuple[str, str, str], statistic: str) -> Interval:
        fa, fb = matched(*(scoring_values(self.pred, m, self.dataset, mode, method, keep_dropped=True)
                           for m, mode, method in (a, b)))
        self.notes.append(f"{self.dataset}, {len(fa)} images")
        preds, failed = [], []
        for (m, mode, method), f in ((a, fa), (b, fb)):
            pred = f["pred"].to_numpy(dtype=float)
            if not np.isfinite(pred).all():   # eval.unparsable: drop - scored the fallback, so that it counts against
                from refine_iqa_lib.evaluation.scoring_eval import FALLBACK_PREDICTION

                pred = np.where(np.isfinite(pred), pred, FALLBACK_PREDICTION)
            failed.append(f"{m} ({mode}, {method}) {int((~f['parsed']).sum())}/{len(f)}")
            if is_constant(pred):
                self.degenerate.append(f"{m} ({mode}, {method}) gives every image the same score ({pred[0]:g}): "
                                       "its SRCC and PLCC count as 0")
            preds.append(pred)
        if "num" in (a[2], b[2]) or not (fa["parsed"].all() and fb["parsed"].all()):   # parse-failure rates
            self.notes.append("unparsable answers (scored the fallback): " + ", ".join(failed))
        return correlation_difference(preds[0], preds[1], fa["mos"].to_numpy(dtype=float), statistic,
                                      items=list(fa.index), **self.kw)

    # ---- Q-Bench (Tables 4-6) ---------------------------------------------------------------
    def qbench_diff(self, a: tuple[str, str], b: tuple[str, str]) -> Interval:
        fa, fb = matched(qbench_values(self.pred, *a), qbench_values(self.pred, *b))
        # a format effect is not interpreting: say how many answers named no candidate (scored wrong)
        self.notes.append("unparsable answers: " + ", ".join(
            f"{m} ({mode}) {int((~f['parsed']).sum())}/{len(f)}" for (m, mode), f in ((a, fa), (b, fb))))
        return _scaled(paired_mean_difference(fa["correct"].to_numpy(), fb["correct"].to_numpy(), binary=True,
                                              items=list(fa.index), **self.kw), 100.0)

    # ---- training curves (think collapse, Fig. 4) -------------------------------------------
    def curve(self, run: str, name: str) -> tuple[np.ndarray, int]:
        """The logged values of one curve of a run, and the number of values in each 10 % window."""
        from refine_iqa_lib.training.metrics import curve, first_last_windows, read_metrics

        df = read_metrics(self.runs[run])
        first, _ = first_last_windows(df, name, WINDOW)
        if first.empty:
            raise FileNotFoundError(f"{self.runs[run]}: no logged {name!r} values")
        return curve(df, name).dropna().to_numpy(dtype=float), len(first)

    def curve_diff(self, x: np.ndarray, kx: int, y: np.ndarray | None = None, ky: int | None = None) -> Interval:
        return curve_difference_ci(x, kx, y, ky, **self.kw)


def _scaled(iv: Interval, scale: float) -> Interval:
    dist = None if iv.distribution is None else scale * np.asarray(iv.distribution, dtype=float)
    return replace(iv, value=scale * iv.value, low=scale * iv.low, high=scale * iv.high, distribution=dist)


# --------------------------------------------------------------------------------------------
# the paper's numbers (read from results/paper)


def _paper_value(n: int, label: str, column: str, label_col: str | None = None) -> float:
    t = load_paper_table(n)
    col = label_col or ("Models" if "Models" in t.columns else t.columns[0])
    return float(t.loc[t[col] == label, column].iloc[0])


def _paper_t6(pd_on: bool, pm_on: bool, num: bool, column: str) -> float:
    t = load_paper_table(6)
    row = t[(t["PD"] == pd_on) & (t["PM"] == pm_on) & (t["Num."] == num)]
    return float(row[column].iloc[0])


def _vs(a_label: str, a: float, b_label: str, b: float, unit: str = "", d: int = 2) -> str:
    return f"{a_label} {a:.{d}f}{unit} vs {b_label} {b:.{d}f}{unit} ({a - b:+.{d}f}{unit})"


def _paper_perception(n: int, a: str, b: str) -> str:
    d, unit = (2, "%") if n == 1 else (3, "")
    return _vs(a.replace("Refine-IQA-", ""), _paper_value(n, a, "Overall"), "base",
               _paper_value(n, b, "Overall"), unit, d) + f" (Table {n} Overall)"


def _paper_hard_easy() -> str:
    adv = load_paper_table(1).set_index("Models").loc["Advantage"]
    hard, easy = adv[list(HARD_HEADERS)].mean(), adv[list(EASY_HEADERS)].mean()
    return f"Advantage, mean of Hard columns {hard:.2f}% vs Easy {easy:.2f}% ({hard - easy:+.2f}%) (Table 1)"


def _paper_keeps(n: int) -> str:
    d = 2 if n == 1 else 3
    base, s1, s2 = (_paper_value(n, m, "Overall") for m in ("Qwen2.5-VL-7B (base)", "Refine-IQA-S1", "Refine-IQA-S2"))
    return (f"base {base:.{d}f}, S1 {s1:.{d}f}, S2 {s2:.{d}f}: S2 keeps {100 * (s2 - base) / (s1 - base):.0f}% "
            f"of S1's gain (Table {n} Overall)")


def _ds_header(dataset: str, table: dict) -> str:
    return next((h for h, k in table.items() if k == dataset), dataset)


def _paper_t3(mode_label: str, dataset: str) -> float:
    return _paper_value(3, f"Refine-IQA-S2 ({mode_label})", f"{_ds_header(dataset, T3_DATASETS)} SRCC")


# --------------------------------------------------------------------------------------------
# the claims


def claims_spec(dataset: str = "koniq") -> list[Claim]:
    """The claims, in the paper's order; scoring claims on ``dataset`` (the first evaluated set)."""
    ds3, ds56 = _ds_header(dataset, T3_DATASETS), _ds_header(dataset, T56_DATASETS)

    def hard_minus_easy(i: _Inputs) -> Interval:
        ids_h, (h1, h0) = i.perception(("s1", "base"), "description", D.HARD)
        ids_e, (e1, e0) = i.perception(("s1", "base"), "description", D.EASY)
        i.notes.append(f"{len(h1)} Hard and {len(e1)} Easy images")
        return _scaled(group_gain_difference((h1, h0), (e1, e0), binary=True, items=ids_h + ids_e, **i.kw), 100.0)

    def keeps(task: str, scale: float) -> Callable[[_Inputs], Interval]:
        def run(i: _Inputs) -> Interval:
            ids, (s2, s1, base) = i.perception(("s2", "s1", "base"), task)
            return _scaled(retained_share_difference(s2, s1, base, binary=task == "description", items=ids, **i.kw),
                           scale)
        return run

    def collapse_in_run(i: _Inputs) -> Interval:
        x, k = i.curve("s2_no_pd", "think tokens")
        i.notes.append(f"{len(x)} logged steps of s2_no_pd, windows of {k}")
        return i.curve_diff(x, k)

    def collapse_vs_full(i: _Inputs) -> Interval:
        (x, kx), (y, ky) = i.curve("s2_no_pd", "think tokens"), i.curve("s2", "think tokens")
        i.notes.append(f"last {kx} / {ky} of {len(x)} / {len(y)} logged steps")
        return i.curve_diff(x, kx, y, ky)

    def rises(curve: str) -> Callable[[_Inputs], Interval]:
        def run(i: _Inputs) -> Interval:
            x, k = i.curve("s2", curve)
            i.notes.append(f"{len(x)} logged steps, windows of {k}")
            return i.curve_diff(x, k)
        return run

    no_tables = "no numbers printed (think-collapse figure, Supp.)"
    return [
        Claim("Stage-1 raises description accuracy (Table 1)", "S1 - base, description accuracy (pp), all images",
              "greater", lambda: _paper_perception(1, "Refine-IQA-S1", "Qwen2.5-VL-7B (base)"),
              lambda i: i.perception_diff("s1", "base", "description", 100.0)),
        Claim("Stage-1 raises grounding IoU (Table 2)", "S1 - base, mean grounding IoU, all images", "greater",
              lambda: _paper_perception(2, "Refine-IQA-S1", "Qwen2.5-VL-7B (base)"),
              lambda i: i.perception_diff("s1", "base", "grounding", 1.0)),
        Claim("Stage-1's gains are larger on Hard than on Easy distortions (Table 1)",
              "(S1 - base on Hard images) - (S1 - base on Easy images), description accuracy (pp)", "greater",
              _paper_hard_easy, hard_minus_easy),
        Claim("S2 keeps most of S1's perception: description (Table 1)",
              "(S2 - base) - 1/2 (S1 - base), description accuracy (pp): > 0 = more than half of S1's gain kept",
              "greater", lambda: _paper_keeps(1), keeps("description", 100.0)),
        Claim("S2 keeps most of S1's perception: grounding (Table 2)",
              "(S2 - base) - 1/2 (S1 - base), mean IoU: > 0 = more than half of S1's gain kept", "greater",
              lambda: _paper_keeps(2), keeps("grounding", 1.0)),
        Claim(f"S2 beats the base on scoring (Table 3, {ds3})", f"SRCC(S2) - SRCC(base), no-think, Eq. 8, {dataset}",
              "greater", lambda: f"S2 (w/o think) SRCC {_paper_t3('w/o think', dataset):.3f} on {ds3}; the base is "
                                 "not in Table 3",
              lambda i: i.scoring_diff(("s2", "no_think", "prob"), ("base", "no_think", "prob"), "srcc")),
        Claim(f"Think and no-think scoring differ little (Table 3, {ds3})",
              f"SRCC(S2 think) - SRCC(S2 no-think), Eq. 8, {dataset}; supports if inside +-{EQUIVALENCE_MARGIN}",
              "equivalent", lambda: _vs("think", _paper_t3("w think", dataset), "no-think",
                                        _paper_t3("w/o think", dataset), d=3) + f" SRCC on {ds3} (Table 3)",
              lambda i: i.scoring_diff(("s2", "think", "prob"), ("s2", "no_think", "prob"), "srcc"),
              margin=EQUIVALENCE_MARGIN),
        Claim(f"Stage-1 improves Stage-2 scoring (Table 5, {ds56})",
              f"(SRCC+PLCC)/2 of S2 - S2 w/o Stage-1, no-think, Eq. 8, {dataset}", "greater",
              lambda: _vs("w Stage-1", _paper_value(5, "w Stage-1", ds56, "TRAIN"), "w/o Stage-1",
                          _paper_value(5, "w/o Stage-1", ds56, "TRAIN"), d=3) + " (Table 5)",
              lambda i: i.scoring_diff(("s2", "no_think", "prob"), ("s2_no_stage1", "no_think", "prob"),
                                       "srcc_plcc_mean")),
        Claim("Stage-1 improves Stage-2 interpreting (Table 5)", "Q-Bench accuracy of S2 - S2 w/o Stage-1 (pp), no-think",
              "greater", lambda: _vs("w Stage-1", _paper_value(5, "w Stage-1", "Overall", "TRAIN"), "w/o Stage-1",
                                     _paper_value(5, "w/o Stage-1", "Overall", "TRAIN"), "%") + " (Table 5)",
              lambda i: i.qbench_diff(("s2", "no_think"), ("s2_no_stage1", "no_think"))),
        Claim("Without PD the think collapses during training (Table 6 row 1)",
              "think tokens of s2_no_pd, last 10 % - first 10 % of steps", "less", lambda: no_tables, collapse_in_run),
        Claim("Without PD the think ends shorter than with it (Table 6 row 1)",
              "think tokens over the last 10 % of steps, s2_no_pd - s2", "less", lambda: no_tables, collapse_vs_full),
        Claim("Without PD interpreting drops (Table 6 row 1)", "Q-Bench accuracy of S2 - S2 w/o PD (pp), no-think",
              "greater", lambda: _vs("full", _paper_t6(True, True, False, "Overall"), "w/o PD",
                                     _paper_t6(False, True, False, "Overall"), "%") + " (Table 6)",
              lambda i: i.qbench_diff(("s2", "no_think"), ("s2_no_pd", "no_think"))),
        Claim(f"Without PM probability-based inference degrades (Table 6 row 2, {ds56})",
              f"(SRCC+PLCC)/2 of S2 - S2 w/o PM, no-think, Eq. 8, {dataset}", "greater",
              lambda: _vs("full", _paper_t6(True, True, False, ds56), "w/o PM", _paper_t6(True, False, False, ds56),
                          d=3) + " (Table 6)",
              lambda i: i.scoring_diff(("s2", "no_think", "prob"), ("s2_no_pm", "no_think", "prob"),
                                       "srcc_plcc_mean")),
        Claim(f"Probability-based beats numeric inference (Table 6 row 3, {ds56})",
              f"(SRCC+PLCC)/2 of S2 prob - S2 num, no-think, {dataset}", "greater",
              lambda: _vs("prob", _paper_t6(True, True, False, ds56), "num", _paper_t6(True, True, True, ds56), d=3)
              + " (Table 6)",
              lambda i: i.scoring_diff(("s2", "no_think", "prob"), ("s2", "no_think", "num"), "srcc_plcc_mean")),
        Claim("The think answer reward rises during Stage-2 (Fig. 4)",
              "answer reward (think), last 10 % - first 10 % of logged steps", "greater",
              lambda: "curve only (Fig. 4), no numbers printed", rises("answer (think)")),
        Claim("The no-think answer reward rises with the think one (Fig. 4)",
              "answer reward (no-think), last 10 % - first 10 % of logged steps", "greater",
              lambda: "curve only (Fig. 4), no numbers printed", rises("answer (no-think)")),
        Claim("Stage-2 improves interpreting over the base: no-think (Table 4)",
              "Q-Bench accuracy of S2 - base (pp), no-think", "greater",
              lambda: _vs("S2 (w/o think)", _paper_value(4, "Refine-IQA-S2 (w/o think)", "Overall"), "base",
                          _paper_value(4, "Qwen2.5-VL-7B (Bai et al. 2025) (w/o think)", "Overall"), "%") + " (Table 4)",
              lambda i: i.qbench_diff(("s2", "no_think"), ("base", "no_think"))),
        Claim("Stage-2 improves interpreting over the base: think (Table 4)", "Q-Bench accuracy of S2 - base (pp), think",
              "greater", lambda: _vs("S2 (w think)", _paper_value(4, "Refine-IQA-S2 (w think)", "Overall"), "base",
                                     _paper_value(4, "Qwen2.5-VL-7B (w think)", "Overall"), "%") + " (Table 4)",
              lambda i: i.qbench_diff(("s2", "think"), ("base", "think"))),
    ]


def perception_difference(cfg: Config, a: str, b: str, task: str = "description") -> Interval:
    """Paired bootstrap interval of model ``a`` - model ``b`` on the perception test images both
    answered (description accuracy in percentage points, or mean grounding IoU)."""
    return _Inputs(cfg).perception_diff(a, b, task, 100.0 if task == "description" else 1.0)


def claims_paths(cfg: Config) -> tuple[Path, Path]:
    """``results/claims_<profile>.csv`` and ``results/CLAIMS.md`` (``CLAIMS_smoke.md`` for smoke)."""
    from refine_iqa_lib.artifacts import claims_md_name

    return cfg.results_dir / f"claims_{cfg.profile}.csv", cfg.results_dir / claims_md_name(cfg.profile)


def _compute(c: Claim, inputs: _Inputs) -> tuple[Interval, list[str], list[str]]:
    """One claim's interval on one configuration's files, its notes (what is missing, how matched,
    how judged) and its degenerate predictors."""
    inputs.notes, inputs.degenerate = [], []
    try:
        iv, missing = c.compute(inputs), ""
    except (FileNotFoundError, KeyError) as e:
        iv, missing = Interval(float("nan"), float("nan"), float("nan"), 0), f"missing: {e}"
    except ValueError as e:       # malformed values (an answer that is not 0/1, ...): say which claim
        raise ValueError(f"{c.claim}: {e}") from e
    notes = [missing] if missing else []
    notes += inputs.notes
    if iv.method:
        notes.append(iv.method)
    if iv.test is not None and iv.test.n_discordant < MIN_DISCORDANT:
        notes.append(f"{iv.test.n_discordant} item(s) differ between the models: under {MIN_DISCORDANT}, no verdict")
    if iv.n_undefined and not np.isfinite(iv.low):
        notes.append("the statistic is undefined on every resample")
    elif iv.n_undefined:
        notes.append(f"{iv.n_undefined} resample(s) with an undefined statistic left out")
    return iv, notes, inputs.degenerate


def _row(c: Claim, iv: Interval, seeds: str, notes: list[str], degenerate: list[str], paper: str = "") -> dict:
    """One row of :data:`COLUMNS`: the interval, the items for and against in the paper's
    direction, the exact test's p and the verdict (:func:`refine_iqa_lib.evaluation.statistics.judge`)."""
    better = worse = None
    p = math.nan
    if iv.test is not None:
        better, worse = iv.test.oriented(c.direction)
        p = iv.test.p_value
    return {"claim": c.claim, "paper": paper, "measure": c.measure, "value": iv.value, "ci_low": iv.low,
            "ci_high": iv.high, "n": int(iv.n), "n_better": better, "n_worse": worse, "p_value": p, "seeds": seeds,
            "verdict": judge(iv, c.direction, c.margin), "degenerate": "; ".join(dict.fromkeys(degenerate)),
            "note": "; ".join(dict.fromkeys(notes))}


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    df = pd.DataFrame(rows, columns=columns)
    for col in ("n_better", "n_worse"):
        df[col] = df[col].astype("Int64")
    return df


def build_claims(cfg: Config, write: bool = True) -> pd.DataFrame:
    """One row per claim (:data:`COLUMNS`), computed from the pipeline's files (see the module
    docstring); written to :func:`claims_paths` when ``write``."""
    inputs = _Inputs(cfg)
    rows = []
    for c in claims_spec(inputs.dataset):
        iv, notes, degenerate = _compute(c, inputs)
        rows.append(_row(c, iv, str(cfg.seed), notes, degenerate, c.paper()))
    df = _frame(rows, COLUMNS)
    df.attrs["profile"] = cfg.profile
    if write:
        write_claims(cfg, df)
    return df


def claims_rows(cfg: Config, refs) -> pd.DataFrame:
    """The claims whose text names one of ``refs`` (e.g. ``"Table 1"``, ``"Fig. 4"``), computed
    from the files present now (:func:`build_claims`, nothing written): what a notebook shows of
    the claims its runs decide. Columns ``claim``, ``ours [95 % CI]``, ``n``, ``verdict``, ``note``."""
    df = build_claims(cfg, write=False)
    keep = df["claim"].map(lambda c: any(r in c for r in refs))
    df = df[keep]
    return pd.DataFrame({"claim": df["claim"], "measure": df["measure"],
                         "ours [95 % CI]": [format_interval(v, lo, hi, 3) or "—"
                                            for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])],
                         "n": df["n"], "verdict": df["verdict"], "note": _notes(df)}).reset_index(drop=True)


def _notes(df: pd.DataFrame) -> list[str]:
    """The note column as shown: a degenerate predictor first."""
    out = []
    for deg, note in zip(df["degenerate"].fillna(""), df["note"].fillna("")):
        out.append("; ".join(x for x in (f"degenerate: {deg}" if deg else "", note) if x))
    return out


def _counts(df: pd.DataFrame) -> list[str]:
    """``better / worse`` items of each row (empty where the measure has no per-item values)."""
    return [f"{int(b)} / {int(w)}" if not (pd.isna(b) or pd.isna(w)) else ""
            for b, w in zip(df["n_better"], df["n_worse"])]


def format_p(p) -> str:
    """A p-value as the tables show it: 3 decimals, ``<0.001`` below, empty when missing.

    >>> format_p(0.125), format_p(2e-5), format_p(float("nan"))
    ('0.125', '<0.001', '')
    """
    if p is None or pd.isna(p):
        return ""
    return "<0.001" if p < 0.001 else f"{p:.3f}"


#: How the verdicts are reached, as CLAIMS.md states it.
RULE_TEXT = [
    "**Rule.** Each `measure` is a difference oriented as the paper states it, with a 95 % interval: a percentile",
    "bootstrap, paired over the same images / questions (matched by id) for two models. *supports*: the whole interval",
    "lies on the paper's side of 0; *contradicts*: wholly on the other side; *inconclusive*: otherwise, or when an",
    "input is missing. A difference of right/wrong answers (description, Q-Bench, and the Hard-Easy and \"keeps\"",
    "contrasts built from them) must also pass an exact test at 5 % (`p`: McNemar's exact test on the discordant",
    "pairs, an exact sign-flip test for the contrasts), and any difference of per-item values must rest on at least",
    f"{MIN_DISCORDANT} items that differ between the models (`better / worse`: the items on which it goes the paper's",
    "way / the other way); otherwise it is inconclusive. A training curve's window difference uses a moving-block",
    "standard error on the curve's residuals around a quadratic trend (blocks as long as the residuals'",
    "autocorrelation, at least a window) and a critical value simulated on flat AR(1) curves of the same length with",
    "that autocorrelation, so that a flat, slowly wandering curve is not read as a trend. A model that gives every",
    "image the same score counts as SRCC = PLCC = 0 (`degenerate`). \"Differ little\" is an equivalence: supports",
    f"when the interval lies inside ±{EQUIVALENCE_MARGIN} SRCC, contradicts when wholly outside. On synthetic data",
    "without an effect, at the tiny test sets' sizes, this rule gave a verdict in 0-6.1 % of the simulations of each",
    "kind of claim (`refine_iqa_lib.evaluation.calibration`; docs/claims.md lists the rates and the power).",
]


def claims_markdown(df: pd.DataFrame, profile: str) -> str:
    """The claims table as ``CLAIMS.md`` shows it: ``value [low, high]``, the items for and against, p and the rule."""
    shown = pd.DataFrame({
        "claim": df["claim"], "paper": df["paper"], "measure": df["measure"],
        "ours [95 % CI]": [format_interval(v, lo, hi, 3) or "—"
                           for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])],
        "n": df["n"], "better / worse": _counts(df), "p": [format_p(p) for p in df["p_value"]],
        "seeds": df["seeds"], "verdict": df["verdict"], "note": _notes(df)})
    counts = df["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("supports", "contradicts", "inconclusive"))
    return "\n".join([
        f"# Claims of the paper, checked at profile `{profile}`", "",
        "Generated by `refine_iqa_lib.evaluation.claims.build_claims` (notebook 09) from the evaluators' per-item",
        "prediction files and the training runs' metrics; the paper's numbers come from `results/paper/`. Nothing here",
        "is written by hand. At the `tiny` and `smoke` scales the model is the offline stand-in and the data are",
        "synthetic: a verdict says what these runs show, not whether the paper is right.", "",
        *RULE_TEXT, "",
        f"Verdicts: {summary}.", "",
        shown.to_markdown(index=False, disable_numparse=True), ""])


def write_claims(cfg: Config, df: pd.DataFrame) -> tuple[Path, Path]:
    """Write the claims CSV and Markdown atomically; return their paths."""
    csv, md = claims_paths(cfg)
    write_text(csv, df.to_csv(index=False))
    write_text(md, claims_markdown(df, cfg.profile))
    log.info("claims: %s, %s", csv, md)
    return csv, md


#: Extra columns of the claims table over seeds.
SEED_COLUMNS = ["seed_values", "seed_verdicts", "seeds_agreeing"]


def build_claims_over_seeds(cfgs: dict, out_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The claims table over training seeds: ``cfgs`` maps a seed to the configuration whose files
    hold that seed's runs and prediction files (the same test items for every seed).

    Returns ``(table, per_seed)``. ``table`` has :data:`COLUMNS` plus :data:`SEED_COLUMNS`: ``value``
    is the mean over seeds of the claim's difference, ``ci_low`` / ``ci_high`` its two-stage
    bootstrap interval over seeds and items (:func:`refine_iqa_lib.evaluation.statistics.
    pooled_over_seeds`; a training curve contributes each seed's moving-block distribution),
    ``n_better`` / ``n_worse`` / ``p_value`` the items for and against summed over seeds and the exact
    test on all of them, ``n`` items per seed, ``seeds`` the seeds, ``verdict`` the rule
    (:func:`refine_iqa_lib.evaluation.statistics.judge`) on the pooled interval and test,
    ``seed_values`` / ``seed_verdicts`` each seed's value and verdict (``;``-joined, in seed order)
    and ``seeds_agreeing`` how many seeds' own verdicts equal the pooled one. Every seed's items
    are matched by id: a seed that lacks or adds items raises a ``ValueError`` naming the claim,
    the seed and the items. A seed whose inputs are missing makes the claim inconclusive, its note
    naming it. ``per_seed``: one row per claim and seed (:data:`COLUMNS` with ``seeds`` = that
    seed). Written under ``out_dir`` when given (``claims_<profile>.csv``,
    ``claims_per_seed_<profile>.csv``, ``CLAIMS.md``).
    """
    if not cfgs:
        raise ValueError("build_claims_over_seeds: no seed; expected {seed: config}")
    seeds = sorted(cfgs)
    first = cfgs[seeds[0]]
    inputs = {s: _Inputs(cfgs[s]) for s in seeds}
    rows, per_seed = [], []
    for c in claims_spec(inputs[seeds[0]].dataset):
        ivs, verdicts, seed_notes, degenerate = [], [], [], []
        for s in seeds:
            iv, n, deg = _compute(c, inputs[s])
            ivs.append(iv)
            seed_notes.append(n)
            degenerate += [f"seed {s}: {d}" for d in deg]
            per_seed.append(_row(c, iv, str(s), n, deg))
            verdicts.append(per_seed[-1]["verdict"])
        shared = [x for x in seed_notes[0] if all(x in n for n in seed_notes[1:])]
        notes = shared + [f"seed {s}: {x}" for s, n in zip(seeds, seed_notes) for x in n if x not in shared]
        complete = all(iv.distribution is not None and np.isfinite(iv.value) for iv in ivs)
        if complete:
            try:
                pooled = pooled_over_seeds(ivs, first.eval.ci_level, first.seed, labels=seeds)
            except ValueError as e:
                raise ValueError(f"{c.claim}: {e}") from e
        else:
            pooled = Interval(float("nan"), float("nan"), float("nan"), 0)
            notes.append("a seed's value is missing: no pooled interval")
        row = _row(c, pooled, ",".join(map(str, seeds)), notes, degenerate, c.paper())
        row.update({"seed_values": "; ".join(f"{iv.value:.3f}" if np.isfinite(iv.value) else "nan" for iv in ivs),
                    "seed_verdicts": "; ".join(verdicts),
                    "seeds_agreeing": int(sum(v == row["verdict"] for v in verdicts))})
        rows.append(row)
    table = _frame(rows, COLUMNS + SEED_COLUMNS)
    per = _frame(per_seed, COLUMNS)
    if out_dir is not None:
        out_dir = Path(out_dir)
        write_text(out_dir / f"claims_{first.profile}.csv", table.to_csv(index=False))
        write_text(out_dir / f"claims_per_seed_{first.profile}.csv", per.to_csv(index=False))
        write_text(out_dir / "CLAIMS.md", seeds_markdown(table, first.profile))
        log.info("claims over seeds %s: %s", seeds, out_dir)
    return table, per


def seeds_markdown(df: pd.DataFrame, profile: str) -> str:
    """``CLAIMS.md`` of :func:`build_claims_over_seeds`."""
    shown = pd.DataFrame({
        "claim": df["claim"], "measure": df["measure"],
        "mean over seeds [95 % CI, seeds x items]": [format_interval(v, lo, hi, 3) or "—"
                                                     for v, lo, hi in zip(df["value"], df["ci_low"], df["ci_high"])],
        "n / seed": df["n"], "better / worse": _counts(df), "p": [format_p(p) for p in df["p_value"]],
        "per seed": df["seed_values"], "verdict": df["verdict"],
        "seeds' own verdicts": df["seed_verdicts"], "note": _notes(df)})
    counts = df["verdict"].value_counts()
    summary = ", ".join(f"{counts.get(v, 0)} {v}" for v in ("supports", "contradicts", "inconclusive"))
    seeds = df["seeds"].iloc[0] if len(df) else ""
    return "\n".join([
        f"# Claims of the paper over training seeds {seeds}, profile `{profile}`", "",
        "Generated by `refine_iqa_lib.findings` (`make findings`) with",
        "`refine_iqa_lib.evaluation.claims.build_claims_over_seeds`: every training the claims need (Stage-1,",
        "Stage-2 and the Table 5-6 ablations) ran once per seed from the same base, and every seed was evaluated",
        "on the same test items (matched by id; a seed that lacks one is an error). Nothing here is written by",
        "hand; the model is the offline stand-in and the data are synthetic: a verdict says what these runs show,",
        "not whether the paper is right.", "",
        "**Rule.** Each claim's `measure` is computed per seed as in `results/CLAIMS.md`; the value is its mean over",
        "seeds, the interval a two-stage percentile bootstrap (seeds drawn with replacement, then the items of each",
        "resample, items crossed with seeds; a training curve contributes each seed's moving-block distribution).",
        "`better / worse` and `p` sum the items of all seeds and test them together (McNemar's exact test / the exact",
        "sign-flip test). *supports* / *contradicts* / *inconclusive* as in `results/CLAIMS.md`, on that interval and",
        f"test (equivalence margin ±{EQUIVALENCE_MARGIN} SRCC). With 3 seeds the seed level is coarse:",
        "the per-seed values and verdicts are shown beside it.", "",
        f"Verdicts: {summary}.", "",
        shown.to_markdown(index=False, disable_numparse=True), ""])
