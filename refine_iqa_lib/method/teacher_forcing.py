"""Teacher forcing for the probability-difference (PD) reward (Eq. 2-4).

For one group - an image, its G think-mode rollouts and the ground-truth MOS - the PD reward
needs, for every rollout, the probability the policy gives each ground-truth digit when the
rollout's predicted score is replaced by the ground truth ("think" mode, Eq. 2), and the same
probabilities on the fixed no-think layout ``<answer>{gt}</answer>`` (``r_ref``, Eq. 4; fixed, so
computed once per group). :func:`pd_rewards_for_group` computes all G + 1 rows together, without
gradients: the prompt text both modes share (with the image) runs once, each mode's remaining
prompt tokens once, and then **all G rollouts plus the reference in one batched pass** on top of
the cached prompts (``share_prompt=True``; the plain alternative runs G + 1 full rows in one pass
with the image repeated per row, as TRL does - same numbers, several times the cost, because the
prompt is most of every row).

How a rollout is teacher-forced (:func:`forced_completion`):

* it has a score in its last ``<answer>`` block (see :func:`refine_iqa_lib.method.rewards.score_span`):
  everything before that number is kept verbatim and the number is replaced by the ground-truth
  text (``prompts.format_mos_text``: same digit count for every rollout, M = 2 in the paper);
* it has none (no closed answer block, or no number in it): the think layout is rebuilt from its
  think text (:func:`refine_iqa_lib.method.rewards.extract_think`: the first think block, or the text
  after an unclosed ``<think>``, or nothing) as ``<think>{think}</think><answer>{prefix}{gt}``.
  Such a rollout has ``r_ans = 0``, so Eq. 5 ignores its PD value; it is computed only to keep
  the batch rectangular and the logs complete.

The text is cut right after the last ground-truth digit (later tokens cannot change a causal
model's earlier probabilities). Each digit's probability is the softmax over the **full
vocabulary** of the logits at the position before it. Digits are located at the end of each row
and checked: the row must end with the tokens of the ground-truth text, one token per digit (true
for Qwen2's tokenizer and the tiny stand-in: digits are pre-tokenised one by one); otherwise a
``ValueError`` says which text broke the rule.

Prompts go through the processor (image-token expansion), completions through the tokenizer on
their own - as TRL tokenises prompt and completion ids separately. Padding: rows have different
lengths; the attention mask hides the pads and position ids are built for the real tokens only.
Qwen2.5-VL's multimodal (mrope) position ids come from ``input_ids``, ``image_grid_thw``,
``mm_token_type_ids`` *and the attention mask* (pads are skipped), so a padded row gets exactly the
positions it has alone; the shared-prompt path computes them once with the model's
``get_rope_index`` and continues each row's text positions after its prompt. (Without
``mm_token_type_ids`` the model silently falls back to 1D positions: tested as a negative control.)
Logits are projected onto the vocabulary only at the M positions that predict digits
(``logits_to_keep``), and in float32 (:class:`_Fp32Head`: the final hidden states of those
positions and the output projection are upcast before the product), so a bfloat16 policy's digit
probabilities are not rounded to its 8-bit logits (about 6 % for logits in [16, 32)): Eq. 6
divides by the group's bare standard deviation, so rounding noise between equally good rollouts
would otherwise become full-size advantages (:mod:`refine_iqa_lib.method.advantages`, near-ties).
A prompt may show several images (one placeholder each); all of them are passed.

``variant="authors"``: the authors' layout ``<answer>Score: X.XX</answer>`` (three digits) and a
PD that uses only the first decimal digit's probability (given the forced integer digit); their
code sampled G no-think completions for the reference instead of one forced pass - here the
reference is always the fixed layout (the paper's Eq. 4).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from refine_iqa_lib.prompts import ANSWER_LAYOUT, check_mode, check_variant, format_mos_text, scoring_prompt, user_message
from refine_iqa_lib.generation import model_device
from refine_iqa_lib.method.rewards import (
    ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, completion_to_text, extract_think, is_correct, mode_reward, pd_reward,
    score_span,
)

log = logging.getLogger(__name__)

__all__ = [
    "forced_completion", "reference_completion", "forced_digit_probs", "teacher_forced_digit_probs",
    "GroupPD", "pd_rewards_for_group", "group_bounds", "PDReward",
]


def forced_completion(completion: str, gt_text: str, mode: str = "think", variant: str = "paper") -> str:
    """The rollout with its predicted score replaced by ``gt_text``, cut after the last digit.

    >>> forced_completion("<think>sharp, clean</think><answer>4.6</answer>", "3.4")
    '<think>sharp, clean</think><answer>3.4'
    >>> forced_completion("<think>noisy</think><answer>Score: 2</answer>", "1.25", variant="authors")
    '<think>noisy</think><answer>Score: 1.25'
    >>> forced_completion("<think>dark and grainy", "1.2")  # truncated rollout: layout rebuilt
    '<think>dark and grainy</think><answer>1.2'
    >>> forced_completion("2.0", "1.2", mode="no_think")
    '<answer>1.2'
    """
    check_mode(mode)
    prefix, _ = ANSWER_LAYOUT[check_variant(variant)]
    text = completion_to_text(completion)
    span = score_span(text)
    if span is not None:
        return text[:span[0]] + gt_text
    if mode == "think":
        return f"{THINK_OPEN}{extract_think(text)}{THINK_CLOSE}{ANSWER_OPEN}{prefix}{gt_text}"
    return f"{ANSWER_OPEN}{prefix}{gt_text}"


def reference_completion(gt_text: str, variant: str = "paper") -> str:
    """The fixed no-think layout for ``r_ref`` (Eq. 4), cut after the last digit.

    >>> reference_completion("3.4"), reference_completion("3.41", "authors")
    ('<answer>3.4', '<answer>Score: 3.41')
    """
    prefix, _ = ANSWER_LAYOUT[check_variant(variant)]
    return f"{ANSWER_OPEN}{prefix}{gt_text}"


def _prompt_text(processor, messages: list[dict], chat_template: str | None = None,
                 template_kwargs: dict | None = None) -> str:
    """The prompt text of ``messages`` as TRL renders it for generation (``chat_template`` and
    ``template_kwargs``: TRL's ``GRPOTrainer.chat_template`` / ``args.chat_template_kwargs``)."""
    return processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False,
                                         **({"chat_template": chat_template} if chat_template else {}),
                                         **(template_kwargs or {}))


def _image_list(image: Any) -> list:
    """One prompt's images: a single image or a list / tuple of them."""
    return list(image) if isinstance(image, (list, tuple)) else [image]


def _check_prompt_ids(prompts: Sequence[str], distinct: list[str], toks: list[list[int]],
                      expected: Sequence[Sequence[int] | None] | None, names: Sequence[str] | None,
                      offset: int) -> None:
    """Raise ``ValueError`` naming the row when a prompt's token ids (as encoded here) differ from
    ``expected`` (the ids TRL sampled the row's completion from): the forced sequence must continue
    exactly the prompt the completion was sampled from."""
    if expected is None:
        return
    for r, (p, want) in enumerate(zip(prompts, expected)):
        if want is None:
            continue
        want = [int(x) for x in want]
        got = toks[distinct.index(p)]
        if got != want:
            j = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
            name = names[r] if names is not None else f"row {offset + r}"
            raise ValueError(
                f"{name}: the prompt the PD reward forces from is not the prompt TRL sampled the completion from "
                f"({len(got)} vs {len(want)} tokens, first difference at token {j}: "
                f"{got[j:j + 3]} vs {want[j:j + 3]}); render both with the same chat template and images")


def _gt_token_layout(tokenizer, gt_text: str) -> tuple[list[int], list[int]]:
    """``(token ids of gt_text, index within them of each digit)``; one token per digit required."""
    enc = tokenizer(gt_text, add_special_tokens=False, return_offsets_mapping=True)
    ids, offsets = list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]
    digit_idx = []
    for pos, ch in enumerate(gt_text):
        if not ch.isdigit():
            continue
        hits = [j for j, o in enumerate(offsets) if o == (pos, pos + 1)]
        if len(hits) != 1:
            pieces = [gt_text[a:b] for a, b in offsets]
            raise ValueError(
                f"ground-truth text {gt_text!r}: digit {ch!r} at {pos} is not a token of its own (tokens "
                f"{pieces}); the PD reward needs a tokenizer that splits numbers digit by digit (Qwen2's does)")
        digit_idx.append(hits[0])
    return ids, digit_idx


def _rope_index_fn(model):
    """Qwen2.5-VL's ``get_rope_index`` (multimodal position ids), wherever a wrapper keeps it."""
    inner = getattr(model, "model", None)
    if getattr(inner, "get_rope_index", None) is not None:
        return inner.get_rope_index
    for module in model.modules():
        if getattr(module, "get_rope_index", None) is not None:
            return module.get_rope_index
    raise TypeError(f"{type(model).__name__} has no get_rope_index; share_prompt=True needs a Qwen2-VL-style "
                    "model (use share_prompt=False)")


def _encode_completions(tokenizer, forced_texts: Sequence[str], gt_ids: list[int]) -> list[list[int]]:
    """Token ids of each forced completion (tokenised on its own, as TRL's completion ids are);
    each must end with the ground-truth tokens."""
    out = []
    for i, text in enumerate(forced_texts):
        ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
        if ids[-len(gt_ids):] != gt_ids:
            raise ValueError(f"row {i}: forced completion {text[-60:]!r} does not end with the ground-truth "
                             f"tokens {gt_ids} (got {ids[-len(gt_ids):]})")
        out.append(ids)
    return out


def _check_ids(rows: Sequence[Sequence[int]], gt_ids: list[int], offset: int = 0) -> list[list[int]]:
    out = []
    for i, ids in enumerate(rows):
        ids = [int(x) for x in ids]
        if ids[-len(gt_ids):] != gt_ids:
            raise ValueError(f"row {offset + i}: forced token ids end with {ids[-len(gt_ids):]}, expected the "
                             f"ground-truth tokens {gt_ids}")
        out.append(ids)
    return out


def forced_ids_from_sampled(tokenizer, completion_ids: Sequence[int], gt_ids: Sequence[int]) -> list[int] | None:
    """Token-exact teacher forcing of a sampled rollout: its own sampled tokens up to the start of
    the score in its last answer block, then the ground-truth tokens. ``None`` when the score does
    not start at a token boundary of the sampled ids, or there is no score (then
    :func:`forced_completion` re-tokenises the text instead).

    Decoded lengths grow with the prefix, so the boundary is found by bisection (a handful of
    decodes for a 1,024-token rollout), then checked by decoding.
    """
    ids = [int(x) for x in completion_ids]
    text = tokenizer.decode(ids, skip_special_tokens=True)
    span = score_span(text)
    if span is None:
        return None
    target = text[:span[0]]
    lo, hi = 0, len(ids)
    while lo < hi:                       # smallest k with len(decode(ids[:k])) >= len(target)
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) < len(target):
            lo = mid + 1
        else:
            hi = mid
    if tokenizer.decode(ids[:lo], skip_special_tokens=True) != target:
        return None
    return ids[:lo] + [int(x) for x in gt_ids]


def forced_digit_probs(model, processor, prompt_texts: Sequence[str], forced_texts: Sequence[str] | None, image: Any,
                       gt_text: str, padding_side: str = "left", batch_size: int | None = None,
                       share_prompt: bool = True, forced_ids: Sequence[Sequence[int]] | None = None,
                       prompt_ids: Sequence[Sequence[int] | None] | None = None,
                       row_names: Sequence[str] | None = None) -> np.ndarray:
    """Probabilities of the ground-truth digits at the end of ``prompt + forced`` rows.

    Prompts go through the processor (with ``image``: one image, or the list of images every prompt
    shows, one placeholder each), completions through the tokenizer on their own (as TRL tokenises
    prompt and completion separately). Returns shape ``(rows, number of digits in gt_text)``,
    float64; every forced text must end with ``gt_text``. No gradients. The probabilities are a
    full-vocabulary softmax of float32 logits (:class:`_Fp32Head`), also for a bfloat16 model.

    ``prompt_ids``: per row, the token ids of the prompt its completion was sampled from (TRL's), or
    ``None``; a row whose prompt encodes to other ids raises ``ValueError`` naming it (``row_names``
    label the rows), so the forced sequence provably continues that prompt.

    ``share_prompt=True`` (default): the prefix all prompts share (with the image) runs once, then
    each distinct prompt's remaining tokens once, and all completions run in **one batched pass**
    (``forced_ids``: the completions' token ids themselves, each ending with the ground truth's
    tokens; then ``forced_texts`` only label the rows)
    on top of their prompt's KV cache (prompt tokens are most of a row, so this is several times
    cheaper); position ids come from Qwen2.5-VL's ``get_rope_index``. ``share_prompt=False``: every row is ``prompt + completion`` in
    one plain batched pass (``padding_side`` pads; the model derives the position ids from the
    attention mask). Both give the same numbers (tested). ``batch_size`` splits the rows.
    """
    import torch

    n_rows = len(forced_ids) if forced_ids is not None else len(forced_texts)
    if len(prompt_texts) != n_rows:
        raise ValueError(f"{len(prompt_texts)} prompts for {n_rows} forced completions")
    if padding_side not in ("left", "right"):
        raise ValueError(f"padding_side must be 'left' or 'right', got {padding_side!r}")
    for t in (forced_texts if forced_ids is None else []):
        if not t.endswith(gt_text):
            raise ValueError(f"forced completion {t[-60:]!r} does not end with the ground truth {gt_text!r}")
    tokenizer = getattr(processor, "tokenizer", processor)
    gt_ids, digit_idx = _gt_token_layout(tokenizer, gt_text)
    rows = n_rows
    out = np.zeros((rows, len(digit_idx)), dtype=np.float64)
    if rows == 0:
        return out
    step = rows if not batch_size else int(batch_size)
    was_training = getattr(model, "training", False)
    model.eval()
    try:
        with torch.no_grad():
            for lo in range(0, rows, step):
                hi = min(rows, lo + step)
                comp = (_encode_completions(tokenizer, forced_texts[lo:hi], gt_ids) if forced_ids is None
                        else _check_ids(forced_ids[lo:hi], gt_ids, lo))
                run = _shared_prompt_pass if share_prompt else _plain_pass
                check = (None if prompt_ids is None else prompt_ids[lo:hi],
                         None if row_names is None else row_names[lo:hi], lo)
                out[lo:hi] = run(model, processor, list(prompt_texts[lo:hi]), comp, _image_list(image), gt_ids,
                                 digit_idx, padding_side, check)
    finally:
        model.train(was_training)
    return out


class _Fp32Head:
    """The logits of one forward pass in float32, computed from the final hidden states at the
    kept positions with the output projection (``lm_head``) upcast to float32.

    A forward pre-hook on the model's output embeddings sees exactly what ``lm_head`` gets (the
    positions of ``logits_to_keep``; under DeepSpeed ZeRO-3 its weight is gathered by then) and
    projects it in float32, in slices of the vocabulary so that no float32 copy of the whole
    matrix is made. In bfloat16 the model's own logits are rounded to 8 significant bits (steps of
    0.125 for logits in [16, 32), so a probability can be off by about 6 %); these are not.

    ``with _Fp32Head(model) as head: model(...)`` then ``head.logits``.
    """

    CHUNK = 16384                        # vocabulary rows projected at once

    def __init__(self, model):
        self.head = model.get_output_embeddings()
        if self.head is None or getattr(self.head, "weight", None) is None:
            raise TypeError(f"{type(model).__name__} has no output embeddings (lm_head) to project in float32")
        self.logits = None

    def __enter__(self):
        self.handle = self.head.register_forward_pre_hook(self._project)
        return self

    def __exit__(self, *exc):
        self.handle.remove()

    def _project(self, module, args):
        import torch

        h = args[0].float()
        weight, bias = module.weight, getattr(module, "bias", None)
        out = torch.empty(*h.shape[:-1], weight.shape[0], dtype=torch.float32, device=h.device)
        for lo in range(0, weight.shape[0], self.CHUNK):
            out[..., lo:lo + self.CHUNK] = h @ weight[lo:lo + self.CHUNK].float().T
        if bias is not None:
            out += bias.float()
        self.logits = out


def _forward(model, **kwargs):
    """``(model output, float32 logits of its kept positions)`` (see :class:`_Fp32Head`)."""
    with _Fp32Head(model) as head:
        out = model(**kwargs)
    return out, head.logits


def _digit_probs_from(logits, target_ids) -> np.ndarray:
    """``logits``: (rows, n_digits, vocab) at the positions before each digit -> (rows, n_digits)."""
    import torch

    probs = torch.softmax(logits.double(), dim=-1)                     # full-vocabulary softmax
    t = torch.as_tensor(target_ids, device=probs.device)[None, :, None].expand(probs.shape[0], -1, 1)
    return torch.gather(probs, 2, t)[..., 0].double().cpu().numpy()


def _plain_pass(model, processor, prompts: list[str], comp: list[list[int]], images: list, gt_ids, digit_idx,
                padding_side: str, check: tuple = (None, None, 0)) -> np.ndarray:
    import torch

    device = model_device(model)
    distinct = list(dict.fromkeys(prompts))
    enc = processor(text=distinct, images=list(images) * len(distinct), return_tensors="pt", padding=True,
                    padding_side="left")
    grid_one = enc["image_grid_thw"][:len(images)]                    # one prompt's images
    pixel_one = enc["pixel_values"][:int(grid_one.prod(-1).sum())]
    pad_id = processor.tokenizer.pad_token_id if processor.tokenizer.pad_token_id is not None else 0
    toks = [enc["input_ids"][k][enc["attention_mask"][k].bool()].tolist() for k in range(len(distinct))]
    _check_prompt_ids(prompts, distinct, toks, *check)
    seqs, types = [], []
    for p, c in zip(prompts, comp):
        k = distinct.index(p)
        keep = enc["attention_mask"][k].bool()
        seqs.append(toks[k] + c)
        types.append(enc["mm_token_type_ids"][k][keep].tolist() + [0] * len(c))
    width = max(len(x) for x in seqs)
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    mm = torch.zeros_like(ids)
    ends = []
    for r, (x, t) in enumerate(zip(seqs, types)):
        a = width - len(x) if padding_side == "left" else 0
        ids[r, a:a + len(x)] = torch.tensor(x)
        mm[r, a:a + len(x)] = torch.tensor(t)
        mask[r, a:a + len(x)] = 1
        ends.append(a + len(x))                                          # one past the last token
    n_gt = len(gt_ids)
    ends_t = torch.tensor(ends)
    digit_pos = ends_t[:, None] - n_gt + torch.tensor(digit_idx)[None, :]
    need = digit_pos - 1                                                 # logits before each digit
    keep = torch.unique(need)
    col = torch.searchsorted(keep, need)
    inputs = {"input_ids": ids, "attention_mask": mask, "mm_token_type_ids": mm,
              "pixel_values": pixel_one.repeat(len(seqs), 1), "image_grid_thw": grid_one.repeat(len(seqs), 1)}
    inputs = {k: v.to(device) for k, v in inputs.items()}
    _, logits = _forward(model, **inputs, use_cache=False, logits_to_keep=keep.to(device))
    sel = torch.gather(logits, 1, col.to(device)[:, :, None].expand(-1, -1, logits.shape[-1]))
    return _digit_probs_from(sel, [gt_ids[j] for j in digit_idx])


def _right_pad(rows: list[list[int]], pad: int, device) -> tuple[Any, Any]:
    import torch

    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad, dtype=torch.long, device=device)
    mask = torch.zeros_like(ids)
    for i, r in enumerate(rows):
        ids[i, :len(r)] = torch.tensor(r, dtype=torch.long, device=device)
        mask[i, :len(r)] = 1
    return ids, mask


def _shared_prompt_pass(model, processor, prompts: list[str], comp: list[list[int]], images: list, gt_ids,
                        digit_idx, padding_side: str, check: tuple = (None, None, 0)) -> np.ndarray:
    """Three levels, each run once: (0) the prefix all prompts share, image included (1 row);
    (1) each distinct prompt's remaining tokens on top of it (one row per prompt); (2) every
    completion on top of its prompt (one row per completion). Explicit Qwen2.5-VL position ids."""
    import torch

    device = model_device(model)
    tok = processor.tokenizer
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    distinct = list(dict.fromkeys(prompts))
    src = torch.tensor([distinct.index(p) for p in prompts], device=device)
    enc = processor(text=distinct, images=list(images) * len(distinct), return_tensors="pt", padding=True,
                    padding_side="left")
    enc = {k: v.to(device) for k, v in enc.items() if isinstance(v, torch.Tensor)}
    pos_all, _ = _rope_index_fn(model)(enc["input_ids"], mm_token_type_ids=enc["mm_token_type_ids"],
                                       image_grid_thw=enc["image_grid_thw"], attention_mask=enc["attention_mask"])
    keep = [m.bool() for m in enc["attention_mask"]]
    toks = [enc["input_ids"][k][keep[k]].tolist() for k in range(len(distinct))]
    types = [enc["mm_token_type_ids"][k][keep[k]] for k in range(len(distinct))]
    pos = [pos_all[:, k, keep[k]] for k in range(len(distinct))]           # (3, len_k) each
    _check_prompt_ids(prompts, distinct, toks, *check)

    # level 0: the longest common prefix, if it holds the whole image and leaves every prompt a token
    n0 = 0
    shortest = min(len(t) for t in toks)
    while n0 < shortest - 1 and all(t[n0] == toks[0][n0] for t in toks):
        n0 += 1
    image_idx = torch.nonzero(types[0] != 0)
    if image_idx.numel() and n0 <= int(image_idx.max()):
        n0 = 0
    cache = None
    if n0:
        grid_one = enc["image_grid_thw"][:len(images)]                     # the first prompt's images
        first = model(input_ids=torch.tensor([toks[0][:n0]], device=device),
                      attention_mask=torch.ones(1, n0, dtype=torch.long, device=device),
                      position_ids=pos[0][:, None, :n0], mm_token_type_ids=types[0][None, :n0],
                      pixel_values=enc["pixel_values"][:int(grid_one.prod(-1).sum())],
                      image_grid_thw=grid_one, use_cache=True, logits_to_keep=1)
        cache = first.past_key_values
        cache.batch_repeat_interleave(len(distinct))

    # level 1: the rest of each distinct prompt (right padded)
    ids1, mask1 = _right_pad([t[n0:] for t in toks], pad_id, device)
    pos1 = torch.zeros(pos_all.shape[0], len(distinct), ids1.shape[1], dtype=pos_all.dtype, device=device)
    for k in range(len(distinct)):
        pos1[:, k, :len(toks[k]) - n0] = pos[k][:, n0:]
    kwargs = {}
    if not n0:  # the image lives in this level
        types1 = torch.zeros_like(ids1)
        for k in range(len(distinct)):
            types1[k, :len(toks[k])] = types[k]
        kwargs = {"pixel_values": enc["pixel_values"], "image_grid_thw": enc["image_grid_thw"],
                  "mm_token_type_ids": types1}
    lens1 = mask1.sum(1)
    last1 = lens1 - 1
    keep1 = torch.unique(last1)
    mask_01 = torch.cat([torch.ones(len(distinct), n0, dtype=torch.long, device=device), mask1], dim=1)
    second, second_logits = _forward(model, input_ids=ids1, attention_mask=mask_01, position_ids=pos1,
                                     past_key_values=cache, use_cache=True, logits_to_keep=keep1, **kwargs)
    prompt_last = second_logits[torch.arange(len(distinct), device=device), torch.searchsorted(keep1, last1)]
    cache = second.past_key_values
    cache.batch_select_indices(src)

    # level 2: all completions in one pass (right padded)
    ids2, mask2 = _right_pad(comp, pad_id, device)
    next_pos = torch.stack([p.amax() + 1 for p in pos])                    # first free position per prompt
    pos2 = (next_pos[src][:, None] + torch.arange(ids2.shape[1], device=device)[None, :])
    pos2 = pos2[None].expand(pos_all.shape[0], -1, -1)
    mask = torch.cat([mask_01[src], mask2], dim=1)
    n_gt = len(gt_ids)
    lens2 = mask2.sum(1)
    need = lens2[:, None] - n_gt + torch.tensor(digit_idx, device=device)[None, :] - 1
    keep2 = torch.unique(need.clamp(min=0))
    col = torch.searchsorted(keep2, need.clamp(min=0))
    _, logits = _forward(model, input_ids=ids2, attention_mask=mask, position_ids=pos2, past_key_values=cache,
                         use_cache=True, logits_to_keep=keep2)             # (rows, len(keep2), vocab), float32
    sel = torch.gather(logits, 1, col[:, :, None].expand(-1, -1, logits.shape[-1]))
    # a digit that opens its completion is predicted by the prompt's last position
    sel = torch.where((need < 0)[:, :, None], prompt_last[src][:, None, :].expand_as(sel), sel)
    return _digit_probs_from(sel, [gt_ids[j] for j in digit_idx])


def teacher_forced_digit_probs(model, processor, prompt_messages: list[dict], image: Any,
                               completions: Sequence[Any], mos: float, mode: str = "think",
                               variant: str = "paper", padding_side: str = "left",
                               batch_size: int | None = None, share_prompt: bool = True) -> np.ndarray:
    """``z`` of Eq. 2 for each completion: ground-truth digit probabilities, shape ``(G, M)``.

    ``prompt_messages`` are the chat messages of the prompt (e.g.
    ``prompts.user_message(prompts.scoring_prompt(mode))``); each completion is teacher-forced with
    :func:`forced_completion`. One batched no-grad forward pass for all completions.
    """
    gt_text = format_mos_text(mos, variant)
    prompt = _prompt_text(processor, prompt_messages)
    forced = [forced_completion(c, gt_text, mode, variant) for c in completions]
    return forced_digit_probs(model, processor, [prompt] * len(forced), forced, image, gt_text,
                              padding_side=padding_side, batch_size=batch_size, share_prompt=share_prompt)


@dataclass
class GroupPD:
    """PD quantities of one group (Eq. 2-4)."""

    gt_text: str
    think_probs: np.ndarray            # (G, M) z^think per rollout
    ref_probs: np.ndarray              # (M,)   z^no-think on the fixed layout
    r_think: np.ndarray                # (G,)   Eq. 2, think mode
    r_ref: float                       # Eq. 2, no-think mode (once per group)
    r_pd: np.ndarray                   # (G,)   Eq. 4
    forced: list[str] = field(default_factory=list)


def pd_rewards_for_group(model, processor, image: Any, completions: Sequence[Any], mos: float,
                         think_messages: list[dict] | None = None, no_think_messages: list[dict] | None = None,
                         variant: str = "paper", padding_side: str = "left",
                         batch_size: int | None = None, share_prompt: bool = True) -> GroupPD:
    """Eq. 2-4 for one group: ``r_pd^i = clip(r_think^i − r_ref, 0, 1)``.

    The G think rollouts are teacher-forced with the ground truth under the think prompt, the fixed
    no-think layout under the no-think prompt; all G + 1 rows go through the policy together
    without gradients (the shared prompt once, then one batched pass over the G + 1 completions;
    see :func:`forced_digit_probs`). Prompts default to the project's scoring prompts for
    ``variant``. The returned :class:`GroupPD` holds ``z`` per rollout, ``r_think``, ``r_ref`` and
    the (ungated) ``r_pd``.
    """
    if think_messages is None:
        think_messages = user_message(scoring_prompt("think", variant))
    if no_think_messages is None:
        no_think_messages = user_message(scoring_prompt("no_think", variant))
    gt_text = format_mos_text(mos, variant)
    forced = [forced_completion(c, gt_text, "think", variant) for c in completions]
    prompts = [_prompt_text(processor, think_messages)] * len(forced) + [_prompt_text(processor, no_think_messages)]
    z = forced_digit_probs(model, processor, prompts, forced + [reference_completion(gt_text, variant)], image,
                           gt_text, padding_side=padding_side, batch_size=batch_size, share_prompt=share_prompt)
    think_probs, ref_probs = z[:-1], z[-1]
    r_think = np.array([mode_reward(p, variant) for p in think_probs])
    r_ref = mode_reward(ref_probs, variant)
    r_pd = np.array([pd_reward(r, r_ref) for r in r_think])
    return GroupPD(gt_text, think_probs, ref_probs, r_think, r_ref, r_pd, forced)


# --------------------------------------------------------------------------- the trainer's PD reward


def group_bounds(keys: Sequence) -> list[tuple[int, int]]:
    """Runs of equal consecutive keys: TRL lays out each prompt's G rollouts consecutively.

    >>> group_bounds([7, 7, 7, 3, 3, 7])
    [(0, 3), (3, 5), (5, 6)]
    """
    bounds, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            bounds.append((start, i))
            start = i
    return bounds


class PDReward:
    """TRL reward ``pd``: Eq. 4's ``r_pd`` **gated by Eq. 5** (0 unless ``r_ans = r_fmt = 1``),
    computed with the live policy. The one PD path: the trainer uses it and the tests call it.

    With TRL's ``reward_weights = [λ1, λ2, λ3]`` for ``[answer, format, pd]`` the weighted sum TRL
    forms is exactly Eq. 5. ``policy`` and ``processor`` are zero-argument callables returning the
    current (unwrapped) model and its processor (a trainer hands over its live ones). Dataset columns
    used: ``mos``, ``images``, ``prompt_text`` and ``no_think_text`` (the think and no-think
    prompts), ``id`` (groups a prompt's rollouts; without it, prompt text and MOS do).

    **Only where it counts.** Eq. 5 uses ``r_pd`` only for correct rollouts, so only those are
    teacher-forced, plus each group's ``r_ref`` row; a group without a correct rollout runs just that
    one cheap row, so every process makes the same number of forward calls whatever its rollouts
    are (ZeRO-3 needs equal *numbers* of calls, not equal rows). The forced rows start from the
    sampled ``completion_ids`` (:func:`forced_ids_from_sampled`: the tokens the policy sampled, then
    the ground truth's), so teacher forcing sees exactly the sampled tokens; a rollout whose score
    does not start at a token boundary (or has no score) falls back to re-tokenised text. With
    ``reference="sampled"`` and a ``no_think_sample`` column (one sampled no-think completion per
    rollout, the authors' reference) each correct rollout's ``r_ref`` comes from its own sample,
    forced in the *same* pass (one prompt encoding for both prompts) from its sampled token ids
    (column ``no_think_sample_ids``) in the same way, and the fixed reference row is not computed.
    Every row forced from re-tokenised text - a think rollout or a sampled reference - is counted
    in ``refine/pd_retokenised``.

    **The prompt TRL sampled from.** The think prompt is the row's own chat messages as TRL passed
    them (``prompts``; else ``prompt_text`` with one image placeholder per image), the no-think
    prompt ``no_think_text`` with the same images; both are rendered with TRL's chat template and
    ``chat_template_kwargs`` (:attr:`chat_template`, :attr:`chat_template_kwargs`, set by the
    trainer). With the column ``sampled_prompt_ids`` (the prompt token ids TRL generated the
    rollout from; :class:`refine_iqa_lib.training.trainer.RefineGRPOTrainer` adds it) every forced
    think row is checked to start with exactly those ids, and a row that does not raises
    ``ValueError`` naming it. Every image of a row is passed (a row of two pictures has two
    placeholders and two images).

    **Numbers.** The digit probabilities are softmaxes of float32 logits (:class:`_Fp32Head`), so
    that rounding cannot make rollouts that are equally good differ (Eq. 6 divides by the group's
    bare standard deviation; see :mod:`refine_iqa_lib.method.advantages` on near-ties). Probabilities
    that are not finite (a diverged policy) give NaN for ``r_think`` / ``r_ref`` and a NaN reward
    for a correct rollout - TRL leaves a NaN out of the weighted sum, and the loss guard stops the
    run with a checkpoint - instead of an exception in the middle of a step.

    **Ungated PD for the metrics.** Every ``raw_every`` steps (TRL's ``trainer_state``), every
    rollout is teacher-forced, and ``refine/pd_raw`` (ungated Eq. 4 over all rollouts),
    ``refine/r_think`` and ``refine/r_ref`` are logged through TRL's ``log_metric`` hook (exact
    means over all processes), with the per-rollout values in the completions table (``log_extra``
    column ``pd_raw``); on the other steps only the gated rewards are computed. ``raw_every = 1``
    computes every rollout at every step (the behaviour before gating).
    """

    __name__ = "pd"

    def __init__(self, policy: Callable[[], Any], processor: Callable[[], Any], eps: float = 0.5,
                 variant: str = "paper", reference: str = "forced", raw_every: int = 1,
                 chat_template: str | None = None, chat_template_kwargs: dict | None = None):
        if reference not in ("forced", "sampled"):
            raise ValueError(f"reference {reference!r}: expected 'forced' or 'sampled'")
        if int(raw_every) < 0:
            raise ValueError(f"raw_every {raw_every}: expected >= 0 (0 = never compute ungated PD)")
        self.policy, self.processor = policy, processor
        self.eps, self.variant, self.reference = float(eps), check_variant(variant), reference
        self.raw_every = int(raw_every)
        #: TRL's chat template (``GRPOTrainer.chat_template``, ``None`` = the processor's) and
        #: ``GRPOConfig.chat_template_kwargs``: the prompts are rendered as TRL renders them.
        self.chat_template, self.chat_template_kwargs = chat_template, dict(chat_template_kwargs or {})

    def _forced_ids(self, tok, sampled_ids, text: str, gt_text: str, gt_ids: list[int], mode: str
                    ) -> tuple[list[int], bool]:
        """``(forced token ids, whether they come from re-tokenised text)`` of one completion."""
        if sampled_ids is not None:
            forced = forced_ids_from_sampled(tok, sampled_ids, gt_ids)
            if forced is not None:
                return forced, False
        text_ids = _encode_completions(tok, [forced_completion(text, gt_text, mode, self.variant)], gt_ids)[0]
        return text_ids, sampled_ids is not None

    def compute(self, completions: Sequence[Any], completion_ids: Sequence[Sequence[int]] | None = None,
                prompts: Sequence[Any] | None = None, **kw) -> dict[str, Any]:
        """Per rollout: ``gated`` (the reward), ``raw`` / ``r_think`` / ``r_ref`` (NaN where not
        computed), ``correct``; plus ``full`` (whether every rollout was forced), ``rows`` (forced
        rows run) and ``retokenised`` (rows forced from re-tokenised text)."""
        texts = [completion_to_text(c) for c in completions]
        n = len(texts)
        for col in ("mos", "images", "prompt_text", "no_think_text"):
            if kw.get(col) is None or len(kw[col]) != n:
                raise ValueError(f"reward 'pd' needs the dataset column {col!r} ({n} values); got {sorted(kw)}")
        keys = list(kw["id"]) if kw.get("id") is not None else list(zip(kw["prompt_text"], map(float, kw["mos"])))
        sampled = kw.get("no_think_sample") if self.reference == "sampled" else None
        sampled_ids = kw.get("no_think_sample_ids") if sampled is not None else None
        expected = kw.get("sampled_prompt_ids")
        state = kw.get("trainer_state")
        step = int(getattr(state, "global_step", 0) or 0)
        full = self.raw_every > 0 and step % self.raw_every == 0
        policy, processor, variant = self.policy(), self.processor(), self.variant
        tok = getattr(processor, "tokenizer", processor)
        template = (self.chat_template, self.chat_template_kwargs)
        correct = np.array([is_correct(t, m, self.eps, variant, "think") for t, m in zip(texts, kw["mos"])], bool)
        nan = float("nan")
        raw, r_think, r_ref = np.full(n, nan), np.full(n, nan), np.full(n, nan)
        rows_run, retokenised = 0, 0
        for lo, hi in group_bounds(keys):
            images = _image_list(kw["images"][lo])
            think_messages = (prompts[lo] if prompts is not None and isinstance(prompts[lo], list)
                              else user_message(kw["prompt_text"][lo], len(images)))
            think_prompt = _prompt_text(processor, think_messages, *template)
            no_think_prompt = _prompt_text(processor, user_message(kw["no_think_text"][lo], len(images)), *template)
            gt_text = format_mos_text(float(kw["mos"][lo]), variant)
            gt_ids, _ = _gt_token_layout(tok, gt_text)
            want = [j for j in range(lo, hi) if full or correct[j]]
            rows, ids, expect = [], [], []
            for j in want:                                   # the think rollouts, token-exact where possible
                forced, re = self._forced_ids(tok, None if completion_ids is None else completion_ids[j], texts[j],
                                              gt_text, gt_ids, "think")
                retokenised += re
                rows.append((think_prompt, f"row {j}" + (f" (id {kw['id'][j]})" if kw.get("id") is not None else "")))
                ids.append(forced)
                expect.append(None if expected is None else expected[j])
            if sampled is not None and want:                  # each rollout's own sampled no-think answer
                for j in want:
                    forced, re = self._forced_ids(tok, None if sampled_ids is None else sampled_ids[j], sampled[j],
                                                  gt_text, gt_ids, "no_think")
                    retokenised += re
                    rows.append((no_think_prompt, f"row {j} (no-think reference)"))
                    ids.append(forced)
                    expect.append(None)
            else:                                             # the fixed no-think layout (Eq. 4), or the cheap row
                rows.append((no_think_prompt, f"group at row {lo} (no-think reference)"))
                ids.append(_encode_completions(tok, [reference_completion(gt_text, variant)], gt_ids)[0])
                expect.append(None)
            z = forced_digit_probs(policy, processor, [p for p, _ in rows], None, images, gt_text, forced_ids=ids,
                                   prompt_ids=expect if expected is not None else None,
                                   row_names=[name for _, name in rows])
            rows_run += len(rows)
            k = len(want)
            think_r = [mode_reward(p, variant) for p in z[:k]]
            ref_r = [mode_reward(p, variant) for p in z[k:]]
            for pos, j in enumerate(want):
                r_think[j] = think_r[pos]
                r_ref[j] = ref_r[pos] if sampled is not None else ref_r[0]
                raw[j] = pd_reward(r_think[j], r_ref[j])
            if sampled is None:
                r_ref[lo:hi] = ref_r[0]
        bad = int(np.sum(correct & np.isnan(raw)))
        if bad:
            log.warning("PD reward: %d correct rollout(s) with non-finite digit probabilities (is the policy "
                        "diverging?); their PD reward is NaN and left out of the sum", bad)
        gated = np.where(correct, raw, 0.0)
        return {"gated": gated, "raw": raw, "r_think": r_think, "r_ref": r_ref, "correct": correct, "full": full,
                "rows": rows_run, "retokenised": retokenised}

    def __call__(self, prompts=None, completions=None, completion_ids=None, **kw) -> list[float]:
        out = self.compute(completions, completion_ids, prompts=prompts, **kw)
        log_metric, log_extra = kw.get("log_metric"), kw.get("log_extra")
        if callable(log_metric):
            if out["full"]:
                for key in ("raw", "r_think", "r_ref"):
                    for v in out[key]:
                        log_metric("refine/pd_raw" if key == "raw" else f"refine/{key}", float(v))
            log_metric("refine/pd_rows", float(out["rows"]))
            log_metric("refine/pd_retokenised", float(out["retokenised"]))
        if callable(log_extra) and out["full"]:
            log_extra("pd_raw", [float(v) for v in out["raw"]])
        return [float(v) for v in out["gated"]]
