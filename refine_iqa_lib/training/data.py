"""The TRL training datasets of both stages, built from the project's data sources.

Every row is in TRL's conversational prompt layout with its images in an ``images`` column
(image paths, opened when a row is read by :func:`refine_iqa_lib.io.open_image`, the library's one
opener, with the rules of the config's ``images`` section); TRL inserts the image placeholders
before the text and passes every other column to the reward functions.

* **Stage-1** (:func:`stage1_dataset`): the Refine-Perception samples
  (:func:`refine_iqa_lib.data.stage1.load_stage1_dataset` on ``<work_dir>/perception``), all three
  tasks and both forms mixed (TRL's sampler shuffles them): ``images`` is ``[reference, distorted]``
  for full-reference samples and ``[distorted]`` for no-reference ones; the columns ``task``,
  ``answer``, ``options``, ``bbox`` and ``mode`` feed the task-routed reward.
* **Stage-2** (:func:`stage2_dataset`): the training split of every dataset in
  ``scoring.train`` (KonIQ + SPAQ at paper scale; the embedded KonIQ-layout set in smoke/tiny),
  with the scoring prompt of the stage's mode; columns ``mos`` (on [0, 5)), ``mode``, ``id`` (one
  per picture, groups a prompt's rollouts), ``prompt_text`` / ``no_think_text`` (the PD reward's
  think and no-think prompts), ``dataset``.

Checks before any training (:func:`check_dataset`): required columns present, MOS finite, and
every image file decodes completely and passes the opener's rules (pixel limit, aspect ratio,
pixel values: :func:`refine_iqa_lib.io.check_images`); failures raise one error naming the source,
the count and the first offenders with their reasons.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.io import ImageRules, check_images, image_rules, open_image, subsample
from refine_iqa_lib.prompts import scoring_prompt

__all__ = ["STAGE1_COLUMNS", "STAGE2_COLUMNS", "DatasetCheckError", "check_images_load", "check_dataset",
           "scoring_frame", "stage2_dataset", "stage1_dataset", "perception_dir", "to_trl_dataset"]

#: Columns each stage's rows must carry (checked before training).
STAGE1_COLUMNS = ("prompt", "images", "task", "answer", "options", "bbox", "mode")
STAGE2_COLUMNS = ("prompt", "images", "mos", "mode", "id", "prompt_text", "no_think_text")


class DatasetCheckError(ValueError):
    """A training dataset that cannot be used (missing columns, bad values, unreadable images)."""


def check_images_load(paths: Iterable[str], source: str, workers: int = 4, max_examples: int = 5,
                      rules: ImageRules | None = None) -> int:
    """Decode every image file fully with ``rules`` (:func:`refine_iqa_lib.io.check_images`, so a
    truncated JPEG or a picture above the pixel limit fails here, not at step 1); raise
    :class:`DatasetCheckError` listing how many failed and the first few with their reasons.
    Returns the number checked."""
    report = check_images(paths, workers=workers, max_examples=max_examples, desc=f"checking {source} images",
                          rules=rules)
    if not report.ok:
        problems = report.bad()
        shown = "; ".join(f"{b['image']} ({b['reason']})" for b in problems[:max_examples])
        raise DatasetCheckError(f"{source}: {len(problems)} of {report.n_images} image file(s) cannot be loaded, "
                                f"e.g. {shown}")
    return report.n_images


def check_dataset(ds, required: Sequence[str], source: str) -> None:
    """Raise :class:`DatasetCheckError` if ``ds`` (a ``datasets.Dataset``) lacks a required column
    or has no rows."""
    missing = [c for c in required if c not in ds.column_names]
    if missing:
        raise DatasetCheckError(f"{source}: missing column(s) {missing}; expected {list(required)}, "
                                f"found {ds.column_names}")
    if len(ds) == 0:
        raise DatasetCheckError(f"{source}: no rows")


def _open_row_images(batch: dict, rules: ImageRules) -> dict:
    """The dataset's read transform: each row's image paths opened by the library's opener."""
    if "images" in batch:
        batch["images"] = [[open_image(p, rules) for p in imgs] for imgs in batch["images"]]
    return batch


def to_trl_dataset(rows: pd.DataFrame | dict, rules: ImageRules | None = None):
    """A ``datasets.Dataset`` from rows whose ``images`` column holds lists of image paths; reading
    a row opens them with :func:`refine_iqa_lib.io.open_image` and ``rules`` (default:
    :func:`refine_iqa_lib.io.image_rules`), so the trainer sees each picture exactly as the
    pre-check, the evaluation and ``refine-iqa score`` do (``datasets.Image`` would clip a 16-bit
    picture and decode any size)."""
    from datasets import Dataset

    data = rows.to_dict(orient="list") if isinstance(rows, pd.DataFrame) else dict(rows)
    data["images"] = [[str(p) for p in imgs] for imgs in data["images"]]
    ds = Dataset.from_dict(data)
    ds.set_transform(functools.partial(_open_row_images, rules=rules or image_rules()))
    return ds


# --------------------------------------------------------------------------- Stage-2


def scoring_frame(cfg, names: Sequence[str] | None = None, split: str = "train") -> pd.DataFrame:
    """The scoring pictures of ``names`` (default ``scoring.train``) in ``split``: one DataFrame with
    ``dataset``, ``image``, ``mos`` and the loaders' extra columns (see ``load_scoring_split``)."""
    from refine_iqa_lib.data.scoring_data import load_scoring_split

    names = list(cfg.scoring.train if names is None else names)
    if not names:
        raise DatasetCheckError("scoring.train is empty; name at least one IQA dataset (e.g. [koniq])")
    frames = []
    for name in names:
        df = load_scoring_split(cfg, name, split)
        if df.empty:
            raise DatasetCheckError(f"IQA dataset {name!r}: the {split!r} split is empty")
        frames.append(df)
    df = pd.concat(frames, ignore_index=True)
    bad = ~np.isfinite(df["mos"].to_numpy(dtype=float))
    if bad.any():
        raise DatasetCheckError(f"scoring data {names}: {int(bad.sum())} row(s) with a non-finite MOS, e.g. "
                                f"{df.loc[bad, 'image'].head(3).tolist()}")
    return df


def stage2_dataset(cfg, split: str = "train", check_images: bool = True):
    """The Stage-2 (scoring) GRPO dataset of ``cfg`` (see the module docstring)."""
    s = cfg.stage2
    df = subsample(scoring_frame(cfg, split=split), s.max_samples, s.seed)
    rules = ImageRules.from_config(cfg)
    if check_images:
        check_images_load(df["image"], f"Stage-2 data {list(cfg.scoring.train)} ({split})", rules=rules)
    think_text = scoring_prompt(s.mode, s.variant)
    no_think_text = scoring_prompt("no_think", s.variant)
    rows = {
        "prompt": [[{"role": "user", "content": think_text}] for _ in range(len(df))],
        "images": [[p] for p in df["image"]],
        "mos": df["mos"].astype(float).tolist(),
        "mode": [s.mode] * len(df),
        "id": list(range(len(df))),
        "prompt_text": [think_text] * len(df),
        "no_think_text": [no_think_text] * len(df),
        "dataset": df["dataset"].astype(str).tolist(),
        "image_path": df["image"].astype(str).tolist(),
    }
    ds = to_trl_dataset(rows, rules)
    check_dataset(ds, STAGE2_COLUMNS, "Stage-2 dataset")
    return ds


# --------------------------------------------------------------------------- Stage-1


def perception_dir(cfg) -> Path:
    """Where the perception build writes its dataset: ``<work_dir>/perception``."""
    return cfg.work_dir / "perception"


def stage1_frame(cfg, split: str = "train", mode: str | None = None) -> pd.DataFrame:
    """The Stage-1 samples of ``split`` as a DataFrame, every prompt rendered for ``mode``
    (default ``stage1.mode``) with :func:`refine_iqa_lib.data.stage1.render_prompt`."""
    from refine_iqa_lib.data.stage1 import load_stage1_dataset, render_prompt

    root = perception_dir(cfg)
    if not root.exists():
        raise FileNotFoundError(f"{root}: the perception dataset is not built; run "
                                f"`python -m refine_iqa_lib.data.build --profile {cfg.profile}` first")
    ds = load_stage1_dataset(root, split)
    needed = ("id", "images", "task", "form", "mode", "prompt", "question", "options", "answer", "bbox")
    check_dataset(ds, needed, f"{root} (samples_{split}.jsonl)")
    df = ds.to_pandas()
    mode = mode or cfg.stage1.mode
    redo = df["mode"] != mode
    if redo.any():
        df.loc[redo, "prompt"] = [render_prompt(q, list(o), mode) for q, o in
                                  zip(df.loc[redo, "question"], df.loc[redo, "options"])]
        df["mode"] = mode
    return df.reset_index(drop=True)


def stage1_dataset(cfg, split: str = "train", check_images: bool = True):
    """The Stage-1 (perception) GRPO dataset of ``cfg`` (see the module docstring)."""
    s = cfg.stage1
    df = subsample(stage1_frame(cfg, split), s.max_samples, s.seed)
    images = [list(v) for v in df["images"]]
    bad = [k for k, (imgs, f) in enumerate(zip(images, df["form"]))
           if not all(imgs) or len(imgs) != (2 if f == "fr" else 1)]
    if bad:
        raise DatasetCheckError(f"Stage-1 data: {len(bad)} sample(s) whose images do not match their form "
                                f"(first ids {df['id'].iloc[bad[:3]].tolist()}); expected [reference, image] "
                                "for 'fr' and [image] for 'nr'")
    rules = ImageRules.from_config(cfg)
    if check_images:
        check_images_load([p for imgs in images for p in imgs], f"Stage-1 data ({split})", rules=rules)
    rows = {
        "prompt": [[{"role": "user", "content": t}] for t in df["prompt"]],
        "images": images,
        "task": df["task"].astype(str).tolist(),
        "answer": df["answer"].astype(str).tolist(),
        "options": [[str(x) for x in o] for o in df["options"]],
        "bbox": [[int(v) for v in b] for b in df["bbox"]],
        "mode": df["mode"].astype(str).tolist(),
        "form": df["form"].astype(str).tolist(),
        "sample_id": df["id"].astype(str).tolist(),
    }
    ds = to_trl_dataset(rows, rules)
    check_dataset(ds, STAGE1_COLUMNS, "Stage-1 dataset")
    return ds
