"""Ablations (Tables 5-6): definitions are valid config data, runs go through the launcher into
their own folders, and the tables are assembled from the result files."""
from __future__ import annotations

from pathlib import Path

import pytest

from refine_iqa_lib.config import load_config, parse_overrides
from refine_iqa_lib.evaluation import ablations as ab
from refine_iqa_lib.evaluation import results
from refine_iqa_lib.evaluation import scoring_eval as ev
from refine_iqa_lib.evaluation import tables
from refine_iqa_lib.io import write_json


@pytest.fixture()
def cfg(tmp_path):
    return load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "paths.results_dir": str(tmp_path / "res")})


def test_names_are_the_tables_run_names():
    assert {tables.RUNS[r] for r in ("no_stage1", "no_pd", "no_pm")} == set(ab.ABLATIONS)
    assert set(ab.EVALUATIONS) == set(ab.ABLATIONS) | {"s2"}
    assert set(ab.TABLE56_DATASETS) == set(tables.T56_DATASETS.values())


@pytest.mark.parametrize("name", sorted(ab.ABLATIONS))
def test_overrides_are_valid_and_change_the_stage2_config(name):
    base = load_config("smoke")
    changed = load_config("smoke", ab.ablation_overrides(name))
    parse_overrides(ab.ablation_overrides(name))  # the launcher's KEY=VALUE form parses
    for key, value in ab.ABLATIONS[name]["overrides"].items():
        section, field = key.split(".")
        assert getattr(getattr(changed, section), field) == value != getattr(getattr(base, section), field)
    diff = {k for k in ("init_from", "use_pd", "use_pm")
            if getattr(changed.stage2, k) != getattr(base.stage2, k)}
    assert len(diff) == 1  # one thing changes per ablation


def test_run_ablation_goes_through_the_launcher(cfg, monkeypatch):
    import refine_iqa_lib.training.launch as launch

    calls = []
    monkeypatch.setattr(launch, "run_stage_subprocess",
                        lambda c, stage, run_dir=None, overrides=None, resume=True, **kw:
                        calls.append((stage, Path(run_dir), list(overrides or []), resume)) or Path(run_dir))
    out = ab.run_ablation(cfg, "s2_no_pm")
    assert out == cfg.work_dir / "runs" / "ablations" / "s2_no_pm"
    assert calls == [("2", out, ["stage2.use_pm=false"], True)]
    with pytest.raises(ValueError, match="unknown ablation"):
        ab.run_ablation(cfg, "s2_no_kl")


def test_run_ablations_trains_missing_reference_runs_first(cfg, monkeypatch):
    import refine_iqa_lib.training.launch as launch

    calls = []

    def fake(c, stage, run_dir=None, overrides=None, **kw):
        calls.append((stage, str(run_dir) if run_dir else None, tuple(overrides or ())))
        return run_dir

    monkeypatch.setattr(launch, "run_stage_subprocess", fake)
    monkeypatch.setattr(results, "ensure_base_model", lambda c: calls.append(("base", None, ())))
    tables_ = ab.run_ablations(cfg, evaluate=False)
    assert calls[0] == ("base", None, ()) and [c[0] for c in calls[1:3]] == ["1", "2"]  # Stage-1, Stage-2
    assert [c[2] for c in calls[3:]] == [tuple(ab.ablation_overrides(n)) for n in ab.ABLATIONS]
    assert set(tables_) == {5, 6} and (cfg.results_dir / "tables" / "table6_smoke.md").is_file()


def _scoring(cfg, model, method, srcc, plcc):
    write_json(ev.scoring_result_path(cfg, model, "koniq", "no_think", method),
               {"model": model, "dataset": "koniq", "mode": "no_think", "method": method, "srcc": srcc,
                "plcc": plcc, "plcc_kind": "raw", "n": 5, "n_nan": 0, "profile": "smoke"})


def test_tables_5_and_6_are_assembled_from_results(cfg):
    from refine_iqa_lib.evaluation.qbench import ACCURACY_KEYS, qbench_result_path

    _scoring(cfg, "s2", "prob", 0.5, 0.7)
    _scoring(cfg, "s2", "num", 0.2, 0.4)
    _scoring(cfg, "s2_no_stage1", "prob", 0.1, 0.3)
    _scoring(cfg, "s2_no_pd", "prob", 0.6, 0.6)
    write_json(qbench_result_path(cfg, "s2_no_pd", "no_think"),
               {"model": "s2_no_pd", "mode": "no_think", "profile": "smoke", "split": "dev", "n": 8,
                "accuracy": {k: 0.25 for k in ACCURACY_KEYS}})
    t = ab.ablation_tables(cfg)
    ours5 = t[5][t[5]["source"] != "paper"].set_index("TRAIN")
    assert ours5.loc["w/o Stage-1", "KonIQ"] == pytest.approx(0.2) and ours5.loc["w Stage-1", "KonIQ"] == 0.6
    ours6 = t[6][t[6]["source"] != "paper"]
    rows = {(r["PD"], r["PM"], r["Num."]): r for _, r in ours6.iterrows()}
    assert rows[(False, True, False)]["KonIQ"] == 0.6 and rows[(False, True, False)]["Overall"] == 25.0
    assert rows[(True, True, True)]["KonIQ"] == pytest.approx(0.3)  # numeric inference of s2
    assert "missing results" in rows[(True, False, False)]["note"]  # the w/o-PM run has no results
    assert ours6["note"].str.contains("not in scoring.eval").all()


def test_definitions_table():
    df = ab.ablation_table_of_definitions()
    assert set(ab.ABLATIONS) | set(ab.INFERENCE_ABLATIONS) == set(df["name"])
