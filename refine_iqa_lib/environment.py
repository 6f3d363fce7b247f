"""Environment report: package versions, device and profile (shown by notebook 00)."""
from __future__ import annotations

import importlib.metadata as md
import os
import platform

import pandas as pd

PACKAGES = ("torch", "transformers", "trl", "accelerate", "datasets", "tokenizers", "numpy", "scipy",
            "pandas", "pillow", "opencv-python-headless", "scikit-image", "matplotlib", "seaborn",
            "papermill", "ipywidgets", "jupyterlab", "deepspeed", "vllm", "tensorboard")


def package_versions(packages=PACKAGES) -> dict[str, str]:
    """Installed version of each package, or ``"not installed"``."""
    out = {}
    for name in packages:
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            out[name] = "not installed"
    return out


def device_info() -> dict[str, str]:
    """CPU/GPU facts that decide which profile can run here."""
    import torch

    from refine_iqa_lib.models import has_torchvision

    info = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_cores": str(os.cpu_count()),
        "torch_build": torch.__version__,
        "cuda_available": str(torch.cuda.is_available()),
        "gpus": ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())) or "none",
        "torchvision_importable": str(has_torchvision()),
        "hf_offline": os.environ.get("HF_HUB_OFFLINE", "0"),
    }
    return info


def environment_report(profile: str) -> pd.DataFrame:
    """One table: profile, device facts and package versions."""
    rows = [("profile", profile)] + list(device_info().items()) + list(package_versions().items())
    return pd.DataFrame(rows, columns=["item", "value"])
