"""Held-out scoring of several weight folders: the training notebooks' before/after check.

:func:`heldout_scoring` scores held-out pictures of the first Stage-2 training set with each
model three ways (Eq. 8 no-think, greedy think answers, and ``k`` sampled think answers as GRPO
samples them). Greedy decoding is :func:`refine_iqa_lib.generation.generate_greedy` (through
:func:`refine_iqa_lib.method.scoring.score_images`); sampling sets every sampling field.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from refine_iqa_lib.data.scoring_set import load_scoring_split
from refine_iqa_lib.evaluation.metrics import srcc
from refine_iqa_lib.io import open_image, subsample
from refine_iqa_lib.method.rewards import answer_reward, extract_think, parse_score
from refine_iqa_lib.method.scoring import score_images
from refine_iqa_lib.models import load_policy
from refine_iqa_lib.prompts import scoring_prompt, user_message

__all__ = ["heldout_scoring"]


def _sampled_scores(model, processor, images, k: int, temperature: float, max_new_tokens: int, variant: str,
                    batch_images: int = 4, seed: int = 0) -> list[list]:
    """``k`` sampled think-mode answers per image (parsed numbers, None when unparsable)."""
    import torch
    from transformers import GenerationConfig


    tok = processor.tokenizer
    prompt = processor.apply_chat_template(user_message(scoring_prompt("think", variant)), add_generation_prompt=True,
                                           tokenize=False)
    gen = GenerationConfig(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0,
                           max_new_tokens=int(max_new_tokens), pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    out: list[list] = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for lo in range(0, len(images), batch_images):
            chunk = [open_image(im) for im in images[lo:lo + batch_images]]
            batch = processor(text=[prompt] * (k * len(chunk)), images=[im for im in chunk for _ in range(k)],
                              return_tensors="pt", padding=True, padding_side="left")
            with torch.no_grad():
                ids = model.generate(**batch, generation_config=gen)
            texts = tok.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [[parse_score(t) for t in texts[j * k:(j + 1) * k]] for j in range(len(chunk))]
    model.train(was_training)
    return out


def heldout_scoring(cfg, models: dict, dataset: str | None = None, split: str = "test",
                    max_samples: int | None = None, k: int = 8) -> pd.DataFrame:
    """Held-out scoring of several weight folders (the training notebooks' before/after check).

    ``models``: name -> weights folder. For the first dataset of ``scoring.train`` (or ``dataset``),
    ``split`` pictures (at most ``eval.max_samples``, seeded), every model is scored:

    * ``srcc_prob`` - no-think Eq. 8 expectation (one forward pass), :func:`refine_iqa_lib.method.scoring.score_images`;
    * ``srcc_numeric``, ``accuracy`` - greedy think-mode answers, the number parsed, Eq. 1 accuracy;
      ``parsed`` (share with a number), ``distinct_answers``, ``think_tokens``;
    * ``srcc_sampled``, ``accuracy_sampled`` - the policy as GRPO trains it: ``k`` sampled think
      answers per picture (Stage-2 temperature, seeded), SRCC of their mean and the mean Eq. 1
      accuracy. Greedy answers of a small model collapse onto a few values after RL (ties), so
      the sampled view is the one that tracks training.

    Returns one row per model.
    """
    name = dataset or cfg.scoring.train[0]
    df = load_scoring_split(cfg, name, split)
    df = subsample(df, int(max_samples if max_samples is not None else cfg.eval.max_samples), cfg.seed)
    images, mos = list(df["image"]), df["mos"].to_numpy(dtype=float)
    s2 = cfg.stage2
    variant, eps = s2.variant, s2.answer_eps

    def corr(pred):
        pred = np.asarray(pred, dtype=float)
        ok = np.isfinite(pred)
        return srcc(pred[ok], mos[ok]) if ok.sum() > 2 and np.ptp(pred[ok]) > 0 else float("nan")

    rows = []
    for label, path in models.items():
        model, processor = load_policy(path, dtype="float32", min_pixels=cfg.model.min_pixels,
                                       max_pixels=cfg.model.max_pixels)
        tok = processor.tokenizer
        prob = score_images(model, processor, images, mode="no_think", method="prob", batch_size=cfg.eval.batch_size,
                            variant=variant, progress=False)
        num = score_images(model, processor, images, mode="think", method="numeric", batch_size=cfg.eval.batch_size,
                           max_new_tokens=cfg.eval.max_new_tokens, variant=variant, progress=False)
        sampled = _sampled_scores(model, processor, images, k, s2.temperature, s2.max_completion_length, variant,
                                  seed=cfg.seed)
        s = np.array([r["score"] for r in num])
        ok = np.isfinite(s)
        rows.append({
            "model": label, "dataset": name, "split": split, "n": len(images),
            "srcc_prob": corr([r["score"] for r in prob]),
            "srcc_numeric": corr(s),
            "accuracy": float(np.mean([answer_reward(v if np.isfinite(v) else None, m, eps, variant)
                                       for v, m in zip(s, mos)])),
            "srcc_sampled": corr([np.mean([v for v in vals if v is not None]) if any(v is not None for v in vals)
                                  else np.nan for vals in sampled]),
            "accuracy_sampled": float(np.mean([answer_reward(v, m, eps, variant) for vals, m in zip(sampled, mos)
                                               for v in vals])),
            "parsed": float(ok.mean()),
            "distinct_answers": int(len(np.unique(s[ok]))),
            "think_tokens": float(np.mean([len(tok(extract_think(r["text"]), add_special_tokens=False)["input_ids"])
                                           for r in num])),
        })
    return pd.DataFrame(rows)
