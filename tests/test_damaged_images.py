"""Damaged image files (zero-byte, cut to 100 bytes, cut half way; JPEG and PNG) are found by
decoding, named with their reason, and never crash an evaluation or a training run half way."""
from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from refine_iqa_lib import generation
from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import perception, qbench
from refine_iqa_lib.evaluation import results as res
from refine_iqa_lib.evaluation import scoring_eval as ev
from refine_iqa_lib.io import ImageReadError, check_images, open_image, read_json
from refine_iqa_lib.training.data import DatasetCheckError, check_images_load


@pytest.fixture
def cfg(tmp_path):
    return load_config("smoke", {"warmup.enabled": False, "paths.work_dir": str(tmp_path / "work"),
                                 "paths.results_dir": str(tmp_path / "results"),
                                 "paths.figures_dir": str(tmp_path / "fig")})


def test_every_damaged_file_fails_to_open_naming_it(damaged_images):
    for p in damaged_images["bad"]:
        with pytest.raises(ImageReadError, match=f"{Path(p).name}: not a readable image"):
            open_image(p)
    assert all(open_image(p).size == (64, 48) for p in damaged_images["good"])


def test_check_images_decodes_and_reports_unreadable_beside_missing(damaged_images, tmp_path):
    gone = str(tmp_path / "gone.jpg")
    paths = damaged_images["good"] + damaged_images["bad"] + [gone, damaged_images["bad"][0]]
    report = check_images(paths, workers=3, progress=False)
    assert report.n_images == 9 and not report.ok
    assert report.missing == (gone,)
    assert [p for p, _ in report.unreadable] == damaged_images["bad"]
    assert all(r.startswith("not a readable image") for _, r in report.unreadable)
    text = str(report)
    assert "1 of 9 image files missing" in text and "6 of 9 image files unreadable" in text
    assert "truncated" in text  # PIL's reason for the half-cut files is kept
    assert check_images(pd.DataFrame({"image": damaged_images["good"]}), progress=False).ok
    with pytest.raises(ValueError, match="no 'image' column"):
        check_images(pd.DataFrame({"path": []}))


def test_training_precheck_decodes_fully(damaged_images):
    assert check_images_load(damaged_images["good"], "test data") == 2
    for p in damaged_images["bad"]:
        with pytest.raises(DatasetCheckError, match=rf"test data: 1 of 2 image file\(s\) cannot be loaded, "
                                                    rf"e.g. .*{Path(p).name} \(not a readable image"):
            check_images_load([damaged_images["good"][0], p], "test data")


def _scoring_rows(paths):
    return pd.DataFrame({"dataset": "koniq", "image": paths, "mos": [1.0 + i for i in range(len(paths))],
                         "split": "test"})


def _no_model(*a, **k):
    raise AssertionError("the model was loaded before the images were checked")


def test_evaluate_scoring_stops_before_the_model_naming_unreadable(cfg, damaged_images, monkeypatch):
    rows = _scoring_rows(damaged_images["good"] + damaged_images["bad"])
    monkeypatch.setattr(ev, "load_scoring_set", lambda c, d, split=None: (rows, "test"))
    monkeypatch.setattr(ev, "load_eval_model", _no_model)
    with pytest.raises(ImageReadError) as e:
        ev.evaluate_scoring(cfg, "s2", modes=["no_think"], methods=["prob"])
    msg = str(e.value)
    assert msg.startswith("koniq (test) test images: 6 of 8 image files unreadable")
    assert all(Path(p).name in msg for p in damaged_images["bad"][:5]) and "eval.skip_unreadable" in msg
    assert not ev.scoring_result_path(cfg, "s2", "koniq", "no_think", "prob").exists()


def test_evaluate_scoring_can_score_the_rest_and_list_the_unreadable(cfg, damaged_images, monkeypatch):

    rows = _scoring_rows(damaged_images["good"] + damaged_images["bad"])
    seen = []
    monkeypatch.setattr(ev, "load_scoring_set", lambda c, d, split=None: (rows, "test"))
    monkeypatch.setattr(ev, "eval_model_path", lambda c, n: Path("/models/x"))
    monkeypatch.setattr(ev, "score_images", lambda m, p, images, **kw: seen.extend(images) or
                        [{"score": float(i)} for i, _ in enumerate(images)])
    skip = load_config(cfg, {"eval.skip_unreadable": True})
    rec = ev.evaluate_scoring(skip, "s2", modes=["no_think"], methods=["prob"], loaded=("model", "processor"))[0]
    assert seen == damaged_images["good"] and rec["n_images"] == 2
    assert [u["image"] for u in rec["unreadable"]] == damaged_images["bad"]
    disk = read_json(ev.scoring_result_path(cfg, "s2", "koniq", "no_think", "prob"))
    assert disk["unreadable"] == rec["unreadable"] and "truncated" in " ".join(u["reason"] for u in disk["unreadable"])


def test_perception_and_qbench_stop_before_the_model(cfg, damaged_images, monkeypatch):
    rows = pd.DataFrame({"image": damaged_images["good"] + damaged_images["bad"]})
    monkeypatch.setattr(res, "load_eval_model", _no_model)
    monkeypatch.setattr(perception, "perception_test_samples", lambda c, d=None: rows)
    monkeypatch.setattr(qbench, "load_qbench_questions", lambda c: rows)
    with pytest.raises(ImageReadError, match="perception test images: 6 of 8 image files unreadable"):
        perception.evaluate_perception(cfg, "s1")
    with pytest.raises(ImageReadError, match="Q-Bench images: 6 of 8 image files unreadable"):
        qbench.evaluate_qbench(cfg, "s2")


def test_qbench_skip_mode_answers_the_rest(cfg, damaged_images, monkeypatch):
    good, bad = damaged_images["good"], damaged_images["bad"]
    qs = pd.DataFrame([{"id": i, "image": p, "question": "Is it blurry?", "candidates": ["Yes", "No"],
                        "answer": "Yes", "answer_index": 0, "type_name": "yes_no", "concern_name": "technical"}
                       for i, p in enumerate(good + bad)])
    monkeypatch.setattr(qbench, "load_qbench_questions", lambda c: qs)
    monkeypatch.setattr(res, "eval_model_path", lambda c, n: Path("/models/x"))
    monkeypatch.setattr(generation, "greedy_generate", lambda m, p, images, prompts, **kw: ["A"] * len(images))
    skip = load_config(cfg, {"eval.skip_unreadable": True})
    rec = qbench.evaluate_qbench(skip, "s2", modes=["no_think"], loaded=("model", "processor"))[0]
    assert rec["n"] == 2 and rec["accuracy"]["overall"] == 1.0
    assert [u["image"] for u in rec["unreadable"]] == bad
