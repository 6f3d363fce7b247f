"""Run-folder metrics: one JSON line per training step, and readers for the plots.

:class:`MetricsJSONLCallback` appends every ``Trainer.log`` row (TRL's rewards and completion
statistics, the trainer's ``refine/*`` and ``adv/*`` metrics, loss, learning rate, grad norm) to
``<run_dir>/metrics.jsonl`` with the step, the epoch and the wall time since the run started
(continued across resumes). Each line is fsynced, so a killed run keeps every finished step; on
resume :func:`truncate_metrics` drops the rows after the checkpoint the run restarts from, so the
file never holds a step twice.

Readers: :func:`read_metrics` (a DataFrame of the step rows), :func:`curve` (one named curve,
optionally smoothed), :func:`window_means` (mean over the first and last 10 % of the steps - the
"is it learning" check), and :data:`CURVES`, the names used by the notebooks' plots.
:func:`heldout_scoring` scores held-out pictures with several weight folders (before / after).
"""
from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from refine_iqa_lib.io import append_jsonl, read_jsonl, write_jsonl

__all__ = ["METRICS_FILE", "CURVES", "MetricsJSONLCallback", "read_metrics", "curve", "window_means",
           "truncate_metrics", "last_wall_time", "heldout_scoring", "plot_curves", "ConsoleSummaryCallback",
           "quiet_console"]

METRICS_FILE = "metrics.jsonl"

#: Plot name -> metrics column.
CURVES = {
    "reward": "reward",
    "answer (think)": "refine/answer_think",
    "answer (no-think)": "refine/answer_no_think",
    "answer": "rewards/answer/mean",
    "format": "rewards/format/mean",
    "pd (gated, Eq. 5)": "rewards/pd/mean",
    "pd (raw, Eq. 4)": "refine/pd_raw",
    "r_think": "refine/r_think",
    "r_ref": "refine/r_ref",
    "stage-1 task": "rewards/stage1/mean",
    "think tokens": "refine/think_tokens",
    "completion tokens": "completions/mean_length",
    "correct share": "refine/correct",
    "zero-signal groups": "adv/zero_signal_groups",
    "advantage std": "adv/std",
    "loss": "loss",
    "learning rate": "learning_rate",
}


def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if hasattr(v, "item"):
        try:
            v = v.item()
        except (ValueError, TypeError):
            return str(v)
        return _clean(v)
    return v


class MetricsJSONLCallback(TrainerCallback):
    """Append one JSON row per logging step to ``<run_dir>/metrics.jsonl`` (main process only).

    ``wall_offset``: seconds already spent before this process started (a resumed run continues
    the clock of the run it resumes)."""

    def __init__(self, run_dir: str | Path, wall_offset: float = 0.0, extra: dict | None = None):
        self.path = Path(run_dir) / METRICS_FILE
        self.wall_offset = float(wall_offset)
        self.extra = dict(extra or {})
        self._t0: float | None = None

    def on_train_begin(self, args, state, control, **kwargs):
        self._t0 = time.perf_counter()

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        t0 = self._t0 if self._t0 is not None else time.perf_counter()
        row = {k: _clean(v) for k, v in logs.items()}
        row.update(self.extra)
        row["step"] = int(state.global_step)
        row["epoch"] = _clean(state.epoch)
        row["wall_time_s"] = round(self.wall_offset + time.perf_counter() - t0, 3)
        row["kind"] = "step" if "loss" in logs else "summary"
        append_jsonl(self.path, row)


def read_metrics(run_dir: str | Path, kind: str = "step") -> pd.DataFrame:
    """The metrics rows of a run folder (``kind="step"`` rows by default), sorted by step.

    A missing file raises ``FileNotFoundError`` naming it."""
    path = Path(run_dir) / METRICS_FILE
    rows = read_jsonl(path)
    df = pd.DataFrame(rows)
    if df.empty:
        return df
    if kind and "kind" in df.columns:
        df = df[df["kind"] == kind]
    return df.sort_values("step").drop_duplicates("step", keep="last").reset_index(drop=True)


def curve(df: pd.DataFrame, name: str, smooth: int = 1) -> pd.Series:
    """One curve by plot name (:data:`CURVES`) or column, indexed by step; ``smooth`` > 1 applies a
    centred rolling mean over that many steps (NaN-aware). Missing column: an all-NaN series."""
    col = CURVES.get(name, name)
    if col not in df.columns:
        return pd.Series(np.nan, index=df.get("step", pd.Series(dtype=int)), name=name, dtype=float)
    s = pd.to_numeric(df[col], errors="coerce")
    s.index = df["step"].to_numpy()
    s.name = name
    if smooth > 1:
        s = s.rolling(smooth, min_periods=1, center=True).mean()
    return s


def window_means(df: pd.DataFrame, name: str, frac: float = 0.1) -> tuple[float, float]:
    """Mean of a curve over the first and the last ``frac`` of the logged steps (NaNs ignored).

    >>> df = pd.DataFrame({"step": range(1, 11), "reward": [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]})
    >>> window_means(df, "reward", 0.2)
    (0.0, 2.0)
    """
    s = curve(df, name).dropna()
    if s.empty:
        return float("nan"), float("nan")
    k = max(1, int(round(len(s) * frac)))
    return float(s.iloc[:k].mean()), float(s.iloc[-k:].mean())


def truncate_metrics(run_dir: str | Path, step: int) -> int:
    """Drop step rows after ``step`` (and summary rows) from the run's metrics file; returns the
    number of rows kept. Used when a run resumes from the checkpoint of ``step``."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    rows = [r for r in read_jsonl(path) if r.get("kind") == "step" and int(r.get("step", 0)) <= step]
    write_jsonl(path, rows)
    return len(rows)


def last_wall_time(run_dir: str | Path) -> float:
    """Wall time (s) of the last step row of a run folder, 0 when there is none."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0.0
    times = [r.get("wall_time_s") for r in read_jsonl(path) if r.get("kind") == "step"]
    times = [t for t in times if isinstance(t, (int, float))]
    return float(times[-1]) if times else 0.0



def _sampled_scores(model, processor, images, k: int, temperature: float, max_new_tokens: int, variant: str,
                    batch_images: int = 4, seed: int = 0) -> list[list]:
    """``k`` sampled think-mode answers per image (parsed numbers, None when unparsable)."""
    import torch
    from transformers import GenerationConfig

    from refine_iqa_lib.prompts import scoring_prompt, user_message
    from refine_iqa_lib.method.rewards import parse_score
    from refine_iqa_lib.method.scoring import _load_image

    tok = processor.tokenizer
    prompt = processor.apply_chat_template(user_message(scoring_prompt("think", variant)), add_generation_prompt=True,
                                           tokenize=False)
    gen = GenerationConfig(do_sample=True, temperature=float(temperature), top_k=0, top_p=1.0,
                           max_new_tokens=int(max_new_tokens), pad_token_id=tok.pad_token_id,
                           eos_token_id=tok.eos_token_id)
    out: list[list] = []
    was_training = model.training
    model.eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for lo in range(0, len(images), batch_images):
            chunk = [_load_image(im) for im in images[lo:lo + batch_images]]
            batch = processor(text=[prompt] * (k * len(chunk)), images=[im for im in chunk for _ in range(k)],
                              return_tensors="pt", padding=True, padding_side="left")
            with torch.no_grad():
                ids = model.generate(**batch, generation_config=gen)
            texts = tok.batch_decode(ids[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
            out += [[parse_score(t) for t in texts[j * k:(j + 1) * k]] for j in range(len(chunk))]
    model.train(was_training)
    return out


def heldout_scoring(cfg, models: dict, dataset: str | None = None, split: str = "test",
                    max_samples: int | None = None, k: int = 8) -> pd.DataFrame:
    """Held-out scoring of several weight folders (the training notebooks' before/after check).

    ``models``: name -> weights folder. For the first dataset of ``scoring.train`` (or ``dataset``),
    ``split`` pictures (at most ``eval.max_samples``, seeded), every model is scored:

    * ``srcc_prob`` - no-think Eq. 8 expectation (one forward pass), :func:`refine_iqa_lib.method.scoring.score_images`;
    * ``srcc_numeric``, ``accuracy`` - greedy think-mode answers, the number parsed, Eq. 1 accuracy;
      ``parsed`` (share with a number), ``distinct_answers``, ``think_tokens``;
    * ``srcc_sampled``, ``accuracy_sampled`` - the policy as GRPO trains it: ``k`` sampled think
      answers per picture (Stage-2 temperature, seeded), SRCC of their mean and the mean Eq. 1
      accuracy. Greedy answers of a small model collapse onto a few values after RL (ties), so
      the sampled view is the one that tracks training.

    Returns one row per model.
    """
    from refine_iqa_lib.data.scoring_set import load_scoring_split
    from refine_iqa_lib.evaluation.metrics import srcc
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.method.rewards import answer_reward, extract_think
    from refine_iqa_lib.method.scoring import score_images

    name = dataset or cfg.scoring.train[0]
    df = load_scoring_split(cfg, name, split)
    n = int(max_samples if max_samples is not None else cfg.eval.max_samples)
    if 0 < n < len(df):
        df = df.iloc[np.sort(np.random.default_rng(cfg.seed).choice(len(df), n, replace=False))]
    images, mos = list(df["image"]), df["mos"].to_numpy(dtype=float)
    s2 = cfg.stage2
    variant, eps = s2.variant, s2.answer_eps

    def corr(pred):
        pred = np.asarray(pred, dtype=float)
        ok = np.isfinite(pred)
        return srcc(pred[ok], mos[ok]) if ok.sum() > 2 and np.ptp(pred[ok]) > 0 else float("nan")

    rows = []
    for label, path in models.items():
        model, processor = load_policy(path, dtype="float32", min_pixels=cfg.model.min_pixels,
                                       max_pixels=cfg.model.max_pixels)
        tok = processor.tokenizer
        prob = score_images(model, processor, images, mode="no_think", method="prob", batch_size=cfg.eval.batch_size,
                            variant=variant, progress=False)
        num = score_images(model, processor, images, mode="think", method="numeric", batch_size=cfg.eval.batch_size,
                           max_new_tokens=cfg.eval.max_new_tokens, variant=variant, progress=False)
        sampled = _sampled_scores(model, processor, images, k, s2.temperature, s2.max_completion_length, variant,
                                  seed=cfg.seed)
        s = np.array([r["score"] for r in num])
        ok = np.isfinite(s)
        rows.append({
            "model": label, "dataset": name, "split": split, "n": len(images),
            "srcc_prob": corr([r["score"] for r in prob]),
            "srcc_numeric": corr(s),
            "accuracy": float(np.mean([answer_reward(v if np.isfinite(v) else None, m, eps, variant)
                                       for v, m in zip(s, mos)])),
            "srcc_sampled": corr([np.mean([v for v in vals if v is not None]) if any(v is not None for v in vals)
                                  else np.nan for vals in sampled]),
            "accuracy_sampled": float(np.mean([answer_reward(v, m, eps, variant) for vals, m in zip(sampled, mos)
                                               for v in vals])),
            "parsed": float(ok.mean()),
            "distinct_answers": int(len(np.unique(s[ok]))),
            "think_tokens": float(np.mean([len(tok(extract_think(r["text"]), add_special_tokens=False)["input_ids"])
                                           for r in num])),
        })
    return pd.DataFrame(rows)


def plot_curves(df: pd.DataFrame, panels: dict, n_windows: int = 10, title: str | None = None):
    """A row of training-curve panels: ``panels`` maps a panel title to the curve names
    (:data:`CURVES` keys or columns) drawn in it. Each curve is shown per step (faint) and as the
    mean of ``n_windows`` equal windows of steps (markers). Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(3.3 * len(panels), 2.8), squeeze=False)
    for ax, (panel, names) in zip(axes[0], panels.items()):
        for k, name in enumerate(names):
            s = curve(df, name).dropna()
            if s.empty:
                continue
            color = f"C{k}"
            ax.plot(s.index, s.to_numpy(), color=color, alpha=0.25, lw=0.8)
            edges = np.linspace(s.index.min(), s.index.max() + 1, n_windows + 1)
            mids, means = [], []
            for lo, hi in zip(edges[:-1], edges[1:]):
                sel = s[(s.index >= lo) & (s.index < hi)]
                if len(sel):
                    mids.append((lo + hi) / 2)
                    means.append(sel.mean())
            ax.plot(mids, means, "o-", color=color, ms=3, label=name)
        ax.set_title(panel)
        ax.set_xlabel("step")
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


class ConsoleSummaryCallback(TrainerCallback):
    """One compact line every ``every`` steps (default: 20 lines per run) instead of transformers'
    full log dict at every step: window means of the main curves, the learning rate and s/step."""

    KEYS = {"reward": "reward", "rewards/answer/mean": "answer", "rewards/format/mean": "format",
            "rewards/pd/mean": "pd", "rewards/stage1/mean": "task", "refine/think_tokens": "think",
            "loss": "loss", "learning_rate": "lr"}

    def __init__(self, label: str, every: int | None = None):
        self.label = label
        self.every = every
        self._rows: list[dict] = []
        self._t = None
        self._step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()
        self._step = state.global_step

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        if "loss" not in logs:
            if "train_runtime" in logs:
                print(f"[{self.label}] done: {state.global_step} steps in {logs['train_runtime']:.0f} s", flush=True)
            return
        self._rows.append(logs)
        every = self.every or max(1, (state.max_steps or 20) // 20)
        if state.global_step % every and state.global_step != state.max_steps:
            return
        parts = []
        for key, short in self.KEYS.items():
            vals = [r[key] for r in self._rows if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
            if vals:
                parts.append(f"{short} {np.mean(vals):.3g}")
        now = time.perf_counter()
        steps = state.global_step - self._step
        rate = (now - self._t) / steps if self._t is not None and steps > 0 else float("nan")
        print(f"[{self.label}] step {state.global_step}/{state.max_steps}: " + ", ".join(parts)
              + f" ({rate:.2f} s/step)", flush=True)
        self._rows, self._t, self._step = [], now, state.global_step


def quiet_console(trainer, label: str) -> None:
    """Replace transformers' per-step log printing with :class:`ConsoleSummaryCallback`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConsoleSummaryCallback(label))
