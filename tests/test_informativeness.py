"""Base informativeness: the table's schema, intervals and targets from the values."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.data.scoring_data import load_scoring_split
from refine_iqa_lib.standin.informativeness import (COLUMNS, TARGETS, base_informativeness, description_chance,
                                                       target_met)

PERCEPTION = ["type_accuracy", "type_chance", "severity_accuracy", "severity_chance", "object_accuracy",
              "object_chance", "description_accuracy", "description_chance", "description_vs_chance",
              "grounding_iou", "letter_parse_rate", "box_parse_rate"]
SCORING = ["eq8_srcc_no_think", "score_parse_rate", "think_parse_rate"]
METRICS = PERCEPTION + SCORING


@pytest.fixture(scope="module")
def table(tmp_path_factory, tiny_model_dir, tiny_policy):
    from refine_iqa_lib.data.build import build_perception_dataset

    root = tmp_path_factory.mktemp("informativeness")
    cfg = load_config("smoke", {"paths.work_dir": str(root / "work"), "paths.results_dir": str(root / "results"),
                                "eval.ci_resamples": 1000})
    build_perception_dataset(cfg, progress=False)
    t = base_informativeness(cfg, tiny_model_dir, max_images=6, max_scoring=10, max_new_tokens=8, loaded=tiny_policy)
    t.attrs["n_val"] = len(load_scoring_split(cfg, cfg.scoring.train[0], "val"))
    return t


def test_schema_and_sizes(table):
    assert list(table.columns) == list(COLUMNS) and table["metric"].tolist() == METRICS
    by = table.set_index("metric")
    assert (by.loc[PERCEPTION, "split"] == "validation").all()     # the held-out validation scenes
    assert (by.loc[SCORING, "split"] == "val").all()
    n_scoring = min(10, table.attrs["n_val"])   # the smoke build's validation split is small
    assert (by.loc[SCORING, "n"] == n_scoring).all()
    n_images = by.loc["description_accuracy", "n"]
    assert 0 < n_images <= 6 and by.loc["grounding_iou", "n"] == n_images
    assert by.loc["letter_parse_rate", "n"] == 3 * n_images       # type, severity, object per image
    assert 0 < by.loc["description_chance", "value"] < 1
    for r in table.to_dict("records"):   # every interval brackets its value (or is undefined)
        if np.isfinite(r["low"]) and np.isfinite(r["value"]):
            assert r["low"] - 1e-9 <= r["value"] <= r["high"] + 1e-9, r
    acc, chance = by.loc["description_accuracy", "value"], by.loc["description_chance", "value"]
    assert by.loc["description_vs_chance", "value"] == pytest.approx(acc / chance)
    assert 0 <= by.loc["think_parse_rate", "value"] <= 1
    assert table.attrs["scoring_split"] == "val" and table.attrs["max_images"] == 6


def test_targets_follow_the_values(table):
    for r in table.to_dict("records"):
        if r["metric"] in TARGETS:
            assert r["target"] == TARGETS[r["metric"]][0]
            assert r["target_met"] == ("yes" if np.isfinite(r["value"]) and TARGETS[r["metric"]][1](r["value"]) else "no")
        else:
            assert r["target"] == "" and r["target_met"] == ""
    assert [target_met("description_vs_chance", v) for v in (2.9, 3.0)] == ["no", "yes"]
    assert [target_met("eq8_srcc_no_think", v) for v in (0.29, 0.5, 0.81, float("nan"))] == ["no", "yes", "no", "no"]
    assert [target_met("think_parse_rate", v) for v in (0.949, 0.95)] == ["no", "yes"]
    assert [target_met("grounding_iou", v) for v in (0.199, 0.2)] == ["no", "yes"]
    assert [target_met("type_accuracy", v) for v in (0.19, 0.2, 0.8, 0.81)] == ["no", "yes", "yes", "no"]


def test_chance_is_the_product_of_one_over_the_options():
    rows = pd.DataFrame({"image_id": ["a"] * 3 + ["b"] * 3,
                         "task": ["type", "severity", "object"] * 2,
                         "options": [list("A" * 12), list("A" * 5), list("AB")] + [list("A" * 12), list("A" * 5), list("ABC")]})
    got = description_chance(rows)
    assert got["a"] == pytest.approx(1 / 120) and got["b"] == pytest.approx(1 / 180)
    with pytest.raises(ValueError, match="without options"):
        description_chance(rows.assign(options=[[]] + list(rows["options"][1:])))


def test_unknown_split_is_refused(tiny_model_dir):
    with pytest.raises(ValueError, match="expected one of validation"):
        base_informativeness(load_config("smoke"), tiny_model_dir, split="dev")


def test_committed_table_is_read_back_and_a_wrong_file_is_named(tmp_path):
    from refine_iqa_lib.standin.informativeness import INFORMATIVENESS_FILE, committed_informativeness

    cfg = load_config("smoke", {"warmup.prebuilt": str(tmp_path)})
    assert committed_informativeness(cfg) is None                     # no file yet
    rows = pd.DataFrame([{"metric": "grounding_iou", "split": "validation", "value": 0.25, "low": 0.2, "high": 0.3,
                          "n": 200, "target": ">= 0.2", "target_met": "yes"}], columns=list(COLUMNS))
    rows.to_csv(tmp_path / INFORMATIVENESS_FILE, index=False)
    back = committed_informativeness(cfg)
    assert back.loc[0, "value"] == 0.25 and back.loc[0, "target_met"] == "yes"
    rows.drop(columns="n").to_csv(tmp_path / INFORMATIVENESS_FILE, index=False)
    with pytest.raises(ValueError, match=INFORMATIVENESS_FILE):
        committed_informativeness(cfg)
    assert committed_informativeness(load_config("smoke", {"warmup.prebuilt": ""})) is None
