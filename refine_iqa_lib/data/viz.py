"""Figures for the dataset chapter (notebook 01): the 12 x 5 distortion grid, the stage-count
flow, the category x severity heatmap and one rendered Stage-1 sample.

Figures are saved as PNG + PDF without timestamps (:func:`save_figure`), so re-running gives the
same files.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from refine_iqa_lib.data import distortions as D


def save_figure(fig, path: str | Path, dpi: int = 150) -> list[Path]:
    """Save ``fig`` as ``<path>.png`` and ``<path>.pdf`` (no timestamps), atomically."""
    from refine_iqa_lib.io import atomic_write

    base = Path(path)
    base = base.with_suffix("") if base.suffix in (".png", ".pdf") else base
    out = []
    for ext, meta in ((".png", {"Software": None}), (".pdf", {"CreationDate": None, "Producer": None})):
        p = base.with_name(base.name + ext)
        with atomic_write(p, "wb") as f:
            fig.savefig(f, format=ext[1:], dpi=dpi, bbox_inches="tight", metadata=meta)
        out.append(p)
    return out


def distortion_grid(image: np.ndarray, bbox: Sequence[int], seed: int = 0,
                    variants: dict[str, str] | None = None,
                    categories: Sequence[str] = D.DISTORTIONS) -> dict[tuple[str, int], np.ndarray]:
    """``{(category, severity): distorted image}`` for every category and severity 1-5, inside
    ``bbox``; one variant per category (``variants`` or the first of ``distortions.VARIANTS``)."""
    variants = variants or {}
    out = {}
    for c in categories:
        v = variants.get(c, D.VARIANTS[c][0])
        for s in range(1, 6):
            out[(c, s)] = D.distort(image, c, s, bbox=tuple(int(x) for x in bbox), rng=seed, variant=v)
    return out


def plot_distortion_grid(image: np.ndarray, bbox: Sequence[int], out_path: str | Path | None = None, *,
                         seed: int = 0, variants: dict[str, str] | None = None, crop_margin: float = 0.6,
                         categories: Sequence[str] = D.DISTORTIONS):
    """All categories x 5 severities inside ``bbox`` on one photo (rows: categories, columns:
    severities). Each panel shows the box and a margin of ``crop_margin`` x its size around it, the
    box outlined. Saved to ``out_path`` (.png + .pdf) if given. Returns the figure."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    x1, y1, x2, y2 = (int(v) for v in bbox)
    h, w = image.shape[:2]
    mx, my = int((x2 - x1) * crop_margin), int((y2 - y1) * crop_margin)
    cx1, cy1, cx2, cy2 = max(0, x1 - mx), max(0, y1 - my), min(w, x2 + mx), min(h, y2 + my)
    grid = distortion_grid(image, bbox, seed, variants, categories)
    variants = variants or {}
    ncol, nrow = 5, len(categories)
    aspect = (cy2 - cy1) / (cx2 - cx1)
    fig, axes = plt.subplots(nrow, ncol, figsize=(ncol * 1.9, nrow * 1.9 * aspect + 0.6), squeeze=False)
    for r, c in enumerate(categories):
        for s in range(1, 6):
            ax = axes[r, s - 1]
            ax.imshow(grid[(c, s)][cy1:cy2, cx1:cx2], interpolation="nearest")
            ax.add_patch(patches.Rectangle((x1 - cx1 - 0.5, y1 - cy1 - 0.5), x2 - x1, y2 - y1,
                                           fill=False, edgecolor="red", linewidth=0.8))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"{s}: {D.SEVERITIES[s - 1]}", fontsize=8)
            if s == 1:
                ax.set_ylabel(f"{c.replace('_', ' ')}\n({variants.get(c, D.VARIANTS[c][0])})", fontsize=8)
    fig.tight_layout()
    if out_path is not None:
        save_figure(fig, out_path, dpi=100)
    return fig


def plot_stage_counts(stage_counts: Sequence[dict], ax=None):
    """Horizontal bars of the Fig. 2 stage counts (images and marked images; samples apart)."""
    import matplotlib.pyplot as plt

    rows = [c for c in stage_counts if c["count"] is not None]
    if ax is None:
        _, ax = plt.subplots(figsize=(7, 0.35 * len(rows) + 0.8))
    colors = {"images": "#4c72b0", "marked images": "#dd8452", "samples": "#55a868"}
    y = np.arange(len(rows))[::-1]
    ax.barh(y, [c["count"] for c in rows], color=[colors.get(c["unit"], "grey") for c in rows])
    ax.set_yticks(y, [c["description"] for c in rows], fontsize=8)
    for yi, c in zip(y, rows):
        ax.text(c["count"], yi, f" {c['count']}", va="center", fontsize=8)
    ax.set_xlabel("count (blue: source images, orange: marked images, green: samples)")
    ax.figure.tight_layout()
    return ax.figure


def plot_distortion_heatmap(stats, split: str = "train", ax=None):
    """Seaborn heatmap of images per category x severity from ``perception_stats_distortions.csv``."""
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = stats[stats["split"] == split]
    table = df.pivot_table(index="category", columns="severity", values="images", aggfunc="sum", sort=False)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 0.32 * len(table) + 1))
    sns.heatmap(table, annot=True, fmt="d", cmap="Blues", cbar=False, ax=ax)
    ax.set_title(f"{split}: marked images per distortion x severity")
    ax.set_xlabel("severity")
    ax.set_ylabel("")
    ax.figure.tight_layout()
    return ax.figure


def plot_sample(sample: dict, dataset_dir: str | Path | None = None):
    """The images of one Stage-1 sample (reference first), the distorted box outlined in red;
    the title is the expected answer."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    from refine_iqa_lib.io import open_image

    def path(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() or dataset_dir is None else Path(dataset_dir) / q

    paths = ([("reference", sample["reference"])] if sample["reference"] else []) + [("distorted", sample["image"])]
    fig, axes = plt.subplots(1, len(paths), figsize=(3.2 * len(paths), 3), squeeze=False)
    for ax, (name, p) in zip(axes[0], paths):
        ax.imshow(np.asarray(open_image(path(p))), interpolation="nearest")
        if name == "distorted":
            x1, y1, x2, y2 = sample["bbox"]
            ax.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor="red"))
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(f"{sample['task']} ({sample['form']}): answer {sample['answer']}", fontsize=9)
    fig.tight_layout()
    return fig


def plot_scenes(records: Sequence, ncols: int = 4, size: float = 2.6):
    """Source records (image + named boxes) in a grid, for looking at the annotations."""
    import matplotlib.patches as patches
    import matplotlib.pyplot as plt

    nrows = int(np.ceil(len(records) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(ncols * size, nrows * size * 0.8), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, rec in zip(axes.ravel(), records):
        img = rec.load()
        ax.imshow(img, interpolation="nearest")
        for k, o in enumerate(rec.objects):
            x1, y1, x2, y2 = o.bbox
            color = f"C{k % 10}"
            ax.add_patch(patches.Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, edgecolor=color))
            ax.text(x1, y1, o.name, color="white", fontsize=6, va="bottom",
                    bbox={"facecolor": color, "pad": 0.5, "linewidth": 0})
        ax.set_title(rec.source_id.split(":", 1)[1], fontsize=7)
    fig.tight_layout()
    return fig
