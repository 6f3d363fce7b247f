"""The first stand-in's scenes: 8 photographs with objects annotated by hand, and composites of them.

The ``embedded`` perception source (``perception.source: embedded``, the offline default;
:class:`EmbeddedSource`): the photographs :data:`SCENE_PHOTOS` (read by
:func:`refine_iqa_lib.standin.world.load_photo`) with objects annotated by hand in
``refine_iqa_lib/standin/assets/embedded_objects.json`` (indices ``0 .. 7``), followed by an
unbounded sequence of *composite scenes*: crops of annotated objects pasted onto a random window
of another photograph (colour photos or the grayscale textures :data:`GRAY_TEXTURES` converted to
RGB), at a random scale and position, never overlapping each other or the background's own (fully
visible) annotated objects, so that every recorded box is exact. Composite ``i`` is a pure
function of ``(seed, i)``. Records follow :mod:`refine_iqa_lib.data.sources` (its stored-image
geometry, boxes and errors).

Licences: scikit-image's sample photographs are public domain / CC0 (see
``skimage/data/README.txt``); scikit-learn's ``china.jpg`` and ``flower.jpg`` are CC BY 2.0.
"""
from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from refine_iqa_lib.data.sources import (MIN_BOX_SIDE, DataError, SceneObject, Source, SourceRecord, box_area,
                                         check_box, fit_size, intersection, resize_rgb, round_half_up)
from refine_iqa_lib.io import open_image
from refine_iqa_lib.standin.world import load_photo

__all__ = ["SCENE_PHOTOS", "GRAY_TEXTURES", "ANNOTATIONS_PATH", "COMPOSITE_PASTES", "COMPOSITE_SCALE",
           "COMPOSITE_TRIES", "load_scene_picture", "load_embedded_annotations", "EmbeddedSource"]

#: The 8 colour photographs of the scenes, the embedded scoring set and the probes: ids of
#: :mod:`refine_iqa_lib.standin.world`'s catalogue, installed with scikit-image and scikit-learn.
SCENE_PHOTOS = ("astronaut", "chelsea", "china", "coffee", "flower", "motorcycle_left", "motorcycle_right", "rocket")
#: Grayscale textures of scikit-image (name -> file in its data folder), composite backgrounds after
#: conversion to RGB. Not in the world's catalogue.
GRAY_TEXTURES = {"camera": "camera.png", "coins": "coins.png", "moon": "moon.png", "grass": "grass.png",
                 "gravel": "gravel.png", "brick": "brick.png"}
#: Hand annotations of the embedded photographs.
ANNOTATIONS_PATH = Path(__file__).resolve().parent / "assets" / "embedded_objects.json"


@lru_cache(maxsize=len(GRAY_TEXTURES))
def _texture(name: str) -> np.ndarray:
    import skimage

    path = Path(skimage.data_dir) / GRAY_TEXTURES[name]
    if not path.is_file():
        raise FileNotFoundError(f"{path}: the grayscale texture {name!r} is missing from the installed scikit-image")
    arr = np.array(open_image(path), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def load_scene_picture(name: str) -> np.ndarray:
    """A picture of the scenes as ``H x W x 3`` uint8 RGB (a fresh, writable copy): a grayscale
    texture of :data:`GRAY_TEXTURES`, or else a photograph of the world
    (:func:`refine_iqa_lib.standin.world.load_photo`).

    >>> load_scene_picture("chelsea").shape, load_scene_picture("moon").shape
    ((300, 451, 3), (512, 512, 3))
    """
    if name in GRAY_TEXTURES:
        return _texture(name).copy()
    return load_photo(name)


@lru_cache(maxsize=1)
def load_embedded_annotations(path: str | None = None) -> dict[str, list[SceneObject]]:
    """Hand annotations of the embedded photographs: ``{photo: [SceneObject, ...]}`` (original pixels)."""
    p = Path(path) if path else ANNOTATIONS_PATH
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise DataError(f"{p}: cannot read the embedded annotations ({e})") from e
    out = {}
    for name, entry in data.get("photos", {}).items():
        if name not in SCENE_PHOTOS:
            raise DataError(f"{p}: photo {name!r} is not an embedded photo; valid: {sorted(SCENE_PHOTOS)}")
        w, h = int(entry["width"]), int(entry["height"])
        objs = [SceneObject(str(o["name"]), check_box(o["bbox"], w, h, f"{p} photo {name!r} object {o['name']!r}"))
                for o in entry["objects"]]
        if len({o.name for o in objs}) != len(objs):
            raise DataError(f"{p}: photo {name!r} repeats an object name")
        out[name] = objs
    return out


#: Composite scenes: how many crops are pasted (inclusive range) and how large (longest side of the
#: pasted crop as a fraction of the canvas's shorter side).
COMPOSITE_PASTES = (2, 4)
COMPOSITE_SCALE = (0.28, 0.6)
COMPOSITE_TRIES = 40


class EmbeddedSource(Source):
    """The offline default: the annotated photographs, then composite scenes ``0, 1, 2, ...``."""

    name = "embedded"
    bounded = False

    def __init__(self, image_size: int = 112, max_pixels: int | None = None, seed: int = 0,
                 min_box_side: int = MIN_BOX_SIDE, min_object_area: float = 0.0):
        self.image_size = int(image_size)
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self.min_box_side = int(min_box_side)
        self.min_object_area = float(min_object_area)
        self.skips = []
        self.annotations = load_embedded_annotations()
        self.photos = sorted(self.annotations)
        self.backgrounds = sorted(SCENE_PHOTOS) + sorted(GRAY_TEXTURES)
        fit_size(1, 1, self.image_size)  # validates image_size
        for name in self.backgrounds:  # decode once here; forked build workers inherit the cache
            load_scene_picture(name)

    def __len__(self) -> int:
        return 2**31 - 1

    def candidates(self, n: int, seed: int) -> list[int]:
        """The photographs first, then composites in order (index ``k`` is always the same scene)."""
        return list(range(n))

    def describe(self) -> dict:
        return {"source": self.name, "pool": None, "photos": len(self.photos)}

    def record(self, index: int) -> SourceRecord:
        if index < 0:
            raise IndexError(index)
        if index < len(self.photos):
            name = self.photos[index]
            return SourceRecord(source_id=f"embedded:photo:{name}", objects=list(self.annotations[name]),
                                array=load_scene_picture(name), where=f"embedded photo {name!r}", meta={"photo": name})
        return self.composite(index - len(self.photos))

    def composite(self, i: int) -> SourceRecord:
        """Composite scene ``i``: a pure function of ``(seed, i)``."""
        rng = np.random.default_rng([self.seed, 0xC0, int(i)])
        bg_name = self.backgrounds[int(rng.integers(len(self.backgrounds)))]
        bg = load_scene_picture(bg_name)
        bh, bw = bg.shape[:2]
        aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5))))  # width / height of the canvas
        W, H = fit_size(max(1, round(1000 * aspect)), 1000, self.image_size, self.max_pixels)
        # background window with the canvas's aspect ratio, 55-100% of the largest that fits
        a = W / H
        ww_max = min(bw, bh * a)
        ww = ww_max * rng.uniform(0.55, 1.0)
        wh = ww / a
        x0 = rng.uniform(0, bw - ww)
        y0 = rng.uniform(0, bh - wh)
        win = (int(round(x0)), int(round(y0)), int(round(x0 + ww)), int(round(y0 + wh)))
        canvas = resize_rgb(np.ascontiguousarray(bg[win[1]:win[3], win[0]:win[2]]), (W, H)).copy()
        sx, sy = W / (win[2] - win[0]), H / (win[3] - win[1])

        objects: list[SceneObject] = []
        # the background photo's own annotated objects that lie fully inside the window
        for o in self.annotations.get(bg_name, []):
            x1, y1, x2, y2 = o.bbox
            if x1 >= win[0] and y1 >= win[1] and x2 <= win[2] and y2 <= win[3]:
                b = (round_half_up((x1 - win[0]) * sx), round_half_up((y1 - win[1]) * sy),
                     round_half_up((x2 - win[0]) * sx), round_half_up((y2 - win[1]) * sy))
                b = (max(0, b[0]), max(0, b[1]), min(W, b[2]), min(H, b[3]))
                if self._big_enough(b, W, H):
                    objects.append(SceneObject(o.name, b))

        pool = [(p, o) for p in self.photos for o in self.annotations[p]]
        want = int(rng.integers(COMPOSITE_PASTES[0], COMPOSITE_PASTES[1] + 1))
        pasted = []
        for _ in range(COMPOSITE_TRIES):
            if len(pasted) >= want:
                break
            photo, obj = pool[int(rng.integers(len(pool)))]
            L = rng.uniform(*COMPOSITE_SCALE) * min(W, H)
            ow, oh = obj.bbox[2] - obj.bbox[0], obj.bbox[3] - obj.bbox[1]
            f = L / max(ow, oh)
            pw, ph = max(1, int(round(ow * f))), max(1, int(round(oh * f)))
            px = int(rng.integers(0, W - pw + 1)) if pw <= W else -1
            py = int(rng.integers(0, H - ph + 1)) if ph <= H else -1
            if px < 0 or py < 0:
                continue
            box = (px, py, px + pw, py + ph)
            if obj.name in {o.name for o in objects} or not self._big_enough(box, W, H):
                continue
            if any(intersection(box, o.bbox) for o in objects):
                continue
            crop = load_scene_picture(photo)[obj.bbox[1]:obj.bbox[3], obj.bbox[0]:obj.bbox[2]]
            canvas[py:py + ph, px:px + pw] = resize_rgb(np.ascontiguousarray(crop), (pw, ph))
            objects.append(SceneObject(obj.name, box))
            pasted.append({"photo": photo, "object": obj.name, "bbox": list(box)})
        return SourceRecord(source_id=f"embedded:composite:{i:06d}", objects=objects, array=canvas,
                            where=f"embedded composite {i} (seed {self.seed})",
                            meta={"background": bg_name, "window": list(win), "pasted": pasted})

    def _big_enough(self, b: Sequence[int], W: int, H: int) -> bool:
        return (b[2] - b[0] >= self.min_box_side and b[3] - b[1] >= self.min_box_side
                and box_area(b) >= self.min_object_area * W * H)


