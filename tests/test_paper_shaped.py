"""The 7B-shaped config: Qwen2.5-VL-7B-Instruct's architecture, built on the meta device (no memory)."""
from __future__ import annotations

import pytest
import torch

from refine_iqa_lib.models import PAPER_N_PARAMETERS, PAPER_N_VISION_PARAMETERS, paper_shaped_config


def _meta_model(config):
    from transformers import Qwen2_5_VLForConditionalGeneration

    with torch.device("meta"):
        return Qwen2_5_VLForConditionalGeneration(config)


def _n(module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_full_architecture_has_the_7b_parameter_count():
    model = _meta_model(paper_shaped_config())
    assert all(p.device.type == "meta" for p in model.parameters())
    assert _n(model) == PAPER_N_PARAMETERS == 8_292_166_656
    assert _n(model.model.visual) == PAPER_N_VISION_PARAMETERS == 676_550_144
    assert model.lm_head.weight is not model.model.language_model.embed_tokens.weight  # untied


def test_published_values():
    c = paper_shaped_config()
    t, v = c.text_config, c.vision_config
    assert (t.hidden_size, t.num_hidden_layers, t.num_attention_heads, t.num_key_value_heads) == (3584, 28, 28, 4)
    assert (t.intermediate_size, t.vocab_size, c.tie_word_embeddings) == (18944, 152064, False)
    assert t.rope_parameters["rope_theta"] == 1e6 and t.rope_parameters["mrope_section"] == [16, 24, 24]
    assert sum(t.rope_parameters["mrope_section"]) == t.hidden_size // t.num_attention_heads // 2
    assert (v.depth, v.hidden_size, v.num_heads, v.intermediate_size, v.window_size) == (32, 1280, 16, 3420, 112)
    assert v.fullatt_block_indexes == [7, 15, 23, 31]
    assert (v.patch_size, v.temporal_patch_size, v.spatial_merge_size, v.out_hidden_size) == (14, 2, 2, 3584)


def test_init_empty_weights_gives_the_same_count():
    from accelerate import init_empty_weights
    from transformers import Qwen2_5_VLForConditionalGeneration

    with init_empty_weights():
        model = Qwen2_5_VLForConditionalGeneration(paper_shaped_config())
    assert _n(model) == PAPER_N_PARAMETERS


def test_depth_reduced_copies_extrapolate_to_the_full_count():
    """Per-layer and per-block counts are the full model's: 1 layer + 27 x (2 - 1) layers = 28."""
    full = {(a, b): _n(_meta_model(paper_shaped_config(a, vision_depth=b))) for a, b in ((1, 1), (2, 1), (1, 2))}
    per_layer = full[(2, 1)] - full[(1, 1)]
    per_block = full[(1, 2)] - full[(1, 1)]
    assert full[(1, 1)] + 27 * per_layer + 31 * per_block == PAPER_N_PARAMETERS
    assert paper_shaped_config(2).vision_config.depth == 32  # vision depth only on request


@pytest.mark.parametrize("depth,expected", [(1, [0]), (2, [1]), (8, [7]), (16, [7, 15]), (32, [7, 15, 23, 31])])
def test_vision_depth_keeps_the_full_attention_blocks_below_it(depth, expected):
    assert paper_shaped_config(1, vision_depth=depth).vision_config.fullatt_block_indexes == expected


def test_rejects_zero_depth():
    with pytest.raises(ValueError):
        paper_shaped_config(0)
