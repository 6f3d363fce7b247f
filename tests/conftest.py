"""Shared fixtures. The suite runs offline: every hub lookup is disabled here."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def smoke_cfg():
    from refine_iqa_lib.config import load_config

    return load_config("smoke")


@pytest.fixture(scope="session")
def tiny_model_dir(smoke_cfg):
    """The stand-in model folder (built once, cached under .cache/)."""
    from refine_iqa_lib.runs import resolve_model_path

    return resolve_model_path(smoke_cfg)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
    """``(model, processor)`` of the stand-in, loaded once per session (treat as read-only)."""
    import torch

    from refine_iqa_lib.models import load_policy

    torch.set_num_threads(1)
    return load_policy(tiny_model_dir)


@pytest.fixture
def damaged_images(tmp_path):
    """A good JPEG and PNG plus, of each, a zero-byte file, one cut to 100 bytes and one cut half
    way: ``{"good": [paths], "bad": [paths]}`` (the cut files keep valid headers)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    out = {"good": [], "bad": []}
    for ext in ("jpg", "png"):
        good = tmp_path / f"good.{ext}"
        Image.fromarray(pixels).save(good)
        data = good.read_bytes()
        out["good"].append(str(good))
        for name, cut in (("zero", b""), ("cut100", data[:100]), ("half", data[: len(data) // 2])):
            p = tmp_path / f"{name}.{ext}"
            p.write_bytes(cut)
            out["bad"].append(str(p))
    return out


def photo_objects(name: str):
    """Hand-annotated objects of an installed photograph (``tests/data/photo_objects.json``): a list
    of :class:`refine_iqa_lib.data.sources.SceneObject` in the photograph's pixels."""
    import json
    from pathlib import Path

    from refine_iqa_lib.data.sources import SceneObject

    data = json.loads((Path(__file__).parent / "data" / "photo_objects.json").read_text())["photos"][name]
    return [SceneObject(o["name"], tuple(o["bbox"])) for o in data["objects"]]


@pytest.fixture(autouse=True)
def _library_logging_restored():
    """Every test starts with the library's logging as a command line has it and leaves its level
    as it found it: loggers a library's ``logging.config`` call disabled are enabled again, the
    stdout handler is there, and the level is restored through ``setLevel`` (which also clears the
    loggers' cached enabled-levels; restoring the bare attribute would leave child loggers dropping
    INFO lines for the tests that follow on the same worker)."""
    import logging

    from refine_iqa_lib import _configure_library_logger

    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger) and (name == "refine_iqa_lib" or name.startswith("refine_iqa_lib.")):
            logger.disabled = False
    _configure_library_logger()
    lib = logging.getLogger("refine_iqa_lib")
    level = lib.level
    lib.setLevel(level)
    yield
    lib.setLevel(level)
