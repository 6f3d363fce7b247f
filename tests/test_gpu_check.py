"""benchmarks/gpu_check.py --paper-step, the parts that need no GPU: arguments, the 7B-shaped model
with the grown stand-in processor (on the meta device), the pictures and the run's settings."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from refine_iqa_lib.config import load_config
from refine_iqa_lib.models import PAPER_N_PARAMETERS, PAPER_TEXT_ARCH

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_arguments_and_settings(gpu_check):
    args = gpu_check.build_parser().parse_args(["--paper-step"])
    assert gpu_check.paper_step_settings(args) == {"layers": None, "vision_depth": None, "device": "cuda",
                                                   "completion_len": 256, "generations": 8, "steps": 3}
    assert args.engines == "generate,vllm" and args.timeout == 300
    rehearse = gpu_check.paper_step_settings(gpu_check.build_parser().parse_args(["--paper-step", "--rehearse"]))
    assert (rehearse["layers"], rehearse["device"], rehearse["completion_len"], rehearse["generations"],
            rehearse["steps"]) == (1, "cpu", 8, 2, 2)
    rows = [{"seconds": 30.0, "generation": 25.0, "pd": 1.0, "peak_allocated_gib": 40.0, "peak_device_gib": 50.0},
            {"seconds": 10.0, "generation": 7.0, "pd": 1.0, "peak_allocated_gib": 41.0, "peak_device_gib": 52.0}]
    got = gpu_check.summarise_steps(rows)
    assert (got["s_per_step"], got["pd_share"], got["peak_device_gib"], got["timed_steps"]) == (10.0, 0.1, 52.0, 1)


def test_the_7b_shaped_model_with_the_grown_processor(gpu_check, tmp_path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    from refine_iqa_lib.generation import chat_text
    from refine_iqa_lib.io import open_image

    processor = gpu_check.paper_processor()
    tok = processor.tokenizer
    assert len(tok) == PAPER_TEXT_ARCH["vocab_size"]
    assert tok.decode([PAPER_TEXT_ARCH["vocab_size"] - 1]) == f"<|t{PAPER_TEXT_ARCH['vocab_size'] - 1}|>"
    config = gpu_check.paper_config(processor)
    with torch.device("meta"):
        model = Qwen2_5_VLForConditionalGeneration(config)
    assert sum(p.numel() for p in model.parameters()) == PAPER_N_PARAMETERS         # the 7B shape, untouched
    assert config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert config.text_config.eos_token_id == tok.convert_tokens_to_ids("<|im_end|>")

    labels = gpu_check.write_pictures(tmp_path / "pictures", n=2)
    picture = open_image(tmp_path / "pictures" / "p0.png")
    assert picture.size == gpu_check.PAPER_PICTURE
    batch = processor(text=[chat_text(processor, "Rate it.")], images=[picture], return_tensors="pt")
    assert int((batch["input_ids"] == config.image_token_id).sum()) == 192          # the paper's visual tokens

    args = gpu_check.build_parser().parse_args(["--paper-step", "--work-dir", str(tmp_path)])
    cfg = load_config("single_gpu", gpu_check.paper_step_overrides(args, "vllm", tmp_path / "m", labels))
    s, L = cfg.stage2, cfg.launch
    assert (s.num_generations, s.prompts_per_step, s.gradient_accumulation_steps, s.max_completion_length) == (8, 1, 1, 256)
    assert s.pd_raw_every == 1 and s.eval_every == 0 and cfg.lora.enabled and cfg.scoring.train == ["bench"]
    assert L.use_vllm and L.vllm_mode == "colocate" and L.vllm_required and L.bf16 and not L.use_cpu
    plain = load_config("single_gpu", gpu_check.paper_step_overrides(args, "generate", tmp_path / "m", labels))
    assert not plain.launch.use_vllm
