"""Supervised warm-up of the offline stand-in (**not in the paper**).

The paper starts from Qwen2.5-VL-7B-Instruct, which already follows instructions and perceives
quality. The tiny stand-in is random: GRPO would never sample a well-formed answer, so every group
would get the same (zero) reward and no gradient. A short supervised fine-tune with TRL's
``SFTTrainer`` teaches it the output layouts - think ``<think>…</think><answer>X.Y</answer>`` and
no-think ``<answer>X.Y</answer>`` for scoring, ``<answer>B</answer>`` / ``<answer>[x1, y1, x2, y2]
</answer>`` for every Stage-1 task in both modes - and a weak sense of quality (the scoring targets
are the training MOS). It is skipped, with a message, for any model that is not the stand-in
(:func:`refine_iqa_lib.runs.uses_warmup`), or when ``warmup.enabled`` is false.

Data (:func:`warmup_dataset`), chosen by ``warmup.recipe``:

* ``labels`` (default): a seeded mixture of ``max_steps × batch_size`` samples, a share
  ``warmup.scoring_share`` from the Stage-2 training pictures (each in think and no-think mode) and
  the rest from the Stage-1 training samples (each task in both modes; skipped with a message when
  the perception dataset is not built). Think texts are a few words: for the embedded scoring set
  the distortion it carries (``"severe noise"``, ``"clean"``, from its ``embedded_metadata.csv``),
  otherwise a quality word from the MOS; for Stage-1 samples the distortion category. This trains
  the base on the very labels Stages 1 and 2 then train on (issue 13: a base must not).
* ``pretrain``: ``max_steps × batch_size`` samples drawn (seeded, with replacement) from the
  stand-in pre-training set of :func:`refine_iqa_lib.standin.pretrain_data.write_pretrain_dataset` (built
  or reused in ``<work_dir>/pretrain``; tasks name_object, object_box, global_distortion,
  rate_attribute, think and no-think, think text from the shown pixels), each sample's own prompt
  and completion. No scoring-set MOS and no Stage-1 sample enters; ``warmup.scoring_share`` is
  not used. ``kind`` is ``<task>/<mode>``; the ``pretrain`` section joins the resume fingerprint
  (the recipe enters it only when it is not the default, so earlier runs still resume).

Recipe (reference-facts §5, measured on this machine): AdamW lr 1e-3, betas (0.9, 0.95), no weight
decay, 20 linear warm-up steps then cosine decay to 0.1× (``warmup.min_lr_ratio``), gradient
clipping 1.0, all parameters, loss on the completion (assistant) tokens only (TRL's
``completion_only_loss`` for prompt-completion data), batch 16, ``warmup.max_steps`` steps (300 at
tiny; reference-facts §5 used 500). Batches are grouped by length (transformers'
``group_by_length`` on a ``length`` column): Stage-1 prompts are about twice as long as scoring
prompts, and a mixed batch would pad every row to the longest. ``warmup.group_by_length: false``
shuffles uniformly instead, so that each batch mixes the tasks (the pretrain recipe's four tasks
differ in prompt length, and length-grouped batches are then each nearly one task and mode).

Output: ``<run_dir>/final`` (weights + processor), which Stage-1 (and the "w/o Stage-1" Stage-2)
starts from; checkpoints, resume and the metrics file work as for the GRPO stages.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd
from trl import SFTTrainer

from refine_iqa_lib.data.scoring_data import is_embedded, resolve_iqa_root
from refine_iqa_lib.prompts import answer_text, completion_text, format_mos_text, scoring_prompt
from refine_iqa_lib.training.data import check_images_load, perception_dir, scoring_frame, stage1_frame, to_trl_dataset
from refine_iqa_lib.training.trainer import CheckpointLoadMixin, GuardedStepMixin

__all__ = ["SEVERITY_WORDS", "CATEGORY_WORDS", "quality_word", "warmup_frame", "warmup_dataset", "sft_config", "WarmupTrainer"]

log = logging.getLogger(__name__)

#: Severity 1-5 -> a one-word think cue; 0 -> "clean".
SEVERITY_WORDS = {1: "slight", 2: "noticeable", 3: "obvious", 4: "severe", 5: "very severe"}
#: Distortion category -> the word used in think texts.
CATEGORY_WORDS = {"noise": "noise", "underexposure": "dark", "overexposure": "bright", "blur": "blur",
                  "compression": "blocky", "low_contrast": "flat", "high_contrast": "harsh",
                  "desaturate": "dull", "oversaturate": "vivid", "oversharpen": "sharpened",
                  "pixelate": "pixelated", "quantization": "banding"}


def quality_word(mos: float) -> str:
    """The classic five-level quality word of a score on [0, 5) (think text when no distortion is known).

    >>> quality_word(4.6), quality_word(0.2)
    ('excellent', 'bad')
    """
    levels = ("bad", "poor", "fair", "good", "excellent")
    return levels[int(min(max(float(mos), 0.0), 4.999))]


def _scoring_think(row, meta: dict) -> str:
    info = meta.get(str(row["image"]))
    if info is None:
        return quality_word(row["mos"])
    sev = int(info["severity"])
    if sev == 0:
        return "clean"
    return f"{SEVERITY_WORDS[sev]} {CATEGORY_WORDS.get(info['category'], info['category'].replace('_', ' '))}"


def _embedded_metadata(cfg) -> dict:
    """Absolute image path -> metadata row, for datasets that are the embedded set."""
    out = {}
    for name in cfg.scoring.train:
        if not is_embedded(cfg, name):
            continue
        root = resolve_iqa_root(cfg, name)
        meta = pd.read_csv(root / "embedded_metadata.csv")
        for r in meta.to_dict(orient="records"):
            out[str((root / "1024x768" / r["image_name"]).resolve())] = r
    return out


def _scoring_pool(cfg) -> pd.DataFrame:
    df = scoring_frame(cfg, split="train")
    df["image"] = [str(Path(p).resolve()) for p in df["image"]]
    meta = _embedded_metadata(cfg)
    variant = cfg.stage2.variant
    rows = []
    for r in df.to_dict(orient="records"):
        think = _scoring_think(r, meta)
        answer = answer_text(format_mos_text(r["mos"], variant), variant)
        for mode in ("think", "no_think"):
            rows.append({"prompt_text": scoring_prompt(mode, variant), "images": [r["image"]],
                         "completion_text": completion_text(answer, mode, think), "kind": f"scoring/{mode}"})
    return pd.DataFrame(rows)


def _stage1_pool(cfg) -> pd.DataFrame | None:
    if not (perception_dir(cfg) / "samples_train.jsonl").is_file():
        log.info("[warmup] no perception dataset in %s: warm-up uses scoring samples only", perception_dir(cfg))
        return None
    rows = []
    for mode in ("think", "no_think"):
        df = stage1_frame(cfg, "train", mode=mode)
        for r in df.to_dict(orient="records"):
            answer = r["answer_letter"] if r["task"] != "grounding" else r["answer"]
            think = CATEGORY_WORDS.get(r["category"], str(r["category"]).replace("_", " "))
            rows.append({"prompt_text": r["prompt"], "images": list(r["images"]),
                         "completion_text": completion_text(answer, mode, think), "kind": f"{r['task']}/{mode}"})
    return pd.DataFrame(rows)


def _pretrain_pool(cfg) -> pd.DataFrame:
    """The stand-in pre-training samples (``warmup.recipe: pretrain``), built or reused, as pool rows."""
    from refine_iqa_lib.standin.pretrain_data import write_pretrain_dataset
    from refine_iqa_lib.io import read_jsonl

    root = write_pretrain_dataset(cfg)
    samples = read_jsonl(root / "samples.jsonl")
    if not samples:
        raise ValueError(f"{root / 'samples.jsonl'}: no pre-training sample; expected pretrain.n_samples >= 1 rows")
    return pd.DataFrame([{"prompt_text": r["prompt"], "images": [str((root / p).resolve()) for p in r["images"]],
                          "completion_text": r["completion"], "kind": f"{r['task']}/{r['mode']}"} for r in samples])


def warmup_frame(cfg, n_samples: int | None = None) -> pd.DataFrame:
    """The warm-up's rows as a table (``prompt_text``, ``completion_text``, ``images`` (paths),
    ``kind``) of the recipe ``warmup.recipe``, in training order (see the module docstring)."""
    w = cfg.warmup
    n = int(n_samples or max(1, w.max_steps) * w.batch_size)
    rng = np.random.default_rng([int(w.seed), 7])
    if w.recipe == "pretrain":
        pool = _pretrain_pool(cfg)
        df = pool.iloc[rng.integers(0, len(pool), size=n)].reset_index(drop=True)
    elif w.recipe == "labels":
        scoring = _scoring_pool(cfg)
        stage1 = _stage1_pool(cfg)
        n_score = n if stage1 is None or stage1.empty else int(round(n * float(w.scoring_share)))
        parts = [scoring.iloc[rng.integers(0, len(scoring), size=n_score)]]
        if n - n_score > 0:
            parts.append(stage1.iloc[rng.integers(0, len(stage1), size=n - n_score)])
        df = pd.concat(parts, ignore_index=True)
        df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
    else:
        raise ValueError(f"warmup.recipe = {w.recipe!r}: expected labels or pretrain")
    return df


def warmup_dataset(cfg, n_samples: int | None = None):
    """The warm-up's prompt-completion dataset (``prompt``, ``completion``, ``images``, ``kind``) of
    the recipe ``warmup.recipe`` (see the module docstring)."""
    df = warmup_frame(cfg, n_samples)
    check_images_load([p for imgs in df["images"] for p in imgs], "warm-up data")
    rows = {
        "prompt": [[{"role": "user", "content": t}] for t in df["prompt_text"]],
        "completion": [[{"role": "assistant", "content": t}] for t in df["completion_text"]],
        "images": [list(v) for v in df["images"]],
        "kind": df["kind"].tolist(),
        # a length proxy for length-grouped batches (Stage-1 prompts are about twice as long as
        # scoring prompts; a mixed batch pads every row to the longest): prompt characters + 64 per
        # image. The completion is left out on purpose - its length depends on the target (think
        # words, digits), and grouping by it would fill whole batches with one answer.
        "length": [len(p) + 64 * len(i) for p, i in zip(df["prompt_text"], df["images"])],
    }
    return to_trl_dataset(rows)


def sft_config(cfg, run_dir: Path):
    """TRL ``SFTConfig`` of the warm-up recipe (see the module docstring)."""
    from trl import SFTConfig

    w = cfg.warmup
    L = cfg.launch
    kwargs = dict(
        output_dir=str(Path(run_dir) / "checkpoints"), per_device_train_batch_size=int(w.batch_size),
        max_steps=int(w.max_steps), learning_rate=float(w.learning_rate), adam_beta1=0.9, adam_beta2=0.95,
        weight_decay=0.0, warmup_steps=int(w.warmup_steps), lr_scheduler_type="cosine_with_min_lr",
        lr_scheduler_kwargs={"min_lr_rate": float(w.min_lr_ratio)}, max_grad_norm=1.0,
        logging_steps=max(1, min(10, int(w.max_steps) // 50 or 1)), save_strategy="steps",
        save_steps=int(w.save_steps), save_total_limit=2, seed=int(w.seed), data_seed=int(w.seed),
        use_cpu=bool(L.use_cpu), bf16=bool(L.bf16), report_to="none", max_length=None,
        remove_unused_columns=False, dataloader_num_workers=0, completion_only_loss=True,
        disable_tqdm=True, length_column_name="length",
        train_sampling_strategy="group_by_length" if w.group_by_length else "random",
    )
    if L.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs["ddp_backend"] = "gloo"
    return SFTConfig(**kwargs)


class WarmupTrainer(GuardedStepMixin, CheckpointLoadMixin, SFTTrainer):
    """TRL's ``SFTTrainer`` with resume-safe weight loading (run by
    :func:`refine_iqa_lib.training.run.run_stage` with ``stage="warmup"``)."""
