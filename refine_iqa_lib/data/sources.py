"""Source pools for Refine-Perception: images with named objects and their boxes.

A *source* is a finite (or unbounded) list of :class:`SourceRecord` s addressed by index; each
record is an image (a file path or an array) plus a list of named objects with boxes. Three
sources exist, picked by ``perception.source`` (:func:`refine_iqa_lib.data.build.make_source`):

* ``coco`` (:class:`CocoSource`): a COCO ``instances_*.json`` + its image folder. Crowd
  annotations (``iscrowd = 1``) are left out; COCO's ``bbox = [x, y, w, h]`` (float pixels) becomes
  the half-open integer box ``(floor x, floor y, ceil(x + w), ceil(y + h))``; objects smaller than
  ``min_object_area`` (fraction of the image area) are left out; when a category appears several
  times in an image only its largest box is kept, so every object name in an image is distinct.
  Each object left out is in ``source.skips`` with its reason code (:data:`SKIP_REASONS`).
  The object name is the category name. Images with fewer than two objects stay in the pool and
  are counted out by the pipeline's "two distinct objects" stage (Fig. 2).
* ``jsonl`` (:class:`JsonlSource`): a folder of user images plus a JSON-lines file with one
  ``{"image": "relative/path.jpg", "objects": [{"name": "cup", "bbox": [x1, y1, x2, y2]}, ...]}``
  per image (how LSVQ / Panda-70M keyframes with detector boxes would arrive). Boxes are half-open
  pixels of the file as stored; a repeated name keeps its largest box (as for COCO; the smaller
  ones are in ``source.skips``).
* ``embedded`` (:class:`refine_iqa_lib.standin.scenes.EmbeddedSource`, the offline default): the
  stand-in's annotated photographs and composite scenes (see that module).

Stored-image geometry (every source, one rule)
----------------------------------------------
Images are resized (Lanczos) so that the longest side is ``perception.image_size`` and both sides
are multiples of 28 (Qwen2.5-VL: patch 14 x spatial merge 2), then shrunk in steps of 28 until
``width x height <= model.max_pixels``; the Qwen2.5-VL processor then leaves them unchanged, so
the grounding answers, written in the *stored* image's pixels, are exactly what the model sees
(:func:`fit_size`). Boxes are scaled per axis and rounded half up (:func:`scale_box`); an object
whose box gets smaller than ``min_box_side`` (8 px) on a side, or whose area falls below
``min_object_area`` of the stored image, is dropped with a recorded reason.

Bad input
---------
Unreadable or truncated files, missing fields, boxes outside the image or degenerate raise
:class:`DataError` with a message naming the file or record and a ``reason`` code (the skip
report's, chosen where the problem is found; never by reading the message). Image files are read by
the library's one opener (:func:`read_rgb` -> :func:`refine_iqa_lib.io.open_image`): grayscale,
palette, RGBA (alpha dropped) and 16-bit / float pictures become RGB uint8, EXIF orientation is
applied, and pictures beyond its limits are refused (reason ``image refused``). With
``on_error="skip"`` the COCO / JSONL parsers record a :class:`Skip` for each bad record in
``source.skips`` instead of raising (the build reports them).

>>> fit_size(640, 427, 112)
(112, 84)
>>> fit_size(512, 512, 448, max_pixels=151200)
(364, 364)
>>> scale_box((10, 20, 110, 220), (200, 400), (100, 100))
(5, 5, 55, 55)
"""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
from PIL import Image

from refine_iqa_lib.io import ImageReadError, open_image

BBox = tuple[int, int, int, int]

#: Qwen2.5-VL: 14 px patches merged 2 x 2 -> stored sides are multiples of 28.
PATCH_MULTIPLE = 28
#: Smallest box side (px) of a stored object (the distortion engine's minimum).
MIN_BOX_SIDE = 8
#: Boxes given as floats may stick out of the image by this much (px) and are clipped.
EDGE_TOLERANCE = 1.0


class DataError(ValueError):
    """Bad input data; the message names the file or record and what was expected.

    ``reason`` is the skip-report code, set where the problem is found (see :data:`SKIP_REASONS`),
    so a caller that skips the item files it under the right reason without reading the message."""

    def __init__(self, message: str, reason: str = "invalid input"):
        super().__init__(message)
        self.reason = reason


#: Every reason code a parser or the pipeline files an item under in the skip report.
SKIP_REASONS = {
    "missing field": "a record lacks a required field",
    "missing box": "a COCO annotation has no bbox",
    "malformed record": "a JSONL line is not a JSON object",
    "unknown category": "a COCO annotation names a category_id not in 'categories'",
    "unknown image": "a COCO annotation names an image_id not in 'images'",
    "crowd annotation": "COCO iscrowd = 1 (a region of many objects, not one object)",
    "invalid box": "a box that is not four finite numbers",
    "degenerate box": "a box with x2 <= x1 or y2 <= y1",
    "box outside image": "a box beyond the image (more than EDGE_TOLERANCE px)",
    "object below min_object_area": "an object smaller than min_object_area of the image",
    "object too small after resize": "a box side below min_box_side px in the stored image",
    "duplicate object name": "a smaller box of a name that appears again in the image (the largest is kept)",
    "image file not found": "the image file does not exist",
    "unreadable image": "the image file cannot be decoded (zero-byte, truncated, not an image)",
    "image refused": "the opener refuses the picture (pixel limit, aspect ratio, pixel values; the detail names it)",
    "image size mismatch": "the decoded image's size differs from the size the annotations state",
}


@dataclass(frozen=True)
class Skip:
    """One item left out, with why: ``level`` is ``record``/``image``/``object``/``marked``."""

    item: str
    level: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict:
        return {"item": self.item, "level": self.level, "reason": self.reason, "detail": self.detail}


@dataclass(frozen=True)
class SceneObject:
    """A named object and its half-open pixel box ``(x1, y1, x2, y2)``."""

    name: str
    bbox: BBox

    def to_dict(self) -> dict:
        return {"name": self.name, "bbox": list(self.bbox)}


@dataclass
class SourceRecord:
    """One source image: a path or an array, plus its objects (boxes in that image's pixels)."""

    source_id: str
    objects: list[SceneObject]
    path: Path | None = None
    array: np.ndarray | None = None
    where: str = ""                      # human-readable origin, used in error messages
    size: tuple[int, int] | None = None  # (width, height) the annotations refer to, if stated
    meta: dict = field(default_factory=dict)

    def load(self) -> np.ndarray:
        """The image as ``H x W x 3`` uint8 RGB (raises :class:`DataError` naming the file)."""
        if self.array is not None:
            return self.array
        if self.path is None:
            raise DataError(f"{self.where or self.source_id}: record has neither an image path nor an array",
                            "missing field")
        img = read_rgb(self.path)
        if self.size is not None and (img.shape[1], img.shape[0]) != tuple(self.size):
            raise DataError(f"{self.path}: image is {img.shape[1]}x{img.shape[0]} but {self.where} says "
                            f"{self.size[0]}x{self.size[1]}; boxes would not match", "image size mismatch")
        return img


# --------------------------------------------------------------------------- image files
def read_rgb(path: str | os.PathLike) -> np.ndarray:
    """An image file as ``H x W x 3`` uint8 RGB, opened by :func:`refine_iqa_lib.io.open_image`
    (its rules: pixel limit, aspect ratio, EXIF orientation, bit depth); its errors become
    :class:`DataError` with the same message and reason code."""
    try:
        return np.asarray(open_image(path), dtype=np.uint8)
    except ImageReadError as e:
        raise DataError(str(e), e.reason) from e


# --------------------------------------------------------------------------- geometry
def fit_size(width: int, height: int, longest: int, max_pixels: int | None = None,
             multiple: int = PATCH_MULTIPLE) -> tuple[int, int]:
    """Stored size for a ``width x height`` image: longest side ``longest``, both sides multiples
    of ``multiple`` (at least one multiple), then shrunk by ``multiple`` on the longest side until
    ``w * h <= max_pixels``.

    >>> fit_size(451, 300, 112), fit_size(100, 1000, 112), fit_size(20, 10, 112)
    ((112, 84), (28, 112), (112, 56))
    """
    if width <= 0 or height <= 0:
        raise DataError(f"image size {width}x{height}: expected positive sides")
    if longest % multiple or longest < multiple:
        raise DataError(f"image_size {longest}: expected a positive multiple of {multiple}")
    target = longest
    while True:
        scale = target / max(width, height)
        w = max(multiple, int(math.floor(width * scale / multiple + 0.5)) * multiple)
        h = max(multiple, int(math.floor(height * scale / multiple + 0.5)) * multiple)
        if max_pixels is None or w * h <= max_pixels or target <= multiple:
            return w, h
        target -= multiple


def round_half_up(v: float) -> int:
    return int(math.floor(v + 0.5))


def scale_box(bbox: Sequence[int], old_size: tuple[int, int], new_size: tuple[int, int]) -> BBox:
    """Scale a half-open box from an image of ``old_size = (w, h)`` to ``new_size``, per axis."""
    sx, sy = new_size[0] / old_size[0], new_size[1] / old_size[1]
    x1, y1, x2, y2 = bbox
    out = (round_half_up(x1 * sx), round_half_up(y1 * sy), round_half_up(x2 * sx), round_half_up(y2 * sy))
    return (min(max(out[0], 0), new_size[0]), min(max(out[1], 0), new_size[1]),
            min(max(out[2], 0), new_size[0]), min(max(out[3], 0), new_size[1]))


def check_box(bbox: Any, width: int, height: int, where: str) -> BBox:
    """Validate a half-open ``[x1, y1, x2, y2]`` box against a ``width x height`` image.

    Float coordinates are rounded outward; a box sticking out by at most 1 px is clipped.
    Anything else outside the image, degenerate (``x2 <= x1``), non-numeric or not of length 4
    raises :class:`DataError` naming ``where``.

    >>> check_box([0.4, 1, 10.2, 9], 20, 20, "x")
    (0, 1, 11, 9)
    >>> check_box([5, 5, 5, 9], 20, 20, "img.png object 'cup'")
    Traceback (most recent call last):
    ...
    refine_iqa_lib.data.sources.DataError: img.png object 'cup': degenerate box [5, 5, 5, 9]; expected x1 < x2 and y1 < y2
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4:
        raise DataError(f"{where}: box {bbox!r}; expected [x1, y1, x2, y2]", "invalid box")
    try:
        vals = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise DataError(f"{where}: box {bbox!r} has non-numeric coordinates", "invalid box") from None
    if any(isinstance(v, bool) for v in bbox) or not all(math.isfinite(v) for v in vals):
        raise DataError(f"{where}: box {bbox!r} has non-numeric coordinates", "invalid box")
    x1, y1, x2, y2 = vals
    shown = [int(v) if float(v).is_integer() else v for v in vals]
    if x2 <= x1 or y2 <= y1:
        raise DataError(f"{where}: degenerate box {shown}; expected x1 < x2 and y1 < y2", "degenerate box")
    t = EDGE_TOLERANCE
    if x1 < -t or y1 < -t or x2 > width + t or y2 > height + t:
        raise DataError(f"{where}: box {shown} is outside the {width}x{height} image", "box outside image")
    bx = (max(0, math.floor(x1)), max(0, math.floor(y1)), min(width, math.ceil(x2)), min(height, math.ceil(y2)))
    if bx[2] <= bx[0] or bx[3] <= bx[1]:
        raise DataError(f"{where}: box {shown} is outside the {width}x{height} image", "box outside image")
    return bx


def box_area(b: Sequence[int]) -> int:
    return max(0, b[2] - b[0]) * max(0, b[3] - b[1])


def intersection(a: Sequence[int], b: Sequence[int]) -> int:
    return box_area((max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])))


def iou(a: Sequence[int], b: Sequence[int]) -> float:
    """Intersection over union of two half-open boxes.

    >>> iou((0, 0, 10, 10), (5, 0, 15, 10))
    0.3333333333333333
    """
    inter = intersection(a, b)
    union = box_area(a) + box_area(b) - inter
    return inter / union if union else 0.0


def resize_rgb(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Resize an RGB uint8 array to ``size = (w, h)`` with Pillow's Lanczos filter (no-op if equal)."""
    if (image.shape[1], image.shape[0]) == tuple(size):
        return image
    return np.asarray(Image.fromarray(image).resize(tuple(size), Image.LANCZOS), dtype=np.uint8)


def keep_largest_per_name(objects: Iterable[SceneObject]) -> tuple[list[SceneObject], list[SceneObject]]:
    """One box per name (the largest; ties: the first). Returns ``(kept, dropped)`` in input order."""
    objects = list(objects)
    best: dict[str, int] = {}
    for i, o in enumerate(objects):
        j = best.get(o.name)
        if j is None or box_area(o.bbox) > box_area(objects[j].bbox):
            best[o.name] = i
    chosen = set(best.values())
    return ([o for i, o in enumerate(objects) if i in chosen], [o for i, o in enumerate(objects) if i not in chosen])


# --------------------------------------------------------------------------- sources
class Source:
    """Base class: ``len(source)`` records, ``source.record(i)``, problems found while parsing in
    ``source.skips``. ``bounded = False`` for generators (the embedded composites)."""

    name = "source"
    bounded = True
    skips: list[Skip]

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def record(self, index: int) -> SourceRecord:  # pragma: no cover - abstract
        raise NotImplementedError

    def candidates(self, n: int, seed: int) -> list[int]:
        """The ``n`` record indices drawn from the pool: a seeded permutation, so that the first
        ``n`` of a larger draw are the same records (prefix-stable)."""
        total = len(self)
        order = np.random.default_rng([int(seed), 0x5EED]).permutation(total)
        return [int(i) for i in order[: min(n, total)]]

    def describe(self) -> dict:
        return {"source": self.name, "pool": len(self) if self.bounded else None}


def _fail(on_error: str, skips: list[Skip], item: str, reason: str, detail: str, level: str = "record") -> None:
    if on_error == "raise":
        raise DataError(detail, reason)
    skips.append(Skip(item=item, level=level, reason=reason, detail=detail))


def _drop(skips: list[Skip], item: str, reason: str, detail: str) -> None:
    """Record an object a parser's filter leaves out (never an error, whatever ``on_error``)."""
    skips.append(Skip(item=item, level="object", reason=reason, detail=detail))


def _check_on_error(on_error: str) -> str:
    if on_error not in ("raise", "skip"):
        raise ValueError(f"on_error {on_error!r}: expected 'raise' or 'skip'")
    return on_error


class _FileSource(Source):
    """A source parsed up front from an annotations file plus an image folder."""

    def __init__(self, annotations: str | os.PathLike, root: str | os.PathLike, on_error: str = "raise"):
        self.annotations = Path(annotations)
        self.root = Path(root)
        self.on_error = _check_on_error(on_error)
        self.skips = []

    def __len__(self) -> int:
        return len(self.records)

    def record(self, index: int) -> SourceRecord:
        return self.records[index]

    def describe(self) -> dict:
        return {**super().describe(), "annotations": str(self.annotations), "root": str(self.root)}


class CocoSource(_FileSource):
    """COCO ``instances_*.json`` + image folder (see the module docstring for the rules)."""

    name = "coco"

    def __init__(self, annotations: str | os.PathLike, root: str | os.PathLike, min_object_area: float = 0.0,
                 on_error: str = "raise"):
        super().__init__(annotations, root, on_error)
        self.records = self._parse(float(min_object_area))

    def _parse(self, min_area: float) -> list[SourceRecord]:
        f = self.annotations
        if not f.is_file():
            raise DataError(f"{f}: COCO annotations file not found")
        try:
            data = json.loads(f.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise DataError(f"{f}: not valid JSON ({e})") from e
        if not isinstance(data, dict):
            raise DataError(f"{f}: expected a JSON object with 'images', 'annotations', 'categories'")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(f"{f}: missing or non-list field {key!r}; a COCO instances file has "
                                "'images', 'annotations' and 'categories' lists")
        fail = lambda item, reason, detail: _fail(self.on_error, self.skips, item, reason, detail)  # noqa: E731

        categories: dict[int, str] = {}
        for n, c in enumerate(data["categories"]):
            missing = [k for k in ("id", "name") if not isinstance(c, dict) or k not in c]
            if missing:
                raise DataError(f"{f}: categories[{n}] is missing field(s) {missing}")
            categories[c["id"]] = str(c["name"])

        images: dict[Any, dict] = {}
        for n, im in enumerate(data["images"]):
            missing = [k for k in ("id", "file_name", "width", "height") if not isinstance(im, dict) or k not in im]
            if missing:
                fail(f"images[{n}]", "missing field", f"{f}: images[{n}] (id {im.get('id') if isinstance(im, dict) else '?'}) "
                     f"is missing field(s) {missing}")
                continue
            images[im["id"]] = im

        per_image: dict[Any, list[SceneObject]] = {k: [] for k in images}
        ann_ids: dict[int, Any] = {}  # id(SceneObject) -> its annotation id, for the skip report
        for n, a in enumerate(data["annotations"]):
            missing = [k for k in ("image_id", "category_id", "bbox") if not isinstance(a, dict) or k not in a]
            aid = a.get("id", n) if isinstance(a, dict) else n
            where = f"{f}: annotation id {aid}"
            if missing:
                fail(f"annotation {aid}", "missing box" if missing == ["bbox"] else "missing field",
                     f"{where} is missing field(s) {missing}")
                continue
            if a.get("iscrowd", 0):
                _drop(self.skips, f"annotation {aid}", "crowd annotation",
                      f"{where}: iscrowd = {a['iscrowd']!r} (a crowd region, not one object)")
                continue
            if a["category_id"] not in categories:
                fail(f"annotation {aid}", "unknown category", f"{where}: unknown category_id {a['category_id']!r}")
                continue
            im = images.get(a["image_id"])
            if im is None:
                fail(f"annotation {aid}", "unknown image", f"{where}: image_id {a['image_id']!r} is not in 'images'")
                continue
            bb = a["bbox"]
            if not isinstance(bb, (list, tuple)) or len(bb) != 4:
                fail(f"annotation {aid}", "invalid box", f"{where}: bbox {bb!r}; expected [x, y, w, h]")
                continue
            try:
                x, y, w, h = (float(v) for v in bb)
            except (TypeError, ValueError) as e:
                fail(f"annotation {aid}", "invalid box", f"{where}: bbox {bb!r} ({e}); expected four numbers")
                continue
            try:
                box = check_box([x, y, x + w, y + h], int(im["width"]), int(im["height"]),
                                f"{where} (image {im['file_name']})")
            except DataError as e:
                fail(f"annotation {aid}", e.reason, str(e))
                continue
            W, H = int(im["width"]), int(im["height"])
            if box_area(box) < min_area * W * H:  # small objects are a filter, not an error (COCO has many)
                _drop(self.skips, f"annotation {aid}", "object below min_object_area",
                      f"{where} (image {im['file_name']}): box {list(box)} covers {box_area(box)} px "
                      f"< min_object_area {min_area} x {W}x{H}")
                continue
            per_image[a["image_id"]].append(SceneObject(categories[a["category_id"]], box))
            ann_ids[id(per_image[a["image_id"]][-1])] = aid

        records = []
        for img_id in sorted(images, key=lambda k: (str(type(k)), k)):
            im = images[img_id]
            objs, dup = keep_largest_per_name(per_image[img_id])
            for o in dup:
                _drop(self.skips, f"annotation {ann_ids[id(o)]}", "duplicate object name",
                      f"{f}: annotation id {ann_ids[id(o)]} (image {im['file_name']}): {o.name!r} appears again "
                      f"with a larger box; box {list(o.bbox)} left out")
            records.append(SourceRecord(
                source_id=f"coco:{im['file_name']}", objects=objs, path=self.root / str(im["file_name"]),
                where=f"{f} image id {img_id}", size=(int(im["width"]), int(im["height"]))))
        return records


class JsonlSource(_FileSource):
    """A folder of images + a JSONL of ``{"image", "objects": [{"name", "bbox"}]}`` records."""

    name = "jsonl"

    def __init__(self, annotations: str | os.PathLike, root: str | os.PathLike, on_error: str = "raise"):
        super().__init__(annotations, root, on_error)
        self.records = self._parse()

    def _parse(self) -> list[SourceRecord]:
        f = self.annotations
        if not f.is_file():
            raise DataError(f"{f}: objects JSONL file not found")
        records = []
        fail = lambda item, reason, detail: _fail(self.on_error, self.skips, item, reason, detail)  # noqa: E731
        with f.open(encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                where = f"{f}:{n}"
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    fail(where, "malformed record", f"{where}: not a JSON object ({e})")
                    continue
                if not isinstance(row, dict) or "image" not in row or "objects" not in row:
                    fail(where, "missing field", f"{where}: expected {{\"image\": ..., \"objects\": [...]}}, "
                         f"missing {[k for k in ('image', 'objects') if not isinstance(row, dict) or k not in row]}")
                    continue
                if not isinstance(row["objects"], list):
                    fail(where, "missing field", f"{where}: 'objects' must be a list of {{\"name\", \"bbox\"}}")
                    continue
                objs, ok = [], True
                for k, o in enumerate(row["objects"]):
                    if not isinstance(o, dict) or "name" not in o or "bbox" not in o:
                        fail(where, "missing field", f"{where}: objects[{k}] needs 'name' and 'bbox'")
                        ok = False
                        break
                    b = o["bbox"]
                    if not (isinstance(b, (list, tuple)) and len(b) == 4
                            and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in b)):
                        fail(where, "invalid box", f"{where}: objects[{k}] ({o['name']!r}) bbox {b!r}; expected [x1, y1, x2, y2]")
                        ok = False
                        break
                    # raw coordinates; checked against the real image size when the image is read
                    objs.append(SceneObject(str(o["name"]), tuple(b)))  # type: ignore[arg-type]
                if not ok:
                    continue
                objs, dup = keep_largest_per_name(objs)
                for o in dup:
                    _drop(self.skips, f"{where}/{o.name}", "duplicate object name",
                          f"{where} ({row['image']}): {o.name!r} appears again with a larger box; "
                          f"box {list(o.bbox)} left out")
                records.append(SourceRecord(source_id=f"jsonl:{row['image']}", objects=objs,
                                            path=self.root / str(row["image"]), where=where))
        return records
