"""The offline stand-in for Qwen2.5-VL-7B-Instruct: a tiny model of the same class, built locally.

:func:`build_tiny_model` writes a ``Qwen2_5_VLForConditionalGeneration`` folder (~5 M parameters,
:data:`TINY_ARCH`) with a byte-level BPE tokenizer trained on the project's own texts, randomly
initialised from a seed; with ``TINY_ARCH["vision_init"] == "filters"`` the vision tower is then
conditioned by :func:`condition_vision_tower`. :func:`refine_iqa_lib.models.load_policy` loads it
like any Qwen2.5-VL folder; :func:`freeze_vision_tower` keeps the tower fixed during the stand-in's
pre-training. Not part of the paper.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from refine_iqa_lib.io import atomic_dir, build_lock, write_json
from refine_iqa_lib.models import check_model_dir, processor_class

__all__ = ["SPECIAL_TOKENS", "CHAT_TEMPLATE", "TINY_ARCH", "VISION_INITS", "TOKENIZER_CORPORA", "tiny_config",
           "build_tiny_model", "LUMA_FREQUENCIES", "CHROMA_FREQUENCIES", "DC_GAIN", "ANCHOR_CHANNELS", "ANCHOR_VALUE",
           "RATIO_LUMA_FREQUENCIES", "RATIO_GATE_BIAS", "MERGER_GAIN", "MERGER_OUTPUT_GAIN", "QUIET_CHOICES",
           "condition_vision_tower", "vision_tower", "freeze_vision_tower"]

#: Qwen2.5-VL's special tokens, in Qwen's order; the tiny tokenizer gives them ids 0..N-1.
SPECIAL_TOKENS = (
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
)

#: The Qwen2.5-VL chat layout (written for this project): default system turn, images as
#: <|vision_start|><|image_pad|><|vision_end|>, <|im_start|>role ... <|im_end|> turns.
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}"
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
    "{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' or 'image' in part or 'image_url' in part %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif part['type'] == 'video' or 'video' in part %}"
    "<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif 'text' in part %}{{ part['text'] }}"
    "{% endif %}{% endfor %}{% endif %}"
    "<|im_end|>\n"
    "{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

#: Default architecture of the stand-in: about 4 M parameters (3,989,120 with the default BPE;
#: 4,070,016 with the tiny profile's, whose vocabulary holds the pre-training phrases).
TINY_ARCH = {
    "vocab_size": 2048,
    "hidden_size": 256,
    "intermediate_size": 688,
    "num_hidden_layers": 4,
    "num_attention_heads": 4,
    "num_key_value_heads": 2,
    "vision_depth": 2,
    "vision_hidden_size": 128,
    "vision_intermediate_size": 256,
    "vision_num_heads": 4,
    "min_pixels": 56 * 56,
    "max_pixels": 112 * 112,
    # "random": every weight from the seeded random init (the default stand-in); "filters": the
    # vision tower conditioned by :func:`condition_vision_tower` after the random init.
    "vision_init": "random",
    # "project": the BPE is trained on the project's prompts and answers (the default stand-in);
    # "pretrain": also on every phrase standin.perceive can write and the pre-training questions,
    # so that a think's words are whole tokens.
    "tokenizer_corpus": "project",
}
#: Values of ``TINY_ARCH["vision_init"]``.
VISION_INITS = ("random", "filters")
#: Values of ``TINY_ARCH["tokenizer_corpus"]``.
TOKENIZER_CORPORA = ("project", "pretrain")

_BUILD_VERSION = "3"  # bump when the stand-in's recipe changes (invalidates caches)


def _tokenizer_corpus(kind: str = "project") -> list[str]:
    """Text the stand-in's BPE is trained on: the project's prompts (scoring and Stage-1 questions),
    answers and vocabulary. With the Stage-1 questions in it, their words are single tokens and a
    perception prompt is about 30 % shorter (155 -> 113 tokens for the type question), which is
    what the stand-in's training and evaluation time scale with.

    ``kind="pretrain"`` (``TINY_ARCH["tokenizer_corpus"]``) adds every phrase
    :func:`refine_iqa_lib.standin.perceive.describe` can write (:data:`~refine_iqa_lib.standin.perceive.
    PHRASES`) and the pre-training questions (:func:`refine_iqa_lib.standin.pretrain_data.question_texts`),
    so that the pixel descriptions of the pre-trained stand-in's thinks are whole-word tokens. The
    texts are the fixed phrase lists, never a sample, a label or a picture."""
    if kind not in TOKENIZER_CORPORA:
        raise ValueError(f"tiny arch tokenizer_corpus {kind!r}: expected one of {TOKENIZER_CORPORA}")
    from refine_iqa_lib import prompts
    from refine_iqa_lib.data import distortions, stage1

    words = [
        "blur", "noise", "compression", "overexposure", "underexposure", "high contrast",
        "low contrast", "oversaturate", "desaturate", "oversharpen", "pixelate", "quantization",
        "slight", "just noticeable", "relatively obvious", "severe", "very severe", "none",
        "sharp", "clean", "bright", "dark", "colour", "color", "object", "region", "box", "image",
        "picture", "quality", "distortion", "reference", "distorted", "original", "which", "what",
        "how", "where", "yes", "no", "the", "is", "of", "in", "and", "a", "this", "that", "with",
        "excellent", "good", "fair", "poor", "bad", "score", "Score:", "Answer", "option", "letter",
        "person", "cat", "cup", "rocket", "flower", "building", "sky", "tree", "face", "motorcycle",
    ]
    lines = [prompts.scoring_prompt(m, v) for m in prompts.MODES for v in prompts.VARIANTS]
    lines += [prompts.completion_text(prompts.format_mos_text(s / 10), m, "The picture is sharp and clean.")
              for s in range(50) for m in prompts.MODES]
    lines += [stage1.render_prompt(q.format(w=112, h=112), [] if task == "grounding" else ["blur, slight", "noise, severe"],
                                   m) for (task, _form), q in stage1.QUESTIONS.items() for m in prompts.MODES]
    lines += [stage1.category_label(c) for c in distortions.DISTORTIONS]
    lines += [" ".join(words), "A. B. C. D. E. F. [12, 34, 56, 78]", CHAT_TEMPLATE]
    lines += [f"<|im_start|>{r}\n<|im_end|>\n" for r in ("system", "user", "assistant")]
    lines += ["You are a helpful assistant.", "<think></think><answer></answer>"]
    if kind == "pretrain":
        from refine_iqa_lib.standin import perceive, pretrain_data as pretrain

        from refine_iqa_lib.standin.world import catalogue

        names = sorted(set(catalogue().query("kind == 'object'")["name"]))
        lines += list(perceive.PHRASES) + pretrain.question_texts() + [", ".join(names)]
    return lines * 4


def _build_tokenizer(vocab_size: int, corpus: str = "project"):
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    # Qwen2's pre-tokenisation: every digit is its own piece, so numbers tokenise digit by digit.
    pattern = (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
        r"|\s*[\r\n]+|\s+(?!\S)|\s+"
    )
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=list(SPECIAL_TOKENS), show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), min_frequency=2,
    )
    tok.train_from_iterator(_tokenizer_corpus(corpus), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>",
        bos_token=None, unk_token=None, chat_template=CHAT_TEMPLATE,
        additional_special_tokens=[t for t in SPECIAL_TOKENS if t not in ("<|im_end|>", "<|endoftext|>")],
    )
    fast.padding_side = "left"
    return fast


def tiny_config(arch: dict, tokenizer):
    """A Qwen2.5-VL config with the stand-in's sizes and the tokenizer's special-token ids."""
    from transformers import Qwen2_5_VLConfig

    tid = tokenizer.convert_tokens_to_ids
    head_dim = arch["hidden_size"] // arch["num_attention_heads"]
    half = head_dim // 2  # mrope sections (temporal, height, width) must sum to head_dim / 2
    section = [half // 4, (half - half // 4) // 2, half - half // 4 - (half - half // 4) // 2]
    return Qwen2_5_VLConfig(
        text_config=dict(
            vocab_size=len(tokenizer), hidden_size=arch["hidden_size"],
            intermediate_size=arch["intermediate_size"], num_hidden_layers=arch["num_hidden_layers"],
            num_attention_heads=arch["num_attention_heads"], num_key_value_heads=arch["num_key_value_heads"],
            max_position_embeddings=4096, rope_scaling={"type": "mrope", "mrope_section": section},
            tie_word_embeddings=True, bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"),
            pad_token_id=tid("<|endoftext|>"),
        ),
        vision_config=dict(
            depth=arch["vision_depth"], hidden_size=arch["vision_hidden_size"],
            intermediate_size=arch["vision_intermediate_size"], num_heads=arch["vision_num_heads"],
            out_hidden_size=arch["hidden_size"], patch_size=14, spatial_merge_size=2,
            temporal_patch_size=2, window_size=112, fullatt_block_indexes=[arch["vision_depth"] - 1],
        ),
        image_token_id=tid("<|image_pad|>"), video_token_id=tid("<|video_pad|>"),
        vision_start_token_id=tid("<|vision_start|>"), vision_end_token_id=tid("<|vision_end|>"),
        bos_token_id=tid("<|endoftext|>"), eos_token_id=tid("<|im_end|>"), pad_token_id=tid("<|endoftext|>"),
        tie_word_embeddings=True,
    )


def _fingerprint(arch: dict, seed: int) -> str:
    corpus = arch.get("tokenizer_corpus", "project")
    defaults = {"vision_init": "random", "tokenizer_corpus": "project"}  # the default stand-in keeps its fingerprint
    arch = {k: v for k, v in arch.items() if not (k in defaults and v == defaults[k])}
    blob = json.dumps({"arch": arch, "seed": seed, "version": _BUILD_VERSION,
                       "corpus": hashlib.sha256("\n".join(_tokenizer_corpus(corpus)).encode()).hexdigest()},
                      sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def build_tiny_model(out_dir: str | os.PathLike, seed: int = 0, arch: dict | None = None,
                     force: bool = False) -> Path:
    """Build the offline stand-in (a tiny ``Qwen2_5_VLForConditionalGeneration``) into ``out_dir``.

    Same class as Qwen2.5-VL-7B-Instruct, ~5 M parameters, randomly initialised from ``seed`` (with
    ``arch["vision_init"] == "filters"`` the vision tower is then conditioned by
    :func:`condition_vision_tower`); a
    byte-level BPE tokenizer trained locally (one token per digit, Qwen's special tokens, the
    Qwen2.5-VL chat template). Same seed and architecture give identical weights and tokenizer.
    Cached: if ``out_dir`` already holds a build with the same fingerprint it is returned as is.
    The folder is written atomically (built in a temp folder, then renamed) and concurrent callers
    are serialised by a lock file. No network.
    """
    out_dir = Path(out_dir)
    arch = {**TINY_ARCH, **(arch or {})}
    if arch["vision_init"] not in VISION_INITS:
        raise ValueError(f"tiny arch vision_init {arch['vision_init']!r}: expected one of {VISION_INITS}")
    if arch["tokenizer_corpus"] not in TOKENIZER_CORPORA:
        raise ValueError(f"tiny arch tokenizer_corpus {arch['tokenizer_corpus']!r}: expected one of {TOKENIZER_CORPORA}")
    fp = _fingerprint(arch, seed)
    stamp = out_dir / "refine_iqa_stand_in.json"

    def current() -> bool:
        return stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == fp

    if not force and current():
        return out_dir
    rank = _distributed_rank()
    if rank:  # transformers writes weights only on rank 0 of a process group: let rank 0 build
        deadline = time.monotonic() + 900
        while not current():
            if time.monotonic() > deadline:
                raise TimeoutError(f"{out_dir}: rank {rank} waited 15 min for rank 0 to build the stand-in")
            time.sleep(0.5)
        return out_dir
    with build_lock(out_dir):  # separate jobs may ask for it at once
        if force or not current():
            _build_tiny_folder(out_dir, arch, seed, fp)
    check_model_dir(out_dir)
    return out_dir


def _distributed_rank() -> int | None:
    """This process's rank in an initialised torch.distributed group, else None."""
    import torch.distributed as dist

    return dist.get_rank() if dist.is_available() and dist.is_initialized() else None


def _build_tiny_folder(out_dir: Path, arch: dict, seed: int, fp: str) -> None:
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLImageProcessorPil

    tokenizer = _build_tokenizer(arch["vocab_size"], arch.get("tokenizer_corpus", "project"))
    config = tiny_config(arch, tokenizer)
    with torch.random.fork_rng(devices=[]):  # seed the init without touching the caller's RNG
        torch.manual_seed(seed)
        model = Qwen2_5_VLForConditionalGeneration(config)
    if arch.get("vision_init", "random") == "filters":
        condition_vision_tower(model)
    model.generation_config.eos_token_id = config.eos_token_id
    model.generation_config.pad_token_id = config.pad_token_id
    image_processor = Qwen2VLImageProcessorPil(min_pixels=arch["min_pixels"], max_pixels=arch["max_pixels"])
    processor = processor_class()(image_processor=image_processor, tokenizer=tokenizer, chat_template=CHAT_TEMPLATE)

    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        processor.save_pretrained(tmp)
        n_params = sum(p.numel() for p in model.parameters())
        write_json(tmp / "refine_iqa_stand_in.json", {
            "fingerprint": fp, "seed": seed, "arch": arch, "n_parameters": n_params,
            "note": "Offline stand-in for Qwen2.5-VL-7B-Instruct: same model class, random weights"
                    + (" (vision tower conditioned: models.condition_vision_tower)." if arch.get("vision_init") == "filters"
                       else "."),
        })


#: Luma DCT frequencies (per axis) of the conditioned patch embedding: all pairs, 81 filters.
LUMA_FREQUENCIES = (0, 1, 2, 3, 4, 6, 8, 10, 13)
#: Colour-opponent (R - G, (R + G) / 2 - B) DCT frequencies per axis: 9 filters per opponent.
CHROMA_FREQUENCIES = (0, 1, 3)
#: Gain of the mean-luma (DC) filter; an AC filter of frequency (u, v) has gain |(u, v)|.
DC_GAIN = 0.25
#: Anchor: this many residual channels carry this constant in every token.
ANCHOR_CHANNELS, ANCHOR_VALUE = 4, 4.0
#: Luma frequencies (u, v) whose RMS-normalised value block 0 copies into spare channels (with all
#: colour-opponent filters): ratios to the token's energy, which survive any change of its scale.
RATIO_LUMA_FREQUENCIES = ((0, 0), (0, 1), (1, 0), (1, 1), (0, 2), (2, 0))
#: Gate bias of the copying units (SiLU(10) = 9.9995: the gate is a constant, the unit linear).
RATIO_GATE_BIAS = 10.0
#: Pre-activation gain of the merger's energy units.
MERGER_GAIN = 4.0
#: Output gain of the merger: keeps the vision tokens the language model reads at about the random
#: init's scale (RMS ~0.12; ~1.0 without it).
MERGER_OUTPUT_GAIN = 0.125
_LUMA = (0.299, 0.587, 0.114)
_OPPONENTS = ((1.0, -1.0, 0.0), (0.5, 0.5, -1.0))


def _dct_basis(n: int):
    """Orthonormal DCT-II basis, row ``u`` = frequency ``u`` over ``n`` samples."""
    import numpy as np

    x = np.arange(n)
    basis = np.stack([np.cos(np.pi * (2 * x + 1) * u / (2 * n)) for u in range(n)])
    basis[0] *= 1.0 / np.sqrt(n)
    basis[1:] *= np.sqrt(2.0 / n)
    return basis


#: Which random parts of the blocks :func:`condition_vision_tower` silences (zero output weights).
QUIET_CHOICES = ("none", "attention", "blocks")


def condition_vision_tower(model, image_std=None, *, dc_gain: float = DC_GAIN, anchor_value: float = ANCHOR_VALUE,
                           merger_gain: float = MERGER_GAIN, quiet: str = "none"):
    """Give a randomly initialised Qwen2.5-VL vision tower fixed filters, so that its tokens carry
    the energy, colour and contrast cues the distortion families change.

    A random tower cannot see blur, because ``merger.ln_q`` normalises every
    token by its RMS and so removes the high-frequency energy that blur lowers; its random patch
    filters respond mostly to the low frequencies that dominate natural images. This writes three
    deterministic pieces into the tower (same modules and shapes: the model stays a stock
    ``Qwen2_5_VLForConditionalGeneration``), measured with :mod:`refine_iqa_lib.standin.probe`:

    1. **Patch embedding** (Conv3d over 2 x 14 x 14 x RGB): the first channels become the 2-D DCT
       bases of luma (0.299 R + 0.587 G + 0.114 B) at the frequencies :data:`LUMA_FREQUENCIES` x
       :data:`LUMA_FREQUENCIES`, with gain ``|(u, v)|`` (which whitens the ~1/f spectrum of natural
       images, so fine detail is not drowned by the mean) and :data:`DC_GAIN` for the mean luma;
       then the colour-opponent bases (R - G and (R + G)/2 - B at :data:`CHROMA_FREQUENCIES`). The
       filters act on the processor's normalised pixels, so each colour weight is multiplied by
       that channel's std (``image_std``, default OpenAI CLIP's, which the stand-in's processor
       uses), and both temporal frames get half. The next channels are zero (they receive the
       ratios of step 2), the last :data:`ANCHOR_CHANNELS` too; any channel left between keeps its
       random init.
    2. **Block 0's MLP** (all of it; its attention and block 1 stay random): its output bias puts
       :data:`ANCHOR_VALUE` in the last channels of every token, so the RMS that ``ln_q`` divides
       by has a constant part and energy that blur removes or noise adds is no longer normalised
       away; and its units copy the block's RMS-normalised input (``norm2``, which sees the patch
       embedding before the anchor) of the colour filters and of the luma filters
       :data:`RATIO_LUMA_FREQUENCIES` into the zeroed channels: ratios to the token's energy, which
       is what shows a loss of colour or of contrast whatever the scene's own colour and contrast
       (gates held open by the bias :data:`RATIO_GATE_BIAS`, so each unit is linear).
    3. **Merger MLP** (Linear 4D -> 4D, GELU, Linear 4D -> out): of each 2 x 2 group of tokens the
       first layer forms ``+-g`` times the mean and ``+-g`` times a (top - bottom) difference of
       every channel (``g`` = :data:`MERGER_GAIN`); the second puts into output channel ``k`` the
       mean (``GELU(x) - GELU(-x) = x``) and into output ``D + k`` the energies
       (``GELU(x) + GELU(-x) = x erf(x / sqrt 2)``, about ``|x|``) of that mean and difference of
       channel ``k``; any further
       output channels are zero; the outputs are scaled by :data:`MERGER_OUTPUT_GAIN`. Biases
       are zero.

    Measured (``benchmarks/probe_vision_tower.py``, 48 / 24 crops per cell: ridge probes on pooled
    post-merger features, fitted on training photographs with the penalty chosen by leaving one
    photograph out, held-out SRCC with severity; a family counts as seen when the interval's lower
    end is >= 0.5): the random stand-in 6 of 12 families on the validation and 5 on the test
    photographs, conditioned 12 and 10 (on test: blur 0.18 -> 0.69, compression -0.09 -> 0.40,
    pixelate 0.07 -> 0.77, quantization 0.03 -> 0.72, as interval lows); still below the bar on
    test: compression 0.40 and overexposure 0.49 (probe seed 0; over seeds 0 / 1 / 2 validation
    12 / 12 / 10 and test 10 / 9 / 11, compression below the bar on test on every seed and
    overexposure on two). On a photograph no design choice has seen (matplotlib's
    ``grace_hopper.jpg``, ``--test-photos-dir``) 11 of 12 on every probe seed, underexposure the
    one missing there. A design study (``benchmarks/probe_design_selection.py``, in the git
    history) found no setting of :data:`DC_GAIN`, :data:`ANCHOR_VALUE` and :data:`MERGER_GAIN`, and
    no ``quiet`` choice, that does better.
    Costs ~4 ms.

    ``dc_gain``, ``anchor_value``, ``merger_gain`` override :data:`DC_GAIN`, :data:`ANCHOR_VALUE`
    and :data:`MERGER_GAIN` (the stand-in is built with the defaults; the design study compared
    others). ``quiet`` (:data:`QUIET_CHOICES`) zeroes the
    output projection of every block's random attention (``"attention"``), and also block 1's
    random MLP (``"blocks"``), so that no random mixing is added to the residual stream; the
    default ``"none"`` leaves them random.

    Modifies ``model`` in place and returns it. Needs a tower hidden size ``D`` of at least the
    number of filters, ratios and anchors (127 of the stand-in's 128), a block MLP of at least 24
    units and a language hidden size (merger output) of at least ``D``; raises ``ValueError``
    otherwise.
    """
    import numpy as np
    import torch

    tower = getattr(getattr(model, "model", model), "visual", None)
    if tower is None or not hasattr(tower, "merger"):
        raise TypeError(f"{type(model).__name__}: expected a Qwen2.5-VL model with .model.visual")
    if quiet not in QUIET_CHOICES:
        raise ValueError(f"quiet {quiet!r}: expected one of {QUIET_CHOICES}")
    weight = tower.patch_embed.proj.weight                       # (D, 3, T, P, P)
    d, channels, frames, p, _ = weight.shape
    std = np.asarray(image_std if image_std is not None else _clip_std(), dtype=float)
    basis = _dct_basis(p)
    filters = []
    for u in LUMA_FREQUENCIES:
        for v in LUMA_FREQUENCIES:
            gain = float(np.hypot(u, v)) or float(dc_gain)
            filters.append(gain * np.einsum("c,y,x->cyx", np.asarray(_LUMA) * std, basis[u], basis[v]))
    for colour in _OPPONENTS:
        for u in CHROMA_FREQUENCIES:
            for v in CHROMA_FREQUENCIES:
                gain = float(np.hypot(u, v)) or 1.0
                filters.append(gain * np.einsum("c,y,x->cyx", np.asarray(colour) * std, basis[u], basis[v]))
    n_luma = len(LUMA_FREQUENCIES) ** 2
    sources = [LUMA_FREQUENCIES.index(u) * len(LUMA_FREQUENCIES) + LUMA_FREQUENCIES.index(v)
               for u, v in RATIO_LUMA_FREQUENCIES] + list(range(n_luma, len(filters)))
    targets = list(range(len(filters), len(filters) + len(sources)))
    need = len(filters) + len(sources) + ANCHOR_CHANNELS
    block_mlp = tower.blocks[0].mlp
    if need > d or block_mlp.gate_proj.out_features < len(sources):
        raise ValueError(f"vision hidden size {d} and intermediate size {block_mlp.gate_proj.out_features}: expected "
                         f">= {need} ({len(filters)} filters, {len(sources)} ratios, {ANCHOR_CHANNELS} anchor channels) "
                         f"and >= {len(sources)}")
    mlp = tower.merger.mlp
    hidden, out = mlp[0].out_features, mlp[2].out_features
    if hidden != 4 * d or mlp[0].in_features != 4 * d or out < d:
        raise ValueError(f"merger {mlp[0].in_features} -> {hidden} -> {out}: expected 4D -> 4D -> >= D with D = {d} "
                         "(spatial merge size 2, language hidden size >= vision hidden size)")
    with torch.no_grad():
        new = weight.detach().clone()
        for k, f in enumerate(filters):
            new[k] = torch.as_tensor(f / frames, dtype=new.dtype)[:, None].expand(channels, frames, p, p)
        new[targets] = 0.0
        new[d - ANCHOR_CHANNELS:] = 0.0
        weight.copy_(new)
        for lin in (block_mlp.gate_proj, block_mlp.up_proj, block_mlp.down_proj):
            lin.weight.zero_()
            lin.bias.zero_()
        open_gate = float(block_mlp.act_fn(torch.tensor(RATIO_GATE_BIAS)))
        for j, (src, dst) in enumerate(zip(sources, targets)):
            block_mlp.gate_proj.bias[j] = RATIO_GATE_BIAS
            block_mlp.up_proj.weight[j, src] = 1.0
            block_mlp.down_proj.weight[dst, j] = 1.0 / open_gate
        block_mlp.down_proj.bias[d - ANCHOR_CHANNELS:] = float(anchor_value)
        g, eye = float(merger_gain), torch.eye(d)
        w1, w2 = torch.zeros(4 * d, 4 * d), torch.zeros(out, 4 * d)
        for s in range(4):                                   # the 4 tokens of a 2 x 2 group
            cols = slice(s * d, (s + 1) * d)
            sign = 1.0 if s < 2 else -1.0                    # tokens 0, 1 = top row
            w1[0:d, cols], w1[d:2 * d, cols] = g * eye / 4, -g * eye / 4
            w1[2 * d:3 * d, cols], w1[3 * d:4 * d, cols] = sign * g * eye / 2, -sign * g * eye / 2
        h = MERGER_OUTPUT_GAIN / g
        w2[0:d, 0:d], w2[0:d, d:2 * d] = h * eye, -h * eye
        n_energy = min(d, out - d)
        for j in range(4):
            w2[d:d + n_energy, j * d:j * d + n_energy] = h * eye[:n_energy, :n_energy]
        mlp[0].weight.copy_(w1.to(mlp[0].weight.dtype)); mlp[0].bias.zero_()
        mlp[2].weight.copy_(w2.to(mlp[2].weight.dtype)); mlp[2].bias.zero_()
        if quiet in ("attention", "blocks"):
            for block in tower.blocks:
                block.attn.proj.weight.zero_()
                block.attn.proj.bias.zero_()
        if quiet == "blocks":
            for block in tower.blocks[1:]:
                block.mlp.down_proj.weight.zero_()
                block.mlp.down_proj.bias.zero_()
    return model


def _clip_std():
    from transformers.image_utils import OPENAI_CLIP_STD

    return OPENAI_CLIP_STD


def vision_tower(model):
    """The Qwen2.5-VL vision tower of ``model`` (``model.model.visual`` in transformers 5, ``model.visual``
    before), whatever wraps it."""
    for owner in (getattr(model, "model", None), model):
        tower = getattr(owner, "visual", None)
        if tower is not None:
            return tower
    raise ValueError(f"{type(model).__name__} has no vision tower (expected a Qwen2.5-VL model with .visual)")


def freeze_vision_tower(model) -> int:
    """Fix every parameter of the vision tower (patch embedding, blocks, merger); returns how many
    scalars were frozen. The language model keeps training."""
    tower = vision_tower(model)
    n = 0
    for p in tower.parameters():
        p.requires_grad_(False)
        n += p.numel()
    return n
