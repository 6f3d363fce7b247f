"""The embedded Q-Bench stand-in: synthetic LLVisionQA-style questions in Q-Bench A1's own format.

Q-Bench A1 (LLVisionQA) is not installable, so the ``smoke`` and ``tiny`` profiles
(``eval.qbench_root: embedded``) answer this set instead. **It is synthetic**: the questions are
generated from the Refine-Perception *test* split (never the training split) and their answers
come from what the build recorded (distortion, severity, object box) or from simple pixel
statistics of the image shown. Its numbers measure the same kinds of skills as Q-Bench, on our
own pictures; they are not Q-Bench numbers.

Format (what :func:`refine_iqa_lib.data.iqa.load_qbench` reads)
--------------------------------------------------------------------
``<work_dir>/qbench/llvisionqa_dev.json``: a JSON list of records ``{img_path, question,
candidates (2-4 texts), correct_ans (text), type, concern}`` with ``type`` 0 yes/no, 1 what,
2 how and ``concern`` 0 technical, 1 other, 2 in-context technical, 3 in-context other; images
under ``images/`` (``img_path`` is relative to it). ``README.txt`` says the set is synthetic;
``qbench_set.json`` is the stamp (settings fingerprint, counts).

Questions (each test image gets one question per concern)
---------------------------------------------------------
=========================  ==================================================================
concern                    questions (yes/no, what, how)
=========================  ==================================================================
technical (0)              "Is there <distortion> in this image?" (asked about the applied
                           distortion or another one, half and half); "Which distortion is
                           the most noticeable in this image?"; "How severe is the most
                           noticeable distortion in this image?"
in-context technical (2)   "Is the <object> region distorted?" (the distorted object, or an
                           object whose box barely overlaps the distorted one); "What
                           distortion affects the <object>?"; "How severe is the distortion
                           on the <object>?"
other (1)                  exposure / colour attributes of the whole image: "Is this image
                           bright overall?"; "What is the dominant colour of this image?";
                           "How bright is this image overall?"
in-context other (3)       the same attributes of a named object's box: "Is the <object>
                           brighter than the rest of the image?", "What is the dominant
                           colour of the <object>?", "How bright is the <object>?"
=========================  ==================================================================

The question type rotates with the image index (image ``i`` starts at type ``(i + concern) mod
3``), so every type appears for every concern. Answers that rest on pixel statistics are only
asked when they are clear-cut: a brightness level more than :data:`BRIGHTNESS_MARGIN` away from
the level boundaries (mean luma < 1/3 dark, > 2/3 bright), a dominant colour whose pixel share
beats the next colour by :data:`COLOUR_MARGIN`, a box-vs-rest luma difference above
:data:`CONTRAST_MARGIN`; otherwise the next type is tried, and a concern with no clear-cut
question is skipped for that image (counted in the stamp). Severity names are the paper's
(``slight`` ... ``very severe``); for two-distortion images the first distortion is "the most
noticeable" one and no applied distortion is ever a wrong option.

Deterministic: everything depends on ``(perception.seed, image index)`` through
``numpy.random.default_rng`` and on the test split's content; the folder is written to a
temporary sibling and renamed into place, and a fingerprint stamp makes later calls reuse it.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.data.distortions import luma
from refine_iqa_lib.io import atomic_dir, open_image, write_bytes, write_json, write_text

__all__ = [
    "DISTORTION_PHRASES", "COLOURS", "BRIGHTNESS_LEVELS", "qbench_set_dir", "build_embedded_qbench",
    "questions_for_image", "colour_shares", "brightness",
]

_BUILD_VERSION = "1"
_STAMP = "qbench_set.json"
QUESTIONS_FILE = "llvisionqa_dev.json"

#: Distortion category -> the words a question uses for it.
DISTORTION_PHRASES = {
    "blur": "blur", "noise": "noise", "compression": "compression artifacts", "overexposure": "overexposure",
    "underexposure": "underexposure", "high_contrast": "excessive contrast", "low_contrast": "low contrast",
    "oversaturate": "oversaturated colours", "desaturate": "desaturated colours",
    "oversharpen": "oversharpening", "pixelate": "pixelation", "quantization": "colour quantization",
}
#: Colour names of the "dominant colour" questions (hue ranges in degrees, or achromatic).
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "gray", "black")
_HUES = (("red", 0, 15), ("orange", 15, 45), ("yellow", 45, 70), ("green", 70, 170), ("blue", 170, 260),
         ("purple", 260, 345), ("red", 345, 361))
BRIGHTNESS_LEVELS = ("dark", "medium", "bright")
BRIGHTNESS_MARGIN = 0.04   # distance of the mean luma from the 1/3 and 2/3 boundaries
COLOUR_MARGIN = 0.10       # share of the top colour minus the share of the second
CONTRAST_MARGIN = 0.08     # |luma(box) - luma(rest)| for the "brighter than the rest" question
OVERLAP_MAX = 0.1          # largest share of another object's box inside the distorted box
YES_NO = ["Yes", "No"]
SEVERITY_NAMES = ("slight", "just noticeable", "relatively obvious", "severe", "very severe")


# --------------------------------------------------------------------------- pixel attributes


def brightness(img: np.ndarray) -> tuple[str | None, float]:
    """``(level, mean luma)``; the level is None when the mean is within the margin of a boundary.

    >>> brightness(np.full((4, 4, 3), 20, np.uint8))[0], brightness(np.full((4, 4, 3), 85, np.uint8))[0]
    ('dark', None)
    """
    m = float(luma(img).mean())
    if min(abs(m - 1 / 3), abs(m - 2 / 3)) < BRIGHTNESS_MARGIN:
        return None, m
    return BRIGHTNESS_LEVELS[0 if m < 1 / 3 else 1 if m < 2 / 3 else 2], m


def colour_shares(img: np.ndarray) -> dict[str, float]:
    """Share of pixels per colour name (HSV: low value = black, low saturation = white/gray,
    otherwise the hue range).

    >>> s = colour_shares(np.tile(np.array([[[200, 30, 30]]], np.uint8), (4, 4, 1)))
    >>> max(s, key=s.get), s["red"]
    ('red', 1.0)
    """
    hsv = np.asarray(Image.fromarray(np.ascontiguousarray(img)).convert("HSV"), dtype=np.float64)
    h, s, v = hsv[..., 0] * 360.0 / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    names = np.full(h.shape, "", dtype=object)
    dark, grey = v < 0.2, (v >= 0.2) & (s < 0.2)
    names[dark] = "black"
    names[grey & (v > 0.8)] = "white"
    names[grey & (v <= 0.8)] = "gray"
    chroma = ~(dark | grey)
    for name, lo, hi in _HUES:
        names[chroma & (h >= lo) & (h < hi)] = name
    total = names.size
    return {c: float((names == c).sum()) / total for c in COLOURS}


def _dominant(img: np.ndarray) -> str | None:
    shares = colour_shares(img)
    ranked = sorted(COLOURS, key=lambda c: (-shares[c], COLOURS.index(c)))
    return ranked[0] if shares[ranked[0]] - shares[ranked[1]] >= COLOUR_MARGIN else None


def _crop(img: np.ndarray, box) -> np.ndarray:
    x1, y1, x2, y2 = (int(v) for v in box)
    return img[y1:y2, x1:x2]


def _overlap(inner, outer) -> float:
    """Share of box ``inner`` lying inside box ``outer``."""
    iw = min(inner[2], outer[2]) - max(inner[0], outer[0])
    ih = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = (inner[2] - inner[0]) * (inner[3] - inner[1])
    return 0.0 if iw <= 0 or ih <= 0 or area <= 0 else iw * ih / area


# --------------------------------------------------------------------------- questions


def _choices(correct: str, pool: list[str], k: int, rng: np.random.Generator, keep_order: bool = False) -> list[str]:
    others = [p for p in pool if p != correct]
    pick = [others[i] for i in sorted(rng.choice(len(others), size=min(k - 1, len(others)), replace=False))]
    cands = [correct] + pick
    if keep_order:
        return [p for p in pool if p in cands]
    return [cands[i] for i in rng.permutation(len(cands))]


def _cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def _q(question: str, candidates: list[str], answer: str, qtype: int, concern: int) -> dict:
    assert answer in candidates and 2 <= len(candidates) <= 4
    return {"question": question, "candidates": candidates, "correct_ans": answer, "type": qtype, "concern": concern}


def _is_there(category: str) -> str:
    """``Is there noise in this image?`` / ``Are there compression artifacts in this image?``"""
    phrase = DISTORTION_PHRASES[category]
    return f"{'Are' if phrase.endswith('s') else 'Is'} there {phrase} in this image?"


def _technical(row: dict, img: np.ndarray, qtype: int, rng, in_context: bool) -> dict | None:
    cats = [str(c) for c in row["categories"]]
    main, sev = cats[0], int(row["severity"])
    concern = 2 if in_context else 0
    obj = row["object"]
    if qtype == 0:
        if in_context:
            ok = [o for o in row.get("objects") or []
                  if o["name"] != obj and _overlap(o["bbox"], row["bbox"]) <= OVERLAP_MAX]
            if ok and rng.random() < 0.5:
                other = ok[int(rng.integers(len(ok)))]["name"]
                return _q(f"Is the {other} region distorted?", list(YES_NO), "No", 0, concern)
            return _q(f"Is the {obj} region distorted?", list(YES_NO), "Yes", 0, concern)
        if rng.random() < 0.5:
            return _q(_is_there(main), list(YES_NO), "Yes", 0, concern)
        others = [c for c in DISTORTION_PHRASES if c not in cats]
        return _q(_is_there(others[int(rng.integers(len(others)))]), list(YES_NO), "No", 0, concern)
    if qtype == 1:
        pool = [_cap(DISTORTION_PHRASES[c]) for c in DISTORTION_PHRASES if c == main or c not in cats]
        question = (f"What distortion affects the {obj}?" if in_context
                    else "Which distortion is the most noticeable in this image?")
        return _q(question, _choices(_cap(DISTORTION_PHRASES[main]), pool, 4, rng), _cap(DISTORTION_PHRASES[main]),
                  1, concern)
    pool = [_cap(s) for s in SEVERITY_NAMES]
    question = (f"How severe is the distortion on the {obj}?" if in_context
                else "How severe is the most noticeable distortion in this image?")
    correct = _cap(SEVERITY_NAMES[sev - 1])
    return _q(question, _choices(correct, pool, 3, rng, keep_order=True), correct, 2, concern)


def _other(row: dict, img: np.ndarray, qtype: int, rng, in_context: bool) -> dict | None:
    concern = 3 if in_context else 1
    obj = row["object"]
    region = _crop(img, row["bbox"]) if in_context else img
    where = f"the {obj}" if in_context else "this image"
    if qtype == 0:
        if in_context:
            mask = np.ones(img.shape[:2], bool)
            x1, y1, x2, y2 = (int(v) for v in row["bbox"])
            mask[y1:y2, x1:x2] = False
            if not mask.any():
                return None
            diff = float(luma(region).mean() - luma(img)[mask].mean())
            if abs(diff) < CONTRAST_MARGIN:
                return None
            return _q(f"Is the {obj} brighter than the rest of the image?", list(YES_NO),
                      "Yes" if diff > 0 else "No", 0, concern)
        level, _ = brightness(img)
        if level is None or level == "medium":
            return None
        return _q("Is this image bright overall?", list(YES_NO), "Yes" if level == "bright" else "No", 0, concern)
    if qtype == 1:
        colour = _dominant(region)
        if colour is None:
            return None
        pool = [_cap(c) for c in COLOURS]
        return _q(f"What is the dominant colour of {where}?", _choices(_cap(colour), pool, 4, rng), _cap(colour),
                  1, concern)
    level, _ = brightness(region)
    if level is None:
        return None
    pool = [_cap(b) for b in BRIGHTNESS_LEVELS]
    question = f"How bright is the {obj}?" if in_context else "How bright is this image overall?"
    return _q(question, pool, _cap(level), 2, concern)


_CONCERNS: dict[int, Callable] = {
    0: lambda row, img, t, rng: _technical(row, img, t, rng, False),
    1: lambda row, img, t, rng: _other(row, img, t, rng, False),
    2: lambda row, img, t, rng: _technical(row, img, t, rng, True),
    3: lambda row, img, t, rng: _other(row, img, t, rng, True),
}


def questions_for_image(row: dict, img: np.ndarray, index: int, seed: int = 0) -> list[dict]:
    """The questions of one test image (``row``: an ``images_test.jsonl`` row, ``img`` its pixels).

    One per concern when a clear-cut one exists; types rotate with ``index`` (module docstring).
    """
    out = []
    for concern in (0, 1, 2, 3):
        rng = np.random.default_rng([int(seed), 0x0B, int(index), concern])
        for k in range(3):
            q = _CONCERNS[concern](row, img, (index + concern + k) % 3, rng)
            if q is not None:
                out.append(q)
                break
    return out


# --------------------------------------------------------------------------- build


def qbench_set_dir(cfg) -> Path:
    """``<work_dir>/qbench``."""
    return cfg.work_dir / "qbench"


def _perception_test(cfg) -> tuple[pd.DataFrame, Path]:
    from refine_iqa_lib.data.stage1 import load_perception_images

    folder = cfg.work_dir / "perception"
    if not (folder / "images_test.jsonl").is_file():
        from refine_iqa_lib.data.build import build_perception_dataset

        build_perception_dataset(cfg)
    return load_perception_images(folder, "test"), folder / "images_test.jsonl"


def _fingerprint(cfg, test_file: Path) -> str:
    blob = json.dumps({"version": _BUILD_VERSION, "seed": int(cfg.perception.seed),
                       "test": hashlib.sha256(test_file.read_bytes()).hexdigest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def _readme(n_images: int, counts: dict) -> str:
    return (
        "SYNTHETIC Q-Bench stand-in (refine_iqa_lib.data.qbench_set). Not Q-Bench.\n\n"
        "Multiple-choice questions in Q-Bench A1's llvisionqa_dev.json format, generated from the\n"
        f"Refine-Perception test split ({n_images} images): distortion questions (technical and\n"
        "in-context technical) are answered by what the dataset build applied; exposure and colour\n"
        "questions (other and in-context other) by pixel statistics of the image shown, asked only\n"
        "when clear-cut. See the module docstring for the exact rules.\n\n"
        f"Questions per type: {counts['type']}\nQuestions per concern: {counts['concern']}\n"
    )


def build_embedded_qbench(cfg, force: bool = False) -> Path:
    """Build (or reuse) the synthetic Q-Bench folder for ``cfg``; returns it.

    Builds the perception dataset first if its test split is missing.
    """
    images, test_file = _perception_test(cfg)
    out_dir = qbench_set_dir(cfg)
    fp = _fingerprint(cfg, test_file)
    stamp = out_dir / _STAMP
    if not force and stamp.is_file() and (out_dir / QUESTIONS_FILE).is_file():
        try:
            if json.loads(stamp.read_text()).get("fingerprint") == fp:
                return out_dir
        except json.JSONDecodeError:
            pass
    if images.empty:
        raise ValueError(f"{test_file}: the perception test split is empty; cannot generate Q-Bench questions "
                         "(raise perception.test_size)")
    with atomic_dir(out_dir) as tmp:
        records, skipped = [], 0
        rows = images.sort_values("id", kind="stable").to_dict("records")
        for i, row in enumerate(rows):
            src = Path(row["image"])
            if not src.is_file():
                raise FileNotFoundError(f"{src}: image of perception test record {row['id']!r} not found")
            img = np.asarray(open_image(src))
            qs = questions_for_image(row, img, i, cfg.perception.seed)
            skipped += 4 - len(qs)
            name = f"{row['id']}{src.suffix or '.png'}"
            write_bytes(tmp / "images" / name, src.read_bytes())
            records += [{"img_path": name, **q} for q in qs]
        counts = {"type": {k: sum(r["type"] == v for r in records) for k, v in (("yes_no", 0), ("what", 1), ("how", 2))},
                  "concern": {k: sum(r["concern"] == v for r in records) for k, v in
                              (("technical", 0), ("other", 1), ("incontext_technical", 2), ("incontext_other", 3))}}
        write_text(tmp / QUESTIONS_FILE, json.dumps(records, indent=1, ensure_ascii=False) + "\n")
        write_text(tmp / "README.txt", _readme(len(rows), counts))
        write_json(tmp / _STAMP, {"fingerprint": fp, "synthetic": True, "n_images": len(rows),
                                  "n_questions": len(records), "skipped_concerns": skipped, "counts": counts,
                                  "source": str(test_file)})
    return out_dir
