"""Rule-based rewards of both stages (Eq. 1-5) and their TRL adapters.

Stage 1 (perception, "Multi-Task Reward Design"):

* :func:`mcq_reward` - distortion type / severity and distorted-object questions (multiple choice,
  one answer): 1 if the chosen option is the correct one, else 0;
* :func:`grounding_reward` - distortion-area grounding: the IoU of the predicted and the
  ground-truth box.

Stage 2 (quality scoring, "Probability Difference Reward Involved RL"):

* :func:`answer_reward` - Eq. 1; :func:`format_reward` - the format reward of Eq. 5;
* :func:`mode_reward` - Eq. 2; :func:`pd_reward` - Eq. 3 / 4; :func:`final_reward` - Eq. 5.
  The teacher-forced digit probabilities that feed Eq. 2 come from :mod:`refine_iqa_lib.method.teacher_forcing`.

Every parser takes arbitrary text (empty, 100k characters, unicode, nested or repeated tags) and
returns a value in its documented range; none raises on completion text, and none uses a regular
expression that can backtrack catastrophically (tags are found with ``str.find``/``rfind``, numbers
with a linear pattern). Ground-truth arguments (a MOS, the options, a box) that make no sense are
data errors and raise ``ValueError`` naming what was expected.

**Which answer block.** Completions are read from their *last* ``<answer>`` block: the text
between the last ``</answer>`` and the nearest ``<answer>`` before it. A completion without a closed
``<answer>…</answer>`` block has no answer (reward 0).

**Numbers.** ASCII digits only, an optional sign, an optional exponent: ``3``, ``3.``, ``.5``,
``-1``, ``1e0`` are read as 3, 3, 0.5, -1 and 1. A comma *between two digits* is a decimal comma:
``3,5`` is read as 3.5 (and ``3, 5`` as 3, the first number). ``nan``, ``inf`` and numbers that
overflow to infinity (``1e999``) are no score. The first number of the answer block is the score,
so the authors' layout ``Score: 3.46`` needs no special case.

**The reward registry.** :data:`REWARDS` maps a stable name to a callable class in TRL's reward
convention ``reward(completions, **columns) -> list[float | None]``, with the equation that defines
it: ``answer`` (Eq. 1), ``format`` (Eq. 5's r_fmt), ``pd`` (Eq. 2-4 gated by Eq. 5; it needs the live
policy and lives in :mod:`refine_iqa_lib.method.teacher_forcing`), and Stage-1's ``stage1``
(routing by task to ``mcq`` or ``grounding``). A profile's ``stage<n>.rewards`` lists names and
weights (:data:`PAPER_REWARDS` by default); the trainer builds each with :func:`build_reward`.
Adding one: a class decorated with :func:`register_reward` (its constructor asks, by parameter
name, for any of :data:`REWARD_CONTEXT`), then its name and weight in the profile. TRL logs each
as ``rewards/<name>/mean``. Instances hold plain settings only, so they pickle (the PD reward
holds the trainer's live policy).
"""
from __future__ import annotations

import importlib
import inspect
import math
import re
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from refine_iqa_lib.prompts import check_mode, check_variant

__all__ = [
    "ANSWER_OPEN", "ANSWER_CLOSE", "THINK_OPEN", "THINK_CLOSE",
    "answer_block_span", "extract_answer", "extract_think", "score_span", "parse_score",
    "answer_reward", "format_reward", "is_correct", "correct_mask", "mode_reward", "pd_weights", "pd_reward", "final_reward",
    "mcq_choice", "mcq_reward", "parse_box", "iou", "grounding_reward",
    "completion_to_text", "Reward", "RewardEntry", "REWARDS", "REWARD_CONTEXT", "PAPER_REWARDS", "REQUIRED_REWARDS",
    "register_reward", "unregister_reward", "reward_names", "check_reward_names", "build_reward",
    "AnswerReward", "FormatReward", "MCQReward", "GroundingReward", "Stage1Reward", "get_reward_funcs", "STAGE1_TASKS",
]

ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"
THINK_OPEN, THINK_CLOSE = "<think>", "</think>"
_TAGS = (THINK_OPEN, THINK_CLOSE, ANSWER_OPEN, ANSWER_CLOSE)

# A number: sign, integer part with an optional decimal point/comma part, or a bare fraction, then
# an optional exponent. Alternatives start with different characters and no quantified group can
# match the same text in two ways, so matching is linear in the input length.
_NUM = r"[-+]?(?:[0-9]+(?:[.,][0-9]+|\.)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_NUM_RE = re.compile(_NUM)
# Box coordinates: commas separate numbers here, so no decimal comma.
_COORD = r"[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][-+]?[0-9]+)?"
_COORD_RE = re.compile(_COORD)
_BOX_RE = re.compile(
    r"[\[(]\s*(" + _COORD + r")\s*,\s*(" + _COORD + r")\s*,\s*(" + _COORD + r")\s*,\s*(" + _COORD
    + r")\s*[\])]"
)


# --------------------------------------------------------------------------- parsing


def answer_block_span(text: str) -> tuple[int, int] | None:
    """``(start, end)`` of the last answer block's content in ``text``, or ``None``.

    The block is closed by the last ``</answer>`` and opened by the nearest ``<answer>`` before it.

    >>> t = "<think>hm</think><answer>3.4</answer>"
    >>> s, e = answer_block_span(t); t[s:e]
    '3.4'
    >>> answer_block_span("<answer>3.4"), answer_block_span("3.4</answer>")
    (None, None)
    """
    if not isinstance(text, str):
        return None
    end = text.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = text.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return start + len(ANSWER_OPEN), end


def extract_answer(text: str) -> str | None:
    """Content of the last ``<answer>`` block (see :func:`answer_block_span`), or ``None``.

    >>> extract_answer("<answer>A</answer> then <answer> B. </answer>")
    ' B. '
    """
    span = answer_block_span(text)
    return None if span is None else text[span[0]:span[1]]


def extract_think(text: str) -> str:
    """The think text of a completion: the first ``<think>…</think>`` block's content; after an
    unclosed ``<think>`` everything up to the first ``<answer>`` (or the end); ``""`` without a
    ``<think>`` tag.

    >>> extract_think("<think>noisy sky</think><answer>2.1</answer>")
    'noisy sky'
    >>> extract_think("<think>cut off mid-sent"), extract_think("<answer>2.1</answer>")
    ('cut off mid-sent', '')
    """
    if not isinstance(text, str):
        return ""
    start = text.find(THINK_OPEN)
    if start < 0:
        return ""
    start += len(THINK_OPEN)
    end = text.find(THINK_CLOSE, start)
    if end < 0:
        end = text.find(ANSWER_OPEN, start)
    return text[start:] if end < 0 else text[start:end]


def _to_float(token: str) -> float | None:
    try:
        value = float(token.replace(",", "."))
    except (ValueError, OverflowError):
        return None
    return value if math.isfinite(value) else None


def score_span(text: str) -> tuple[int, int] | None:
    """``(start, end)`` in ``text`` of the score (the first finite number of the last answer block).

    Used by the PD teacher forcing to put the ground truth where the prediction was.

    >>> t = "<think>ok</think><answer>Score: 3.46</answer>"
    >>> s, e = score_span(t); t[s:e]
    '3.46'
    """
    span = answer_block_span(text)
    if span is None:
        return None
    for m in _NUM_RE.finditer(text, span[0], span[1]):
        if _to_float(m.group()) is not None:
            return m.start(), m.end()
    return None


def parse_score(text: str) -> float | None:
    """The predicted score: the first finite number inside the last ``<answer>`` block.

    Tolerates the authors' ``Score: `` prefix; ``None`` when there is no block, no number, or
    only ``nan``/``inf``/overflowing numbers. ``3,5`` (decimal comma between digits) reads 3.5.

    >>> parse_score("<think>sharp</think><answer>3.4</answer>")
    3.4
    >>> parse_score("<answer>Score: 2.75</answer>"), parse_score("<answer>3,5</answer>")
    (2.75, 3.5)
    >>> parse_score("<answer>.5</answer>"), parse_score("<answer>3.</answer>")
    (0.5, 3.0)
    >>> print(parse_score("<answer>nan</answer>"), parse_score("3.4"))
    None None
    """
    span = score_span(text)
    return None if span is None else _to_float(text[span[0]:span[1]])


# --------------------------------------------------------------------------- Stage-2 rewards


def answer_reward(pred: float | None, mos: float, eps: float = 0.5, variant: str = "paper") -> float:
    """Eq. 1: ``r_ans = 1 if |ŝ − s| < ε, otherwise 0`` (``variant="authors"``: ``≤ ε``).

    ``pred`` is the parsed score (``None``/non-finite gives 0), ``mos`` the ground truth on the
    [0, 5) scale. The difference is rounded to 9 decimals before comparing, so that scores written
    in decimal text compare as in exact arithmetic (``|3.9 − 3.4|`` is 0.5, not 0.5000000000000004).

    Worked example (ε = 0.5, MOS 3.4): 3.0 is inside (|−0.4| < 0.5); 3.9 is on the boundary, so the
    paper's strict rule gives 0 and the authors' ``≤`` gives 1.

    >>> answer_reward(3.0, 3.4), answer_reward(3.9, 3.4), answer_reward(3.9, 3.4, variant="authors")
    (1.0, 0.0, 1.0)
    >>> answer_reward(None, 3.4)
    0.0
    """
    check_variant(variant)
    mos = float(mos)
    if not math.isfinite(mos):
        raise ValueError(f"ground-truth MOS {mos!r} is not a finite number")
    if pred is None:
        return 0.0
    try:
        pred = float(pred)
    except (TypeError, ValueError):
        return 0.0
    if not math.isfinite(pred):
        return 0.0
    diff = round(abs(pred - mos), 9)
    hit = diff <= eps if variant == "authors" else diff < eps
    return 1.0 if hit else 0.0


def is_correct(text: str, mos: float, eps: float = 0.5, variant: str = "paper", mode: str = "think") -> bool:
    """Whether a scoring rollout is *correct* in the sense of Eq. 5 and Eq. 6: ``r_ans = r_fmt = 1``.

    >>> is_correct("<think>sharp</think><answer>3.3</answer>", 3.4), is_correct("<answer>3.3</answer>", 3.4)
    (True, False)
    """
    return correct_mask(answer_reward(parse_score(text), mos, eps, variant), format_reward(text, mode))


def correct_mask(r_ans, r_fmt):
    """``r_ans == 1 and r_fmt == 1`` elementwise (bools, arrays or tensors of reward columns).

    >>> import numpy as np
    >>> correct_mask(np.array([1.0, 1.0, 0.0]), np.array([1.0, 0.0, 1.0])).tolist()
    [True, False, False]
    """
    return (r_ans == 1.0) & (r_fmt == 1.0)


def _has_tag(s: str) -> bool:
    return any(tag in s for tag in _TAGS)


def format_reward(text: str, mode: str = "think") -> float:
    """The format reward of Eq. 5: 1 iff the completion follows the mode's layout, else 0.

    * ``"think"``: ``<think>T</think><answer>A</answer>``;
    * ``"no_think"``: ``<answer>A</answer>``;

    with non-blank ``T`` and ``A`` that contain no further ``<think>``/``<answer>`` tags (no nested
    or repeated blocks); whitespace is allowed around the whole completion and between
    ``</think>`` and ``<answer>``; nothing else may come before, between or after the blocks.

    Design choice: this checks the *layout only*, not that ``A`` is a number. It is shared by
    Stage 1 (whose answers are letters, option texts or boxes) and Stage 2, and in Stage 2 the
    answer reward already requires a parsable score: Eq. 5 gates the PD term on
    ``r_ans = r_fmt = 1``, so a score check here would only count the same thing twice.

    >>> format_reward("<think>The sky is noisy.</think><answer>2.1</answer>")
    1.0
    >>> format_reward("<think> </think><answer>2.1</answer>")  # blank think: think collapse
    0.0
    >>> format_reward("<answer>2.1</answer>", "no_think"), format_reward("<answer>2.1</answer>", "think")
    (1.0, 0.0)
    """
    check_mode(mode)
    if not isinstance(text, str):
        return 0.0
    s = text.strip()
    if mode == "think":
        if not s.startswith(THINK_OPEN):
            return 0.0
        close = s.find(THINK_CLOSE)
        if close < 0:
            return 0.0
        think = s[len(THINK_OPEN):close]
        if not think.strip() or _has_tag(think):
            return 0.0
        s = s[close + len(THINK_CLOSE):].lstrip()
    if len(s) < len(ANSWER_OPEN) + len(ANSWER_CLOSE):
        return 0.0
    if not (s.startswith(ANSWER_OPEN) and s.endswith(ANSWER_CLOSE)):
        return 0.0
    answer = s[len(ANSWER_OPEN):-len(ANSWER_CLOSE)]
    if not answer.strip() or _has_tag(answer):
        return 0.0
    return 1.0


def pd_weights(n_digits: int, variant: str = "paper") -> np.ndarray:
    """The digit weights of Eq. 2.

    Paper: ``w = [1, 0.1, …, 10^(1−M)]`` for the M ground-truth digits. Authors' code: only the
    first decimal digit counts (weight 1 on digit 1, 0 elsewhere).

    >>> pd_weights(2).tolist(), pd_weights(3, "authors").tolist()
    ([1.0, 0.1], [0.0, 1.0, 0.0])
    """
    check_variant(variant)
    if n_digits < 1 or (variant == "authors" and n_digits < 2):
        raise ValueError(f"{variant} PD needs at least {1 if variant == 'paper' else 2} digits, got {n_digits}")
    if variant == "authors":
        w = np.zeros(n_digits)
        w[1] = 1.0
        return w
    return 10.0 ** -np.arange(n_digits, dtype=float)


def mode_reward(digit_probs: Sequence[float] | np.ndarray, variant: str = "paper") -> float:
    """Eq. 2: ``r_MODE = Σ_k w_k z_k`` with ``w = [1, 0.1, …, 10^(1−M)]``.

    ``digit_probs`` holds ``z``: the (full-vocabulary softmax) probability of each ground-truth
    digit under teacher forcing, integer digit first. Range ``[0, Σ w]`` (``[0, 1.1]`` for M = 2).
    ``variant="authors"`` keeps only the first decimal digit (range [0, 1]).

    Worked example: MOS 3.4 with p("3") = 0.8 and p("4") = 0.5 gives 0.8 + 0.1·0.5 = 0.85.

    A NaN probability (the policy's logits were not finite) gives NaN, not an error: the reward
    is then left out as TRL leaves out a missing reward, and the training's loss guard - not an
    exception in the middle of the step - stops the run with a checkpoint. Values outside [0, 1]
    or infinite ones are a bug and raise.

    >>> round(mode_reward([0.8, 0.5]), 6), mode_reward([0.8, 0.5], "authors")
    (0.85, 0.5)
    >>> mode_reward([float("nan"), 0.5])
    nan
    """
    z = np.asarray(digit_probs, dtype=float).reshape(-1)
    if z.size == 0 or np.any(np.isinf(z)) or np.any(z < -1e-6) or np.any(z > 1 + 1e-6):
        raise ValueError(f"digit probabilities must be values in [0, 1], got {z.tolist()}")
    if np.isnan(z).any():
        pd_weights(z.size, variant)  # still checks the digit count
        return float("nan")
    return float(np.dot(pd_weights(z.size, variant), np.clip(z, 0.0, 1.0)))


def pd_reward(r_think: float, r_ref: float) -> float:
    """Eq. 3 / 4: ``r_pd = clip(r_think − r_ref, 0, 1)``.

    ``r_ref`` is the no-think mode reward, computed once per group on the fixed no-think format.
    A NaN mode reward (see :func:`mode_reward`) gives NaN; an infinite one raises.

    >>> round(pd_reward(0.85, 0.6), 6), pd_reward(0.5, 0.6), pd_reward(1.1, 0.05)
    (0.25, 0.0, 1.0)
    >>> pd_reward(float("nan"), 0.6)
    nan
    """
    r_think, r_ref = float(r_think), float(r_ref)
    if math.isinf(r_think) or math.isinf(r_ref):
        raise ValueError(f"PD reward needs finite mode rewards, got r_think={r_think}, r_ref={r_ref}")
    if math.isnan(r_think) or math.isnan(r_ref):
        return float("nan")
    return float(min(max(r_think - r_ref, 0.0), 1.0))


def final_reward(r_ans: float, r_fmt: float, r_pd: float,
                 lambdas: Sequence[float] = (1.0, 1.0, 1.0)) -> float:
    """Eq. 5: ``λ1·r_ans + λ2·r_fmt + λ3·r_pd`` if ``r_ans = r_fmt = 1``, else ``λ1·r_ans + λ2·r_fmt``.

    The PD term is an incremental incentive: it only counts for correct, well-formatted rollouts.

    >>> final_reward(1, 1, 0.25), final_reward(0, 1, 0.25), final_reward(1, 1, 0.25, (1, 1, 2))
    (2.25, 1.0, 2.5)
    """
    lam1, lam2, lam3 = (float(x) for x in lambdas)
    total = lam1 * float(r_ans) + lam2 * float(r_fmt)
    if r_ans == 1 and r_fmt == 1:
        total += lam3 * float(r_pd)
    return float(total)


# --------------------------------------------------------------------------- Stage-1 rewards


def _norm(s: str) -> str:
    """Case-folded, whitespace-collapsed text without trailing full stops."""
    return " ".join(str(s).casefold().split()).rstrip(".").rstrip()


def _letter(s: str) -> int | None:
    """Index of an option letter written ``A``, ``A.``, ``A)``, ``(A)`` or ``A:`` (any case)."""
    s = s.strip()
    if s.startswith("(") and s.endswith(")"):
        s = s[1:-1].strip()
    elif s[-1:] in (".", ")", ":"):
        s = s[:-1].strip()
    if len(s) == 1 and "a" <= s.casefold() <= "z":
        return ord(s.casefold()) - ord("a")
    return None


def _option_index(choice: str, options: Sequence[str]) -> int | None:
    """Which option ``choice`` names: its text, its letter, or its letter followed by its text."""
    norm = _norm(choice)
    if not norm:
        return None
    texts = [_norm(o) for o in options]
    if norm in texts:
        return texts.index(norm)
    idx = _letter(norm)
    if idx is not None:
        return idx if idx < len(options) else None
    # "B. noise", "(B) noise", "B) noise": letter and text must agree
    head, _, tail = norm.partition(" ")
    idx = _letter(head) if head[-1:] in (".", ")", ":") or head.startswith("(") else None
    if idx is not None and idx < len(options) and _norm(tail) == texts[idx]:
        return idx
    return None


def mcq_choice(completion: str, options: Sequence[str]) -> int | None:
    """Index of the option chosen in the completion's last answer block, or ``None``.

    >>> opts = ["blur", "noise", "pixelate"]
    >>> mcq_choice("<answer>B</answer>", opts), mcq_choice("<answer>(c)</answer>", opts)
    (1, 2)
    >>> mcq_choice("<answer> Noise. </answer>", opts), mcq_choice("<answer>B. noise</answer>", opts)
    (1, 1)
    >>> print(mcq_choice("<answer>B. blur</answer>", opts), mcq_choice("<answer>D</answer>", opts))
    None None
    """
    content = extract_answer(completion)
    if content is None:
        return None
    return _option_index(content, list(options))


def mcq_reward(completion: str, answer: str, options: Sequence[str]) -> float:
    """Stage-1 multiple-choice reward: 1 if the chosen option is ``answer``, else 0.

    ``answer`` is the correct option's text (its letter is accepted too); ``options`` the option
    texts in order (A, B, C, …). The choice is read from the last ``<answer>`` block, in think or
    no-think format: the letter (``B``, ``B.``, ``B)``, ``(B)``), the option text (case and
    whitespace ignored) or the letter followed by the same option's text. No answer block: 0.

    >>> opts = ["slight", "severe", "very severe"]
    >>> mcq_reward("<think>strong blur</think><answer>C</answer>", "very severe", opts)
    1.0
    >>> mcq_reward("<answer>severe</answer>", "very severe", opts), mcq_reward("C", "very severe", opts)
    (0.0, 0.0)
    """
    options = [str(o) for o in options]
    if not options:
        raise ValueError("mcq_reward: expected a non-empty list of options")
    target = _option_index(str(answer), options)
    if target is None:
        raise ValueError(f"mcq_reward: correct answer {answer!r} is neither an option text nor a letter "
                         f"of the options {options}")
    return 1.0 if mcq_choice(completion, options) == target else 0.0


def _valid_box(box: Sequence[float]) -> bool:
    return (len(box) == 4 and all(math.isfinite(v) for v in box)
            and box[2] > box[0] and box[3] > box[1])


def parse_box(text: str) -> tuple[float, float, float, float] | None:
    """The box ``(x1, y1, x2, y2)`` in the last answer block, or ``None``.

    Read as the first bracketed group of four numbers (``[x1, y1, x2, y2]`` or
    ``(x1,y1,x2,y2)``, e.g. inside Qwen2.5-VL's ``{"bbox_2d": [...]}``), otherwise as the block's
    numbers if there are exactly four. Invalid boxes (``x2 <= x1``, ``y2 <= y1``, non-finite) give
    ``None``.

    >>> parse_box("<answer>[10, 20, 110, 90]</answer>")
    (10.0, 20.0, 110.0, 90.0)
    >>> parse_box('<answer>{"bbox_2d": [1,2,3,4], "label": "cat 2"}</answer>')
    (1.0, 2.0, 3.0, 4.0)
    >>> parse_box("<answer>x 5 y 6 to 50 60</answer>"), parse_box("<answer>[5, 6, 5, 9]</answer>")
    ((5.0, 6.0, 50.0, 60.0), None)
    """
    content = extract_answer(text)
    if content is None:
        return None
    m = _BOX_RE.search(content)
    if m is not None:
        values = [_to_float(g) for g in m.groups()]
    else:
        tokens = _COORD_RE.findall(content)
        if len(tokens) != 4:
            return None
        values = [_to_float(t) for t in tokens]
    if any(v is None for v in values):
        return None
    box = tuple(float(v) for v in values)
    return box if _valid_box(box) else None


def iou(box_a: Sequence[float], box_b: Sequence[float]) -> float:
    """Intersection over union of two ``(x1, y1, x2, y2)`` boxes (0 if either is invalid).

    >>> iou((0, 0, 10, 10), (5, 0, 15, 10))  # intersection 50, union 150
    0.3333333333333333
    >>> iou((0, 0, 10, 10), (0, 0, 10, 10)), iou((0, 0, 1, 1), (2, 2, 3, 3)), iou((0, 0, 0, 5), (0, 0, 1, 1))
    (1.0, 0.0, 0.0)
    """
    try:
        a = tuple(float(v) for v in box_a)
        b = tuple(float(v) for v in box_b)
    except (TypeError, ValueError):
        return 0.0
    if not (_valid_box(a) and _valid_box(b)):
        return 0.0
    iw = min(a[2], b[2]) - max(a[0], b[0])
    ih = min(a[3], b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(min(max(inter / union, 0.0), 1.0)) if union > 0 else 0.0


def grounding_reward(completion: str, gt_box: Sequence[float]) -> float:
    """Stage-1 grounding reward: IoU of the predicted box with ``gt_box`` (0 if unparsable).

    Both boxes are ``(x1, y1, x2, y2)`` in the same pixel frame (the one the prompt asks for).

    >>> grounding_reward("<answer>[0, 0, 10, 10]</answer>", (5, 0, 15, 10))
    0.3333333333333333
    >>> grounding_reward("<answer>the cat</answer>", (5, 0, 15, 10))
    0.0
    """
    try:
        gt = tuple(float(v) for v in gt_box)
    except (TypeError, ValueError):
        raise ValueError(f"grounding_reward: ground-truth box {gt_box!r} is not four numbers") from None
    if not _valid_box(gt):
        raise ValueError(f"grounding_reward: ground-truth box {gt_box!r} is not a valid (x1, y1, x2, y2) box")
    box = parse_box(completion)
    return 0.0 if box is None else iou(box, gt)


# --------------------------------------------------------------------------- TRL adapters


def completion_to_text(completion: Any) -> str:
    """A completion as plain text: TRL passes strings, or conversational lists of messages
    ``[{"role": "assistant", "content": ...}]`` whose content is a string or a list of parts.

    >>> completion_to_text([{"role": "assistant", "content": "<answer>3</answer>"}])
    '<answer>3</answer>'
    >>> completion_to_text([{"role": "assistant", "content": [{"type": "text", "text": "hi"}]}])
    'hi'
    """
    if completion is None:
        return ""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, dict):
        content = completion.get("content", completion.get("text", ""))
        if isinstance(content, str):
            return content
        if isinstance(content, (list, tuple)):
            return "".join(completion_to_text(part) for part in content
                           if not isinstance(part, dict) or part.get("type", "text") == "text")
        return "" if content is None else str(content)
    if isinstance(completion, (list, tuple)):
        return "".join(completion_to_text(m) for m in completion)
    return str(completion)


def _column(kwargs: dict, name: str, n: int, reward: str) -> list:
    if name not in kwargs or kwargs[name] is None:
        raise ValueError(f"reward {reward!r} needs the dataset column {name!r}; got columns {sorted(kwargs)}")
    values = kwargs[name]
    if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        values = [values] * n
    values = list(values)
    if len(values) != n:
        raise ValueError(f"reward {reward!r}: column {name!r} has {len(values)} values for {n} completions")
    return values


class Reward:
    """Base of the registered rewards: a callable class in TRL's reward convention,
    ``reward(completions, **columns) -> list[float | None]`` (one value per completion; ``None`` =
    no reward for that completion). Instances hold only plain settings, so they pickle.
    :func:`register_reward` sets the class attributes ``name`` and ``equation``."""

    name: str = ""
    equation: str = ""

    def __call__(self, completions, **columns) -> list[float | None]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({settings})"


@dataclass(frozen=True)
class RewardEntry:
    """One registered reward: its stable ``name`` (TRL logs ``rewards/<name>/mean``), where the paper
    defines it (``equation``) and the class, or ``"module:Class"`` imported when first built (the PD
    reward lives in :mod:`refine_iqa_lib.method.teacher_forcing`, which imports this module)."""

    name: str
    equation: str
    target: Any

    def resolve(self) -> type:
        if isinstance(self.target, str):
            module, _, attr = self.target.partition(":")
            return getattr(importlib.import_module(module), attr)
        return self.target


_REGISTRY: dict[str, RewardEntry] = {}
#: Reward name -> :class:`RewardEntry`: every reward a profile's ``stage<n>.rewards`` may name.
REWARDS: Mapping[str, RewardEntry] = MappingProxyType(_REGISTRY)
_NAME_RE = re.compile(r"[a-z][a-z0-9_]*")

#: What a reward's constructor may ask for, by parameter name; the trainer passes each one the
#: constructor names (:func:`build_reward`), from the stage's settings.
REWARD_CONTEXT = {
    "eps": "Eq. 1's tolerance (stage<n>.answer_eps)",
    "variant": "paper | authors (stage<n>.variant)",
    "mode": "the stage's prompt mode: think | no_think (stage<n>.mode)",
    "reference": "the PD reference: forced | sampled (stage<n>.pd_reference)",
    "raw_every": "ungated PD of every rollout every k steps (stage<n>.pd_raw_every)",
    "policy": "a zero-argument callable returning the live (unwrapped) policy",
    "processor": "a zero-argument callable returning its processor",
}

#: The paper's rewards and weights per stage (Eq. 5's λ1 = λ2 = λ3 = 1): the defaults of
#: ``stage1.rewards`` and ``stage2.rewards``.
PAPER_REWARDS = {"1": {"stage1": 1.0, "format": 1.0}, "2": {"answer": 1.0, "format": 1.0, "pd": 1.0}}
#: Rewards a stage's list must hold: Eq. 6 (and the logged share of correct rollouts) calls a rollout
#: correct when its task reward and its format reward are both 1 (weight 0 keeps one out of the sum).
REQUIRED_REWARDS = {"1": ("stage1", "format"), "2": ("answer", "format")}


def register_reward(name: str, equation: str, target: Any = None, *, replace: bool = False):
    """Register a reward class under ``name`` (a decorator when ``target`` is omitted).

    ``name`` is what profiles list and what TRL logs (``rewards/<name>/mean``): lower case, digits
    and ``_``, and stable. ``equation`` says where the paper defines it (or ``"not in the paper"``).
    ``target`` is the class, or ``"module:Class"``. A taken name raises unless ``replace``.

    >>> @register_reward("short", "not in the paper")
    ... class Short(Reward):
    ...     def __call__(self, completions, **columns):
    ...         return [float(len(completion_to_text(c)) <= 20) for c in completions]
    >>> build_reward("short")(["<answer>3</answer>", "x" * 30]), REWARDS["short"].equation
    ([1.0, 0.0], 'not in the paper')
    >>> unregister_reward("short")
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise ValueError(f"reward name {name!r}: expected lower-case letters, digits and _ (e.g. 'answer')")
    if name in _REGISTRY and not replace:
        raise ValueError(f"reward {name!r} is already registered ({_REGISTRY[name].target!r}); "
                         "pass replace=True to replace it")

    def add(cls):
        if not isinstance(cls, (type, str)):
            raise TypeError(f"reward {name!r}: expected a class (a callable class pickles; a closure does not), "
                            f"got {cls!r}")
        if isinstance(cls, type):
            cls.name, cls.equation = name, equation
        _REGISTRY[name] = RewardEntry(name, equation, cls)
        return cls

    return add if target is None else add(target)


def unregister_reward(name: str) -> None:
    """Remove ``name`` from the registry (a test's toy reward, say)."""
    _REGISTRY.pop(name, None)


def reward_names() -> list[str]:
    """The registered reward names, sorted."""
    return sorted(_REGISTRY)


def check_reward_names(names: Iterable[str]) -> list[str]:
    """``names`` as a list; an unknown one raises ``ValueError`` listing the known ones.

    >>> check_reward_names(["answer", "accuracy"])
    Traceback (most recent call last):
    ...
    ValueError: unknown reward 'accuracy'; known rewards: ['answer', 'format', 'grounding', 'mcq', 'pd', 'stage1']
    """
    names = list(names)
    for name in names:
        if name not in _REGISTRY:
            raise ValueError(f"unknown reward {name!r}; known rewards: {reward_names()}")
    return names


def build_reward(name: str, **context) -> Callable[..., list[float | None]]:
    """An instance of the reward registered as ``name``, its constructor given the entries of
    ``context`` it names (:data:`REWARD_CONTEXT`); the instance's ``__name__`` is ``name`` (TRL's
    name for it). A constructor parameter without a default that ``context`` lacks raises.

    >>> build_reward("answer", eps=0.3, mode="think")
    AnswerReward(eps=0.3, variant='paper')
    """
    cls = _REGISTRY[check_reward_names([name])[0]].resolve()
    params = inspect.signature(cls).parameters.values()
    missing = [p.name for p in params if p.default is p.empty and p.name not in context
               and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if missing:
        raise ValueError(f"reward {name!r} needs {missing} to be built; given: {sorted(context)}")
    reward = cls(**{p.name: context[p.name] for p in params if p.name in context})
    if getattr(reward, "__name__", None) != name:
        reward.__name__ = name
    return reward


@register_reward("answer", "Eq. 1")
class AnswerReward(Reward):
    """TRL reward ``answer`` (Eq. 1); needs the ``mos`` column.

    >>> AnswerReward(0.5)(["<answer>3.0</answer>", "<answer>4.0</answer>"], mos=[3.4, 3.4])
    [1.0, 0.0]
    """

    def __init__(self, eps: float = 0.5, variant: str = "paper"):
        self.eps, self.variant = float(eps), check_variant(variant)

    def __call__(self, completions, **kwargs) -> list[float]:
        mos = _column(kwargs, "mos", len(completions), "answer")
        return [answer_reward(parse_score(completion_to_text(c)), m, self.eps, self.variant)
                for c, m in zip(completions, mos)]


@register_reward("format", "Eq. 5 (r_fmt)")
class FormatReward(Reward):
    """TRL reward ``format``: the mode comes from the ``mode`` column, else from ``mode`` here.

    >>> FormatReward("no_think")(["<answer>3</answer>", "3"])
    [1.0, 0.0]
    """

    def __init__(self, mode: str | None = None):
        self.mode = None if mode is None else check_mode(mode)

    def __call__(self, completions, **kwargs) -> list[float]:
        n = len(completions)
        if kwargs.get("mode") is not None:
            modes = _column(kwargs, "mode", n, "format")
        elif self.mode is not None:
            modes = [self.mode] * n
        else:
            raise ValueError("reward 'format' needs a 'mode' column or FormatReward(mode=...)")
        return [format_reward(completion_to_text(c), m) for c, m in zip(completions, modes)]


@register_reward("mcq", "Stage-1 multiple choice (not numbered)")
class MCQReward(Reward):
    """TRL reward ``mcq``; needs the ``answer`` and ``options`` columns."""

    def __call__(self, completions, **kwargs) -> list[float]:
        n = len(completions)
        answers = _column(kwargs, "answer", n, "mcq")
        options = kwargs.get("options")
        if options is None or len(options) != n:
            raise ValueError(f"reward 'mcq' needs an 'options' column with {n} option lists")
        return [mcq_reward(completion_to_text(c), a, o) for c, a, o in zip(completions, answers, options)]


@register_reward("grounding", "Stage-1 grounding IoU (not numbered)")
class GroundingReward(Reward):
    """TRL reward ``grounding`` (IoU); needs the ``bbox`` column."""

    def __call__(self, completions, **kwargs) -> list[float]:
        n = len(completions)
        boxes = kwargs.get("bbox")
        if boxes is None or len(boxes) != n:
            raise ValueError(f"reward 'grounding' needs a 'bbox' column with {n} boxes")
        return [grounding_reward(completion_to_text(c), b) for c, b in zip(completions, boxes)]


#: Stage-1 task names (the ``task`` column) and the reward each one gets.
STAGE1_TASKS = {"type_severity": "mcq", "type": "mcq", "severity": "mcq", "object": "mcq", "grounding": "grounding"}


@register_reward("stage1", "Stage-1 multi-task reward (mcq or grounding by task; not numbered)")
class Stage1Reward(Reward):
    """TRL reward ``stage1``: routes every sample by its ``task`` column (the multiple-choice tasks
    ``type``, ``severity``, ``type_severity`` and ``object`` -> :func:`mcq_reward`, ``grounding`` ->
    :func:`grounding_reward`).

    >>> Stage1Reward()(["<answer>B</answer>", "<answer>[0, 0, 10, 10]</answer>"], task=["object", "grounding"],
    ...                answer=["cat", None], options=[["dog", "cat"], None], bbox=[None, [0, 0, 10, 20]])
    [1.0, 0.5]
    """

    def __call__(self, completions, **kwargs) -> list[float]:
        n = len(completions)
        tasks = _column(kwargs, "task", n, "stage1")
        out = []
        for i, (c, task) in enumerate(zip(completions, tasks)):
            kind = STAGE1_TASKS.get(task)
            if kind is None:
                raise ValueError(f"reward 'stage1': sample {i} has task {task!r}; valid tasks: {sorted(STAGE1_TASKS)}")
            needed = ("answer", "options") if kind == "mcq" else ("bbox",)
            missing = [col for col in needed if kwargs.get(col) is None or len(kwargs[col]) != n]
            if missing:
                raise ValueError(f"reward 'stage1': task {task!r} needs the column(s) {missing} "
                                 f"with {n} values; got columns {sorted(kwargs)}")
            text = completion_to_text(c)
            if kind == "mcq":
                out.append(mcq_reward(text, kwargs["answer"][i], kwargs["options"][i]))
            else:
                out.append(grounding_reward(text, kwargs["bbox"][i]))
        return out


# The PD reward needs the live policy; it is defined with the teacher forcing it runs.
register_reward("pd", "Eq. 2-4, gated by Eq. 5", "refine_iqa_lib.method.teacher_forcing:PDReward")


def get_reward_funcs(names: str | Iterable[str], eps: float = 0.5, variant: str = "paper",
                     mode: str | None = None) -> list[Callable]:
    """Rule-based rewards by name (a list or a comma-separated string), built with these settings
    (:func:`build_reward`).

    >>> [f.__name__ for f in get_reward_funcs("answer, format", mode="think")]
    ['answer', 'format']
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    context = {"eps": eps, "variant": check_variant(variant), "mode": None if mode is None else check_mode(mode)}
    return [build_reward(name, **context) for name in check_reward_names(names)]
