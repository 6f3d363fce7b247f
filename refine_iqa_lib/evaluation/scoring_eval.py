"""Quality-scoring evaluation (Table 3, and the scoring columns of Tables 5-6), plus the pieces
every evaluator shares: which weights a model name means, loading them, batched greedy
generation, sub-sampling and writing result files.

Model names
-----------
Result files name models the way :data:`refine_iqa_lib.evaluation.tables.RUNS` does:

=================  =========================================================================
name               weights
=================  =========================================================================
``base``           the real base model (``model.path``), or for the stand-in the model after
                   its supervised warm-up (``<work_dir>/runs/warmup``; the warm-up is not in
                   the paper, it only gives the random stand-in something to refine)
``s1``             Refine-IQA-S1: ``<work_dir>/runs/stage1``
``s2``             Refine-IQA-S2: ``<work_dir>/runs/stage2``
``s2_no_stage1``,  the Stage-2 ablations of Tables 5-6:
``s2_no_pd``,      ``<work_dir>/runs/ablations/<name>`` (see :mod:`.ablations`)
``s2_no_pm``
=================  =========================================================================

``"S1"``/``"S2"``/``"BASE"`` are accepted too (names are case-insensitive). :func:`model_paths`
is the registry; :func:`eval_model_path` checks that a name's weights exist and says how to
make them when they do not.

Scoring
-------
:func:`evaluate_scoring` scores an IQA test set with one model in each requested ``mode``
(``think`` / ``no_think``) and ``method`` (``prob`` = Eq. 8's expectation over the integer
digit, one forward pass; ``numeric`` = generate and parse the number), computes SRCC and PLCC
with :func:`refine_iqa_lib.evaluation.metrics.correlation_report` and writes one JSON per
(model, dataset, mode, method) in the schema of :mod:`refine_iqa_lib.evaluation.tables`::

    results/<profile>/scoring/<model>__<dataset>__<mode>__<method>.json
    {"model": "s2", "dataset": "koniq", "mode": "no_think", "method": "prob", "srcc": ..,
     "plcc": .., "plcc_kind": "raw", "n": .., "n_nan": .., "profile": "tiny", ...}

``method`` is written ``prob`` or ``num`` (the tables' spelling; ``numeric`` is accepted as an
input). PLCC is raw unless ``eval.logistic_plcc`` is set, in which case a 4-parameter logistic
is fitted first; ``plcc_kind`` says which one the number is. Unparsable numeric answers are NaN
predictions: counted in ``n_nan`` and excluded, never dropped silently. Per-image predictions go
to ``<work_dir>/eval/scoring/<same stem>.csv``.
"""
from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.io import write_json, write_text

#: The model names every evaluator knows (see the module docstring).
BASE_MODELS = ("base", "s1", "s2")
#: Stage-2 ablation runs (Tables 5-6), written under ``<work_dir>/runs/ablations/<name>``.
ABLATION_MODELS = ("s2_no_stage1", "s2_no_pd", "s2_no_pm")
#: Input spelling of a scoring method -> spelling in result files.
METHODS = {"prob": "prob", "numeric": "num", "num": "num"}
#: Result kinds (sub-folders of ``results/<profile>/``).
RESULT_KINDS = ("scoring", "perception", "qbench")


# --------------------------------------------------------------------------------------------
# model registry


def _run_dir(cfg: Config, name: str) -> Path:
    runs = cfg.work_dir / "runs"
    if name == "base":
        return runs / "warmup"
    if name in ("s1", "s2"):
        return runs / {"s1": "stage1", "s2": "stage2"}[name]
    return runs / "ablations" / name


def uses_warmup(cfg: Config) -> bool:
    """Whether ``base`` means the stand-in after its warm-up (rather than ``model.path`` itself)."""
    return cfg.model.path == "tiny" and cfg.warmup.enabled


def model_paths(cfg: Config) -> dict[str, Path]:
    """Model name -> the folder its weights are read from (whether or not it exists yet).

    >>> from refine_iqa_lib.config import load_config
    >>> paths = model_paths(load_config("smoke"))
    >>> sorted(paths), paths["s2"].parts[-2:]
    (['base', 's1', 's2', 's2_no_pd', 's2_no_pm', 's2_no_stage1'], ('runs', 'stage2'))
    """
    out: dict[str, Path] = {}
    for name in BASE_MODELS + ABLATION_MODELS:
        if name == "base" and not uses_warmup(cfg):
            out[name] = _base_model_dir(cfg)
        else:
            out[name] = _run_dir(cfg, name)
    return out


def _base_model_dir(cfg: Config) -> Path:
    if cfg.model.path == "tiny":  # warm-up disabled: the raw stand-in (its folder is built on demand)
        return cfg.cache_dir / f"tiny-seed{cfg.model.seed}"
    return cfg.resolve(cfg.model.path)


def normalise_model_name(name: str) -> str:
    """``"S1"`` -> ``"s1"``; an unknown name raises listing the known ones."""
    key = str(name).strip().lower()
    if key not in BASE_MODELS + ABLATION_MODELS:
        raise ValueError(f"unknown model name {name!r}; expected one of {list(BASE_MODELS + ABLATION_MODELS)}")
    return key


def weights_dir(folder: str | os.PathLike) -> Path | None:
    """The finished weights of a run folder (``<run>/final`` with its ``refine_final.json`` marker,
    written last by :func:`refine_iqa_lib.training.run.run_stage`), or None. Checkpoints are not used."""
    from refine_iqa_lib.training.run import FINAL_MARKER

    final = Path(folder) / "final"
    return final if (final / FINAL_MARKER).is_file() and (final / "config.json").is_file() else None


def eval_model_path(cfg: Config, name: str) -> Path:
    """The weights folder of model ``name``; raise ``FileNotFoundError`` saying how to make it."""
    name = normalise_model_name(name)
    if name == "base" and not uses_warmup(cfg):
        from refine_iqa_lib.models import resolve_model_path

        return resolve_model_path(cfg)  # builds the stand-in, or checks the real model's folder
    folder = model_paths(cfg)[name]
    found = weights_dir(folder)
    if found is None:
        how = {"base": "the warm-up (notebook 02, or `python -m refine_iqa_lib.training.launch --stage warmup`)",
               "s1": "Stage-1 (notebook 03, or `python -m refine_iqa_lib.training.launch --stage 1`)",
               "s2": "Stage-2 (notebook 04, or `python -m refine_iqa_lib.training.launch --stage 2`)"}.get(
            name, "the ablation run (notebook 08, refine_iqa_lib.evaluation.ablations.run_ablation)")
        raise FileNotFoundError(f"{folder}: no finished run for model {name!r} (expected final/ with its "
                                f"completion marker); run {how} first")
    return found


def available_models(cfg: Config, names: Iterable[str] | None = None) -> dict[str, Path]:
    """The subset of ``names`` (default: all) whose weights exist, name -> folder."""
    out = {}
    for name in names or model_paths(cfg):
        try:
            out[normalise_model_name(name)] = eval_model_path(cfg, name)
        except FileNotFoundError:
            continue
    return out


def ensure_base_model(cfg: Config) -> Path:
    """The ``base`` weights, running the stand-in's warm-up through the launcher if they are missing.

    For a real model (or with the warm-up disabled) this is just :func:`eval_model_path`.
    """
    try:
        return eval_model_path(cfg, "base")
    except FileNotFoundError:
        if not uses_warmup(cfg):
            raise
    from refine_iqa_lib.training.launch import run_stage_subprocess

    run_stage_subprocess(cfg, "warmup", run_dir=model_paths(cfg)["base"])
    return eval_model_path(cfg, "base")


def load_eval_model(cfg: Config, name: str):
    """``(model, processor)`` for model ``name``, in eval mode, on the GPU when there is one."""
    import torch

    from refine_iqa_lib.models import load_policy

    path = eval_model_path(cfg, name)
    device = "cuda" if torch.cuda.is_available() else None
    dtype = cfg.model.dtype if device else "float32"
    return load_policy(path, dtype=dtype, min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                       device=device)


# --------------------------------------------------------------------------------------------
# generation, sub-sampling, result files


def open_image(image: Any):
    """A PIL RGB image from a path or a PIL image (errors name the file)."""
    from PIL import Image, UnidentifiedImageError

    if isinstance(image, Image.Image):
        return image.convert("RGB")
    path = Path(image)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: image not found")
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"{path}: not a readable image ({e})") from e


def chat_text(processor, prompt: str, n_images: int = 1) -> str:
    """The model input text for one user turn (images first, then ``prompt``), ready to generate."""
    from refine_iqa_lib.prompts import user_message

    return processor.apply_chat_template(user_message(prompt, n_images), tokenize=False, add_generation_prompt=True)


def greedy_generate(model, processor, images: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int,
                    batch_size: int = 8, desc: str = "generate", progress: bool = True) -> list[str]:
    """Greedy completions (``do_sample=False``, reproducible) for image/prompt pairs, batched.

    ``images[i]`` is a path, a PIL image, or a list of them (several images in one turn, e.g. a
    reference and a distorted image). Returns the decoded new text of each sample (special tokens
    removed). A ``tqdm.auto`` bar counts samples.
    """
    import torch
    from tqdm.auto import tqdm
    from transformers import GenerationConfig

    if len(images) != len(prompts):
        raise ValueError(f"{len(images)} images for {len(prompts)} prompts; expected one entry per prompt")
    tok = processor.tokenizer
    gen_cfg = GenerationConfig(max_new_tokens=int(max_new_tokens), do_sample=False, num_beams=1,
                               temperature=None, top_p=None, top_k=None,
                               eos_token_id=model.generation_config.eos_token_id,
                               pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id)
    out: list[str] = []
    bar = tqdm(total=len(prompts), desc=desc, disable=not progress, leave=False)
    try:
        for start in range(0, len(prompts), max(1, int(batch_size))):
            batch_imgs = images[start:start + batch_size]
            groups = [list(im) if isinstance(im, (list, tuple)) else [im] for im in batch_imgs]
            texts = [chat_text(processor, p, len(g)) for p, g in zip(prompts[start:start + batch_size], groups)]
            flat = [open_image(im) for g in groups for im in g]
            enc = processor(text=texts, images=flat, return_tensors="pt", padding=True).to(model.device)
            with torch.no_grad():
                seq = model.generate(**enc, generation_config=gen_cfg)
            new = seq[:, enc["input_ids"].shape[1]:]
            out += processor.batch_decode(new, skip_special_tokens=True, clean_up_tokenization_spaces=False)
            bar.update(len(texts))
    finally:
        bar.close()
    return out


def subsample(df: pd.DataFrame, max_samples: int, seed: int = 0) -> pd.DataFrame:
    """``max_samples`` rows drawn without replacement by a seeded Generator (all rows if 0 or
    more than there are), kept in their original order.

    >>> subsample(pd.DataFrame({"a": range(10)}), 3, seed=0)["a"].tolist()
    [5, 6, 9]
    """
    if max_samples <= 0 or max_samples >= len(df):
        return df.reset_index(drop=True)
    idx = np.sort(np.random.default_rng(seed).choice(len(df), size=int(max_samples), replace=False))
    return df.iloc[idx].reset_index(drop=True)


def usable_images(cfg: Config, df: pd.DataFrame, what: str) -> tuple[pd.DataFrame, dict]:
    """Decode every image of ``df["image"]`` before any model work (:func:`refine_iqa_lib.io.check_images`).

    Unreadable or missing files stop the evaluation with an error naming them, or, with
    ``eval.skip_unreadable``, their rows are left out and ``({"unreadable": [{image, reason}, ...]})``
    is returned for the result record. Returns ``(rows to evaluate, extra record keys)``."""
    from refine_iqa_lib.io import check_images

    bad = check_images(df["image"], desc=f"checking {what}").require(what, cfg.eval.skip_unreadable)
    if not cfg.eval.skip_unreadable:
        return df, {}
    gone = {b["image"] for b in bad}
    return df[~df["image"].astype(str).isin(gone)].reset_index(drop=True), {"unreadable": bad}


def result_dir(cfg: Config, kind: str) -> Path:
    """``results/<profile>/<kind>`` (``kind``: scoring, perception or qbench)."""
    if kind not in RESULT_KINDS:
        raise ValueError(f"unknown result kind {kind!r}; expected one of {RESULT_KINDS}")
    return cfg.results_dir / cfg.profile / kind


def predictions_dir(cfg: Config, kind: str) -> Path:
    """``<work_dir>/eval/<kind>``: per-sample predictions (bulky, git-ignored)."""
    return cfg.work_dir / "eval" / kind


def clean_number(v: Any) -> Any:
    """JSON-safe number: NaN/inf -> None (the tables read None as missing)."""
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return v if math.isfinite(v) else None
    if isinstance(v, np.integer):
        return int(v)
    return v


def write_record(path: Path, record: dict) -> Path:
    """Write a result record atomically (NaN written as null)."""
    clean = {k: ({kk: clean_number(vv) for kk, vv in v.items()} if isinstance(v, dict) else clean_number(v))
             for k, v in record.items()}
    return write_json(path, clean)


# --------------------------------------------------------------------------------------------
# scoring


def method_name(method: str) -> str:
    """``prob`` / ``numeric`` (or ``num``) -> the result files' spelling ``prob`` / ``num``."""
    if method not in METHODS:
        raise ValueError(f"unknown scoring method {method!r}; expected one of {sorted(METHODS)}")
    return METHODS[method]


def scoring_result_path(cfg: Config, model: str, dataset: str, mode: str, method: str) -> Path:
    """``results/<profile>/scoring/<model>__<dataset>__<mode>__<method>.json``."""
    return result_dir(cfg, "scoring") / f"{model}__{dataset}__{mode}__{method_name(method)}.json"


def load_scoring_set(cfg: Config, dataset: str, split: str | None = None) -> tuple[pd.DataFrame, str]:
    """The evaluation rows of ``dataset`` (``max_samples`` seeded subset) and the split used.

    ``dataset`` is a configured name (``scoring.roots``); ``embedded`` roots are built on demand.
    """
    from refine_iqa_lib.data.iqa import get_info
    from refine_iqa_lib.data.scoring_set import load_scoring_split, loader_name

    info = get_info(loader_name(cfg, dataset))
    split = split or info.default_split
    df = load_scoring_split(cfg, dataset, split=split)
    if df.empty:
        raise ValueError(f"{dataset}: the {split!r} split of {info.title} has no images")
    return subsample(df, cfg.eval.max_samples, cfg.seed), split


def predict_scores(model, processor, images: Sequence[Any], mode: str, method: str, batch_size: int,
                   max_new_tokens: int) -> pd.DataFrame:
    """One row per image: ``score`` (NaN where a numeric answer cannot be parsed) and what the
    model wrote (``text`` for numeric, ``think`` in think mode) or ``digit_mass`` (prob). Batched,
    with a ``tqdm.auto`` bar; the model work is :func:`refine_iqa_lib.method.scoring.score_images`."""
    from refine_iqa_lib.method.scoring import score_images

    method = {"prob": "prob", "num": "numeric"}[method_name(method)]
    rows = score_images(model, processor, list(images), mode=mode, method=method, batch_size=max(1, int(batch_size)),
                        max_new_tokens=int(max_new_tokens))
    out = pd.DataFrame([{k: v for k, v in r.items() if k != "digit_probs"} for r in rows])
    out["score"] = pd.to_numeric(out["score"], errors="coerce").astype(float)
    return out


def evaluate_scoring(cfg: Config, model: str = "s2", datasets: Sequence[str] | None = None,
                     modes: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                     loaded=None, overwrite: bool = True) -> list[dict]:
    """Score ``datasets`` (default ``scoring.eval``) with ``model`` in every mode x method
    (defaults ``eval.modes`` / ``eval.methods``); write and return one record per combination.

    ``loaded`` is an already loaded ``(model, processor)`` for ``model`` (saves reloading a 7B
    model). With ``overwrite=False`` an existing result file is read back instead of recomputed.
    """
    from refine_iqa_lib.evaluation.metrics import correlation_report
    from refine_iqa_lib.io import read_json
    from refine_iqa_lib.prompts import check_mode

    name = normalise_model_name(model)
    datasets = list(datasets or cfg.scoring.eval)
    modes = [check_mode(m) for m in (modes or cfg.eval.modes)]
    methods = [method_name(m) for m in (methods or cfg.eval.methods)]
    records: list[dict] = []
    todo = [(d, mo, me) for d in datasets for mo in modes for me in methods]
    if not overwrite:
        done = [t for t in todo if scoring_result_path(cfg, name, *t).is_file()]
        records += [read_json(scoring_result_path(cfg, name, *t)) for t in done]
        todo = [t for t in todo if t not in done]
    if not todo:
        return records
    sets = {d: load_scoring_set(cfg, d) for d in dict.fromkeys(d for d, _, _ in todo)}
    bad = {d: usable_images(cfg, df, f"{d} ({split}) test images") for d, (df, split) in sets.items()}
    policy, processor = loaded if loaded is not None else load_eval_model(cfg, name)
    path = str(eval_model_path(cfg, name))
    for dataset, (df, split) in sets.items():
        df, unreadable = bad[dataset]
        for ds, mode, method in todo:
            if ds != dataset:
                continue
            got = predict_scores(policy, processor, list(df["image"]), mode, method, cfg.eval.batch_size,
                                 cfg.eval.max_new_tokens)
            pred = got["score"].to_numpy(dtype=float)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)  # degenerate sets give NaN, recorded below
                rep = correlation_report(pred, df["mos"].to_numpy(), logistic=cfg.eval.logistic_plcc)
            rec = {"model": name, "dataset": dataset, "mode": mode, "method": method, **rep,
                   "profile": cfg.profile, "split": split, "n_images": int(len(df)),
                   "plcc_fit_requested": "logistic4" if cfg.eval.logistic_plcc else "raw",
                   "model_path": path, "root": cfg.scoring.roots.get(dataset, ""),
                   "pred_mean": float(np.nanmean(pred)) if np.isfinite(pred).any() else None,
                   "pred_std": float(np.nanstd(pred)) if np.isfinite(pred).any() else None,
                   **unreadable}
            out = scoring_result_path(cfg, name, dataset, mode, method)
            write_record(out, rec)
            preds = pd.concat([df[["image", "mos"]].reset_index(drop=True), got.rename(columns={"score": "pred"})],
                              axis=1)
            write_text(predictions_dir(cfg, "scoring") / f"{out.stem}.csv", preds.to_csv(index=False))
            records.append(rec)
    return records


# --------------------------------------------------------------------------------------------
# tables


def scale_notes(cfg: Config, n: int) -> str:
    """Why our rows of Table ``n`` differ from the paper's setting at this profile (data stand-ins,
    datasets not evaluated)."""
    from refine_iqa_lib.evaluation.tables import T3_DATASETS, T56_DATASETS

    notes = []
    if n in (1, 2) and cfg.perception.source == "embedded":
        notes.append("embedded synthetic perception test split (not Refine-Perception-20K)")
    if n in (3, 5, 6):
        wanted = list(T3_DATASETS.values()) if n == 3 else list(T56_DATASETS.values())
        embedded = [d for d in wanted if d in cfg.scoring.eval and str(cfg.scoring.roots.get(d, "")) == "embedded"]
        absent = [d for d in wanted if d not in cfg.scoring.eval]
        if embedded:
            notes.append(f"{', '.join(embedded)}: embedded synthetic stand-in (data.scoring_set), not the real set")
        if absent:
            notes.append(f"not evaluated at profile {cfg.profile!r} (not in scoring.eval): {', '.join(absent)}")
    if n in (4, 5, 6) and cfg.eval.qbench_root == "embedded":
        notes.append("interpreting = synthetic Q-Bench stand-in (data.qbench_set), not Q-Bench")
    if cfg.eval.max_samples:
        notes.append(f"at most {cfg.eval.max_samples} test items per set (eval.max_samples)")
    return "; ".join(notes)


def our_table(cfg: Config, n: int, write: bool = True):
    """Table ``n`` (1-6) from ``results/<profile>/`` beside the paper's rows
    (:func:`refine_iqa_lib.evaluation.tables.build_table`), with :func:`scale_notes` added to our
    rows; written to ``results/tables/table<n>_<profile>.{csv,md,tex}`` when ``write``."""
    from refine_iqa_lib.evaluation.tables import build_table, write_table

    df = build_table(n, cfg.results_dir, profile=cfg.profile)
    extra = scale_notes(cfg, n)
    if extra:
        ours = df["source"] != "paper"
        df.loc[ours, "note"] = ["; ".join(filter(None, [str(v) if isinstance(v, str) else "", extra]))
                                for v in df.loc[ours, "note"]]
    if write:
        write_table(df, f"table{n}_{cfg.profile}", cfg.results_dir / "tables")
    return df
