import json

import pytest
import torch

from refine_iqa_lib.models import check_model_dir, is_stand_in, load_policy, load_processor
from refine_iqa_lib.standin.model import build_tiny_model


def _digest(path):
    import hashlib

    return {f: hashlib.sha256((path / f).read_bytes()).hexdigest()
            for f in ("model.safetensors", "tokenizer.json", "config.json")}


def test_same_seed_gives_identical_files_and_other_seed_differs(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=3)
    b = build_tiny_model(tmp_path / "b", seed=3)
    c = build_tiny_model(tmp_path / "c", seed=4)
    assert _digest(a) == _digest(b)
    assert _digest(a)["model.safetensors"] != _digest(c)["model.safetensors"]
    assert _digest(a)["tokenizer.json"] == _digest(c)["tokenizer.json"]


def test_build_is_cached(tmp_path):
    a = build_tiny_model(tmp_path / "a", seed=0)
    stamp = (a / "model.safetensors").stat().st_mtime_ns
    build_tiny_model(tmp_path / "a", seed=0)
    assert (a / "model.safetensors").stat().st_mtime_ns == stamp
    assert is_stand_in(a)


def test_stand_in_is_a_small_qwen2_5_vl(tiny_policy, tiny_model_dir):
    from transformers import Qwen2_5_VLForConditionalGeneration

    model, processor = tiny_policy
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    n = sum(p.numel() for p in model.parameters())
    assert 1e6 < n < 1e7
    assert hasattr(processor, "image_processor") and hasattr(processor, "tokenizer")
    meta = json.loads((tiny_model_dir / "refine_iqa_stand_in.json").read_text())
    assert meta["n_parameters"] == n


def test_tokenizer_one_token_per_digit_and_qwen_specials(tiny_policy):
    _, processor = tiny_policy
    tok = processor.tokenizer
    pieces = tok.tokenize("<answer>3.45</answer> 2024")
    for d in "3452024":
        assert d in pieces
    assert all(len(p) == 1 for p in pieces if any(ch.isdigit() for ch in p))
    for special in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|vision_start|>"):
        assert len(tok.tokenize(special)) == 1


def test_chat_template_and_image_tokens(tiny_policy):
    import numpy as np
    from PIL import Image

    model, processor = tiny_policy
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Rate it."}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert text.endswith("Rate it.<|im_end|>\n<|im_start|>assistant\n")
    img = Image.fromarray(np.full((84, 112, 3), 128, np.uint8))
    enc = processor(text=[text], images=[img], return_tensors="pt")
    n_image_tokens = int((enc["input_ids"] == model.config.image_token_id).sum())
    assert n_image_tokens == int(enc["image_grid_thw"].prod()) // 4
    with torch.no_grad():
        out = model(**enc)
    assert out.logits.shape[-1] == model.config.text_config.vocab_size


def test_missing_files_give_a_clear_message(tmp_path):
    with pytest.raises(FileNotFoundError, match="model folder not found"):
        check_model_dir(tmp_path / "absent")
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"model_type": "qwen2_5_vl"}')
    with pytest.raises(FileNotFoundError, match=r"missing: tokenizer_config.json, weights"):
        load_policy(tmp_path / "m")


def test_wrong_model_type_is_rejected(tmp_path, tiny_model_dir):
    import shutil

    d = tmp_path / "m"
    shutil.copytree(tiny_model_dir, d)
    cfg = json.loads((d / "config.json").read_text())
    cfg["model_type"] = "llava"
    (d / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="expected 'qwen2_5_vl'"):
        load_processor(d)


def test_processor_loads_with_the_papers_pixel_cap(tiny_model_dir):
    processor = load_processor(tiny_model_dir, max_pixels=151200)
    assert processor.image_processor.size["longest_edge"] == 151200


def test_real_model_layout_without_torchvision_uses_the_image_only_processor(tmp_path, tiny_model_dir):
    """A folder laid out like Qwen2.5-VL-7B-Instruct (preprocessor_config.json naming the stock
    Qwen2_5_VLProcessor, no video processor files) loads through the image-only processor."""
    import shutil

    from refine_iqa_lib import models

    d = tmp_path / "real-layout"
    shutil.copytree(tiny_model_dir, d)
    proc_cfg = json.loads((d / "processor_config.json").read_text())
    image_cfg = proc_cfg.get("image_processor", proc_cfg)
    image_cfg = {k: v for k, v in image_cfg.items()}
    image_cfg["processor_class"] = "Qwen2_5_VLProcessor"
    image_cfg["image_processor_type"] = "Qwen2VLImageProcessor"
    (d / "preprocessor_config.json").write_text(json.dumps(image_cfg))
    (d / "processor_config.json").unlink()
    processor = load_processor(d)
    assert type(processor).__name__ == "ImageOnlyQwen2_5_VLProcessor"
    assert processor.image_processor.size == image_cfg["size"]


def test_saved_folders_name_the_stock_processor_class(tmp_path, tiny_model_dir):
    """Saved folders look like stock Qwen2.5-VL folders (vLLM and plain AutoProcessor resolve
    them), and load back in a fresh process with torchvision present or not. Found on a GPU
    machine with torchvision: a Stage-1 job started after the stand-in existed loaded the warm-up
    output as a bare tokenizer, because AutoProcessor could not resolve the subclass's name."""
    import subprocess
    import sys

    from refine_iqa_lib.models import STOCK_PROCESSOR_CLASS

    processor = load_processor(tiny_model_dir)
    out = tmp_path / "saved"
    processor.save_pretrained(out)
    for name in ("processor_config.json", "tokenizer_config.json"):
        doc = json.loads((out / name).read_text())
        assert doc.get("processor_class") == STOCK_PROCESSOR_CLASS, name
    for name in ("config.json", "model.safetensors", "generation_config.json"):
        (out / name).write_bytes((tiny_model_dir / name).read_bytes())
    code = ("import sys; from refine_iqa_lib import models; models.has_torchvision = lambda: True; "
            "p = models.load_processor(sys.argv[1]); print(type(p).__name__, p.image_processor.size['longest_edge'])")
    got = subprocess.run([sys.executable, "-c", code, str(out)], capture_output=True, text=True, timeout=300)
    assert got.returncode == 0, got.stderr[-2000:]
    assert got.stdout.split() == ["ImageOnlyQwen2_5_VLProcessor", str(processor.image_processor.size["longest_edge"])]


def test_concurrent_builds_of_one_folder_are_serialised(tmp_path):
    """Two ranks of a distributed job asking for the stand-in at once both get a complete folder."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    with ctx.Pool(2) as pool:
        paths = pool.starmap(build_tiny_model, [(tmp_path / "m", 0), (tmp_path / "m", 0)])
    assert paths[0] == paths[1]
    model, processor = load_policy(paths[0])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["m"]
