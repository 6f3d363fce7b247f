"""LoRA on one GPU: the ``lora`` config section as a peft ``LoraConfig``, and the merged model.

With ``lora.enabled`` a GRPO stage hands :func:`peft_config` to TRL's ``GRPOTrainer``
(``peft_config=``), which wraps the policy with peft: only the adapters train, the base weights
stay frozen. Everything that reads the policy during training reads the adapter-enabled model:
the rollouts, the PD reward (:class:`refine_iqa_lib.method.teacher_forcing.PDReward` holds
``lambda: trainer.model``, the PEFT model) and the validation callback.

Target modules: the names in ``lora.target_modules`` (default: every attention and MLP projection
of the language model); the vision tower has layers of the same names (its MLP), adapted only
with ``lora.vision: true``. The match is a regular expression over module paths
(:func:`target_pattern`).

At the end of the stage (:func:`save_lora_final`) the run folder gets ``adapter/`` (the peft
adapter, ``adapter_config.json`` + ``adapter_model.safetensors``) and ``final/``, the adapter merged
into the base (``merge_and_unload``), saved as a plain Qwen2.5-VL folder: every evaluator and the
next stage load it like any other model. :func:`merge_adapter` does the same from the two folders.
Checkpoints hold the adapter and the optimizer state; resuming restores both.

Not under DeepSpeed ZeRO-3 (:data:`refine_iqa_lib.config.LORA_ZERO3` says why): the config is
refused at load when ``launch.accelerate_config`` is a ZeRO-3 one, and a process that accelerate
launched with ZeRO-3 anyway (its environment says so) refuses before the trainer is built
(:func:`check_not_zero3`) and again before merging, so no ``final/`` is ever written from
partitioned weights.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from refine_iqa_lib.config import LORA_ZERO3, Config, deepspeed_file_zero_stage

__all__ = ["ADAPTER_DIR", "target_pattern", "peft_config", "is_peft_model", "trainable_parameters",
           "save_lora_final", "merge_adapter", "check_not_zero3"]

log = logging.getLogger(__name__)

ADAPTER_DIR = "adapter"


def target_pattern(names, vision: bool = False) -> str:
    """The regular expression peft matches module paths against (``re.fullmatch``).

    >>> import re
    >>> p = target_pattern(["q_proj", "down_proj"])
    >>> [bool(re.fullmatch(p, n)) for n in ("model.language_model.layers.0.self_attn.q_proj",
    ...                                     "model.visual.blocks.0.mlp.down_proj", "lm_head")]
    [True, False, False]
    """
    alt = "|".join(sorted(map(str, names)))
    return rf"^(?:.*\.)?(?:{alt})$" if vision else rf"^(?!.*\bvisual\b)(?:.*\.)?(?:{alt})$"


def launched_zero_stage(trainer=None) -> int | None:
    """The DeepSpeed ZeRO stage this process runs under: the trainer's DeepSpeed plugin, else what
    ``accelerate launch`` put in the environment (``ACCELERATE_DEEPSPEED_ZERO_STAGE`` or the
    stage of ``ACCELERATE_DEEPSPEED_CONFIG_FILE``); ``None`` without DeepSpeed."""
    plugin = getattr(getattr(getattr(trainer, "accelerator", None), "state", None), "deepspeed_plugin", None)
    if plugin is not None and getattr(plugin, "zero_stage", None) is not None:
        return int(plugin.zero_stage)
    if os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() not in ("true", "1"):
        return None
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    if stage and stage.isdigit():
        return int(stage)
    f = os.environ.get("ACCELERATE_DEEPSPEED_CONFIG_FILE")
    return deepspeed_file_zero_stage(f) if f else None


def check_not_zero3(trainer=None) -> None:
    """Raise ``ValueError`` (:data:`refine_iqa_lib.config.LORA_ZERO3`) when LoRA would run under ZeRO-3."""
    if launched_zero_stage(trainer) == 3:
        raise ValueError(f"lora.enabled under DeepSpeed ZeRO-3: {LORA_ZERO3}")


def peft_config(cfg: Config):
    """A peft ``LoraConfig`` from ``cfg.lora`` (causal LM task, no bias); refuses a ZeRO-3 process
    (:func:`check_not_zero3`)."""
    from peft import LoraConfig as PeftLoraConfig

    check_not_zero3()
    lo = cfg.lora
    return PeftLoraConfig(r=int(lo.r), lora_alpha=float(lo.alpha), lora_dropout=float(lo.dropout),
                          target_modules=target_pattern(lo.target_modules, lo.vision), bias="none",
                          task_type="CAUSAL_LM")


def is_peft_model(model) -> bool:
    """Whether ``model`` is a peft-wrapped model."""
    return hasattr(model, "peft_config") and hasattr(model, "merge_and_unload")


def trainable_parameters(model) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    return sum(p.numel() for p in model.parameters() if p.requires_grad), total


def save_lora_final(trainer, processor, run_dir: str | os.PathLike, final: str | os.PathLike) -> None:
    """Save the adapter to ``<run_dir>/adapter`` and the merged model to ``final`` (main process
    writes). Under ZeRO-3 it refuses before writing anything (:func:`check_not_zero3`)."""
    from accelerate import PartialState

    check_not_zero3(trainer)
    adapter = Path(run_dir) / ADAPTER_DIR
    trainer.save_model(str(adapter))
    if PartialState().is_main_process:
        processor.save_pretrained(str(adapter))
        merged = trainer.model.merge_and_unload()
        merged.save_pretrained(str(final))
        n, total = trainable_parameters(trainer.model)
        log.info("[lora] adapter saved to %s; merged model (%d parameters) saved to %s", adapter, total, final)


def merge_adapter(base_dir: str | os.PathLike, adapter_dir: str | os.PathLike, out_dir: str | os.PathLike,
                  dtype: str = "float32") -> Path:
    """Merge a saved adapter into its base model and save a plain model folder (with the processor)."""
    from peft import PeftModel

    from refine_iqa_lib.io import atomic_dir
    from refine_iqa_lib.models import load_policy

    model, processor = load_policy(base_dir, dtype=dtype)
    merged = PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(str(tmp))
        processor.save_pretrained(str(tmp))
    return Path(out_dir)
