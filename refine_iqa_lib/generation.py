"""Exact greedy decoding: the one generation path of every evaluator and of Eq. 8 think scoring.

transformers fills every generation field left at ``None`` from the checkpoint's own
``generation_config.json``; Qwen2.5-VL-Instruct releases ship sampling defaults and
``repetition_penalty: 1.05`` (checked with transformers 5.23). :func:`greedy_config` therefore sets every field
that could change a greedy search to its neutral value, so that what a checkpoint's folder says
never changes an evaluation (tested with a stand-in saved with ``do_sample: true``,
``repetition_penalty: 1.3``, ``temperature: 0.1``, ``top_k: 1``).
"""
from __future__ import annotations

from typing import Any, Sequence

from refine_iqa_lib.io import open_image
from refine_iqa_lib.prompts import user_message

__all__ = ["GREEDY_FIELDS", "greedy_config", "model_device", "chat_text", "generate_greedy", "greedy_generate"]

#: Every decoding field the greedy search could read, set to its neutral value.
GREEDY_FIELDS = dict(do_sample=False, num_beams=1, num_beam_groups=1, temperature=1.0, top_k=0, top_p=1.0,
                     min_p=None, typical_p=1.0, epsilon_cutoff=0.0, eta_cutoff=0.0, repetition_penalty=1.0,
                     encoder_repetition_penalty=1.0, no_repeat_ngram_size=0, length_penalty=1.0,
                     min_new_tokens=0, bad_words_ids=None, suppress_tokens=None, begin_suppress_tokens=None,
                     sequence_bias=None, renormalize_logits=False, diversity_penalty=0.0)


def greedy_config(tokenizer, max_new_tokens: int, eos_token_id=None):
    """A ``GenerationConfig`` for plain greedy decoding of at most ``max_new_tokens`` tokens.

    >>> from types import SimpleNamespace
    >>> g = greedy_config(SimpleNamespace(pad_token_id=0, eos_token_id=1), 8)
    >>> g.do_sample, g.repetition_penalty, g.max_new_tokens
    (False, 1.0, 8)
    """
    from transformers import GenerationConfig

    eos = eos_token_id if eos_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    fields = {k: v for k, v in GREEDY_FIELDS.items() if v is not None}
    cfg = GenerationConfig(max_new_tokens=int(max_new_tokens), eos_token_id=eos, pad_token_id=pad, **fields)
    for key, value in GREEDY_FIELDS.items():   # None-valued fields: explicitly unset after construction
        if value is None and hasattr(cfg, key):
            setattr(cfg, key, None)
    return cfg


def model_device(model):
    """The device of a model's parameters (CPU when it has none)."""
    import torch

    try:
        return next(model.parameters()).device
    except (StopIteration, AttributeError):
        return torch.device("cpu")


def chat_text(processor, prompt: str, n_images: int = 1) -> str:
    """The model input text for one user turn (images first, then ``prompt``), ready to generate."""
    return processor.apply_chat_template(user_message(prompt, n_images), tokenize=False, add_generation_prompt=True)


def generate_greedy(model, processor, texts: Sequence[str], images: Sequence[Any], max_new_tokens: int) -> list[str]:
    """Greedy completions of one batch: ``texts`` are model input texts (chat template applied),
    ``images`` the flat list of their images in order. Returns the decoded new text of each row
    (special tokens removed). No gradients; the model's mode is left as it was."""
    import torch

    tok = processor.tokenizer
    batch = processor(text=list(texts), images=[open_image(im) for im in images], return_tensors="pt", padding=True,
                      padding_side="left")
    device = model_device(model)
    batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    eos = getattr(model.generation_config, "eos_token_id", None) or tok.eos_token_id
    gen = greedy_config(tok, max_new_tokens, eos_token_id=eos)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            out = model.generate(**batch, generation_config=gen)
    finally:
        model.train(was_training)
    new = out[:, batch["input_ids"].shape[1]:]
    return tok.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)


def greedy_generate(model, processor, images: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int,
                    batch_size: int = 8, desc: str = "generate", progress: bool = True) -> list[str]:
    """Greedy completions for image/prompt pairs, batched, with a ``tqdm.auto`` bar; returned in input order.

    ``images[i]`` is a path, a PIL image, or a list of them (several images in one turn, e.g. a
    reference and a distorted image); ``prompts[i]`` the user text. Rows are batched in order of
    their input length (number of images, then tokens), so that a batch pads little: with
    questions of different lengths interleaved (the perception tasks), padding every batch to its
    longest prompt cost about a fifth of the prefill. The order is fixed by the inputs alone.
    """
    from tqdm.auto import tqdm

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts; expected one entry per prompt")
    groups = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
    texts = [chat_text(processor, p, len(g)) for p, g in zip(prompts, groups)]
    lengths = [len(ids) for ids in processor.tokenizer(texts, add_special_tokens=False)["input_ids"]] if texts else []
    order = sorted(range(len(texts)), key=lambda i: (len(groups[i]), lengths[i], i))
    out: list[str] = [""] * len(texts)
    step = max(1, int(batch_size))
    with tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False) as bar:
        for start in range(0, len(order), step):
            rows = order[start:start + step]
            got = generate_greedy(model, processor, [texts[i] for i in rows], [im for i in rows for im in groups[i]],
                                  max_new_tokens)
            for i, text in zip(rows, got):
                out[i] = text
            bar.update(len(rows))
    return out
