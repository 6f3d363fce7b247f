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
    from refine_iqa_lib.models import resolve_model_path

    return resolve_model_path(smoke_cfg)


@pytest.fixture(scope="session")
def tiny_policy(tiny_model_dir):
    """``(model, processor)`` of the stand-in, loaded once per session (treat as read-only)."""
    import torch

    from refine_iqa_lib.models import load_policy

    torch.set_num_threads(1)
    return load_policy(tiny_model_dir)
