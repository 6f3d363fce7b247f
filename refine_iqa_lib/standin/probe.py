"""Can a vision tower see each distortion family? Linear probes on its pooled features.

The instrument behind the stand-in's vision tower, which must see every distortion family (a random
tower cannot see blur: :func:`refine_iqa_lib.models.condition_vision_tower` says why). Three steps,
one function each:

1. :func:`probe_images` - square crops of the embedded photographs of **one split** of
   :func:`refine_iqa_lib.standin.scoring_set.photo_splits` (training photographs to fit the probe,
   test photographs to score it, so a probe cannot recognise a scene it was fitted on). Every crop
   appears once pristine (severity 0) and once per family of
   :data:`refine_iqa_lib.data.distortions.DISTORTIONS` and severity 1-5 (whole-image
   :func:`~refine_iqa_lib.data.distortions.distort`, variant drawn by the seed): ``1 + 12 x 5``
   pictures per crop. A *cell* is one (family, severity); ``n_per_cell`` crops fill each cell.
2. :func:`vision_features` - pooled features of the Qwen2.5-VL vision tower, captured by forward
   hooks (no gradients, batched): the mean and the standard deviation over an image's tokens of

   * ``"patch_embed"``: the patch embedding's output (the Conv3d over 14 x 14 x 2 patches),
   * ``"pre_merger"``: the last block's output, i.e. what enters the merger,
   * ``"post_merger"``: the merger's output, i.e. the tokens the language model receives
     (after ``merger.ln_q``, the per-token RMS norm, and the merger MLP).

   Pooling is per image, so the window-attention token order does not matter.
3. :func:`linear_probe` - per family, a ridge regression (standardised features, ridge penalty
   chosen by leave-one-*photograph*-out on the training rows - the rows of one photograph are
   clustered, 61 pictures of each crop, so leaving one row out would choose the penalty that
   recognises the training scenes best; one row at a time only when the rows name a single
   photograph) from the features to the severity 0-5, fitted on
   the pristine and that family's training pictures and scored by Spearman SRCC on the test
   pictures, with a seeded percentile bootstrap interval over test pictures
   (:func:`refine_iqa_lib.evaluation.statistics.bootstrap_ci`); plus a detection AUC (distorted vs
   pristine) of a logistic probe. ``family="all"`` is one probe over every family at once
   (severity regardless of family): the harder, mixed task (a random tower's ridge probe reaches
   SRCC 0.21 on blur and noise mixed).

:func:`probe_report` runs the three on a model folder. A family is called *visible*
(:func:`visible_families`) when the lower end of its SRCC interval reaches :data:`VISIBLE_SRCC`.

The probe reads pixels and severities only: never a MOS, never a label of the test photographs
for fitting.

>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = pd.DataFrame({"family": ["blur"] * 60, "severity": np.tile(np.arange(6), 10)})
>>> x = np.c_[y["severity"] + rng.normal(0, 0.1, 60), rng.normal(size=(60, 3))]
>>> t = linear_probe({"toy": x[:30]}, y[:30], {"toy": x[30:]}, y[30:], families=("blur",), n_resamples=200)
>>> r = t.iloc[0]
>>> r["family"], r["where"], int(r["n_train"]), int(r["n_test"]), bool(r["srcc"] > 0.9), bool(r["auc"] > 0.9)
('blur', 'toy', 30, 30, True, True)
"""
from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.data.distortions import DISTORTIONS, distort
from refine_iqa_lib.evaluation.statistics import bootstrap_ci, format_interval
from refine_iqa_lib.io import open_image
from refine_iqa_lib.standin.scoring_set import photo_splits
from refine_iqa_lib.standin.world import load_photo

__all__ = ["PROBE_SITES", "SPLITS", "PRISTINE", "VISIBLE_SRCC", "RIDGE_ALPHAS", "PIXEL_STATISTICS", "probe_images",
           "held_out_images", "training_images", "vision_features", "pixel_statistics", "linear_probe", "probe_report",
           "visible_families", "srcc_lows", "probe_table",
           "PHOTO_SUFFIXES", "COPY_CORRELATION", "load_photo_folder"]

#: Where features can be taken, in the order the tower computes them.
PROBE_SITES = ("patch_embed", "pre_merger", "post_merger")
#: The photograph splits of :func:`refine_iqa_lib.standin.scoring_set.photo_splits`.
SPLITS = ("training", "validation", "test")
#: ``family`` of the pristine pictures (severity 0).
PRISTINE = "none"
#: A family is visible when the lower end of its held-out SRCC interval reaches this.
VISIBLE_SRCC = 0.5
#: Ridge penalties tried (leave-one-photograph-out on the training rows picks one, on standardised features).
RIDGE_ALPHAS = tuple(float(a) for a in np.logspace(-2, 4, 13))
_CROP_SCALE = (0.3, 1.0)  # share of the photograph's shorter side a crop covers


# --------------------------------------------------------------------------------------------
# 1. pictures


def _square_crop(photo: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random square crop covering 30-100 % of the shorter side, area-resized to ``size``."""
    ph, pw = photo.shape[:2]
    side = max(8, int(round(min(ph, pw) * float(rng.uniform(*_CROP_SCALE)))))
    y0, x0 = int(rng.integers(0, ph - side + 1)), int(rng.integers(0, pw - side + 1))
    patch = Image.fromarray(photo[y0:y0 + side, x0:x0 + side])
    return np.asarray(patch.resize((size, size), Image.Resampling.BOX), dtype=np.uint8)


def probe_images(seed: int = 0, n_per_cell: int = 24, size: int = 112, split: str = "training",
                 families: Sequence[str] = DISTORTIONS,
                 photos: Mapping[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], pd.DataFrame]:
    """Pictures of one split for the probe: ``n_per_cell`` crops, each pristine and distorted.

    Crop ``k`` is cut from photograph ``k mod P`` of the split's ``P`` photographs
    (``photo_splits()[split]``), at a seeded random place and scale, and resized to
    ``size x size``; it is then shown pristine and with each family of ``families`` at severities
    1-5 (whole-image :func:`~refine_iqa_lib.data.distortions.distort`, its variant drawn by the
    seed). Returns ``(images, labels)``: ``images`` H x W x 3 uint8 arrays and a DataFrame with one
    row per picture (``photo``, ``crop``, ``family`` - :data:`PRISTINE` for severity 0 -,
    ``severity``). Picture ``i`` depends only on ``(seed, split, crop, family, severity)``.
    ``photos`` (name -> H x W x 3 uint8 array): crop these photographs instead of a split's (in
    name order), e.g. photographs from outside the embedded set; ``split`` then names the side
    they are on (``"training"``: the probe is fitted on them, ``"validation"`` / ``"test"``: held
    out) and only seeds their crops and variants, so the same photographs on two sides are cut
    differently.
    """
    if split not in SPLITS:
        raise ValueError(f"split {split!r}: expected one of {SPLITS}")
    if photos is not None and not photos:
        raise ValueError("photos: expected at least one photograph (name -> H x W x 3 array)")
    if int(n_per_cell) < 1:
        raise ValueError(f"n_per_cell {n_per_cell!r}: expected an int >= 1 (crops per family and severity)")
    if int(size) < 28:
        raise ValueError(f"size {size!r}: expected >= 28 pixels (two 14-pixel patches a side)")
    unknown = [f for f in families if f not in DISTORTIONS]
    if unknown:
        raise ValueError(f"unknown families {unknown}; expected names of DISTORTIONS {DISTORTIONS}")
    if photos is None:
        names, split_code = photo_splits()[split], SPLITS.index(split)
        load = load_photo
    else:
        names, split_code = sorted(photos), len(SPLITS) + SPLITS.index(split)   # "training": len(SPLITS), as before
        load = lambda name: np.asarray(photos[name], dtype=np.uint8)  # noqa: E731
    images, rows = [], []
    for k in range(int(n_per_cell)):
        name = names[k % len(names)]
        crop = _square_crop(load(name), int(size), np.random.default_rng([int(seed), split_code, k]))
        images.append(crop)
        rows.append({"photo": name, "crop": k, "family": PRISTINE, "severity": 0})
        for fi, family in enumerate(families):
            fcode = DISTORTIONS.index(family)
            for severity in range(1, 6):
                rng = np.random.default_rng([int(seed), split_code, k, 1 + fcode, severity])
                images.append(distort(crop, family, severity, rng=rng))
                rows.append({"photo": name, "crop": k, "family": family, "severity": severity})
    return images, pd.DataFrame(rows)


def training_images(seed: int = 0, n_per_cell: int = 24, size: int = 112, families: Sequence[str] = DISTORTIONS, extra_photos: Mapping[str, np.ndarray] | None = None
                    ) -> tuple[list[np.ndarray], pd.DataFrame]:
    """The probe's training side: :func:`probe_images` of the training photographs, then, if
    given, of ``extra_photos`` (name -> H x W x 3 uint8, e.g.
    :func:`load_photo_folder`; ``n_per_cell`` crops per cell of them
    too). An extra photograph named like an embedded one raises ``ValueError``."""
    images, labels = probe_images(seed, n_per_cell, size, "training", families)
    if not extra_photos:
        return images, labels
    embedded = {n for names in photo_splits().values() for n in names}
    clash = sorted(set(extra_photos) & embedded)
    if clash:
        raise ValueError(f"extra photographs {clash}: names of embedded photographs; expected other photographs")
    more, more_labels = probe_images(seed, n_per_cell, size, families=families, photos=extra_photos)
    return images + more, pd.concat([labels, more_labels], ignore_index=True)


def held_out_images(seed: int = 0, n_per_cell: int = 12, size: int = 112, split: str = "test",
                    families: Sequence[str] = DISTORTIONS,
                    photos: Mapping[str, np.ndarray] | None = None) -> tuple[list[np.ndarray], pd.DataFrame, str]:
    """The probe's held-out side: :func:`probe_images` of ``split``'s photographs (``"validation"``
    or ``"test"``), or of your own ``photos`` (name -> H x W x 3 uint8) cut as a held-out side;
    returns ``(images, labels, side)`` with ``side`` = ``split``, or ``"own"`` for ``photos``."""
    if split not in ("validation", "test"):
        raise ValueError(f"split {split!r}: expected 'validation' or 'test' (the probe is fitted on 'training')")
    if photos is not None:
        return (*probe_images(seed, n_per_cell, size, "test", families, photos=photos), "own")
    return (*probe_images(seed, n_per_cell, size, split, families), split)


#: File endings :func:`load_photo_folder` reads.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Correlation of 32 x 32 grey thumbnails above which a photograph counts as a copy of another.
COPY_CORRELATION = 0.95


def _thumbnail(arr: np.ndarray) -> np.ndarray:
    grey = np.asarray(Image.fromarray(arr).convert("L").resize((32, 32), Image.BOX), dtype=np.float64).ravel()
    grey -= grey.mean()
    return grey / (np.linalg.norm(grey) or 1.0)


def load_photo_folder(folder: str | Path, min_side: int = 112) -> dict[str, np.ndarray]:
    """Your own photographs, for the embedded scale's instruments: ``{file stem: H x W x 3 uint8}``.

    Every file of ``folder`` (not its subfolders) ending in :data:`PHOTO_SUFFIXES` is decoded
    with :func:`refine_iqa_lib.io.open_image`. Nothing is dropped silently: a file that does not
    decode, one whose shorter side is below ``min_side`` pixels (the probe crops squares of at
    least that size), two files with one stem, and a copy of an embedded photograph (its 32 x 32
    grey thumbnail correlates above :data:`COPY_CORRELATION` with one of the world's photographs
    (:func:`refine_iqa_lib.standin.world.photo_ids`), which also catches a resized or re-encoded copy;
    a crop of one is not caught) each make it
    raise ``ValueError`` naming every
    such file and what was expected. Record each photograph's licence next to it: the project
    never redistributes them.

    >>> load_photo_folder("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder: expected a folder of photographs (.jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff)
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of photographs ({', '.join(PHOTO_SUFFIXES)})")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no photographs (expected files ending in {', '.join(PHOTO_SUFFIXES)})")
    from refine_iqa_lib.standin.world import photo_ids

    embedded = {name: _thumbnail(load_photo(name)) for name in photo_ids()}
    photos: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for path in files:
        try:
            arr = np.asarray(open_image(path), dtype=np.uint8)
        except ValueError as e:
            problems.append(f"{path.name}: does not decode ({e})")
            continue
        if min(arr.shape[:2]) < int(min_side):
            problems.append(f"{path.name}: {arr.shape[1]} x {arr.shape[0]} pixels, expected a shorter side >= {min_side}")
            continue
        if path.stem in photos:
            problems.append(f"{path.name}: a second file named {path.stem!r}; expected one file per name")
            continue
        thumb = _thumbnail(arr)
        copies = [n for n, t in embedded.items() if float(thumb @ t) > COPY_CORRELATION]
        if copies:
            problems.append(f"{path.name}: a copy of the embedded photograph {copies[0]!r}; expected new scenes")
            continue
        photos[path.stem] = arr
    if problems:
        raise ValueError(f"{folder}: {len(problems)} of {len(files)} photograph(s) unusable:\n  " + "\n  ".join(problems))
    return photos


# --------------------------------------------------------------------------------------------
# 2. features


def _vision_tower(model):
    """The ``Qwen2_5_VisionTransformerPretrainedModel`` of a Qwen2.5-VL model (or the tower itself)."""
    for candidate in (model, getattr(model, "model", None)):
        if candidate is None:
            continue
        if hasattr(candidate, "merger") and hasattr(candidate, "patch_embed"):
            return candidate
        visual = getattr(candidate, "visual", None)
        if visual is not None and hasattr(visual, "merger"):
            return visual
    raise TypeError(f"{type(model).__name__} has no Qwen2.5-VL vision tower (expected .model.visual "
                    "with patch_embed, blocks and merger)")


def _pool(tokens, counts: list[int]) -> np.ndarray:
    """Per-image [mean, std] over tokens of a ``(sum(counts), D)`` tensor -> ``(n_images, 2 D)``."""
    out = []
    for chunk in tokens.float().split(counts):
        out.append(np.concatenate([chunk.mean(0).numpy(), chunk.std(0, unbiased=False).numpy()]))
    return np.stack(out)


def vision_features(model, processor, images: Sequence, where: Sequence[str] = ("pre_merger", "post_merger"),
                    batch_size: int = 64) -> dict[str, np.ndarray]:
    """Pooled vision-tower features of each image: ``{site: (n_images, 2 * width)}``.

    ``where``: sites of :data:`PROBE_SITES`; the features are the mean over the image's tokens
    followed by their standard deviation (width 2 x the tower's hidden size for ``patch_embed`` and
    ``pre_merger``, 2 x the language model's hidden size for ``post_merger``). Images go through
    the processor's image processor (its resize bounds apply), ``batch_size`` at a time, with no
    gradients; the model's mode is left as it was (the tower has no dropout). Deterministic.
    """
    import torch

    where = tuple(where)
    bad = [w for w in where if w not in PROBE_SITES]
    if bad or not where:
        raise ValueError(f"where {list(where)}: expected one or more of {PROBE_SITES}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size {batch_size!r}: expected an int >= 1")
    if not hasattr(processor, "image_processor"):
        raise TypeError(f"{type(processor).__name__} has no image_processor; expected a Qwen2.5-VL processor")
    tower = _vision_tower(model)
    merge_unit = int(tower.spatial_merge_size) ** 2
    captured: dict[str, object] = {}
    hooks = []
    if "patch_embed" in where:
        hooks.append(tower.patch_embed.register_forward_hook(lambda m, i, o: captured.__setitem__("patch_embed", o)))
    if "pre_merger" in where or "post_merger" in where:
        def on_merger(module, inputs, output):
            captured["pre_merger"], captured["post_merger"] = inputs[0], output
        hooks.append(tower.merger.register_forward_hook(on_merger))
    pooled: dict[str, list] = {w: [] for w in where}
    device = next(tower.parameters()).device
    try:
        with torch.no_grad():
            for start in range(0, len(images), int(batch_size)):
                batch = [np.asarray(im) if not isinstance(im, Image.Image) else im
                         for im in images[start:start + int(batch_size)]]
                enc = processor.image_processor(images=batch, return_tensors="pt")
                grid = enc["image_grid_thw"]
                counts = [int(n) for n in grid.prod(-1).tolist()]
                captured.clear()
                tower(enc["pixel_values"].to(device=device, dtype=tower.dtype), grid_thw=grid.to(device))
                for w in where:
                    n = counts if w != "post_merger" else [c // merge_unit for c in counts]
                    pooled[w].append(_pool(captured[w].detach().cpu(), n))
    finally:
        for h in hooks:
            h.remove()
    return {w: np.concatenate(v) if v else np.zeros((0, 0)) for w, v in pooled.items()}


#: The columns of :func:`pixel_statistics`, in order.
PIXEL_STATISTICS = (
    "luma_mean", "luma_std", "luma_q01", "luma_q05", "luma_q25", "luma_q50", "luma_q75", "luma_q95", "luma_q99",
    "share_black", "share_white", "saturation_mean", "saturation_std", "colourfulness",
    "grad_mean", "grad_q50", "grad_q90", "grad_q99", "laplacian_var", "grad_mean_half", "laplacian_var_half",
    "highpass_std", "highpass_kurtosis", "noise_sigma", "blockiness_h", "blockiness_v", "flat_share",
    "grey_levels",
)


_IMMERKAER = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)


def pixel_statistics(images: Sequence) -> dict[str, np.ndarray]:
    """A model-free reference for the probe: classic no-reference statistics of each picture.

    ``{"pixel_stats": (n_images, len(PIXEL_STATISTICS))}``, columns :data:`PIXEL_STATISTICS`,
    so that :func:`linear_probe` can score them exactly as it scores a tower's features. They say
    how visible each family is on the given photographs to a linear read-out of simple image
    statistics, independently of any vision tower: a family a tower misses but these see is the
    tower's limit; one that neither sees is the photographs'. The list was fixed before it was
    run and is the textbook set, not chosen per family:

    * luminance (BT.601 luma in [0, 1]): mean, standard deviation, quantiles 1-99 %, the share of
      pixels at or below 2/255 and at or above 253/255 (clipping);
    * colour: mean and standard deviation of HSV saturation, Hasler-Suesstrunk colourfulness;
    * sharpness: gradient magnitude (Sobel) mean and quantiles, the variance of the Laplacian, both
      again at half resolution; the standard deviation and kurtosis of the residual after a
      Gaussian blur (sigma 1);
    * noise: Immerkaer's (1996) estimate, the mean absolute response to the 3 x 3 mask that
      cancels planes and edges, scaled by sqrt(pi / 2) / 6;
    * blockiness: the mean absolute difference across 8-pixel block edges over that inside blocks,
      horizontally and vertically (the JPEG grid, aligned to the picture's origin);
    * flatness and quantisation: the share of zero horizontal differences, the number of distinct
      luma levels over 256.

    >>> import numpy as np
    >>> flat, ramp = np.full((32, 32, 3), 128, np.uint8), np.tile(np.arange(0, 256, 8, dtype=np.uint8), (32, 1))
    >>> f = pixel_statistics([flat, np.dstack([ramp] * 3)])["pixel_stats"]
    >>> f.shape, round(float(f[0, PIXEL_STATISTICS.index("luma_mean")]), 3), float(f[0, PIXEL_STATISTICS.index("flat_share")])
    ((2, 28), 0.502, 1.0)
    >>> bool(f[1, PIXEL_STATISTICS.index("grad_mean")] > f[0, PIXEL_STATISTICS.index("grad_mean")])
    True
    """
    import cv2
    from scipy.stats import kurtosis

    def sharpness(y: np.ndarray) -> tuple[np.ndarray, float]:
        gx, gy = cv2.Sobel(y, cv2.CV_64F, 1, 0, ksize=3), cv2.Sobel(y, cv2.CV_64F, 0, 1, ksize=3)
        return np.hypot(gx, gy), float(cv2.Laplacian(y, cv2.CV_64F).var())

    def blockiness(y: np.ndarray, axis: int) -> float:
        d = np.abs(np.diff(y, axis=axis))
        idx = np.arange(d.shape[axis])
        edge = (idx % 8) == 7                      # the difference between pixels 8k-1 and 8k
        at = np.take(d, np.flatnonzero(edge), axis=axis).mean() if edge.any() else 0.0
        inside = np.take(d, np.flatnonzero(~edge), axis=axis).mean()
        return float((at + 1e-4) / (inside + 1e-4))

    rows = []
    for i, im in enumerate(images):
        rgb = np.asarray(im)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"image {i}: expected an H x W x 3 uint8 array, got {rgb.shape} {rgb.dtype}")
        x = rgb.astype(np.float64) / 255.0
        y = x @ np.array([0.299, 0.587, 0.114])
        hsv = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)
        sat = hsv[..., 1] / 255.0
        rg, yb = x[..., 0] - x[..., 1], 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
        colourful = float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))
        grad, lap = sharpness(y)
        half = cv2.resize(y, (max(1, y.shape[1] // 2), max(1, y.shape[0] // 2)), interpolation=cv2.INTER_AREA)
        grad_half, lap_half = sharpness(half)
        resid = y - cv2.GaussianBlur(y, (0, 0), 1.0)
        q = np.quantile(y, [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99])
        levels = np.unique(np.round(y * 255)).size / 256.0
        rows.append([
            y.mean(), y.std(), *q, (y <= 2 / 255).mean(), (y >= 253 / 255).mean(), sat.mean(), sat.std(), colourful,
            grad.mean(), *np.quantile(grad, [0.5, 0.9, 0.99]), lap, grad_half.mean(), lap_half,
            resid.std(), float(kurtosis(resid, axis=None)) if resid.std() > 0 else 0.0,
            float(np.sqrt(np.pi / 2) / 6 * np.abs(cv2.filter2D(y, -1, _IMMERKAER)[1:-1, 1:-1]).mean()),
            blockiness(y, 1), blockiness(y, 0),
            (np.diff(y, axis=1) == 0).mean(), levels,
        ])
    return {"pixel_stats": np.asarray(rows, dtype=np.float64).reshape(len(rows), len(PIXEL_STATISTICS))}


# --------------------------------------------------------------------------------------------
# 3. probes


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = train.mean(0), train.std(0)
    sd = np.where(sd > 1e-12 * max(1.0, float(np.abs(train).max(initial=0.0))), sd, 1.0)
    return (train - mu) / sd, (test - mu) / sd


def _centred_svd(x: np.ndarray, y: np.ndarray):
    """The pieces every ridge fit here shares: column means, ``y``'s mean, the thin SVD of the
    centred ``x`` and ``U^T (y - mean)``."""
    xm, ym = x.mean(0), y.mean()
    u, s, vt = np.linalg.svd(x - xm, full_matrices=False)
    return xm, ym, u, s, vt, u.T @ (y - ym)


def _ridge_coef(s: np.ndarray, vt: np.ndarray, uty: np.ndarray, alpha: float) -> np.ndarray:
    return vt.T @ ((s / (s ** 2 + alpha)) * uty)


def _ridge_loo(x: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[np.ndarray, float, float]:
    """Ridge regression with an intercept, penalty chosen by exact leave-one-out error (SVD)."""
    xm, ym, u, s, vt, uty = _centred_svd(x, y)
    yc = y - ym
    best = None
    for a in alphas:
        shrink = s ** 2 / (s ** 2 + a)
        fitted = u @ (shrink * uty)
        hat = (u ** 2) @ shrink + 1.0 / len(y)           # leverage incl. the intercept
        loo = np.mean(((yc - fitted) / np.clip(1.0 - hat, 1e-9, None)) ** 2)
        if best is None or loo < best[0]:
            best = (loo, a)
    a = best[1]
    coef = _ridge_coef(s, vt, uty, a)
    return coef, float(ym - xm @ coef), float(a)


def _ridge_group_cv(x: np.ndarray, y: np.ndarray, groups: np.ndarray, alphas: Sequence[float]
                    ) -> tuple[np.ndarray, float, float]:
    """Ridge regression with an intercept, penalty chosen by leave-one-group-out squared error
    (ties: the larger penalty), then refitted on every row."""
    folds = [((held := groups == g),) + _centred_svd(x[~held], y[~held]) for g in dict.fromkeys(groups)]
    best = None
    for a in alphas:
        err = 0.0
        for held, xm, ym, _u, s, vt, uty in folds:
            err += float((((x[held] - xm) @ _ridge_coef(s, vt, uty, a) + ym - y[held]) ** 2).sum())
        if best is None or err <= best[0]:
            best = (err, a)
    xm, ym, _u, s, vt, uty = _centred_svd(x, y)
    coef = _ridge_coef(s, vt, uty, best[1])
    return coef, float(ym - xm @ coef), float(best[1])


def _auc(score: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney, ties count one half); NaN without both classes."""
    from scipy.stats import rankdata

    pos = np.asarray(positive, bool)
    n1, n0 = int(pos.sum()), int((~pos).sum())
    if not n1 or not n0:
        return float("nan")
    ranks = rankdata(score)
    return float((ranks[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def _logistic_scores(x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, seed: int) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=1.0, max_iter=2000, class_weight="balanced", random_state=int(seed))
    clf.fit(x_train, y_train)
    return clf.decision_function(x_test)


def _labels(y: pd.DataFrame, what: str) -> pd.DataFrame:
    if not isinstance(y, pd.DataFrame) or not {"family", "severity"} <= set(y.columns):
        raise ValueError(f"{what}: expected a DataFrame with columns 'family' and 'severity' "
                         "(the labels frame of probe_images)")
    return y.reset_index(drop=True)


def _as_sites(features, n: int, what: str) -> dict[str, np.ndarray]:
    sites = dict(features) if isinstance(features, Mapping) else {"features": features}
    out = {}
    for w, x in sites.items():
        x = np.asarray(x, dtype=float)
        if x.ndim != 2 or x.shape[0] != n:
            raise ValueError(f"{what}[{w!r}] has shape {x.shape}; expected ({n}, n_features), one row per label row")
        out[w] = x
    return out


def linear_probe(features_train, y_train: pd.DataFrame, features_test, y_test: pd.DataFrame,
                 families: Sequence[str] | None = None, include_all: bool = True, seed: int = 0,
                 n_resamples: int = 2000, alphas: Sequence[float] = RIDGE_ALPHAS,
                 group_by: str | None = "photo") -> pd.DataFrame:
    """Per family and feature site: ridge probe of severity, scored on held-out pictures.

    ``features_*``: ``{site: (n, d) array}`` as :func:`vision_features` returns (or one array,
    called ``"features"``); ``y_*``: the label frames of :func:`probe_images` (columns ``family``,
    ``severity``), row ``i`` belonging to feature row ``i``. For each family (default: those in
    ``y_train`` besides :data:`PRISTINE`) the probe is fitted on that family's and the pristine
    training rows and predicts the test rows of the same kinds; with ``include_all`` a
    ``family="all"`` probe uses every row. Returns one row per (family, site): ``srcc`` (Spearman
    of prediction and severity 0-5 on the test rows) with its bootstrap 95 % interval over test
    pictures (``srcc_low``, ``srcc_high``), ``auc`` of a logistic probe (distorted vs pristine,
    balanced classes), ``alpha`` (the ridge penalty chosen), ``alpha_cv`` (how: ``"photo"`` or
    ``"row"``), ``n_train``, ``n_test``.

    ``group_by``: the column of ``y_train`` whose values cluster its rows (default ``"photo"``):
    the penalty is chosen by leaving one group out when a family's training rows hold >= 2 groups,
    else (or with ``group_by=None``) by exact leave-one-row-out.
    """
    y_train, y_test = _labels(y_train, "y_train"), _labels(y_test, "y_test")
    tr = _as_sites(features_train, len(y_train), "features_train")
    te = _as_sites(features_test, len(y_test), "features_test")
    if set(tr) != set(te):
        raise ValueError(f"features_train has sites {sorted(tr)} and features_test {sorted(te)}; expected the same")
    if families is None:
        families = [f for f in dict.fromkeys(y_train["family"]) if f != PRISTINE]
    groups = [(f, [f, PRISTINE]) for f in families] + ([("all", None)] if include_all else [])
    rows = []
    for family, kinds in groups:
        mtr = np.ones(len(y_train), bool) if kinds is None else y_train["family"].isin(kinds).to_numpy()
        mte = np.ones(len(y_test), bool) if kinds is None else y_test["family"].isin(kinds).to_numpy()
        s_tr = y_train["severity"].to_numpy(float)[mtr]
        s_te = y_test["severity"].to_numpy(float)[mte]
        if not ((s_tr == 0).any() and (s_tr > 0).any() and (s_te == 0).any() and (s_te > 0).any()):
            raise ValueError(f"family {family!r}: {int(mtr.sum())} training and {int(mte.sum())} test rows with "
                             f"training severities {sorted(set(s_tr))}; expected pristine and distorted pictures on both sides")
        g_tr = (y_train[group_by].to_numpy()[mtr] if group_by is not None and group_by in y_train.columns
                else np.zeros(int(mtr.sum())))
        by_group = len(set(g_tr.tolist())) >= 2
        for w in tr:
            x_tr, x_te = _standardise(tr[w][mtr], te[w][mte])
            coef, icpt, alpha = (_ridge_group_cv(x_tr, s_tr, g_tr, alphas) if by_group
                                 else _ridge_loo(x_tr, s_tr, alphas))
            pred = x_te @ coef + icpt
            iv = bootstrap_ci((pred, s_te), "srcc", n_resamples=n_resamples, seed=seed)
            auc = _auc(_logistic_scores(x_tr, s_tr > 0, x_te, seed), s_te > 0)
            rows.append({"family": family, "where": w, "srcc": iv.value, "srcc_low": iv.low, "srcc_high": iv.high,
                         "auc": auc, "alpha": alpha, "alpha_cv": "photo" if by_group else "row",
                         "n_train": int(mtr.sum()), "n_test": int(mte.sum())})
    return pd.DataFrame(rows, columns=["family", "where", "srcc", "srcc_low", "srcc_high", "auc", "alpha",
                                       "alpha_cv", "n_train", "n_test"])


def visible_families(table: pd.DataFrame, where: str = "post_merger", threshold: float = VISIBLE_SRCC) -> list[str]:
    """Families (not ``"all"``) whose SRCC interval at ``where`` lies wholly at or above ``threshold``."""
    t = table[(table["where"] == where) & (table["family"] != "all")]
    if t.empty:
        raise ValueError(f"no probe rows at where={where!r}; the table has {sorted(set(table['where']))}")
    return t.loc[t["srcc_low"] >= threshold, "family"].tolist()


def srcc_lows(table: pd.DataFrame, where: str = "post_merger") -> dict[str, float]:
    """Each family's (not ``"all"``) SRCC interval low at ``where``: what :func:`visible_families`
    compares with :data:`VISIBLE_SRCC`, for printing a design's weak families.

    >>> t = pd.DataFrame({"family": ["blur", "all"], "where": "x", "srcc_low": [0.61, 0.2]})
    >>> srcc_lows(t, "x")
    {'blur': 0.61}
    """
    t = table[(table["where"] == where) & (table["family"] != "all")]
    return {str(f): float(v) for f, v in zip(t["family"], t["srcc_low"])}


def probe_table(table: pd.DataFrame, decimals: int = 2) -> pd.DataFrame:
    """The probe table for reading: one row per family, per site ``SRCC [low, high]`` and AUC."""
    out = pd.DataFrame(index=pd.Index(list(dict.fromkeys(table["family"])), name="family"))
    for w in dict.fromkeys(table["where"]):
        t = table[table["where"] == w].set_index("family")
        out[f"{w} srcc"] = [format_interval(r.srcc, r.srcc_low, r.srcc_high, decimals) for r in t.itertuples()]
        out[f"{w} auc"] = [f"{v:.{decimals}f}" for v in t["auc"]]
    return out


def probe_report(model_dir: str | os.PathLike, seed: int = 0, n_train: int = 24, n_test: int = 12,
                 size: int = 112, where: Sequence[str] = ("pre_merger", "post_merger"),
                 families: Sequence[str] = DISTORTIONS, n_resamples: int = 2000,
                 batch_size: int = 64, model=None, processor=None, test_split: str = "test",
                 extra_train_photos: Mapping[str, np.ndarray] | None = None,
                 test_photos: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """Probe a Qwen2.5-VL folder's vision tower: :func:`probe_images` of the training photographs
    (``n_train`` crops per cell) and the test photographs (``n_test``), :func:`vision_features`,
    :func:`linear_probe`. A loaded ``model``/``processor`` may be passed instead of loading
    ``model_dir`` again. ``table.attrs`` records the seconds each step took, the photographs of
    each side and the settings. ``test_split="validation"`` scores on the validation photograph
    instead: choose settings there, report on the test photographs. ``extra_train_photos``
    (name -> H x W x 3 uint8, e.g. :func:`load_photo_folder`): more
    photographs on the probe's training side only, ``n_train`` crops per cell of them too (the
    penalty is still chosen by leaving one photograph out, now over more of them). ``test_photos``
    (the same kind of mapping): score on these photographs instead of ``test_split``'s
    (``n_test`` crops per cell; ``attrs["test_split"]`` is then ``"own"``) - photographs the
    tower's design was never judged on. A name on both sides raises ``ValueError``."""
    from refine_iqa_lib.models import load_policy

    t0 = time.perf_counter()
    if model is None or processor is None:
        model, processor = load_policy(model_dir)
    img_tr, y_tr = training_images(seed, n_train, size, families, extra_train_photos)
    if test_split not in ("validation", "test"):
        raise ValueError(f"test_split {test_split!r}: expected 'validation' or 'test' (the probe is fitted on 'training')")
    clash = sorted(set(test_photos or ()) & set(y_tr["photo"]))
    if clash:
        raise ValueError(f"test photographs {clash}: also on the probe's training side; expected other photographs")
    img_te, y_te, test_split = held_out_images(seed, n_test, size, test_split, families, test_photos)
    t1 = time.perf_counter()
    f_tr = vision_features(model, processor, img_tr, where, batch_size)
    f_te = vision_features(model, processor, img_te, where, batch_size)
    t2 = time.perf_counter()
    table = linear_probe(f_tr, y_tr, f_te, y_te, families=families, seed=seed, n_resamples=n_resamples)
    t3 = time.perf_counter()
    table.attrs.update({
        "model_dir": str(model_dir), "test_split": test_split, "seed": seed, "size": size, "n_train_crops": n_train, "n_test_crops": n_test,
        "train_photos": sorted(set(y_tr["photo"])), "test_photos": sorted(set(y_te["photo"])),
        "seconds": {"load_and_images": t1 - t0, "features": t2 - t1, "probes": t3 - t2, "total": t3 - t0},
        "pixel_digest": hashlib.sha256(b"".join(np.ascontiguousarray(i).tobytes() for i in img_te)).hexdigest()[:16],
    })
    return table
