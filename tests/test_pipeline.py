"""Pipeline stages: quality filter, standardisation, marking, distortion draw, perceptibility,
review and the stratified split."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from PIL import Image

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data.pipeline import (QUALITY_SCORERS, PipelineParams, apply_review, check_categories,
                                          check_severities, draw_distortion, get_quality_scorer, mark_objects,
                                          min_of, perceptibility_stage, process_scene, quality_stage,
                                          register_quality_scorer, standardise, scene_split,
                                          technical_quality, valid_distractors)
from refine_iqa_lib.data.sources import DataError, SceneObject, SourceRecord
from refine_iqa_lib.standin.world import load_photo
from conftest import photo_objects


def test_technical_quality_orders_defects():
    img = load_photo("motorcycle_left")
    small = np.asarray(Image.fromarray(img).resize((112, 84), Image.LANCZOS))
    clean = technical_quality(small)
    assert clean >= 80
    assert technical_quality(D.distort(small, "blur", 3, rng=0, variant="gaussian")) < 20
    assert technical_quality(D.distort(small, "noise", 4, rng=0, variant="gaussian_rgb")) < 30
    assert technical_quality((small * 0.05).astype(np.uint8)) < 20
    assert technical_quality(np.full((84, 112, 3), 255, np.uint8)) == 0


def test_scorer_registry():
    assert set(QUALITY_SCORERS) >= {"default", "none"}
    with pytest.raises(DataError, match="unknown quality scorer 'qalign'"):
        get_quality_scorer("qalign")
    assert get_quality_scorer("refine_iqa_lib.data.pipeline:technical_quality") is technical_quality
    with pytest.raises(DataError, match="cannot import"):
        get_quality_scorer("no_such_module:f")
    register_quality_scorer("test_ensemble", min_of(lambda im: 90.0, lambda im: 60.0))
    ok, score = quality_stage(np.zeros((28, 28, 3), np.uint8), PipelineParams(quality_scorer="test_ensemble",
                                                                              quality_threshold=80))
    assert (ok, score) == (False, 60.0)


def test_params_validation(smoke_cfg):
    from refine_iqa_lib.config import ConfigError, load_config

    assert PipelineParams.from_config(smoke_cfg).categories == D.DISTORTIONS
    with pytest.raises(DataError, match=r"unknown distortion category \['fog'\]"):
        PipelineParams.from_config(load_config("smoke", {"perception.categories": ["blur", "fog"]}))
    with pytest.raises(DataError, match=r"unknown severity \[6\]"):
        check_severities([1, 6])
    with pytest.raises(ConfigError, match="--set perception.image_size=100: perception.image_size = 100: "
                                          "expected a positive multiple of 28"):
        load_config("smoke", {"perception.image_size": 100})
    assert check_categories([]) == D.DISTORTIONS


def test_standardise_scales_and_drops_with_reasons():
    img = np.zeros((400, 600, 3), np.uint8)
    objs = [SceneObject("big", (0, 0, 300, 200)), SceneObject("tiny", (500, 300, 530, 330)),
            SceneObject("outside", (550, 0, 700, 50)), SceneObject("flat", (10, 10, 10, 50))]
    out, kept, skips = standardise(img, objs, PipelineParams(image_size=112, min_object_area=0.0), "s1")
    assert out.shape == (84, 112, 3)
    assert kept == [SceneObject("big", (0, 0, 56, 42))]
    assert [s.reason for s in skips] == ["object too small after resize", "box outside image", "degenerate box"]
    assert all(s.detail.startswith("s1 object") for s in skips)


def test_valid_distractors_and_marking():
    objs = [SceneObject("saucer", (0, 0, 100, 100)), SceneObject("cup", (20, 20, 60, 60)),
            SceneObject("table", (90, 0, 200, 100))]
    assert valid_distractors(objs, 0) == [2]            # the cup lies inside the saucer
    assert valid_distractors(objs, 1) == [0, 2]
    kept, marks, skips = mark_objects(objs[:2], 5, "s")
    assert [kept[j].name for j, _ in marks] == ["cup"]  # the saucer has nothing to confuse it with
    assert skips[0].reason == "no distinguishable distractor"
    kept, marks, skips = mark_objects(objs, 2, "s")
    assert [o.name for o in kept] == ["saucer", "table"] and skips[0].reason == "beyond max_objects"


def test_draw_distortion_uniform_and_pairs():
    rng = np.random.default_rng(0)
    draws = [draw_distortion(rng, D.DISTORTIONS, (1, 2, 3, 4, 5)) for _ in range(6000)]
    cats = Counter(d[0][0] for d in draws)
    assert set(cats) == set(D.DISTORTIONS) and min(cats.values()) > 400
    pairs = [draw_distortion(rng, D.DISTORTIONS, (1, 2, 3, 4, 5), combo_prob=1.0) for _ in range(500)]
    assert all(len(p) == 2 for p in pairs)
    for (c1, s1), (c2, s2) in pairs:
        assert c2 in D.ALLOWED_PAIRS[c1] and s1 in (1, 2, 3) and s2 in (1, 2, 3)
    only = [draw_distortion(rng, ["oversharpen", "blur"], (4,), combo_prob=1.0) for _ in range(50)]
    assert all(len(p) == 1 for p in only)  # no allowed partner in the pool -> single distortion


def test_perceptibility_rejects_identical_and_handles_small_boxes():
    img = load_photo("chelsea")[:100, :100]
    assert perceptibility_stage(img, img.copy(), (10, 10, 60, 60), 0.01) == (False, 0.0)
    out = D.distort(img, "noise", 5, bbox=(10, 10, 18, 18), rng=0, variant="gaussian_rgb")
    ok, s = perceptibility_stage(img, out, (10, 10, 18, 18), 0.01)
    assert ok and s > 0.01


def _scene(objs, array=None, path=None):
    return SourceRecord("test:x", objs, array=array, path=path, where="test record")


def test_process_scene_end_to_end_and_deterministic():
    rec = _scene(photo_objects("motorcycle_left"), array=load_photo("motorcycle_left"))
    params = PipelineParams(max_pixels=112 * 112)
    a, b = process_scene(3, rec, params), process_scene(3, rec, params)
    assert a.reached == ["decoded", "quality", "objects"]
    assert a.reference.shape == (84, 112, 3)
    assert [m.row for m in a.marked] == [m.row for m in b.marked]
    for m in a.marked:
        assert m.row["id"].startswith("s000003_o") and m.row["status"] in ("accepted", "not perceptible")
        if m.array is not None:
            x1, y1, x2, y2 = m.row["bbox"]
            outside = np.ones(m.array.shape[:2], bool)
            outside[y1:y2, x1:x2] = False
            assert np.array_equal(m.array[outside], a.reference[outside])  # only the box changes
            assert np.array_equal(m.array, next(n.array for n in b.marked if n.row["id"] == m.row["id"]))


def test_process_scene_bad_inputs(tmp_path):
    photo = load_photo("coffee")
    objs = list(photo_objects("coffee"))
    Image.fromarray(photo).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[:1000])
    res = process_scene(0, _scene(objs, path=tmp_path / "trunc.png"), PipelineParams())
    assert res.reached == [] and res.skips[0].reason == "unreadable image" and "trunc.png" in res.skips[0].detail
    gray16 = (np.asarray(Image.fromarray(photo).convert("L")).astype(np.uint16) * 257)
    Image.fromarray(gray16).save(tmp_path / "g16.png")
    res = process_scene(1, _scene(objs, path=tmp_path / "g16.png"), PipelineParams(quality_scorer="none"))
    assert res.reached == ["decoded", "quality", "objects"] and res.marked
    res = process_scene(2, _scene(objs[:1] + [SceneObject("ghost", (700, 0, 800, 50))], array=photo), PipelineParams())
    assert "box outside image" in [s.reason for s in res.skips]
    assert res.skips[-1].reason == "fewer than 2 distinct objects"
    dark = (photo // 40).astype(np.uint8)
    res = process_scene(3, _scene(objs, array=dark), PipelineParams())
    assert res.skips[-1].reason == "below quality threshold" and res.reached == ["decoded"]


def test_review_and_scene_split():
    rows = [{"id": f"i{k}"} for k in range(4)]
    kept, rejected = apply_review(rows, {"i1": "reject", "i2": "accept"})
    assert [r["id"] for r in kept] == ["i0", "i2", "i3"] and [r["id"] for r in rejected] == ["i1"]
    rng = np.random.default_rng(0)
    scenes = [f"s{k}" for k in range(200) for _ in range(int(rng.integers(1, 6)))]
    mask = scene_split(scenes, 150, np.random.default_rng(1))
    assert 150 <= mask.sum() < 150 + 5
    by_scene = {}
    for s, m in zip(scenes, mask):
        by_scene.setdefault(s, set()).add(bool(m))
    assert all(len(v) == 1 for v in by_scene.values())          # no scene on both sides
    assert np.array_equal(mask, scene_split(scenes, 150, np.random.default_rng(1)))
    with pytest.raises(DataError, match="test_size 5000"):
        scene_split(scenes, 5000, rng)
