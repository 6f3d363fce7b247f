"""Q-Bench A1 (LLVisionQA) evaluation: Table 4 and the interpreting columns of Tables 5-6.

Prompt (the Q-Bench convention): the image, then the question, the candidates as ``A. …``,
``B. …`` lines, then ``Answer with the option's letter from the given choices directly.`` In
``think`` mode the project's think instruction follows (analysis inside ``<think></think>``,
the letter inside ``<answer></answer>``). Answers are greedy (``model.generate`` without
sampling), as in the paper.

Parsing (:func:`parse_choice`): the text of the last ``<answer>`` block if there is one, else
the text after ``</think>`` if there is one, else the whole completion; then, in order, a
leading option letter (``B``, ``B.``, ``(B)``, ``B)``, ``B:``), the exact text of a candidate,
an explicit ``answer is B`` / ``option B``, and finally the candidate text that appears
first. Nothing found = wrong answer (counted in ``n_unparsed``).

Accuracy is reported by question type (``yes_no``, ``what``, ``how``), by quality concern
(``technical``, ``other``, ``incontext_technical``, ``incontext_other``) and ``overall``, in
the result schema of :mod:`refine_iqa_lib.evaluation.tables`::

    results/<profile>/qbench/<model>__<mode>.json
    {"model": "s2", "mode": "think", "profile": "tiny", "split": "dev", "n": 1495,
     "accuracy": {"yes_no": .., "what": .., "how": .., "technical": .., "other": ..,
                  "incontext_technical": .., "incontext_other": .., "overall": ..},
     "ci": {"accuracy": {"yes_no": {"low": .., "high": .., "n": ..}, ...}}, "ci_method": {...}, ...}

A group without questions has accuracy ``null``. ``ci`` holds 95 % bootstrap intervals
(questions resampled; :mod:`refine_iqa_lib.evaluation.statistics`). With ``eval.qbench_root: embedded`` the
questions are the synthetic stand-in of :mod:`refine_iqa_lib.standin.qbench_set` (the record then
says ``"synthetic": true``); otherwise the real ``llvisionqa_dev.json`` is read (the public test
split has no answers and cannot be scored). Per-question answers go to
``<work_dir>/eval/qbench/<model>__<mode>.jsonl``.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Sequence

import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.io import write_jsonl
from refine_iqa_lib.prompts import check_mode, instruction

QBENCH_INSTRUCTION = "Answer with the option's letter from the given choices directly."
#: Accuracy keys of the result file, in Table 4's column order.
ACCURACY_KEYS = ("yes_no", "what", "how", "technical", "other", "incontext_technical", "incontext_other", "overall")
LETTERS = "ABCDEFGH"

_LEAD_LETTER = re.compile(r"^\(?([A-Ha-h])(?:[.):]|\s|$)")
_EXPLICIT = re.compile(r"(?i:answer(?: is)?|option|choice)\s*[:\-]?\s*\(?([A-H])\b")


def qbench_prompt(question: str, candidates: Sequence[str], mode: str = "no_think") -> str:
    """The Q-Bench multiple-choice prompt.

    >>> print(qbench_prompt("Is the image blurry?", ["Yes", "No"]))
    Is the image blurry?
    A. Yes
    B. No
    Answer with the option's letter from the given choices directly.
    """
    if not 2 <= len(candidates) <= len(LETTERS):
        raise ValueError(f"{len(candidates)} candidates for {question!r}; expected 2-{len(LETTERS)}")
    lines = [str(question).strip()] + [f"{LETTERS[i]}. {c}" for i, c in enumerate(candidates)]
    text = "\n".join(lines + [QBENCH_INSTRUCTION])
    if check_mode(mode) == "think":
        text += " " + instruction("think", "X", "where X is the letter of your choice")
    return text


def _norm(s: str) -> str:
    return " ".join(str(s).casefold().split()).strip(" .")


def parse_choice(text: str, candidates: Sequence[str]) -> int:
    """Index of the chosen candidate in a completion, or -1 (see the module docstring).

    >>> c = ["Yes", "No"]
    >>> parse_choice("B", c), parse_choice("(a) Yes", c), parse_choice("no.", c)
    (1, 0, 1)
    >>> parse_choice("<think>looks soft</think><answer>B</answer>", c)
    1
    >>> parse_choice("The answer is B.", ["blur", "noise"]), parse_choice("I see noise here", ["blur", "noise"])
    (1, 1)
    >>> parse_choice("", c), parse_choice("C", c)
    (-1, -1)
    """
    if not isinstance(text, str):
        return -1
    from refine_iqa_lib.method.rewards import THINK_CLOSE, extract_answer

    content = extract_answer(text)
    if content is None:
        cut = text.rfind(THINK_CLOSE)
        content = text[cut + len(THINK_CLOSE):] if cut >= 0 else text
    s = content.strip()
    n = len(candidates)
    m = _LEAD_LETTER.match(s)
    if m:
        i = LETTERS.index(m.group(1).upper())
        rest = _norm(s[m.end():])
        # "A picture of ..." starts with the article, not an option: accept a letter only when it is
        # alone or followed by its own option's text
        if i < n and (not rest or rest == _norm(candidates[i]) or s[m.end() - 1:m.end()] in ".):"):
            return i
    norm = _norm(s)
    texts = [_norm(c) for c in candidates]
    if norm in texts:
        return texts.index(norm)
    m = _EXPLICIT.search(s)
    if m and LETTERS.index(m.group(1).upper()) < n:
        return LETTERS.index(m.group(1).upper())
    best, best_pos = -1, None
    for i, t in enumerate(texts):
        if not t:
            continue
        hit = re.search(r"(?<![\w])" + re.escape(t) + r"(?![\w])", norm)
        if hit and (best_pos is None or hit.start() < best_pos
                    or (hit.start() == best_pos and len(t) > len(texts[best]))):
            best, best_pos = i, hit.start()
    return best


def qbench_accuracy(df: pd.DataFrame) -> dict[str, float | None]:
    """Accuracy by type, concern and overall from columns ``correct``, ``type_name``, ``concern_name``.

    >>> d = pd.DataFrame({"correct": [True, False, True], "type_name": ["yes_no", "yes_no", "how"],
    ...                   "concern_name": ["technical", "other", "technical"]})
    >>> acc = qbench_accuracy(d); acc["yes_no"], acc["how"], acc["technical"], acc["what"]
    (0.5, 1.0, 1.0, None)
    """
    return {key: float(sel.mean()) if len(sel) else None for key, sel in qbench_groups(df).items()}


def qbench_groups(df: pd.DataFrame) -> dict[str, pd.Series]:
    """Per-question correctness (1.0 / 0.0) of each accuracy key (:data:`ACCURACY_KEYS`)."""
    missing = [c for c in ("correct", "type_name", "concern_name") if c not in df.columns]
    if missing:
        raise ValueError(f"qbench_accuracy: missing column(s) {missing}; found {list(df.columns)}")
    correct = df["correct"].astype(bool).astype(float)
    out: dict[str, pd.Series] = {}
    for key in ACCURACY_KEYS:
        if key == "overall":
            out[key] = correct
        elif key in ("yes_no", "what", "how"):
            out[key] = correct[df["type_name"] == key]
        else:
            out[key] = correct[df["concern_name"] == key]
    return out


def qbench_intervals(df: pd.DataFrame, seed: int = 0, n_resamples: int = 2000, confidence: float = 0.95) -> dict:
    """Bootstrap interval (questions resampled) of every accuracy key; None for a group without questions."""
    from refine_iqa_lib.evaluation.statistics import interval_record

    return {key: interval_record(sel, seed, n_resamples, confidence) for key, sel in qbench_groups(df).items()}


def predict_qbench(model, processor, questions: pd.DataFrame, mode: str, batch_size: int = 8,
                   max_new_tokens: int = 32, desc: str = "qbench", engine=None) -> pd.DataFrame:
    """Greedy answers for the questions (``load_qbench``'s columns); adds ``completion``,
    ``pred_index``, ``pred`` (text or None) and ``correct``. ``engine``: another greedy generator
    with the same call (e.g. :class:`refine_iqa_lib.vllm_engine.VLLMGreedy`) instead of the model."""
    from refine_iqa_lib.generation import greedy_generate

    prompts = [qbench_prompt(q, c, mode) for q, c in zip(questions["question"], questions["candidates"])]
    if engine is not None:
        texts = engine.generate(list(questions["image"]), prompts, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, desc=desc)
    else:
        texts = greedy_generate(model, processor, list(questions["image"]), prompts, max_new_tokens=max_new_tokens,
                                batch_size=batch_size, desc=desc)
    out = questions.copy()
    out["completion"] = texts
    out["pred_index"] = [parse_choice(t, c) for t, c in zip(texts, questions["candidates"])]
    out["pred"] = [c[i] if i >= 0 else None for i, c in zip(out["pred_index"], questions["candidates"])]
    out["correct"] = out["pred_index"] == out["answer_index"]
    return out


def resolve_qbench_root(cfg: Config) -> Path:
    """The Q-Bench folder: ``eval.qbench_root``, or the embedded stand-in (built on demand)."""
    if cfg.eval.qbench_root == "embedded":
        from refine_iqa_lib.standin.qbench_set import build_embedded_qbench

        return build_embedded_qbench(cfg)
    root = cfg.resolve(cfg.eval.qbench_root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: Q-Bench folder not found; expected llvisionqa_{cfg.eval.qbench_split}.json "
                                "and images/ (or set eval.qbench_root: embedded for the synthetic stand-in)")
    return root


def load_qbench_questions(cfg: Config) -> pd.DataFrame:
    """The scored questions of ``eval.qbench_split``: a seeded subset of ``eval.qbench_max_samples``
    questions (or ``eval.max_samples`` when that is 0; 0 = all)."""
    from refine_iqa_lib.data.iqa import load_qbench
    from refine_iqa_lib.io import subsample

    df = load_qbench(resolve_qbench_root(cfg), cfg.eval.qbench_split)
    return subsample(df, cfg.eval.qbench_max_samples or cfg.eval.max_samples, cfg.seed)


def qbench_result_path(cfg: Config, model: str, mode: str) -> Path:
    """``results/<profile>/qbench/<model>__<mode>.json``."""
    from refine_iqa_lib.evaluation.results import result_dir
    from refine_iqa_lib.runs import result_stem

    return result_dir(cfg, "qbench") / f"{result_stem(model)}__{check_mode(mode)}.json"


def evaluate_qbench(cfg: Config, model: str = "s2", modes: Sequence[str] | None = None, loaded=None,
                    overwrite: bool = True, model_path=None, engine=None) -> list[dict]:
    """Answer the Q-Bench questions with ``model`` in each mode (default ``eval.modes``); write and
    return one record per mode. ``loaded``: an already loaded ``(model, processor)``;
    ``model_path``: the folder of an ``evaluated:<folder>`` model (see ``evaluate_scoring``);
    ``engine``: the greedy generator that answers (see :func:`predict_qbench`)."""
    from refine_iqa_lib.evaluation.results import (ci_method, eval_model_path, is_current, load_eval_model,
                                                   predictions_dir, usable_images, write_record)
    from refine_iqa_lib.io import read_json, repo_relative
    from refine_iqa_lib.runs import normalise_model_name

    name = normalise_model_name(model)
    modes = [check_mode(m) for m in (modes or cfg.eval.modes)]
    records = []
    if not overwrite:
        fresh = [m for m in modes if is_current(cfg, qbench_result_path(cfg, name, m), name, model_path)]
        records = [read_json(qbench_result_path(cfg, name, m)) for m in fresh]
        modes = [m for m in modes if m not in fresh]
        if not modes:
            return records
    questions, unreadable = usable_images(cfg, load_qbench_questions(cfg), "Q-Bench images")
    policy, processor = loaded if loaded is not None else load_eval_model(cfg, name, model_path)
    path = repo_relative(model_path if model_path is not None else eval_model_path(cfg, name))
    for mode in modes:
        pred = predict_qbench(policy, processor, questions, mode, cfg.eval.batch_size, cfg.eval.max_new_tokens,
                              desc=f"{name} qbench {mode}", engine=engine)
        rec = {"model": name, "mode": mode, "profile": cfg.profile, "split": cfg.eval.qbench_split,
               "n": int(len(pred)), "accuracy": qbench_accuracy(pred),
               "ci": {"accuracy": qbench_intervals(pred, cfg.seed, cfg.eval.ci_resamples, cfg.eval.ci_level)},
               "ci_method": ci_method(cfg, "question"),
               "n_unparsed": int((pred["pred_index"] < 0).sum()),
               "counts": {**pred["type_name"].value_counts().to_dict(), **pred["concern_name"].value_counts().to_dict()},
               "synthetic": cfg.eval.qbench_root == "embedded", "model_path": path, **unreadable}
        out = qbench_result_path(cfg, name, mode)
        write_record(out, rec)
        keep = ["id", "image", "question", "candidates", "answer", "type_name", "concern_name", "completion",
                "pred", "correct"]
        write_jsonl(predictions_dir(cfg, "qbench") / f"{out.stem}.jsonl", pred[keep].to_dict("records"))
        records.append(rec)
    return records
