"""Validation while training (Stage-2): is the run reproducing?

Every ``stage2.eval_every`` optimizer steps (0 = off), :class:`ValidationCallback` scores a fixed
validation subset with the policy being trained and appends one row to the run's
``metrics.jsonl``::

    {"kind": "val", "step": 20, "val/srcc": .., "val/plcc": .., "val/answer": .., "val/n": 32, ...}

* ``val/srcc``, ``val/plcc``: Eq. 8 in no-think mode (one forward pass per picture,
  :func:`refine_iqa_lib.method.scoring.score_images`) against the MOS; PLCC raw.
* ``val/answer``: Eq. 1's answer reward of the greedy answer in the stage's mode (think for
  Stage-2), the number parsed, at most ``max_completion_length`` tokens: the greedy twin of the
  training curve ``rewards/answer/mean``.

The validation subset (:func:`validation_frame`): for each training set (``scoring.train``), its
``val`` split when it has one (KonIQ-10k and the embedded set: the 1,000 / 10 % validation
pictures), else its ``test`` split (SPAQ; your own labels with a split column but no ``val``
rows), else every row (your own labels without a split column: then validation pictures are also
training pictures, and a warning says so); ``stage2.eval_samples`` of them drawn with
:func:`refine_iqa_lib.io.subsample` and the stage's seed. The subset is fixed for the run, so the
curve compares like with like.

Validation never changes training: it runs without gradients, in eval mode, inside a forked
torch RNG (the sampling of the next rollouts draws exactly what it would have drawn), and its
settings are left out of the resume fingerprint. Every process computes it (a ZeRO-3 shard needs
all of them); the main process writes the row.

The three values also go into the step's logged metrics through the trainer
(:meth:`~refine_iqa_lib.training.trainer.RefineGRPOTrainer.log_step_metric`, when the run hands
its trainer to the callback as ``trainer``), so the trackers of ``launch.report_to`` draw the
validation curve beside the training curves (TensorBoard: ``train/val/srcc``).

``stage2.keep_best``: when a validation SRCC beats every earlier one, the policy is saved to
``<run>/best/`` (atomically; ``best/refine_best.json``, written inside the folder before it is
renamed into place, holds the step and the validation row). For a LoRA run the folder holds
the adapter.
"""
from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from refine_iqa_lib.config import Config
from refine_iqa_lib.io import append_jsonl, atomic_dir, read_json, subsample, write_json

__all__ = ["BEST_DIR", "BEST_MARKER", "VAL_SPLITS", "validation_frame", "validate", "ValidationCallback"]

log = logging.getLogger(__name__)

BEST_DIR = "best"
BEST_MARKER = "refine_best.json"
#: Splits tried, in order, for a training set's validation pictures.
VAL_SPLITS = ("val", "test")


def validation_frame(cfg: Config) -> pd.DataFrame:
    """The fixed validation subset of a Stage-2 run (see the module docstring)."""
    from refine_iqa_lib.data.scoring_data import load_scoring_split

    parts = []
    for name in cfg.scoring.train:
        df = None
        for split in VAL_SPLITS:
            try:
                df = load_scoring_split(cfg, name, split)
            except ValueError:  # the adapter has no such split
                continue
            if not df.empty and (df["split"] == split).all():
                break
            if not df.empty and (df["split"] == "all").all():  # own labels without a split column
                log.warning("validation: %s has no val/test split; its validation pictures are training pictures",
                            name)
                break
            df = None
        if df is None:
            raise ValueError(f"validation: training set {name!r} has neither a val nor a test split; "
                             "set stage2.eval_every=0 or give it a split column")
        parts.append(df[["dataset", "image", "mos", "split"]])
    frame = pd.concat(parts, ignore_index=True)
    return subsample(frame, int(cfg.stage2.eval_samples), int(cfg.stage2.seed))


def validate(model, processor, frame: pd.DataFrame, cfg: Config) -> dict:
    """``{"val/srcc", "val/plcc", "val/answer", "val/n", "val/unparsed"}`` of ``model`` on ``frame``."""
    from refine_iqa_lib.evaluation.metrics import correlation_report
    from refine_iqa_lib.method.rewards import answer_reward
    from refine_iqa_lib.method.scoring import score_images

    s = cfg.stage2
    images, mos = list(frame["image"]), frame["mos"].to_numpy(dtype=float)
    bs = int(cfg.eval.batch_size)
    prob = score_images(model, processor, images, mode="no_think", method="prob", batch_size=bs, variant=s.variant,
                        progress=False)
    num = score_images(model, processor, images, mode=s.mode, method="numeric", batch_size=bs,
                       max_new_tokens=s.max_completion_length, variant=s.variant, progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant prediction has no correlation: NaN
        rep = correlation_report([r["score"] for r in prob], mos, logistic=False)
    answers = [answer_reward(r["score"] if r["parsed"] else None, m, s.answer_eps, s.variant)
               for r, m in zip(num, mos)]
    return {"val/srcc": rep["srcc"], "val/plcc": rep["plcc"], "val/answer": float(np.mean(answers)),
            "val/n": int(len(images)), "val/unparsed": int(sum(not r["parsed"] for r in num))}


def _finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


class ValidationCallback(TrainerCallback):
    """Validation every ``stage2.eval_every`` steps, rows in ``metrics.jsonl``, ``best/`` with
    ``keep_best`` (module docstring). ``processor`` is the run's processor (saved beside the best
    weights)."""

    def __init__(self, cfg: Config, run_dir: str | os.PathLike, processor, frame: pd.DataFrame | None = None):
        self.cfg, self.run_dir, self.processor = cfg, Path(run_dir), processor
        self.every, self.keep_best = int(cfg.stage2.eval_every), bool(cfg.stage2.keep_best)
        self.frame = validation_frame(cfg) if frame is None else frame
        self.best: float | None = None
        self.trainer = None   # set by the run: validation values then join the step's logged metrics
        log.info("[val] every %d steps on %d pictures (%s)%s", self.every, len(self.frame),
                 ", ".join(f"{d} {sp}" for d, sp in self.frame[["dataset", "split"]].drop_duplicates().values),
                 "; keeping the best-SRCC weights in best/" if self.keep_best else "")

    def on_train_begin(self, args, state, control, **kwargs):
        marker = self.run_dir / BEST_DIR / BEST_MARKER
        if marker.is_file():  # a resumed run competes with the best it already kept
            kept = read_json(marker)
            if int(kept.get("step", 0)) <= int(state.global_step):
                self.best = _finite(kept.get("val/srcc"))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if self.every <= 0 or state.global_step % self.every or model is None:
            return
        import torch

        devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            row = validate(model, self.processor, self.frame, self.cfg)
        row = {"kind": "val", "step": int(state.global_step), "epoch": _finite(state.epoch),
               **{k: (_finite(v) if k in ("val/srcc", "val/plcc", "val/answer") else v) for k, v in row.items()},
               "stage": "2"}
        if self.trainer is not None:
            for key in ("val/srcc", "val/plcc", "val/answer"):
                if row[key] is not None:
                    self.trainer.log_step_metric(key, row[key])
        srcc = row["val/srcc"]
        better = self.keep_best and srcc is not None and (self.best is None or srcc > self.best)
        if state.is_world_process_zero:
            append_jsonl(self.run_dir / "metrics.jsonl", row)
            log.info("[val] step %d: SRCC %s, PLCC %s, answer %.3f%s", state.global_step, _show(srcc),
                     _show(row["val/plcc"]), row["val/answer"], " (best so far: saved to best/)" if better else "")
            if better:
                self._save(model, row)
        if better:
            self.best = srcc

    def _save(self, model, row: dict) -> None:
        with atomic_dir(self.run_dir / BEST_DIR) as tmp:
            model.save_pretrained(str(tmp))
            self.processor.save_pretrained(str(tmp))
            write_json(tmp / BEST_MARKER, {**row, "adapter": _is_peft(model),
                                           "note": "policy with the best validation SRCC so far (Eq. 8, no-think)"})


def _is_peft(model) -> bool:
    return hasattr(model, "peft_config")


def _show(v) -> str:
    return "n/a" if v is None else f"{v:.4f}"
