"""Split audits by pixel content: no picture may sit on both sides of a train/test split.

File names are no evidence (public IQA splits are known to share images under different names,
e.g. a KADID train/test list sharing 1,844 images), so every image is decoded
and hashed: :func:`content_hash` is the BLAKE2b digest of the decoded RGB pixels and the size.
:func:`audit_splits` compares two collections of images and names every overlap; the dataset
builds call it and fail on an overlap, and the evaluation notebooks show it for every dataset they
evaluate (:mod:`refine_iqa_lib.evaluation.leaks`).

>>> import numpy as np
>>> a = [np.zeros((4, 4, 3), np.uint8), np.full((4, 4, 3), 9, np.uint8)]
>>> b = [np.full((4, 4, 3), 9, np.uint8)]
>>> rep = audit_splits(a, b, names=("train", "test"))
>>> rep.ok, len(rep.overlaps), rep.summary()
(False, 1, 'train (2 images) vs test (1 images): 1 shared by pixel content')
"""
from __future__ import annotations

import hashlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.io import open_image

__all__ = ["SplitOverlapError", "AuditReport", "content_hash", "hash_images", "audit_splits", "reuse_table"]


class SplitOverlapError(ValueError):
    """Two splits that must be disjoint share images (the message names them)."""


def content_hash(image: Any) -> str:
    """BLAKE2b (16 bytes) of an image's decoded RGB pixels and size (a path, a PIL image or an array).

    >>> import numpy as np
    >>> content_hash(np.zeros((2, 3, 3), np.uint8)) == content_hash(np.zeros((2, 3, 3), np.uint8))
    True
    """
    arr = np.asarray(open_image(image), dtype=np.uint8)
    h = hashlib.blake2b(digest_size=16)
    h.update(repr(arr.shape).encode())
    h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def _labels(items: Sequence[Any]) -> list[str]:
    return [str(x) if not isinstance(x, np.ndarray) else f"<array {i}>" for i, x in enumerate(items)]


def hash_images(images: Iterable[Any], workers: int = 4) -> list[str]:
    """:func:`content_hash` of every image, in order (threads: decoding releases the GIL)."""
    items = list(images)
    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        return list(pool.map(content_hash, items))


@dataclass
class AuditReport:
    """The result of :func:`audit_splits`: sizes and every shared image (one row per pair)."""

    names: tuple[str, str]
    n: tuple[int, int]
    overlaps: pd.DataFrame          # columns: hash, <name a>, <name b>

    @property
    def ok(self) -> bool:
        return self.overlaps.empty

    def summary(self) -> str:
        (a, b), (na, nb) = self.names, self.n
        return f"{a} ({na} images) vs {b} ({nb} images): {len(self.overlaps)} shared by pixel content"

    def to_dict(self) -> dict:
        return {"a": self.names[0], "b": self.names[1], "n_a": self.n[0], "n_b": self.n[1],
                "n_shared": int(len(self.overlaps)), "shared": self.overlaps.head(50).to_dict("records")}

    def require_disjoint(self) -> "AuditReport":
        """Raise :class:`SplitOverlapError` naming the shared images unless the splits are disjoint."""
        if not self.ok:
            a, b = self.names
            shown = "; ".join(f"{r[a]} = {r[b]}" for r in self.overlaps.head(5).to_dict("records"))
            raise SplitOverlapError(f"{self.summary()}, e.g. {shown}")
        return self


def audit_splits(a: Iterable[Any], b: Iterable[Any], names: tuple[str, str] = ("a", "b"),
                 workers: int = 4) -> AuditReport:
    """Compare two collections of images (paths, PIL images or arrays) by pixel content.

    Every image of ``b`` whose content also occurs in ``a`` is one row of ``overlaps``, with the
    first image of ``a`` that has it."""
    a, b = list(a), list(b)
    if names[0] == names[1]:
        names = (f"{names[0]} (a)", f"{names[1]} (b)")
    ha, hb = hash_images(a, workers), hash_images(b, workers)
    first = {}
    for h, label in zip(ha, _labels(a)):
        first.setdefault(h, label)
    rows = [{"hash": h, names[0]: first[h], names[1]: label} for h, label in zip(hb, _labels(b)) if h in first]
    return AuditReport(tuple(names), (len(a), len(b)), pd.DataFrame(rows, columns=["hash", *names]))


def reuse_table(reuse: dict) -> pd.DataFrame:
    """The perception build's reuse report (``perception_split_audit.json``'s ``reuse``) as a table:
    one row per reused kind (object cut-outs, background photographs), with distinct items per
    split, items used in both, and test scenes that reuse one."""
    rows = [{"reused": k, **v} for k, v in reuse.items() if isinstance(v, dict)]
    return pd.DataFrame(rows).set_index("reused") if rows else pd.DataFrame({"note": [reuse.get("note", "")]})
