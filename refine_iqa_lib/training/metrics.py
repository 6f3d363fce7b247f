"""Run-folder metrics: one JSON line per training step, and readers for the plots.

:class:`MetricsJSONLCallback` appends every ``Trainer.log`` row (TRL's rewards and completion
statistics, the trainer's ``refine/*`` and ``adv/*`` metrics, loss, learning rate, grad norm) to
``<run_dir>/metrics.jsonl`` with the step, the epoch and the wall time since the run started
(continued across resumes). Each line is fsynced, so a killed run keeps every finished step; on
resume :func:`truncate_metrics` drops the rows after the checkpoint the run restarts from, so the
file never holds a step twice.

The same rows reach the trackers of ``launch.report_to`` (TensorBoard, wandb, trackio, ...):
every value is logged through TRL's ``Trainer.log`` (the ``refine/*`` metrics through TRL's
``log_metric`` hook, validation through
:meth:`~refine_iqa_lib.training.trainer.RefineGRPOTrainer.log_step_metric`), which hands one row to
every callback, this file's and the trackers' alike. :func:`missing_trackers` names the requested
trackers that are not installed; :func:`point_trackers_at_run` puts TensorBoard's event files in
``<run_dir>/tensorboard``.

Readers: :func:`read_metrics` (a DataFrame of the step rows), :func:`curve` (one named curve,
optionally smoothed), :func:`first_last_means` (mean over the first and last 10 % of the steps - the
"is it learning" check), and :data:`CURVES`, the names used by the notebooks' plots. Validation
while training (:mod:`refine_iqa_lib.training.validation`) writes rows of ``kind: "val"`` with
``val/srcc``, ``val/plcc`` and ``val/answer``: ``read_metrics(run, kind="val")``.
"""
from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
from transformers import TrainerCallback

from refine_iqa_lib.io import append_jsonl, read_jsonl, write_jsonl

__all__ = ["METRICS_FILE", "CURVES", "MetricsJSONLCallback", "read_metrics", "curve", "first_last_means",
           "first_last_windows", "truncate_metrics", "last_wall_time", "plot_curves", "ConsoleSummaryCallback",
           "quiet_console", "missing_trackers", "point_trackers_at_run"]

log = logging.getLogger(__name__)

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
    "val SRCC": "val/srcc",
    "val PLCC": "val/plcc",
    "val answer": "val/answer",
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


def first_last_means(df: pd.DataFrame, name: str, frac: float = 0.1) -> tuple[float, float]:
    """Mean of a curve over the first and the last ``frac`` of the logged steps (NaNs ignored).

    >>> df = pd.DataFrame({"step": range(1, 11), "reward": [0, 0, 1, 1, 1, 1, 1, 1, 2, 2]})
    >>> first_last_means(df, "reward", 0.2)
    (0.0, 2.0)
    """
    first, last = first_last_windows(df, name, frac)
    if first.empty:
        return float("nan"), float("nan")
    return float(first.mean()), float(last.mean())


def first_last_windows(df: pd.DataFrame, name: str, frac: float = 0.1) -> tuple[pd.Series, pd.Series]:
    """The logged values of a curve in its first and its last ``frac`` of steps (NaNs dropped; at
    least one step each): what :func:`first_last_means` averages, and what the claims table
    bootstraps over steps.

    >>> df = pd.DataFrame({"step": range(1, 11), "reward": [0, 0, 1, 1, 1, 1, 1, 1, 2, 3]})
    >>> [list(w) for w in first_last_windows(df, "reward", 0.2)]
    [[0, 0], [2, 3]]
    """
    s = curve(df, name).dropna()
    if s.empty:
        return s, s
    k = max(1, int(round(len(s) * frac)))
    return s.iloc[:k], s.iloc[-k:]


def truncate_metrics(run_dir: str | Path, step: int) -> int:
    """Drop step and validation rows after ``step`` (and summary rows) from the run's metrics file;
    returns the number of rows kept. Used when a run resumes from the checkpoint of ``step``."""
    path = Path(run_dir) / METRICS_FILE
    if not path.is_file():
        return 0
    rows = [r for r in read_jsonl(path) if r.get("kind") in ("step", "val") and int(r.get("step", 0)) <= step]
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
                log.info("[%s] done: %d steps in %.0f s", self.label, state.global_step, logs["train_runtime"])
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
        log.info("[%s] step %d/%d: %s (%.2f s/step)", self.label, state.global_step, state.max_steps,
                 ", ".join(parts), rate)
        self._rows, self._t, self._step = [], now, state.global_step


def quiet_console(trainer, label: str) -> None:
    """Replace transformers' per-step log printing with :class:`ConsoleSummaryCallback`."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(ConsoleSummaryCallback(label))


def missing_trackers(report_to) -> list[str]:
    """The trackers of ``report_to`` (``launch.report_to``) that are not installed here, by
    transformers' own list of available integrations (``none`` and ``all`` are never missing).

    >>> missing_trackers(["none"]), missing_trackers(["all"])
    ([], [])
    """
    from transformers.integrations import get_available_reporting_integrations

    wanted = [t for t in report_to if t not in ("none", "all")]
    if not wanted:
        return []
    available = set(get_available_reporting_integrations())
    return [t for t in wanted if t not in available]


def point_trackers_at_run(trainer, run_dir: str | Path, subdir: str = "tensorboard") -> Path | None:
    """Write TensorBoard's event files to ``<run_dir>/<subdir>`` (transformers' default is a dated
    folder under ``output_dir``, here the checkpoints folder) unless ``TENSORBOARD_LOGGING_DIR`` is
    set. Returns the folder, or None when the trainer has no TensorBoard callback."""
    import os

    from transformers.integrations import TensorBoardCallback

    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, TensorBoardCallback):
            if not os.environ.get("TENSORBOARD_LOGGING_DIR"):
                cb.logging_dir = str(Path(run_dir) / subdir)
            return Path(cb.logging_dir)
    return None
