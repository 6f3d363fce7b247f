"""Small I/O helpers shared by every stage: atomic writes, JSON/JSONL, seeding.

Every file the project writes goes through :func:`atomic_write` (temp file in the same folder,
``fsync``, then ``os.replace``), so a killed job never leaves a truncated file behind.
"""
from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import random
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

#: The repository root (the folder holding ``refine_iqa_lib/``); relative paths in configs and
#: result files are relative to it.
REPO_ROOT = Path(__file__).resolve().parent.parent

log = logging.getLogger(__name__)

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success rename it over ``path``.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> with atomic_write(d / "a.txt") as f:
    ...     _ = f.write("hello")
    >>> (d / "a.txt").read_text()
    'hello'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Build a folder atomically: yield a temp folder beside ``path``; on success it replaces
    ``path`` (an older copy is removed), on failure it is deleted and ``path`` is left as it was.

    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "built"
    >>> with atomic_dir(d) as tmp:
    ...     _ = (tmp / "x.txt").write_text("1")
    >>> sorted(p.name for p in d.iterdir())
    ['x.txt']
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        yield tmp
        os.chmod(tmp, 0o777 & ~_UMASK)
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def build_lock(path: str | os.PathLike) -> Iterator[None]:
    """Serialise processes that build the same folder (an exclusive ``flock`` on a ``.<name>.lock``
    file beside it). Callers re-check their cache stamp inside the lock, so when two ranks of a
    distributed job start together one builds and the other reuses its result."""
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.parent / f".{path.name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Atomically write ``data`` to ``path``."""
    with atomic_write(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8) to ``path``."""
    with atomic_write(path, "w", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, indent: int = 2) -> Path:
    """Atomically write ``obj`` as JSON with sorted keys (byte-stable output)."""
    return write_text(path, json.dumps(obj, indent=indent, sort_keys=True, default=_json_default) + "\n")


def write_jsonl(path: str | os.PathLike, rows: Iterable[dict]) -> Path:
    """Atomically write rows as JSON lines (sorted keys, so identical rows give identical bytes)."""
    text = "".join(json.dumps(r, sort_keys=True, default=_json_default) + "\n" for r in rows)
    return write_text(path, text)


def read_json(path: str | os.PathLike) -> Any:
    """Read a JSON file; a missing or malformed file raises an error naming it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a JSON file, found nothing")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    """Read a JSON-lines file; a malformed line raises an error naming the file and line number."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: expected a JSONL file, found nothing")
    rows = []
    with path.open(encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}:{n}: not a JSON object ({e})") from e
    return rows


def append_jsonl(path: str | os.PathLike, row: dict) -> None:
    """Append one JSON line and fsync (for metrics logs that must survive a kill)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a", encoding="utf-8") as f:
        f.write(json.dumps(row, sort_keys=True, default=_json_default) + "\n")
        f.flush()
        os.fsync(f.fileno())


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and (if imported) torch."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:  # pragma: no cover
        pass


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# --------------------------------------------------------------------------------------------
# images, sub-samples, portable paths

#: Pictures with more pixels than this are refused before their pixels are decoded (120
#: megapixels: every phone camera's full-resolution mode up to 108 MP, 12,000 x 9,000, passes).
DEFAULT_PIXEL_LIMIT = 120_000_000
#: The largest aspect ratio (long side / short side) the Qwen2-VL / Qwen2.5-VL image processor
#: accepts (``smart_resize`` raises above it); a longer picture is refused here, naming it.
MAX_ASPECT_RATIO = 200.0
#: The largest value of each integer container whose pictures are scaled to 8 bits.
_UINT16_MAX = 65535


class ImageReadError(ValueError):
    """An image file that is missing, cannot be decoded or is refused by :func:`open_image`; the
    message names the file and why, ``reason`` is a short code (``image file not found``,
    ``unreadable image``, ``image refused``) that callers file the picture under."""

    def __init__(self, message: str, reason: str = "unreadable image"):
        super().__init__(message)
        self.reason = reason


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """An image file that does not exist (also a ``FileNotFoundError``)."""

    def __init__(self, message: str):
        super().__init__(message, "image file not found")


class ImageRefusedError(ImageReadError):
    """A picture that decodes but is refused by a stated rule of :func:`open_image` (pixel limit,
    aspect ratio, pixel values that cannot be scaled to 8 bits); the message names the limit."""

    def __init__(self, message: str):
        super().__init__(message, "image refused")


@dataclass(frozen=True)
class ImageRules:
    """The settings of :func:`open_image`: ``pixel_limit`` (pictures with more pixels are refused
    before decoding) and ``exif_orientation`` (turn a picture upright by its EXIF orientation tag;
    ``False`` keeps the pixels as stored). ``from_config`` reads the ``images`` section."""

    pixel_limit: int = DEFAULT_PIXEL_LIMIT
    exif_orientation: bool = True

    def __post_init__(self):
        if int(self.pixel_limit) < 1:
            raise ValueError(f"image pixel limit {self.pixel_limit}: expected >= 1")

    @classmethod
    def from_config(cls, cfg) -> "ImageRules":
        return cls(int(cfg.images.pixel_limit), bool(cfg.images.exif_orientation))


_RULES = [ImageRules()]


def image_rules() -> ImageRules:
    """The rules :func:`open_image` applies when a call names none (process-wide; see
    :func:`using_image_rules`)."""
    return _RULES[-1]


@contextlib.contextmanager
def using_image_rules(rules: "ImageRules | Any") -> Iterator[ImageRules]:
    """Apply ``rules`` (an :class:`ImageRules` or a config with an ``images`` section) to every
    :func:`open_image` call without rules of its own inside the block, e.g. everything an
    evaluation or a training run decodes; worker threads and forked processes see them too.

    >>> with using_image_rules(ImageRules(pixel_limit=100)):
    ...     image_rules().pixel_limit
    100
    >>> image_rules().pixel_limit == DEFAULT_PIXEL_LIMIT
    True
    """
    rules = rules if isinstance(rules, ImageRules) else ImageRules.from_config(rules)
    _RULES.append(rules)
    try:
        yield rules
    finally:
        _RULES.remove(rules)


def _pixels(n: int) -> str:
    return f"{n / 1e6:.1f} megapixels" if n >= 1_000_000 else f"{n:,} pixels"


def check_picture_size(width: int, height: int, pixel_limit: int = DEFAULT_PIXEL_LIMIT) -> str | None:
    """Why a ``width x height`` picture is refused (``None``: it is not): no pixels, more pixels
    than ``pixel_limit``, or an aspect ratio above :data:`MAX_ASPECT_RATIO` (the processor's).

    >>> print(check_picture_size(3, 4000))
    aspect ratio 1333.3:1 (3x4000) is above the image processor's limit of 200:1
    >>> print(check_picture_size(12000, 12000))
    12000x12000 = 144.0 megapixels is above the pixel limit of 120.0 megapixels (images.pixel_limit, refine-iqa score --pixel-limit)
    >>> check_picture_size(640, 480) is None
    True
    """
    if width < 1 or height < 1:
        return f"{width}x{height}: the picture has no pixels"
    if width * height > pixel_limit:
        return (f"{width}x{height} = {_pixels(width * height)} is above the pixel limit of "
                f"{_pixels(pixel_limit)} (images.pixel_limit, refine-iqa score --pixel-limit)")
    ratio = max(width, height) / min(width, height)
    if ratio > MAX_ASPECT_RATIO:
        return (f"aspect ratio {ratio:.1f}:1 ({width}x{height}) is above the image processor's limit of "
                f"{MAX_ASPECT_RATIO:.0f}:1")
    return None


def to_rgb8(pixels: Any) -> np.ndarray:
    """``H x W x 3`` uint8 RGB from an array of any bit depth, scaled by the range its type holds;
    raises ``ValueError`` (saying why) for values that range cannot hold - never clips silently.

    * uint8: as is; bool: 0 / 255;
    * 16-bit (uint16, PIL mode ``I;16``): ``round(v * 255 / 65535)``, so 0 -> 0 and 65535 -> 255;
    * 32-bit integers (PIL mode ``I``, which is how 16-bit files have long been decoded): values
      must lie in 0..65535 and are scaled as 16-bit; values up to 255 only are 8-bit data in a
      wider container and are kept as they are;
    * floats (PIL mode ``F``): values must be finite and in [0, 1] (the float convention), then
      ``round(v * 255)``.

    A picture is never stretched to its own minimum and maximum: that would erase the exposure
    and contrast a quality score is about. Gray (``H x W``) is repeated into three channels; a
    fourth channel (alpha) is dropped.

    >>> to_rgb8(np.array([[0, 257, 65535]], dtype=np.uint16))[0, :, 0].tolist()
    [0, 1, 255]
    >>> to_rgb8(np.array([[0.0, 0.5, 1.0]], dtype=np.float32))[0, :, 0].tolist()
    [0, 128, 255]
    >>> to_rgb8(np.array([[0.0, 2.0]], dtype=np.float32))
    Traceback (most recent call last):
    ...
    ValueError: floating-point values in [0, 2]; expected values in [0, 1]
    """
    a = np.asarray(pixels)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[2] not in (3, 4)):
        raise ValueError(f"pixel array of shape {a.shape}; expected H x W (gray), H x W x 3 (RGB) or H x W x 4")
    if a.ndim == 3:
        a = a[..., :3]
    if a.dtype == np.uint8:
        out = a
    elif a.dtype == bool:
        out = a.astype(np.uint8) * 255
    elif np.issubdtype(a.dtype, np.floating):
        if a.size and not np.isfinite(a).all():
            raise ValueError("floating-point values with NaN or infinity; expected finite values in [0, 1]")
        lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
        if lo < 0.0 or hi > 1.0:
            raise ValueError(f"floating-point values in [{lo:g}, {hi:g}]; expected values in [0, 1]")
        out = np.rint(a.astype(np.float64) * 255.0).astype(np.uint8)
    elif np.issubdtype(a.dtype, np.integer):
        lo, hi = (int(a.min()), int(a.max())) if a.size else (0, 0)
        if lo < 0 or hi > _UINT16_MAX:
            raise ValueError(f"integer values in {lo}..{hi}; expected 0..{_UINT16_MAX} (8- or 16-bit data)")
        if a.dtype.itemsize <= 2 or hi > 255:
            out = np.rint(a.astype(np.float64) * (255.0 / _UINT16_MAX)).astype(np.uint8)
        else:
            out = a.astype(np.uint8)
    else:
        raise ValueError(f"pixels of type {a.dtype}; expected integers or floats")
    if out.ndim == 2:
        out = np.repeat(out[..., None], 3, axis=2)
    return np.ascontiguousarray(out)


#: PIL modes whose pixels :func:`to_rgb8` scales (every other mode goes through ``convert("RGB")``).
_WIDE_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_PIL_LIMIT_LOCK = threading.Lock()
#: The EXIF tag of a picture's orientation (1 = upright as stored).
_EXIF_ORIENTATION = 0x0112


def _open_header(path: Path):
    """``Image.open`` (header only) with PIL's decompression-bomb check switched off for this call:
    the size is checked right after against :class:`ImageRules`' ``pixel_limit`` (PIL would warn
    above 89.5 megapixels and refuse above 179, whatever the limit). The lock keeps concurrent
    openers of this module from seeing each other's setting."""
    from PIL import Image

    with _PIL_LIMIT_LOCK:
        saved = Image.MAX_IMAGE_PIXELS
        Image.MAX_IMAGE_PIXELS = None
        try:
            return Image.open(path)
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _orient(im, upright: bool):
    """``im`` turned upright by its EXIF orientation (``upright``), or as stored; either way the
    result carries no orientation still to apply, so opening it again changes nothing."""
    from PIL import ImageOps

    exif = im.getexif()
    if exif.get(_EXIF_ORIENTATION, 1) == 1:
        return im
    if upright:
        return ImageOps.exif_transpose(im)
    del exif[_EXIF_ORIENTATION]
    return im


def _to_rgb_image(im, where: str):
    """A PIL image of any mode as an RGB PIL image (see :func:`to_rgb8` for the wide modes)."""
    from PIL import Image

    if im.mode == "RGB":
        return im
    if im.mode in _WIDE_MODES:
        try:
            return Image.fromarray(to_rgb8(np.asarray(im)))
        except ValueError as e:
            raise ImageRefusedError(f"{where}: {e}; save it as an 8- or 16-bit picture first") from None
    if im.mode in ("P", "PA") and "transparency" in im.info:
        im = im.convert("RGBA")
    return im.convert("RGB")


def open_image(image: Any, rules: ImageRules | None = None):
    """A fully decoded PIL RGB image (8 bits per channel) from a path, a PIL image or an array.

    The one image opener of the library: ``refine-iqa score``, the evaluations, the training data
    (its pre-check and the pictures the trainer sees) and the dataset adapters all decode through
    it, so one picture reads the same everywhere. With ``rules`` (default: :func:`image_rules`):

    1. **size, before decoding**: a picture with more pixels than ``rules.pixel_limit`` (default
       :data:`DEFAULT_PIXEL_LIMIT`), without pixels, or longer than :data:`MAX_ASPECT_RATIO` (the
       image processor's limit) raises :class:`ImageRefusedError` naming the limit. PIL's own
       decompression-bomb warning and error do not apply: this limit replaces them.
    2. **decoding**: completely (``load()``), so a truncated file fails here, naming the file;
       PIL's ``LOAD_TRUNCATED_IMAGES`` is never switched on.
    3. **orientation**: a picture with an EXIF orientation tag (a phone photograph stored
       sideways) is turned upright (``ImageOps.exif_transpose``) unless ``rules.exif_orientation``
       is false, which keeps the pixels as stored.
    4. **pixels**: 16-bit, 32-bit integer and floating-point pictures are scaled to 8 bits by the
       range their type holds (:func:`to_rgb8`), or refused naming the values found; gray,
       palette and CMYK pictures are converted, an alpha channel is dropped.

    Missing or undecodable files raise :class:`ImageReadError` (a ``ValueError``) with the path and
    the reason; a missing one is also a ``FileNotFoundError``.

    >>> open_image(np.zeros((4, 6, 3), dtype=np.uint8)).size
    (6, 4)
    >>> open_image("/no/such/picture.png")
    Traceback (most recent call last):
    ...
    refine_iqa_lib.io.ImageNotFoundError: /no/such/picture.png: image not found
    >>> open_image(np.zeros((3, 4000), dtype=np.uint8))
    Traceback (most recent call last):
    ...
    refine_iqa_lib.io.ImageRefusedError: <array>: aspect ratio 1333.3:1 (4000x3) is above the image processor's limit of 200:1
    """
    from PIL import Image

    rules = rules or image_rules()
    if isinstance(image, np.ndarray):
        where = "<array>"
        problem = check_picture_size(image.shape[1], image.shape[0], rules.pixel_limit) if image.ndim >= 2 else None
        if problem:
            raise ImageRefusedError(f"{where}: {problem}")
        try:
            return Image.fromarray(to_rgb8(image))
        except ValueError as e:
            raise ImageRefusedError(f"{where}: {e}") from None
    if isinstance(image, Image.Image):
        problem = check_picture_size(*image.size, rules.pixel_limit)
        if problem:
            raise ImageRefusedError(f"<image>: {problem}")
        return _to_rgb_image(_orient(image, rules.exif_orientation), "<image>")
    path = Path(image)
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: image not found")
    try:
        im = _open_header(path)
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
    with im:
        problem = check_picture_size(*im.size, rules.pixel_limit)
        if problem:
            raise ImageRefusedError(f"{path}: {problem}; not decoded")
        try:
            im.load()
            im = _orient(im, rules.exif_orientation)
        except Exception as e:
            raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e
        return _to_rgb_image(im, str(path))


@dataclass(frozen=True)
class ImageCheck:
    """Outcome of :func:`check_images`: the listed files that are missing and those that exist but
    cannot be decoded (each with the reason)."""

    n_images: int
    missing: tuple[str, ...] = ()
    unreadable: tuple[tuple[str, str], ...] = ()
    max_examples: int = 5

    @property
    def ok(self) -> bool:
        return not self.missing and not self.unreadable

    @property
    def n_missing(self) -> int:
        return len(self.missing)

    @property
    def n_unreadable(self) -> int:
        return len(self.unreadable)

    @property
    def examples(self) -> tuple[str, ...]:
        """The first few bad paths (missing first, then unreadable)."""
        return (self.missing + tuple(p for p, _ in self.unreadable))[: self.max_examples]

    def bad(self) -> list[dict]:
        """Every bad file as ``{"image": path, "reason": why}`` (missing: ``file not found``)."""
        return ([{"image": p, "reason": "file not found"} for p in self.missing]
                + [{"image": p, "reason": r} for p, r in self.unreadable])

    def __str__(self) -> str:
        if self.ok:
            return f"all {self.n_images} image files present and readable"
        k = self.max_examples
        parts = []
        if self.missing:
            parts.append(f"{self.n_missing} of {self.n_images} image files missing, e.g. "
                         + ", ".join(self.missing[:k]))
        if self.unreadable:
            parts.append(f"{self.n_unreadable} of {self.n_images} image files unreadable, e.g. "
                         + "; ".join(f"{p} ({r})" for p, r in self.unreadable[:k]))
        return "; ".join(parts)

    def require(self, what: str, skip_unreadable: bool = False) -> list[dict]:
        """Raise :class:`ImageReadError` naming the bad files of ``what`` unless ``skip_unreadable``;
        return :meth:`bad` (the files a caller must leave out and report)."""
        if not self.ok and not skip_unreadable:
            raise ImageReadError(f"{what}: {self}. Replace or remove these files, or set "
                                 "eval.skip_unreadable=true to score the rest and list them in the result")
        if not self.ok:
            log.warning("%s: leaving out %d unreadable image(s): %s", what, len(self.bad()), self)
        return self.bad()


def _image_problem(path: str, rules: ImageRules | None = None) -> tuple[str, str | None]:
    """``("missing", None)``, ``("unreadable", reason)`` or ``("ok", None)`` for one file."""
    if not Path(path).is_file():
        return "missing", None
    try:
        open_image(path, rules).close()
    except ImageReadError as e:
        return "unreadable", str(e).removeprefix(f"{Path(path)}: ")
    return "ok", None


def check_images(paths: Any, workers: int = 8, max_examples: int = 5, progress: bool = True,
                 desc: str = "checking images", rules: ImageRules | None = None) -> ImageCheck:
    """Decode every listed image (:func:`open_image` with ``rules``, default :func:`image_rules`,
    in ``workers`` threads, with a ``tqdm.auto`` bar); report the files that are missing and those
    that cannot be used (zero-byte, truncated, not an image, or refused by a rule of the opener:
    the reason names the limit), each once. ``paths``: an iterable of paths, or a DataFrame with an
    ``image`` column.

    >>> print(check_images(["/nonexistent/a.png"], progress=False))
    1 of 1 image files missing, e.g. /nonexistent/a.png
    """
    if hasattr(paths, "columns"):
        if "image" not in paths.columns:
            raise ValueError(f"check_images: no 'image' column; found {list(paths.columns)}")
        paths = paths["image"]
    unique = list(dict.fromkeys(str(p) for p in paths if p is not None and str(p)))
    from concurrent.futures import ThreadPoolExecutor

    from tqdm.auto import tqdm

    with ThreadPoolExecutor(max_workers=max(1, int(workers))) as pool:
        results = list(tqdm(pool.map(functools.partial(_image_problem, rules=rules or image_rules()), unique),
                            total=len(unique), desc=desc,
                            disable=not progress, leave=False))
    missing = tuple(p for p, (kind, _) in zip(unique, results) if kind == "missing")
    unreadable = tuple((p, r) for p, (kind, r) in zip(unique, results) if kind == "unreadable")
    return ImageCheck(len(unique), missing, unreadable, max_examples)


def subsample(df, max_samples: int, seed: int = 0):
    """``max_samples`` rows of a DataFrame drawn without replacement by a seeded Generator (all
    rows if ``max_samples`` is 0 or not smaller than the frame), kept in their original order.

    >>> import pandas as pd
    >>> subsample(pd.DataFrame({"a": range(10)}), 3, seed=0)["a"].tolist()
    [5, 6, 9]
    """
    if max_samples <= 0 or max_samples >= len(df):
        return df.reset_index(drop=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=int(max_samples), replace=False))
    return df.iloc[idx].reset_index(drop=True)


def repo_relative(path: str | os.PathLike) -> str:
    """``path`` relative to the repository root when it lies inside it (as committed result files
    record it, so that the same numbers on another machine leave the same files), else absolute.

    >>> repo_relative(REPO_ROOT / "results" / "tiny"), repo_relative("/elsewhere/model")
    ('results/tiny', '/elsewhere/model')
    """
    for p in (Path(os.path.abspath(path)), Path(path).resolve()):
        try:
            return p.relative_to(REPO_ROOT).as_posix()
        except ValueError:
            continue
    return str(path)
