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
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

from refine_iqa_lib.config import Config

__all__ = ["ADAPTER_DIR", "target_pattern", "peft_config", "is_peft_model", "trainable_parameters",
           "save_lora_final", "merge_adapter"]

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


def peft_config(cfg: Config):
    """A peft ``LoraConfig`` from ``cfg.lora`` (causal LM task, no bias)."""
    from peft import LoraConfig as PeftLoraConfig

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
    writes; single process: a ZeRO-3 shard cannot be merged this way)."""
    from accelerate import PartialState

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
