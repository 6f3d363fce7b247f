"""Supervised warm-up of the offline stand-in (**not in the paper**).

The paper starts from Qwen2.5-VL-7B-Instruct, which already follows instructions and perceives
quality. The tiny stand-in is random: GRPO would never sample a well-formed answer, so every group
would get the same (zero) reward and no gradient. A short supervised fine-tune with TRL's
``SFTTrainer`` teaches it the output layouts - think ``<think>…</think><answer>X.Y</answer>`` and
no-think ``<answer>X.Y</answer>`` for scoring, ``<answer>B</answer>`` / ``<answer>[x1, y1, x2, y2]
</answer>`` for every Stage-1 task in both modes - and a weak sense of quality (the scoring targets
are the training MOS). It is skipped, with a message, for any model that is not the stand-in
(:func:`refine_iqa_lib.models.is_stand_in`) or when ``warmup.enabled`` is false.

Data (:func:`warmup_dataset`): a seeded mixture of ``max_steps × batch_size`` samples, a share
``warmup.scoring_share`` from the Stage-2 training pictures (each in think and no-think mode) and
the rest from the Stage-1 training samples (each task in both modes; skipped with a message when
the perception dataset is not built). Think texts are a few words: for the embedded scoring set
the distortion it carries (``"severe noise"``, ``"clean"``, from its ``embedded_metadata.csv``),
otherwise a quality word from the MOS; for Stage-1 samples the distortion category.

Recipe (reference-facts §5, measured on this machine): AdamW lr 1e-3, betas (0.9, 0.95), no weight
decay, 20 linear warm-up steps then cosine decay to 0.1× (``warmup.min_lr_ratio``), gradient
clipping 1.0, all parameters, loss on the completion (assistant) tokens only (TRL's
``completion_only_loss`` for prompt-completion data), batch 16, 500 steps. Batches are grouped by
length (transformers' ``group_by_length`` on a ``length`` column): Stage-1 prompts are about twice
as long as scoring prompts, and a mixed batch would pad every row to the longest.

Output: ``<run_dir>/final`` (weights + processor), which Stage-1 (and the "w/o Stage-1" Stage-2)
starts from; checkpoints, resume and the metrics file work as for the GRPO stages.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from refine_iqa_lib.prompts import answer_text, completion_text, format_mos_text, scoring_prompt

__all__ = ["SEVERITY_WORDS", "CATEGORY_WORDS", "quality_word", "warmup_dataset", "run_warmup", "sft_config"]

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
    from refine_iqa_lib.data.scoring_set import is_embedded, resolve_iqa_root

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
    from refine_iqa_lib.training.data import scoring_frame

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
    from refine_iqa_lib.training.data import perception_dir, stage1_frame

    if not (perception_dir(cfg) / "samples_train.jsonl").is_file():
        print(f"[warmup] no perception dataset in {perception_dir(cfg)}: warm-up uses scoring samples only",
              flush=True)
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


def warmup_dataset(cfg, n_samples: int | None = None):
    """The warm-up's prompt-completion dataset (``prompt``, ``completion``, ``images``, ``kind``)."""
    from refine_iqa_lib.training.data import check_images_load, to_trl_dataset

    w = cfg.warmup
    n = int(n_samples or max(1, w.max_steps) * w.batch_size)
    rng = np.random.default_rng([int(w.seed), 7])
    scoring = _scoring_pool(cfg)
    stage1 = _stage1_pool(cfg)
    n_score = n if stage1 is None or stage1.empty else int(round(n * float(w.scoring_share)))
    parts = [scoring.iloc[rng.integers(0, len(scoring), size=n_score)]]
    if n - n_score > 0:
        parts.append(stage1.iloc[rng.integers(0, len(stage1), size=n - n_score)])
    df = pd.concat(parts, ignore_index=True)
    df = df.iloc[rng.permutation(len(df))].reset_index(drop=True)
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
        disable_tqdm=True, train_sampling_strategy="group_by_length", length_column_name="length",
    )
    if L.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs["ddp_backend"] = "gloo"
    return SFTConfig(**kwargs)


def run_warmup(cfg, run_dir: str | os.PathLike, resume: bool = True, callbacks: list | None = None) -> Path:
    """Run the warm-up into ``run_dir`` (skipped for real models); returns ``run_dir``."""
    from accelerate import PartialState
    from trl import SFTTrainer

    from refine_iqa_lib.io import seed_everything, write_json
    from refine_iqa_lib.models import is_stand_in, load_policy
    from refine_iqa_lib.training.run import (
        FINAL_MARKER, _clean_run_dir, _marker_callback, find_resume_checkpoint, is_complete, resolve_init,
        stage_fingerprint,
    )
    from refine_iqa_lib.training.metrics import MetricsJSONLCallback, last_wall_time, quiet_console, truncate_metrics

    run_dir = Path(run_dir)
    state = PartialState()
    base, _ = resolve_init(cfg, "warmup")
    if not is_stand_in(base) or not cfg.warmup.enabled:
        why = "warmup.enabled is false" if is_stand_in(base) else f"{base} is not the offline stand-in"
        print(f"[warmup] skipped: {why}. The warm-up only exists to give the random stand-in a starting "
              "point; the paper fine-tunes Qwen2.5-VL-7B-Instruct directly.", flush=True)
        return run_dir
    if resume and is_complete(run_dir):
        print(f"[warmup] {run_dir} is already complete; nothing to do", flush=True)
        return run_dir
    if not resume and state.is_main_process and run_dir.exists():
        _clean_run_dir(run_dir)
    state.wait_for_everyone()
    seed_everything(int(cfg.warmup.seed))
    with state.main_process_first():
        dataset = warmup_dataset(cfg)
    fp = stage_fingerprint(cfg, "warmup", base, state.num_processes)
    ckpt = find_resume_checkpoint(run_dir, fp) if resume else None
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is not None:
            truncate_metrics(run_dir, int(ckpt.name.split("-")[-1]))
            print(f"[warmup] resuming from {ckpt}", flush=True)
        from refine_iqa_lib.config import save_config

        save_config(cfg, run_dir / "run_config.yaml")
        kinds = pd.Series(dataset["kind"]).value_counts().to_dict()
        write_json(run_dir / "run_meta.json", {
            "stage": "warmup", "initial_weights": str(base), "fingerprint": fp["fingerprint"],
            "n_samples": len(dataset), "kinds": {k: int(v) for k, v in kinds.items()},
            "note": "supervised warm-up of the offline stand-in; not part of the paper",
        })
    state.wait_for_everyone()

    model, processor = load_policy(base, dtype=cfg.model.dtype, min_pixels=cfg.model.min_pixels,
                                   max_pixels=cfg.model.max_pixels)
    wall0 = last_wall_time(run_dir) if ckpt is not None else 0.0
    from refine_iqa_lib.training.trainer import CheckpointLoadMixin, NaNGuardCallback

    guard = NaNGuardCallback()
    cbs = [MetricsJSONLCallback(run_dir, wall_offset=wall0, extra={"stage": "warmup"}), guard, _marker_callback(fp),
           *(callbacks or [])]

    class WarmupTrainer(CheckpointLoadMixin, SFTTrainer):
        """TRL's SFTTrainer with resume-safe weight loading."""

    trainer = WarmupTrainer(model=model, args=sft_config(cfg, run_dir), train_dataset=dataset,
                            processing_class=processor, callbacks=cbs)
    guard.trainer = trainer
    quiet_console(trainer, "warmup")
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    final = run_dir / "final"
    trainer.save_model(str(final))
    if state.is_main_process:
        processor.save_pretrained(str(final))
        write_json(final / FINAL_MARKER, {**fp, "steps": int(trainer.state.global_step), "stage": "warmup"})
    state.wait_for_everyone()
    return run_dir
