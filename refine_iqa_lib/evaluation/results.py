"""What every evaluator shares: the weights a model name means, and the result files.

Model names (``base``, ``s1``, ``s2`` and the ablations) and the folders they mean are defined in
:mod:`refine_iqa_lib.runs`; :func:`eval_model_path` checks that a name's weights exist and says
how to make them when they do not; :func:`available_models` keeps the names whose weights exist.

Result files: one JSON per evaluation under ``results/<profile>/<kind>/`` (:func:`result_dir`; the
schema is :mod:`refine_iqa_lib.evaluation.tables`'), written atomically with NaN as null
(:func:`write_record`), and per-item predictions under ``<work_dir>/eval/<kind>/``
(:func:`predictions_dir`). A result written after the weights it evaluates is *current*
(:func:`is_current`): what the evaluators' ``overwrite=False`` reads back.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.evaluation.statistics import METHOD as CI_METHOD
from refine_iqa_lib.io import repo_relative, write_json
from refine_iqa_lib.models import load_policy
from refine_iqa_lib.runs import (FINAL_MARKER, is_evaluated, model_paths, normalise_model_name, resolve_model_path,
                                 uses_warmup, weights_dir)

__all__ = ["RESULT_KINDS", "eval_model_path", "available_models", "ensure_base_model", "load_eval_model",
           "usable_images", "is_current", "result_dir", "predictions_dir", "clean_number", "repo_relative_root",
           "write_record", "ci_method"]

#: Result kinds (sub-folders of ``results/<profile>/``).
RESULT_KINDS = ("scoring", "perception", "qbench")


# --------------------------------------------------------------------------------------------
# named models


def eval_model_path(cfg: Config, name: str) -> Path:
    """The weights folder of model ``name``; raise ``FileNotFoundError`` saying how to make it.
    An ``evaluated:<folder>`` name has no folder of its own: pass the folder to the evaluator."""
    name = normalise_model_name(name)
    if is_evaluated(name):
        raise ValueError(f"model {name!r} is an evaluated folder, not a run of this project; pass its "
                         "folder (model_path=...) and the loaded model (loaded=...) to the evaluator")
    if name == "base" and not uses_warmup(cfg):
        return resolve_model_path(cfg)  # builds the stand-in, or checks the real model's folder
    folder = model_paths(cfg)[name]
    found = weights_dir(folder)
    if found is None:
        how = {"base": "the warm-up (notebook 03, or `python -m refine_iqa_lib.training.launch --stage warmup`)",
               "s1": "Stage-1 (notebook 03, or `python -m refine_iqa_lib.training.launch --stage 1`)",
               "s2": "Stage-2 (notebook 04, or `python -m refine_iqa_lib.training.launch --stage 2`)"}.get(
            name, "the ablation run (notebook 08, refine_iqa_lib.evaluation.ablations.run_ablation)")
        raise FileNotFoundError(f"{folder}: no finished run for model {name!r} (expected final/ with its "
                                f"completion marker); run {how} first")
    return found


def available_models(cfg: Config, names: Iterable[str] | None = None) -> dict[str, Path]:
    """The subset of ``names`` (default: all) whose weights exist, name -> folder."""
    out = {}
    for name in names or model_paths(cfg):
        try:
            out[normalise_model_name(name)] = eval_model_path(cfg, name)
        except FileNotFoundError:
            continue
    return out


def ensure_base_model(cfg: Config) -> Path:
    """The ``base`` weights, running the stand-in's warm-up through the launcher if they are missing.

    For a real model (or with the warm-up disabled) this is just :func:`eval_model_path`.
    """
    try:
        return eval_model_path(cfg, "base")
    except FileNotFoundError:
        if not uses_warmup(cfg):
            raise
    from refine_iqa_lib.training.launch import run_stage_subprocess  # evaluation runs the stand-in's warm-up

    run_stage_subprocess(cfg, "warmup", run_dir=model_paths(cfg)["base"])
    return eval_model_path(cfg, "base")


def load_eval_model(cfg: Config, name: str, model_path: str | os.PathLike | None = None):
    """``(model, processor)`` for model ``name`` (or the folder ``model_path``), in eval mode, on
    the GPU when there is one."""
    import torch

    path = model_path if model_path is not None else eval_model_path(cfg, name)
    device = "cuda" if torch.cuda.is_available() else None
    dtype = cfg.model.dtype if device else "float32"
    return load_policy(path, dtype=dtype, min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                       device=device)


# --------------------------------------------------------------------------------------------
# result files


def usable_images(cfg: Config, df: pd.DataFrame, what: str) -> tuple[pd.DataFrame, dict]:
    """Decode every image of ``df["image"]`` before any model work (:func:`refine_iqa_lib.io.check_images`).

    Missing, unreadable or refused files (refused by the rules of ``cfg.images``: pixel limit,
    aspect ratio, pixel values; the reason names the limit) stop the evaluation with an error naming
    them, or, with ``eval.skip_unreadable``, their rows are left out and ``({"unreadable": [{image,
    reason}, ...]})`` is returned for the result record. Returns ``(rows to evaluate, extra record keys)``."""
    from refine_iqa_lib.io import ImageRules, check_images

    bad = check_images(df["image"], desc=f"checking {what}", rules=ImageRules.from_config(cfg)).require(
        what, cfg.eval.skip_unreadable)
    if not cfg.eval.skip_unreadable:
        return df, {}
    gone = {b["image"] for b in bad}
    return df[~df["image"].astype(str).isin(gone)].reset_index(drop=True), {"unreadable": bad}


def is_current(cfg: Config, record: Path, name: str, model_path=None) -> bool:
    """Whether a result file exists and was written after the weights it evaluates (their
    completion marker, or ``config.json`` for a model folder without one): what ``overwrite=False``
    reuses, so a notebook can read back what an earlier notebook of the same run computed, and a
    retrained model is never judged by an old file."""
    record = Path(record)
    if not record.is_file():
        return False
    try:
        folder = Path(model_path) if model_path is not None else eval_model_path(cfg, name)
    except FileNotFoundError:
        return False
    stamp = next((f for f in (folder / FINAL_MARKER, folder / "config.json") if f.is_file()), None)
    return stamp is not None and record.stat().st_mtime >= stamp.stat().st_mtime


def result_dir(cfg: Config, kind: str) -> Path:
    """``results/<profile>/<kind>`` (``kind``: scoring, perception or qbench)."""
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {RESULT_KINDS}")
    return cfg.results_dir / cfg.profile / kind


def predictions_dir(cfg: Config, kind: str) -> Path:
    """``<work_dir>/eval/<kind>``: per-sample predictions (bulky, git-ignored)."""
    return cfg.work_dir / "eval" / kind


def clean_number(v: Any) -> Any:
    """JSON-safe number: NaN/inf -> None (the tables read None as missing); dicts cleaned all the way down."""
    if isinstance(v, dict):
        return {k: clean_number(vv) for k, vv in v.items()}
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def repo_relative_root(root: str) -> str:
    """A dataset root as result files record it: ``embedded`` stays, a folder is made
    repository-relative where it lies inside the repository."""
    return root if not root or root == "embedded" else repo_relative(root)


def write_record(path: Path, record: dict) -> Path:
    """Write a result record atomically (NaN written as null), with the versions of the packages
    that decide its pixels and numbers (:func:`refine_iqa_lib.environment.numeric_versions`) under
    ``versions``."""
    from refine_iqa_lib.environment import numeric_versions

    return write_json(path, clean_number({**dict(record), "versions": numeric_versions()}))


def ci_method(cfg: Config, unit: str) -> dict:
    """How a record's intervals were computed (the ``ci_method`` entry of every result file)."""
    return {"method": CI_METHOD, "level": float(cfg.eval.ci_level), "resamples": int(cfg.eval.ci_resamples),
            "seed": int(cfg.seed), "unit": unit}
