"""The embedded scenes: named cut-outs pasted on photographs, each scene cut from one split of the world.

The ``embedded`` perception source (``perception.source: embedded``, the offline default;
:class:`EmbeddedSource`) is the stand-in's COCO: an unbounded sequence of *composite scenes*, each
a window of one photograph of :mod:`refine_iqa_lib.standin.world` with :data:`PASTES` named
cut-outs (alpha-blended, at a random scale and place, never overlapping) whose recorded boxes are
the tight boxes of their masks. Scene ``k`` is a pure function of ``(seed, k)``.

Splits are declared, not drawn: scene ``k`` is *held out* when ``k % 5`` is in
:data:`HELDOUT_SLOTS` (2 of every 5 scenes) and *training* otherwise. A training scene takes its
photograph and cut-outs from the world's ``train`` split only; a held-out scene from the split
named by ``heldout`` (``test`` for the perception build, ``validation`` for the measurements that
choose settings). So a test scene shares no photograph, no cut-out and no pristine pixel with any
training scene, and its objects are held-out instances of names seen in training
(:func:`refine_iqa_lib.standin.world.assign_splits`). Each record says its side in
``meta["split"]`` (``train`` / ``test``), which the perception build keeps.

Records follow :mod:`refine_iqa_lib.data.sources` (stored-image geometry, boxes, errors); ``meta``
holds ``split``, ``world_split``, ``background`` (photo id), ``window`` (its pixels) and
``pasted`` (``object`` id, ``name``, ``bbox``).
"""
from __future__ import annotations

import numpy as np
from PIL import Image

from refine_iqa_lib.data.sources import (MIN_BOX_SIDE, SceneObject, Source, SourceRecord, box_area, fit_size,
                                         intersection)
from refine_iqa_lib.standin import world

__all__ = ["PASTES", "PASTE_SCALE", "HELDOUT_SLOTS", "scene_split_of", "photo_window", "paste_object",
           "compose_scene", "largest_object_scene", "EmbeddedSource"]

#: Cut-outs pasted per scene (inclusive range) and their longer side as a fraction of the canvas's
#: shorter side.
PASTES, PASTE_SCALE = (2, 4), (0.3, 0.6)
#: Scene ``k`` is held out when ``k % 5`` is one of these (40 % of the scenes).
HELDOUT_SLOTS = (0, 3)
_TRIES = 40
_SPLIT_CODE = {"train": 0, "validation": 1, "test": 2}


def scene_split_of(k: int) -> str:
    """``"test"`` (held out) or ``"train"`` for scene ``k``.

    >>> [scene_split_of(k) for k in range(6)]
    ['test', 'train', 'train', 'test', 'train', 'test']
    """
    return "test" if int(k) % 5 in HELDOUT_SLOTS else "train"


def photo_window(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, low: float = 0.45) -> np.ndarray:
    """A window of ``photo`` with the aspect of ``size = (W, H)``, covering ``low``-100 % of the
    largest such window (seeded place and scale), resized to ``size`` (Lanczos)."""
    W, H = size
    ph, pw = photo.shape[:2]
    aspect = W / H
    ww = min(pw, ph * aspect) * float(rng.uniform(low, 1.0))
    wh = ww / aspect
    x0, y0 = float(rng.uniform(0, pw - ww)), float(rng.uniform(0, ph - wh))
    win = (int(round(x0)), int(round(y0)), int(round(x0 + ww)), int(round(y0 + wh)))
    crop = np.ascontiguousarray(photo[win[1]:win[3], win[0]:win[2]])
    return np.array(Image.fromarray(crop).resize((W, H), Image.LANCZOS), dtype=np.uint8), win


def paste_object(canvas: np.ndarray, oid: str, longest: float, x: int, y: int) -> tuple[int, int, int, int] | None:
    """Alpha-blend cut-out ``oid``, resized so that its longer side is ``longest`` px, with its
    top-left corner at ``(x, y)`` into ``canvas`` (in place); returns the tight box of its mask
    (alpha > 0.5, half-open) or ``None`` when nothing of it is opaque."""
    rgb, alpha = world.load_object(oid)
    h, w = alpha.shape
    f = float(longest) / max(w, h)
    pw, ph = max(1, round(w * f)), max(1, round(h * f))
    rgba = np.asarray(Image.fromarray(np.dstack([rgb, alpha])).resize((pw, ph), Image.LANCZOS), dtype=np.float32)
    a = rgba[..., 3:] / 255.0
    region = canvas[y:y + ph, x:x + pw].astype(np.float32)
    canvas[y:y + ph, x:x + pw] = np.clip(np.rint(a * rgba[..., :3] + (1.0 - a) * region), 0, 255).astype(np.uint8)
    ys, xs = np.nonzero(a[..., 0] > 0.5)
    if not len(xs):
        return None
    return (x + int(xs.min()), y + int(ys.min()), x + int(xs.max()) + 1, y + int(ys.max()) + 1)


def compose_scene(world_split: str, rng: np.random.Generator, image_size: int, max_pixels: int | None = None,
                  min_box_side: int = MIN_BOX_SIDE, min_object_area: float = 0.0
                  ) -> tuple[np.ndarray, list[SceneObject], dict]:
    """One composite of ``world_split``'s photographs and cut-outs: ``(pixels, objects, meta)``
    (see the module docstring); every random choice from ``rng``."""
    photos, objs = world.photo_ids(world_split), world.object_ids(world_split)
    if not photos or not objs:
        raise ValueError(f"world split {world_split!r} has {len(photos)} photographs and {len(objs)} cut-outs; "
                         "expected some of each")
    bg = photos[int(rng.integers(len(photos)))]
    aspect = float(np.exp(rng.uniform(np.log(0.75), np.log(1.5))))   # width / height of the canvas
    W, H = fit_size(max(1, round(1000 * aspect)), 1000, image_size, max_pixels)
    canvas, win = photo_window(world.load_photo(bg), (W, H), rng)
    want = int(rng.integers(PASTES[0], PASTES[1] + 1))
    objects: list[SceneObject] = []
    frames: list[tuple[int, int, int, int]] = []
    pasted = []
    for _ in range(_TRIES):
        if len(objects) >= want:
            break
        oid = objs[int(rng.integers(len(objs)))]
        name = world.object_name(oid)
        longest = float(rng.uniform(*PASTE_SCALE)) * min(W, H)
        h, w = world.load_object(oid)[1].shape
        f = longest / max(w, h)
        pw, ph = max(1, round(w * f)), max(1, round(h * f))
        if pw > W or ph > H or name in {o.name for o in objects}:
            continue
        x, y = int(rng.integers(0, W - pw + 1)), int(rng.integers(0, H - ph + 1))
        frame = (x, y, x + pw, y + ph)
        if any(intersection(frame, b) for b in frames):
            continue
        trial = canvas.copy()
        box = paste_object(trial, oid, longest, x, y)
        if box is None or box[2] - box[0] < min_box_side or box[3] - box[1] < min_box_side \
                or box_area(box) < min_object_area * W * H:
            continue
        canvas = trial
        frames.append(frame)
        objects.append(SceneObject(name, box))
        pasted.append({"object": oid, "name": name, "bbox": list(box)})
    meta = {"world_split": world_split, "background": bg, "window": list(win), "pasted": pasted}
    return canvas, objects, meta


def largest_object_scene(size: int, seed: int = 0, world_split: str = "train") -> tuple[np.ndarray, tuple]:
    """A composite scene of ``size`` px (longest side) and the box of its largest object: what the
    distortion grid figure shows (``seed`` draws the scene)."""
    rng = np.random.default_rng([int(seed), 0x6D])
    for _ in range(20):
        canvas, objects, _ = compose_scene(world_split, rng, size)
        if objects:
            return canvas, max((o.bbox for o in objects), key=box_area)
    raise ValueError(f"no scene with an object in 20 draws (size {size}, seed {seed})")


class EmbeddedSource(Source):
    """The offline default: composite scenes ``0, 1, 2, ...`` with declared splits (module docstring)."""

    name = "embedded"
    bounded = False

    def __init__(self, image_size: int = 112, max_pixels: int | None = None, seed: int = 0,
                 min_box_side: int = MIN_BOX_SIDE, min_object_area: float = 0.0, heldout: str = "test"):
        if heldout not in ("test", "validation"):
            raise ValueError(f"heldout {heldout!r}: expected 'test' or 'validation' (the world split of held-out scenes)")
        self.image_size = int(image_size)
        self.max_pixels = max_pixels
        self.seed = int(seed)
        self.min_box_side = int(min_box_side)
        self.min_object_area = float(min_object_area)
        self.heldout = heldout
        self.skips = []
        fit_size(1, 1, self.image_size)  # validates image_size

    def __len__(self) -> int:
        return 2**31 - 1

    def candidates(self, n: int, seed: int) -> list[int]:
        """Scenes in order (index ``k`` is always the same scene)."""
        return list(range(n))

    def describe(self) -> dict:
        return {"source": self.name, "pool": None, "world": "refine_iqa_lib.standin.world",
                "photos": len(world.photo_ids()), "objects": len(world.object_ids()), "heldout": self.heldout,
                "heldout_slots": list(HELDOUT_SLOTS), "catalogue": world.catalogue_digest()}

    def record(self, index: int) -> SourceRecord:
        if index < 0:
            raise IndexError(index)
        split = scene_split_of(index)
        world_split = self.heldout if split == "test" else "train"
        rng = np.random.default_rng([self.seed, 0xC1, _SPLIT_CODE[world_split], int(index)])
        canvas, objects, meta = compose_scene(world_split, rng, self.image_size, self.max_pixels, self.min_box_side,
                                              self.min_object_area)
        return SourceRecord(source_id=f"embedded:scene:{index:06d}", objects=objects, array=canvas,
                            where=f"embedded scene {index} (seed {self.seed}, {world_split} pictures)",
                            meta={"split": split, **meta})
