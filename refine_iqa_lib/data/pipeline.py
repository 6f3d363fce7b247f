"""The Refine-Perception construction pipeline (Fig. 2) as small stage functions.

One source image (a *scene*) goes through::

    decode -> standardise (resize + snap to 28, scale boxes, drop tiny objects)
           -> no-reference quality filter          (stand-in for Q-Align / DBCNN / HyperIQA > 80)
           -> >= 2 distinct objects                (stand-in for Gemini's object check)
           -> one marked image per object          (the DINO boxes; at most ``max_objects``)
           -> random category + severity in the box (optionally a two-distortion combination)
           -> perceptibility check                 (stand-in for the human scrutiny)

and the accepted marked images of all scenes then go through the optional human review
(:mod:`refine_iqa_lib.data.review`) and the stratified train/test split. :func:`process_scene`
chains the per-scene stages (pure: arrays in, arrays + metadata out; the build writes the files);
every item that leaves the pipeline leaves with a :class:`~refine_iqa_lib.data.sources.Skip`
saying why, and :data:`STAGES` names the counts recorded for the Fig. 2 flow.

Determinism: every random choice for scene ``k`` comes from ``default_rng([seed, 0xD1, k, j])``
(``j`` = object slot), so results do not depend on the order or process in which scenes run.

No-reference quality scorers
----------------------------
:data:`QUALITY_SCORERS` maps a name to ``f(rgb_uint8) -> score in [0, 100]`` (higher = better);
``perception.quality_scorer`` picks one and ``perception.quality_threshold`` is the pass mark
(``score >= threshold``). Shipped:

* ``default`` (:func:`technical_quality`): a cheap heuristic (OpenCV, < 1 ms at 112 px): the
  minimum of a sharpness term (variance of the Laplacian, 30 -> 0, 300 -> 1 on a log scale), a
  noise term (Immerkaer's noise sigma, 15 -> 1, 30 -> 0 grey levels) and an exposure term (mean
  luma away from black/white, < 10 % clipped pixels). Calibrated on the embedded photographs at
  112-448 px: clean photos score 80-100, strongly blurred / noisy / dark versions < 20. It only
  removes badly defective sources; it is not an IQA model.
* ``none``: every image scores 100.
* ``"package.module:function"``: any importable callable with the same signature.

The paper keeps images whose Q-Align, DBCNN and HyperIQA scores all exceed 80. To reproduce that,
wrap the three models (e.g. pyiqa's ``qalign``, ``dbcnn``, ``hyperiqa`` metrics, rescaled to
0-100) as callables and combine them with :func:`min_of`, which passes an image only if *all*
scorers pass::

    register_quality_scorer("paper_ensemble", min_of(qalign_0_100, dbcnn_0_100, hyperiqa_0_100))
    # perception.quality_scorer=paper_ensemble  perception.quality_threshold=80

(``pypiqe`` and ``brisque`` were considered; neither is needed for the offline default.)
"""
from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence

import cv2
import numpy as np

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data.sources import (BBox, DataError, SceneObject, Skip, SourceRecord, box_area, check_box,
                                         fit_size, intersection, keep_largest_per_name, resize_rgb, scale_box)

#: Bump when a change to the pipeline changes its outputs (invalidates resumed builds).
PIPELINE_VERSION = 2

#: Stage counts recorded by the build, in Fig. 2 order: (key, unit, description).
STAGES: tuple[tuple[str, str, str], ...] = (
    ("pool", "images", "source pool"),
    ("drawn", "images", "drawn from the pool (perception.n_images)"),
    ("decoded", "images", "decoded, boxes valid, resized"),
    ("quality", "images", "passed the no-reference quality filter"),
    ("objects", "images", "with >= 2 distinct objects"),
    ("marked", "marked images", "one marked image per object"),
    ("distorted", "marked images", "distorted inside the box"),
    ("perceptible", "marked images", "passed the perceptibility check"),
    ("reviewed", "marked images", "accepted by the human review (if any)"),
    ("train", "marked images", "train split"),
    ("test", "marked images", "test split"),
    ("samples_train", "samples", "Stage-1 RFT samples (train)"),
    ("samples_test", "samples", "Stage-1 RFT samples (test)"),
)

#: A distractor object whose box lies at least this much inside the distorted box would look
#: distorted too, so it is never offered as a wrong option.
MAX_DISTRACTOR_OVERLAP = 0.5


# --------------------------------------------------------------------------- quality scorers
QualityScorer = Callable[[np.ndarray], float]
QUALITY_SCORERS: dict[str, QualityScorer] = {}


def register_quality_scorer(name: str, fn: QualityScorer | None = None):
    """Register ``fn`` under ``name`` (usable as a decorator). Returns ``fn``."""
    def deco(f: QualityScorer) -> QualityScorer:
        QUALITY_SCORERS[name] = f
        return f
    return deco(fn) if fn is not None else deco


def get_quality_scorer(name: str) -> QualityScorer:
    """A registered scorer, or ``"module:function"`` imported on demand."""
    if name in QUALITY_SCORERS:
        return QUALITY_SCORERS[name]
    if ":" in name:
        mod, _, attr = name.partition(":")
        try:
            fn = getattr(importlib.import_module(mod), attr)
        except (ImportError, AttributeError) as e:
            raise DataError(f"quality scorer {name!r}: cannot import ({e})") from e
        if not callable(fn):
            raise DataError(f"quality scorer {name!r} is not callable")
        return fn
    raise DataError(f"unknown quality scorer {name!r}; registered: {sorted(QUALITY_SCORERS)} "
                    "or 'package.module:function'")


def min_of(*scorers: QualityScorer) -> QualityScorer:
    """Ensemble that passes an image only if every scorer passes: the minimum score.

    >>> min_of(lambda im: 90.0, lambda im: 70.0)(None)
    70.0
    """
    def score(image: np.ndarray) -> float:
        return float(min(s(image) for s in scorers))
    return score


def _ramp(x: float, lo: float, hi: float) -> float:
    return float(np.clip((x - lo) / (hi - lo), 0.0, 1.0))


@register_quality_scorer("default")
def technical_quality(image: np.ndarray) -> float:
    """Heuristic technical quality in [0, 100]: min of sharpness, noise and exposure terms.

    >>> from refine_iqa_lib.standin.world import load_photo
    >>> img = load_photo("astronaut")
    >>> technical_quality(img) > 80, technical_quality(cv2.GaussianBlur(img, (0, 0), 4)) < 20
    (True, True)
    """
    y = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float32)
    lap_var = float(cv2.Laplacian(y, cv2.CV_32F, ksize=1).var())
    sharp = _ramp(np.log10(max(lap_var, 1e-6)), np.log10(30.0), np.log10(300.0))
    kernel = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], np.float32)
    resp = cv2.filter2D(y, cv2.CV_32F, kernel)[1:-1, 1:-1]
    sigma = float(np.sqrt(np.pi / 2) * np.abs(resp).mean() / 6) if resp.size else 0.0
    noise = 1.0 - _ramp(sigma, 15.0, 30.0)
    clipped = float(((y <= 3) | (y >= 252)).mean())
    mean = float(y.mean())
    exposure = min(1.0 - _ramp(clipped, 0.10, 0.40), _ramp(min(mean, 255.0 - mean), 10.0, 40.0))
    return round(100.0 * min(sharp, noise, exposure), 4)


register_quality_scorer("none", lambda image: 100.0)


# --------------------------------------------------------------------------- parameters
@dataclass(frozen=True)
class PipelineParams:
    """Everything the per-scene stages need (picklable; built from the config)."""

    image_size: int = 112
    max_pixels: int | None = None
    min_box_side: int = 8
    min_object_area: float = 0.02
    max_objects: int = 5
    quality_scorer: str = "default"
    quality_threshold: float = 50.0
    perceptibility_threshold: float = 0.01
    combo_prob: float = 0.0
    categories: tuple[str, ...] = D.DISTORTIONS
    severities: tuple[int, ...] = (1, 2, 3, 4, 5)
    seed: int = 0

    @classmethod
    def from_config(cls, cfg) -> "PipelineParams":
        p = cfg.perception
        return cls(image_size=p.image_size, max_pixels=cfg.model.max_pixels, min_box_side=p.min_box_side,
                   min_object_area=p.min_object_area, max_objects=p.max_objects, quality_scorer=p.quality_scorer,
                   quality_threshold=p.quality_threshold, perceptibility_threshold=p.perceptibility_threshold,
                   combo_prob=p.combo_prob, categories=check_categories(p.categories),
                   severities=check_severities(p.severities), seed=p.seed).validated()

    def validated(self) -> "PipelineParams":
        fit_size(1, 1, self.image_size)
        if self.min_box_side < D.MIN_BOX_SIDE:
            raise DataError(f"perception.min_box_side {self.min_box_side}: the distortion engine needs >= {D.MIN_BOX_SIDE}")
        if not 0.0 <= self.combo_prob <= 1.0:
            raise DataError(f"perception.combo_prob {self.combo_prob}: expected a probability in [0, 1]")
        if self.max_objects < 2:
            raise DataError(f"perception.max_objects {self.max_objects}: expected >= 2 (two distinct objects per image)")
        check_categories(self.categories)
        check_severities(self.severities)
        get_quality_scorer(self.quality_scorer)
        return self

    def fingerprint(self, source: dict) -> str:
        """Hash of everything that changes per-scene outputs (a resumed build reuses a scene only
        if it matches)."""
        blob = json.dumps({"params": asdict(self), "source": source, "version": PIPELINE_VERSION,
                           "distortions": list(D.DISTORTIONS)}, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def check_categories(categories: Sequence[str]) -> tuple[str, ...]:
    """``[]`` -> all 12; unknown names raise naming them and the valid ones."""
    cats = tuple(categories) if categories else D.DISTORTIONS
    bad = [c for c in cats if c not in D.DISTORTIONS]
    if bad:
        raise DataError(f"unknown distortion category {bad}; valid: {list(D.DISTORTIONS)}")
    if len(set(cats)) != len(cats):
        raise DataError(f"perception.categories {list(cats)} repeats a category")
    return cats


def check_severities(severities: Sequence[int]) -> tuple[int, ...]:
    sev = tuple(severities)
    bad = [s for s in sev if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 1 <= int(s) <= 5]
    if bad or not sev:
        raise DataError(f"unknown severity {bad or sev}; expected integers in 1..5 "
                        f"(1 = {D.SEVERITIES[0]!r} .. 5 = {D.SEVERITIES[-1]!r})")
    return tuple(int(s) for s in sev)


# --------------------------------------------------------------------------- per-scene stages
def standardise(image: np.ndarray, objects: Sequence[SceneObject], params: PipelineParams, item: str
                ) -> tuple[np.ndarray, list[SceneObject], list[Skip]]:
    """Validate boxes, resize to the stored size (:func:`~refine_iqa_lib.data.sources.fit_size`),
    scale boxes, drop objects that become too small. Returns ``(image, objects, skips)``."""
    h, w = image.shape[:2]
    W, H = fit_size(w, h, params.image_size, params.max_pixels)
    skips, kept = [], []
    for o in objects:
        try:
            box = check_box(list(o.bbox), w, h, f"{item} object {o.name!r}")
        except DataError as e:
            skips.append(Skip(f"{item}/{o.name}", "object", e.reason, str(e)))
            continue
        b = scale_box(box, (w, h), (W, H))
        if b[2] - b[0] < params.min_box_side or b[3] - b[1] < params.min_box_side:
            skips.append(Skip(f"{item}/{o.name}", "object", "object too small after resize",
                              f"{item} object {o.name!r}: box {list(b)} in the {W}x{H} stored image; "
                              f"both sides must be >= {params.min_box_side} px"))
            continue
        if box_area(b) < params.min_object_area * W * H:
            skips.append(Skip(f"{item}/{o.name}", "object", "object below min_object_area",
                              f"{item} object {o.name!r}: {box_area(b)} px < {params.min_object_area} x {W}x{H}"))
            continue
        kept.append(SceneObject(o.name, b))
    kept, dup = keep_largest_per_name(kept)
    skips += [Skip(f"{item}/{o.name}", "object", "duplicate object name",
                   f"{item}: {o.name!r} appears again; the largest box is kept") for o in dup]
    return resize_rgb(image, (W, H)), kept, skips


def quality_stage(image: np.ndarray, params: PipelineParams) -> tuple[bool, float]:
    """No-reference quality filter: ``(score >= threshold, score)``."""
    score = float(get_quality_scorer(params.quality_scorer)(image))
    return score >= params.quality_threshold, score


def objects_stage(objects: Sequence[SceneObject], minimum: int = 2) -> bool:
    """At least ``minimum`` distinct object names."""
    return len({o.name for o in objects}) >= minimum


def valid_distractors(objects: Sequence[SceneObject], target: int) -> list[int]:
    """Indices of the objects that may be offered as *wrong* answers for ``objects[target]``:
    not the target, and not lying mostly (>= 50 %) inside the target's box (they would look
    distorted too)."""
    t = objects[target].bbox
    return [i for i, o in enumerate(objects)
            if i != target and o.name != objects[target].name
            and intersection(o.bbox, t) < MAX_DISTRACTOR_OVERLAP * box_area(o.bbox)]


def mark_objects(objects: Sequence[SceneObject], max_objects: int, item: str
                 ) -> tuple[list[SceneObject], list[tuple[int, list[int]]], list[Skip]]:
    """Keep the ``max_objects`` largest objects (ties by name) and return one marking per object
    that has at least one valid distractor: ``(objects, [(target, distractors)], skips)``."""
    order = sorted(range(len(objects)), key=lambda i: (-box_area(objects[i].bbox), objects[i].name))
    keep = sorted(order[:max_objects])
    skips = [Skip(f"{item}/{objects[i].name}", "object", "beyond max_objects",
                  f"{item}: only the {max_objects} largest objects are marked") for i in order[max_objects:]]
    objs = [objects[i] for i in keep]
    marks = []
    for j in range(len(objs)):
        d = valid_distractors(objs, j)
        if d:
            marks.append((j, d))
        else:
            skips.append(Skip(f"{item}/{objs[j].name}", "object", "no distinguishable distractor",
                              f"{item}: every other object lies inside {objs[j].name!r}'s box"))
    return objs, marks, skips


def draw_distortion(rng: np.random.Generator, categories: Sequence[str], severities: Sequence[int],
                    combo_prob: float = 0.0) -> list[tuple[str, int]]:
    """One ``(category, severity)`` drawn uniformly, or with probability ``combo_prob`` an allowed
    pair (``distortions.ALLOWED_PAIRS``) with severities drawn from 1-3.

    >>> draw_distortion(np.random.default_rng(0), ["blur"], [2])
    [('blur', 2)]
    """
    combo = combo_prob > 0 and float(rng.random()) < combo_prob
    c1 = categories[int(rng.integers(len(categories)))]
    if combo:
        partners = [c for c in D.ALLOWED_PAIRS.get(c1, ()) if c in categories]
        pair_sev = [s for s in severities if s in D.PAIR_SEVERITIES] or list(D.PAIR_SEVERITIES)
        if partners:
            c2 = partners[int(rng.integers(len(partners)))]
            return [(c1, int(pair_sev[int(rng.integers(len(pair_sev)))])),
                    (c2, int(pair_sev[int(rng.integers(len(pair_sev)))]))]
    return [(c1, int(severities[int(rng.integers(len(severities)))]))]


def apply_distortion(image: np.ndarray, bbox: BBox, steps: Sequence[tuple[str, int]], rng: np.random.Generator
                     ) -> tuple[np.ndarray, list[dict]]:
    """Distort inside ``bbox``; returns the image and one info dict per step (variant, params)."""
    if len(steps) == 1:
        (c, s), = steps
        out, info = D.distort_with_info(image, c, s, bbox=bbox, rng=rng)
        return out, [{k: info[k] for k in ("category", "severity", "variant", "params")}]
    out, info = D.distort_pair_with_info(image, tuple(steps[0]), tuple(steps[1]), bbox=bbox, rng=rng)
    return out, [{k: st[k] for k in ("category", "severity", "variant", "params")} for st in info["steps"]]


def perceptibility_stage(reference: np.ndarray, distorted: np.ndarray, bbox: BBox, threshold: float
                         ) -> tuple[bool, float]:
    """Stand-in for the human scrutiny: ``distortions.strength`` (1 - SSIM) in the box must exceed
    ``threshold``."""
    s = float(D.strength(reference, distorted, bbox))
    return s > threshold, s


# --------------------------------------------------------------------------- one scene
@dataclass
class MarkedImage:
    """A distorted copy of a scene with one marked object; ``row`` is its metadata."""

    row: dict
    array: np.ndarray | None


@dataclass
class SceneResult:
    """Everything one scene produced: the stored reference, marked images, skips, stage flags."""

    scene: str
    index: int
    source_id: str
    reached: list[str] = field(default_factory=list)   # per-scene stages passed (decoded, quality, objects)
    reference: np.ndarray | None = None
    marked: list[MarkedImage] = field(default_factory=list)  # every marked image (incl. rejected)
    skips: list[Skip] = field(default_factory=list)
    info: dict = field(default_factory=dict)


def scene_id(k: int) -> str:
    return f"s{k:06d}"


def process_scene(k: int, record: SourceRecord, params: PipelineParams) -> SceneResult:
    """Run the per-scene stages for scene ``k`` (pure; the build writes the files)."""
    sid = scene_id(k)
    res = SceneResult(scene=sid, index=k, source_id=record.source_id)
    item = f"{sid} ({record.where or record.source_id})"
    try:
        image = record.load()
    except DataError as e:
        res.skips.append(Skip(sid, "image", e.reason, str(e)))
        return res
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        image = D.to_rgb_uint8(image)
    image, objects, skips = standardise(image, record.objects, params, item)
    res.skips += skips
    res.reached.append("decoded")
    ok, score = quality_stage(image, params)
    res.info.update({"quality": round(score, 4), "width": int(image.shape[1]), "height": int(image.shape[0])})
    if not ok:
        res.skips.append(Skip(sid, "image", "below quality threshold",
                              f"{item}: quality {score:.1f} < {params.quality_threshold} ({params.quality_scorer})"))
        return res
    res.reached.append("quality")
    if not objects_stage(objects):
        res.skips.append(Skip(sid, "image", "fewer than 2 distinct objects",
                              f"{item}: {len(objects)} usable object(s) {[o.name for o in objects]}"))
        return res
    res.reached.append("objects")
    objs, marks, skips = mark_objects(objects, params.max_objects, item)
    res.skips += skips
    res.reference = image
    res.info["objects"] = [o.to_dict() for o in objs]
    for j, distractors in marks:
        obj = objs[j]
        mid = f"{sid}_o{j}"
        rng = np.random.default_rng([params.seed, 0xD1, k, j])
        steps = draw_distortion(rng, params.categories, params.severities, params.combo_prob)
        row = {"id": mid, "scene": sid, "source_id": record.source_id, "object": obj.name, "bbox": list(obj.bbox),
               "distractors": [objs[i].name for i in distractors], "objects": res.info["objects"],
               "width": int(image.shape[1]), "height": int(image.shape[0]), "quality": res.info["quality"],
               "category": steps[0][0], "severity": int(steps[0][1]),
               "categories": [c for c, _ in steps], "severities": [int(s) for _, s in steps],
               "combo": len(steps) > 1, "status": "marked", "declared_split": record.meta.get("split")}
        try:
            out, infos = apply_distortion(image, obj.bbox, steps, rng)
        except (ValueError, TypeError) as e:
            row["status"] = "distortion failed"
            res.skips.append(Skip(mid, "marked", "distortion failed", f"{item} object {obj.name!r}: {e}"))
            res.marked.append(MarkedImage(row, None))
            continue
        row["variants"] = [i["variant"] for i in infos]
        row["params"] = [i["params"] for i in infos]
        ok, s = perceptibility_stage(image, out, obj.bbox, params.perceptibility_threshold)
        row["strength"] = round(s, 6)
        if not ok:
            row["status"] = "not perceptible"
            res.skips.append(Skip(mid, "marked", "distortion not perceptible",
                                  f"{item} object {obj.name!r}: {' + '.join(f'{c} {v}' for c, v in steps)} "
                                  f"strength {s:.4f} <= {params.perceptibility_threshold}"))
            res.marked.append(MarkedImage(row, None))
            continue
        row["status"] = "accepted"
        res.marked.append(MarkedImage(row, out))
    return res


# --------------------------------------------------------------------------- across scenes
REVIEW_DECISIONS = ("accept", "reject")


def apply_review(rows: Sequence[dict], decisions: dict[str, str]) -> tuple[list[dict], list[dict]]:
    """Split rows into ``(kept, rejected)`` by reviewer decisions ``{id: "accept" | "reject"}``
    (ids without a decision are kept)."""
    kept, rejected = [], []
    for r in rows:
        (rejected if decisions.get(r["id"]) == "reject" else kept).append(r)
    return kept, rejected


def scene_split(scenes: Sequence[str], test_size: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean test mask over marked images that keeps every *scene* (source record, its pristine
    reference and all its marked images) on one side: scenes are drawn in a seeded random order
    and added to the test split until it holds at least ``test_size`` marked images. The test
    split may therefore exceed ``test_size`` by less than one scene; the train split keeps at
    least one scene. (Splitting marked images instead would put other objects of a test scene,
    and its pristine reference, into training.)

    >>> scenes = ["s0", "s0", "s1", "s2", "s2", "s2", "s3"]
    >>> m = scene_split(scenes, 3, np.random.default_rng(0))
    >>> int(m.sum()) >= 3, all(len({m[i] for i, s in enumerate(scenes) if s == k}) == 1 for k in set(scenes))
    (True, True)
    """
    keys = list(scenes)
    order = list(dict.fromkeys(keys))
    if not 0 <= test_size < len(keys):
        raise DataError(f"perception.test_size {test_size}: expected 0 <= test_size < {len(keys)} "
                        "(the number of accepted marked images)")
    sizes: dict[str, int] = {}
    for k in keys:
        sizes[k] = sizes.get(k, 0) + 1
    chosen, n = set(), 0
    for j in rng.permutation(len(order)):
        if n >= test_size:
            break
        if len(chosen) == len(order) - 1:
            raise DataError(f"perception.test_size {test_size}: the test split would take every scene but one "
                            f"({len(order)} scenes, {len(keys)} marked images); lower it or build more scenes")
        chosen.add(order[int(j)])
        n += sizes[order[int(j)]]
    return np.array([k in chosen for k in keys], dtype=bool)
