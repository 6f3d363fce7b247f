"""The stand-in's pre-training data: what a general vision-language model knows before Refine-IQA.

The paper starts from Qwen2.5-VL-7B-Instruct, which was pre-trained and instruction-tuned on general
pictures and tasks before the authors touched it. The offline stand-in starts random; this module
writes the analogue of that pre-training: a seeded mixture of prompt / completion samples on
**training-side pictures** and on **tasks other than the ones it is tested on**.

Pictures
--------
Every sample draws its own picture from the world's ``train`` split
(:mod:`refine_iqa_lib.standin.world`): a composite scene (:func:`refine_iqa_lib.standin.scenes.
compose_scene`: a window of a training photograph with 2-4 training cut-outs and their names and
boxes) or a plain window of a training photograph (share ``1 - pretrain.composite_share``; the
object tasks always use composites), fitted to ``pretrain.image_size``. No validation or test
photograph or cut-out is ever drawn; :func:`write_pretrain_dataset` checks that again by pixel content.

Tasks (:data:`TASKS`; shares ``pretrain.task_shares``, allocated exactly by largest remainder)
-------------------------------------------------------------------------------------------------
* ``name_object`` - *what a detector-trained model knows*: "Which object is inside the box [x1, y1,
  x2, y2]?", ``pretrain.n_options`` names in the letter layout: the object's name and distractors
  from the training names (never another name of the picture).
* ``object_box`` - *grounding of named objects*: "Give the bounding box of the <name>." ->
  ``[x1, y1, x2, y2]`` in the shown picture's pixels. Nothing is distorted in this task.
* ``distortion_type`` - *the common distortions*: one family of
  :data:`refine_iqa_lib.data.distortions.DISTORTIONS` at a severity from 1-5, applied to the whole
  picture or (share ``pretrain.region_share``) to a random rectangle covering 25-70 % of it -
  never an object's box - or nothing (share ``pretrain.pristine_share``); "Which distortion
  affects this picture?" over all 12 family names and "none", shuffled.
* ``distortion_severity`` - the same kind of picture, always distorted: "How strong is the
  distortion in this picture?" over the five severity words.
* ``rate_attribute`` - *a number in the scoring layout*: "How bright / colourful / sharp /
  contrasty / free of distortion is this picture?", answered ``<answer>X.X</answer>`` with a target
  computed from :func:`refine_iqa_lib.standin.perceive.pixel_stats` of the shown picture, or for
  ``undistorted`` from the severity of the whole-picture distortion it was given
  (:func:`attribute_target`; 60 % of the pictures are distorted so that targets spread).

Every task is in think mode with probability ``pretrain.think_share``; the think text is
:func:`refine_iqa_lib.standin.perceive.describe` of the very picture shown (pixels only), never a label.

What it never contains: a Stage-1 sample, question or answer layout ("degraded region", the
distorted object, its box), a distortion confined to an object's box, a MOS of any scoring set,
or a picture of a validation or test split.

Files (``<work_dir>/pretrain/``)
--------------------------------
``images/<sample id>.png`` (the picture shown), ``samples.jsonl`` (``id``, ``task``, ``mode``,
``origin`` (``scene`` / ``photo`` and its ids), ``images``, ``prompt``, ``completion``, ``answer``,
``answer_letter``, ``options``, ``think_seed``, plus per task ``object`` / ``box`` / ``category`` /
``severity`` / ``region`` / ``attribute`` / ``target``), ``pretrain_set.json`` (fingerprint, counts,
audits, build seconds). An unchanged configuration and world reuse the folder.
"""
from __future__ import annotations

import hashlib
import io
import json
import logging
import string
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data import stage1
from refine_iqa_lib.data.audit import SplitOverlapError, audit_splits
from refine_iqa_lib.data.sources import fit_size
from refine_iqa_lib.io import atomic_dir, build_lock, read_json, write_bytes, write_json, write_jsonl
from refine_iqa_lib.prompts import SCORE_PLACEHOLDER, answer_text, check_mode, completion_text, format_mos_text, instruction
from refine_iqa_lib.standin import world
from refine_iqa_lib.standin.perceive import describe, pixel_stats, words
from refine_iqa_lib.standin.scenes import compose_scene, photo_window

__all__ = ["TASKS", "ATTRIBUTES", "DEFAULT_ATTRIBUTES", "NONE_OPTION", "PretrainSet", "attribute_target",
           "question_texts", "draw_picture", "distort_picture", "build_pretrain_samples", "write_pretrain_dataset",
           "pretrain_dir", "pretrain_facts", "heldout_images"]

log = logging.getLogger(__name__)

TASKS = ("name_object", "object_name", "object_box", "distortion_type", "distortion_severity", "distortion_box",
         "rate_attribute")
#: The distortion_type option of an undistorted picture.
NONE_OPTION = "none"
#: attribute -> (adjective in the question, statistic of pixel_stats, monotone map to [0, 5)).
#: ``bright``: 5 x mean luma (0..1); ``colourful``: 5 c / (c + 50) for the Hasler-Suesstrunk
#: colourfulness c (0..~180); ``sharp``: 5 x sharpness (0..1); ``contrasty``: 10 x RMS contrast
#: (0..0.5); ``undistorted``: not a pixel statistic but the severity of the whole-picture distortion
#: the picture was given (0 when pristine), 4.9 - 0.98 x severity - a family-blind rating of
#: distortion strength, never a MOS. Written with format_mos_text (clipped to [0, 4.9]).
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "bright": ("bright", "mean_luma"),
    "colourful": ("colourful", "colourfulness"),
    "sharp": ("sharp", "sharpness"),
    "contrasty": ("contrasty", "contrast"),
    "undistorted": ("free of distortion", "severity"),
}
#: The attributes rated by default (``pretrain.attributes``).
DEFAULT_ATTRIBUTES = tuple(ATTRIBUTES)
_MAPS = {"mean_luma": lambda v: 5.0 * v, "colourfulness": lambda v: 5.0 * v / (v + 50.0),
         "sharpness": lambda v: 5.0 * v, "contrast": lambda v: 10.0 * v, "severity": lambda v: 4.9 - 0.98 * v}
_BUILD_VERSION = "3"
_STAMP = "pretrain_set.json"
_RATE_DISTORT_SHARE = 0.6
#: A distortion confined to a region covers this share of the picture (uniform).
REGION_AREA = (0.1, 0.5)

#: The question texts of the tasks (``{box}``: ``[x1, y1, x2, y2]``; ``{name}``: an object name).
WHICH_QUESTION = "Which object is inside the box {box}?"
NAME_QUESTION = "What is inside the box {box}? Answer with its name."
NAME_LAYOUT = ("name", "where name is the object's name")
BOX_QUESTION = "Give the bounding box of the {name} as [x1, y1, x2, y2] in pixels."
TYPE_QUESTION = "Which distortion affects this picture?"
SEVERITY_QUESTION = "How strong is the distortion in this picture?"
WHERE_QUESTION = "Where is the distortion in this picture? Give its bounding box as [x1, y1, x2, y2] in pixels."


#: attribute -> (what is rated, the low end's word, the high end's word) of its second wording.
_RATED = {"bright": ("brightness", "very dark", "very bright"), "colourful": ("colourfulness", "grey", "vivid"),
          "sharp": ("sharpness", "very blurry", "very sharp"), "contrasty": ("contrast", "flat", "very contrasty"),
          "undistorted": ("freedom from distortion", "heavily distorted", "undistorted")}


def _rate_question(attribute: str, wording: int = 0) -> str:
    """The rating question of ``attribute`` in one of two wordings (drawn per sample)."""
    if wording:
        what, low, high = _RATED[attribute]
        return f"How would you rate the {what} of this picture? Give a number from 0.0 ({low}) to 4.9 ({high})."
    return (f"How {ATTRIBUTES[attribute][0]} is this picture? Give a number from 0.0 (not at all) "
            "to 4.9 (extremely).")


def question_texts() -> list[str]:
    """Every pre-training question with its layouts, for the stand-in's tokenizer corpus
    (``TINY_ARCH["tokenizer_corpus"] = "pretrain"``): fixed templates, a sample box and name.

    >>> any(t.startswith("How strong is the distortion") for t in question_texts())
    True
    """
    from refine_iqa_lib.prompts import MODES, VARIANTS

    out = []
    families = [stage1.category_label(c) for c in D.DISTORTIONS] + [NONE_OPTION]
    for mode in MODES:
        out.append(f"{NAME_QUESTION.format(box='[12, 34, 56, 78]')} {instruction(mode, *NAME_LAYOUT)}")
        out.append(stage1.render_prompt(WHICH_QUESTION.format(box="[12, 34, 56, 78]"), ["cat", "cup"], mode))
        out.append(stage1.render_prompt(BOX_QUESTION.format(name="cat"), [], mode))
        out.append(stage1.render_prompt(TYPE_QUESTION, families, mode))
        out.append(stage1.render_prompt(SEVERITY_QUESTION, list(D.SEVERITIES), mode))
        out.append(stage1.render_prompt(WHERE_QUESTION, [], mode))
        for v in VARIANTS:
            example, note = SCORE_PLACEHOLDER[v]
            out += [f"{_rate_question(a, w)} {instruction(mode, example, note)}" for a in ATTRIBUTES for w in (0, 1)]
    return out


def attribute_target(attribute: str, stats: dict[str, float], severity: int = 0) -> float:
    """The ``rate_attribute`` target of a picture from its :func:`pixel_stats` (see :data:`ATTRIBUTES`);
    ``undistorted`` reads the whole-picture distortion's ``severity`` (0 = pristine) instead.

    >>> attribute_target("bright", {"mean_luma": 0.5}), attribute_target("colourful", {"colourfulness": 50.0})
    (2.5, 2.5)
    >>> round(attribute_target("undistorted", {}, severity=0), 2), round(attribute_target("undistorted", {}, severity=5), 2)
    (4.9, 0.0)
    """
    if attribute not in ATTRIBUTES:
        raise ValueError(f"unknown attribute {attribute!r}; expected one of {list(ATTRIBUTES)}")
    stat = ATTRIBUTES[attribute][1]
    value = severity if stat == "severity" else stats[stat]
    return float(_MAPS[stat](float(value)))


# --------------------------------------------------------------------------- pictures
def draw_picture(rng: np.random.Generator, size: int, max_pixels: int | None, with_objects: bool,
                 composite_share: float) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]], dict]:
    """One training-side picture: ``(pixels, [(name, box), ...], origin)`` - a composite scene of the
    world's ``train`` split (always when ``with_objects``; else with probability ``composite_share``)
    or a window of a training photograph (no objects)."""
    if with_objects or float(rng.random()) < composite_share:
        img, objects, meta = compose_scene("train", rng, size, max_pixels)
        return img, [(o.name, tuple(o.bbox)) for o in objects], {
            "kind": "scene", "background": meta["background"], "objects": [p["object"] for p in meta["pasted"]]}
    photos = world.photo_ids("train")
    pid = photos[int(rng.integers(len(photos)))]
    aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5))))
    W, H = fit_size(max(1, round(1000 * aspect)), 1000, size, max_pixels)
    img, _ = photo_window(world.load_photo(pid), (W, H), rng, low=0.3)
    return img, [], {"kind": "photo", "background": pid, "objects": []}


def distort_picture(img: np.ndarray, rng: np.random.Generator, region_share: float
                    ) -> tuple[np.ndarray, str, int, list[int] | None]:
    """One family at a severity 1-5 on the whole picture or, with probability ``region_share``, on
    a random rectangle of :data:`REGION_AREA` of it: ``(pixels, family, severity, region or None)``."""
    category = D.DISTORTIONS[int(rng.integers(len(D.DISTORTIONS)))]
    severity = int(rng.integers(1, 6))
    if float(rng.random()) >= region_share:
        return D.distort(img, category, severity, rng=rng), category, severity, None
    H, W = img.shape[:2]
    area = float(rng.uniform(*REGION_AREA)) * W * H
    aspect = float(np.exp(rng.uniform(np.log(0.5), np.log(2.0))))
    w = int(min(W, max(D.MIN_BOX_SIDE, round(np.sqrt(area * aspect)))))
    h = int(min(H, max(D.MIN_BOX_SIDE, round(area / w))))
    x0, y0 = int(rng.integers(0, W - w + 1)), int(rng.integers(0, H - h + 1))
    box = [x0, y0, x0 + w, y0 + h]
    return D.distort(img, category, severity, bbox=box, rng=rng), category, severity, box


# --------------------------------------------------------------------------- samples
@dataclass
class PretrainSet:
    """Samples (dicts, image paths relative to the dataset folder) and the pixels to write."""

    samples: list[dict]
    images: dict[str, np.ndarray] = field(repr=False)


def _allocate(n: int, shares: dict[str, float]) -> dict[str, int]:
    unknown = sorted(set(shares) - set(TASKS))
    if unknown:
        raise ValueError(f"pretrain.task_shares: unknown task(s) {unknown}; expected some of {list(TASKS)}")
    total = float(sum(shares.values()))
    if total <= 0:
        raise ValueError(f"pretrain.task_shares {shares}: expected shares >= 0 with a positive sum")
    exact = {t: n * float(shares.get(t, 0)) / total for t in TASKS}
    counts = {t: int(np.floor(v)) for t, v in exact.items()}
    for t in sorted(TASKS, key=lambda t: -(exact[t] - counts[t]))[: n - sum(counts.values())]:
        counts[t] += 1
    return counts


def _letter_options(answer: str, pool: Sequence[str], order: str, rng: np.random.Generator) -> tuple[list[str], str]:
    """Every entry of ``pool`` as options, listed in the pool's order (``order="fixed"``, as
    Stage-1's ``perception.option_order``) or shuffled; returns ``(options, letter of answer)``."""
    options = list(dict.fromkeys(pool))
    if order != "fixed":
        options = [options[i] for i in rng.permutation(len(options))]
    return options, string.ascii_uppercase[options.index(answer)]


def _box_text(b: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(x)) for x in b) + "]"


def _sample(i: int, task: str, seed: int, settings: dict) -> tuple[dict, np.ndarray]:
    """Sample ``i`` (its task fixed by the allocation), everything drawn from ``default_rng([seed, 0x9E, i])``."""
    rng = np.random.default_rng([seed, 0x9E, i])
    mode = "think" if float(rng.random()) < settings["think_share"] else "no_think"
    sid = f"pt{i:06d}"
    objects_needed = task in ("name_object", "object_name", "object_box")
    img, objects, origin = draw_picture(rng, settings["image_size"], settings["max_pixels"], objects_needed,
                                        settings["composite_share"])
    shown = img
    rec: dict[str, Any] = {"id": sid, "task": task, "mode": mode, "origin": origin, "images": [f"images/{sid}.png"],
                           "options": [], "answer_letter": ""}
    if task == "name_object":
        name, box = objects[int(rng.integers(len(objects)))]
        ordered = sorted(objects, key=lambda o: ((o[1][0] + o[1][2]) / 2, (o[1][1] + o[1][3]) / 2, o[0]))
        options, letter = _letter_options(name, [o[0] for o in ordered], settings["option_order"], rng)
        prompt = stage1.render_prompt(WHICH_QUESTION.format(box=_box_text(box)), options, mode)
        rec.update(options=options, answer=name, answer_letter=letter, object=name, box=list(box))
        answer = letter
    elif task == "object_name":
        name, box = objects[int(rng.integers(len(objects)))]
        prompt = f"{NAME_QUESTION.format(box=_box_text(box))} {instruction(mode, *NAME_LAYOUT)}"
        answer = name
        rec.update(answer=name, object=name, box=list(box))
    elif task == "object_box":
        name, box = objects[int(rng.integers(len(objects)))]
        prompt = stage1.render_prompt(BOX_QUESTION.format(name=name), [], mode)
        answer = _box_text(box)
        rec.update(answer=answer, object=name, box=list(box))
    elif task == "distortion_type":
        category, severity, region = NONE_OPTION, 0, None
        if float(rng.random()) >= settings["pristine_share"]:
            shown, category, severity, region = distort_picture(img, rng, settings["region_share"])
        label = NONE_OPTION if category == NONE_OPTION else stage1.category_label(category)
        options, letter = _letter_options(label, [stage1.category_label(c) for c in D.DISTORTIONS] + [NONE_OPTION],
                                          settings["option_order"], rng)
        prompt = stage1.render_prompt(TYPE_QUESTION, options, mode)
        rec.update(options=options, answer=label, answer_letter=letter, category=category, severity=severity,
                   region=region)
        answer = letter
    elif task == "distortion_severity":
        shown, category, severity, region = distort_picture(img, rng, settings["region_share"])
        options, letter = _letter_options(D.SEVERITIES[severity - 1], list(D.SEVERITIES), settings["option_order"], rng)
        prompt = stage1.render_prompt(SEVERITY_QUESTION, options, mode)
        rec.update(options=options, answer=D.SEVERITIES[severity - 1], answer_letter=letter, category=category,
                   severity=severity, region=region)
        answer = letter
    elif task == "distortion_box":
        shown, category, severity, region = distort_picture(img, rng, 1.0)
        prompt = stage1.render_prompt(WHERE_QUESTION, [], mode)
        answer = _box_text(region)
        rec.update(answer=answer, category=category, severity=severity, region=region)
    else:  # rate_attribute
        category, severity = NONE_OPTION, 0
        if float(rng.random()) < _RATE_DISTORT_SHARE:
            shown, category, severity, _ = distort_picture(img, rng, 0.0)
        attribute = settings["attributes"][int(rng.integers(len(settings["attributes"])))]
        target = attribute_target(attribute, pixel_stats(shown), severity)
        example, note = SCORE_PLACEHOLDER[settings["variant"]]
        prompt = f"{_rate_question(attribute, int(rng.integers(2)))} {instruction(mode, example, note)}"
        text = format_mos_text(target, settings["variant"])
        answer = answer_text(text, settings["variant"])
        rec.update(answer=text, attribute=attribute, target=round(target, 6), category=category, severity=severity)
    think_seed = int(rng.integers(2**31))
    think = describe(shown, seed=think_seed) if mode == "think" else ""
    rec.update(prompt=prompt, completion=completion_text(answer, check_mode(mode), think), think_seed=think_seed)
    return rec, shown


def _settings(cfg) -> dict:
    p = cfg.pretrain
    attributes = list(p.attributes)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown or not attributes:
        raise ValueError(f"pretrain.attributes {attributes}: expected a non-empty list of {list(ATTRIBUTES)}")
    return {"image_size": int(p.image_size), "max_pixels": cfg.model.max_pixels, "think_share": float(p.think_share),
            "option_order": cfg.perception.option_order, "pristine_share": float(p.pristine_share),
            "region_share": float(p.region_share), "composite_share": float(p.composite_share),
            "attributes": attributes, "variant": cfg.stage2.variant}


def _chunk(args) -> list[tuple[dict, bytes]]:
    items, seed, settings = args
    return [(rec, _png(img)) for rec, img in (_sample(i, task, seed, settings) for i, task in items)]


def build_pretrain_samples(cfg, n_samples: int | None = None, seed: int | None = None,
                           workers: int = 1) -> PretrainSet:
    """The seeded mixture of pre-training samples (see the module docstring); ``n_samples`` /
    ``seed`` default to ``pretrain.n_samples`` / ``pretrain.seed``. Sample ``i`` is a pure function
    of ``(seed, i)``, its task and the settings, so a build is the same with any number of ``workers``."""
    p = cfg.pretrain
    n = int(p.n_samples if n_samples is None else n_samples)
    seed = int(p.seed if seed is None else seed)
    settings = _settings(cfg)
    counts = _allocate(n, dict(p.task_shares))
    order = np.random.default_rng([seed, 0x9F]).permutation([t for t in TASKS for _ in range(counts[t])])
    items = [(i, str(t)) for i, t in enumerate(order)]
    size = max(1, -(-len(items) // max(1, 4 * workers)))
    chunks = [(items[k:k + size], seed, settings) for k in range(0, len(items), size)]
    if workers > 1 and len(chunks) > 1:
        import multiprocessing

        with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("fork")) as ex:
            done = list(ex.map(_chunk, chunks))
    else:
        done = [_chunk(c) for c in chunks]
    samples, images = [], {}
    for part in done:
        for rec, png in part:
            samples.append(rec)
            images[rec["images"][0]] = png
    return PretrainSet(samples, images)


# --------------------------------------------------------------------------- writing + audit
def pretrain_dir(cfg) -> Path:
    """``<work_dir>/pretrain``."""
    return cfg.work_dir / "pretrain"


def heldout_images(cfg) -> dict[str, list[Path]]:
    """Every held-out collection that is built, by name: ``perception test`` (distorted images and
    references of ``images_test.jsonl``), ``Q-Bench stand-in`` (``<work_dir>/qbench/images``),
    ``scoring test`` and ``scoring validation`` (the embedded set's pictures of those splits).
    Collections that are not built are absent (the stamp lists which were checked)."""
    from refine_iqa_lib.standin.scoring_set import embedded_set_dir

    out: dict[str, list[Path]] = {}
    test_file = cfg.work_dir / "perception" / "images_test.jsonl"
    if test_file.is_file():
        df = stage1.load_perception_images(test_file.parent, "test")
        out["perception test"] = sorted({Path(x) for c in ("image", "reference") if c in df for x in df[c]})
    qb = cfg.work_dir / "qbench" / "images"
    if qb.is_dir():
        out["Q-Bench stand-in"] = sorted(qb.iterdir())
    meta_file = embedded_set_dir(cfg) / "embedded_metadata.csv"
    if meta_file.is_file():
        meta = pd.read_csv(meta_file)
        for split in ("test", "validation"):
            out[f"scoring {split}"] = [meta_file.parent / "1024x768" / m for m in meta.loc[meta["set"] == split,
                                                                                        "image_name"]]
    return out


def _fingerprint(cfg, n: int, seed: int) -> str:
    blob = {"version": _BUILD_VERSION, "pretrain": {k: v for k, v in asdict(cfg.pretrain).items() if k != "workers"},
            "n": n, "seed": seed, "variant": cfg.stage2.variant, "max_pixels": cfg.model.max_pixels,
            "option_order": cfg.perception.option_order,
            "world": world.catalogue_digest()}
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def pretrain_facts(samples: Sequence[dict]) -> dict:
    """Counts per task and mode, picture kinds and think-length summary (words) of a build."""
    df = pd.DataFrame(list(samples))
    think = [len(words(c.split("</think>")[0].removeprefix("<think>"))) for c in
             df.loc[df["mode"] == "think", "completion"]]
    kinds = pd.Series([o["kind"] for o in df["origin"]]).value_counts().sort_index()
    out = {"n_samples": len(df),
           "per_task": {t: int((df["task"] == t).sum()) for t in TASKS},
           "per_mode": {m: int((df["mode"] == m).sum()) for m in ("think", "no_think")},
           "picture_kinds": {str(k): int(v) for k, v in kinds.items()},
           "photographs_used": int(pd.Series([o["background"] for o in df["origin"]]).nunique()),
           "cutouts_used": len({x for o in df["origin"] for x in o["objects"]}),
           "think_words": ({"median": float(np.median(think)), "min": int(min(think)), "max": int(max(think)),
                            "distinct": len(set(think))} if think else None)}
    return out


def write_pretrain_dataset(cfg, out_dir: str | Path | None = None, *, force: bool = False,
                           n_samples: int | None = None, seed: int | None = None) -> Path:
    """Build (or reuse) the pre-training folder (default :func:`pretrain_dir`) and return it.

    Writes the shown pictures (PNG) and ``samples.jsonl`` in a temporary sibling renamed into place
    (:func:`refine_iqa_lib.io.atomic_dir`), after a pixel-content audit of every written picture
    against each collection of :func:`heldout_images`: an overlap raises
    :class:`refine_iqa_lib.data.audit.SplitOverlapError` naming the pre-training picture and the
    held-out file, and nothing is written. The stamp ``pretrain_set.json`` holds the fingerprint,
    the audits (which collections were checked, with their sizes), :func:`pretrain_facts` and the
    build seconds; an unchanged fingerprint reuses the folder. ``pretrain.workers`` processes draw
    the samples (the result does not depend on their number)."""
    t0 = time.perf_counter()
    n = int(cfg.pretrain.n_samples if n_samples is None else n_samples)
    seed = int(cfg.pretrain.seed if seed is None else seed)
    root = Path(out_dir) if out_dir is not None else pretrain_dir(cfg)
    fp = _fingerprint(cfg, n, seed)

    def current() -> bool:
        try:
            return (root / "samples.jsonl").is_file() and read_json(root / _STAMP).get("fingerprint") == fp
        except (FileNotFoundError, ValueError):
            return False

    if not force and current():
        return root
    with build_lock(root):
        if not force and current():
            return root
        built = build_pretrain_samples(cfg, n, seed, workers=int(cfg.pretrain.workers))
        heldout = heldout_images(cfg)
        with atomic_dir(root) as tmp:
            written: dict[str, Path] = {}
            for rel, png in sorted(built.images.items()):
                written[rel] = write_bytes(tmp / rel, png)
            label = {str(path): rel for rel, path in written.items()}
            audits, failures = {}, []
            for name, files in heldout.items():
                rep = audit_splits(list(written.values()), files, names=("pretrain", name), workers=2)
                audits[name] = {"n_pretrain": rep.n[0], "n_heldout": rep.n[1], "n_shared": int(len(rep.overlaps))}
                if not rep.ok:
                    shown = "; ".join(f"{label.get(str(r['pretrain']), r['pretrain'])} = {r[name]}"
                                      for r in rep.overlaps.head(5).to_dict("records"))
                    failures.append(f"{len(rep.overlaps)} with the {name} split ({shown})")
            if failures:
                raise SplitOverlapError("pre-training pictures are shared by pixel content: " + "; ".join(failures)
                                        + "; expected none (the pre-training uses training-side pictures only)")
            write_jsonl(tmp / "samples.jsonl", built.samples)
            facts = pretrain_facts(built.samples)
            facts["build_seconds"] = round(time.perf_counter() - t0, 2)
            write_json(tmp / _STAMP, {"fingerprint": fp, "n_samples": n, "seed": seed, "facts": facts,
                                      "audit": audits, "checked": sorted(heldout),
                                      "not_built": sorted({"perception test", "Q-Bench stand-in", "scoring test",
                                                           "scoring validation"} - set(heldout))})
    log.info("[pretrain] %d samples in %s (%.1f s)", n, root, time.perf_counter() - t0)
    return root
