"""The paper's figures (and the project's extra ones), drawn from precomputed results only.

=====================  ==========================================  =====================================
figure                 reads                                        function
=====================  ==========================================  =====================================
Fig. 2 (pipeline)      ``results/<profile>/perception_stage_        :func:`plot_pipeline_flow`
                       counts.json`` (the build's real counts)
Fig. 4                 ``<work_dir>/runs/stage2/metrics.jsonl``     :func:`plot_answer_reward_modes`
                       (``refine/answer_think``,
                       ``refine/answer_no_think``)
think collapse         ``metrics.jsonl`` of Stage-2 and of the      :func:`plot_think_collapse`
                       w/o-PD ablation (``refine/think_tokens``)
dataset statistics     ``results/<profile>/perception_stats_        :func:`plot_dataset_stats`
                       {distortions,tasks}.csv``
distortion grid        the embedded photos (12 x 5 grid)            ``data.viz.plot_distortion_grid``
=====================  ==========================================  =====================================

Training curves are noisy (a few prompts per step), so they are shown per step (thin, faint) and
as means over ``n_windows`` consecutive windows of equal numbers of steps (10 windows = the 10 %
windows used to judge the runs); NaN entries (e.g. steps where the no-think answers were not
sampled) are ignored within a window.

Determinism: every figure is drawn inside :func:`figure_style` (matplotlib defaults + the fixed
:data:`STYLE`, bundled DejaVu fonts) and saved by :func:`save_figure` with the PDF creation date
and the PNG software tag removed, so rendering the same inputs twice gives identical bytes.
:func:`make_figures` writes ``figures/<name>_<profile>.{png,pdf}`` and, for an input that does
not exist yet, returns the reason instead of a figure.
"""
from __future__ import annotations

import contextlib
import logging
import io
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd

from refine_iqa_lib.config import Config
from refine_iqa_lib.io import read_json, repo_relative, write_bytes

#: Fixed rcParams applied on top of matplotlib's defaults.
log = logging.getLogger(__name__)

STYLE = {
    "figure.dpi": 100, "savefig.dpi": 150, "savefig.bbox": "tight", "savefig.pad_inches": 0.05,
    "font.family": "DejaVu Sans", "font.size": 9, "axes.titlesize": 10, "axes.labelsize": 9,
    "legend.fontsize": 8, "xtick.labelsize": 8, "ytick.labelsize": 8, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.6,
    "pdf.fonttype": 42, "svg.hashsalt": "refine-iqa", "image.interpolation": "nearest",
}
#: Colours (colour-blind safe, Okabe-Ito) for the think / no-think and with / without PD curves.
COLORS = {"think": "#0072B2", "no_think": "#E69F00", "with_pd": "#0072B2", "without_pd": "#D55E00",
          "images": "#0072B2", "marked images": "#009E73", "samples": "#CC79A7"}
FORMATS = ("png", "pdf")
_METADATA = {"png": {"Software": None}, "pdf": {"CreationDate": None}}


@contextlib.contextmanager
def figure_style() -> Iterator[None]:
    """matplotlib defaults plus :data:`STYLE`, restored afterwards."""
    import matplotlib as mpl

    with mpl.rc_context():
        mpl.rcdefaults()
        mpl.rcParams.update(STYLE)
        yield


def figure_bytes(fig, fmt: str) -> bytes:
    """The figure rendered as ``png`` or ``pdf`` bytes, without timestamps or software tags."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown figure format {fmt!r}; expected one of {FORMATS}")
    buf = io.BytesIO()
    with figure_style():
        fig.savefig(buf, format=fmt, metadata=_METADATA[fmt])
    return buf.getvalue()


def save_figure(fig, name: str, out_dir: str | Path, formats: Sequence[str] = FORMATS) -> dict[str, Path]:
    """Write ``<out_dir>/<name>.png`` and ``.pdf`` atomically; returns ``{format: path}``."""
    out_dir = Path(out_dir)
    return {fmt: write_bytes(out_dir / f"{name}.{fmt}", figure_bytes(fig, fmt)) for fmt in formats}


# --------------------------------------------------------------------------------------------
# training curves


def window_means(steps: Sequence[float], values: Sequence[float], n_windows: int = 10) -> pd.DataFrame:
    """Means of ``values`` over ``n_windows`` consecutive windows of (nearly) equal numbers of steps.

    Returns columns ``step`` (mean step of the window's finite values), ``value``, ``n`` (finite
    values used); windows without a finite value are dropped.

    >>> window_means(range(1, 11), [0, 0, 1, 1, 1, 1, 1, 1, 2, np.nan], n_windows=5).values.tolist()
    [[1.5, 0.0, 2.0], [3.5, 1.0, 2.0], [5.5, 1.0, 2.0], [7.5, 1.0, 2.0], [9.0, 2.0, 1.0]]
    """
    s = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    if s.shape != v.shape:
        raise ValueError(f"{s.size} steps for {v.size} values; expected one value per step")
    rows = []
    for chunk in np.array_split(np.arange(s.size), max(1, min(int(n_windows), s.size))):
        ok = chunk[np.isfinite(v[chunk])]
        if ok.size:
            rows.append({"step": float(s[ok].mean()), "value": float(v[ok].mean()), "n": int(ok.size)})
    return pd.DataFrame(rows, columns=["step", "value", "n"])


def _as_metrics(metrics) -> pd.DataFrame:
    """A metrics DataFrame from a DataFrame, a list of rows, or a run folder / metrics.jsonl path."""
    if isinstance(metrics, pd.DataFrame):
        df = metrics
    elif isinstance(metrics, (str, Path)):
        from refine_iqa_lib.training.metrics import read_metrics

        path = Path(metrics)
        df = read_metrics(path.parent if path.suffix == ".jsonl" else path)
    else:
        df = pd.DataFrame(list(metrics))
    if "kind" in df.columns:
        df = df[df["kind"].fillna("step") == "step"]
    if "step" not in df.columns:
        raise ValueError(f"metrics have no 'step' column; found {list(df.columns)}")
    return df.sort_values("step").reset_index(drop=True)


def _column(df: pd.DataFrame, col: str) -> np.ndarray:
    if col not in df.columns:
        return np.full(len(df), np.nan)
    return pd.to_numeric(df[col], errors="coerce").to_numpy(dtype=float)


def _curve(ax, steps, values, color: str, label: str, n_windows: int, raw: str = "line") -> None:
    ok = np.isfinite(values)
    if raw == "line":
        ax.plot(steps[ok], values[ok], color=color, alpha=0.22, linewidth=0.8)
    else:
        ax.scatter(steps[ok], values[ok], color=color, alpha=0.3, s=8, linewidths=0)
    w = window_means(steps, values, n_windows)
    ax.plot(w["step"], w["value"], color=color, marker="o", markersize=3.5, label=label)


def plot_answer_reward_modes(metrics, n_windows: int = 10, title: str | None = None):
    """Fig. 4: the group-averaged answer reward (Eq. 1) of the think rollouts and of the no-think
    answers over the Stage-2 steps (``refine/answer_think`` / ``refine/answer_no_think``)."""
    import matplotlib.pyplot as plt

    df = _as_metrics(metrics)
    steps = df["step"].to_numpy(dtype=float)
    think, no_think = _column(df, "refine/answer_think"), _column(df, "refine/answer_no_think")
    if not np.isfinite(think).any():
        raise ValueError("metrics have no 'refine/answer_think' values; expected a Stage-2 (think) run")
    with figure_style():
        fig, ax = plt.subplots(figsize=(5.0, 3.0))
        _curve(ax, steps, think, COLORS["think"], f"think (mean of {n_windows} windows)", n_windows)
        if np.isfinite(no_think).any():
            sparse = np.isfinite(no_think).mean() < 0.5
            _curve(ax, steps, no_think, COLORS["no_think"], f"no-think (mean of {n_windows} windows)", n_windows,
                   raw="scatter" if sparse else "line")
        ax.set_xlabel("Stage-2 training step")
        ax.set_ylabel("group-averaged answer reward")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(title or "Answer reward, think vs no-think (Fig. 4)")
        ax.legend(loc="lower right", frameon=False)
        fig.tight_layout()
    return fig


def plot_think_collapse(runs: Mapping[str, object], n_windows: int = 10, column: str = "refine/think_tokens",
                        title: str | None = None):
    """Think length (tokens) over Stage-2 steps for each run, e.g. ``{"with PD (Stage-2)": ...,
    "w/o PD": ...}``: without the PD reward the think collapses (the paper's finding)."""
    import matplotlib.pyplot as plt

    if not runs:
        raise ValueError("plot_think_collapse: no runs given")
    palette = [COLORS["with_pd"], COLORS["without_pd"], "#009E73", "#CC79A7"]
    with figure_style():
        fig, ax = plt.subplots(figsize=(5.0, 3.0))
        for i, (label, metrics) in enumerate(runs.items()):
            df = _as_metrics(metrics)
            values = _column(df, column)
            if not np.isfinite(values).any():
                raise ValueError(f"run {label!r}: no {column!r} values; expected a think-mode Stage-2 run")
            _curve(ax, df["step"].to_numpy(dtype=float), values, palette[i % len(palette)], label, n_windows)
        ax.set_xlabel("Stage-2 training step")
        ax.set_ylabel("think length (tokens)")
        ax.set_ylim(bottom=0)
        ax.set_title(title or "Think length with and without the PD reward")
        ax.legend(loc="best", frameon=False)
        fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------
# dataset figures


def _stage_doc(doc) -> dict:
    if isinstance(doc, (str, Path)):
        doc = read_json(doc)
    if not isinstance(doc, Mapping) or not isinstance(doc.get("stages"), list):
        raise ValueError("stage counts: expected {'stages': [{stage, unit, description, count}, ...]} as the "
                         "dataset build writes (results/<profile>/perception_stage_counts.json)")
    return dict(doc)


def plot_pipeline_flow(stage_counts, title: str | None = None):
    """Fig. 2 from the build's real counts: one bar per pipeline stage (top to bottom), its length
    the count relative to the largest count of the same unit (images, marked images, samples),
    labelled with the count and what the stage does; skipped items are listed underneath."""
    import matplotlib.pyplot as plt

    doc = _stage_doc(stage_counts)
    stages = [s for s in doc["stages"] if s.get("count") is not None]
    if not stages:
        raise ValueError("stage counts: every stage count is empty")
    units = list(dict.fromkeys(s["unit"] for s in stages))
    top = {u: max(s["count"] for s in stages if s["unit"] == u) or 1 for u in units}
    skipped = doc.get("skipped") or {}
    with figure_style():
        fig, ax = plt.subplots(figsize=(6.4, 0.42 * len(stages) + 1.2 + 0.14 * len(skipped)))
        for i, s in enumerate(stages):
            frac = s["count"] / top[s["unit"]]
            color = COLORS.get(s["unit"], "#555555")
            ax.barh(i, frac, color=color, height=0.68, alpha=0.85)
            ax.text(0.01, i, f"{s['count']:,}", va="center", ha="left", color="white" if frac > 0.12 else "black",
                    fontsize=8, fontweight="bold")
            ax.text(1.02, i, s.get("description", s["stage"]), va="center", ha="left", fontsize=8)
        ax.set_yticks(range(len(stages)), [s["stage"] for s in stages])
        ax.invert_yaxis()
        ax.set_xlim(0, 1)
        ax.set_xticks([])
        ax.grid(False)
        ax.spines["bottom"].set_visible(False)
        handles = [plt.Rectangle((0, 0), 1, 1, color=COLORS.get(u, "#555555")) for u in units]
        ax.legend(handles, [f"{u} (bar = share of {top[u]:,})" for u in units], loc="upper center",
                  bbox_to_anchor=(0.5, -0.02), ncol=len(units), frameon=False, fontsize=7)
        if skipped:
            text = "skipped: " + "; ".join(f"{k} {v}" for k, v in sorted(skipped.items()))
            fig.text(0.01, 0.005, text, fontsize=7, va="bottom", ha="left", wrap=True)
        profile = doc.get("profile")
        ax.set_title(title or f"Refine-Perception construction (Fig. 2), real counts"
                     + (f" - {profile}" if profile else ""))
        fig.tight_layout(rect=(0, 0.04 if skipped else 0, 1, 1))
    return fig


def plot_dataset_stats(distortions: pd.DataFrame | str | Path, tasks: pd.DataFrame | str | Path | None = None,
                       title: str | None = None):
    """Dataset statistics: images per distortion x severity (all splits; test count in brackets)
    and, if ``tasks`` is given, Stage-1 samples per task and form for each split."""
    import matplotlib.pyplot as plt

    d = pd.read_csv(distortions) if isinstance(distortions, (str, Path)) else distortions
    need = ("split", "category", "severity", "images")
    missing = [c for c in need if c not in d.columns]
    if missing:
        raise ValueError(f"distortion statistics: missing column(s) {missing}; found {list(d.columns)}")
    t = pd.read_csv(tasks) if isinstance(tasks, (str, Path)) else tasks
    cats = list(dict.fromkeys(d["category"]))
    sevs = sorted(d["severity"].unique())
    total = d.pivot_table(index="category", columns="severity", values="images", aggfunc="sum").reindex(cats)
    test = d[d["split"] == "test"].pivot_table(index="category", columns="severity", values="images",
                                                aggfunc="sum").reindex(index=cats, columns=sevs).fillna(0)
    with figure_style():
        ncols = 2 if t is not None and not t.empty else 1
        fig, axes = plt.subplots(1, ncols, figsize=(5.2 * ncols, 4.2), squeeze=False)
        ax = axes[0, 0]
        im = ax.imshow(total.to_numpy(dtype=float), cmap="Blues", aspect="auto")
        for (r, c), v in np.ndenumerate(total.to_numpy()):
            ax.text(c, r, f"{int(v)} ({int(test.iat[r, c])})", ha="center", va="center", fontsize=6.5,
                    color="white" if v > 0.6 * max(1, np.nanmax(total.to_numpy())) else "black")
        ax.set_xticks(range(len(sevs)), [str(s) for s in sevs])
        ax.set_yticks(range(len(cats)), [c.replace("_", " ") for c in cats])
        ax.set_xlabel("severity (1 slight ... 5 very severe)")
        ax.set_title("marked images per distortion x severity, all splits (test)")
        ax.grid(False)
        fig.colorbar(im, ax=ax, fraction=0.04, pad=0.02)
        if ncols == 2:
            ax = axes[0, 1]
            piv = t.pivot_table(index=["split", "task"], columns="form", values="samples", aggfunc="sum").fillna(0)
            piv.plot.barh(ax=ax, stacked=True, color=["#56B4E9", "#E69F00"][: piv.shape[1]], width=0.7)
            ax.set_xlabel("Stage-1 samples")
            ax.set_ylabel("")
            ax.set_title("samples per split / task, by form")
            ax.legend(title="form", frameon=False)
        if title:
            fig.suptitle(title)
        fig.tight_layout()
    return fig


#: The distortion grid's photo (embedded), its longest side and the distorted box (fractions).
GRID_PHOTO = ("chelsea", 224, (0.3, 0.15, 0.7, 0.85))


def grid_photo() -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """The photo and box of the 12 x 5 distortion grid (:data:`GRID_PHOTO`)."""
    from PIL import Image

    from refine_iqa_lib.standin.world import load_photo

    name, side, frac = GRID_PHOTO
    img = load_photo(name)
    h, w = img.shape[:2]
    scale = side / max(h, w)
    size = (round(w * scale), round(h * scale))
    img = np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BOX), dtype=np.uint8)
    box = (round(frac[0] * size[0]), round(frac[1] * size[1]), round(frac[2] * size[0]), round(frac[3] * size[1]))
    return img, box


# --------------------------------------------------------------------------------------------
# everything from a config


def figure_paths(cfg: Config, name: str) -> dict[str, Path]:
    """``figures/<name>_<profile>.{png,pdf}``."""
    return {fmt: cfg.figures_dir / f"{name}_{cfg.profile}.{fmt}" for fmt in FORMATS}


def _run_metrics(run_dir: Path) -> pd.DataFrame | str:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return f"{path} not found (run not trained yet)"
    df = _as_metrics(path)
    return df if not df.empty else f"{path} has no step rows"


def make_figures(cfg: Config, which: Sequence[str] | None = None, n_windows: int = 10
                 ) -> dict[str, dict[str, Path] | str]:
    """Draw and save every figure whose inputs exist; ``{name: {format: path}}``, or ``{name: reason}``
    for a figure whose inputs are missing. ``which`` limits the names (``fig2_pipeline``,
    ``fig4_answer_reward``, ``think_collapse``, ``dataset_stats``, ``distortion_grid``)."""
    import matplotlib.pyplot as plt

    from refine_iqa_lib.runs import model_paths

    names = list(which or ("fig2_pipeline", "dataset_stats", "distortion_grid", "fig4_answer_reward",
                           "think_collapse"))
    results = cfg.results_dir / cfg.profile
    runs = model_paths(cfg)
    out: dict[str, dict[str, Path] | str] = {}
    for name in names:
        fig = None
        if name == "fig2_pipeline":
            path = results / "perception_stage_counts.json"
            fig = plot_pipeline_flow(path) if path.is_file() else f"{path} not found (build the perception dataset)"
        elif name == "dataset_stats":
            path, tpath = results / "perception_stats_distortions.csv", results / "perception_stats_tasks.csv"
            fig = (plot_dataset_stats(path, tpath if tpath.is_file() else None) if path.is_file()
                   else f"{path} not found (build the perception dataset)")
        elif name == "distortion_grid":
            from refine_iqa_lib.data.viz import plot_distortion_grid

            image, box = grid_photo()
            with figure_style():
                fig = plot_distortion_grid(image, box, seed=cfg.perception.seed)
        elif name == "fig4_answer_reward":
            m = _run_metrics(runs["s2"])
            fig = m if isinstance(m, str) else plot_answer_reward_modes(m, n_windows)
        elif name == "think_collapse":
            with_pd, without = _run_metrics(runs["s2"]), _run_metrics(runs["s2_no_pd"])
            if isinstance(with_pd, str) or isinstance(without, str):
                fig = "; ".join(m for m in (with_pd, without) if isinstance(m, str))
            else:
                fig = plot_think_collapse({"with PD (Stage-2)": with_pd, "w/o PD (ablation)": without}, n_windows)
        else:
            raise ValueError(f"unknown figure {name!r}")
        if isinstance(fig, str):
            out[name] = fig
            continue
        paths = figure_paths(cfg, name)
        for fmt, p in paths.items():
            write_bytes(p, figure_bytes(fig, fmt))
        out[name] = paths
        plt.close(fig)
    return out


def show_figure(cfg: Config, name: str, width: int = 640) -> dict[str, Path] | str:
    """Draw one figure (:func:`make_figures`) and show it in the notebook, or print why it cannot
    be drawn yet; returns its files or the reason (notebook 09 calls this once per artifact)."""
    from IPython.display import Image, display

    made = make_figures(cfg, [name])[name]
    if isinstance(made, str):
        log.info("%s: not drawn - %s", name, made)
    else:
        display(Image(filename=str(made["png"]), width=width))
        log.info("%s", "  ".join(repo_relative(p) for p in made.values()))
    return made


def figure_report(made: Mapping[str, Mapping[str, Path] | str]) -> pd.DataFrame:
    """``make_figures``' result as a table: figure, status (written / missing input), files or reason."""
    rows = []
    for name, v in made.items():
        if isinstance(v, str):
            rows.append({"figure": name, "status": "not drawn", "detail": v})
        else:
            rows.append({"figure": name, "status": "written", "detail": ", ".join(repo_relative(p) for p in v.values())})
    return pd.DataFrame(rows)

