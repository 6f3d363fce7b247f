"""Held-out scoring of several weight folders: the training notebooks' before/after check.

:func:`heldout_scoring` scores held-out pictures of the first Stage-2 training set with each
model three ways (Eq. 8 no-think, greedy think answers, and ``k`` sampled think answers as GRPO
samples them). Greedy decoding is :func:`refine_iqa_lib.generation.generate_greedy` (through
:func:`refine_iqa_lib.method.scoring.score_images`); sampling sets every sampling field.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from refine_iqa_lib.data.scoring_data import load_scoring_split
from refine_iqa_lib.evaluation.metrics import srcc
from refine_iqa_lib.evaluation.scoring_eval import prediction_used
from refine_iqa_lib.evaluation.statistics import Interval, bootstrap_ci, paired_difference_ci
from refine_iqa_lib.io import open_image, subsample
from refine_iqa_lib.method.rewards import answer_reward, extract_think, parse_score
from refine_iqa_lib.method.scoring import score_images
from refine_iqa_lib.models import load_policy
from refine_iqa_lib.prompts import scoring_prompt, user_message

__all__ = ["heldout_scoring", "heldout_difference", "HELDOUT_METRICS"]

#: Metric column -> (per-image values it is computed from, statistic): what the intervals resample.
HELDOUT_METRICS = {"srcc_prob": ("prob", "srcc"), "srcc_numeric": ("numeric", "srcc"),
                   "accuracy": ("accuracy", "mean"), "srcc_sampled": ("sampled", "srcc"),
                   "accuracy_sampled": ("accuracy_sampled", "mean"), "parsed": ("parsed", "mean")}


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

    Unparsable greedy answers follow ``eval.unparsable`` as in Table 3 (default: scored 2.5, the
    midpoint of [0, 5); :func:`refine_iqa_lib.evaluation.scoring_eval.prediction_used`).

    Returns one row per model; every metric of :data:`HELDOUT_METRICS` has ``<metric>_ci_low`` /
    ``<metric>_ci_high`` columns (95 % bootstrap over pictures, seeded; SRCC resamples the
    ``(pred, mos)`` pairs). The per-picture values are kept in ``df.attrs["items"]`` for
    :func:`heldout_difference` (paired intervals between two models on the same pictures).
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

    kw = {"n_resamples": cfg.eval.ci_resamples, "confidence": cfg.eval.ci_level, "seed": cfg.seed}
    rows, items = [], {"mos": mos}
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
        s = np.array([r["score"] for r in num], dtype=float)
        ok = np.isfinite(s)
        per = {"prob": np.array([r["score"] for r in prob], dtype=float),
               "numeric": prediction_used(s, cfg.eval.unparsable)[0],
               "accuracy": np.array([answer_reward(v if np.isfinite(v) else None, m, eps, variant)
                                     for v, m in zip(s, mos)], dtype=float),
               "sampled": np.array([np.mean([v for v in vals if v is not None]) if any(v is not None for v in vals)
                                    else np.nan for vals in sampled], dtype=float),
               "accuracy_sampled": np.array([np.mean([answer_reward(v, m, eps, variant) for v in vals])
                                             for vals, m in zip(sampled, mos)], dtype=float),
               "parsed": ok.astype(float)}
        items[label] = per
        cis = {}
        for metric, (key, stat) in HELDOUT_METRICS.items():
            iv = _interval(per[key], mos, stat, kw)
            cis[f"{metric}_ci_low"], cis[f"{metric}_ci_high"] = iv.low, iv.high
        rows.append({
            "model": label, "dataset": name, "split": split, "n": len(images),
            "srcc_prob": corr(per["prob"]),
            "srcc_numeric": corr(per["numeric"]),
            "accuracy": float(np.mean(per["accuracy"])),
            "srcc_sampled": corr(per["sampled"]),
            "accuracy_sampled": float(np.mean(per["accuracy_sampled"])),
            "parsed": float(ok.mean()),
            "distinct_answers": int(len(np.unique(s[ok]))),
            "think_tokens": float(np.mean([len(tok(extract_think(r["text"]), add_special_tokens=False)["input_ids"])
                                           for r in num])),
            **cis,
        })
    out = pd.DataFrame(rows)
    out.attrs["items"] = items
    out.attrs["ci"] = kw
    return out


def _interval(values: np.ndarray, mos: np.ndarray, stat: str, kw: dict) -> Interval:
    keep = np.isfinite(values)
    data = (values[keep], mos[keep]) if stat == "srcc" else values[keep]
    return bootstrap_ci(data, stat, **kw)


def heldout_difference(held: pd.DataFrame, a: str, b: str, metric: str) -> Interval:
    """Paired bootstrap interval of ``metric`` (a column of :data:`HELDOUT_METRICS`) of model ``a``
    minus model ``b``, over the pictures both scored (``held`` from :func:`heldout_scoring`)."""
    if metric not in HELDOUT_METRICS:
        raise ValueError(f"unknown held-out metric {metric!r}; expected one of {list(HELDOUT_METRICS)}")
    items = held.attrs.get("items") or {}
    missing = [m for m in (a, b) if m not in items]
    if missing:
        raise KeyError(f"no per-picture values for {missing}; expected a frame returned by heldout_scoring")
    key, stat = HELDOUT_METRICS[metric]
    va, vb, mos = items[a][key], items[b][key], items["mos"]
    keep = np.isfinite(va) & np.isfinite(vb)
    data_a, data_b = ((va[keep], mos[keep]), (vb[keep], mos[keep])) if stat == "srcc" else (va[keep], vb[keep])
    return paired_difference_ci(data_a, data_b, stat, **held.attrs.get("ci", {}))
