"""How informative a base is before Refine-IQA touches it, measured on held-out pictures.

The paper's base (Qwen2.5-VL-7B-Instruct) already describes distortions better than chance, finds
distorted regions roughly, scores quality with a moderate correlation and answers in every layout;
Refine-IQA *refines* that, and GRPO needs it: with per-question accuracy ``p`` and ``G = 8``
rollouts a group carries a learning signal with probability ``1 - p^8 - (1 - p)^8`` (0.08 at
p = 0.01, 0.83 at 0.2). :func:`base_informativeness` measures those things of any model folder
(the stand-in's base, typically), each with a 95 % percentile bootstrap interval over items
(:mod:`refine_iqa_lib.evaluation.statistics`; seed ``cfg.seed``, ``eval.ci_resamples``) and its
``n``, against :data:`TARGETS`:

* ``type_accuracy`` / ``severity_accuracy`` / ``object_accuracy`` - each Stage-1 question of
  Table 1 (no-think, no-reference; the paper's pools: 12 types, 5 severities, every recorded
  object), target within [0.2, 0.8], with each question's chance beside it;
* ``description_accuracy`` (all three right), ``description_chance`` and their ratio
  ``description_vs_chance``, target >= 3;
* ``grounding_iou`` - Table 2's grounding task (an unparsable box scores 0), target >= 0.2;
* ``eq8_srcc_no_think`` - SRCC of the no-think Eq. 8 score with the MOS of the first
  ``scoring.train`` dataset (the embedded set), target within [0.3, 0.8];
* parse rates, target >= 0.95 each: ``letter_parse_rate`` (a multiple-choice answer names one of its
  options), ``box_parse_rate``, ``score_parse_rate`` (no-think numeric answers) and
  ``think_parse_rate`` (think-mode answers in the full ``<think>…</think><answer>X.X</answer>``
  layout with a number: the format reward is 1).

Which pictures: ``split="validation"`` (default, what choosing settings reads) measures the
perception questions on scenes cut from the world's *validation* photographs and cut-outs (a
perception build with ``perception.heldout: validation`` in ``<work_dir>/heldout_validation``; its
results go there too, never to ``results/``) and the scoring rows on the embedded set's validation
split; ``split="test"`` reads the perception test split and the scoring test split (what the
tables use; describes, never selects).

Table (one row per metric): ``metric``, ``split``, ``value``, ``low``, ``high``, ``n``, ``target``
and ``target_met`` (``yes`` / ``no``; empty without a target). ``table.attrs``: the model folder,
the settings and seconds per part.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config, load_config

__all__ = ["TARGETS", "COLUMNS", "target_met", "description_chance", "ratio_stat", "heldout_config",
           "base_informativeness", "INFORMATIVENESS_FILE", "committed_informativeness"]

#: The committed base's informativeness on the validation split, written beside it by ``make standin``.
INFORMATIVENESS_FILE = "informativeness_validation.csv"

#: metric -> (target text, test of the point value)
TARGETS = {
    "type_accuracy": ("0.2 - 0.8", lambda v: 0.2 <= v <= 0.8),
    "severity_accuracy": ("0.2 - 0.8", lambda v: 0.2 <= v <= 0.8),
    "object_accuracy": ("0.2 - 0.8", lambda v: 0.2 <= v <= 0.8),
    "description_vs_chance": (">= 3x chance", lambda v: v >= 3.0),
    "grounding_iou": (">= 0.2", lambda v: v >= 0.2),
    "eq8_srcc_no_think": ("0.3 - 0.8", lambda v: 0.3 <= v <= 0.8),
    "letter_parse_rate": (">= 0.95", lambda v: v >= 0.95),
    "box_parse_rate": (">= 0.95", lambda v: v >= 0.95),
    "score_parse_rate": (">= 0.95", lambda v: v >= 0.95),
    "think_parse_rate": (">= 0.95", lambda v: v >= 0.95),
}
COLUMNS = ("metric", "split", "value", "low", "high", "n", "target", "target_met")
SCORING_SPLITS = {"validation": "val", "test": "test"}
#: Scenes of the validation perception build (2 of 5 are held out: about 100 validation scenes).
VALIDATION_SCENES = 250


def target_met(metric: str, value) -> str:
    """``yes`` / ``no`` for a metric with a target (NaN or None: ``no``), ``""`` without one.

    >>> target_met("grounding_iou", 0.25), target_met("eq8_srcc_no_think", 0.9), target_met("description_chance", 0.1)
    ('yes', 'no', '')
    """
    if metric not in TARGETS:
        return ""
    if value is None or not np.isfinite(float(value)):
        return "no"
    return "yes" if TARGETS[metric][1](float(value)) else "no"


def ratio_stat(x, c, axis: int = -1):
    """mean(x) / mean(c) along ``axis`` (vectorised for the bootstrap)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.mean(x, axis=axis) / np.mean(c, axis=axis)


def description_chance(pred: pd.DataFrame) -> pd.Series:
    """Per image (index ``image_id``) the chance of answering all its description questions right:
    the product of ``1 / len(options)`` over its multiple-choice questions.

    >>> rows = pd.DataFrame({"image_id": ["a", "a", "a", "g"], "task": ["type", "severity", "object", "grounding"],
    ...                      "options": [list("ABCD"), list("ABCDE"), list("AB"), None]})
    >>> float(description_chance(rows)["a"])
    0.025
    """
    mcq = pred[pred["task"] != "grounding"]
    if mcq["options"].map(lambda o: o is None or len(o) == 0).any():
        raise ValueError("description_chance: a multiple-choice question without options; expected each to list them")
    return mcq.groupby("image_id")["options"].agg(lambda s: float(np.prod([1.0 / len(o) for o in s])))


def _row(metric: str, split: str, iv: dict | None, value: float) -> dict:
    iv = iv or {}
    return {"metric": metric, "split": split, "value": float(value) if value is not None else float("nan"),
            "low": iv.get("low", float("nan")), "high": iv.get("high", float("nan")), "n": int(iv.get("n", 0)),
            "target": TARGETS.get(metric, ("",))[0], "target_met": target_met(metric, value)}


def _model_folder(cfg: Config, model_name_or_path) -> Path:
    path = Path(os.fspath(model_name_or_path))
    if path.is_dir():
        return path
    from refine_iqa_lib.evaluation.results import eval_model_path
    from refine_iqa_lib.runs import normalise_model_name

    return eval_model_path(cfg, normalise_model_name(str(model_name_or_path)))


def heldout_config(cfg: Config, split: str) -> Config:
    """The configuration whose perception *test* split holds the scenes of ``split``: ``cfg`` itself
    for ``test``; for ``validation`` a build of :data:`VALIDATION_SCENES` scenes with
    ``perception.heldout: validation`` in ``<work_dir>/heldout_validation`` (results beside it)."""
    if split == "test":
        return cfg
    if cfg.perception.source != "embedded":
        raise ValueError(f"perception.source = {cfg.perception.source!r}: a validation perception split exists for the "
                         "embedded scenes only")
    root = cfg.work_dir / "heldout_validation"
    return load_config(cfg, {"perception.heldout": "validation", "paths.work_dir": str(root),
                             "paths.results_dir": str(root / "results"),
                             "perception.n_images": max(VALIDATION_SCENES, int(cfg.perception.n_images) // 3),
                             "perception.test_size": 1})


def base_informativeness(cfg: Config, model_name_or_path="base", split: str = "validation", *,
                         max_images: int = 200, max_scoring: int = 200, max_new_tokens: int | None = None,
                         batch_size: int | None = None, loaded=None) -> pd.DataFrame:
    """The informativeness table of a model folder (or a project model name); see the module docstring.
    ``loaded``: an already loaded ``(model, processor)``."""
    from refine_iqa_lib.evaluation.perception import perception_items, perception_test_samples, predict_perception
    from refine_iqa_lib.evaluation.results import load_eval_model
    from refine_iqa_lib.evaluation.scoring_eval import load_scoring_set, predict_scores
    from refine_iqa_lib.evaluation.statistics import bootstrap_ci, interval_record
    from refine_iqa_lib.io import repo_relative
    from refine_iqa_lib.method.rewards import format_reward, mcq_choice

    if split not in SCORING_SPLITS:
        raise ValueError(f"base_informativeness: split {split!r}; expected one of {', '.join(SCORING_SPLITS)}")
    if int(max_images) < 0 or int(max_scoring) < 0:
        raise ValueError(f"max_images / max_scoring = {max_images} / {max_scoring}: expected >= 0 (0 = all)")
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    folder = _model_folder(cfg, model_name_or_path)
    model, processor = loaded if loaded is not None else load_eval_model(cfg, "evaluated", folder)
    bs = int(batch_size or cfg.eval.batch_size)
    tokens = int(max_new_tokens or cfg.eval.max_new_tokens)
    seed, R, level = int(cfg.seed), int(cfg.eval.ci_resamples), float(cfg.eval.ci_level)
    iv = lambda x: interval_record(np.asarray(x, dtype=float), seed, R, level)  # noqa: E731
    mean = lambda x: float(np.mean(x)) if len(x) else float("nan")  # noqa: E731
    seconds["load"] = time.perf_counter() - t0

    # perception: the held-out scenes of `split`
    t = time.perf_counter()
    pcfg = load_config(heldout_config(cfg, split), {"eval.max_samples": int(max_images)})
    samples = perception_test_samples(pcfg)
    pred = predict_perception(model, processor, samples, bs, tokens, desc="informativeness perception")
    rows = []
    for task in ("type", "severity", "object"):
        sub = pred[pred["task"] == task]
        ok = sub["correct"].astype(float).to_numpy()
        chance = np.array([1.0 / len(o) for o in sub["options"]])
        rows += [_row(f"{task}_accuracy", split, iv(ok), mean(ok)), _row(f"{task}_chance", split, iv(chance), mean(chance))]
    desc, ground = perception_items(pred)
    chance = description_chance(pred).reindex(desc["image_id"]).to_numpy(dtype=float)
    correct = desc["value"].to_numpy(dtype=float)
    rows += [_row("description_accuracy", split, iv(correct), mean(correct)),
             _row("description_chance", split, iv(chance), mean(chance))]
    ratio = bootstrap_ci((correct, chance), ratio_stat, R, level, seed) if correct.size else None
    rows.append(_row("description_vs_chance", split, ratio.record() if ratio else None,
                     ratio.value if ratio else float("nan")))
    iou = ground["value"].to_numpy(dtype=float)
    rows.append(_row("grounding_iou", split, iv(iou), mean(iou)))
    mcq = pred[pred["task"] != "grounding"]
    letters = np.array([mcq_choice(c, list(o)) is not None for c, o in zip(mcq["completion"], mcq["options"])], float)
    boxes = pred.loc[pred["task"] == "grounding", "box_parsed"].astype(float).to_numpy()
    rows += [_row("letter_parse_rate", split, iv(letters), mean(letters)),
             _row("box_parse_rate", split, iv(boxes), mean(boxes))]
    seconds["perception"] = time.perf_counter() - t

    # scoring: Eq. 8 no-think SRCC and the numeric layouts on the scoring split
    t = time.perf_counter()
    dataset = cfg.scoring.train[0]
    scfg = load_config(cfg, {"eval.max_samples": int(max_scoring)})
    df, used = load_scoring_set(scfg, dataset, SCORING_SPLITS[split])
    images, mos = list(df["image"]), df["mos"].to_numpy(dtype=float)
    eq8 = predict_scores(model, processor, images, "no_think", "prob", bs, tokens)["score"].to_numpy(dtype=float)
    keep = np.isfinite(eq8)
    srcc = bootstrap_ci((eq8[keep], mos[keep]), "srcc", R, level, seed)
    rows.append(_row("eq8_srcc_no_think", used, srcc.record(), srcc.value))
    plain = predict_scores(model, processor, images, "no_think", "num", bs, tokens)["score"].to_numpy(dtype=float)
    parsed = np.isfinite(plain).astype(float)
    rows.append(_row("score_parse_rate", used, iv(parsed), mean(parsed)))
    think = predict_scores(model, processor, images, "think", "num", bs, tokens)
    laid_out = np.array([format_reward(str(x), "think") == 1.0 and np.isfinite(s)
                         for x, s in zip(think["text"], think["score"])], dtype=float)
    rows.append(_row("think_parse_rate", used, iv(laid_out), mean(laid_out)))
    seconds["scoring"] = time.perf_counter() - t

    table = pd.DataFrame(rows, columns=list(COLUMNS))
    table.attrs.update({"model": repo_relative(folder), "scoring_dataset": dataset, "split": split,
                        "scoring_split": used, "max_images": int(max_images), "max_scoring": int(max_scoring),
                        "max_new_tokens": tokens, "n_incomplete_images": int(desc.attrs.get("n_incomplete", 0)),
                        "seconds": {k: round(v, 1) for k, v in seconds.items()}})
    return table


def committed_informativeness(cfg: Config) -> pd.DataFrame | None:
    """The committed base's validation table (:data:`INFORMATIVENESS_FILE` in ``warmup.prebuilt``,
    written by ``make standin``); ``None`` when the profile has no committed base or the file is absent."""
    if not cfg.warmup.prebuilt:
        return None
    path = cfg.resolve(cfg.warmup.prebuilt) / INFORMATIVENESS_FILE
    if not path.is_file():
        return None
    table = pd.read_csv(path, keep_default_na=False, na_values=[""])
    missing = set(COLUMNS) - set(table.columns)
    if missing:
        raise ValueError(f"{path}: expected the columns {list(COLUMNS)}, missing {sorted(missing)}")
    return table
