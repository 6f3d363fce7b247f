"""Where training runs live and which weights a model name means (shared by training and evaluation).

Run folders: ``<work_dir>/runs/{warmup,stage1,stage2}`` for the pipeline's stages and
``<work_dir>/runs/ablations/<name>`` for the Stage-2 ablations (Tables 5-6). A stage that finished
has ``final/`` with its weights and ``final/refine_final.json`` (:data:`FINAL_MARKER`, written
last); each complete checkpoint has ``refine_run.json`` (:data:`CHECKPOINT_MARKER`).

Model names (the result files and :data:`refine_iqa_lib.evaluation.tables.RUNS` use them):

=================  =========================================================================
name               weights
=================  =========================================================================
``base``           the real base model (``model.path``), or for the stand-in the model after
                   its supervised warm-up (``<work_dir>/runs/warmup``; the warm-up is not in
                   the paper, it only gives the random stand-in something to refine)
``s1``             Refine-IQA-S1: ``<work_dir>/runs/stage1``
``s2``             Refine-IQA-S2: ``<work_dir>/runs/stage2``
``s2_no_stage1``,  the Stage-2 ablations of Tables 5-6:
``s2_no_pd``,      ``<work_dir>/runs/ablations/<name>``
``s2_no_pm``
``evaluated:<x>``  any other local Qwen2.5-VL folder ``<x>`` scored by ``refine-iqa evaluate``
                   (:func:`evaluated_name`); its results show in Tables 3-4 as "evaluated here"
=================  =========================================================================
"""
from __future__ import annotations

import os
from pathlib import Path

from refine_iqa_lib.config import Config, ConfigError

__all__ = ["STAGES", "STAGE_DIRS", "STAGE_SECTIONS", "FINAL_MARKER", "CHECKPOINT_MARKER", "BASE_MODELS",
           "ABLATION_MODELS", "MODEL_NAMES", "EVALUATED_PREFIX", "check_stage", "stage_section", "default_run_dir", "final_dir",
           "is_complete", "weights_dir", "uses_warmup", "resolve_model_path", "model_paths", "normalise_model_name",
           "evaluated_name", "is_evaluated", "result_stem"]

#: The training stages: the stand-in's SFT warm-up, Stage-1 (perception) and Stage-2 (scoring).
STAGES = ("warmup", "1", "2")
#: Stage -> run folder name under ``<work_dir>/runs``.
STAGE_DIRS = {"warmup": "warmup", "1": "stage1", "2": "stage2"}
#: Stage -> its config section.
STAGE_SECTIONS = {"warmup": "warmup", "1": "stage1", "2": "stage2"}
FINAL_MARKER = "refine_final.json"
CHECKPOINT_MARKER = "refine_run.json"
#: Model names every evaluator knows (see the module docstring).
BASE_MODELS = ("base", "s1", "s2")
ABLATION_MODELS = ("s2_no_stage1", "s2_no_pd", "s2_no_pm")
MODEL_NAMES = BASE_MODELS + ABLATION_MODELS
#: Prefix of the model name of a folder evaluated by ``refine-iqa evaluate`` (not a run of ours).
EVALUATED_PREFIX = "evaluated:"


def check_stage(stage) -> str:
    """The stage as a string (``"warmup"``, ``"1"``, ``"2"``); anything else raises ``ConfigError``.

    >>> check_stage(2), check_stage("warmup")
    ('2', 'warmup')
    """
    stage = str(stage)
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")
    return stage


def stage_section(cfg: Config, stage):
    """The config section of ``stage`` (``cfg.warmup``, ``cfg.stage1`` or ``cfg.stage2``)."""
    return getattr(cfg, STAGE_SECTIONS[check_stage(stage)])


def default_run_dir(cfg: Config, stage) -> Path:
    """``<work_dir>/runs/{warmup,stage1,stage2}``."""
    return cfg.work_dir / "runs" / STAGE_DIRS[check_stage(stage)]


def final_dir(run_dir: str | os.PathLike) -> Path:
    return Path(run_dir) / "final"


def is_complete(run_dir: str | os.PathLike) -> bool:
    """Whether a run folder holds a finished stage (``final/refine_final.json``)."""
    return (final_dir(run_dir) / FINAL_MARKER).is_file()


def weights_dir(run_dir: str | os.PathLike) -> Path | None:
    """The finished weights of a run folder (``final/`` with its marker and ``config.json``), or
    None. Checkpoints are never used as a model."""
    final = final_dir(run_dir)
    return final if (final / FINAL_MARKER).is_file() and (final / "config.json").is_file() else None


def uses_warmup(cfg: Config) -> bool:
    """Whether this configuration's base is the stand-in after its SFT warm-up: the model is the
    offline stand-in (``model.path: tiny``, or a folder built as the stand-in) and
    ``warmup.enabled``. The one answer to "is the warm-up used?" (training, evaluation, plans)."""
    from refine_iqa_lib.models import is_stand_in

    if not cfg.warmup.enabled:
        return False
    return cfg.model.path == "tiny" or is_stand_in(cfg.resolve(cfg.model.path))


def resolve_model_path(cfg) -> Path:
    """The policy folder a config names: ``model.path: tiny`` builds (or reuses) the stand-in in
    ``<cache_dir>/tiny-seed<seed>``; any other value is a local Qwen2.5-VL folder, checked."""
    from refine_iqa_lib.models import check_model_dir

    if cfg.model.path == "tiny":
        from refine_iqa_lib.standin.model import build_tiny_model

        return build_tiny_model(cfg.cache_dir / f"tiny-seed{cfg.model.seed}", seed=cfg.model.seed,
                                arch=cfg.model.tiny_arch or None)
    return check_model_dir(cfg.resolve(cfg.model.path))


def _base_model_dir(cfg: Config) -> Path:
    if cfg.model.path == "tiny":  # the raw stand-in (its folder is built on demand)
        return cfg.cache_dir / f"tiny-seed{cfg.model.seed}"
    return cfg.resolve(cfg.model.path)


def model_paths(cfg: Config) -> dict[str, Path]:
    """Model name -> the folder its weights are read from (whether or not it exists yet): a run
    folder (its ``final/`` holds the weights), or the base model's own folder.

    >>> from refine_iqa_lib.config import load_config
    >>> paths = model_paths(load_config("smoke"))
    >>> sorted(paths), paths["s2"].parts[-2:]
    (['base', 's1', 's2', 's2_no_pd', 's2_no_pm', 's2_no_stage1'], ('runs', 'stage2'))
    """
    runs = cfg.work_dir / "runs"
    out = {"base": runs / STAGE_DIRS["warmup"] if uses_warmup(cfg) else _base_model_dir(cfg),
           "s1": runs / STAGE_DIRS["1"], "s2": runs / STAGE_DIRS["2"]}
    out.update({name: runs / "ablations" / name for name in ABLATION_MODELS})
    return out


def normalise_model_name(name: str) -> str:
    """``"S1"`` -> ``"s1"``; ``evaluated:<x>`` names are kept as written; an unknown name raises
    listing the known ones.

    >>> normalise_model_name(" S2 "), normalise_model_name("evaluated:My-Model")
    ('s2', 'evaluated:My-Model')
    """
    raw = str(name).strip()
    if is_evaluated(raw):
        if not raw[len(EVALUATED_PREFIX):].strip():
            raise ValueError(f"model name {name!r}: expected {EVALUATED_PREFIX}<folder name>")
        return EVALUATED_PREFIX + raw[len(EVALUATED_PREFIX):].strip()
    key = raw.lower()
    if key not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; expected one of {list(MODEL_NAMES)} "
                         f"or {EVALUATED_PREFIX}<folder name>")
    return key


def is_evaluated(name: str) -> bool:
    """Whether ``name`` is an ``evaluated:<folder>`` model (a folder scored by ``refine-iqa evaluate``)."""
    return str(name).strip().lower().startswith(EVALUATED_PREFIX)


def evaluated_name(folder: str | os.PathLike) -> str:
    """The model name results of an evaluated folder carry: ``evaluated:<folder name>``.

    >>> evaluated_name("/models/Q-Insight-7B/")
    'evaluated:Q-Insight-7B'
    """
    return EVALUATED_PREFIX + Path(folder).name


def result_stem(name: str) -> str:
    """A model name as it appears in result file names (``:`` is not allowed on every file system).

    >>> result_stem("s2"), result_stem("evaluated:Q-Insight-7B")
    ('s2', 'evaluated--Q-Insight-7B')
    """
    return str(name).replace(":", "--").replace("/", "_")
