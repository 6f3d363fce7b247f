"""The artifact map: each paper table, figure and equation -> notebook -> library function ->
results file. README, notebook ``00_overview`` and ``results/INDEX.md`` are generated from it.

A row whose library function cannot be imported yet says so (``status``), so the map never
claims more than the code does.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Artifact:
    artifact: str      # "Table 1", "Fig. 4", "Eq. 6"
    title: str
    notebook: str      # notebooks/<name>.ipynb
    function: str      # dotted path of the library function that computes it
    results: str       # file(s) it writes, relative to the repository ({profile} substituted)


ARTIFACTS: tuple[Artifact, ...] = (
    Artifact("Eq. 1", "answer reward", "02_rewards", "refine_iqa_lib.rewards.answer_reward", "-"),
    Artifact("Eq. 2", "mode reward (weighted GT-digit probabilities)", "02_rewards", "refine_iqa_lib.rewards.mode_reward", "-"),
    Artifact("Eq. 3-4", "probability-difference reward", "02_rewards", "refine_iqa_lib.rewards.pd_reward", "-"),
    Artifact("Eq. 5", "final reward", "02_rewards", "refine_iqa_lib.rewards.final_reward", "-"),
    Artifact("Eq. 6", "modified group advantage", "02_rewards", "refine_iqa_lib.advantages.refine_advantages", "-"),
    Artifact("Eq. 7", "token-level GRPO objective (no KL)", "04_stage2_grpo", "refine_iqa_lib.training.trainer.RefineGRPOTrainer",
             "results/work/{profile}/runs/stage2/metrics.jsonl"),
    Artifact("Eq. 8", "probability-based expected score", "06_eval_scoring", "refine_iqa_lib.scoring.expected_score", "-"),
    Artifact("Fig. 2", "Refine-Perception construction pipeline (real stage counts)", "09_figures",
             "refine_iqa_lib.evaluation.figures.plot_pipeline_flow", "figures/fig2_pipeline_{profile}.png"),
    Artifact("Distortion grid", "12 distortions x 5 severities inside a box", "01_dataset_construction",
             "refine_iqa_lib.data.viz.plot_distortion_grid", "figures/distortion_grid.png"),
    Artifact("Dataset statistics", "counts per distortion x severity, task, split", "01_dataset_construction",
             "refine_iqa_lib.data.build.build_perception_dataset", "results/{profile}/perception_stats_*.csv"),
    Artifact("Stage-1", "perception GRPO run", "03_stage1_grpo", "refine_iqa_lib.train.run_stage",
             "results/work/{profile}/runs/stage1/metrics.jsonl"),
    Artifact("Stage-2", "scoring GRPO run with PD reward", "04_stage2_grpo", "refine_iqa_lib.train.run_stage",
             "results/work/{profile}/runs/stage2/metrics.jsonl"),
    Artifact("Table 1", "perception: description accuracy", "05_eval_perception",
             "refine_iqa_lib.evaluation.perception.evaluate_perception", "results/tables/table1_{profile}.csv"),
    Artifact("Table 2", "perception: grounding IoU", "05_eval_perception",
             "refine_iqa_lib.evaluation.perception.evaluate_perception", "results/tables/table2_{profile}.csv"),
    Artifact("Table 3", "scoring: SRCC / PLCC on six IQA sets", "06_eval_scoring",
             "refine_iqa_lib.evaluation.scoring_eval.evaluate_scoring", "results/tables/table3_{profile}.csv"),
    Artifact("Table 4", "Q-Bench interpreting accuracy", "07_eval_qbench",
             "refine_iqa_lib.evaluation.qbench.evaluate_qbench", "results/tables/table4_{profile}.csv"),
    Artifact("Table 5", "ablation: with / without Stage-1", "08_ablations",
             "refine_iqa_lib.evaluation.ablations.run_ablations", "results/tables/table5_{profile}.csv"),
    Artifact("Table 6", "ablation: PD, PM, numeric vs probability inference", "08_ablations",
             "refine_iqa_lib.evaluation.ablations.run_ablations", "results/tables/table6_{profile}.csv"),
    Artifact("Fig. 4", "answer reward, think vs no-think, during Stage-2", "09_figures",
             "refine_iqa_lib.evaluation.figures.plot_answer_reward_modes", "figures/fig4_answer_reward_{profile}.png"),
    Artifact("Think collapse", "think length over Stage-2 steps, with vs without PD", "09_figures",
             "refine_iqa_lib.evaluation.figures.plot_think_collapse", "figures/think_collapse_{profile}.png"),
)


def is_available(dotted: str) -> bool:
    """Whether ``package.module.attr`` imports (i.e. the artifact is built by the code today)."""
    module, _, attr = dotted.rpartition(".")
    try:
        return hasattr(importlib.import_module(module), attr)
    except Exception:
        return False


def artifact_table(profile: str = "tiny") -> pd.DataFrame:
    """The artifact map as a table, with a ``status`` column computed from the code."""
    rows = []
    for a in ARTIFACTS:
        rows.append({
            "artifact": a.artifact, "what": a.title, "notebook": f"notebooks/{a.notebook}.ipynb",
            "function": a.function, "results": a.results.format(profile=profile),
            "status": "built" if is_available(a.function) else "not built yet",
        })
    return pd.DataFrame(rows)
