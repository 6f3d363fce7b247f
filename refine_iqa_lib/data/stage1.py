"""Stage-1 RFT samples (the three perception tasks of Sec. "Multi-Task Reward Design").

Every marked image yields samples of three tasks, each in a full-reference form (``fr``: two
images, the pristine reference first, then the distorted one) and a no-reference form (``nr``:
the distorted image only):

* ``type_severity`` - distortion type and severity recognition, multiple choice, one answer. Each
  option names a type *and* a severity (``"blur, severe"``; a two-distortion image:
  ``"blur, slight + noise, severe"``), so the question can only be answered right with both. The
  ``n_options`` (4) options are the correct one plus distractors drawn by the rng in turn as
  *same type, other severity* / *other type, same severity* / *other type and severity*, from the
  build's category and severity pools (severities 1-3 and allowed pairs only for combinations),
  shuffled.
* ``object`` - distorted-object recognition, multiple choice over the image's marked objects:
  the correct one plus its *distractors* - the other objects among the ``perception.max_objects``
  largest of the scene (5 by default; :func:`refine_iqa_lib.data.pipeline.mark_objects`), less
  those named like the target and those lying mostly (>= 50 %) inside its box, which would look
  distorted too - all of them in the paper layout, up to ``n_options - 1`` in the compact one.
* ``grounding`` - the distorted area as a box ``[x1, y1, x2, y2]`` in the stored (distorted)
  image's pixels, half-open; the reward is the IoU.

Prompts are the project's own wording: question, options ``A. ...\\nB. ...``, then
:func:`refine_iqa_lib.prompts.instruction` for the answer layout of the mode (``think`` /
``no_think``): ``<answer>B</answer>`` or ``<answer>[x1, y1, x2, y2]</answer>``.
:func:`render_prompt` re-renders a sample for another mode.

How many samples per image
--------------------------
*Train* images: each task is included independently with probability ``p = samples_per_image / 3``
(at least one task per image), each sample in ``fr`` form with probability ``fr_prob`` and in a
mode drawn from ``sample_modes``; with the default 2.6 that is about 2.6 samples per image, the
paper's ratio (about 55K samples from 20,907 images). *Test* images get every task in every form
of ``test_forms`` (the description metric of Table 1 needs type, severity and object for each
image; Table 2 needs grounding), i.e. 6 per image by default. All draws use
``default_rng([seed, 0x5A, scene, object slot])``.

Files (``<work_dir>/perception/``, written by :mod:`refine_iqa_lib.data.build`)
-------------------------------------------------------------------------------
``images/<scene>_ref.png`` (stored original), ``images/<scene>_o<j>.png`` (distorted, object
``j``), ``samples_{train,test}.jsonl`` (one sample per line), ``images_{train,test}.jsonl`` (one
marked image per line), ``images_built.jsonl`` (every marked image that passed the
perceptibility check, before review and split: what the review panel shows),
``skip_report.json``, ``stage_counts.json``, ``dataset_info.json``.

Sample schema (``samples_*.jsonl``)
-----------------------------------
============  =====================================================================================
column        meaning
============  =====================================================================================
id            ``<image_id>_<task>_<form>``
image         distorted image path, relative to the dataset folder (``images/s000012_o1.png``)
reference     reference (original) path for ``fr`` samples, ``""`` for ``nr``
task          ``"type_severity"`` | ``"object"`` | ``"grounding"``
form          ``"fr"`` | ``"nr"``
mode          ``"no_think"`` | ``"think"``
prompt        the full user text (question, options, answer-layout instruction)
question      the question alone (no options, no instruction), for :func:`render_prompt`
options       option texts in display order (``[]`` for grounding)
answer        the correct option TEXT, or the box ``[x1, y1, x2, y2]`` (ints) for grounding
answer_letter the correct option's letter (``""`` for grounding)
bbox          the distorted box ``[x1, y1, x2, y2]`` (stored-image pixels, half-open)
category      distortion category (the first one of a combination)
severity      int 1-5 (of ``category``)
categories    all categories applied (1 or 2), ``severities`` their severities
object        name of the distorted object
width,height  stored image size (px)
split         ``"train"`` | ``"test"``
image_id      the marked image's id (``s000012_o1``), shared by its samples
group         ``"easy"`` | ``"hard"`` (Tables 1-2; by ``category``)
============  =====================================================================================

Image schema (``images_*.jsonl``): ``id``, ``scene``, ``source_id``, ``image``, ``reference``,
``object``, ``bbox``, ``objects`` (every object of the scene: ``{name, bbox}``),
``distractors``, ``category``, ``severity``, ``severity_name``, ``categories``, ``severities``,
``variants``, ``params``, ``combo``, ``strength`` (1 - SSIM in the box), ``quality``, ``width``,
``height``, ``group``, ``split``.

:func:`load_stage1_dataset` returns a ``datasets.Dataset`` with absolute ``image`` /
``reference`` paths plus ``images`` (the list fed to the model: ``[reference, image]`` or
``[image]``); because an Arrow column has one type, ``answer`` is a string there: the option
text, or the box written as in the completion (``"[12, 30, 64, 90]"``); the ints are in ``bbox``.
"""
from __future__ import annotations

import json
import string
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.io import read_jsonl
from refine_iqa_lib.prompts import check_mode, instruction

#: The tasks of each answer-pool layout (``perception.options``).
TASK_SETS = {"paper": ("type", "severity", "object", "grounding"),
             "compact": ("type_severity", "object", "grounding")}
#: Every task name (the reward router and the evaluators accept all of them).
TASKS = ("type_severity", "type", "severity", "object", "grounding")
#: The multiple-choice tasks whose answers together make Table 1's "description" of an image.
DESCRIPTION_TASKS = {"paper": ("type", "severity", "object"), "compact": ("type_severity", "object")}
OPTION_LAYOUTS = tuple(TASK_SETS)
FORMS = ("fr", "nr")
SPLITS = ("train", "test")

_REF = ("The first image is the pristine reference and the second image is the same picture after "
        "one region was artificially degraded. ")
_NR = "One region of this image has been artificially degraded. "
_TYPE_Q = "Which type of distortion is the most noticeable in the degraded region?"
_SEV_Q = "How severe is the most noticeable distortion in the degraded region?"
QUESTIONS = {
    ("type_severity", "fr"): _REF + "Which distortion type and severity does the degraded region show?",
    ("type_severity", "nr"): _NR + "Which distortion type and severity does the degraded region show?",
    ("type", "fr"): _REF + _TYPE_Q,
    ("type", "nr"): _NR + _TYPE_Q,
    ("severity", "fr"): _REF + _SEV_Q,
    ("severity", "nr"): _NR + _SEV_Q,
    ("object", "fr"): _REF + "Which object has been degraded?",
    ("object", "nr"): _NR + "Which object has been degraded?",
    ("grounding", "fr"): _REF + "Locate the degraded region in the second image ({w}x{h} pixels). "
                                "Give its bounding box as [x1, y1, x2, y2] in pixels, x from the left "
                                "edge and y from the top edge.",
    ("grounding", "nr"): _NR + "Locate it in this {w}x{h}-pixel image. Give its bounding box as "
                               "[x1, y1, x2, y2] in pixels, x from the left edge and y from the top edge.",
}
CHOICE_HINT = "Answer with the option's letter from the given choices."
#: Answer-layout placeholders (never a concrete answer: a shown value would anchor a real model).
LETTER_EXAMPLE = "X"
LETTER_NOTE = "where X is the letter of your choice"
BOX_EXAMPLE = "[x1, y1, x2, y2]"


def category_label(category: str) -> str:
    """Human wording of a category key: ``high_contrast`` -> ``high contrast``."""
    return category.replace("_", " ")


def option_text(steps: Sequence[tuple[str, int]]) -> str:
    """``[("blur", 4)]`` -> ``"blur, severe"``; two steps joined by ``" + "``.

    >>> option_text([("high_contrast", 1), ("noise", 3)])
    'high contrast, slight + noise, relatively obvious'
    """
    return " + ".join(f"{category_label(c)}, {D.SEVERITIES[int(s) - 1]}" for c, s in steps)


def type_severity_options(steps: Sequence[tuple[str, int]], rng: np.random.Generator, n_options: int = 4,
                          categories: Sequence[str] = D.DISTORTIONS, severities: Sequence[int] = (1, 2, 3, 4, 5)
                          ) -> tuple[list[str], str]:
    """Options (shuffled) and the correct text for a type-and-severity question.

    >>> opts, ans = type_severity_options([("blur", 4)], np.random.default_rng(0))
    >>> len(opts), ans in opts, len(set(opts))
    (4, True, 4)
    """
    steps = [(c, int(s)) for c, s in steps]
    correct = option_text(steps)
    sev_pool = [s for s in severities if s in D.PAIR_SEVERITIES] if len(steps) > 1 else list(severities)
    sev_pool = sev_pool or list(D.PAIR_SEVERITIES)
    kinds = ("severity", "category", "both")
    texts: list[str] = []
    for attempt in range(60):
        if len(texts) >= n_options - 1:
            break
        kind = kinds[(len(texts) + attempt) % 3]
        t = int(rng.integers(len(steps)))
        c, s = steps[t]
        other_cats = [x for x in categories if x not in {cc for cc, _ in steps}]
        if len(steps) == 2:  # a wrong pair must still be an allowed combination
            other_cats = [x for x in other_cats if (steps[1][0] in D.ALLOWED_PAIRS.get(x, ()) if t == 0
                                                    else x in D.ALLOWED_PAIRS.get(steps[0][0], ()))]
        other_sevs = [x for x in sev_pool if x != s]
        if kind in ("category", "both"):
            if not other_cats:
                continue
            c = other_cats[int(rng.integers(len(other_cats)))]
        if kind in ("severity", "both"):
            if not other_sevs:
                continue
            s = int(other_sevs[int(rng.integers(len(other_sevs)))])
        new = list(steps)
        new[t] = (c, s)
        text = option_text(new)
        if text != correct and text not in texts:
            texts.append(text)
    options = [correct] + texts
    return [options[i] for i in rng.permutation(len(options))], correct


def object_options(target: str, distractors: Sequence[str], rng: np.random.Generator, n_options: int | None = 4
                   ) -> tuple[list[str], str]:
    """Options (shuffled): the target and up to ``n_options - 1`` distractor names (``None``: all
    of them - the paper's pool). ``distractors`` are the marked image's: the other objects among
    the scene's ``max_objects`` largest, less same-name ones and those mostly inside the target's
    box (:func:`refine_iqa_lib.data.pipeline.valid_distractors`), not every recorded object."""
    pool = [d for d in dict.fromkeys(distractors) if d != target]
    k = len(pool) if n_options is None else max(0, n_options - 1)
    pick = [pool[i] for i in sorted(rng.permutation(len(pool))[:k])]
    options = [target] + pick
    return [options[i] for i in rng.permutation(len(options))], target


def pool_options(pool: Sequence[str], answer: str, rng: np.random.Generator) -> tuple[list[str], str]:
    """The paper's answer pools: every entry of ``pool`` (the 12 distortion types, or the 5 severity
    names), shuffled; the right option's position is uniform over the pool (tested).

    >>> opts, ans = pool_options(["blur", "noise", "pixelate"], "noise", np.random.default_rng(0))
    >>> sorted(opts), ans
    (['blur', 'noise', 'pixelate'], 'noise')
    """
    options = list(dict.fromkeys(pool))
    if answer not in options:
        raise ValueError(f"answer {answer!r} is not in the pool {options}")
    return [options[i] for i in rng.permutation(len(options))], answer


#: How the paper pools' options are listed (``perception.option_order``).
OPTION_ORDERS = ("fixed", "shuffled")


def _reading_order(row: dict):
    """Sort key of object names by their box's centre, left to right (then top to bottom)."""
    boxes = {o["name"]: o["bbox"] for o in row.get("objects", [])}
    boxes.setdefault(row["object"], row["bbox"])

    def key(name: str):
        b = boxes.get(name, (0, 0, 0, 0))
        return ((b[0] + b[2]) / 2, (b[1] + b[3]) / 2, name)
    return key


def format_options(options: Sequence[str]) -> str:
    """``A. first\\nB. second`` (Q-Bench convention).

    >>> print(format_options(["cup", "spoon"]))
    A. cup
    B. spoon
    """
    return "\n".join(f"{string.ascii_uppercase[i]}. {o}" for i, o in enumerate(options))


def render_prompt(question: str, options: Sequence[str], mode: str) -> str:
    """Full user text for a question in ``mode``: question, options, answer-layout instruction
    (with placeholders, never a concrete answer).

    >>> print(render_prompt("Which object?", ["cup", "dog"], "no_think"))
    Which object?
    A. cup
    B. dog
    Answer with the option's letter from the given choices. Give your final answer directly inside <answer></answer>, laid out as <answer>X</answer>, where X is the letter of your choice.
    """
    check_mode(mode)
    if options:
        return (f"{question}\n{format_options(options)}\n{CHOICE_HINT} "
                f"{instruction(mode, LETTER_EXAMPLE, LETTER_NOTE)}")
    return f"{question} {instruction(mode, BOX_EXAMPLE)}"


def choose_tasks(rng: np.random.Generator, split: str, samples_per_image: float, fr_prob: float,
                 test_forms: Sequence[str], tasks: Sequence[str] = TASK_SETS["paper"]) -> list[tuple[str, str]]:
    """``[(task, form), ...]`` for one image (see the module docstring)."""
    if split == "test":
        return [(t, f) for t in tasks for f in test_forms]
    p = min(1.0, max(0.0, samples_per_image / len(tasks)))
    chosen = [t for t in tasks if float(rng.random()) < p]
    if not chosen:
        chosen = [tasks[int(rng.integers(len(tasks)))]]
    return [(t, "fr" if float(rng.random()) < fr_prob else "nr") for t in chosen]


def make_samples(row: dict, split: str, *, seed: int = 0, n_options: int = 4,
                 categories: Sequence[str] = D.DISTORTIONS, severities: Sequence[int] = (1, 2, 3, 4, 5),
                 samples_per_image: float = 2.6, fr_prob: float = 0.5, test_forms: Sequence[str] = FORMS,
                 modes: Sequence[str] = ("no_think",), options: str = "paper",
                 option_order: str = "fixed") -> list[dict]:
    """The Stage-1 samples of one marked image (``row``: an ``images_*.jsonl`` row).

    ``options="paper"``: separate type and severity questions over the whole pools (the 12
    categories of ``categories``, the 5 severity names of ``severities``) and the object question
    over every distractor of the marked image; ``"compact"``: one type-and-severity question and an object
    question with at most ``n_options`` options each. ``option_order`` (:data:`OPTION_ORDERS`) lists
    the paper pools' options ``fixed`` (the types in ``categories``' order, the severities from
    slight to very severe, the objects from left to right) or ``shuffled`` (seeded); the compact
    layout's options are always shuffled. The random draws are the same either way."""
    if option_order not in OPTION_ORDERS:
        raise ValueError(f"perception.option_order {option_order!r}: expected one of {list(OPTION_ORDERS)}")
    if options not in TASK_SETS:
        raise ValueError(f"perception.options {options!r}: expected one of {list(TASK_SETS)}")
    scene_k, slot = int(row["scene"][1:]), int(row["id"].rsplit("_o", 1)[1])
    rng = np.random.default_rng([int(seed), 0x5A, scene_k, slot])
    steps = list(zip(row["categories"], row["severities"]))
    out = []
    for task, form in choose_tasks(rng, split, samples_per_image, fr_prob, test_forms, TASK_SETS[options]):
        mode = check_mode(modes[int(rng.integers(len(modes)))])
        question = QUESTIONS[(task, form)].format(w=row["width"], h=row["height"])
        if task == "type_severity":
            opts, answer = type_severity_options(steps, rng, n_options, categories, severities)
        elif task == "type":   # the first distortion of a combination is "the most noticeable" one
            pool = [category_label(c) for c in categories]
            opts, answer = pool_options(pool, category_label(steps[0][0]), rng)
            opts = pool if option_order == "fixed" else opts
        elif task == "severity":
            pool = [D.SEVERITIES[int(s) - 1] for s in sorted(severities)]
            opts, answer = pool_options(pool, D.SEVERITIES[int(steps[0][1]) - 1], rng)
            opts = pool if option_order == "fixed" else opts
        elif task == "object":
            opts, answer = object_options(row["object"], row["distractors"], rng,
                                          None if options == "paper" else n_options)
            if option_order == "fixed" and options == "paper":
                opts = sorted(opts, key=_reading_order(row))
        else:
            opts, answer = [], list(row["bbox"])
        letter = string.ascii_uppercase[opts.index(answer)] if opts else ""
        out.append({
            "id": f"{row['id']}_{task}_{form}", "image": row["image"],
            "reference": row["reference"] if form == "fr" else "", "task": task, "form": form, "mode": mode,
            "prompt": render_prompt(question, opts, mode), "question": question, "options": opts,
            "answer": answer, "answer_letter": letter, "bbox": list(row["bbox"]), "category": row["category"],
            "severity": int(row["severity"]), "categories": list(row["categories"]),
            "severities": [int(s) for s in row["severities"]], "object": row["object"],
            "width": int(row["width"]), "height": int(row["height"]), "split": split, "image_id": row["id"],
            "group": "easy" if row["category"] in D.EASY else "hard",
        })
    return out


# --------------------------------------------------------------------------- loaders
def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; expected one of {SPLITS}")
    return split


def _dataset_file(dataset_dir: str | Path, name: str) -> Path:
    d = Path(dataset_dir)
    if (d / "perception" / name).is_file() and not (d / name).is_file():
        d = d / "perception"  # a work_dir was passed
    p = d / name
    if not p.is_file():
        raise FileNotFoundError(f"{p}: not found; build the dataset first "
                                "(python -m refine_iqa_lib.data.build --profile <profile>)")
    return p


def answer_as_text(answer: Any) -> str:
    """The answer as the text inside ``<answer>``: option text, or ``"[x1, y1, x2, y2]"``.

    >>> answer_as_text([1, 2, 30, 40]), answer_as_text("blur, slight")
    ('[1, 2, 30, 40]', 'blur, slight')
    """
    return json.dumps([int(v) for v in answer]) if isinstance(answer, (list, tuple)) else str(answer)


def load_stage1_dataset(dataset_dir: str | Path, split: str = "train"):
    """``samples_<split>.jsonl`` as a ``datasets.Dataset`` with absolute paths (see schema).

    ``dataset_dir`` is the ``perception`` folder (or the work dir above it).
    """
    import datasets

    path = _dataset_file(dataset_dir, f"samples_{_check_split(split)}.jsonl")
    root = path.parent.resolve()
    rows = read_jsonl(path)
    for r in rows:
        r["image"] = str(root / r["image"])
        r["reference"] = str(root / r["reference"]) if r["reference"] else ""
        r["images"] = [r["reference"], r["image"]] if r["form"] == "fr" else [r["image"]]
        r["answer"] = answer_as_text(r["answer"])
    features = None
    if not rows:
        features = datasets.Features({k: datasets.Value("string") for k in
                                      ("id", "image", "reference", "task", "form", "mode", "prompt", "answer")})
    return datasets.Dataset.from_list(rows, features=features)


def load_perception_images(dataset_dir: str | Path, split: str = "train") -> pd.DataFrame:
    """``images_<split>.jsonl`` (one marked image per row) with absolute ``image`` / ``reference``;
    ``split="built"`` gives every marked image before review and split."""
    name = "images_built.jsonl" if split == "built" else f"images_{_check_split(split)}.jsonl"
    path = _dataset_file(dataset_dir, name)
    root = path.parent.resolve()
    df = pd.DataFrame(read_jsonl(path))
    for col in ("image", "reference"):
        if col in df:
            df[col] = [str(root / v) for v in df[col]]
    return df
