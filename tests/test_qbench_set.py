"""The embedded Q-Bench stand-in: Q-Bench A1's format, answers that follow the documented rules,
determinism and reuse."""
from __future__ import annotations

import json

import numpy as np
import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.standin import qbench_set as Q
from refine_iqa_lib.data.iqa import QBENCH_CONCERNS, QBENCH_TYPES, load_qbench
from refine_iqa_lib.data.stage1 import load_perception_images


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("qbench_set")
    return load_config("smoke", {"paths.work_dir": str(root / "work"), "paths.results_dir": str(root / "results")})


@pytest.fixture(scope="module")
def built(cfg):
    return Q.build_embedded_qbench(cfg)  # builds the perception dataset first (it is missing)


def _records(folder):
    return json.loads((folder / Q.QUESTIONS_FILE).read_text())


def test_files_are_in_qbench_a1_format(built):
    records = _records(built)
    assert records, "no questions"
    for r in records:
        assert set(r) == {"img_path", "question", "candidates", "correct_ans", "type", "concern"}
        assert 2 <= len(r["candidates"]) <= 4 and len(set(r["candidates"])) == len(r["candidates"])
        assert r["correct_ans"] in r["candidates"]
        assert r["type"] in QBENCH_TYPES and r["concern"] in QBENCH_CONCERNS
        assert (built / "images" / r["img_path"]).is_file()
        if r["type"] == 0:
            assert r["candidates"] == ["Yes", "No"]
    assert {r["type"] for r in records} == {0, 1, 2}
    assert {r["concern"] for r in records} == {0, 1, 2, 3}
    assert "SYNTHETIC" in (built / "README.txt").read_text()
    df = load_qbench(built, "dev")  # the real loader reads it
    assert len(df) == len(records) and df["scorable"].all()


def test_distortion_answers_come_from_the_build(cfg, built):
    rows = {r["id"]: r for r in load_perception_images(cfg.work_dir / "perception", "test").to_dict("records")}
    phrases = {Q._cap(v): k for k, v in Q.DISTORTION_PHRASES.items()}
    checked = 0
    for r in _records(built):
        row = rows[r["img_path"].rsplit(".", 1)[0]]
        q = r["question"]
        if r["type"] == 1 and r["concern"] in (0, 2):
            assert phrases[r["correct_ans"]] == row["categories"][0]
            assert not any(phrases[c] in row["categories"] for c in r["candidates"] if c != r["correct_ans"])
            checked += 1
        elif r["type"] == 2 and r["concern"] in (0, 2):
            assert r["correct_ans"].lower() == Q.SEVERITY_NAMES[row["severity"] - 1]
            checked += 1
        elif r["type"] == 0 and r["concern"] == 2:
            named = q[len("Is the "):-len(" region distorted?")]
            assert (r["correct_ans"] == "Yes") == (named == row["object"])
            checked += 1
        elif r["type"] == 0 and r["concern"] == 0:
            asked = next(k for k, v in Q.DISTORTION_PHRASES.items() if f"there {v} in" in q)
            assert (r["correct_ans"] == "Yes") == (asked in row["categories"])
            checked += 1
    assert checked > 0


def test_deterministic_and_reused(cfg, built):
    first = (built / Q.QUESTIONS_FILE).read_bytes()
    mtime = (built / Q.QUESTIONS_FILE).stat().st_mtime_ns
    assert Q.build_embedded_qbench(cfg) == built
    assert (built / Q.QUESTIONS_FILE).stat().st_mtime_ns == mtime  # reused, not rebuilt
    Q.build_embedded_qbench(cfg, force=True)
    assert (built / Q.QUESTIONS_FILE).read_bytes() == first


def test_pixel_attributes():
    dark, bright = np.full((8, 8, 3), 30, np.uint8), np.full((8, 8, 3), 230, np.uint8)
    assert Q.brightness(dark)[0] == "dark" and Q.brightness(bright)[0] == "bright"
    assert Q.brightness(np.full((8, 8, 3), 128, np.uint8))[0] == "medium"
    assert Q.brightness(np.full((8, 8, 3), 172, np.uint8))[0] is None  # too close to 2/3: not asked
    for rgb, name in (((20, 40, 220), "blue"), ((30, 200, 40), "green"), ((240, 240, 240), "white"),
                      ((10, 10, 10), "black"), ((128, 128, 128), "gray"), ((230, 220, 20), "yellow")):
        shares = Q.colour_shares(np.tile(np.array(rgb, np.uint8), (6, 6, 1)))
        assert shares[name] == 1.0 and sum(shares.values()) == pytest.approx(1.0)
    half = np.concatenate([np.tile(np.array((20, 40, 220), np.uint8), (6, 3, 1)),
                           np.tile(np.array((30, 200, 40), np.uint8), (6, 3, 1))], axis=1)
    assert Q._dominant(half) is None  # a tie is not clear-cut


def test_questions_for_a_synthetic_image():
    img = np.zeros((60, 80, 3), np.uint8)
    img[:, :] = (20, 30, 200)  # blue, medium-dark
    img[10:40, 10:40] = (240, 240, 240)  # a bright white object
    row = {"categories": ["noise"], "severity": 4, "object": "sign", "bbox": [10, 10, 40, 40],
           "objects": [{"name": "sign", "bbox": [10, 10, 40, 40]}, {"name": "sky", "bbox": [50, 0, 80, 30]}]}
    a = Q.questions_for_image(row, img, index=5, seed=0)
    assert a == Q.questions_for_image(row, img, index=5, seed=0)
    assert [q["concern"] for q in a] == [0, 1, 2, 3]
    for q in a:
        if q["concern"] == 3 and q["type"] == 1:
            assert q["correct_ans"] == "White"
        if q["concern"] == 3 and q["type"] == 0:
            assert q["correct_ans"] == "Yes"  # the white box is brighter than the blue rest
        if q["concern"] == 2 and q["type"] == 2:
            assert q["correct_ans"] == "Severe"
    types = {(q["concern"], q["type"]) for i in range(3) for q in Q.questions_for_image(row, img, i)}
    assert {t for c, t in types if c == 2} == {0, 1, 2}  # types rotate with the image index
