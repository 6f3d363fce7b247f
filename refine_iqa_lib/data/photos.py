"""The photographs that ship inside installed packages (scikit-image, scikit-learn).

They are the offline stand-in for COCO / LSVQ / Panda-70M keyframes and for KonIQ's photos. The
files are read straight from the packages' folders (never through a downloader), converted to
RGB uint8.

Licences: scikit-image's sample photographs are public domain / CC0 (see
``skimage/data/README.txt``); scikit-learn's ``china.jpg`` and ``flower.jpg`` are CC BY 2.0.
"""
from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
from refine_iqa_lib.io import open_image

#: name -> (package, file name). Only natural colour photographs (no charts, no microscopy).
EMBEDDED_PHOTOS: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"),
    "chelsea": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"),
    "rocket": ("skimage", "rocket.jpg"),
    "motorcycle_left": ("skimage", "motorcycle_left.png"),
    "motorcycle_right": ("skimage", "motorcycle_right.png"),
    "china": ("sklearn", "china.jpg"),
    "flower": ("sklearn", "flower.jpg"),
}

#: Grayscale photographs, usable as extra textures / backgrounds after conversion to RGB.
EMBEDDED_GRAY_PHOTOS: dict[str, tuple[str, str]] = {
    "camera": ("skimage", "camera.png"),
    "coins": ("skimage", "coins.png"),
    "moon": ("skimage", "moon.png"),
    "grass": ("skimage", "grass.png"),
    "gravel": ("skimage", "gravel.png"),
    "brick": ("skimage", "brick.png"),
}


_SUBDIR = {"skimage": ("data",), "sklearn": ("datasets", "images")}


def _package_dir(package: str) -> Path:
    """The package's data folder, found without importing the package (sklearn takes ~2 s)."""
    if package not in _SUBDIR:
        raise ValueError(f"unknown package {package!r}; expected one of {sorted(_SUBDIR)}")
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"package {package!r} is not installed; it ships the embedded photographs")
    return Path(list(spec.submodule_search_locations)[0]).joinpath(*_SUBDIR[package])


def photo_path(name: str) -> Path:
    """Path of an embedded photograph on disk."""
    table = {**EMBEDDED_PHOTOS, **EMBEDDED_GRAY_PHOTOS}
    if name not in table:
        raise KeyError(f"unknown embedded photo {name!r}; valid: {sorted(table)}")
    package, fname = table[name]
    path = _package_dir(package) / fname
    if not path.is_file():
        raise FileNotFoundError(f"{path}: embedded photo {name!r} is missing from the installed {package}")
    return path


@lru_cache(maxsize=32)
def _load(name: str) -> np.ndarray:
    arr = np.array(open_image(photo_path(name)), dtype=np.uint8)
    arr.setflags(write=False)
    return arr


def load_photo(name: str) -> np.ndarray:
    """Load an embedded photograph as an H x W x 3 uint8 RGB array (a fresh, writable copy).

    >>> load_photo("chelsea").shape
    (300, 451, 3)
    """
    return _load(name).copy()


def list_photos(include_gray: bool = False) -> list[str]:
    """Names of the embedded colour photographs (optionally the grayscale ones too), sorted."""
    names = list(EMBEDDED_PHOTOS)
    if include_gray:
        names += list(EMBEDDED_GRAY_PHOTOS)
    return sorted(names)


#: File endings :func:`load_photo_folder` reads.
PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")
#: Correlation of 32 x 32 grey thumbnails above which a photograph counts as a copy of another.
COPY_CORRELATION = 0.95


def _thumbnail(arr: np.ndarray) -> np.ndarray:
    from PIL import Image

    grey = np.asarray(Image.fromarray(arr).convert("L").resize((32, 32), Image.BOX), dtype=np.float64).ravel()
    grey -= grey.mean()
    return grey / (np.linalg.norm(grey) or 1.0)


def load_photo_folder(folder: str | Path, min_side: int = 112) -> dict[str, np.ndarray]:
    """Your own photographs, for the embedded scale's instruments: ``{file stem: H x W x 3 uint8}``.

    Every file of ``folder`` (not its subfolders) ending in :data:`PHOTO_SUFFIXES` is decoded
    with :func:`refine_iqa_lib.io.open_image`. Nothing is dropped silently: a file that does not
    decode, one whose shorter side is below ``min_side`` pixels (the probe crops squares of at
    least that size), two files with one stem, and a copy of an embedded photograph (its 32 x 32
    grey thumbnail correlates above :data:`COPY_CORRELATION` with one of
    :data:`EMBEDDED_PHOTOS` / :data:`EMBEDDED_GRAY_PHOTOS`, which also catches a resized or
    re-encoded copy; a crop of one is not caught) each make it raise ``ValueError`` naming every
    such file and what was expected. Record each photograph's licence next to it: the project
    never redistributes them.

    >>> load_photo_folder("/no/such/folder")
    Traceback (most recent call last):
    ...
    FileNotFoundError: /no/such/folder: expected a folder of photographs (.jpg, .jpeg, .png, .webp, .bmp, .tif, .tiff)
    """
    from refine_iqa_lib.io import open_image

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: expected a folder of photographs ({', '.join(PHOTO_SUFFIXES)})")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in PHOTO_SUFFIXES)
    if not files:
        raise ValueError(f"{folder}: no photographs (expected files ending in {', '.join(PHOTO_SUFFIXES)})")
    embedded = {name: _thumbnail(_load(name)) for name in list_photos(include_gray=True)}
    photos: dict[str, np.ndarray] = {}
    problems: list[str] = []
    for path in files:
        try:
            arr = np.asarray(open_image(path), dtype=np.uint8)
        except ValueError as e:
            problems.append(f"{path.name}: does not decode ({e})")
            continue
        if min(arr.shape[:2]) < int(min_side):
            problems.append(f"{path.name}: {arr.shape[1]} x {arr.shape[0]} pixels, expected a shorter side >= {min_side}")
            continue
        if path.stem in photos:
            problems.append(f"{path.name}: a second file named {path.stem!r}; expected one file per name")
            continue
        thumb = _thumbnail(arr)
        copies = [n for n, t in embedded.items() if float(thumb @ t) > COPY_CORRELATION]
        if copies:
            problems.append(f"{path.name}: a copy of the embedded photograph {copies[0]!r}; expected new scenes")
            continue
        photos[path.stem] = arr
    if problems:
        raise ValueError(f"{folder}: {len(problems)} of {len(files)} photograph(s) unusable:\n  " + "\n  ".join(problems))
    return photos
