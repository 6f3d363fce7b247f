"""Every training the claims table needs, for several seeds, and the claims over seeds (``make findings``).

    python -m refine_iqa_lib.findings --profile tiny [--seeds 0 1 2] [--set key=value ...] [--out DIR]

``make reproduce`` runs one seed; a verdict from one seed cannot tell a mechanism from the luck of
one run. This command:

1. builds (or reuses) the profile's data and base in its ``paths.work_dir`` - the perception
   dataset, the scoring splits, the Q-Bench stand-in and, for the stand-in, its warm-up (the
   committed pre-trained stand-in is adopted when its key matches). **The base is shared by every
   seed**, as the paper's base is one downloaded model: seeds vary the Refine-IQA training only;
2. for each seed ``s``, in ``<work_dir>/findings/seed<s>`` (the data folders and the warm-up run
   are links to the shared ones; the profile's own seed uses the profile's folders, so the runs
   and evaluations of ``make reproduce`` count as that seed's): Stage-1, Stage-2 and the Table 5-6 ablations with
   ``stage1.seed = stage2.seed = s`` (the ablations inherit ``stage2``'s), then the evaluations
   the claims read - perception (Tables 1-2), scoring (Table 3) and Q-Bench (Table 4) of base,
   S1 and S2, and the ablations' (Tables 5-6), on the same test items for every seed (the
   evaluation subsets and bootstrap seeds come from the top-level ``seed``, which stays fixed);
3. :func:`refine_iqa_lib.evaluation.claims.build_claims_over_seeds` writes ``CLAIMS.md``,
   ``claims_<profile>.csv`` (mean over seeds, two-stage bootstrap interval over seeds and items,
   the exact test on all seeds' items, per-seed values and verdicts) and ``claims_per_seed_<profile>.csv``
   to ``--out`` (``results/findings/``), with ``learning_<profile>.csv`` (:func:`learning_table`: does
   each GRPO stage learn, per seed and over seeds) and ``timings.json`` (seconds per step and seed). Every seed
   is judged on the same test items, matched by id: a seed whose evaluation lacks or adds items
   stops the command with an error naming the claim, the seed and the items.

Runs and evaluations that already finished are reused (each seed's folder resumes), so an
interrupted ``make findings`` continues where it stopped.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.config import REPO_ROOT, Config, ConfigError, load_config
from refine_iqa_lib.io import repo_relative, write_json

__all__ = ["DEFAULT_SEEDS", "LEARNING_CURVES", "seed_config", "link_shared", "run_seed", "learning_table",
           "run_findings", "main"]

log = logging.getLogger(__name__)

DEFAULT_SEEDS = (0, 1, 2)
#: The task reward of each GRPO stage, whose first and last 10 % of steps :func:`learning_table` compares.
LEARNING_CURVES = {"1": "stage-1 task", "2": "answer"}
#: Folders of the work dir that every seed shares (data; the warm-up run is linked separately).
_NOT_SHARED = ("runs", "eval", "findings")


def seed_config(cfg: Config, seed: int) -> Config:
    """``cfg`` for training seed ``seed``: ``cfg`` itself when ``seed`` is its own training seed
    (``stage1.seed == stage2.seed == seed``: the runs of ``make reproduce``, reused when finished);
    otherwise its own work, results and figures folders under ``<work_dir>/findings/seed<seed>``
    with ``stage1.seed`` and ``stage2.seed`` set."""
    if int(cfg.stage1.seed) == int(cfg.stage2.seed) == int(seed):
        return cfg
    root = cfg.work_dir / "findings" / f"seed{int(seed)}"
    return load_config(cfg, {"paths.work_dir": str(root), "paths.results_dir": str(root / "results"),
                             "paths.figures_dir": str(root / "figures"),
                             "stage1.seed": int(seed), "stage2.seed": int(seed)})


def link_shared(cfg: Config, seed_cfg: Config) -> list[Path]:
    """Link the shared data folders and the warm-up run of ``cfg``'s work dir into ``seed_cfg``'s;
    returns the links. An existing entry that is not the expected link fails, naming it."""
    from refine_iqa_lib.runs import default_run_dir

    src, dst = cfg.work_dir, seed_cfg.work_dir
    dst.mkdir(parents=True, exist_ok=True)
    pairs = [(p, dst / p.name) for p in sorted(src.iterdir()) if p.name not in _NOT_SHARED]
    warm = default_run_dir(cfg, "warmup")
    if warm.exists():
        pairs.append((warm, default_run_dir(seed_cfg, "warmup")))
    links = []
    for target, link in pairs:
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.is_symlink() and Path(os.readlink(link)) == target:
            links.append(link)
            continue
        if link.exists() or link.is_symlink():
            raise FileExistsError(f"{link}: expected a link to the shared {target}, found something else; "
                                  "remove it to let findings link it")
        link.symlink_to(target, target_is_directory=target.is_dir())
        links.append(link)
    return links


def _shared_base(cfg: Config) -> None:
    """Data and base of the profile, built once (step 1 of the module docstring)."""
    from refine_iqa_lib.runs import uses_warmup
    from refine_iqa_lib.standin.__main__ import build_data
    from refine_iqa_lib.training.launch import run_stage_subprocess

    build_data(cfg)
    if uses_warmup(cfg):
        run_stage_subprocess(cfg, "warmup")


def run_seed(cfg: Config, seed: int) -> dict[str, float]:
    """Train and evaluate one seed (step 2); returns seconds per step."""
    from refine_iqa_lib.evaluation.ablations import run_ablations
    from refine_iqa_lib.evaluation.perception import evaluate_perception
    from refine_iqa_lib.evaluation.qbench import evaluate_qbench
    from refine_iqa_lib.evaluation.scoring_eval import evaluate_scoring
    from refine_iqa_lib.training.launch import run_stage_subprocess

    scfg = seed_config(cfg, seed)
    if scfg is not cfg:
        link_shared(cfg, scfg)
    seconds: dict[str, float] = {}

    def timed(name, fn):
        t = time.perf_counter()
        fn()
        seconds[name] = round(time.perf_counter() - t, 1)
        log.info("[findings] seed %d: %s in %.0f s", seed, name, seconds[name])

    timed("stage1", lambda: run_stage_subprocess(scfg, "1"))
    timed("stage2", lambda: run_stage_subprocess(scfg, "2"))
    models = ("base", "s1", "s2")
    timed("perception", lambda: [evaluate_perception(scfg, m, overwrite=False) for m in models])
    timed("scoring", lambda: [evaluate_scoring(scfg, m, overwrite=False) for m in models])
    timed("qbench", lambda: [evaluate_qbench(scfg, m, overwrite=False) for m in models])
    timed("ablations", lambda: run_ablations(scfg, overwrite=False))
    return seconds


def learning_table(cfgs: dict[int, Config]) -> "pd.DataFrame":
    """Does each GRPO stage learn? For every seed (``{seed: config}``) and over seeds, per stage:
    the share of groups that carry a learning signal (rewards not all equal: 1 - the
    ``adv/zero_signal_groups`` curve) over the first 10 % of steps, the task reward
    (:data:`LEARNING_CURVES`) over the first and the last 10 %, and their difference with its
    interval - per seed :func:`~refine_iqa_lib.evaluation.statistics.curve_difference_ci` (a
    moving-block standard error against the curve's own autocorrelated noise), over seeds
    :func:`~refine_iqa_lib.evaluation.statistics.pooled_over_seeds` - and its verdict on "rises"
    (:func:`~refine_iqa_lib.evaluation.statistics.judge`). Rows ``seed`` = ``all`` are the pooled ones."""
    import numpy as np
    import pandas as pd

    from refine_iqa_lib.evaluation.statistics import curve_difference_ci, judge, pooled_over_seeds
    from refine_iqa_lib.runs import default_run_dir
    from refine_iqa_lib.training.metrics import curve, first_last_windows, read_metrics

    rows = []
    for stage, name in LEARNING_CURVES.items():
        intervals, signals, firsts, lasts = [], [], [], []
        for seed, scfg in cfgs.items():
            df = read_metrics(default_run_dir(scfg, stage))
            first, last = first_last_windows(df, name)
            zero_first, _ = first_last_windows(df, "zero-signal groups")
            iv = curve_difference_ci(curve(df, name).dropna().to_numpy(dtype=float), len(first))
            signal = 1.0 - float(zero_first.mean())
            intervals.append(iv)
            signals.append(signal)
            firsts.append(float(first.mean()))
            lasts.append(float(last.mean()))
            rows.append({"stage": stage, "curve": name, "seed": str(seed), "signal_first_10pct": signal,
                         "first_10pct": float(first.mean()), "last_10pct": float(last.mean()), "difference": iv.value,
                         "low": iv.low, "high": iv.high, "verdict": judge(iv, "greater"), "method": iv.method})
        pooled = pooled_over_seeds(intervals, labels=list(cfgs))
        rows.append({"stage": stage, "curve": name, "seed": "all", "signal_first_10pct": float(np.mean(signals)),
                     "first_10pct": float(np.mean(firsts)), "last_10pct": float(np.mean(lasts)),
                     "difference": pooled.value, "low": pooled.low, "high": pooled.high,
                     "verdict": judge(pooled, "greater"), "method": pooled.method})
    return pd.DataFrame(rows)


def run_findings(cfg: Config, seeds=DEFAULT_SEEDS, out_dir: str | os.PathLike | None = None) -> Path:
    """Steps 1-3 of the module docstring; returns the output folder."""
    from refine_iqa_lib.evaluation.claims import build_claims_over_seeds

    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ConfigError(f"findings: seeds {seeds}; expected distinct training seeds")
    out = Path(out_dir) if out_dir is not None else REPO_ROOT / "results" / "findings"
    t0 = time.perf_counter()
    timings: dict = {"profile": cfg.profile, "seeds": seeds, "per_seed": {}}
    t = time.perf_counter()
    _shared_base(cfg)
    timings["shared_base_s"] = round(time.perf_counter() - t, 1)
    for s in seeds:
        timings["per_seed"][str(s)] = run_seed(cfg, s)
        write_json(out / "timings.json", {**timings, "status": "running"})
    cfgs = {s: seed_config(cfg, s) for s in seeds}
    table, _ = build_claims_over_seeds(cfgs, out)
    from refine_iqa_lib.io import write_text

    write_text(out / f"learning_{cfg.profile}.csv", learning_table(cfgs).to_csv(index=False, float_format="%.6g"))
    timings["total_s"] = round(time.perf_counter() - t0, 1)
    timings["verdicts"] = table["verdict"].value_counts().to_dict()
    write_json(out / "timings.json", {**timings, "status": "complete"})
    log.info("[findings] %s in %.0f s: %s", repo_relative(out), timings["total_s"], timings["verdicts"])
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.findings",
                                 description="Train and evaluate every run the claims need for several seeds.")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--seeds", nargs="+", type=int, default=list(DEFAULT_SEEDS))
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="output folder (default: results/findings)")
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        cfg = load_config(args.profile, args.sets)
        out = run_findings(cfg, args.seeds, args.out)
    except (ConfigError, FileNotFoundError, FileExistsError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"claims over seeds {args.seeds} written to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
