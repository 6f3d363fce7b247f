"""Perception evaluation (Tables 1-2): the all-three description rule, IoU, groups, result files."""
from __future__ import annotations

import json
import string

import pandas as pd
import pytest

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import perception as per
from refine_iqa_lib import generation
from refine_iqa_lib.evaluation import tables
from refine_iqa_lib.io import read_json


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("perception_eval")
    return load_config("smoke", {"warmup.enabled": False, "paths.work_dir": str(root / "work"),
                                 "paths.results_dir": str(root / "results")})


def test_category_keys_are_the_tables_keys():
    assert list(per.CATEGORY_KEYS) == list(D.DISTORTIONS)
    assert sorted(per.CATEGORY_KEYS.values()) == sorted(tables.PERCEPTION_CATEGORIES)


def _rows(image_id, category, ts, obj, iou):
    return [dict(image_id=image_id, task="type_severity", category=category, correct=ts, iou=None),
            dict(image_id=image_id, task="object", category=category, correct=obj, iou=None),
            dict(image_id=image_id, task="grounding", category=category, correct=None, iou=iou)]


def test_description_needs_all_three_attributes():
    rows = (_rows("a", "blur", True, True, 0.9) + _rows("b", "blur", True, False, 0.5)
            + _rows("c", "blur", False, True, 0.1) + _rows("d", "quantization", True, True, 0.0)
            + _rows("e", "noise", False, False, 0.4))
    m = per.perception_metrics(pd.DataFrame(rows))
    d, g = m["description"], m["grounding"]
    assert d["blur"] == pytest.approx(1 / 3) and d["quantization"] == 1.0 and d["noise"] == 0.0
    assert d["easy"] == pytest.approx(1 / 4) and d["hard"] == 1.0 and d["overall"] == pytest.approx(2 / 5)
    assert g["blur"] == pytest.approx(0.5) and g["overall"] == pytest.approx(1.9 / 5)
    assert d["pixelation"] is None and g["pixelation"] is None  # no test image of that category
    assert m["n"] == 5 and m["n_images"]["blur"] == 3 and m["n_incomplete"] == 0
    assert set(d) == set(per.SUMMARY_KEYS)


def test_every_value_carries_a_bootstrap_interval_over_images():
    rows = [r for i in range(40) for r in _rows(f"i{i}", ("blur", "quantization")[i % 2], i % 3 != 0, True, i / 40)]
    m = per.perception_metrics(pd.DataFrame(rows), seed=0, n_resamples=1000)
    for task in ("description", "grounding"):
        for key in per.SUMMARY_KEYS:
            iv, v = m["ci"][task][key], m[task][key]
            if v is None:
                assert iv is None
            else:
                assert iv["low"] <= v <= iv["high"] and iv["n"] == {"overall": 40, "blur": 20, "easy": 20}.get(key, 20)
    assert m["ci"]["description"]["overall"]["high"] > m["ci"]["description"]["overall"]["low"]
    again = per.perception_metrics(pd.DataFrame(rows), seed=0, n_resamples=1000)
    assert again["ci"] == m["ci"]  # seeded
    desc, ground = per.perception_items(pd.DataFrame(rows))
    assert list(desc.columns) == ["image_id", "category", "value"] and len(desc) == len(ground) == 40


def test_incomplete_images_are_counted_not_scored():
    rows = _rows("a", "blur", True, True, 0.9)[:1] + _rows("b", "noise", True, True, 0.5)
    m = per.perception_metrics(pd.DataFrame(rows))
    assert m["n_incomplete"] == 1 and m["n"] == 1 and m["description"]["blur"] is None
    with pytest.raises(ValueError, match="unknown distortion categories"):
        per.perception_metrics(pd.DataFrame(_rows("x", "fog", True, True, 1.0)))


def test_test_samples_are_no_reference_and_keep_whole_images(cfg):
    samples = per.perception_test_samples(cfg)  # builds the perception dataset (missing)
    assert (samples["form"] == "nr").all()
    assert samples.groupby("image_id")["task"].apply(set).map(lambda s: s == {"type", "severity", "object",
                                                                              "grounding"}).all()
    few = per.perception_test_samples(load_config(cfg, {"eval.max_samples": 2}))
    assert few["image_id"].nunique() == 2 and len(few) == 8


def test_evaluate_perception_writes_the_schema(cfg, tiny_policy):
    rec = per.evaluate_perception(cfg, "base", loaded=tiny_policy)
    disk = read_json(per.perception_result_path(cfg, "base"))
    assert disk["model"] == "base" and disk["mode"] == "no_think" and disk["profile"] == "smoke"
    for task in ("description", "grounding"):
        assert set(disk[task]) == set(per.SUMMARY_KEYS)
        assert all(v is None or 0.0 <= v <= 1.0 for v in disk[task].values())
    assert disk["n"] == rec["n"] > 0
    t1 = tables.build_table(1, cfg.results_dir, "smoke")
    base = t1[(t1["source"] == "ours (smoke)") & (t1["Models"] == "Qwen2.5-VL-7B (base)")].iloc[0]
    assert base["Overall"] == pytest.approx(100 * disk["description"]["overall"])


def test_perfect_and_wrong_answers(cfg, tiny_policy, monkeypatch):
    samples = per.perception_test_samples(cfg)
    truth = {row["prompt"].split("\n")[0] + row["image"]: row for _, row in samples.iterrows()}

    def answer(row, wrong_object=False):
        if row["task"] == "grounding":
            return f"<answer>{json.dumps([int(v) for v in row['bbox']])}</answer>"
        opts = list(row["options"])
        k = opts.index(row["answer"])
        if wrong_object and row["task"] == "object":
            k = (k + 1) % len(opts)
        return f"<answer>{string.ascii_uppercase[k]}</answer>"

    def oracle(model, processor, images, prompts, **kw):
        return [answer(truth[p.split("\n")[0] + im]) for im, p in zip(images, prompts)]

    monkeypatch.setattr(generation, "greedy_generate", oracle)
    rec = per.evaluate_perception(cfg, "base", loaded=tiny_policy)
    present = [k for k, n in rec["n_images"].items() if n]
    assert all(rec["description"][k] == 1.0 and rec["grounding"][k] == 1.0 for k in present)
    assert rec["description"]["overall"] == 1.0 and rec["n_unparsed_boxes"] == 0

    monkeypatch.setattr(generation, "greedy_generate", lambda m, p, images, prompts, **kw: [
        answer(truth[q.split("\n")[0] + im], wrong_object=True) for im, q in zip(images, prompts)])
    rec = per.evaluate_perception(cfg, "base", loaded=tiny_policy)
    assert rec["description"]["overall"] == 0.0 and rec["grounding"]["overall"] == 1.0


def test_perception_table_view():
    recs = [{"model": "base", "description": {k: 0.5 for k in per.SUMMARY_KEYS}, "grounding": {}}]
    view = per.perception_table(recs)
    assert view.loc["base", "overall"] == 0.5 and list(view.columns) == list(per.SUMMARY_KEYS)
    with pytest.raises(ValueError, match="unknown perception task"):
        per.perception_table(recs, "counting")
