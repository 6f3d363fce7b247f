"""The stand-in's pre-training: the supervised warm-up of the offline stand-in (**not in the paper**).

The paper starts from Qwen2.5-VL-7B-Instruct, which was pre-trained and instruction-tuned on
general pictures and tasks before the authors touched it. The tiny stand-in starts random: GRPO
would never sample a well-formed answer, so every group would get the same (zero) reward and no
gradient. Its analogue of that pre-training is a supervised fine-tune with TRL's ``SFTTrainer`` on
the samples of :mod:`refine_iqa_lib.standin.pretrain_data`, run as the stage ``warmup`` by
:func:`refine_iqa_lib.training.run.run_stage`. It is skipped, with a message, for any model that is
not the stand-in (:func:`refine_iqa_lib.runs.uses_warmup`), or when ``warmup.enabled`` is false.

Data (:func:`warmup_dataset`): ``max_steps × batch_size`` rows taken in seeded passes over the
stand-in pre-training set of :func:`refine_iqa_lib.standin.pretrain_data.write_pretrain_dataset`
(built or reused in ``<work_dir>/pretrain``; tasks name_object, object_box, distortion_type,
distortion_severity, rate_attribute, think and no-think, think text from the shown pixels): each
pass is a fresh permutation, so every sample is seen before any is seen twice. No scoring-set MOS and no Stage-1 sample enters. ``kind`` is ``<task>/<mode>``;
the ``pretrain`` section joins the resume fingerprint.

Recipe (measured on this machine): AdamW lr 1e-3, betas (0.9, 0.95), no weight decay, 20 linear
warm-up steps then cosine decay to 0.1× (``warmup.min_lr_ratio``), gradient clipping 1.0, loss on
the completion (assistant) tokens only (TRL's ``completion_only_loss`` for prompt-completion data),
``warmup.batch_size`` rows a step for ``warmup.max_steps`` steps; every parameter trains unless
``warmup.freeze_vision`` fixes the vision tower (:func:`refine_iqa_lib.standin.model.freeze_vision_tower`).
By default batches are grouped by length (transformers' ``group_by_length`` on a ``length``
column), so that little is padded; ``warmup.group_by_length: false`` shuffles uniformly instead, so
that each batch mixes the tasks (the four tasks differ in prompt length, and length-grouped batches
are then each nearly one task and mode).

Output: ``<run_dir>/final`` (weights + processor), which Stage-1 (and the "w/o Stage-1" Stage-2)
starts from; checkpoints, resume and the metrics file work as for the GRPO stages.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
from trl import SFTTrainer

from refine_iqa_lib.io import ImageRules
from refine_iqa_lib.training.data import check_images_load, to_trl_dataset
from refine_iqa_lib.training.trainer import CheckpointLoadMixin, GuardedStepMixin

__all__ = ["warmup_frame", "warmup_dataset", "sft_config", "WarmupTrainer"]


def _pretrain_pool(cfg) -> pd.DataFrame:
    """The stand-in pre-training samples, built or reused, as pool rows."""
    from refine_iqa_lib.standin.pretrain_data import write_pretrain_dataset
    from refine_iqa_lib.io import read_jsonl

    root = write_pretrain_dataset(cfg)
    samples = read_jsonl(root / "samples.jsonl")
    if not samples:
        raise ValueError(f"{root / 'samples.jsonl'}: no pre-training sample; expected pretrain.n_samples >= 1 rows")
    return pd.DataFrame([{"id": r["id"], "prompt_text": r["prompt"],
                          "images": [str((root / p).resolve()) for p in r["images"]],
                          "completion_text": r["completion"], "kind": f"{r['task']}/{r['mode']}"} for r in samples])


def warmup_frame(cfg, n_samples: int | None = None) -> pd.DataFrame:
    """The warm-up's rows as a table (``prompt_text``, ``completion_text``, ``images`` (paths),
    ``kind``), in training order (see the module docstring)."""
    w = cfg.warmup
    n = int(n_samples or max(1, w.max_steps) * w.batch_size)
    rng = np.random.default_rng([int(w.seed), 7])
    pool = _pretrain_pool(cfg)
    # whole passes over the pool, each in a fresh seeded order: every sample is seen before any twice
    passes = -(-n // len(pool))
    order = np.concatenate([rng.permutation(len(pool)) for _ in range(passes)])[:n]
    return pool.iloc[order].reset_index(drop=True)


def warmup_dataset(cfg, n_samples: int | None = None):
    """The warm-up's prompt-completion dataset (``prompt``, ``completion``, ``images``, ``kind``)
    (see the module docstring)."""
    df = warmup_frame(cfg, n_samples)
    rules = ImageRules.from_config(cfg)
    check_images_load([p for imgs in df["images"] for p in imgs], "warm-up data", rules=rules)
    rows = {
        "prompt": [[{"role": "user", "content": t}] for t in df["prompt_text"]],
        "completion": [[{"role": "assistant", "content": t}] for t in df["completion_text"]],
        "images": [list(v) for v in df["images"]],
        "kind": df["kind"].tolist(),
        # a length proxy for length-grouped batches (the tasks' prompts differ in length; a mixed
        # batch pads every row to the longest): prompt characters + 64 per image. The completion is left out on purpose - its length depends on the target (think
        # words, digits), and grouping by it would fill whole batches with one answer.
        "length": [len(p) + 64 * len(i) for p, i in zip(df["prompt_text"], df["images"])],
    }
    return to_trl_dataset(rows, rules)


def sft_config(cfg, run_dir: Path):
    """TRL ``SFTConfig`` of the warm-up (see the module docstring)."""
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
