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
