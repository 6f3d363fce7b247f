"""Policy models: load any local Qwen2.5-VL folder.

``load_policy(path)`` returns ``(model, processor)`` for a local Qwen2.5-VL folder - the real
Qwen2.5-VL-7B-Instruct or the tiny stand-in that :func:`refine_iqa_lib.standin.model.build_tiny_model`
writes. Both go through the same code; only the folder differs.

Without torchvision (the CPU torch wheel here cannot import PyPI's torchvision) transformers cannot
build Qwen2.5-VL's *video* processor, so the stock ``Qwen2_5_VLProcessor`` fails to construct, and
``AutoProcessor`` may silently hand back a bare tokenizer (TRL then treats the model as text-only).
:class:`ImageOnlyQwen2_5_VLProcessor` is the stock processor minus the video processor; it is
registered for the Qwen2.5-VL config and used whenever torchvision is missing. Images go through
the PIL image processor, which needs no torchvision.
"""
from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

from refine_iqa_lib.io import atomic_write

#: Files a Qwen2.5-VL folder must hold for :func:`load_policy` (weights checked separately).
REQUIRED_FILES = ("config.json", "tokenizer_config.json")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "model.safetensors.index.json")

#: What saved processor folders name as their class: the stock one, so any Qwen2.5-VL tool loads them.
STOCK_PROCESSOR_CLASS = "Qwen2_5_VLProcessor"


def has_torchvision() -> bool:
    """Whether torchvision is importable (decides which processor class is used)."""
    if importlib.util.find_spec("torchvision") is None:
        return False
    try:  # PyPI's torchvision fails to import beside the CPU torch build
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def processor_class():
    """The image-only Qwen2.5-VL processor class (:class:`ImageOnlyQwen2_5_VLProcessor`, defined and
    registered with ``AutoProcessor`` on first use)."""
    from transformers import Qwen2_5_VLConfig, Qwen2_5_VLProcessor
    from transformers.processing_utils import ProcessorMixin

    global ImageOnlyQwen2_5_VLProcessor
    if "ImageOnlyQwen2_5_VLProcessor" in globals():
        return globals()["ImageOnlyQwen2_5_VLProcessor"]

    class ImageOnlyQwen2_5_VLProcessor(Qwen2_5_VLProcessor):  # noqa: N801 - mirrors transformers' naming
        """``Qwen2_5_VLProcessor`` without a video processor (works without torchvision)."""

        def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
            self.image_token = getattr(tokenizer, "image_token", None) or "<|image_pad|>"
            self.video_token = getattr(tokenizer, "video_token", None) or "<|video_pad|>"
            self.image_token_id = getattr(tokenizer, "image_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.image_token
            )
            self.video_token_id = getattr(tokenizer, "video_token_id", None) or tokenizer.convert_tokens_to_ids(
                self.video_token
            )
            ProcessorMixin.__init__(self, image_processor, tokenizer, chat_template=chat_template)

        def save_pretrained(self, save_directory, *args, **kwargs):
            """Save as a stock ``Qwen2_5_VLProcessor`` folder (``processor_class`` names the stock
            class), so tools that load it with ``AutoProcessor`` (vLLM, plain transformers with
            torchvision) find a class they know; this library loads it with this class again."""
            out = super().save_pretrained(save_directory, *args, **kwargs)
            for name in ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json"):
                path = Path(save_directory) / name
                if path.is_file():
                    doc = json.loads(path.read_text())
                    if doc.get("processor_class") == type(self).__name__:
                        doc["processor_class"] = STOCK_PROCESSOR_CLASS
                        with atomic_write(path) as f:
                            f.write(json.dumps(doc, indent=2, sort_keys=True) + "\n")
            return out

    from transformers import AutoProcessor

    AutoProcessor.register(Qwen2_5_VLConfig, ImageOnlyQwen2_5_VLProcessor, exist_ok=True)
    globals()["ImageOnlyQwen2_5_VLProcessor"] = ImageOnlyQwen2_5_VLProcessor
    return ImageOnlyQwen2_5_VLProcessor


def check_model_dir(path: str | os.PathLike) -> Path:
    """Check that ``path`` looks like a Qwen2.5-VL folder; raise naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(
            f"{path}: model folder not found. Expected a local Qwen2.5-VL folder (e.g. a copy of "
            "Qwen2.5-VL-7B-Instruct) holding config.json, tokenizer files and *.safetensors weights."
        )
    missing = [f for f in REQUIRED_FILES if not (path / f).is_file()]
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        missing.append("weights (*.safetensors or *.bin)")
    if not ((path / "preprocessor_config.json").is_file() or (path / "processor_config.json").is_file()):
        missing.append("preprocessor_config.json (image processor settings)")
    if missing:
        raise FileNotFoundError(f"{path}: not a complete Qwen2.5-VL folder; missing: {', '.join(missing)}")
    cfg = json.loads((path / "config.json").read_text())
    if cfg.get("model_type") != "qwen2_5_vl":
        raise ValueError(
            f"{path / 'config.json'}: model_type is {cfg.get('model_type')!r}; expected 'qwen2_5_vl' "
            "(Qwen2.5-VL is the model class the paper fine-tunes)"
        )
    return path


def load_processor(path: str | os.PathLike, min_pixels: int | None = None, max_pixels: int | None = None):
    """The Qwen2.5-VL processor for a folder, with or without torchvision.

    ``min_pixels`` / ``max_pixels`` override the image processor's resize bounds (the paper's
    runs cap images at about 151,200 pixels).
    """
    path = check_model_dir(path)
    kwargs = {}
    if min_pixels is not None or max_pixels is not None:
        size = {}
        if min_pixels is not None:
            size["shortest_edge"] = int(min_pixels)
        if max_pixels is not None:
            size["longest_edge"] = int(max_pixels)
        kwargs["size"] = size
    # Always this library's image-only subclass, with or without torchvision: AutoProcessor would
    # return a bare tokenizer for a class it cannot resolve, and the stock class needs torchvision.
    processor = processor_class().from_pretrained(path, **kwargs)
    if not hasattr(processor, "image_processor"):
        raise TypeError(
            f"{path}: the processor loaded as {type(processor).__name__}, which has no image processor; "
            "the model would be treated as text-only"
        )
    processor.tokenizer.padding_side = "left"  # generation needs left padding
    return processor


def load_policy(path: str | os.PathLike, dtype: str = "float32", min_pixels: int | None = None,
                max_pixels: int | None = None, device: str | None = None):
    """Load ``(model, processor)`` from a local Qwen2.5-VL folder (tiny stand-in or the real 7B).

    ``dtype``: ``"float32"`` (CPU), ``"bfloat16"`` (GPU, as in the paper) or ``"auto"``.
    """
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    path = check_model_dir(path)
    processor = load_processor(path, min_pixels=min_pixels, max_pixels=max_pixels)
    torch_dtype = "auto" if dtype == "auto" else getattr(torch, dtype)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(path, dtype=torch_dtype)
    if device is not None:
        model = model.to(device)
    model.eval()
    return model, processor


def is_stand_in(path: str | os.PathLike) -> bool:
    """Whether a model folder is the offline stand-in (decides whether the warm-up applies)."""
    return (Path(path) / "refine_iqa_stand_in.json").is_file()


# --------------------------------------------------------------------------- paper-shaped config

#: Qwen2.5-VL-7B-Instruct's published architecture (its config.json). Built
#: from these values with all 28 layers and 32 vision blocks it has 8,292,166,656 parameters.
PAPER_TEXT_ARCH = {
    "vocab_size": 152064,
    "hidden_size": 3584,
    "intermediate_size": 18944,
    "num_hidden_layers": 28,
    "num_attention_heads": 28,
    "num_key_value_heads": 4,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "rope_theta": 1000000.0,
    "mrope_section": [16, 24, 24],
    "tie_word_embeddings": False,
}
PAPER_VISION_ARCH = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "hidden_act": "silu",
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "patch_size": 14,
    "temporal_patch_size": 2,
    "spatial_merge_size": 2,
    "out_hidden_size": 3584,
    "tokens_per_second": 2,
}
#: Qwen2.5-VL's special-token ids in its own 152,064-entry vocabulary.
PAPER_TOKEN_IDS = {
    "bos_token_id": 151643, "eos_token_id": 151645, "pad_token_id": 151643,
    "vision_start_token_id": 151652, "vision_end_token_id": 151653,
    "image_token_id": 151655, "video_token_id": 151656,
}
#: Parameter counts of the full architecture (checked by tests/test_paper_shaped.py).
PAPER_N_PARAMETERS = 8_292_166_656
PAPER_N_VISION_PARAMETERS = 676_550_144


def paper_shaped_config(num_hidden_layers: int | None = None, vision_depth: int | None = None):
    """A ``Qwen2_5_VLConfig`` with Qwen2.5-VL-7B-Instruct's architecture (no download).

    ``num_hidden_layers`` reduces the text depth (default 28). The vision tower keeps its 32
    blocks unless ``vision_depth`` is given; then it keeps the first ``vision_depth`` blocks and,
    of the full-attention blocks 7/15/23/31, those below that depth - with the last block made a
    full-attention block if none remains (so a 1-block tower is one full-attention block; every
    other block keeps the 112-pixel window attention). Every other value is the published one,
    so a depth-reduced copy has exactly the per-layer shapes of the real model. Build it on the
    meta device (``with torch.device("meta"):``) to count parameters without allocating them.
    """
    from transformers import Qwen2_5_VLConfig

    t, v = PAPER_TEXT_ARCH, PAPER_VISION_ARCH
    layers = t["num_hidden_layers"] if num_hidden_layers is None else int(num_hidden_layers)
    depth = v["depth"] if vision_depth is None else int(vision_depth)
    if layers < 1 or depth < 1:
        raise ValueError(f"num_hidden_layers and vision_depth must be >= 1, got {layers} and {depth}")
    full_att = [i for i in v["fullatt_block_indexes"] if i < depth] or [depth - 1]
    ids = PAPER_TOKEN_IDS
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=t["vocab_size"], hidden_size=t["hidden_size"], intermediate_size=t["intermediate_size"],
            num_hidden_layers=layers, num_attention_heads=t["num_attention_heads"],
            num_key_value_heads=t["num_key_value_heads"], hidden_act=t["hidden_act"],
            max_position_embeddings=t["max_position_embeddings"], rms_norm_eps=t["rms_norm_eps"],
            rope_parameters={"rope_type": "default", "rope_theta": t["rope_theta"],
                             "mrope_section": list(t["mrope_section"])},
            tie_word_embeddings=t["tie_word_embeddings"], bos_token_id=ids["bos_token_id"],
            eos_token_id=ids["eos_token_id"], pad_token_id=ids["pad_token_id"],
        ),
        vision_config=dict(
            depth=depth, hidden_size=v["hidden_size"], intermediate_size=v["intermediate_size"],
            num_heads=v["num_heads"], hidden_act=v["hidden_act"], window_size=v["window_size"],
            fullatt_block_indexes=full_att, patch_size=v["patch_size"],
            temporal_patch_size=v["temporal_patch_size"], spatial_merge_size=v["spatial_merge_size"],
            out_hidden_size=v["out_hidden_size"], tokens_per_second=v["tokens_per_second"],
        ),
        tie_word_embeddings=t["tie_word_embeddings"], **ids,
    )
