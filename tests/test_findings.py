"""make findings: one folder per seed sharing the data and the base, seeds set, claims over seeds."""
from __future__ import annotations

import json
import os

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.findings import link_shared, run_findings, seed_config


def test_seed_config_and_links(tmp_path):
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "work")})
    for name in ("perception", "scoring", "runs/warmup/final", "runs/stage1", "eval/x"):
        (cfg.work_dir / name).mkdir(parents=True)
    assert seed_config(cfg, 0) is cfg   # the profile's own seed: make reproduce's runs
    s = seed_config(cfg, 2)
    assert s.stage1.seed == s.stage2.seed == 2 and s.seed == cfg.seed   # evaluation subsets stay fixed
    assert s.work_dir == cfg.work_dir / "findings" / "seed2" and s.results_dir == s.work_dir / "results"
    links = link_shared(cfg, s)
    names = sorted(str(p.relative_to(s.work_dir)) for p in links)
    assert names == ["perception", "runs/warmup", "scoring"]        # runs, eval, findings are the seed's own
    assert all(p.is_symlink() for p in links) and link_shared(cfg, s) == links   # idempotent
    os.remove(s.work_dir / "scoring")
    (s.work_dir / "scoring").mkdir()
    with pytest.raises(FileExistsError, match="expected a link"):
        link_shared(cfg, s)


def test_findings_end_to_end_on_the_smoke_profile(tmp_path):
    """One seed of the whole command (smoke: 2-3 steps a stage): every run and evaluation the
    claims read, then the claims over seeds and the timings."""
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "paths.results_dir": str(tmp_path / "results"),
                                "paths.figures_dir": str(tmp_path / "figures")})
    out = run_findings(cfg, seeds=[1], out_dir=tmp_path / "findings")
    seed = seed_config(cfg, 1)
    for run in ("stage1", "stage2", "ablations/s2_no_stage1", "ablations/s2_no_pd", "ablations/s2_no_pm"):
        assert (seed.work_dir / "runs" / run / "final" / "refine_final.json").is_file(), run
    assert (seed.work_dir / "runs" / "warmup").is_symlink()
    timings = json.loads((out / "timings.json").read_text())
    assert timings["status"] == "complete" and set(timings["per_seed"]["1"]) >= {"stage1", "stage2", "ablations"}
    claims = (out / "claims_smoke.csv").read_text()
    assert "Stage-1 raises description" in claims and (out / "CLAIMS.md").is_file()
    with pytest.raises(Exception, match="distinct"):
        run_findings(cfg, seeds=[1, 1], out_dir=tmp_path / "again")


def test_learning_table_says_which_stage_learns_per_seed_and_over_seeds(tmp_path):
    """Stage-1's task reward rises on both seeds (supports), Stage-2's answer reward is flat noise
    (inconclusive); the signal share is 1 - the zero-signal groups over the first 10 % of steps."""
    import numpy as np

    from refine_iqa_lib.findings import learning_table
    from refine_iqa_lib.runs import default_run_dir

    cfgs = {}
    for seed in (0, 1):
        cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / f"w{seed}")})
        rng = np.random.default_rng(seed)
        for stage, key, trend in (("1", "rewards/stage1/mean", 0.6), ("2", "rewards/answer/mean", 0.0)):
            run = default_run_dir(cfg, stage)
            run.mkdir(parents=True)
            steps = np.arange(1, 101)
            values = 0.2 + trend * steps / 100 + rng.normal(0, 0.05, steps.size)
            zero = np.where(steps <= 10, 0.25, 0.5)
            (run / "metrics.jsonl").write_text("".join(
                json.dumps({"kind": "step", "step": int(s), key: float(v), "adv/zero_signal_groups": float(z)}) + "\n"
                for s, v, z in zip(steps, values, zero)))
        cfgs[seed] = cfg
    table = learning_table(cfgs)
    one = table[(table["stage"] == "1")].set_index("seed")
    two = table[(table["stage"] == "2")].set_index("seed")
    assert list(one.index) == ["0", "1", "all"] and (one["verdict"] == "supports").all()
    assert one.loc["all", "signal_first_10pct"] == pytest.approx(0.75)
    assert 0.45 < one.loc["all", "difference"] < 0.65 and one.loc["all", "low"] > 0
    assert two.loc["all", "verdict"] == "inconclusive" and two.loc["all", "low"] < 0 < two.loc["all", "high"]
