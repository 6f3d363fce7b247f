"""Scoring datasets by their configured name: where each lies and how its splits are read.

``scoring.train`` / ``scoring.eval`` name datasets; each is one of three kinds:

* a folder holding an IQA dataset as distributed (``scoring.roots.<name>: /path``), read by the
  adapter :data:`refine_iqa_lib.data.iqa.DATASETS` of that name;
* your own labels file (``scoring.custom.<name>``, :func:`refine_iqa_lib.data.iqa.load_labels`);
* the embedded set (``scoring.roots.<name>: embedded``, or the dataset name ``embedded``): the
  stand-in's synthetic KonIQ-layout set, built or reused on first use by
  :func:`refine_iqa_lib.standin.scoring_set.build_embedded_scoring_set` and read with the KonIQ
  adapter.
"""
from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

__all__ = ["EMBEDDED", "is_embedded", "resolve_iqa_root", "is_custom", "default_split", "load_custom_split",
           "loader_name", "load_scoring_split"]

log = logging.getLogger(__name__)

#: The root value (``scoring.roots.<name>: embedded``) that selects the embedded synthetic set.
EMBEDDED = "embedded"


def is_embedded(cfg, name: str) -> bool:
    """Whether dataset ``name`` resolves to the embedded set (name or root ``embedded``)."""
    return name == EMBEDDED or str(cfg.scoring.roots.get(name, "")) == EMBEDDED


def resolve_iqa_root(cfg, name: str) -> Path:
    """The folder holding IQA dataset ``name`` as distributed.

    ``scoring.roots[name]`` is a folder (relative to the repository or absolute), or ``embedded``
    (also the dataset name ``embedded``), which builds / reuses
    :func:`refine_iqa_lib.standin.scoring_set.build_embedded_scoring_set`.
    """
    from refine_iqa_lib.config import ConfigError

    if is_embedded(cfg, name):
        from refine_iqa_lib.standin.scoring_set import build_embedded_scoring_set

        return build_embedded_scoring_set(cfg)
    roots = cfg.scoring.roots
    if name not in roots:
        raise ConfigError(f"scoring.roots has no folder for dataset {name!r}; set scoring.roots.{name}=/path "
                          f"(or 'embedded'); configured: {sorted(roots)}")
    root = cfg.resolve(roots[name])
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: folder for IQA dataset {name!r} (scoring.roots.{name}) not found")
    return root


def is_custom(cfg, name: str) -> bool:
    """Whether dataset ``name`` is your own labels file (``scoring.custom.<name>``)."""
    return name in cfg.scoring.custom


def default_split(cfg, name: str) -> str:
    """The split a dataset is evaluated on: the adapter's default, or for your own labels ``test``
    with a split column and ``all`` without."""
    if is_custom(cfg, name):
        from refine_iqa_lib.config import custom_labels

        return "test" if custom_labels(cfg, name)["split_column"] else "all"
    from refine_iqa_lib.data.iqa import get_info

    return get_info(loader_name(cfg, name)).default_split


def load_custom_split(cfg, name: str, split: str | None = None) -> pd.DataFrame:
    """Your own labels ``scoring.custom.<name>`` (:func:`refine_iqa_lib.data.iqa.load_labels`), rows
    of ``split``. Without a split column every split is the whole file (logged: training and
    evaluating on it then use the same pictures)."""
    from refine_iqa_lib.config import custom_labels
    from refine_iqa_lib.data.iqa import load_labels

    c = custom_labels(cfg, name)
    df = load_labels(cfg.resolve(c["labels"]), image_dir=cfg.resolve(c["image_dir"]) if c["image_dir"] else None,
                     image_column=c["image_column"], mos_column=c["mos_column"], mos_range=tuple(c["range"]),
                     higher_is_better=c["higher_is_better"], split_column=c["split_column"] or None,
                     std_column=c["std_column"] or None, name=name)
    split = split or default_split(cfg, name)
    if split == "all":
        return df
    if not c["split_column"]:
        log.warning("scoring.custom.%s has no split_column: its %r split is the whole labels file", name, split)
        return df
    return df[df["split"] == split].reset_index(drop=True)


def loader_name(cfg, name: str) -> str:
    """The :data:`refine_iqa_lib.data.iqa.DATASETS` adapter that reads ``name`` (the embedded set is KonIQ)."""
    return "koniq" if is_embedded(cfg, name) else name


def load_scoring_split(cfg, name: str, split: str | None = None) -> pd.DataFrame:
    """``load_iqa`` for a configured dataset name (embedded, a folder, or your own labels in
    ``scoring.custom``); the ``dataset`` column keeps the configured name. ``split``: the adapter's
    split names (KonIQ: train/val/test/all)."""
    from refine_iqa_lib.data.iqa import load_iqa

    if is_custom(cfg, name):
        return load_custom_split(cfg, name, split)
    df = load_iqa(loader_name(cfg, name), resolve_iqa_root(cfg, name), split=split)
    df["dataset"] = name
    return df
