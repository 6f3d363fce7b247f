"""Quality-scoring evaluation: Table 3, and the scoring columns of Tables 5-6. Named models and
result files are :mod:`refine_iqa_lib.evaluation.results`'; generation is
:mod:`refine_iqa_lib.generation`'s; sub-sampling is :func:`refine_iqa_lib.io.subsample`; the tables
are built by :mod:`refine_iqa_lib.evaluation.tables`.

:func:`evaluate_scoring` scores an IQA test set with one model in each requested ``mode``
(``think`` / ``no_think``) and ``method`` (``prob`` = Eq. 8's expectation over the integer
digit, one forward pass; ``numeric`` = generate and parse the number), computes SRCC and PLCC
with :func:`refine_iqa_lib.evaluation.metrics.correlation_report` and writes one JSON per
(model, dataset, mode, method) in the schema of :mod:`refine_iqa_lib.evaluation.tables`::

    results/<profile>/scoring/<model>__<dataset>__<mode>__<method>.json
    {"model": "s2", "dataset": "koniq", "mode": "no_think", "method": "prob", "srcc": ..,
     "plcc": .., "plcc_kind": "raw", "n": .., "n_nan": .., "profile": "tiny",
     "parse_failure_rate": 0.0, "n_unparsable": 0, "unparsable": "fallback", "fallback_prediction": 2.5,
     "ci": {"srcc": {"low": .., "high": .., "n": ..}, "plcc": {...}, "srcc_plcc_mean": {...}},
     "ci_method": {"method": "percentile", "level": 0.95, "resamples": 2000, "seed": 0, "unit": "image"}, ...}

``method`` is written ``prob`` or ``num`` (the tables' spelling; ``numeric`` is accepted as an
input). PLCC is raw unless ``eval.logistic_plcc`` is set, in which case a 4-parameter logistic
is fitted first; ``plcc_kind`` says which one the number is.

**Unparsable numeric answers** (``eval.unparsable``). Every record reports ``parse_failure_rate``
(share of images whose answer holds no number; always 0 for ``prob``, Eq. 8 always gives one) and
``n_unparsable``. With ``fallback`` (the default) SRCC/PLCC are computed over **all** images, an
unparsable answer being scored :data:`FALLBACK_PREDICTION` = 2.5, the midpoint of the [0, 5)
answer range: a data-free "no opinion" score that needs no training statistics and cannot flatter
a model that fails to answer (``fallback_prediction`` records it). With ``drop`` they are left out
(counted in ``n_nan``, as before; ``fallback_prediction`` is null). ``n`` is the number of images
the correlations use.

**Intervals** (``ci``): 95 % percentile bootstrap intervals over images, the ``(pred, mos)`` pairs
resampled jointly (:mod:`refine_iqa_lib.evaluation.statistics`; ``eval.ci_resamples``,
``eval.ci_level``, seed ``seed``), of SRCC, PLCC and their mean (Tables 5-6's scoring entry).
With ``eval.logistic_plcc`` the PLCC intervals are left null (re-fitting the logistic on every
resample is not done). Per-image predictions go to ``<work_dir>/eval/scoring/<same stem>.csv``:
``pred`` is the parsed number (empty when unparsable), ``pred_used`` the prediction the
correlations used (the fallback filled in; empty when dropped).
"""
from __future__ import annotations

import os
import warnings
from typing import Any, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.data.iqa import get_info
from refine_iqa_lib.data.scoring_data import default_split, is_custom, load_scoring_split, loader_name
from refine_iqa_lib.evaluation.metrics import correlation_report
from refine_iqa_lib.evaluation.results import (
    ci_method, eval_model_path, is_current, load_eval_model, predictions_dir, repo_relative_root, result_dir,
    usable_images, write_record,
)
from refine_iqa_lib.evaluation.statistics import bootstrap_ci
from refine_iqa_lib.io import ImageRules, read_json, repo_relative, subsample, write_text
from refine_iqa_lib.method.scoring import score_images
from refine_iqa_lib.prompts import check_mode, scoring_prompt
from refine_iqa_lib.runs import normalise_model_name, result_stem

__all__ = ["METHOD_SPELLING", "FALLBACK_PREDICTION", "method_name", "scoring_result_path", "load_scoring_set",
           "predict_scores", "prediction_used", "scoring_intervals", "evaluate_scoring"]

#: Input spelling of a scoring method -> spelling in result files.
METHOD_SPELLING = {"prob": "prob", "numeric": "num", "num": "num"}
#: Score given to an unparsable numeric answer with ``eval.unparsable: fallback``: the midpoint of [0, 5).
FALLBACK_PREDICTION = 2.5


def method_name(method: str) -> str:
    """``prob`` / ``numeric`` (or ``num``) -> the result files' spelling ``prob`` / ``num``."""
    if method not in METHOD_SPELLING:
        raise ValueError(f"unknown scoring method {method!r}; expected one of {sorted(METHOD_SPELLING)}")
    return METHOD_SPELLING[method]


def scoring_result_path(cfg: Config, model: str, dataset: str, mode: str, method: str) -> Path:
    """``results/<profile>/scoring/<model>__<dataset>__<mode>__<method>.json`` (``model`` spelt by
    :func:`refine_iqa_lib.runs.result_stem`)."""
    return result_dir(cfg, "scoring") / f"{result_stem(model)}__{dataset}__{mode}__{method_name(method)}.json"


def load_scoring_set(cfg: Config, dataset: str, split: str | None = None) -> tuple[pd.DataFrame, str]:
    """The evaluation rows of ``dataset`` (``max_samples`` seeded subset) and the split used.

    ``dataset`` is a configured name (``scoring.roots`` or ``scoring.custom``); ``embedded`` roots are
    built on demand.
    """
    split = split or default_split(cfg, dataset)
    df = load_scoring_split(cfg, dataset, split=split)
    if df.empty:
        title = "your labels (scoring.custom)" if is_custom(cfg, dataset) else get_info(loader_name(cfg, dataset)).title
        raise ValueError(f"{dataset}: the {split!r} split of {title} has no images")
    return subsample(df, cfg.eval.max_samples, cfg.seed), split


def predict_scores(model, processor, images: Sequence[Any], mode: str, method: str, batch_size: int,
                   max_new_tokens: int, generations: Sequence[str] | None = None,
                   rules: ImageRules | None = None) -> pd.DataFrame:
    """One row per image: ``score`` (NaN where a numeric answer cannot be parsed) and what the
    model wrote (``text`` for numeric, ``think`` in think mode) or ``digit_mass`` (prob). Batched,
    with a ``tqdm.auto`` bar; the model work is :func:`refine_iqa_lib.method.scoring.score_images`
    (``generations``: greedy completions already made with the same prompt, reused; ``rules``: how
    the pictures are opened, :func:`refine_iqa_lib.io.open_image`)."""
    method = {"prob": "prob", "num": "numeric"}[method_name(method)]
    rows = score_images(model, processor, list(images), mode=mode, method=method, batch_size=max(1, int(batch_size)),
                        max_new_tokens=int(max_new_tokens), generations=generations, rules=rules)
    out = pd.DataFrame([{k: v for k, v in r.items() if k != "digit_probs"} for r in rows])
    out["score"] = pd.to_numeric(out["score"], errors="coerce").astype(float)
    return out


def prediction_used(pred: np.ndarray, unparsable: str = "fallback") -> tuple[np.ndarray, float | None]:
    """The predictions the correlations use: unparsable (NaN) ones scored :data:`FALLBACK_PREDICTION`
    (``fallback``) or kept NaN for :func:`correlation_report` to exclude (``drop``).

    >>> prediction_used(np.array([1.0, np.nan]))
    (array([1. , 2.5]), 2.5)
    >>> prediction_used(np.array([1.0, np.nan]), "drop")[1] is None
    True
    """
    if unparsable not in ("fallback", "drop"):
        raise ValueError(f"unknown eval.unparsable {unparsable!r}; expected fallback or drop")
    pred = np.asarray(pred, dtype=float)
    if unparsable == "drop":
        return pred, None
    return np.where(np.isfinite(pred), pred, FALLBACK_PREDICTION), FALLBACK_PREDICTION


def scoring_intervals(cfg: Config, pred: np.ndarray, mos: np.ndarray, plcc_kind: str = "raw") -> dict:
    """``ci`` of a scoring record: SRCC, PLCC and their mean, images (pairs) resampled; finite pairs only."""
    keep = np.isfinite(pred)
    pairs = (pred[keep], np.asarray(mos, dtype=float)[keep])
    out = {}
    for stat in ("srcc", "plcc", "srcc_plcc_mean"):
        if stat != "srcc" and plcc_kind != "raw":
            out[stat] = None
            continue
        out[stat] = bootstrap_ci(pairs, stat, cfg.eval.ci_resamples, cfg.eval.ci_level, cfg.seed).record()
    return out


def evaluate_scoring(cfg: Config, model: str = "s2", datasets: Sequence[str] | None = None,
                     modes: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                     loaded=None, overwrite: bool = True, model_path: str | os.PathLike | None = None,
                     engine=None) -> list[dict]:
    """Score ``datasets`` (default ``scoring.eval``) with ``model`` in every mode x method
    (defaults ``eval.modes`` / ``eval.methods``); write and return one record per combination.

    ``loaded`` is an already loaded ``(model, processor)`` for ``model`` (saves reloading a 7B
    model). With ``overwrite=False`` a result file written after the model's weights (:func:`is_current`)
    is read back instead of recomputed.
    ``model_path``: the weights folder of an ``evaluated:<folder>`` model (any local Qwen2.5-VL
    checkpoint, see ``refine-iqa evaluate``); the project's own names find their folder themselves.
    ``engine``: a greedy generator with :func:`refine_iqa_lib.generation.greedy_generate`'s call
    (e.g. :class:`refine_iqa_lib.vllm_engine.VLLMGreedy`); it makes every generated answer (think
    mode, numeric answers), once per dataset and mode, and Eq. 8 forces them through the policy.
    The no-think Eq. 8 path is one teacher-forced forward of the policy whatever the engine.
    """
    name = normalise_model_name(model)
    datasets = list(datasets or cfg.scoring.eval)
    modes = [check_mode(m) for m in (modes or cfg.eval.modes)]
    methods = [method_name(m) for m in (methods or cfg.eval.methods)]
    records: list[dict] = []
    todo = [(d, mo, me) for d in datasets for mo in modes for me in methods]
    if not overwrite:
        done = [t for t in todo if is_current(cfg, scoring_result_path(cfg, name, *t), name, model_path)]
        records += [read_json(scoring_result_path(cfg, name, *t)) for t in done]
        todo = [t for t in todo if t not in done]
    if not todo:
        return records
    sets = {d: load_scoring_set(cfg, d) for d in dict.fromkeys(d for d, _, _ in todo)}
    bad = {d: usable_images(cfg, df, f"{d} ({split}) test images") for d, (df, split) in sets.items()}
    policy, processor = loaded if loaded is not None else load_eval_model(cfg, name, model_path)
    path = repo_relative(model_path if model_path is not None else eval_model_path(cfg, name))
    # numeric before prob in each mode: think-mode Eq. 8 reads its think from the numeric pass's greedy
    # completions (same prompt, same budget) instead of generating them a second time
    todo.sort(key=lambda t: (t[0], t[1], t[2] != "num"))
    for dataset, (df, split) in sets.items():
        df, unreadable = bad[dataset]
        made: dict[str, list[str]] = {}
        if engine is not None:  # every answer that is generated, from the engine (same prompt and budget)
            for mode in dict.fromkeys(mo for ds, mo, me in todo if ds == dataset and (mo == "think" or me == "num")):
                made[mode] = engine.generate(list(df["image"]), [scoring_prompt(mode)] * len(df),
                                             max_new_tokens=cfg.eval.max_new_tokens, batch_size=cfg.eval.batch_size,
                                             desc=f"{name} {dataset} {mode}")
        for ds, mode, method in todo:
            if ds != dataset:
                continue
            got = predict_scores(policy, processor, list(df["image"]), mode, method, cfg.eval.batch_size,
                                 cfg.eval.max_new_tokens,
                                 generations=made.get(mode) if mode == "think" or method == "num" else None,
                                 rules=ImageRules.from_config(cfg))
            if method == "num" and mode == "think":
                made[mode] = got["text"].astype(str).tolist()
            pred = got["score"].to_numpy(dtype=float)
            used, fallback = prediction_used(pred, cfg.eval.unparsable)
            mos = df["mos"].to_numpy(dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # degenerate sets give NaN, recorded below
                rep = correlation_report(used, mos, logistic=cfg.eval.logistic_plcc)
            failed = int((~np.isfinite(pred)).sum())
            rec = {"model": name, "dataset": dataset, "mode": mode, "method": method, **rep,
                   "parse_failure_rate": failed / len(pred) if len(pred) else None, "n_unparsable": failed,
                   "unparsable": cfg.eval.unparsable, "fallback_prediction": fallback,
                   "ci": scoring_intervals(cfg, used, mos, rep["plcc_kind"]), "ci_method": ci_method(cfg, "image"),
                   "profile": cfg.profile, "split": split, "n_images": int(len(df)),
                   "plcc_fit_requested": "logistic4" if cfg.eval.logistic_plcc else "raw",
                   "model_path": path, "root": repo_relative_root(cfg.scoring.roots.get(dataset, "")
                                             or cfg.scoring.custom.get(dataset, {}).get("labels", "")),
                   "pred_mean": float(np.nanmean(pred)) if np.isfinite(pred).any() else None,
                   "pred_std": float(np.nanstd(pred)) if np.isfinite(pred).any() else None,
                   **unreadable}
            out = scoring_result_path(cfg, name, dataset, mode, method)
            write_record(out, rec)
            preds = pd.concat([df[["image", "mos"]].reset_index(drop=True), got.rename(columns={"score": "pred"})],
                              axis=1).assign(pred_used=used)
            write_text(predictions_dir(cfg, "scoring") / f"{out.stem}.csv", preds.to_csv(index=False))
            records.append(rec)
    return records
