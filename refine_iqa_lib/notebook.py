"""What the evaluation notebooks (05-08) do first, one call each.

* :func:`eval_config` - load the configuration, widen pandas' text columns and log the one-line
  header (profile, model, evaluation batch, sample cap, generation budget);
* :func:`show_models` - make sure the base model exists (the stand-in's warm-up runs if it has not
  run yet), display which models have weights, and return those that do.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable

import pandas as pd

from refine_iqa_lib.config import Config, load_config
from refine_iqa_lib.io import repo_relative
from refine_iqa_lib.runs import BASE_MODELS, model_paths

__all__ = ["eval_header", "eval_config", "models_table", "show_models"]

log = logging.getLogger(__name__)


def eval_header(cfg: Config) -> str:
    """The evaluation notebooks' header line.

    >>> eval_header(load_config("smoke"))
    'profile smoke: model tiny, eval batch 4, max_samples 8, max_new_tokens 16'
    """
    e = cfg.eval
    return (f"profile {cfg.profile}: model {cfg.model.path}, eval batch {e.batch_size}, "
            f"max_samples {e.max_samples or 'all'}, max_new_tokens {e.max_new_tokens}")


def eval_config(profile: str | Config, overrides: dict | list | None = None) -> Config:
    """``load_config(profile, overrides)``, with pandas showing text columns up to 120 characters
    (completions and notes) and :func:`eval_header` logged."""
    cfg = load_config(profile, overrides)
    pd.set_option("display.max_colwidth", 120)
    log.info(eval_header(cfg))
    return cfg


def models_table(cfg: Config, names: Iterable[str], available: dict[str, Path]) -> pd.DataFrame:
    """One row per model of ``names``: its weights folder and whether it is in ``available``."""
    paths = model_paths(cfg)
    return pd.DataFrame([{"model": m, "weights": repo_relative(paths[m]), "available": m in available} for m in names])


def show_models(cfg: Config, names: Iterable[str] = BASE_MODELS) -> dict[str, Path]:
    """The models of ``names`` whose weights exist (name -> weights folder), after making sure the
    base exists (:func:`refine_iqa_lib.evaluation.results.ensure_base_model`: the stand-in's warm-up
    runs here if it has not run yet). Displays :func:`models_table`; a model whose run has not been
    trained is shown as unavailable and left out."""
    from IPython.display import display

    from refine_iqa_lib.evaluation.results import available_models, ensure_base_model

    names = list(names)
    ensure_base_model(cfg)
    models = available_models(cfg, names)
    display(models_table(cfg, names, models))
    return models
