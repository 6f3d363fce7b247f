"""The embedded scoring set: a synthetic stand-in for KonIQ-10k, written in KonIQ's own layout.

The paper's Stage-2 trains on KonIQ-10k + SPAQ (human MOS). Those are not installable, so the
``smoke`` and ``tiny`` profiles use this set instead. **Its scores are not human data**: they are
a fixed function of a distortion we apply ourselves - of its severity label (``severity``, the
default) or of what it did to the pixels (``fidelity``), see ``scoring.embedded_mos`` below.

What is in it
-------------
* **Pictures.** Crops (70 %) of the world's photographs (:mod:`refine_iqa_lib.standin.world`:
  Debian wallpaper photographs and the scikit-image / scikit-learn ones) and side-by-side
  composites of two crops (30 %), each cut only from its split's own photographs
  (:func:`photo_splits`, the world's photograph split; a pixel-hash audit at build time fails on
  any shared picture), resized to
  ``W x H`` with both sides drawn from the multiples of 28 in ``[56, scoring.embedded_image_size]``
  (so Qwen2.5-VL's 28-pixel merge grid fits exactly).
* **Distortion.** A severity ``s`` drawn uniformly from 0-5. ``s = 0`` is the pristine crop;
  otherwise one *whole-image* distortion from ``scoring.embedded_categories`` (default noise and
  underexposure) at severity ``s`` via :func:`refine_iqa_lib.data.distortions.distort`.
  Why not blur: a randomly initialised vision tower (the tiny stand-in) cannot see blur - the
  vision merger's per-token normalisation removes the high-frequency energy that blur lowers
  (measured on this project's machine: ridge probes on the random tower reach 0.91 SRCC for darkening, 0.58 for
  noise, 0.49 for blur, 0.21 for blur mixed with noise). A pretrained Qwen2.5-VL tower has no
  such limitation; the categories are a config value. Measured here (ridge probe on the random
  tower's pooled features, 240 crops per category): overexposure 0.82, underexposure 0.72,
  noise 0.47; a warm-up on noise + underexposure called most noisy pictures "clean", so the
  ``tiny`` profile uses under- and overexposure.
* **Synthetic MOS** (on the training scale [0, 5)), chosen by ``scoring.embedded_mos``:

  - ``severity`` (default): ``mos = clip(4.5 − 0.8·s + N(0, 0.15²), 0, 4.9)`` with a per-image
    seeded draw (:data:`SYNTHETIC_MOS`). Pristine pictures score about 4.5, the most severe about
    0.5; a deterministic function of the severity up to the noise, blind to the content.
  - ``fidelity``: a full-reference perceptual model of the distorted picture against its pristine
    crop (:mod:`refine_iqa_lib.standin.fidelity`, which documents every constant)::

        D   = g_family · (2 (1 − SSIM₂) + 2 GMSD + 0.5 max(0, (30 − PSNR)/10) + 3 |Δ mean luma|
                          + min(2, |ln colourfulness ratio|) + 2 |ln contrast ratio|)
        mos = clip(4.5 · exp(−D²) + N(0, 0.15²), 0, 4.9)

    SSIM₂ = the mean of luma SSIM (scikit-image, Gaussian window sigma 1.5, 11 px) at full and half
    resolution; GMSD = gradient magnitude similarity deviation (Prewitt, scikit-image); PSNR over
    RGB in dB; the colourfulness of Hasler & Süsstrunk; ``g_family`` = per-family gains
    (:data:`refine_iqa_lib.standin.fidelity.FAMILY_GAINS`, each family's median severity-3 crop at 2.5,
    :func:`fidelity_gain_calibration`); the normal draw is the same single per-image draw as the
    severity map's. Pristine pictures (D = 0) score 4.5 ± 0.15; the same severity costs different
    crops different amounts. Measured facts: see *The fidelity MOS, measured* below.
* **KonIQ layout.** ``koniq10k_scores_and_distributions.csv`` (``image_name,c1..c5,c_total,MOS,SD,
  MOS_zscore``) with ``MOS = 1 + 0.8·mos`` on KonIQ's 1-5 scale, so that
  :func:`refine_iqa_lib.data.iqa.load_iqa` ("koniq") rescales it back to ``mos`` exactly (up to the
  6 written decimals); ``koniq10k_distributions_sets.csv`` with ``set`` =
  training / validation / test (70 / 10 / 20 %, a seeded permutation); images as PNG under
  ``1024x768/`` (the folder the KonIQ loader reads; the pictures themselves are small). The vote
  counts ``c1..c5`` are an illustrative discretised normal around the MOS (100 votes,
  sd 0.6), not votes. ``MOS_zscore`` is ``25·(MOS − 1)``. ``embedded_metadata.csv`` records each
  picture's source, kind, category and severity, and with ``fidelity`` also ``mos_model``, the
  seven features of :func:`refine_iqa_lib.standin.fidelity.fidelity_features` and the impairment ``D``
  (``impairment``); ``README.txt`` repeats this description.

The fidelity MOS, measured
--------------------------
:func:`embedded_mos_facts` of the ``tiny`` settings' build (3,000 pictures, sides 56-112 px,
``scoring.seed`` 0) with ``embedded_mos: fidelity`` and the seven families of ``tiny.yaml``'s
commented example (``s 0-5`` counts the 510 pristine pictures as severity 0 of every family;
``s 1-5`` is over the family's distorted pictures only):

==============  ===  ================  ================  ===========  ==============================
family          n    Spearman s 0-5    Spearman s 1-5    MOS range    mean MOS at s = 1, 2, 3, 4, 5
==============  ===  ================  ================  ===========  ==============================
blur            340  −0.818            −0.548            0.25-4.80    3.67 3.10 2.32 2.31 1.93
compression     382  −0.879            −0.775            0.00-4.41    3.46 3.02 2.34 1.56 0.83
desaturate      349  −0.868            −0.911            0.00-4.65    4.07 3.37 2.34 1.36 1.02
low_contrast    354  −0.874            −0.889            0.00-4.66    3.76 3.26 2.50 1.50 0.70
noise           381  −0.852            −0.614            0.00-4.51    3.82 2.96 2.32 1.94 1.46
overexposure    335  −0.869            −0.916            0.16-4.42    4.05 3.41 2.76 1.70 1.06
underexposure   349  −0.872            −0.889            0.00-4.51    4.09 3.25 2.27 1.59 0.84
==============  ===  ================  ================  ===========  ==============================

* Pristine pictures: mean 4.51 (SD 0.16, range 4.04-4.90); mean MOS by severity 1-5 over all
  families 3.83, 3.20, 2.40, 1.70, 1.12; Spearman with severity over the whole set −0.873.
* Spread: 13.4 %, 18.7 %, 18.5 %, 22.1 % and 27.3 % of the pictures in [0, 1), [1, 2), [2, 3),
  [3, 4) and [4, 5) (the 600 test pictures: 13.2, 16.3, 17.8, 24.8, 27.8 %).
* Within a severity the MOS SD (families pooled) is 0.16 at s = 0 (the observer noise alone) and
  0.62, 0.65, 0.80, 0.86, 0.85 at s = 1-5; within one family at one severity it is 0.67 on average,
  four times the observer noise: the content moves the score.
* Blur and noise follow their severity least among the distorted pictures (−0.55, −0.61): their
  variants differ in strength at one severity (zoom blur and spatially correlated noise stay mild
  on 56-112 px crops, so blur's severity 4 and 3 score alike), and a flat crop loses little to blur.
  The ``severity`` map, for comparison, has a within-severity SD of 0.15 whatever the picture.

Deterministic: picture ``i`` depends only on ``(scoring.seed, i)`` and the settings, so the same
config gives byte-identical files. The folder is built in a temporary sibling and renamed into
place (atomic); a stamp with the settings' fingerprint makes later calls reuse it.

>>> import numpy as np
>>> round(synthetic_mos(0, np.random.default_rng(0)), 3), round(synthetic_mos(5, np.random.default_rng(0)), 3)
(4.519, 0.519)
>>> koniq_raw_from_mos(2.5), mos_from_koniq_raw(3.0)
(3.0, 2.5)
"""
from __future__ import annotations

import hashlib
import io
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.config import EMBEDDED_MOS_MODELS
from refine_iqa_lib.data.audit import audit_splits
from refine_iqa_lib.io import atomic_dir, build_lock, write_json, write_text

__all__ = [
    "SYNTHETIC_MOS", "synthetic_mos", "koniq_raw_from_mos", "mos_from_koniq_raw",
    "embedded_sides", "photo_splits", "fidelity_gain_calibration", "embedded_mos_facts",
    "build_embedded_scoring_set", "embedded_set_dir",
]


#: The fixed, documented severity -> MOS map (training scale [0, 5)).
SYNTHETIC_MOS = {"top": 4.5, "slope": 0.8, "noise_sd": 0.15, "low": 0.0, "high": 4.9}
_SPLIT_SHARES = (("training", 0.7), ("validation", 0.1), ("test", 0.2))
_COMPOSITE_SHARE = 0.3
_VOTES, _VOTE_SD = 100, 0.6
_BUILD_VERSION = "3"   # 3: the world's photographs and photograph split
_STAMP = "embedded_set.json"


def synthetic_mos(severity: int, rng: np.random.Generator) -> float:
    """``clip(4.5 − 0.8·severity + N(0, 0.15²), 0, 4.9)`` (one normal draw from ``rng``)."""
    m = SYNTHETIC_MOS
    value = m["top"] - m["slope"] * int(severity) + m["noise_sd"] * float(rng.standard_normal())
    return float(np.clip(value, m["low"], m["high"]))


def koniq_raw_from_mos(mos: float) -> float:
    """KonIQ's 1-5 MOS for a training-scale score (the inverse of the KonIQ loader's rescale)."""
    return 1.0 + 4.0 * float(mos) / 5.0


def mos_from_koniq_raw(raw: float) -> float:
    """Training-scale [0, 5) score for a KonIQ 1-5 MOS (what ``load_iqa("koniq", ...)`` computes)."""
    return 5.0 * (float(raw) - 1.0) / 4.0


def embedded_sides(max_side: int) -> list[int]:
    """Allowed picture sides: multiples of 28 in ``[56, max_side]``.

    >>> embedded_sides(112), embedded_sides(60)
    ([56, 84, 112], [56])
    """
    top = max(56, (int(max_side) // 28) * 28)
    return list(range(56, top + 1, 28))


# --------------------------------------------------------------------------- pictures


def _crop(photo: np.ndarray, w: int, h: int, rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``photo`` with aspect ``w/h``, covering 30-100 % of the largest such crop,
    resized to ``w x h`` (area-averaging)."""
    ph, pw = photo.shape[:2]
    aspect = w / h
    max_h = min(ph, pw / aspect)
    scale = float(rng.uniform(0.3, 1.0))
    ch = max(8, int(round(max_h * scale)))
    cw = max(8, min(pw, int(round(ch * aspect))))
    y0 = int(rng.integers(0, ph - ch + 1))
    x0 = int(rng.integers(0, pw - cw + 1))
    patch = Image.fromarray(photo[y0:y0 + ch, x0:x0 + cw])
    return np.asarray(patch.resize((w, h), Image.Resampling.BOX), dtype=np.uint8)


def photo_splits() -> dict[str, list[str]]:
    """Which photographs each split of the set is cut from: the world's own photograph split
    (:func:`refine_iqa_lib.standin.world.photo_ids`), so that no photograph - and therefore no crop
    of one - is on two sides, and the scoring, perception and pre-training sides agree.

    >>> s = photo_splits()
    >>> sorted(len(v) for v in s.values()), set(s["test"]).isdisjoint(s["training"])
    ([7, 9, 28], True)
    """
    from refine_iqa_lib.standin.world import photo_ids

    return {"test": photo_ids("test"), "validation": photo_ids("validation"), "training": photo_ids("train")}


def _picture(i: int, seed: int, max_side: int, categories: list[str], names: list[str],
             mos_model: str = "severity") -> tuple[np.ndarray, dict]:
    from refine_iqa_lib.data.distortions import distort
    from refine_iqa_lib.standin.world import load_photo

    rng = np.random.default_rng([int(seed), int(i)])
    sides = embedded_sides(max_side)
    w, h = int(rng.choice(sides)), int(rng.choice(sides))
    if rng.random() < _COMPOSITE_SHARE and len(names) >= 2:
        a, b = rng.choice(len(names), size=2, replace=False)
        src = [names[int(a)], names[int(b)]]
        if w >= h:  # split along the longer side
            left = max(8, (w // 2))
            img = np.concatenate([_crop(load_photo(src[0]), left, h, rng),
                                  _crop(load_photo(src[1]), w - left, h, rng)], axis=1)
        else:
            top = max(8, (h // 2))
            img = np.concatenate([_crop(load_photo(src[0]), w, top, rng),
                                  _crop(load_photo(src[1]), w, h - top, rng)], axis=0)
        kind = "composite"
    else:
        src = [names[int(rng.integers(len(names)))]]
        img = _crop(load_photo(src[0]), w, h, rng)
        kind = "crop"
    severity = int(rng.integers(0, 6))
    category = "none"
    pristine = img
    if severity > 0:
        category = str(categories[int(rng.integers(len(categories)))])
        img = distort(img, category, severity, rng=rng)
    info = {"source": "+".join(src), "kind": kind, "category": category, "severity": severity,
            "width": w, "height": h}
    if mos_model == "fidelity":  # the same single normal draw from ``rng`` as the severity map's
        from refine_iqa_lib.standin.fidelity import fidelity_features, fidelity_impairment, fidelity_mos

        features = fidelity_features(pristine, img)
        info["features"] = {**features, "impairment": fidelity_impairment(features, category)}
        info["mos"] = fidelity_mos(features, category, rng)
    else:
        info["mos"] = synthetic_mos(severity, rng)
    return img, info


def fidelity_gain_calibration(categories: list[str] | None = None, seed: int = 0, n_crops: int = 60,
                              severity: int = 3, target: float = 2.5, max_side: int = 112) -> dict[str, float]:
    """How :data:`refine_iqa_lib.standin.fidelity.FAMILY_GAINS` were set: for each family, the gain that
    puts the median crop at ``severity`` on ``target`` (noiseless),
    ``g = ln(top / target) ** (1 / slope) / median(index)``, rounded to 2 decimals. ``n_crops``
    pristine crops of the *training* photographs of :func:`photo_splits` (``seed``), sides as in the set, one seeded
    distortion per crop and family.

    >>> fidelity_gain_calibration(["underexposure"], n_crops=8)
    {'underexposure': 0.29}
    """
    from refine_iqa_lib.data.distortions import DISTORTIONS, distort
    from refine_iqa_lib.standin.fidelity import FIDELITY_MOS, fidelity_features, fidelity_impairment
    from refine_iqa_lib.standin.world import load_photo

    categories = list(DISTORTIONS) if categories is None else list(categories)
    names = photo_splits()["training"]
    crops = []
    for i in range(int(n_crops)):
        rng = np.random.default_rng([int(seed), 0xCA1, i])
        sides = embedded_sides(max_side)
        w, h = int(rng.choice(sides)), int(rng.choice(sides))
        crops.append(_crop(load_photo(names[i % len(names)]), w, h, rng))
    aim = math.log(FIDELITY_MOS["top"] / float(target)) ** (1.0 / FIDELITY_MOS["slope"])  # D at which mos = target
    out = {}
    for k, cat in enumerate(categories):
        index = []
        for i, ref in enumerate(crops):
            dis = distort(ref, cat, int(severity), rng=np.random.default_rng([int(seed), 0xCA1, i, k]))
            index.append(fidelity_impairment(fidelity_features(ref, dis), "none"))  # gain 1
        out[cat] = round(aim / float(np.median(index)), 2)
    return out


def embedded_mos_facts(meta: pd.DataFrame) -> dict:
    """Measured facts about a built set's MOS, from its ``embedded_metadata.csv``: per family the
    Spearman correlation of MOS with severity (pristine pictures included as severity 0) and the MOS
    range; the share of pictures in each unit bin of [0, 5); the MOS standard deviation within each
    severity (pooled over families) and its mean within (family, severity) cells (content alone).
    ``spearman_1_5``: the same correlation over the distorted pictures only (severities 1-5).

    >>> meta = pd.DataFrame({"category": ["none", "blur", "blur", "blur", "blur"],
    ...                      "severity": [0, 1, 1, 5, 5], "mos": [4.5, 3.9, 3.1, 1.2, 0.4]})
    >>> f = embedded_mos_facts(meta)
    >>> f["families"]["blur"]["spearman"], f["families"]["blur"]["spearman_1_5"], f["bins"], f["cell_sd"]
    (-0.949, -0.894, [0.2, 0.2, 0.0, 0.4, 0.2], 0.4)
    """
    from scipy.stats import spearmanr

    mos, sev = meta["mos"].astype(float), meta["severity"].astype(int)
    pristine = meta[sev == 0]
    families = {}
    for cat in sorted(set(meta.loc[sev > 0, "category"])):
        part = pd.concat([pristine, meta[meta["category"] == cat]])
        m = part.loc[part["severity"] > 0, "mos"].astype(float)
        rho = spearmanr(part["severity"], part["mos"])[0]
        distorted = part[part["severity"] > 0]
        rho_1_5 = (spearmanr(distorted["severity"], distorted["mos"])[0] if distorted["severity"].nunique() > 1
                   else float("nan"))
        families[cat] = {"n": int(len(m)), "spearman": round(float(rho), 3),
                         "spearman_1_5": round(float(rho_1_5), 3),
                         "mos_min": round(float(m.min()), 3), "mos_max": round(float(m.max()), 3)}
    bins = np.histogram(mos.clip(0, 4.999), bins=np.arange(6))[0] / len(meta)
    by_sev = {int(k): round(float(v), 3) for k, v in mos.groupby(sev).std(ddof=0).items()}
    cells = mos.groupby([meta["category"], sev]).std(ddof=0)
    return {"n": int(len(meta)), "families": families, "bins": [round(float(b), 3) for b in bins],
            "severity_sd": by_sev, "cell_sd": round(float(cells[cells.index.get_level_values(1) > 0].mean()), 3),
            "pristine_mos": [round(float(pristine["mos"].min()), 3), round(float(pristine["mos"].max()), 3)]
            if len(pristine) else []}


def _votes(raw: float) -> tuple[list[int], float]:
    """Illustrative vote counts ``c1..c5`` (a discretised normal around ``raw``) and their SD."""
    from scipy.stats import norm

    edges = np.array([-np.inf, 1.5, 2.5, 3.5, 4.5, np.inf])
    p = np.diff(norm.cdf(edges, loc=raw, scale=_VOTE_SD))
    counts = np.floor(p * _VOTES).astype(int)
    for k in np.argsort(-(p * _VOTES - counts))[: _VOTES - counts.sum()]:
        counts[k] += 1
    levels = np.arange(1, 6)
    mean = float((counts * levels).sum() / _VOTES)
    sd = float(np.sqrt((counts * (levels - mean) ** 2).sum() / (_VOTES - 1)))
    return counts.tolist(), sd


def _png_bytes(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", optimize=False)
    return buf.getvalue()


# --------------------------------------------------------------------------- build


def _settings(cfg) -> dict:
    from refine_iqa_lib.standin.world import catalogue_digest

    s = cfg.scoring
    from refine_iqa_lib.data.distortions import DISTORTIONS

    cats = [str(c) for c in s.embedded_categories]
    bad = [c for c in cats if c not in DISTORTIONS]
    if not cats or bad:
        raise ValueError(f"scoring.embedded_categories {cats}: expected a non-empty list of distortion "
                         f"categories from {list(DISTORTIONS)}")
    if int(s.embedded_n_images) < 10:
        raise ValueError(f"scoring.embedded_n_images = {s.embedded_n_images}: expected at least 10 pictures "
                         "(every split needs some)")
    if int(s.embedded_image_size) < 56:
        raise ValueError(f"scoring.embedded_image_size = {s.embedded_image_size}: expected at least 56 px")
    model = str(s.embedded_mos)
    if model not in EMBEDDED_MOS_MODELS:
        raise ValueError(f"scoring.embedded_mos = {model!r}: expected one of {', '.join(EMBEDDED_MOS_MODELS)}")
    settings = {"n_images": int(s.embedded_n_images), "image_size": int(s.embedded_image_size),
                "categories": cats, "seed": int(s.seed), "mos_map": SYNTHETIC_MOS,
                "split_shares": [list(x) for x in _SPLIT_SHARES], "version": _BUILD_VERSION,
                "world": catalogue_digest()}
    if model != "severity":  # absent for the default, so that sets built before the key existed stay current
        from refine_iqa_lib.standin.fidelity import FIDELITY_MOS

        settings.update(embedded_mos=model, mos_map=FIDELITY_MOS)
    return settings


def _fingerprint(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def embedded_set_dir(cfg) -> Path:
    """Where the embedded set of ``cfg`` lives: ``<work_dir>/scoring/embedded_koniq``."""
    return cfg.work_dir / "scoring" / "embedded_koniq"


def _is_current(root: Path, fp: str) -> bool:
    stamp = root / _STAMP
    try:
        return stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fp
    except (OSError, json.JSONDecodeError):
        return False


def build_embedded_scoring_set(cfg, force: bool = False) -> Path:
    """Build (or reuse) the embedded scoring set for ``cfg`` and return its folder.

    Reads ``cfg.scoring.embedded_n_images``, ``embedded_image_size``, ``embedded_categories``,
    ``embedded_mos`` and ``seed`` (``embedded_mos`` enters the fingerprint only when it is not the
    default ``severity``, so sets built before the key existed stay current). See the module
    docstring for what is written. The folder is built in a temporary sibling and renamed into
    place (:func:`refine_iqa_lib.io.atomic_dir`).
    """
    settings = _settings(cfg)
    fp = _fingerprint(settings)
    root = embedded_set_dir(cfg)
    if not force and _is_current(root, fp):
        return root
    with build_lock(root):  # ranks of a distributed job may all ask for it at once
        if force or not _is_current(root, fp):
            _write_embedded_set(root, settings, fp)
    return root


def _write_embedded_set(root: Path, settings: dict, fp: str) -> None:
    n = settings["n_images"]
    order = np.random.default_rng([settings["seed"], 10**6]).permutation(n)
    split = np.empty(n, dtype=object)
    start = 0
    for k, (name, share) in enumerate(_SPLIT_SHARES):
        stop = n if k == len(_SPLIT_SHARES) - 1 else start + int(round(share * n))
        split[order[start:stop]] = name
        start = stop

    pools = photo_splits()
    model = settings.get("embedded_mos", "severity")
    with atomic_dir(root) as tmp:
        img_dir = tmp / "1024x768"
        img_dir.mkdir()
        scores, meta = [], []
        for i in range(n):
            img, info = _picture(i, settings["seed"], settings["image_size"], settings["categories"], pools[split[i]],
                                 model)
            name = f"{i:05d}.png"
            (img_dir / name).write_bytes(_png_bytes(img))  # inside the temp folder: atomic as a whole
            raw = round(koniq_raw_from_mos(info["mos"]), 6)
            counts, sd = _votes(raw)
            scores.append({"image_name": name, **{f"c{k + 1}": c for k, c in enumerate(counts)},
                           "c_total": _VOTES, "MOS": raw, "SD": round(sd, 6),
                           "MOS_zscore": round(25.0 * (raw - 1.0), 6)})
            row = {"image_name": name, "set": split[i], "source": info["source"], "kind": info["kind"],
                   "category": info["category"], "severity": info["severity"],
                   "mos": round(info["mos"], 6), "width": info["width"], "height": info["height"]}
            if "features" in info:  # which model made the MOS, and what it measured
                row.update(mos_model=model, **{k: round(v, 6) for k, v in info["features"].items()})
            meta.append(row)
        table = pd.DataFrame(scores)
        write_text(tmp / "koniq10k_scores_and_distributions.csv", table.to_csv(index=False))
        write_text(tmp / "koniq10k_distributions_sets.csv", table.assign(set=split).to_csv(index=False))
        write_text(tmp / "embedded_metadata.csv", pd.DataFrame(meta).to_csv(index=False))
        write_text(tmp / "README.txt", _readme(settings))
        counts = pd.Series(split).value_counts().to_dict()
        files = {s: [img_dir / m["image_name"] for m in meta if m["set"] == s] for s in ("training", "test")}
        audit = audit_splits(files["training"], files["test"], names=("training", "test"))
        write_json(tmp / _STAMP, {"fingerprint": fp, "settings": settings, "n_images": n,
                                  "splits": {k: int(v) for k, v in counts.items()}, "photos": pools,
                                  "audit": {k: v for k, v in audit.to_dict().items() if k != "shared"},
                                  "note": _NOTES[model]})
        audit.require_disjoint()


_NOTES = {"severity": "synthetic MOS from a fixed severity map; not human data",
          "fidelity": "synthetic MOS from a full-reference perceptual model (refine_iqa_lib.data.fidelity); "
                      "not human data"}


def _readme(settings: dict) -> str:
    m = settings["mos_map"]
    if settings.get("embedded_mos", "severity") == "severity":
        score = (f"Training-scale score: mos = clip({m['top']} - {m['slope']}*s + N(0, {m['noise_sd']}^2),"
                 f" {m['low']}, {m['high']}).\n")
    else:
        w = m["weights"]
        score = ("Training-scale score from a full-reference perceptual model of the picture against its pristine\n"
                 f"crop (refine_iqa_lib.data.fidelity): mos = clip({m['top']}*exp(-D^{m['slope']:g}) + "
                 f"N(0, {m['noise_sd']}^2), {m['low']}, {m['high']}),\n"
                 f"D = gain[family] * ({w['struct']:g}*(1 - SSIM two-scale) + {w['edge']:g}*GMSD + "
                 f"{w['energy']:g}*max(0, (30 - PSNR)/10) + {w['exposure']:g}*|mean-luma shift|\n"
                 f"    + {w['colour']:g}*min(2, |ln colourfulness ratio|) + {w['contrast']:g}*|ln contrast ratio|);"
                 f" gains {({c: m['gains'][c] for c in settings['categories']})}.\n"
                 "The features and D of every picture are columns of embedded_metadata.csv (mos_model = fidelity).\n")
    return (
        "Embedded scoring set (refine-iqa): a synthetic stand-in for KonIQ-10k in KonIQ's file layout.\n"
        "NOT HUMAN DATA. Pictures are crops / composites of the photographs shipped with scikit-image and\n"
        f"scikit-learn, with one whole-image distortion from {settings['categories']} at severity s in 1-5\n"
        f"(s = 0: pristine). {score}"
        "KonIQ columns: MOS = 1 + 0.8*mos (KonIQ's 1-5 scale); c1..c5 are an illustrative discretised normal\n"
        "(100 votes, sd 0.6), not votes; MOS_zscore = 25*(MOS-1). Splits: 70/10/20 % training/validation/test;\n"
        "each split's pictures are cut from its own photographs (test 2, validation 1, training the rest),\n"
        "so no photograph is on both sides (embedded_set.json lists them and the pixel-hash audit).\n"
        "Per-picture source, distortion and severity: embedded_metadata.csv.\n"
    )
