"""The ablations of Tables 5 and 6: what each one changes (data), how it is run, and the tables.

Training ablations are ordinary Stage-2 runs with config overrides (:data:`ABLATIONS`), launched
through :func:`refine_iqa_lib.training.launch.run_stage_subprocess` into their own run folders
``<work_dir>/runs/ablations/<name>``; everything else (data, steps, seeds, evaluation) is the
profile's. Their model names are the ones :data:`refine_iqa_lib.evaluation.tables.RUNS` reads:

===============  =================================  ==========================================
name             overrides                          row
===============  =================================  ==========================================
``s2_no_stage1``  ``stage2.init_from=base``          Table 5 "w/o Stage-1": Stage-2 starts from
                                                    the base model (for the stand-in: its
                                                    warm-up), Stage-1 skipped
``s2_no_pd``      ``stage2.use_pd=false``            Table 6 row 1: no PD reward (Eq. 2-4)
``s2_no_pm``      ``stage2.use_pm=false``            Table 6 row 2: TRL's standard GRPO
                                                    advantage instead of Eq. 6
===============  =================================  ==========================================

The inference ablation (Table 6 row 3, numeric vs probability-based scoring) needs no training:
it is model ``s2`` scored with ``method="num"`` (:data:`INFERENCE_ABLATIONS`).

As in the paper, every ablation is evaluated with **no-think** inference: scoring on the
Tables 5-6 datasets that the profile evaluates (``scoring.eval``) and Q-Bench (the
interpreting columns) for the rows the paper fills (:data:`EVALUATIONS`). :func:`run_ablations`
trains what is missing (the reference runs too, so that the notebook also works alone),
evaluates and writes Tables 5 and 6 (:func:`ablation_tables`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import pandas as pd

from refine_iqa_lib.config import Config

#: Training ablation name -> (dotted config overrides of the Stage-2 run, what it tests).
ABLATIONS: dict[str, dict] = {
    "s2_no_stage1": {"overrides": {"stage2.init_from": "base"},
                     "description": "Stage-2 without Stage-1 (starts from the base model)", "table": 5},
    "s2_no_pd": {"overrides": {"stage2.use_pd": False},
                 "description": "Stage-2 without the probability-difference reward", "table": 6},
    "s2_no_pm": {"overrides": {"stage2.use_pm": False},
                 "description": "Stage-2 without the policy-gradient modification (standard GRPO advantage)",
                 "table": 6},
}
#: Evaluation-only ablations: name -> (model, scoring method).
INFERENCE_ABLATIONS: dict[str, tuple[str, str]] = {"s2_numeric": ("s2", "num"), "s2_prob": ("s2", "prob")}
#: What Tables 5-6 read, per model: scoring methods (no-think) and whether Q-Bench is needed.
EVALUATIONS: dict[str, dict] = {
    "s2": {"methods": ("prob", "num"), "qbench": True},
    "s2_no_stage1": {"methods": ("prob",), "qbench": True},
    "s2_no_pd": {"methods": ("prob",), "qbench": True},
    "s2_no_pm": {"methods": ("prob",), "qbench": False},  # the paper reports "/" for interpreting
}
#: The datasets of Tables 5-6's scoring columns.
TABLE56_DATASETS = ("koniq", "agiqa3k", "spaq", "kadid10k")


def ablation_run_dir(cfg: Config, name: str) -> Path:
    """``<work_dir>/runs/ablations/<name>``."""
    check_ablation(name)
    return cfg.work_dir / "runs" / "ablations" / name


def check_ablation(name: str) -> str:
    """``name`` if it is a training ablation, else an error listing them."""
    if name not in ABLATIONS:
        raise ValueError(f"unknown ablation {name!r}; expected one of {sorted(ABLATIONS)}")
    return name


def ablation_overrides(name: str) -> list[str]:
    """The ablation's overrides as ``KEY=VALUE`` strings (the launcher's / CLI's form).

    >>> ablation_overrides("s2_no_pd")
    ['stage2.use_pd=false']
    """
    def text(v) -> str:
        return str(v).lower() if isinstance(v, bool) else str(v)

    return [f"{k}={text(v)}" for k, v in ABLATIONS[check_ablation(name)]["overrides"].items()]


def ablation_table_of_definitions() -> pd.DataFrame:
    """The ablation definitions as a table (for the notebook)."""
    rows = [{"name": n, "table": a["table"], "overrides": ", ".join(ablation_overrides(n)),
             "what it tests": a["description"]} for n, a in ABLATIONS.items()]
    rows += [{"name": n, "table": 6, "overrides": f"(no training) model {m}, method={meth}",
              "what it tests": "inference: " + ("numeric (parsed number)" if meth == "num" else "probability (Eq. 8)")}
             for n, (m, meth) in INFERENCE_ABLATIONS.items()]
    return pd.DataFrame(rows)


def _ensure_reference_runs(cfg: Config) -> None:
    """Train the warm-up / Stage-1 / Stage-2 runs the ablations start from or compare to, if missing."""
    from refine_iqa_lib.evaluation.results import ensure_base_model
    from refine_iqa_lib.runs import default_run_dir, weights_dir
    from refine_iqa_lib.training.launch import run_stage_subprocess

    ensure_base_model(cfg)
    for stage in (["1"] if cfg.stage1.enabled else []) + ["2"]:
        if weights_dir(default_run_dir(cfg, stage)) is None:
            run_stage_subprocess(cfg, stage)


def ablation_job(cfg: Config, name: str, resume: bool = True) -> dict:
    """The launcher job (:func:`refine_iqa_lib.training.launch.run_concurrently`) that trains one ablation."""
    return {"stage": "2", "run_dir": ablation_run_dir(cfg, name), "overrides": ablation_overrides(name),
            "resume": resume, "label": name}


def run_ablation(cfg: Config, name: str, resume: bool = True) -> Path:
    """Train one Stage-2 ablation (resuming / reusing a finished run) and return its run folder."""
    from refine_iqa_lib.training.launch import run_concurrently

    return run_concurrently(cfg, [ablation_job(cfg, name, resume)], parallel=1)[0]


def train_ablations(cfg: Config, names: Sequence[str] | None = None, resume: bool = True,
                    parallel: int | None = None) -> list[Path]:
    """Train the ablations, ``launch.parallel_runs`` at a time (they are independent Stage-2 runs);
    returns their run folders. Finished runs are reused."""
    from refine_iqa_lib.training.launch import run_concurrently

    names = [check_ablation(n) for n in (names or ABLATIONS)]
    return run_concurrently(cfg, [ablation_job(cfg, n, resume) for n in names], parallel=parallel)


def evaluate_ablations(cfg: Config, models: Sequence[str] | None = None, overwrite: bool = True) -> list[dict]:
    """No-think evaluations of Tables 5-6 (:data:`EVALUATIONS`) for ``models`` whose weights exist."""
    from refine_iqa_lib.evaluation.qbench import evaluate_qbench
    from refine_iqa_lib.evaluation.results import available_models, load_eval_model
    from refine_iqa_lib.evaluation.scoring_eval import evaluate_scoring

    datasets = [d for d in cfg.scoring.eval if d in TABLE56_DATASETS]
    records: list[dict] = []
    for name, path in available_models(cfg, models or list(EVALUATIONS)).items():
        spec = EVALUATIONS[name]
        loaded = load_eval_model(cfg, name)
        if datasets:
            records += evaluate_scoring(cfg, name, datasets, modes=["no_think"], methods=list(spec["methods"]),
                                        loaded=loaded, overwrite=overwrite)
        if spec["qbench"]:
            records += evaluate_qbench(cfg, name, modes=["no_think"], loaded=loaded, overwrite=overwrite)
    return records


def ablation_tables(cfg: Config, write: bool = True) -> dict[int, pd.DataFrame]:
    """Tables 5 and 6 (paper rows beside ours) from the results written so far."""
    from refine_iqa_lib.evaluation.tables import our_table

    return {n: our_table(cfg, n, write=write) for n in (5, 6)}


def run_ablations(cfg: Config, names: Sequence[str] | None = None, train: bool = True, evaluate: bool = True,
                  overwrite: bool = True) -> dict[int, pd.DataFrame]:
    """Train the ablations (and any missing reference run), evaluate them and ``s2``, and write
    Tables 5-6; returns the two tables."""
    names = [check_ablation(n) for n in (names or ABLATIONS)]
    if train:
        _ensure_reference_runs(cfg)
        train_ablations(cfg, names)
    if evaluate:
        evaluate_ablations(cfg, ["s2", *names], overwrite=overwrite)
    return ablation_tables(cfg)
