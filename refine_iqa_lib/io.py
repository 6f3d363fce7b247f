"""Small I/O helpers shared by every stage: atomic writes, JSON/JSONL, seeding.

Every file the project writes goes through :func:`atomic_write` (temp file in the same folder,
``fsync``, then ``os.replace``), so a killed job never leaves a truncated file behind.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import shutil
import tempfile
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


class ImageReadError(ValueError):
    """An image file that is missing or cannot be decoded; the message names the file and why."""


class ImageNotFoundError(ImageReadError, FileNotFoundError):
    """An image file that does not exist (also a ``FileNotFoundError``)."""


def open_image(image: Any):
    """A fully decoded PIL RGB image from a path, a PIL image or a uint8 array.

    The one image-opening function of the library. A path is decoded completely (``load()``), so a
    truncated file fails here, naming the file, rather than later inside a processor; PIL's
    ``LOAD_TRUNCATED_IMAGES`` is never switched on. Missing or undecodable files raise
    :class:`ImageReadError` (a ``ValueError``) with the path and the reason.

    >>> import numpy as np
    >>> open_image(np.zeros((4, 6, 3), dtype=np.uint8)).size
    (6, 4)
    >>> open_image("/no/such/picture.png")
    Traceback (most recent call last):
    ...
    refine_iqa_lib.io.ImageNotFoundError: /no/such/picture.png: image not found
    """
    from PIL import Image

    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    if isinstance(image, np.ndarray):
        return Image.fromarray(image).convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise ImageNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            im.load()
            return im.convert("RGB")
    except Exception as e:  # PIL raises many types (UnidentifiedImageError, OSError, SyntaxError, ...)
        raise ImageReadError(f"{path}: not a readable image ({type(e).__name__}: {e})") from e


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


def _image_problem(path: str) -> tuple[str, str | None]:
    """``("missing", None)``, ``("unreadable", reason)`` or ``("ok", None)`` for one file."""
    if not Path(path).is_file():
        return "missing", None
    try:
        open_image(path).close()
    except ImageReadError as e:
        return "unreadable", str(e).removeprefix(f"{Path(path)}: ")
    return "ok", None


def check_images(paths: Any, workers: int = 8, max_examples: int = 5, progress: bool = True,
                 desc: str = "checking images") -> ImageCheck:
    """Decode every listed image (:func:`open_image`, in ``workers`` threads, with a ``tqdm.auto``
    bar); report the files that are missing and those that cannot be decoded (zero-byte,
    truncated, not an image), each once. ``paths``: an iterable of paths, or a DataFrame with an
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
        results = list(tqdm(pool.map(_image_problem, unique), total=len(unique), desc=desc,
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
