"""Prompts and answer layouts shared by data building, rewards, training and evaluation.

The paper's supplementary prompts are not public; these are the project's own wording, following
the structure of the authors' Stage-2 code (text before the image's answer, no system prompt):

* **think** mode asks for the analysis inside ``<think></think>`` and the answer inside
  ``<answer></answer>``: ``<think>...</think><answer>3.4</answer>``;
* **no-think** mode asks for the answer directly: ``<answer>3.4</answer>``.

The authors' code writes ``<answer>Score: X.XX</answer>``; ``variant="authors"`` reproduces that
layout (prefix ``Score: `` and two decimals). The paper (default) uses M = 2 digits (one decimal).
"""
from __future__ import annotations

import math

MODES = ("think", "no_think")
VARIANTS = ("paper", "authors")

#: Answer layout per variant: (prefix inside <answer>, number of decimals).
ANSWER_LAYOUT = {"paper": ("", 1), "authors": ("Score: ", 2)}

SCORE_QUESTION = (
    "How would you rate the overall visual quality of this picture? Give a number from 0.0 "
    "(very poor) to 4.9 (excellent), considering sharpness, noise, exposure, colour and artifacts."
)

_THINK_INSTRUCTION = (
    "First describe the quality-related evidence you see inside <think></think>, then give your "
    "final answer inside <answer></answer>, laid out as <think>...</think><answer>{example}</answer>{note}."
)
_NO_THINK_INSTRUCTION = (
    "Give your final answer directly inside <answer></answer>, laid out as <answer>{example}</answer>{note}."
)
#: The score layout's placeholder per variant (never a concrete value: an example score in the
#: prompt anchors a real model towards it).
SCORE_PLACEHOLDER = {"paper": ("X.X", "where X.X is your score with one decimal"),
                     "authors": ("Score: X.XX", "where X.XX is your score with two decimals")}


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is ``"think"`` or ``"no_think"``, else raise naming the valid modes."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}; expected one of {MODES}")
    return mode


def check_variant(variant: str) -> str:
    """Return ``variant`` if it is ``"paper"`` or ``"authors"``, else raise naming the valid ones."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; expected one of {VARIANTS}")
    return variant


def format_mos_text(mos: float, variant: str = "paper") -> str:
    """Ground-truth MOS as answer text, with the integer digit in 0-4 (the Eq. 8 classes).

    The paper uses M = 2 digits (``X.Y``); the authors' code two decimals (``X.YZ``). Scores live
    on [0, 5): a value that would round up to 5.0 (e.g. 4.97) is written as the largest value with
    integer digit 4 (``4.9`` / ``4.99``), and negative values as zero. NaN is an error.

    >>> format_mos_text(3.44), format_mos_text(3.45), format_mos_text(4.97), format_mos_text(-0.2)
    ('3.4', '3.5', '4.9', '0.0')
    >>> format_mos_text(2.456, variant="authors")
    '2.46'
    """
    _, decimals = ANSWER_LAYOUT[check_variant(variant)]
    mos = float(mos)
    if math.isnan(mos):
        raise ValueError("MOS is NaN; expected a number in [0, 5)")
    scale = 10**decimals
    top = (5 * scale - 1) / scale
    # round half up (not banker's rounding), on an integer grid to avoid float drift
    value = math.floor(mos * scale + 0.5 + 1e-9) / scale
    value = min(max(value, 0.0), top)
    return f"{value:.{decimals}f}"


def answer_text(value: str, variant: str = "paper") -> str:
    """The inside of the ``<answer>`` block for a score written as ``value``.

    >>> answer_text("3.4"), answer_text("3.40", "authors")
    ('3.4', 'Score: 3.40')
    """
    prefix, _ = ANSWER_LAYOUT[check_variant(variant)]
    return f"{prefix}{value}"


def completion_text(answer: str, mode: str, think: str = "") -> str:
    """A completion in the given mode's layout.

    >>> completion_text("3.4", "no_think")
    '<answer>3.4</answer>'
    >>> completion_text("B", "think", "The sky is noisy.")
    '<think>The sky is noisy.</think><answer>B</answer>'
    """
    if check_mode(mode) == "think":
        return f"<think>{think}</think><answer>{answer}</answer>"
    return f"<answer>{answer}</answer>"


def instruction(mode: str, example: str, note: str = "") -> str:
    """The output-format instruction appended to every question: ``example`` is the answer's
    layout with placeholders (``X``, ``X.X``, ``[x1, y1, x2, y2]``), ``note`` says what they stand for.

    >>> instruction("no_think", "X", "where X is the letter of your choice")
    'Give your final answer directly inside <answer></answer>, laid out as <answer>X</answer>, where X is the letter of your choice.'
    """
    template = _THINK_INSTRUCTION if check_mode(mode) == "think" else _NO_THINK_INSTRUCTION
    return template.format(example=example, note=f", {note}" if note else "")


def scoring_prompt(mode: str, variant: str = "paper") -> str:
    """The Stage-2 scoring prompt text for ``mode``.

    >>> print(scoring_prompt("no_think"))  # doctest: +NORMALIZE_WHITESPACE
    How would you rate the overall visual quality of this picture? Give a number from 0.0 (very
    poor) to 4.9 (excellent), considering sharpness, noise, exposure, colour and artifacts. Give
    your final answer directly inside <answer></answer>, laid out as <answer>X.X</answer>, where
    X.X is your score with one decimal.
    """
    example, note = SCORE_PLACEHOLDER[check_variant(variant)]
    return f"{SCORE_QUESTION} {instruction(mode, example, note)}"


def user_message(text: str, n_images: int = 1) -> list[dict]:
    """Chat messages (Qwen2.5-VL / TRL conversational layout): images first, then the text."""
    content = [{"type": "image"} for _ in range(n_images)] + [{"type": "text", "text": text}]
    return [{"role": "user", "content": content}]
