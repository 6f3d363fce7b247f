"""Leak checks of the evaluated sets: every test picture against every training picture, by pixel
content (:func:`refine_iqa_lib.data.audit.audit_splits`). Notebooks 05-07 show them for every
dataset they evaluate; public IQA splits are known to overlap, so real datasets are audited too.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Sequence

import pandas as pd

from refine_iqa_lib.data.audit import AuditReport, audit_splits, hash_images
from refine_iqa_lib.data.iqa import get_info
from refine_iqa_lib.data.scoring_data import load_scoring_split, loader_name
from refine_iqa_lib.data.stage1 import load_perception_images

__all__ = ["audit_scoring_sets", "training_pictures", "audit_against_training"]


def audit_scoring_sets(cfg, datasets: Sequence[str] | None = None, workers: int = 4) -> pd.DataFrame:
    """One row per evaluated IQA set: its test pictures against every Stage-2 training split
    (``scoring.train``), by pixel content. Real public splits can overlap: the evaluation notebook
    shows this table for every dataset it evaluates."""
    train = {name: load_scoring_split(cfg, name, "train") for name in cfg.scoring.train}
    train_hashes = {name: hash_images(df["image"], workers) for name, df in train.items()}
    rows = []
    for name in datasets or cfg.scoring.eval:
        split = get_info(loader_name(cfg, name)).default_split
        test = load_scoring_split(cfg, name, split)
        hashes = hash_images(test["image"], workers)
        for tname, th in train_hashes.items():
            shared = set(th) & set(hashes)
            rows.append({"eval set": name, "split": split, "n eval": len(test), "train set": tname,
                         "n train": len(th), "shared": len(shared),
                         "example": next((p for p, h in zip(test["image"], hashes) if h in shared), "")})
    return pd.DataFrame(rows)


def training_pictures(cfg) -> list[str]:
    """Every picture a model of ``cfg`` trains on: the perception train split's distorted images and
    pristine references (when built) and the Stage-2 training pictures of ``scoring.train``."""
    out: list[str] = []
    folder = Path(cfg.work_dir) / "perception"
    if (folder / "images_train.jsonl").is_file():
        train = load_perception_images(folder, "train")
        out += sorted(set(train["image"]) | set(train["reference"]))
    for name in cfg.scoring.train:
        out += list(load_scoring_split(cfg, name, "train")["image"])
    return out


def audit_against_training(cfg, images: Iterable[Any], name: str = "test", workers: int = 4) -> AuditReport:
    """``images`` (a test set) against every training picture of ``cfg`` (:func:`training_pictures`)."""
    return audit_splits(training_pictures(cfg), images, names=("training", name), workers=workers)
