"""Perception evaluation on the Refine-Perception test split (Tables 1 and 2).

As in the paper's evaluation, every model answers in **no-think** mode, and we use the
**no-reference** form of each task (only the distorted image is shown): the paper's description
task ("for each image, the model identifies the distortion category, the distorted semantic
object, and the distortion severity") is a single-image task, and the full-reference variants
exist for training. The prompts are the Stage-1 test samples' own questions and options,
re-rendered for no-think mode (:func:`refine_iqa_lib.data.stage1.render_prompt`).

* **Description (Table 1)**: an image counts as correct only if *all three* attributes are right.
  With the paper's answer pools (``perception.options: paper``, the default) those are three
  questions - the distortion type out of all 12 types, the severity out of the 5 severity names,
  and the object out of the image's other marked objects (the ``perception.max_objects``
  largest, 5 by default, less those named like the target or lying mostly inside its box:
  :func:`refine_iqa_lib.data.pipeline.mark_objects`) - and all three must be answered correctly
  (:func:`refine_iqa_lib.method.rewards.mcq_reward`); chance is about 1/12 x 1/5 x 1/(objects
  offered). With the ``compact`` layout the ``type_severity`` question (4 options each naming
  a type *and* a severity) and the ``object`` question must both be right. An image missing one of
  its questions is left out and counted (``n_incomplete``).
* **Grounding (Table 2)**: the IoU of the predicted box (:func:`refine_iqa_lib.method.rewards.parse_box`)
  with the ground-truth box; an unparsable answer scores IoU 0 (counted in ``n_unparsed_boxes``).

Both are averaged over images per distortion category (the first distortion of a two-distortion
image), over the **Easy** (``distortions.EASY``) and **Hard** (``distortions.HARD``) groups and
over all images (``overall``); a category without test images is ``null``. Answers are greedy,
batched. Result schema (:mod:`refine_iqa_lib.evaluation.tables`)::

    results/<profile>/perception/<model>.json
    {"model": "s1", "profile": "tiny", "mode": "no_think", "n": 80,
     "description": {"blur": .., ..., "quantization": .., "easy": .., "hard": .., "overall": ..},
     "grounding":   {...the same keys, mean IoU...}, "n_images": {...},
     "ci": {"description": {"blur": {"low": .., "high": .., "n": ..}, ...}, "grounding": {...}},
     "ci_method": {"method": "percentile", "level": 0.95, "resamples": 2000, "seed": 0, "unit": "image"}, ...}

``ci`` holds a 95 % bootstrap interval (images resampled; :mod:`refine_iqa_lib.evaluation.statistics`)
for every value, computed from the per-image values of :func:`perception_items`; those values are
also written to ``<work_dir>/eval/perception/<model>__images.csv`` (``image_id``, ``category``,
``value``, ``task``) for paired differences between models (the Advantage rows, the claims).

Category keys are the tables' (``PERCEPTION_CATEGORIES``: ``oversaturation``, ``pixelation``,
...), mapped from the distortion engine's names by :data:`CATEGORY_KEYS`. Per-question answers go
to ``<work_dir>/eval/perception/<model>.jsonl``.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data.stage1 import DESCRIPTION_TASKS
from refine_iqa_lib.io import write_jsonl

MODE = "no_think"
FORM = "nr"
#: Distortion engine category -> the tables' perception key.
CATEGORY_KEYS = {c: {"oversaturate": "oversaturation", "desaturate": "desaturation",
                     "oversharpen": "oversharpening", "pixelate": "pixelation"}.get(c, c) for c in D.DISTORTIONS}
SUMMARY_KEYS = tuple(CATEGORY_KEYS.values()) + ("easy", "hard", "overall")


def perception_dir(cfg: Config) -> Path:
    """``<work_dir>/perception`` (built by :func:`refine_iqa_lib.data.build.build_perception_dataset`)."""
    return cfg.work_dir / "perception"


def ensure_perception_dataset(cfg: Config) -> Path:
    """The perception dataset folder, built through the build API if its test split is missing."""
    folder = perception_dir(cfg)
    if not (folder / "samples_test.jsonl").is_file():
        from refine_iqa_lib.data.build import build_perception_dataset

        build_perception_dataset(cfg)
    return folder


def perception_test_samples(cfg: Config, dataset_dir: str | Path | None = None) -> pd.DataFrame:
    """The no-reference test samples of the three tasks, for ``eval.max_samples`` images at most
    (a seeded subset of *images*, so an image keeps all its questions)."""
    from refine_iqa_lib.data.stage1 import load_stage1_dataset
    from refine_iqa_lib.io import subsample

    folder = Path(dataset_dir) if dataset_dir is not None else ensure_perception_dataset(cfg)
    df = load_stage1_dataset(folder, "test").to_pandas()
    if df.empty:
        raise ValueError(f"{folder}: the perception test split has no samples")
    df = df[df["form"] == FORM].reset_index(drop=True)
    ids = pd.DataFrame({"image_id": sorted(df["image_id"].unique())})
    keep = set(subsample(ids, cfg.eval.max_samples, cfg.seed)["image_id"])
    return df[df["image_id"].isin(keep)].reset_index(drop=True)


def _min_new_tokens(processor, samples: pd.DataFrame) -> int:
    """Enough new tokens for the longest ground-truth answer in its no-think layout (+ 4)."""
    from refine_iqa_lib.prompts import completion_text

    longest = max((completion_text(str(a), MODE) for a in samples["answer"]), key=len, default="")
    return len(processor.tokenizer(longest, add_special_tokens=False)["input_ids"]) + 4


def predict_perception(model, processor, samples: pd.DataFrame, batch_size: int = 8, max_new_tokens: int = 32,
                       desc: str = "perception") -> pd.DataFrame:
    """Greedy no-think answers; adds ``completion``, ``correct`` (multiple choice) and ``iou`` (grounding).

    Multiple-choice answers are decoded to their letter layout plus 8 tokens, boxes to the longest
    ground-truth box plus 4 (at least ``max_new_tokens``)."""
    from refine_iqa_lib.data.stage1 import render_prompt
    from refine_iqa_lib.generation import greedy_generate
    from refine_iqa_lib.method.rewards import grounding_reward, mcq_reward, parse_box
    from refine_iqa_lib.prompts import completion_text

    prompts = [render_prompt(q, list(o) if o is not None else [], MODE)
               for q, o in zip(samples["question"], samples["options"])]
    # token budgets per kind of answer: a letter needs its layout and a few spare tokens, a box
    # the longest box (decoding to eval.max_new_tokens for a one-letter answer cost most of the time)
    letter = len(processor.tokenizer(completion_text("X", MODE), add_special_tokens=False)["input_ids"]) + 8
    is_box = (samples["task"] == "grounding").to_numpy()
    texts = [""] * len(samples)
    images = list(samples["image"])
    for box, budget in ((False, letter), (True, max(int(max_new_tokens), _min_new_tokens(processor, samples[is_box])))):
        idx = [i for i in range(len(samples)) if bool(is_box[i]) == box]
        if not idx:
            continue
        got = greedy_generate(model, processor, [images[i] for i in idx], [prompts[i] for i in idx],
                              max_new_tokens=budget, batch_size=batch_size, desc=desc)
        for i, text in zip(idx, got):
            texts[i] = text
    out = samples.copy()
    out["completion"] = texts
    correct, ious, parsed = [], [], []
    for text, task, ans, opts, box in zip(texts, out["task"], out["answer"], out["options"], out["bbox"]):
        if task == "grounding":
            correct.append(None)
            ious.append(grounding_reward(text, [float(v) for v in box]))
            parsed.append(parse_box(text) is not None)
        else:
            correct.append(bool(mcq_reward(text, ans, list(opts))))
            ious.append(None)
            parsed.append(None)
    out["correct"], out["iou"], out["box_parsed"] = correct, ious, parsed
    return out


def perception_items(pred: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-image values ``(description, grounding)``, each with columns ``image_id``, ``category``,
    ``value`` (1/0 for an image described right / wrong, its IoU for grounding): what every
    accuracy, interval and paired difference of Tables 1-2 averages. Images missing a question
    are left out of the description values."""
    need = ("image_id", "task", "category", "correct", "iou")
    missing = [c for c in need if c not in pred.columns]
    if missing:
        raise ValueError(f"perception_metrics: missing column(s) {missing}; found {list(pred.columns)}")
    mcq = pred[pred["task"] != "grounding"]
    per_image = mcq.groupby("image_id").agg(category=("category", "first"), tasks=("task", lambda s: frozenset(s)),
                                            ok=("correct", lambda s: bool(all(bool(v) for v in s))))
    layouts = {frozenset(v) for v in DESCRIPTION_TASKS.values()}
    complete = per_image[per_image["tasks"].isin(layouts)]
    desc_values = complete.assign(value=complete["ok"].astype(float))[["category", "value"]].reset_index()
    ground = pred[pred["task"] == "grounding"]
    ground_values = pd.DataFrame({"image_id": ground["image_id"].to_numpy(), "category": ground["category"].to_numpy(),
                                  "value": ground["iou"].astype(float).to_numpy()})
    desc_values.attrs["n_incomplete"] = int(len(per_image) - len(complete))
    return desc_values, ground_values


def perception_intervals(values: pd.DataFrame, seed: int = 0, n_resamples: int = 2000,
                         confidence: float = 0.95) -> dict:
    """Bootstrap interval (images resampled) of every summary key of :func:`perception_metrics`."""
    from refine_iqa_lib.evaluation.statistics import interval_record

    groups = {**{key: (cat,) for cat, key in CATEGORY_KEYS.items()}, "easy": D.EASY, "hard": D.HARD,
              "overall": tuple(CATEGORY_KEYS)}
    return {key: interval_record(values.loc[values["category"].isin(cats), "value"], seed, n_resamples, confidence)
            for key, cats in groups.items()}


def perception_metrics(pred: pd.DataFrame, seed: int = 0, n_resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Description accuracy and grounding IoU per category / Easy / Hard / overall (see module docstring),
    with their bootstrap intervals under ``ci`` (:func:`perception_intervals`).

    >>> rows = [dict(image_id="a", task="type", category="blur", correct=True, iou=None),
    ...         dict(image_id="a", task="severity", category="blur", correct=True, iou=None),
    ...         dict(image_id="a", task="object", category="blur", correct=True, iou=None),
    ...         dict(image_id="a", task="grounding", category="blur", correct=None, iou=0.5),
    ...         dict(image_id="b", task="type", category="pixelate", correct=True, iou=None),
    ...         dict(image_id="b", task="severity", category="pixelate", correct=True, iou=None),
    ...         dict(image_id="b", task="object", category="pixelate", correct=False, iou=None),
    ...         dict(image_id="b", task="grounding", category="pixelate", correct=None, iou=0.1)]
    >>> m = perception_metrics(pd.DataFrame(rows))
    >>> m["description"]["blur"], m["description"]["pixelation"], m["description"]["overall"], m["description"]["noise"]
    (1.0, 0.0, 0.5, None)
    >>> round(m["grounding"]["easy"], 3), round(m["grounding"]["hard"], 3), round(m["grounding"]["overall"], 3)
    (0.5, 0.1, 0.3)
    """
    desc_values, ground_values = perception_items(pred)

    def summarise(values: pd.DataFrame) -> dict:
        out: dict = {}
        for cat, key in CATEGORY_KEYS.items():
            sel = values.loc[values["category"] == cat, "value"]
            out[key] = float(sel.mean()) if len(sel) else None
        for name, group in (("easy", D.EASY), ("hard", D.HARD)):
            sel = values.loc[values["category"].isin(group), "value"]
            out[name] = float(sel.mean()) if len(sel) else None
        out["overall"] = float(values["value"].mean()) if len(values) else None
        return out

    unknown = sorted(set(pred["category"]) - set(CATEGORY_KEYS))
    if unknown:
        raise ValueError(f"perception_metrics: unknown distortion categories {unknown}; expected {list(CATEGORY_KEYS)}")
    counts = {key: int((desc_values["category"] == cat).sum()) for cat, key in CATEGORY_KEYS.items()}
    ci = {task: perception_intervals(values, seed, n_resamples, confidence)
          for task, values in (("description", desc_values), ("grounding", ground_values))}
    return {"description": summarise(desc_values), "grounding": summarise(ground_values),
            "n": int(len(desc_values)), "n_grounding": int(len(ground_values)),
            "n_incomplete": desc_values.attrs["n_incomplete"], "n_images": counts, "ci": ci}


def perception_result_path(cfg: Config, model: str) -> Path:
    """``results/<profile>/perception/<model>.json``."""
    from refine_iqa_lib.evaluation.results import result_dir

    return result_dir(cfg, "perception") / f"{model}.json"


def evaluate_perception(cfg: Config, model: str = "s1", loaded=None, overwrite: bool = True,
                        dataset_dir: str | Path | None = None) -> dict:
    """Evaluate ``model`` on the perception test split (no-think, no-reference); write and return
    the record. ``loaded``: an already loaded ``(model, processor)``. ``overwrite=False`` reads back
    a record written after the model's weights (notebook 05 reuses notebook 03's)."""
    from refine_iqa_lib.evaluation.results import (ci_method, eval_model_path, is_current, load_eval_model,
                                                   predictions_dir, usable_images, write_record)
    from refine_iqa_lib.io import read_json, repo_relative, write_text
    from refine_iqa_lib.runs import normalise_model_name

    name = normalise_model_name(model)
    out = perception_result_path(cfg, name)
    if not overwrite and is_current(cfg, out, name):
        return read_json(out)
    samples, unreadable = usable_images(cfg, perception_test_samples(cfg, dataset_dir), "perception test images")
    policy, processor = loaded if loaded is not None else load_eval_model(cfg, name)
    pred = predict_perception(policy, processor, samples, cfg.eval.batch_size, cfg.eval.max_new_tokens,
                              desc=f"{name} perception")
    metrics = perception_metrics(pred, cfg.seed, cfg.eval.ci_resamples, cfg.eval.ci_level)
    grounding = pred[pred["task"] == "grounding"]
    rec = {"model": name, "profile": cfg.profile, "mode": MODE, "form": FORM, **metrics,
           "ci_method": ci_method(cfg, "image"),
           "n_unparsed_boxes": int((~grounding["box_parsed"].astype(bool)).sum()),
           "model_path": repo_relative(eval_model_path(cfg, name)), **unreadable}
    write_record(out, rec)
    keep = ["id", "image_id", "task", "category", "severity", "object", "answer", "completion", "correct", "iou"]
    rows = pred[keep].to_dict("records")
    for r in rows:
        r["severity"] = int(r["severity"])
        r["iou"] = None if r["iou"] is None or pd.isna(r["iou"]) else float(r["iou"])
    write_jsonl(predictions_dir(cfg, "perception") / f"{name}.jsonl", rows)
    items = pd.concat([v.assign(task=t) for t, v in zip(("description", "grounding"), perception_items(pred))])
    write_text(predictions_dir(cfg, "perception") / f"{name}__images.csv", items.to_csv(index=False))
    return rec


def perception_table(records: list[dict], task: str = "description") -> pd.DataFrame:
    """A quick per-model view (rows = models, columns = categories + groups) of result records."""
    if task not in ("description", "grounding"):
        raise ValueError(f"unknown perception task {task!r}; expected 'description' or 'grounding'")
    return pd.DataFrame([{"model": r["model"], **{k: r[task].get(k) for k in SUMMARY_KEYS}} for r in records]
                        ).set_index("model").astype(float)

