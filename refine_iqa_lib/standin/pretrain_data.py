"""Stand-in pre-training data (not in the paper): what a general vision-language model knows before Refine-IQA.

The paper starts from Qwen2.5-VL-7B-Instruct, which was pre-trained and instruction-tuned on
general pictures and tasks before the authors touched it. The offline stand-in starts random;
this module writes the analogue of that pre-training: a seeded mixture of prompt / completion
samples on *training-side* pictures and on tasks *other than the ones it is tested on*. It is
data only (wiring it into the warm-up is a separate step); nothing reads it unless
:func:`write_pretrain_dataset` is called, and it is meant for the stand-in only.

Pictures (:func:`pretrain_pictures`)
------------------------------------
* the pristine references of the perception build's **training** scenes (``images_train.jsonl``:
  the build's own scene split, :func:`refine_iqa_lib.data.pipeline.scene_split`, is reused, never
  redrawn), with their recorded objects and boxes;
* the scoring set's **training** photographs (:func:`refine_iqa_lib.standin.scoring_set.photo_splits`
  ``["training"]``): each whole photograph and ``pretrain.photo_crops`` seeded crops of it, fitted
  to ``pretrain.image_size``, with the hand-annotated objects lying fully inside.

With ``pretrain.exclude_heldout_photos`` (default) a picture is left out when any of its pixels
come from a photograph of the scoring set's test or validation split (a perception scene that is
such a photograph, or a composite with such a background or pasted cut-out: the embedded source
is asked for the composite's recipe), and a photograph is left out when it is itself a
perception *test* scene. Nothing comes from a test or validation split.

Tasks (:data:`TASKS`; shares ``pretrain.task_shares``, allocated exactly by largest remainder)
-------------------------------------------------------------------------------------------------
* ``name_object`` - *what a detector-trained model knows*: "Which object is inside the box
  [x1, y1, x2, y2]?", ``n_options`` options in the letter layout of Stage-1
  (:func:`refine_iqa_lib.data.stage1.render_prompt`): the object's name and distractors drawn
  from the names pooled over all training pictures (never one of this picture's objects whose box
  meets the asked box), shuffled so the right letter's position is uniform.
* ``object_box`` - *grounding of named objects*: "Give the bounding box of the <name>." ->
  ``[x1, y1, x2, y2]``, the object's recorded box in the shown picture's pixels. Nothing is
  distorted in this task (Stage-1 grounding asks for a *distorted region*; this never does).
* ``global_distortion`` - *the common distortions, seen on whole pictures*: the whole picture is
  distorted with one family (:data:`refine_iqa_lib.data.distortions.DISTORTIONS`, all 12) at a
  severity drawn from 1-5, or left pristine (share ``pretrain.pristine_share``, option "none");
  "Which distortion affects this whole picture?" over ``n_options`` family labels
  (:func:`refine_iqa_lib.data.stage1.category_label`). The answer is the family only - no
  severity, no region, no object.
* ``rate_attribute`` - *a number in the scoring layout*: "How bright / colourful / sharp /
  contrasty is this picture?", answered ``<answer>X.X</answer>`` (:func:`refine_iqa_lib.prompts.
  format_mos_text` / ``answer_text``) with a target computed from
  :func:`refine_iqa_lib.standin.perceive.pixel_stats` of the shown picture by the monotone maps of
  :data:`ATTRIBUTES` (:func:`attribute_target`). Half the pictures are first distorted globally
  (as above) so that the targets spread. Never a MOS, never a scoring-set label.

Every task is in think mode with probability ``pretrain.think_share`` and no-think otherwise;
the think text is :func:`refine_iqa_lib.standin.perceive.describe` of the very picture shown
(pixels only; seeded phrasing), never a label.

What it never contains: a Stage-1 sample or its answer layout (no "degraded region", no
severity option, no distorted-object or distorted-region question), a MOS of any scoring set, a
picture of a test or validation split. :func:`write_pretrain_dataset` checks the last by pixel
content against every held-out collection that is built: the perception test split (distorted
images and references), the Q-Bench stand-in's images and the embedded scoring set's test and
validation pictures; any overlap fails the build, naming the pictures.

Files (``<work_dir>/pretrain/``)
--------------------------------
``pictures/<picture id>.png`` (every pristine picture available, used or not), ``images/<sample id>.png``
(distorted pictures), ``samples.jsonl`` (one sample a line: ``id``, ``task``, ``mode``,
``picture`` (source picture id), ``origin``, ``images`` (paths relative to the folder),
``prompt``, ``completion``, ``answer``, ``answer_letter``, ``options``, ``think_seed`` (the phrasing seed given to
``describe``; the think text is ``describe(<shown image>, think_seed)``), plus per task ``object`` /
``box`` / ``category`` / ``severity`` / ``attribute`` / ``target``), ``pretrain_set.json`` (the
stamp: fingerprint, counts, audits, build seconds). An unchanged configuration and unchanged
inputs (the fingerprint holds the perception training and test files and the held-out sets'
stamps) reuse the folder.

Measured facts
--------------
Tiny profile (perception build of 760 scenes, embedded scoring set of 3,000 pictures and the
Q-Bench stand-in built first), defaults (6,000 samples, 112 px, seed 0), on this 2-core machine
under ``nice``; ``pretrain_set.json``'s ``facts`` and ``audit``, as printed::

    {"build_seconds": 28.2, "n_samples": 6000, "per_mode": {"no_think": 3076, "think": 2924},
     "per_task": {"global_distortion": 1800, "name_object": 1500, "object_box": 1500, "rate_attribute": 1200},
     "pictures_available": 142, "pictures_by_origin": {"perception_train_scene": 118, "scoring_train_photo": 24},
     "pictures_used": 142, "think_words": {"distinct": 38, "max": 49, "median": 18.0, "min": 10}}
    {"Q-Bench stand-in": {"n_heldout": 1003, "n_pretrain": 2336, "n_shared": 0},
     "perception test": {"n_heldout": 1317, "n_pretrain": 2336, "n_shared": 0},
     "scoring test": {"n_heldout": 600, "n_pretrain": 2336, "n_shared": 0},
     "scoring validation": {"n_heldout": 300, "n_pretrain": 2336, "n_shared": 0}}

Of the build's 441 training scenes, 118 are kept: the other 323 hold pixels of one of the 3
held-out scoring photographs (as the whole scene, its background or a pasted cut-out). The 24
photograph pictures are the whole photograph and 8 crops of the training photographs that are
not perception test scenes, less duplicates. 130 of the 142 pictures carry named boxes (19
distinct object names). Letters of the multiple-choice answers: A 835, B 839, C 781, D 845
(chi-square p = 0.36). global_distortion answers: "none" 189, each family 105-155.
rate_attribute targets (5th / 50th / 95th percentile): bright 1.41 / 2.13 / 2.97, colourful
0.98 / 2.37 / 3.17, sharp 3.25 / 3.72 / 4.06, contrasty 1.09 / 2.14 / 3.14. The folder takes
49 MB (2,336 PNGs).

What it does not give: the pictures are few (142) because the embedded source has 8 colour
photographs and the held-out ones are excluded; the perception build's test scenes still share
object cut-outs and background photographs with its training scenes (the build's
``perception_split_audit.json`` ``reuse`` report), which a pixel audit cannot see.
"""
from __future__ import annotations

import hashlib
import json
import logging
import string
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data import stage1
from refine_iqa_lib.data.audit import SplitOverlapError, audit_splits, content_hash
from refine_iqa_lib.data.sources import MIN_BOX_SIDE, fit_size, intersection, resize_rgb, scale_box
from refine_iqa_lib.io import atomic_dir, build_lock, open_image, read_json, write_bytes, write_json, write_jsonl
from refine_iqa_lib.prompts import SCORE_PLACEHOLDER, answer_text, check_mode, completion_text, format_mos_text, instruction
from refine_iqa_lib.standin.perceive import describe, pixel_stats, words
from refine_iqa_lib.standin.scenes import EmbeddedSource, load_embedded_annotations
from refine_iqa_lib.standin.world import load_photo

__all__ = ["TASKS", "ATTRIBUTES", "NONE_OPTION", "Picture", "PretrainSet", "attribute_target", "pretrain_pictures",
           "build_pretrain_samples", "write_pretrain_dataset", "pretrain_dir", "pretrain_facts", "heldout_images"]

log = logging.getLogger(__name__)

TASKS = ("name_object", "object_box", "global_distortion", "rate_attribute")
#: The global_distortion option of an undistorted picture.
NONE_OPTION = "none"
#: attribute -> (adjective in the question, statistic of pixel_stats, monotone map to [0, 5)).
#: ``bright``: 5 x mean luma (0..1); ``colourful``: 5 c / (c + 50) for the Hasler-Suesstrunk
#: colourfulness c (0..~180; a pristine median 53 gives 2.6); ``sharp``: 5 x sharpness (0..1);
#: ``contrasty``: 10 x RMS contrast (0..0.5). Written with format_mos_text (clipped to [0, 4.9]).
ATTRIBUTES: dict[str, tuple[str, str]] = {
    "bright": ("bright", "mean_luma"),
    "colourful": ("colourful", "colourfulness"),
    "sharp": ("sharp", "sharpness"),
    "contrasty": ("contrasty", "contrast"),
    # not a pixel statistic: the strength of the global distortion the picture was given (0 when
    # pristine), inverted - "how free of distortion", 4.9 - 0.98 x severity. Off by default
    # (``pretrain.attributes``); a family-blind rating of distortion strength, never a MOS.
    "undistorted": ("free of distortion", "severity"),
}
#: The attributes rated by default (``pretrain.attributes``).
DEFAULT_ATTRIBUTES = ("bright", "colourful", "sharp", "contrasty")
_MAPS = {"mean_luma": lambda v: 5.0 * v, "colourfulness": lambda v: 5.0 * v / (v + 50.0),
         "sharpness": lambda v: 5.0 * v, "contrast": lambda v: 10.0 * v, "severity": lambda v: 4.9 - 0.98 * v}
_BUILD_VERSION = "1"
_STAMP = "pretrain_set.json"
_RATE_DISTORT_SHARE = 0.5


#: The question texts of the tasks (``{box}``: ``[x1, y1, x2, y2]``; ``{name}``: an object name).
NAME_QUESTION = "Which object is inside the box {box}?"
BOX_QUESTION = "Give the bounding box of the {name}."
DISTORTION_QUESTION = "Which distortion affects this whole picture?"


def _rate_question(attribute: str) -> str:
    return (f"How {ATTRIBUTES[attribute][0]} is this picture? Rate it with a number from 0.0 (not at all) "
            "to 4.9 (extremely).")


def question_texts() -> list[str]:
    """Every pre-training question with its layouts, for the stand-in's tokenizer corpus
    (``TINY_ARCH["tokenizer_corpus"] = "pretrain"``): fixed templates, a sample box and name.

    >>> any(t.startswith("How sharp is this picture?") for t in question_texts())
    True
    """
    from refine_iqa_lib.prompts import MODES, VARIANTS

    out = []
    for mode in MODES:
        out.append(stage1.render_prompt(NAME_QUESTION.format(box="[12, 34, 56, 78]"), ["cat", "cup"], mode))
        out.append(stage1.render_prompt(BOX_QUESTION.format(name="cat"), [], mode))
        out.append(stage1.render_prompt(DISTORTION_QUESTION, [stage1.category_label(c) for c in D.DISTORTIONS[:3]]
                                        + [NONE_OPTION], mode))
        for v in VARIANTS:
            example, note = SCORE_PLACEHOLDER[v]
            out += [f"{_rate_question(a)} {instruction(mode, example, note)}" for a in ATTRIBUTES]
    return out


def attribute_target(attribute: str, stats: dict[str, float], severity: int = 0) -> float:
    """The ``rate_attribute`` target of a picture from its :func:`pixel_stats` (see :data:`ATTRIBUTES`);
    ``undistorted`` reads the global distortion's ``severity`` (0 = pristine) instead.

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
@dataclass
class Picture:
    """One pristine training-side picture: ``id``, where it comes from, pixels and named boxes."""

    id: str
    origin: str                       # "perception_train_scene" | "scoring_train_photo"
    source: str                       # the perception scene's source_id, or "photo:<name>[:crop k]"
    array: np.ndarray = field(repr=False)
    objects: list[tuple[str, tuple[int, int, int, int]]] = field(default_factory=list)


def _fit(img: np.ndarray, objects: Sequence[tuple[str, Sequence[int]]], size: int, max_pixels: int | None
         ) -> tuple[np.ndarray, list[tuple[str, tuple[int, int, int, int]]]]:
    h, w = img.shape[:2]
    W, H = fit_size(w, h, size, max_pixels)
    out = img if (W, H) == (w, h) else resize_rgb(np.ascontiguousarray(img), (W, H))
    objs = []
    for name, b in objects:
        nb = scale_box(b, (w, h), (W, H)) if (W, H) != (w, h) else tuple(int(x) for x in b)
        nb = (max(0, nb[0]), max(0, nb[1]), min(W, nb[2]), min(H, nb[3]))
        if nb[2] - nb[0] >= MIN_BOX_SIDE and nb[3] - nb[1] >= MIN_BOX_SIDE:
            objs.append((str(name), nb))
    return np.ascontiguousarray(out, dtype=np.uint8), objs


def _photos_of(source_id: str, source: EmbeddedSource | None) -> set[str]:
    """Embedded photographs whose pixels a perception scene holds (empty for other sources)."""
    parts = source_id.split(":")
    if len(parts) == 3 and parts[0] == "embedded" and parts[1] == "photo":
        return {parts[2]}
    if len(parts) == 3 and parts[0] == "embedded" and parts[1] == "composite" and source is not None:
        meta = source.composite(int(parts[2])).meta
        return {meta["background"], *(p["photo"] for p in meta["pasted"])}
    return set()


def _perception_folder(cfg) -> Path:
    folder = cfg.work_dir / "perception"
    if not (folder / "images_train.jsonl").is_file():
        from refine_iqa_lib.data.build import build_perception_dataset

        log.info("[pretrain] no perception build in %s: building it", folder)
        build_perception_dataset(cfg, progress=False)
    return folder


def pretrain_pictures(cfg) -> list[Picture]:
    """The pictures the pre-training may use: training scenes of the perception build and crops of
    the scoring set's training photographs (see the module docstring); seeded by ``pretrain.seed``."""
    from refine_iqa_lib.standin.scoring_set import photo_splits

    p = cfg.pretrain
    size, max_pixels = int(p.image_size), cfg.model.max_pixels
    folder = _perception_folder(cfg)
    train = stage1.load_perception_images(folder, "train")
    test_file = folder / "images_test.jsonl"
    test = stage1.load_perception_images(folder, "test") if test_file.is_file() else pd.DataFrame()
    splits = photo_splits(int(cfg.scoring.seed))
    heldout = set(splits["test"]) | set(splits["validation"])
    source = None
    if p.exclude_heldout_photos and cfg.perception.source == "embedded":
        pc = cfg.perception
        source = EmbeddedSource(pc.image_size, max_pixels, pc.seed, pc.min_box_side, pc.min_object_area)

    pictures: list[Picture] = []
    for r in train.drop_duplicates("scene").sort_values("scene").to_dict("records"):
        if p.exclude_heldout_photos and _photos_of(str(r["source_id"]), source) & heldout:
            continue
        img = np.asarray(open_image(r["reference"]), dtype=np.uint8)
        arr, objs = _fit(img, [(o["name"], o["bbox"]) for o in r["objects"]], size, max_pixels)
        pictures.append(Picture(f"scene_{r['scene']}", "perception_train_scene", str(r["source_id"]), arr, objs))

    test_photos = {s.split(":")[2] for s in test.get("source_id", pd.Series(dtype=str))
                   if str(s).startswith("embedded:photo:")}
    annotations = load_embedded_annotations()
    for name in splits["training"]:
        if name in test_photos:
            continue
        photo = load_photo(name)
        objects = [(o.name, o.bbox) for o in annotations.get(name, [])]
        arr, objs = _fit(photo, objects, size, max_pixels)
        pictures.append(Picture(f"photo_{name}", "scoring_train_photo", f"photo:{name}", arr, objs))
        rng = np.random.default_rng([int(p.seed), 0xB0, sum(map(ord, name))])
        ph, pw = photo.shape[:2]
        for k in range(int(p.photo_crops)):
            frac = float(rng.uniform(0.35, 0.9))
            aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5))))
            cw = int(min(pw, round(frac * min(pw, ph * aspect))))
            ch = int(min(ph, round(cw / aspect)))
            x0, y0 = int(rng.integers(0, pw - cw + 1)), int(rng.integers(0, ph - ch + 1))
            inside = [(n, (b[0] - x0, b[1] - y0, b[2] - x0, b[3] - y0)) for n, b in objects
                      if b[0] >= x0 and b[1] >= y0 and b[2] <= x0 + cw and b[3] <= y0 + ch]
            arr, objs = _fit(photo[y0:y0 + ch, x0:x0 + cw], inside, size, max_pixels)
            pictures.append(Picture(f"photo_{name}_c{k}", "scoring_train_photo", f"photo:{name}:crop {k}", arr, objs))
    seen, unique = set(), []
    for q in pictures:  # a training photograph is also a perception scene when resized alike: keep one
        h = content_hash(q.array)
        if h not in seen:
            seen.add(h)
            unique.append(q)
    pictures = unique
    if not pictures:
        raise ValueError(f"{folder / 'images_train.jsonl'}: no training-side picture is left for the pre-training "
                         "(every training scene holds pixels of a held-out photograph and no training photograph "
                         "is free); build more scenes or set pretrain.exclude_heldout_photos=false")
    return pictures


# --------------------------------------------------------------------------- samples
@dataclass
class PretrainSet:
    """Samples (dicts, image paths relative to the dataset folder) and the pixels to write."""

    samples: list[dict]
    images: dict[str, np.ndarray] = field(repr=False)
    pictures: list[Picture] = field(repr=False)


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


def _letter_options(answer: str, pool: Sequence[str], k: int, rng: np.random.Generator) -> tuple[list[str], str]:
    others = [x for x in dict.fromkeys(pool) if x != answer]
    pick = [others[i] for i in sorted(rng.permutation(len(others))[: max(0, k - 1)])]
    options = [answer] + pick
    options = [options[i] for i in rng.permutation(len(options))]
    return options, string.ascii_uppercase[options.index(answer)]


def _box_text(b: Sequence[int]) -> str:
    return "[" + ", ".join(str(int(x)) for x in b) + "]"


def _distort(img: np.ndarray, rng: np.random.Generator, pristine_share: float) -> tuple[np.ndarray, str, int]:
    if float(rng.random()) < pristine_share:
        return img, NONE_OPTION, 0
    category = D.DISTORTIONS[int(rng.integers(len(D.DISTORTIONS)))]
    severity = int(rng.integers(1, 6))
    return D.distort(img, category, severity, rng=rng), category, severity


def build_pretrain_samples(cfg, n_samples: int | None = None, seed: int | None = None,
                           pictures: Sequence[Picture] | None = None) -> PretrainSet:
    """The seeded mixture of pre-training samples (see the module docstring).

    ``n_samples`` / ``seed`` default to ``pretrain.n_samples`` / ``pretrain.seed``; ``pictures``
    to :func:`pretrain_pictures` (pass a list to build from other pictures, e.g. in a test).
    Sample ``i`` draws everything from ``default_rng([seed, 0x9E, i])``, so a build is a pure
    function of its arguments."""
    p = cfg.pretrain
    n = int(p.n_samples if n_samples is None else n_samples)
    seed = int(p.seed if seed is None else seed)
    variant = cfg.stage2.variant
    pics = list(pretrain_pictures(cfg) if pictures is None else pictures)
    with_objects = [q for q in pics if q.objects]
    names = sorted({name for q in with_objects for name, _ in q.objects})
    counts = _allocate(n, dict(p.task_shares))
    if (counts["name_object"] or counts["object_box"]) and not with_objects:
        raise ValueError("pretrain: the object tasks need pictures with named boxes; none of the "
                         f"{len(pics)} pictures has one (set their shares to 0 or build more scenes)")
    if counts["name_object"] and len(names) < 2:
        raise ValueError(f"pretrain: name_object needs at least 2 object names over the pictures, found {names}")
    order = np.random.default_rng([seed, 0x9F]).permutation([t for t in TASKS for _ in range(counts[t])])
    pool_d = [stage1.category_label(c) for c in D.DISTORTIONS] + [NONE_OPTION]
    k_opt = int(p.n_options)
    attributes = list(p.attributes)
    unknown = [a for a in attributes if a not in ATTRIBUTES]
    if unknown or (counts["rate_attribute"] and not attributes):
        raise ValueError(f"pretrain.attributes {attributes}: expected a non-empty list of {list(ATTRIBUTES)}")
    samples: list[dict] = []
    images = {f"pictures/{q.id}.png": q.array for q in pics}  # every picture, used or not: all are audited
    for i, task in enumerate(order):
        task = str(task)
        rng = np.random.default_rng([seed, 0x9E, i])
        mode = "think" if float(rng.random()) < float(p.think_share) else "no_think"
        sid = f"pt{i:06d}"
        pic = (with_objects if task in ("name_object", "object_box") else pics)[
            int(rng.integers(len(with_objects if task in ("name_object", "object_box") else pics)))]
        shown = pic.array
        rec: dict[str, Any] = {"id": sid, "task": task, "mode": mode, "picture": pic.id, "origin": pic.origin,
                               "images": [f"pictures/{pic.id}.png"], "options": [], "answer_letter": ""}
        if task == "name_object":
            name, box = pic.objects[int(rng.integers(len(pic.objects)))]
            near = {m for m, b in pic.objects if m != name and intersection(b, box) > 0}
            options, letter = _letter_options(name, [x for x in names if x not in near], k_opt, rng)
            prompt = stage1.render_prompt(NAME_QUESTION.format(box=_box_text(box)), options, mode)
            rec.update(options=options, answer=name, answer_letter=letter, object=name, box=list(box))
            answer = letter
        elif task == "object_box":
            name, box = pic.objects[int(rng.integers(len(pic.objects)))]
            prompt = stage1.render_prompt(BOX_QUESTION.format(name=name), [], mode)
            answer = _box_text(box)
            rec.update(answer=answer, object=name, box=list(box))
        elif task == "global_distortion":
            shown, category, severity = _distort(pic.array, rng, float(p.pristine_share))
            label = NONE_OPTION if category == NONE_OPTION else stage1.category_label(category)
            options, letter = _letter_options(label, pool_d, k_opt, rng)
            prompt = stage1.render_prompt(DISTORTION_QUESTION, options, mode)
            rec.update(options=options, answer=label, answer_letter=letter, category=category, severity=severity)
            answer = letter
        else:  # rate_attribute
            category, severity = NONE_OPTION, 0
            if float(rng.random()) < _RATE_DISTORT_SHARE:
                shown, category, severity = _distort(pic.array, rng, 0.0)
            attribute = attributes[int(rng.integers(len(attributes)))]
            target = attribute_target(attribute, pixel_stats(shown), severity)
            example, note = SCORE_PLACEHOLDER[variant]
            prompt = f"{_rate_question(attribute)} {instruction(mode, example, note)}"
            text = format_mos_text(target, variant)
            answer = answer_text(text, variant)
            rec.update(answer=text, attribute=attribute, target=round(target, 6), category=category,
                       severity=severity)
        if shown is not pic.array:
            rec["images"] = [f"images/{sid}.png"]
            images[rec["images"][0]] = shown
        think_seed = int(rng.integers(2**31))
        think = describe(shown, seed=think_seed) if mode == "think" else ""
        rec.update(prompt=prompt, completion=completion_text(answer, check_mode(mode), think), think_seed=think_seed)
        samples.append(rec)
    return PretrainSet(samples, images, pics)


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


def _file_digest(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16] if path.is_file() else None


def _fingerprint(cfg, n: int, seed: int, explicit: Sequence[Picture] | None) -> str:
    from refine_iqa_lib.standin.scoring_set import embedded_set_dir

    w = cfg.work_dir
    blob = {"version": _BUILD_VERSION, "pretrain": asdict(cfg.pretrain), "n": n, "seed": seed,
            "variant": cfg.stage2.variant, "max_pixels": cfg.model.max_pixels, "scoring_seed": int(cfg.scoring.seed),
            "perception": {s: _file_digest(w / "perception" / f"images_{s}.jsonl") for s in ("train", "test")},
            "qbench": _file_digest(w / "qbench" / "qbench_set.json"),
            "scoring": _file_digest(embedded_set_dir(cfg) / "embedded_set.json")}
    if explicit is not None:
        h = hashlib.sha256()
        for q in explicit:
            h.update(q.id.encode())
            h.update(np.ascontiguousarray(q.array).tobytes())
        blob["pictures"] = h.hexdigest()
    return hashlib.sha256(json.dumps(blob, sort_keys=True).encode()).hexdigest()[:16]


def _png(img: np.ndarray) -> bytes:
    import io

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def pretrain_facts(samples: Sequence[dict], pictures: Sequence[Picture] | None = None) -> dict:
    """Counts per task and mode, pictures used, think-length summary (words) of a build."""
    df = pd.DataFrame(list(samples))
    think = [len(words(c.split("</think>")[0].removeprefix("<think>"))) for c in
             df.loc[df["mode"] == "think", "completion"]]
    out = {"n_samples": len(df),
           "per_task": {t: int((df["task"] == t).sum()) for t in TASKS},
           "per_mode": {m: int((df["mode"] == m).sum()) for m in ("think", "no_think")},
           "pictures_used": int(df["picture"].nunique()),
           "pictures_by_origin": {k: int(v) for k, v in df.drop_duplicates("picture")["origin"].value_counts()
                                  .sort_index().items()},
           "think_words": ({"median": float(np.median(think)), "min": int(min(think)), "max": int(max(think)),
                            "distinct": len(set(think))} if think else None)}
    if pictures is not None:
        out["pictures_available"] = len(pictures)
    return out


def write_pretrain_dataset(cfg, out_dir: str | Path | None = None, *, force: bool = False,
                           pictures: Sequence[Picture] | None = None, n_samples: int | None = None,
                           seed: int | None = None) -> Path:
    """Build (or reuse) the pre-training folder (default :func:`pretrain_dir`) and return it.

    Writes the pictures and distorted images (PNG) and ``samples.jsonl`` in a temporary sibling
    renamed into place (:func:`refine_iqa_lib.io.atomic_dir`), after a pixel-content audit of
    every written picture against each collection of :func:`heldout_images`: an overlap raises
    :class:`refine_iqa_lib.data.audit.SplitOverlapError` naming the pre-training picture and the
    held-out file, and nothing is written. The stamp ``pretrain_set.json`` holds the fingerprint,
    the audits (which collections were checked, with their sizes), :func:`pretrain_facts` and the
    build seconds; an unchanged fingerprint reuses the folder."""
    t0 = time.perf_counter()
    n = int(cfg.pretrain.n_samples if n_samples is None else n_samples)
    seed = int(cfg.pretrain.seed if seed is None else seed)
    root = Path(out_dir) if out_dir is not None else pretrain_dir(cfg)
    _perception_folder(cfg)
    fp = _fingerprint(cfg, n, seed, pictures)

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
        built = build_pretrain_samples(cfg, n, seed, pictures)
        heldout = heldout_images(cfg)
        with atomic_dir(root) as tmp:
            written: dict[str, Path] = {}
            for rel, img in sorted(built.images.items()):
                written[rel] = write_bytes(tmp / rel, _png(img))
            label = {str(path): rel for rel, path in written.items()}
            audits, failures = {}, []
            for name, files in heldout.items():
                rep = audit_splits(list(written.values()), files, names=("pretrain", name))
                audits[name] = {"n_pretrain": rep.n[0], "n_heldout": rep.n[1], "n_shared": int(len(rep.overlaps))}
                if not rep.ok:
                    shown = "; ".join(f"{label.get(str(r['pretrain']), r['pretrain'])} = {r[name]}"
                                      for r in rep.overlaps.head(5).to_dict("records"))
                    failures.append(f"{len(rep.overlaps)} with the {name} split ({shown})")
            if failures:
                raise SplitOverlapError("pre-training pictures are shared by pixel content: " + "; ".join(failures)
                                        + "; expected none (the pre-training uses training-side pictures only)")
            write_jsonl(tmp / "samples.jsonl", built.samples)
            facts = pretrain_facts(built.samples, built.pictures)
            facts["build_seconds"] = round(time.perf_counter() - t0, 2)
            write_json(tmp / _STAMP, {"fingerprint": fp, "n_samples": n, "seed": seed, "facts": facts,
                                      "audit": audits, "checked": sorted(heldout),
                                      "not_built": sorted({"perception test", "Q-Bench stand-in", "scoring test",
                                                           "scoring validation"} - set(heldout))})
    log.info("[pretrain] %d samples in %s (%.1f s)", n, root, time.perf_counter() - t0)
    return root
