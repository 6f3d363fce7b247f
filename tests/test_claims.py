"""The claims table: built from prediction files only, paired over matched ids, one verdict rule."""
from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.evaluation import claims as C
from refine_iqa_lib.io import write_jsonl
from refine_iqa_lib.runs import model_paths

N_IMAGES, N_PICTURES, N_QUESTIONS = 240, 200, 300


@pytest.fixture()
def cfg(tmp_path):
    return load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "paths.results_dir": str(tmp_path / "results")})


def _perception(cfg, rng):
    """s1 much better than base, more so on Hard images; s2 keeps most of s1's gain."""
    cats = [D.DISTORTIONS[i % len(D.DISTORTIONS)] for i in range(N_IMAGES)]
    hard = np.array([c in D.HARD for c in cats])
    base = (rng.random(N_IMAGES) < np.where(hard, 0.2, 0.6)).astype(float)
    s1 = np.maximum(base, rng.random(N_IMAGES) < np.where(hard, 0.7, 0.3)).astype(float)
    s2 = np.where(rng.random(N_IMAGES) < 0.9, s1, base)
    iou = {"base": rng.uniform(0, 0.3, N_IMAGES)}
    iou["s1"] = iou["base"] + 0.4
    iou["s2"] = iou["base"] + 0.35
    out = cfg.work_dir / "eval" / "perception"
    out.mkdir(parents=True)
    ids = [f"im{i:04d}" for i in range(N_IMAGES)]
    for name, desc in (("base", base), ("s1", s1), ("s2", s2)):
        order = rng.permutation(N_IMAGES)  # rows in another order in every file: matching is by id
        df = pd.concat([pd.DataFrame({"image_id": ids, "category": cats, "value": desc, "task": "description"}),
                        pd.DataFrame({"image_id": ids, "category": cats, "value": iou[name], "task": "grounding"})])
        df.iloc[np.concatenate([order, order + N_IMAGES])].to_csv(out / f"{name}__images.csv", index=False)


def _scoring(cfg, rng):
    mos = rng.uniform(0, 5, N_PICTURES)
    images = [f"/x/p{i}.png" for i in range(N_PICTURES)]
    preds = {("s2", "no_think", "prob"): mos + rng.normal(0, 0.4, N_PICTURES),
             ("s2", "think", "prob"): mos + rng.normal(0, 0.4, N_PICTURES),
             ("base", "no_think", "prob"): mos + rng.normal(0, 3.0, N_PICTURES),
             ("s2_no_pm", "no_think", "prob"): mos + rng.normal(0, 3.0, N_PICTURES),
             ("s2", "no_think", "num"): mos + rng.normal(0, 3.0, N_PICTURES)}
    out = cfg.work_dir / "eval" / "scoring"
    out.mkdir(parents=True)
    for (model, mode, method), p in preds.items():
        pd.DataFrame({"image": images, "mos": mos, "pred": p, "pred_used": p}).to_csv(
            out / f"{model}__koniq__{mode}__{method}.csv", index=False)


def _qbench(cfg, rng):
    out = cfg.work_dir / "eval" / "qbench"
    base = rng.random(N_QUESTIONS) < 0.5
    s2 = base | (rng.random(N_QUESTIONS) < 0.4)
    for model, mode, right in (("base", "no_think", base), ("s2", "no_think", s2), ("s2_no_pd", "no_think", s2)):
        # the base's wrong answers at every 3rd question named no candidate (pred None: unparsable)
        write_jsonl(out / f"{model}__{mode}.jsonl", [
            {"id": f"q{i}", "correct": bool(r), "type_name": "yes_no", "concern_name": "technical",
             "pred": None if (model == "base" and not r and i % 3 == 0) else ("Yes" if r else "No")}
            for i, r in enumerate(right)])


def _metrics(cfg, rng):
    runs = model_paths(cfg)
    steps = np.arange(1, 101)
    for name, think in (("s2", 60 + rng.normal(0, 3, 100)), ("s2_no_pd", np.linspace(60, 5, 100) + rng.normal(0, 3, 100))):
        rows = [{"kind": "step", "step": int(s), "refine/think_tokens": float(t),
                 "refine/answer_think": float(0.2 + 0.005 * s + rng.normal(0, 0.02)),
                 "refine/answer_no_think": float(0.1 + 0.004 * s + rng.normal(0, 0.02)) if s % 2 == 0 else None}
                for s, t in zip(steps, think)]
        write_jsonl(runs[name] / "metrics.jsonl", rows)


def test_claims_from_planted_effects(cfg):
    rng = np.random.default_rng(0)
    _perception(cfg, rng)
    _scoring(cfg, rng)
    _qbench(cfg, rng)
    _metrics(cfg, rng)
    df = C.build_claims(cfg)
    assert list(df.columns) == C.COLUMNS
    assert list(df.columns) == ["claim", "paper", "measure", "value", "ci_low", "ci_high", "n", "n_better", "n_worse",
                                "p_value", "seeds", "verdict", "degenerate", "note"]
    by = df.set_index("claim")
    verdicts = by["verdict"].to_dict()

    def row(start):
        hits = [c for c in by.index if c.startswith(start)]
        assert len(hits) == 1, (start, hits)
        return by.loc[hits[0]]

    for start in ("Stage-1 raises description", "Stage-1 raises grounding", "Stage-1's gains are larger on Hard",
                  "S2 keeps most of S1's perception: description", "S2 keeps most of S1's perception: grounding",
                  "S2 beats the base on scoring", "Think and no-think scoring differ little",
                  "Without PD the think collapses", "Without PD the think ends shorter",
                  "Without PM probability-based", "Probability-based beats numeric",
                  "The think answer reward rises", "The no-think answer reward rises",
                  "Stage-2 improves interpreting over the base: no-think"):
        r = row(start)
        assert r["verdict"] == "supports", (start, r.to_dict())
        assert r["ci_low"] <= r["value"] <= r["ci_high"]
    assert row("Stage-1 raises description")["n"] == N_IMAGES
    assert row("S2 beats the base on scoring")["n"] == N_PICTURES
    # Q-Bench rows say how many answers were unparsable (a format effect is not interpreting)
    from refine_iqa_lib.evaluation.items import qbench_values
    unparsed = int((~qbench_values(cfg.work_dir / "eval", "base", "no_think")["parsed"]).sum())
    assert unparsed > 0
    assert (f"unparsable answers: s2 (no_think) 0/{N_QUESTIONS}, base (no_think) {unparsed}/{N_QUESTIONS}"
            in row("Stage-2 improves interpreting over the base: no-think")["note"])
    # interpreting equal with and without PD (same answers): the interval is [0, 0], not "supports"
    assert row("Without PD interpreting drops")["verdict"] == "inconclusive"
    # inputs never written: inconclusive, and the note says what is missing
    for start in ("Stage-1 improves Stage-2 scoring", "Stage-1 improves Stage-2 interpreting",
                  "Stage-2 improves interpreting over the base: think"):
        r = row(start)
        assert r["verdict"] == "inconclusive" and r["note"].startswith("missing:") and np.isnan(r["value"])
    assert set(verdicts.values()) <= {"supports", "contradicts", "inconclusive"}
    # the paper column is read from results/paper, never typed in
    assert row("Stage-1 raises description")["paper"].startswith("S1 76.37% vs base 51.25% (+25.12%)")
    csv, md = C.claims_paths(cfg)
    assert csv.name == "claims_smoke.csv" and md.name == "CLAIMS_smoke.md"
    back = pd.read_csv(csv)
    assert list(back.columns) == C.COLUMNS and len(back) == len(df)
    text = md.read_text()
    assert "*supports*: the whole interval" in text and "McNemar's exact test" in text and "| claim " in text
    assert re.search(r"\| better / worse +\| p +\|", text)
    assert C.build_claims(cfg, write=False).equals(df)  # seeded: the same table again


def test_a_reversed_effect_contradicts_and_matching_is_by_id(cfg):
    rng = np.random.default_rng(1)
    _perception(cfg, rng)
    out = cfg.work_dir / "eval" / "perception"
    s1 = pd.read_csv(out / "s1__images.csv")
    base = pd.read_csv(out / "base__images.csv")
    s1.to_csv(out / "base__images.csv", index=False)  # swap: S1 is now worse than base
    base.iloc[::-1].to_csv(out / "s1__images.csv", index=False)
    df = C.build_claims(cfg, write=False).set_index("claim")
    assert df.loc["Stage-1 raises description accuracy (Table 1)", "verdict"] == "contradicts"
    assert df.loc["Stage-1 raises grounding IoU (Table 2)", "verdict"] == "contradicts"
    # an image only one model answered is left out of the paired difference, and counted
    pd.read_csv(out / "base__images.csv").iloc[3:].to_csv(out / "base__images.csv", index=False)
    r = C.build_claims(cfg, write=False).set_index("claim").loc["Stage-1 raises description accuracy (Table 1)"]
    assert r["n"] == N_IMAGES - 3 and "left out" in r["note"]
    d = C.perception_difference(cfg, "s1", "base", "description")
    assert d.value == pytest.approx(r["value"])


def test_equivalence_margin_is_stated_in_the_claim():
    spec = {c.claim: c for c in C.claims_spec("koniq")}
    think = spec["Think and no-think scoring differ little (Table 3, KONIQ)"]
    assert think.direction == "equivalent" and think.margin == C.EQUIVALENCE_MARGIN == 0.05
    assert "+-0.05" in think.measure


def test_claims_over_seeds_pool_seeds_and_items(tmp_path):
    """build_claims_over_seeds: mean over seeds, a two-stage interval, each seed's value and verdict;
    a seed without a claim's inputs makes it inconclusive, naming the seed."""
    cfgs = {}
    for seed in (0, 1):
        cfgs[seed] = load_config("smoke", {"paths.work_dir": str(tmp_path / f"s{seed}" / "work"),
                                           "paths.results_dir": str(tmp_path / f"s{seed}" / "results")})
        rng = np.random.default_rng(seed)
        _perception(cfgs[seed], rng)
        _scoring(cfgs[seed], rng)
        _qbench(cfgs[seed], rng)
        if seed == 0:   # seed 1 has no training curves
            _metrics(cfgs[seed], rng)
    table, per = C.build_claims_over_seeds(cfgs, tmp_path / "findings")
    assert list(table.columns) == C.COLUMNS + C.SEED_COLUMNS
    assert len(per) == 2 * len(table) and set(per["seeds"]) == {"0", "1"}
    by = table.set_index("claim")
    row = by.loc[[c for c in by.index if c.startswith("Stage-1 raises description")][0]]
    singles = [C.build_claims(cfgs[s], write=False).set_index("claim").loc[row.name, "value"] for s in (0, 1)]
    assert row["value"] == pytest.approx(np.mean(singles))
    assert row["seed_values"] == "; ".join(f"{v:.3f}" for v in singles)
    assert row["verdict"] == "supports" and row["seeds_agreeing"] == 2 and row["seeds"] == "0,1"
    assert row["ci_low"] <= row["value"] <= row["ci_high"] and row["n"] == N_IMAGES
    collapse = by.loc[[c for c in by.index if c.startswith("Without PD the think collapses")][0]]
    assert collapse["verdict"] == "inconclusive" and "seed 1: missing" in collapse["note"]
    assert collapse["seed_verdicts"].startswith("supports; inconclusive")
    text = (tmp_path / "findings" / "CLAIMS.md").read_text()
    assert "over training seeds 0,1" in text and "two-stage percentile bootstrap" in text
    assert (tmp_path / "findings" / "claims_smoke.csv").is_file()
    assert (tmp_path / "findings" / "claims_per_seed_smoke.csv").is_file()
    with pytest.raises(ValueError, match="no seed"):
        C.build_claims_over_seeds({})


def test_claims_rows_select_by_reference(cfg):
    rng = np.random.default_rng(0)
    _perception(cfg, rng)
    rows = C.claims_rows(cfg, ["Table 2"])
    assert len(rows) == 2 and all("Table 2" in c for c in rows["claim"])
    assert list(rows.columns) == ["claim", "measure", "ours [95 % CI]", "n", "verdict", "note"]
    assert rows.loc[0, "verdict"] == "supports" and "[" in rows.loc[0, "ours [95 % CI]"]
    assert not C.claims_paths(cfg)[0].exists()   # nothing written


def _description(cfg, models: dict, categories=None):
    """Perception files whose description values are ``models[name]`` (grounding = the same values)."""
    out = cfg.work_dir / "eval" / "perception"
    out.mkdir(parents=True, exist_ok=True)
    n = len(next(iter(models.values())))
    cats = categories or [D.DISTORTIONS[i % len(D.DISTORTIONS)] for i in range(n)]
    ids = [f"im{i:04d}" for i in range(n)]
    for name, values in models.items():
        pd.concat([pd.DataFrame({"image_id": ids, "category": cats, "value": values, "task": "description"}),
                   pd.DataFrame({"image_id": ids, "category": cats, "value": values, "task": "grounding"})]
                  ).to_csv(out / f"{name}__images.csv", index=False)


def test_four_discordant_images_decide_nothing(cfg):
    """1,003 images on which S1 and the base disagree on 4, the base right on all 4: the interval lies below 0
    (the old rule said 'contradicts'); McNemar's exact p is 0.125, so the row is inconclusive and says why."""
    base = np.r_[np.ones(4), np.tile([1.0, 0.0], 499), [1.0]]
    s1 = np.r_[np.zeros(4), base[4:]]
    _description(cfg, {"base": base, "s1": s1, "s2": s1})
    by = C.build_claims(cfg, write=False).set_index("claim")
    r = by.loc["Stage-1 raises description accuracy (Table 1)"]
    assert r["ci_high"] < 0                                       # the interval alone would contradict
    assert (r["n_better"], r["n_worse"], r["p_value"], r["verdict"]) == (0, 4, 0.125, "inconclusive")
    assert "4 item(s) differ between the models: under 10, no verdict" in r["note"]
    hard = by.loc["Stage-1's gains are larger on Hard than on Easy distortions (Table 1)"]
    keeps = by.loc["S2 keeps most of S1's perception: description (Table 1)"]
    assert hard["verdict"] == keeps["verdict"] == "inconclusive"
    assert hard["n_better"] + hard["n_worse"] == 4 and keeps["n_worse"] == 4
    assert np.isnan(by.loc["Stage-1 raises grounding IoU (Table 2)", "p_value"])    # IoU: the interval decides


def test_a_constant_predictor_loses_and_is_named(cfg):
    """Every numeric answer unparsable and scored 2.5 (Table 6 row 3): SRCC and PLCC of the constant predictor
    count as 0, so probability-based inference is judged better, and the row names the degenerate model and
    the parse failures; scores dropped by eval.unparsable=drop are scored the fallback as well."""
    rng = np.random.default_rng(0)
    mos = rng.uniform(0, 5, N_PICTURES)
    out = cfg.work_dir / "eval" / "scoring"
    out.mkdir(parents=True)
    images = [f"/x/p{i}.png" for i in range(N_PICTURES)]
    prob = mos + rng.normal(0, 2.0, N_PICTURES)
    pd.DataFrame({"image": images, "mos": mos, "pred": prob, "pred_used": prob}).to_csv(
        out / "s2__koniq__no_think__prob.csv", index=False)
    for used in (2.5, np.nan):                                     # fallback, then drop
        pd.DataFrame({"image": images, "mos": mos, "pred": np.nan, "pred_used": used}).to_csv(
            out / "s2__koniq__no_think__num.csv", index=False)
        r = C.build_claims(cfg, write=False).set_index("claim").loc[
            "Probability-based beats numeric inference (Table 6 row 3, KonIQ)"]
        assert r["verdict"] == "supports" and r["ci_low"] > 0 and r["n"] == N_PICTURES
        assert r["degenerate"] == ("s2 (no_think, num) gives every image the same score (2.5): its SRCC and PLCC "
                                   "count as 0")
        assert (f"unparsable answers (scored the fallback): s2 (no_think, prob) 0/{N_PICTURES}, "
                f"s2 (no_think, num) {N_PICTURES}/{N_PICTURES}") in r["note"]
        assert np.isnan(r["p_value"]) and pd.isna(r["n_better"])
    text = C.claims_markdown(C.build_claims(cfg, write=False), "smoke")
    assert "degenerate: s2 (no_think, num) gives every image the same score" in text


def test_seeds_over_different_items_are_an_error(tmp_path):
    cfgs = {}
    for seed in (0, 1):
        cfgs[seed] = load_config("smoke", {"paths.work_dir": str(tmp_path / f"s{seed}" / "work"),
                                           "paths.results_dir": str(tmp_path / f"s{seed}" / "results")})
        _perception(cfgs[seed], np.random.default_rng(seed))
    out = cfgs[1].work_dir / "eval" / "perception"
    for name in ("base", "s1", "s2"):       # seed 1 evaluated without three images
        df = pd.read_csv(out / f"{name}__images.csv")
        df[~df["image_id"].isin(["im0000", "im0001", "im0002"])].to_csv(out / f"{name}__images.csv", index=False)
    with pytest.raises(ValueError, match=r"Stage-1 raises description accuracy \(Table 1\): pooled_over_seeds: seed 1 "
                                         r"lacks 3 item\(s\) of seed 0 \(im0000, im0001, im0002\)"):
        C.build_claims_over_seeds(cfgs)


def test_a_flat_wandering_curve_is_not_a_collapse(cfg):
    """Think tokens that only wander (AR(1), rho = 0.9, no trend) over 150 logged steps: no verdict."""
    from refine_iqa_lib.evaluation.statistics import ar1_curves

    rng = np.random.default_rng(3)
    runs = model_paths(cfg)
    for name in ("s2", "s2_no_pd"):
        think = 40 + 8 * ar1_curves(0.9, (150,), rng)
        write_jsonl(runs[name] / "metrics.jsonl", [{"kind": "step", "step": s + 1, "refine/think_tokens": float(t)}
                                                   for s, t in enumerate(think)])
    by = C.build_claims(cfg, write=False).set_index("claim")
    for claim in ("Without PD the think collapses during training (Table 6 row 1)",
                  "Without PD the think ends shorter than with it (Table 6 row 1)"):
        assert by.loc[claim, "verdict"] == "inconclusive", by.loc[claim].to_dict()
        assert "moving-block t" in by.loc[claim, "note"]
    assert by.loc["Without PD the think collapses during training (Table 6 row 1)", "n"] == 150
