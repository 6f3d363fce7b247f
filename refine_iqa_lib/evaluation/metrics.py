"""Correlation metrics for quality scoring: thin wrappers over scipy.

* **SRCC**: Spearman rank correlation, ``scipy.stats.spearmanr``.
* **PLCC**: Pearson linear correlation, ``scipy.stats.pearsonr``, either on the raw predictions
  (``fit="raw"``, what most LMM-IQA papers report) or after the 4-parameter logistic map of the
  VQEG convention (``fit="logistic4"``)::

      f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2

  fitted to the MOS by least squares (``scipy.optimize.curve_fit``, start b1 = max MOS,
  b2 = min MOS, b3 = mean prediction, b4 = std of predictions). The fitted map is monotone; the
  PLCC keeps its direction (sign of b1 - b2), so a predictor that runs backwards stays negative,
  as its SRCC does. If the fit fails, the raw PLCC is returned with a warning and reported as
  ``plcc_kind="raw"``.

Predictions that are NaN (an unparsable answer) are never dropped silently:
:func:`correlation_report` counts them (``n_nan``) and computes the metrics on the rest;
:func:`srcc` and :func:`plcc` refuse NaN outright. A NaN MOS is always an error.

>>> srcc([1, 2, 3, 4], [10, 20, 30, 45]), round(plcc([1, 2, 3], [2, 4, 6]), 12)
(1.0, 1.0)
>>> r = correlation_report([1.0, float("nan"), 3.0, 2.0], [1.0, 2.0, 3.0, 2.5])
>>> r["srcc"], round(r["plcc"], 4), r["plcc_kind"], r["n"], r["n_nan"]  # plcc = 2 / sqrt(2 * 13/6)
(1.0, 0.9608, 'raw', 3, 1)
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import optimize, stats

PLCC_FITS = ("raw", "logistic4")


def _pair(pred, mos, allow_nan_pred: bool = False) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(pred, dtype=float).ravel()
    m = np.asarray(mos, dtype=float).ravel()
    if p.shape != m.shape:
        raise ValueError(f"{p.size} predictions for {m.size} MOS values; expected one per image")
    if not np.all(np.isfinite(m)):
        raise ValueError(f"{int((~np.isfinite(m)).sum())} MOS value(s) are NaN/inf; ground truth must be finite")
    if not allow_nan_pred and not np.all(np.isfinite(p)):
        raise ValueError(f"{int((~np.isfinite(p)).sum())} prediction(s) are NaN/inf; use correlation_report, "
                         "which counts and excludes them")
    return p, m


def _degenerate(p: np.ndarray, m: np.ndarray) -> str | None:
    if p.size < 3:
        return f"only {p.size} finite pair(s)"
    if np.ptp(p) == 0 or np.ptp(m) == 0:
        return "constant predictions" if np.ptp(p) == 0 else "constant MOS"
    return None


def srcc(pred, mos) -> float:
    """Spearman rank correlation (NaN, with a warning, when undefined).

    >>> srcc([3, 1, 2], [0.3, 0.1, 0.25])
    1.0
    """
    p, m = _pair(pred, mos)
    why = _degenerate(p, m)
    if why:
        warnings.warn(f"SRCC undefined: {why}", RuntimeWarning, stacklevel=2)
        return float("nan")
    return float(stats.spearmanr(p, m).statistic)


def logistic4(x, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    """The 4-parameter logistic ``(b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    >>> float(logistic4(0.0, 5.0, 1.0, 0.0, 1.0))
    3.0
    """
    z = np.clip(-(np.asarray(x, dtype=float) - b3) / max(abs(b4), 1e-12), -700, 700)
    return (b1 - b2) / (1.0 + np.exp(z)) + b2


def _plcc(p: np.ndarray, m: np.ndarray, fit: str) -> tuple[float, str]:
    if fit not in PLCC_FITS:
        raise ValueError(f"unknown PLCC fit {fit!r}; expected one of {PLCC_FITS}")
    why = _degenerate(p, m)
    if why:
        warnings.warn(f"PLCC undefined: {why}", RuntimeWarning, stacklevel=3)
        return float("nan"), fit
    if fit == "logistic4":
        start = [m.max(), m.min(), p.mean(), p.std() or 1.0]
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optimize.OptimizeWarning)
                params, _ = optimize.curve_fit(logistic4, p, m, p0=start, maxfev=20000)
            fitted = logistic4(p, *params)
            if not np.all(np.isfinite(fitted)) or np.ptp(fitted) == 0:
                raise RuntimeError("the fitted curve is flat or not finite")
        except (RuntimeError, ValueError) as e:
            warnings.warn(f"logistic4 fit failed ({e}); reporting the raw PLCC", RuntimeWarning, stacklevel=3)
        else:  # keep the predictor's direction: a decreasing map gives a negative PLCC, as SRCC does
            return float(np.sign(params[0] - params[1]) * stats.pearsonr(fitted, m).statistic), "logistic4"
    return float(stats.pearsonr(p, m).statistic), "raw"


def plcc(pred, mos, fit: str = "raw") -> float:
    """Pearson correlation of ``pred`` (raw, or mapped by the fitted :func:`logistic4`) with ``mos``.

    >>> round(plcc([1, 2, 3, 4], [1, 3, 2, 4]), 3)
    0.8
    """
    p, m = _pair(pred, mos)
    return _plcc(p, m, fit)[0]


def correlation_report(pred, mos, logistic: bool = False) -> dict:
    """SRCC and PLCC with their bookkeeping: ``{srcc, plcc, plcc_kind, n, n_nan}``.

    NaN predictions are counted in ``n_nan`` and excluded; ``n`` is the number of pairs used.
    ``plcc_kind`` is ``"logistic4"`` only when that fit was asked for and succeeded.
    """
    p, m = _pair(pred, mos, allow_nan_pred=True)
    keep = np.isfinite(p)
    p, m = p[keep], m[keep]
    why = _degenerate(p, m)
    if why:
        warnings.warn(f"correlations undefined: {why}", RuntimeWarning, stacklevel=2)
        rho = float("nan")
    else:
        rho = float(stats.spearmanr(p, m).statistic)
    with warnings.catch_warnings():
        if why:
            warnings.simplefilter("ignore", RuntimeWarning)
        r, kind = _plcc(p, m, "logistic4" if logistic else "raw")
    return {"srcc": rho, "plcc": r, "plcc_kind": kind, "n": int(keep.sum()), "n_nan": int((~keep).sum())}
