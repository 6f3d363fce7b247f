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
    Artifact("Eq. 1", "answer reward", "02_rewards", "refine_iqa_lib.method.rewards.answer_reward", "-"),
    Artifact("Eq. 2", "mode reward (weighted GT-digit probabilities)", "02_rewards", "refine_iqa_lib.method.rewards.mode_reward", "-"),
    Artifact("Eq. 3-4", "probability-difference reward", "02_rewards", "refine_iqa_lib.method.rewards.pd_reward", "-"),
    Artifact("Eq. 5", "final reward", "02_rewards", "refine_iqa_lib.method.rewards.final_reward", "-"),
    Artifact("Eq. 6", "modified group advantage", "02_rewards", "refine_iqa_lib.method.advantages.refine_advantages", "-"),
    Artifact("Eq. 7", "token-level GRPO objective (no KL)", "04_stage2_grpo", "refine_iqa_lib.training.trainer.RefineGRPOTrainer",
             "results/work/{profile}/runs/stage2/metrics.jsonl"),
    Artifact("Eq. 8", "probability-based expected score", "06_eval_scoring", "refine_iqa_lib.method.scoring.expected_score", "-"),
    Artifact("Fig. 2", "Refine-Perception construction pipeline (real stage counts)", "09_figures",
             "refine_iqa_lib.evaluation.figures.plot_pipeline_flow", "figures/fig2_pipeline_{profile}.png"),
    Artifact("Distortion grid", "12 distortions x 5 severities inside a box", "01_dataset_construction",
             "refine_iqa_lib.data.viz.plot_distortion_grid", "figures/distortion_grid.png"),
    Artifact("Dataset statistics", "counts per distortion x severity, task, split", "01_dataset_construction",
             "refine_iqa_lib.data.build.build_perception_dataset", "results/{profile}/perception_stats_*.csv"),
    Artifact("Stage-1", "perception GRPO run", "03_stage1_grpo", "refine_iqa_lib.training.run.run_stage",
             "results/work/{profile}/runs/stage1/metrics.jsonl"),
    Artifact("Stage-2", "scoring GRPO run with PD reward", "04_stage2_grpo", "refine_iqa_lib.training.run.run_stage",
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
    Artifact("Claims", "the paper's claims: paired 95 % interval, verdict", "09_figures",
             "refine_iqa_lib.evaluation.claims.build_claims", "results/claims_{profile}.csv"),
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


#: The column each table's INDEX line quotes (ours beside the paper's, for every row we produce).
HEADLINE_COLUMNS = {1: "Overall", 2: "Overall", 3: "KONIQ SRCC", 4: "Overall", 5: "KonIQ", 6: "KonIQ"}


def table_headlines(table: pd.DataFrame, column: str) -> list[dict]:
    """Rows of a written table (``table<n>_<profile>.csv``) that have both a paper and an ours value
    in ``column``: ``[{"row", "paper", "ours", "ci_low", "ci_high", "note"}]``. The table may be the
    long CSV :func:`refine_iqa_lib.evaluation.tables.write_table` writes (``column``, ``value``,
    ``ci_low``, ``ci_high``) or the paper-layout frame :func:`~refine_iqa_lib.evaluation.tables.build_table`
    returns (no intervals)."""
    ci = None
    if {"column", "value"} <= set(table.columns):
        table = table[table["column"] == column].rename(columns={"value": column}).reset_index(drop=True)
        ci = table[["ci_low", "ci_high"]] if {"ci_low", "ci_high"} <= set(table.columns) else None
    keys = [c for c in table.columns[: list(table.columns).index("source")] if c != "section"]
    label = table[keys].apply(lambda r: " / ".join(_key_text(k, v) for k, v in r.items()), axis=1)
    out = []
    for lab in dict.fromkeys(label):
        rows = table[label == lab]
        paper = rows[rows["source"] == "paper"]
        ours = rows[rows["source"] != "paper"]
        if paper.empty or ours.empty or column not in table.columns:
            continue
        lo, hi = (ci.loc[ours.index[0], "ci_low"], ci.loc[ours.index[0], "ci_high"]) if ci is not None else (None, None)
        out.append({"row": lab, "paper": paper[column].iloc[0], "ours": ours[column].iloc[0], "ci_low": lo, "ci_high": hi,
                    "note": str(ours["note"].iloc[0]) if "note" in ours and pd.notna(ours["note"].iloc[0]) else ""})
    return out


def _key_text(column: str, value) -> str:
    """A row-key cell as INDEX text: switch columns (Table 6's PD / PM / Num. / Prob.) read
    ``PD ✓`` or ``PD ✗``, other columns their value.

    >>> _key_text("PD", False), _key_text("PM", "True"), _key_text("row", "w/o Stage-1")
    ('PD ✗', 'PM ✓', 'w/o Stage-1')
    """
    text = str(value)
    if text in ("True", "False"):
        return f"{column} {'✓' if text == 'True' else '✗'}"
    return text


def _fmt(v, low=None, high=None) -> str:
    """A number as INDEX shows it, with its interval when there is one.

    >>> _fmt(31.0), _fmt(0.4123, 0.35, 0.47), _fmt(float("nan"))
    ('31.00', '0.412 [0.350, 0.470]', '—')
    """
    from refine_iqa_lib.evaluation.statistics import format_interval

    if v is None or (isinstance(v, float) and pd.isna(v)):
        return "—"
    if isinstance(v, (float, int)) and not isinstance(v, bool):
        return format_interval(v, low, high, 2 if abs(v) > 1.5 else 3)  # percentages vs correlations / IoU
    return str(v)


def write_index(cfg, repo_root=None) -> "Path":
    """Generate ``results/INDEX.md``: each artifact -> notebook -> files, with our number beside the
    paper's and the profile that produced it. Only files that exist are listed. The ``smoke``
    profile (the test suite's) writes ``results/INDEX_smoke.md`` instead (git-ignored), so that it
    never replaces the index of a real run."""
    from pathlib import Path

    from refine_iqa_lib.io import write_text

    root = Path(repo_root) if repo_root else cfg.resolve(".")
    lines = [f"# Results index (profile `{cfg.profile}`)", "",
             "Generated by `python -m refine_iqa_lib.reproduce` from the files below; numbers are read from",
             "`results/tables/`. Ours come from the profile named above; at the `tiny` and `smoke` scales they",
             "come from the stand-in model and synthetic data and are not comparable to the paper's.",
             "Our numbers carry 95 % bootstrap intervals over test items, `value [low, high]`.", "",
             f"Claims of the paper, each with its interval and verdict: [{claims_md_name(cfg.profile)}]"
             f"({claims_md_name(cfg.profile)}).", ""]
    for a in ARTIFACTS:
        pattern = a.results.format(profile=cfg.profile)
        files = sorted(str(p.relative_to(root)) for p in root.glob(pattern)) if pattern != "-" else []
        lines.append(f"## {a.artifact}: {a.title}")
        lines.append(f"- notebook: `notebooks/{a.notebook}.ipynb`; function: `{a.function}`")
        if pattern != "-":
            lines.append("- files: " + (", ".join(f"`{f}`" for f in files) if files else f"none yet (`{pattern}`)"))
        if a.artifact.startswith("Table "):
            n = int(a.artifact.split()[1])
            csv = root / "results" / "tables" / f"table{n}_{cfg.profile}.csv"
            if csv.is_file():
                col = HEADLINE_COLUMNS[n]
                heads = table_headlines(pd.read_csv(csv), col)
                if heads:
                    lines += ["", f"| row | {col}: paper | ours ({cfg.profile}) | note |", "|---|---|---|---|"]
                    lines += [f"| {h['row']} | {_fmt(h['paper'])} | {_fmt(h['ours'], h['ci_low'], h['ci_high'])} | "
                              f"{h['note'][:160]} |" for h in heads]
        lines.append("")
    name = "INDEX_smoke.md" if cfg.profile == "smoke" else "INDEX.md"
    return write_text(root / "results" / name, "\n".join(lines))


def claims_md_name(profile: str) -> str:
    """``CLAIMS.md``, or ``CLAIMS_smoke.md`` for the test suite's profile (git-ignored, like ``INDEX_smoke.md``).

    >>> claims_md_name("tiny"), claims_md_name("smoke")
    ('CLAIMS.md', 'CLAIMS_smoke.md')
    """
    return "CLAIMS_smoke.md" if profile == "smoke" else "CLAIMS.md"


README_START, README_END = "<!-- ARTIFACT-MAP:START -->", "<!-- ARTIFACT-MAP:END -->"


def render_artifact_map() -> str:
    """The artifact map as the Markdown README shows (files named for the ``tiny`` profile)."""
    t = artifact_table("tiny").drop(columns=["status", "what"])
    t["notebook"] = "`" + t["notebook"].str.replace("notebooks/", "", regex=False).str.replace(".ipynb", "", regex=False) + "`"
    t["function"] = "`" + t["function"].str.replace("refine_iqa_lib.", "", regex=False) + "`"
    t["results"] = t["results"].map(lambda r: "—" if r == "-" else f"`{r}`")
    return "## Artifact map\n\n" + t.to_markdown(index=False) + "\n"


def update_readme(path) -> bool:
    """Rewrite the artifact map between the README's markers; return whether it changed."""
    from pathlib import Path

    from refine_iqa_lib.io import write_text

    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path}: expected the markers {README_START} and {README_END}")
    head, rest = text.split(README_START, 1)
    _, tail = rest.split(README_END, 1)
    new = f"{head}{README_START}\n{render_artifact_map()}{README_END}{tail}"
    if new != text:
        write_text(path, new)
    return new != text
