"""Per-item values read back from the evaluators' prediction files, matched by item id across models:
the inputs of every paired difference (the Advantage rows of Tables 1-2, the claims table).

The files live under ``<work_dir>/eval/`` (:func:`refine_iqa_lib.evaluation.results.predictions_dir`):

* ``perception/<model>__images.csv`` - one row per (image, task): ``image_id``, ``category``,
  ``task`` (``description`` / ``grounding``), ``value`` (1/0 described right, or the IoU);
* ``scoring/<model>__<dataset>__<mode>__<method>.csv`` - ``image``, ``mos``, ``pred`` and
  ``pred_used`` (the prediction SRCC/PLCC used: the fallback filled in, empty when dropped);
* ``qbench/<model>__<mode>.jsonl`` - one row per question: ``id``, ``correct``, ``type_name``,
  ``concern_name``.

A missing file raises ``FileNotFoundError`` naming it. Items are matched by id (:func:`matched`),
never by row order.
"""
from __future__ import annotations

from pathlib import Path
import numpy as np
import pandas as pd

from refine_iqa_lib.io import read_jsonl


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no {what} (run its evaluation first)")
    return path


def perception_values(pred_dir: str | Path, model: str, task: str = "description") -> pd.DataFrame:
    """Per-image ``category`` (the distortion engine's name) and ``value`` of ``model`` for ``task``,
    indexed by ``image_id``."""
    path = _need(Path(pred_dir) / "perception" / f"{model}__images.csv", f"per-image perception values of {model!r}")
    df = pd.read_csv(path)
    df = df[df["task"] == task]
    return pd.DataFrame({"category": df["category"].astype(str).to_numpy(), "value": df["value"].to_numpy(dtype=float)},
                        index=df["image_id"].astype(str).to_numpy())


def scoring_values(pred_dir: str | Path, model: str, dataset: str, mode: str, method: str,
                   keep_dropped: bool = False) -> pd.DataFrame:
    """``pred`` (the prediction the correlations used), ``mos`` and ``parsed`` (the answer held a
    number; always true for ``prob``) per image, indexed by image path. Images whose prediction was
    dropped (``eval.unparsable: drop``) are left out, or kept with a NaN ``pred`` when ``keep_dropped``."""
    path = _need(Path(pred_dir) / "scoring" / f"{model}__{dataset}__{mode}__{method}.csv",
                 f"per-image scores of {model!r} ({dataset}, {mode}, {method})")
    df = pd.read_csv(path)
    pred = df["pred_used"] if "pred_used" in df.columns else df["pred"]
    out = pd.DataFrame({"pred": pred.to_numpy(dtype=float), "mos": df["mos"].to_numpy(dtype=float),
                        "parsed": np.isfinite(df["pred"].to_numpy(dtype=float))},
                       index=df["image"].astype(str))
    return out if keep_dropped else out[np.isfinite(out["pred"])]


def qbench_values(pred_dir: str | Path, model: str, mode: str) -> pd.DataFrame:
    """``correct`` (1.0 / 0.0), ``parsed`` (the answer named a candidate; an unparsable answer is wrong),
    ``type_name``, ``concern_name`` per question, indexed by question id."""
    path = _need(Path(pred_dir) / "qbench" / f"{model}__{mode}.jsonl", f"Q-Bench answers of {model!r} ({mode})")
    df = pd.DataFrame(read_jsonl(path))
    df.index = df["id"].astype(str)
    parsed = df["pred"].notna() if "pred" in df.columns else pd.Series(True, index=df.index)
    return df.assign(correct=df["correct"].astype(bool).astype(float),
                     parsed=parsed.astype(bool))[["correct", "parsed", "type_name", "concern_name"]]


def matched(*frames: pd.Series | pd.DataFrame) -> list[pd.Series | pd.DataFrame]:
    """The frames restricted to the ids all of them have, in one sorted order (paired items).

    >>> a = pd.Series([1.0, 0.0, 1.0], index=["x", "y", "z"]); b = pd.Series([0.0, 1.0], index=["z", "x"])
    >>> [list(s) for s in matched(a, b)]
    [[1.0, 1.0], [1.0, 0.0]]
    """
    common = sorted(set.intersection(*(set(f.index) for f in frames))) if frames else []
    return [f.loc[common] for f in frames]
