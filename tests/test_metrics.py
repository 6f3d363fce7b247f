"""Correlation metrics: known values, scipy agreement, NaN bookkeeping, logistic fit and fallback."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy import stats

from refine_iqa_lib.evaluation import metrics
from refine_iqa_lib.evaluation.metrics import correlation_report, logistic4, plcc, srcc


def test_hand_computed_example():
    # deviations p = [-1.5, -0.5, 0.5, 1.5], m = [-1.5, 0.5, -0.5, 1.5]: cov 4, variances 5 -> 0.8
    assert plcc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    # ranks equal the values here, so Spearman = Pearson of ranks = 0.8 as well
    assert srcc([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)


def test_agrees_with_scipy_directly():
    rng = np.random.default_rng(0)
    x = rng.normal(size=200)
    y = x + rng.normal(scale=0.7, size=200)
    assert srcc(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
    assert plcc(x, y) == pytest.approx(stats.pearsonr(x, y).statistic, abs=1e-12)


def test_monotone_nonlinear_prediction():
    x = np.linspace(0, 1, 50)
    mos = 1 + 4 / (1 + np.exp(-(x - 0.5) / 0.08))  # a sigmoid of x: monotone, far from linear
    assert srcc(x, mos) == pytest.approx(1.0)
    raw = plcc(x, mos)
    fitted = plcc(x, mos, fit="logistic4")
    assert raw < 0.97 and fitted > 0.9999 and fitted > raw
    # a decreasing predictor: the fitted map decreases and PLCC keeps the sign SRCC shows
    assert srcc(-x, mos) == pytest.approx(-1.0) and plcc(-x, mos, "logistic4") < -0.9999


def test_logistic4_formula():
    assert logistic4(np.array([-1e9, 0.0, 1e9]), 5.0, 1.0, 0.0, 2.0) == pytest.approx([1.0, 3.0, 5.0])


def test_report_counts_and_excludes_nan_predictions():
    pred = [1.0, np.nan, 3.0, 2.0, None, 4.0]
    mos = [1.0, 5.0, 3.0, 2.0, 0.0, 4.5]
    r = correlation_report(pred, mos)
    assert (r["n"], r["n_nan"], r["plcc_kind"]) == (4, 2, "raw")
    assert r["srcc"] == pytest.approx(1.0)
    assert r["plcc"] == pytest.approx(stats.pearsonr([1, 3, 2, 4], [1, 3, 2, 4.5]).statistic)
    assert correlation_report(pred, mos, logistic=True)["plcc_kind"] == "logistic4"


def test_bad_inputs_raise():
    with pytest.raises(ValueError, match="NaN/inf; use correlation_report"):
        srcc([1, np.nan, 3], [1, 2, 3])
    with pytest.raises(ValueError, match="MOS value"):
        correlation_report([1, 2, 3], [1, np.nan, 3])
    with pytest.raises(ValueError, match="3 predictions for 2 MOS"):
        plcc([1, 2, 3], [1, 2])
    with pytest.raises(ValueError, match="unknown PLCC fit 'cubic'"):
        plcc([1, 2, 3], [1, 2, 4], fit="cubic")


def test_degenerate_inputs_give_nan_with_a_warning():
    with pytest.warns(RuntimeWarning, match="constant predictions"):
        assert np.isnan(srcc([2, 2, 2, 2], [1, 2, 3, 4]))
    with pytest.warns(RuntimeWarning, match="only 2 finite pair"):
        r = correlation_report([1, 2, np.nan], [1, 2, 3])
    assert np.isnan(r["srcc"]) and np.isnan(r["plcc"]) and (r["n"], r["n_nan"]) == (2, 1)


def test_failed_logistic_fit_falls_back_to_raw(monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(metrics.optimize, "curve_fit", boom)
    x, y = [1, 2, 3, 4, 5], [1, 3, 2, 5, 4]
    with pytest.warns(RuntimeWarning, match="logistic4 fit failed"):
        r = correlation_report(x, y, logistic=True)
    assert r["plcc_kind"] == "raw" and r["plcc"] == pytest.approx(stats.pearsonr(x, y).statistic)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert plcc(x, y, "logistic4") == pytest.approx(r["plcc"])
