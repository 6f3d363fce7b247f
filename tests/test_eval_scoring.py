"""Scoring evaluation (Table 3): named models, result files in the tables' schema, NaN handling."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import results as res
from refine_iqa_lib.evaluation import scoring_eval as ev
from refine_iqa_lib.evaluation import tables
from refine_iqa_lib import runs
from refine_iqa_lib.generation import greedy_generate
from refine_iqa_lib.io import open_image, read_json, subsample, write_json


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("scoring_eval")
    return load_config("smoke", {"warmup.enabled": False, "paths.work_dir": str(root / "work"),
                                 "paths.results_dir": str(root / "results"), "paths.figures_dir": str(root / "fig")})


def test_model_registry_names_and_folders(cfg):
    paths = runs.model_paths(cfg)
    assert set(paths) == set(tables.RUNS.values())  # every name the tables read
    assert paths["s1"] == cfg.work_dir / "runs" / "stage1" and paths["s2"] == cfg.work_dir / "runs" / "stage2"
    assert paths["s2_no_pd"] == cfg.work_dir / "runs" / "ablations" / "s2_no_pd"
    assert paths["base"].name == f"tiny-seed{cfg.model.seed}"  # warm-up disabled: the raw stand-in
    with_warmup = load_config("smoke", {"paths.work_dir": str(cfg.work_dir)})
    assert runs.model_paths(with_warmup)["base"] == cfg.work_dir / "runs" / "warmup"
    assert runs.normalise_model_name("S2") == "s2"
    with pytest.raises(ValueError, match="unknown model name 'S3'"):
        runs.normalise_model_name("S3")


def test_missing_run_says_how_to_make_it(cfg):
    with pytest.raises(FileNotFoundError, match="Stage-1"):
        res.eval_model_path(cfg, "s1")
    assert list(res.available_models(cfg)) == ["base"]


def test_weights_dir_needs_the_final_marker(tmp_path):
    run = tmp_path / "run"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")
    assert runs.weights_dir(run) is None  # weights saved but the stage did not finish
    (run / "final" / "refine_final.json").write_text("{}")
    assert runs.weights_dir(run) == run / "final"


def test_subsample_is_seeded_ordered_and_complete_when_asked():
    df = pd.DataFrame({"a": range(50)})
    a, b = subsample(df, 7, seed=3), subsample(df, 7, seed=3)
    assert a.equals(b) and len(a) == 7 and a["a"].is_monotonic_increasing
    assert not a.equals(subsample(df, 7, seed=4))
    assert len(subsample(df, 0)) == 50 and len(subsample(df, 500)) == 50


def test_method_names_match_the_tables():
    assert ev.method_name("numeric") == "num" and ev.method_name("prob") == "prob"
    with pytest.raises(ValueError, match="unknown scoring method"):
        ev.method_name("logits")


def test_evaluate_scoring_writes_the_tables_schema(cfg, tiny_policy):
    records = ev.evaluate_scoring(cfg, "base", loaded=tiny_policy)
    assert len(records) == len(cfg.eval.modes) * len(cfg.eval.methods) * len(cfg.scoring.eval)
    for rec in records:
        path = ev.scoring_result_path(cfg, "base", rec["dataset"], rec["mode"], rec["method"])
        on_disk = read_json(path)
        assert path.name == f"base__{rec['dataset']}__{rec['mode']}__{rec['method']}.json"
        for key in ("model", "dataset", "mode", "method", "srcc", "plcc", "plcc_kind", "n", "n_nan", "profile"):
            assert key in on_disk
        assert on_disk["method"] in ("prob", "num") and on_disk["profile"] == "smoke"
        assert on_disk["n"] + on_disk["n_nan"] == on_disk["n_images"] <= cfg.eval.max_samples
        assert on_disk["plcc_kind"] == "raw"
        preds = pd.read_csv(res.predictions_dir(cfg, "scoring") / f"{path.stem}.csv")
        assert len(preds) == on_disk["n_images"] and {"image", "mos", "pred"} <= set(preds.columns)
        if rec["method"] == "prob":  # Eq. 8 lies in (0.5, 4.5) and always exists
            assert on_disk["n_nan"] == 0 and preds["pred"].between(0.5, 4.5).all()
            assert on_disk["parse_failure_rate"] == 0
        assert 0 <= on_disk["parse_failure_rate"] <= 1 and set(on_disk["ci"]) == {"srcc", "plcc", "srcc_plcc_mean"}
        assert on_disk["ci"]["srcc"]["n"] == on_disk["n"]
    # the tables read these files
    long = tables.load_results(cfg.results_dir, "smoke")
    assert set(long.loc[long["kind"] == "scoring", "model"]) == {"base"}
    t3 = tables.build_table(3, cfg.results_dir, "smoke", runs={"s2": "base"})
    ours = t3[t3["source"] == "ours (smoke)"].iloc[-1]
    rec = next(r for r in records if (r["mode"], r["method"]) == ("no_think", "prob"))
    assert ours["KONIQ SRCC"] == pytest.approx(round(rec["srcc"], 3))


def test_nan_scores_are_counted_and_logistic_fit_is_named(cfg, tiny_policy, monkeypatch):

    def fake_score_images(model, processor, images, mode, method, batch_size, max_new_tokens, **kw):
        out = []
        for i, _ in enumerate(images):
            out.append({"score": float("nan") if i == 0 else float(i), "parsed": i != 0, "text": "x"})
        return out

    monkeypatch.setattr(ev, "score_images", fake_score_images)
    # eval.unparsable: drop (the former behaviour, now a switch): the unparsable answer is counted and excluded
    logistic = load_config(cfg, {"eval.logistic_plcc": True, "eval.unparsable": "drop"})
    rec = ev.evaluate_scoring(logistic, "base", modes=["no_think"], methods=["numeric"], loaded=tiny_policy)[0]
    assert rec["n_nan"] == 1 and rec["n"] == rec["n_images"] - 1
    assert rec["plcc_fit_requested"] == "logistic4" and rec["plcc_kind"] in ("logistic4", "raw")
    assert rec["fallback_prediction"] is None and rec["parse_failure_rate"] == pytest.approx(1 / rec["n_images"])
    assert read_json(ev.scoring_result_path(cfg, "base", "koniq", "no_think", "num"))["n_nan"] == 1


def test_unparsable_answers_get_the_fallback_score_by_default(cfg, tiny_policy, monkeypatch):
    monkeypatch.setattr(ev, "score_images", lambda m, p, images, **kw: [
        {"score": float("nan") if i % 3 == 0 else float(i % 5), "parsed": i % 3 != 0, "text": "x"}
        for i, _ in enumerate(images)])
    rec = ev.evaluate_scoring(cfg, "base", modes=["no_think"], methods=["numeric"], loaded=tiny_policy)[0]
    n = rec["n_images"]
    failed = len(range(0, n, 3))
    assert rec["unparsable"] == "fallback" and rec["fallback_prediction"] == ev.FALLBACK_PREDICTION == 2.5
    assert rec["n"] == n and rec["n_nan"] == 0  # every image counts
    assert rec["n_unparsable"] == failed and rec["parse_failure_rate"] == pytest.approx(failed / n)
    preds = pd.read_csv(res.predictions_dir(cfg, "scoring") / "base__koniq__no_think__num.csv")
    assert preds.loc[preds["pred"].isna(), "pred_used"].eq(2.5).all() and preds["pred_used"].notna().all()
    from refine_iqa_lib.evaluation.metrics import srcc
    assert rec["srcc"] == pytest.approx(srcc(preds["pred_used"], preds["mos"]))
    ci = rec["ci"]["srcc"]
    assert ci["n"] == n and (ci["low"] is None or ci["low"] <= rec["srcc"] <= ci["high"])
    assert rec["ci_method"] == {"method": "percentile", "level": 0.95, "resamples": 2000, "seed": 0, "unit": "image"}


def test_perfect_predictions_give_perfect_correlations(cfg, tiny_policy, monkeypatch):

    df, _ = ev.load_scoring_set(cfg, "koniq")
    mos = dict(zip(df["image"], df["mos"]))
    monkeypatch.setattr(ev, "score_images", lambda m, p, images, **kw: [{"score": mos[i]} for i in images])
    rec = ev.evaluate_scoring(cfg, "base", modes=["no_think"], methods=["prob"], loaded=tiny_policy)[0]
    assert rec["srcc"] == pytest.approx(1.0) and rec["plcc"] == pytest.approx(1.0)


def test_overwrite_false_reuses_only_results_newer_than_the_weights(cfg):
    import os
    import shutil

    final = runs.model_paths(cfg)["s2"] / "final"
    final.mkdir(parents=True, exist_ok=True)
    (final / "config.json").write_text("{}")
    marker = final / "refine_final.json"
    marker.write_text("{}")
    os.utime(marker, (1_000_000, 1_000_000))                  # weights finished long ago
    path = ev.scoring_result_path(cfg, "s2", "koniq", "think", "prob")
    write_json(path, {"model": "s2", "dataset": "koniq", "mode": "think", "method": "prob", "srcc": 0.4,
                      "plcc": 0.3, "plcc_kind": "raw", "n": 5, "n_nan": 0, "profile": "smoke"})
    try:
        recs = ev.evaluate_scoring(cfg, "s2", modes=["think"], methods=["prob"], overwrite=False)
        assert recs[0]["srcc"] == 0.4                         # read back, no model needed
        os.utime(path, (500_000, 500_000))                    # the weights are newer than the result
        assert not res.is_current(cfg, path, "s2")
    finally:
        shutil.rmtree(final.parent)
        path.unlink()


def test_write_record_turns_nan_into_null(tmp_path):
    path = res.write_record(tmp_path / "r.json", {"srcc": float("nan"), "acc": {"a": np.float64("nan"), "b": 0.5},
                                                 "n": np.int64(3)})
    text = path.read_text()
    assert "NaN" not in text
    record = json.loads(text)
    assert set(record.pop("versions")) >= {"torch", "transformers", "trl", "numpy", "pillow"}
    assert record == {"srcc": None, "acc": {"a": None, "b": 0.5}, "n": 3}


def test_our_table_adds_scale_notes_and_writes_files(cfg):
    df = tables.our_table(cfg, 3)
    ours = df[df["source"] != "paper"]
    assert len(ours) == 2 and ours["note"].str.contains("embedded synthetic stand-in").all()
    assert ours["note"].str.contains("not in scoring.eval").all()
    for ext in ("csv", "md", "tex"):
        assert (cfg.results_dir / "tables" / f"table3_smoke.{ext}").is_file()
    assert "not evaluated" not in tables.scale_notes(load_config("paper"), 3)


def test_greedy_generate_is_deterministic_and_batch_independent(tiny_policy):
    from PIL import Image

    model, processor = tiny_policy
    rng = np.random.default_rng(0)
    images = [Image.fromarray(rng.integers(0, 255, (56, 84, 3), dtype=np.uint8)) for _ in range(3)]
    prompts = ["Is it sharp?", "What is shown?", "Rate it."]
    a = greedy_generate(model, processor, images, prompts, max_new_tokens=5, batch_size=3, progress=False)
    b = greedy_generate(model, processor, images, prompts, max_new_tokens=5, batch_size=1, progress=False)
    assert len(a) == 3 and a == b
    with pytest.raises(ValueError, match="one entry per prompt"):
        greedy_generate(model, processor, images[:2], prompts, max_new_tokens=2)


def test_open_image_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        open_image(tmp_path / "missing.png")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    with pytest.raises(ValueError, match="bad.png"):
        open_image(bad)
    assert not math.isnan(res.clean_number(1.5))


def test_think_scoring_generates_once_for_both_methods(cfg, tiny_policy, monkeypatch):
    """Think-mode Eq. 8 reads its think from the numeric pass's greedy completions: one generation
    per image instead of two, and the same records as two separate runs."""
    import refine_iqa_lib.method.scoring as S

    calls = []
    real = S.generate_greedy

    def counted(model, processor, texts, images, max_new_tokens):
        calls.append(len(texts))
        return real(model, processor, texts, images, max_new_tokens)

    monkeypatch.setattr(S, "generate_greedy", counted)
    both = ev.evaluate_scoring(cfg, "base", modes=["think"], methods=["prob", "numeric"], loaded=tiny_policy)
    n = both[0]["n_images"]
    assert sum(calls) == n and [r["method"] for r in both] == ["num", "prob"]
    calls.clear()
    alone = ev.evaluate_scoring(cfg, "base", modes=["think"], methods=["prob"], loaded=tiny_policy)[0]
    assert sum(calls) == n
    prob = next(r for r in both if r["method"] == "prob")
    assert prob["srcc"] == pytest.approx(alone["srcc"]) and prob["pred_mean"] == pytest.approx(alone["pred_mean"])
    with pytest.raises(ValueError, match="one per image"):
        S.score_images(tiny_policy[0], tiny_policy[1], [np.zeros((28, 28, 3), np.uint8)], mode="think",
                       generations=[], progress=False)
