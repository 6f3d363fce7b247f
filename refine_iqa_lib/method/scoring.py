"""Quality scores from a policy: the probability-based expectation (Eq. 8) and numeric parsing.

* :func:`expected_score` - Eq. 8 on the logits of the digits 0-4 at the answer's integer position.
* :class:`Scorer` - the same for any local model folder, one row per input (image, score,
  method, mode, parsed, error), unreadable images kept as rows naming the reason; what
  ``refine-iqa score`` calls.
* :func:`score_images` - scores a list of images with a model, in either mode:

  - ``method="prob"``, ``mode="no_think"``: **one forward pass** over prompt + ``<answer>`` (+
    ``Score: `` in the authors' layout), no generation; the last position's logits of the digit
    tokens 0-4 give Eq. 8;
  - ``method="prob"``, ``mode="think"``: the think is generated greedily, then
    ``<think>{think}</think><answer>`` (+ prefix) is forced and read the same way;
  - ``method="numeric"``: greedy generation, the number in the answer block is parsed
    (:func:`refine_iqa_lib.method.rewards.parse_score`); an unparsable answer scores NaN, is flagged
    (``parsed: False``) and counted in a warning.

Greedy decoding is :func:`refine_iqa_lib.generation.generate_greedy`: every decoding field set
explicitly, whatever the checkpoint's ``generation_config.json`` says.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from refine_iqa_lib.generation import generate_greedy, model_device
from refine_iqa_lib.io import ImageReadError, ImageRules, open_image
from refine_iqa_lib.prompts import ANSWER_LAYOUT, check_mode, check_variant, scoring_prompt, user_message
from refine_iqa_lib.method.rewards import ANSWER_OPEN, THINK_CLOSE, THINK_OPEN, extract_think, parse_score

__all__ = ["DIGITS", "SCORING_METHODS", "SCORER_COLUMNS", "Scorer", "digit_token_ids", "expected_score", "score_images", "think_of_generation", "count_unparsed"]

log = logging.getLogger(__name__)

#: The integer digits of a score on [0, 5): the classes of Eq. 8.
DIGITS = "01234"
SCORING_METHODS = ("prob", "numeric")


def digit_token_ids(tokenizer, digits: str = DIGITS) -> list[int]:
    """Token id of each digit; each digit must be a single token (clear error otherwise)."""
    ids = []
    for d in digits:
        enc = tokenizer(d, add_special_tokens=False)["input_ids"]
        if len(enc) != 1:
            raise ValueError(f"digit {d!r} is {len(enc)} tokens {enc} for {type(tokenizer).__name__}; "
                             "Eq. 8 needs each digit 0-4 to be one token")
        ids.append(int(enc[0]))
    if len(set(ids)) != len(ids):
        raise ValueError(f"digits {digits!r} share token ids {ids}")
    return ids


def expected_score(digit_logits: Any) -> Any:
    """Eq. 8: ``Q = Σ_{j=0..4} j · softmax(P)_j + 0.5``.

    ``digit_logits``: the logits of the digits 0-4 at the integer position, last axis of size 5
    (numpy array, list or torch tensor; leading axes are a batch). The softmax runs over these five
    logits only (Q-Align style); the + 0.5 puts each class at the centre of its unit interval, so
    Q lies in (0.5, 4.5).

    Worked example: equal logits give the mean class 2 + 0.5; all mass on "3" gives 3.5.

    >>> expected_score([0.0, 0.0, 0.0, 0.0, 0.0])
    2.5
    >>> round(float(expected_score([-50.0, -50.0, -50.0, 50.0, -50.0])), 6)
    3.5
    >>> import torch
    >>> expected_score(torch.zeros(2, 5)).tolist()
    [2.5, 2.5]
    """
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a project dependency
        torch = None
    if torch is not None and isinstance(digit_logits, torch.Tensor):
        if digit_logits.shape[-1] != 5:
            raise ValueError(f"expected_score: last axis must hold 5 digit logits, got shape {tuple(digit_logits.shape)}")
        p = torch.softmax(digit_logits.float(), dim=-1)
        return (p * torch.arange(5, dtype=p.dtype, device=p.device)).sum(-1) + 0.5
    x = np.asarray(digit_logits, dtype=np.float64)
    if x.shape[-1:] != (5,):
        raise ValueError(f"expected_score: last axis must hold 5 digit logits, got shape {x.shape}")
    x = x - x.max(axis=-1, keepdims=True)
    p = np.exp(x)
    p /= p.sum(axis=-1, keepdims=True)
    q = (p * np.arange(5)).sum(-1) + 0.5
    return float(q) if q.ndim == 0 else q


def think_of_generation(text: str) -> str:
    """The think text of a generated completion (the model may or may not write ``<think>``).

    >>> think_of_generation("<think>soft focus</think><answer>2.0</answer>")
    'soft focus'
    >>> think_of_generation("soft focus</think>..."), think_of_generation("no tags <answer>1</answer>")
    ('soft focus', 'no tags ')
    """
    if THINK_OPEN in text:
        return extract_think(text)
    end = text.find(THINK_CLOSE)
    if end < 0:
        end = text.find(ANSWER_OPEN)
    return text if end < 0 else text[:end]


def _digit_logits(model, processor, texts: list[str], images: list, digit_ids: list[int], device):
    """Logits of the digit tokens at the next position after each text (left padding), plus the
    full-vocabulary probability mass they hold."""
    import torch

    batch = processor(text=texts, images=images, return_tensors="pt", padding=True, padding_side="left")
    batch = {k: v.to(device) for k, v in batch.items() if isinstance(v, torch.Tensor)}
    with torch.no_grad():
        logits = model(**batch, use_cache=False, logits_to_keep=1).logits[:, -1].float()
    ids = torch.tensor(digit_ids, device=logits.device)
    mass = torch.softmax(logits, dim=-1)[:, ids].sum(-1)
    return logits[:, ids].cpu().numpy().astype(np.float64), mass.cpu().numpy().astype(np.float64)


def score_images(model, processor, images: Sequence[Any], mode: str = "no_think", method: str = "prob",
                 batch_size: int = 8, max_new_tokens: int = 256, variant: str = "paper",
                 prompt_messages: list[dict] | None = None, progress: bool = True,
                 generations: Sequence[str] | None = None, rules: ImageRules | None = None) -> list[dict]:
    """Score ``images`` (PIL images, arrays or paths, opened by :func:`refine_iqa_lib.io.open_image`
    with ``rules``) with ``model``; one dict per image, in order.

    ``method="prob"``: ``{"score": Q (Eq. 8), "digit_probs": softmax over the 5 digit logits,
    "digit_mass": full-vocabulary probability of the digits 0-4}`` (+ ``"think"`` in think mode).
    ``method="numeric"``: ``{"score": parsed number or NaN, "parsed": bool, "text": generation}``.
    ``prompt_messages`` default to the project's scoring prompt for ``mode``/``variant``.
    ``max_new_tokens`` bounds generation (think / numeric only).
    ``generations``: greedy completions already made for these images with the same prompt and
    ``max_new_tokens`` (one per image, e.g. the numeric pass's ``text``): numeric scoring parses
    them and think-mode Eq. 8 reads its think from them, instead of generating again. Greedy
    decoding is deterministic, so the scores are the ones a fresh generation gives.
    """
    import torch
    from tqdm.auto import tqdm

    check_mode(mode)
    check_variant(variant)
    if method not in SCORING_METHODS:
        raise ValueError(f"unknown scoring method {method!r}; expected one of {SCORING_METHODS}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if generations is not None and len(generations) != len(images):
        raise ValueError(f"{len(generations)} generations for {len(images)} images; expected one per image")
    messages = prompt_messages or user_message(scoring_prompt(mode, variant))
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    prefix, _ = ANSWER_LAYOUT[variant]
    digit_ids = digit_token_ids(processor.tokenizer) if method == "prob" else None
    device = model_device(model)

    was_training = getattr(model, "training", False)
    model.eval()
    results: list[dict] = []
    try:
        bar = tqdm(total=len(images), desc=f"scoring ({mode}, {method})", disable=not progress)
        for lo in range(0, len(images), batch_size):
            chunk = [open_image(im, rules) for im in images[lo:lo + batch_size]]
            made = list(generations[lo:lo + len(chunk)]) if generations is not None else None
            if method == "numeric":
                texts = made if made is not None else generate_greedy(model, processor, [prompt] * len(chunk), chunk,
                                                                      max_new_tokens)
                for t in texts:
                    s = parse_score(t)
                    results.append({"score": float("nan") if s is None else s, "parsed": s is not None, "text": t})
            else:
                if mode == "think":
                    gens = made if made is not None else generate_greedy(model, processor, [prompt] * len(chunk),
                                                                         chunk, max_new_tokens)
                    thinks = [think_of_generation(g) for g in gens]
                    forced = [f"{prompt}{THINK_OPEN}{t}{THINK_CLOSE}{ANSWER_OPEN}{prefix}" for t in thinks]
                else:
                    thinks = None
                    forced = [f"{prompt}{ANSWER_OPEN}{prefix}"] * len(chunk)
                logits, mass = _digit_logits(model, processor, forced, chunk, digit_ids, device)
                q = expected_score(logits)
                probs = np.exp(logits - logits.max(-1, keepdims=True))
                probs /= probs.sum(-1, keepdims=True)
                for i in range(len(chunk)):
                    row = {"score": float(q[i]), "digit_probs": probs[i].tolist(), "digit_mass": float(mass[i])}
                    if thinks is not None:
                        row["think"] = thinks[i]
                    results.append(row)
            bar.update(len(chunk))
        bar.close()
    finally:
        model.train(was_training)
    if method == "numeric":
        bad = sum(not r["parsed"] for r in results)
        if bad:
            log.warning("numeric scoring: %d of %d answers had no parsable score (scored NaN)", bad, len(results))
    return results


def count_unparsed(results: Sequence[dict]) -> int:
    """How many results of numeric scoring have no parsable score (NaN).

    >>> count_unparsed([{"score": 3.0, "parsed": True}, {"score": float("nan"), "parsed": False}])
    1
    """
    return sum(1 for r in results if not r.get("parsed", not math.isnan(r["score"])))


# --------------------------------------------------------------------------- a scorer for any folder

#: Columns of every row :class:`Scorer` returns (and ``refine-iqa score`` writes).
SCORER_COLUMNS = ("image", "score", "method", "mode", "parsed", "error")
#: ``--method`` spelling -> :func:`score_images`' method.
_METHODS = {"prob": "prob", "num": "numeric", "numeric": "numeric"}


def _image_label(image: Any, i: int) -> str:
    """How a row names its input: the path, or ``<input i>`` for an in-memory image."""
    return str(image) if isinstance(image, (str, Path)) else f"<input {i}>"


class Scorer:
    """Deterministic quality scores for any images from a local Qwen2.5-VL folder.

    ``Scorer(model_dir, mode="no_think", method="prob")`` loads the folder once
    (:func:`refine_iqa_lib.models.load_policy`; bfloat16 on a GPU, float32 on the CPU);
    :meth:`score` returns one row per input, in order, with the columns :data:`SCORER_COLUMNS`:
    ``score`` (Eq. 8 for ``method="prob"``, the parsed number for ``"num"``; NaN when it has none),
    ``method`` (``prob`` / ``num``), ``mode``, ``parsed`` (whether there is a score) and ``error``
    (``None``, or why the image could not be used: such rows are kept, never dropped, and the
    other inputs are scored). Inputs are paths, PIL images or arrays; they are decoded one batch at
    a time by :func:`refine_iqa_lib.io.open_image` with ``rules`` (default: its process-wide
    rules): pictures above the pixel limit or the processor's aspect ratio get a row naming the
    limit; ``rules.exif_orientation=False`` scores the stored pixels of a rotated phone photograph.
    A batch the processor still refuses is scored one picture at a time, so only the pictures it
    refuses get an error row (the processor's message). Decoding is greedy with every field set
    (:mod:`refine_iqa_lib.generation`), so the same inputs and batch size give the same scores
    (another batch size pads the batches differently: scores may then differ by about 1e-7).
    ``model`` / ``processor`` may be passed instead of loading ``model_dir`` again.

    Used as a reward or in a notebook::

        scorer = Scorer("models/Qwen2.5-VL-7B-Instruct")
        frame = scorer.score(["a.jpg", "b.png"], as_frame=True)   # DataFrame with a score column
    """

    def __init__(self, model_dir: str | Path | None = None, mode: str = "no_think", method: str = "prob",
                 batch_size: int = 8, device: str | None = None, dtype: str | None = None,
                 max_new_tokens: int = 256, variant: str = "paper", min_pixels: int | None = None,
                 max_pixels: int | None = None, progress: bool = True, model=None, processor=None,
                 rules: ImageRules | None = None):
        check_mode(mode)
        check_variant(variant)
        if method not in _METHODS:
            raise ValueError(f"unknown scoring method {method!r}; expected prob or num")
        if int(batch_size) < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.mode, self.variant = mode, variant
        self.method = "prob" if _METHODS[method] == "prob" else "num"
        self.batch_size, self.max_new_tokens, self.progress = int(batch_size), int(max_new_tokens), progress
        self.model_dir = None if model_dir is None else Path(model_dir)
        self.rules = rules
        if model is None or processor is None:
            if model_dir is None:
                raise ValueError("Scorer: pass model_dir (a local Qwen2.5-VL folder) or model and processor")
            import torch

            from refine_iqa_lib.models import load_policy

            device = device or ("cuda" if torch.cuda.is_available() else None)
            dtype = dtype or ("bfloat16" if device and str(device).startswith("cuda") else "float32")
            model, processor = load_policy(model_dir, dtype=dtype, min_pixels=min_pixels, max_pixels=max_pixels,
                                           device=device)
        elif device is not None:
            model = model.to(device)
        self.model, self.processor = model, processor

    def score(self, images: Sequence[Any], as_frame: bool = False):
        """One row per image (see the class docstring); a DataFrame when ``as_frame``."""
        from tqdm.auto import tqdm

        images = list(images)
        rows: list[dict] = []
        bar = tqdm(total=len(images), desc=f"scoring ({self.mode}, {self.method})", disable=not self.progress)
        for lo in range(0, len(images), self.batch_size):
            chunk = list(enumerate(images[lo:lo + self.batch_size], start=lo))
            decoded, errors = {}, {}
            for i, im in chunk:
                try:
                    decoded[i] = open_image(im, self.rules)
                except ImageReadError as e:  # the row names the image; the error says why
                    errors[i] = str(e).removeprefix(f"{_image_label(im, i)}: ")
            got = self._score_decoded(decoded, errors)
            for i, im in chunk:
                row = {"image": _image_label(im, i), "method": self.method, "mode": self.mode}
                if i in errors:
                    row.update(score=float("nan"), parsed=False, error=errors[i])
                else:
                    r = got[i]
                    row.update(score=float(r["score"]), parsed=bool(r.get("parsed", True)), error=None)
                rows.append({k: row[k] for k in SCORER_COLUMNS})
            bar.update(len(chunk))
        bar.close()
        bad = sum(r["error"] is not None for r in rows)
        if bad:
            log.warning("scoring: %d of %d input(s) could not be read or were refused (rows kept, with the reason)",
                        bad, len(rows))
        return self._frame(rows) if as_frame else rows

    def _score_decoded(self, decoded: dict, errors: dict) -> dict:
        """Scores of the decoded pictures ``{index: image}`` as ``{index: result}``. When the
        processor refuses the batch (``ValueError``), each picture is scored alone; one it still
        refuses gets an error in ``errors`` (the processor's message) and the others are scored."""
        def run(images):
            return score_images(self.model, self.processor, images, mode=self.mode, method=_METHODS[self.method],
                                batch_size=max(1, len(images)), max_new_tokens=self.max_new_tokens,
                                variant=self.variant, progress=False, rules=self.rules)

        if not decoded:
            return {}
        try:
            return dict(zip(decoded, run(list(decoded.values()))))
        except ValueError as batch_error:
            if len(decoded) == 1:
                i = next(iter(decoded))
                errors[i] = f"the image processor refused it ({batch_error})"
                return {}
            out = {}
            for i, im in decoded.items():
                got = self._score_decoded({i: im}, errors)
                out.update(got)
            return out

    def score_frame(self, images: Sequence[Any]):
        """:meth:`score` as a DataFrame (columns :data:`SCORER_COLUMNS`)."""
        return self.score(images, as_frame=True)

    @staticmethod
    def _frame(rows: list[dict]):
        import pandas as pd

        return pd.DataFrame(rows, columns=list(SCORER_COLUMNS))
