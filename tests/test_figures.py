"""Figures: byte-identical renders, window means, and make_figures reading precomputed results."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from refine_iqa_lib.config import load_config  # noqa: E402
from refine_iqa_lib.evaluation import figures as F  # noqa: E402
from refine_iqa_lib.io import write_jsonl  # noqa: E402


def _metrics(n=60, collapse=False, seed=0):
    rng = np.random.default_rng(seed)
    steps = np.arange(1, n + 1)
    think_len = 12 * np.exp(-steps / 15) if collapse else 12 - 3 * steps / n
    return pd.DataFrame({
        "step": steps, "kind": "step",
        "refine/answer_think": np.clip(0.3 + 0.2 * steps / n + rng.normal(0, 0.1, n), 0, 1),
        "refine/answer_no_think": np.where(steps % 4 == 0, np.clip(0.2 + 0.2 * steps / n, 0, 1), np.nan),
        "refine/think_tokens": think_len + rng.normal(0, 0.3, n),
    })


STAGES = {"profile": "smoke", "skipped": {"object too small": 3}, "stages": [
    {"stage": "pool", "unit": "images", "description": "source pool", "count": None},
    {"stage": "drawn", "unit": "images", "description": "drawn", "count": 12},
    {"stage": "objects", "unit": "images", "description": ">= 2 objects", "count": 10},
    {"stage": "marked", "unit": "marked images", "description": "one per object", "count": 30},
    {"stage": "test", "unit": "marked images", "description": "test split", "count": 6},
    {"stage": "samples_train", "unit": "samples", "description": "train samples", "count": 70}]}


def _stats():
    rows = [{"split": s, "category": c, "group": "easy", "severity": k, "images": (i + k) % 3 + (s == "train"),
             "combos": 0} for s in ("train", "test") for i, c in enumerate(("blur", "noise", "pixelate"))
            for k in range(1, 6)]
    tasks = pd.DataFrame([{"split": s, "task": t, "form": f, "mode": "no_think", "samples": 3 + (f == "nr")}
                          for s in ("train", "test") for t in ("type_severity", "object", "grounding")
                          for f in ("fr", "nr")])
    return pd.DataFrame(rows), tasks


FIGURES = {
    "fig4": lambda: F.plot_answer_reward_modes(_metrics()),
    "think_collapse": lambda: F.plot_think_collapse({"with PD": _metrics(), "w/o PD": _metrics(collapse=True)}),
    "fig2": lambda: F.plot_pipeline_flow(STAGES),
    "stats": lambda: F.plot_dataset_stats(*_stats()),
}


@pytest.mark.parametrize("name", FIGURES)
@pytest.mark.parametrize("fmt", ["png", "pdf"])
def test_two_renders_give_identical_bytes(name, fmt):
    a, b = FIGURES[name](), FIGURES[name]()
    try:
        first, second = F.figure_bytes(a, fmt), F.figure_bytes(b, fmt)
        assert first == second and len(first) > 1000
        assert first == F.figure_bytes(a, fmt)  # re-saving the same figure too
        if fmt == "pdf":
            assert b"CreationDate" not in first
        else:
            assert b"Software" not in first and first.startswith(b"\x89PNG")
    finally:
        plt.close(a)
        plt.close(b)


def test_style_does_not_leak_and_is_fixed():
    before = dict(matplotlib.rcParams)
    with matplotlib.rc_context({"font.size": 30, "axes.grid": False}):
        with F.figure_style():
            assert matplotlib.rcParams["font.size"] == F.STYLE["font.size"] and matplotlib.rcParams["axes.grid"]
        assert matplotlib.rcParams["font.size"] == 30
    assert matplotlib.rcParams["font.size"] == before["font.size"]


def test_window_means():
    w = F.window_means(np.arange(1, 101), np.r_[np.zeros(50), np.ones(50)], n_windows=10)
    assert len(w) == 10 and w["value"].tolist() == [0.0] * 5 + [1.0] * 5 and (w["n"] == 10).all()
    sparse = F.window_means(range(1, 11), [np.nan] * 5 + [2.0] * 5, n_windows=5)
    assert sparse["value"].tolist() == [2.0, 2.0, 2.0] and sparse["n"].tolist() == [1, 2, 2]
    with pytest.raises(ValueError, match="one value per step"):
        F.window_means([1, 2], [1.0])


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="answer_think"):
        F.plot_answer_reward_modes(pd.DataFrame({"step": [1, 2], "loss": [0.1, 0.2]}))
    with pytest.raises(ValueError, match="think_tokens"):
        F.plot_think_collapse({"run": pd.DataFrame({"step": [1], "loss": [0.1]})})
    with pytest.raises(ValueError, match="stages"):
        F.plot_pipeline_flow({"counts": {}})
    with pytest.raises(ValueError, match="missing column"):
        F.plot_dataset_stats(pd.DataFrame({"split": ["train"]}))
    plt.close("all")


def test_make_figures_reads_results_and_reports_what_is_missing(tmp_path):
    from refine_iqa_lib.io import write_json, write_text

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "paths.results_dir": str(tmp_path / "res"),
                                "paths.figures_dir": str(tmp_path / "fig")})
    made = F.make_figures(cfg, which=["fig2_pipeline", "fig4_answer_reward", "think_collapse", "dataset_stats"])
    assert all(isinstance(v, str) and "not found" in v for v in made.values())  # nothing computed yet

    res = cfg.results_dir / "smoke"
    write_json(res / "perception_stage_counts.json", STAGES)
    stats, tasks = _stats()
    write_text(res / "perception_stats_distortions.csv", stats.to_csv(index=False))
    write_text(res / "perception_stats_tasks.csv", tasks.to_csv(index=False))
    write_jsonl(cfg.work_dir / "runs" / "stage2" / "metrics.jsonl", _metrics().to_dict("records"))
    made = F.make_figures(cfg, which=["fig2_pipeline", "fig4_answer_reward", "think_collapse", "dataset_stats"])
    assert "s2_no_pd" in made["think_collapse"]  # the w/o-PD run is still missing
    for name in ("fig2_pipeline", "fig4_answer_reward", "dataset_stats"):
        assert made[name] == F.figure_paths(cfg, name) and all(p.is_file() for p in made[name].values())
    first = made["fig4_answer_reward"]["png"].read_bytes()
    write_jsonl(cfg.work_dir / "runs" / "ablations" / "s2_no_pd" / "metrics.jsonl",
                _metrics(collapse=True).to_dict("records"))
    again = F.make_figures(cfg, which=["fig4_answer_reward", "think_collapse"])
    assert again["fig4_answer_reward"]["png"].read_bytes() == first
    assert again["think_collapse"]["pdf"].is_file()
    report = F.figure_report({**made, **again})
    assert set(report["status"]) == {"written"}
    with pytest.raises(ValueError, match="unknown figure"):
        F.make_figures(cfg, which=["fig9"])


def test_distortion_grid_reuses_the_dataset_plot(tmp_path):
    cfg = load_config("smoke", {"paths.figures_dir": str(tmp_path)})
    made = F.make_figures(cfg, which=["distortion_grid"])
    assert made["distortion_grid"]["png"].is_file()
    image, box = F.grid_photo()
    assert max(image.shape[:2]) == F.GRID_PHOTO[1] and box[2] > box[0] and box[3] > box[1]
