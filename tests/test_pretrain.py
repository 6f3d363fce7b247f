"""The stand-in pre-training data (refine_iqa_lib.standin.pretrain_data): training-side pictures only,
no Stage-1 answers or MOS, uniform letters, seeded, boxes that match their sources."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import chisquare

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data import stage1
from refine_iqa_lib.data.audit import SplitOverlapError, content_hash, hash_images
from refine_iqa_lib.data.build import build_perception_dataset
from refine_iqa_lib.standin.perceive import describe, pixel_stats, words
from refine_iqa_lib.standin.pretrain_data import (ATTRIBUTES, DEFAULT_ATTRIBUTES, NONE_OPTION, TASKS, Picture, attribute_target,
                                          build_pretrain_samples, heldout_images, pretrain_pictures,
                                          write_pretrain_dataset)
from refine_iqa_lib.standin.qbench_set import build_embedded_qbench
from refine_iqa_lib.standin.scenes import EmbeddedSource
from refine_iqa_lib.standin.scoring_set import build_embedded_scoring_set, photo_splits
from refine_iqa_lib.io import open_image, read_json, read_jsonl
from refine_iqa_lib.prompts import format_mos_text

N = 600
SHARES = {"name_object": 0.25, "object_box": 0.25, "global_distortion": 0.3, "rate_attribute": 0.2}


def _cfg(root: Path, **pretrain):
    over = {"paths.work_dir": str(root / "work"), "paths.results_dir": str(root / "results"),
            "pretrain.task_shares": SHARES, **{f"pretrain.{k}": v for k, v in pretrain.items()}}
    return load_config("smoke", over)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    cfg = _cfg(root)
    build_perception_dataset(cfg, progress=False)
    build_embedded_scoring_set(cfg)
    build_embedded_qbench(cfg)
    out = write_pretrain_dataset(cfg, n_samples=N)
    return cfg, out, read_jsonl(out / "samples.jsonl")


def _think(completion: str) -> str | None:
    m = re.fullmatch(r"<think>(.*)</think><answer>.*</answer>", completion, flags=re.S)
    return m.group(1) if m else None


# --------------------------------------------------------------------------- pictures / audit
def test_every_heldout_collection_is_checked_and_disjoint(built):
    cfg, out, _ = built
    stamp = read_json(out / "pretrain_set.json")
    assert stamp["checked"] == ["Q-Bench stand-in", "perception test", "scoring test", "scoring validation"]
    assert all(a["n_shared"] == 0 and a["n_heldout"] > 0 for a in stamp["audit"].values())
    ours = set(hash_images(sorted(out.rglob("*.png"))))
    for name, files in heldout_images(cfg).items():
        assert ours.isdisjoint(hash_images(files)), name


def test_pictures_come_from_training_sides_only(built):
    cfg, _, _ = built
    pics = pretrain_pictures(cfg)
    train = stage1.load_perception_images(cfg.work_dir / "perception", "train")
    test = stage1.load_perception_images(cfg.work_dir / "perception", "test")
    train_scenes, test_scenes = set(train["scene"]), set(test["scene"])
    splits = photo_splits(cfg.scoring.seed)
    training_photos, heldout = set(splits["training"]), set(splits["test"]) | set(splits["validation"])
    pc = cfg.perception
    source = EmbeddedSource(pc.image_size, cfg.model.max_pixels, pc.seed, pc.min_box_side, pc.min_object_area)
    for p in pics:
        if p.origin == "perception_train_scene":
            scene = p.id.removeprefix("scene_")
            assert scene in train_scenes and scene not in test_scenes, p.id
            kind, ident = p.source.split(":")[1:]
            meta = source.composite(int(ident)).meta if kind == "composite" else {"background": ident, "pasted": []}
            used = {meta["background"], *(x["photo"] for x in meta["pasted"])}
            assert used.isdisjoint(heldout), (p.id, used & heldout)  # no pixel of a held-out photograph
        else:
            assert p.origin == "scoring_train_photo" and p.source.split(":")[1] in training_photos, p.id
    assert {p.origin for p in pics} == {"perception_train_scene", "scoring_train_photo"}
    assert len({content_hash(p.array) for p in pics}) == len(pics)  # no picture twice


@pytest.mark.parametrize("collection", ["perception test", "scoring test", "scoring validation", "Q-Bench stand-in"])
def test_planted_heldout_picture_fails_the_build_naming_it(built, tmp_path, collection):
    cfg, _, _ = built
    planted_file = heldout_images(cfg)[collection][0]
    planted = Picture("planted_one", "scoring_train_photo", "photo:planted",
                      np.asarray(open_image(planted_file), dtype=np.uint8))
    out = tmp_path / "pt"
    with pytest.raises(SplitOverlapError) as e:
        write_pretrain_dataset(cfg, out, pictures=pretrain_pictures(cfg) + [planted], n_samples=20)
    msg = str(e.value)
    assert "pictures/planted_one.png" in msg and collection in msg and planted_file.name in msg
    assert not out.exists()  # nothing written


# --------------------------------------------------------------------------- content
def test_no_stage1_layout_no_mos(built):
    _, out, rows = built
    stage1_questions = set(stage1.QUESTIONS.values()) if isinstance(stage1.QUESTIONS, dict) else set()
    for r in rows:
        assert "degraded region" not in r["prompt"] and "pristine reference" not in r["prompt"], r["id"]
        assert not any(q and q in r["prompt"] for q in stage1_questions if isinstance(q, str)), r["id"]
        assert not any(s in opt for opt in r["options"] for s in ("slight", "severe", "noticeable")), r["id"]
    pool = {stage1.category_label(c) for c in stage1.D.DISTORTIONS} | {NONE_OPTION}
    for r in (r for r in rows if r["task"] == "global_distortion"):
        assert set(r["options"]) <= pool and r["options"][ord(r["answer_letter"]) - 65] == r["answer"], r["id"]
        img = np.asarray(open_image(out / r["images"][0]))
        assert (r["answer"] == NONE_OPTION) == r["images"][0].startswith("pictures/"), r["id"]
        assert img.ndim == 3
    rated = [r for r in rows if r["task"] == "rate_attribute"]
    assert {r["attribute"] for r in rated} == set(DEFAULT_ATTRIBUTES)   # "undistorted" only when asked for
    for r in rated:  # the target is the documented map of the shown picture's pixel statistics
        target = attribute_target(r["attribute"], pixel_stats(open_image(out / r["images"][0])))
        assert target == pytest.approx(r["target"], abs=1e-6), r["id"]
        assert r["answer"] == format_mos_text(target) and r["completion"].endswith(f"<answer>{r['answer']}</answer>")


def test_letters_uniform_modes_present_thinks_vary(built):
    _, out, rows = built
    assert Counter(r["task"] for r in rows) == {"name_object": 150, "object_box": 150, "global_distortion": 180,
                                               "rate_attribute": 120}
    letters = Counter(r["answer_letter"] for r in rows if r["options"])
    counts = [letters[x] for x in "ABCD"]
    assert set(letters) == set("ABCD") and chisquare(counts).pvalue > 0.01, counts
    for task in TASKS:
        assert {r["mode"] for r in rows if r["task"] == task} == {"think", "no_think"}, task
    lengths = []
    for r in rows:
        think = _think(r["completion"])
        if r["mode"] == "no_think":
            assert think is None and r["completion"].startswith("<answer>"), r["id"]
            continue
        assert think == describe(np.asarray(open_image(out / r["images"][0])), seed=r["think_seed"]), r["id"]
        lengths.append(len(words(think)))
    assert len(set(lengths)) >= 8 and np.median(lengths) >= 12, sorted(Counter(lengths).items())


def test_object_answers_match_source_boxes(built):
    cfg, out, rows = built
    pics = {p.id: p for p in pretrain_pictures(cfg)}
    train = stage1.load_perception_images(cfg.work_dir / "perception", "train")
    scene_objects = {f"scene_{r['scene']}": {o["name"]: o["bbox"] for o in r["objects"]}
                     for r in train.to_dict("records")}
    for r in (r for r in rows if r["task"] in ("object_box", "name_object")):
        assert r["images"] == [f"pictures/{r['picture']}.png"], r["id"]  # nothing distorted in object tasks
        h, w = np.asarray(open_image(out / r["images"][0])).shape[:2]
        x1, y1, x2, y2 = r["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, r["id"]
        assert dict(pics[r["picture"]].objects)[r["object"]] == tuple(r["box"]), r["id"]
        if r["picture"] in scene_objects and cfg.pretrain.image_size == cfg.perception.image_size:
            assert scene_objects[r["picture"]][r["object"]] == r["box"], r["id"]
        if r["task"] == "object_box":
            assert r["completion"].endswith(f"<answer>[{x1}, {y1}, {x2}, {y2}]</answer>"), r["id"]
        else:
            assert r["options"][ord(r["answer_letter"]) - 65] == r["object"], r["id"]
            assert f"[{x1}, {y1}, {x2}, {y2}]" in r["prompt"]


# --------------------------------------------------------------------------- determinism, reuse, config
def test_deterministic_by_seed_and_reused(built, tmp_path):
    cfg, out, rows = built
    a, b = build_pretrain_samples(cfg, 80, seed=3), build_pretrain_samples(cfg, 80, seed=3)
    assert a.samples == b.samples and a.images.keys() == b.images.keys()
    assert all(np.array_equal(a.images[k], b.images[k]) for k in a.images)
    assert build_pretrain_samples(cfg, 80, seed=4).samples != a.samples
    assert rows[:80] != a.samples  # seed 0 differs from seed 3
    mtime = (out / "samples.jsonl").stat().st_mtime_ns
    assert write_pretrain_dataset(cfg, n_samples=N) == out and (out / "samples.jsonl").stat().st_mtime_ns == mtime
    again = write_pretrain_dataset(cfg, tmp_path / "again", n_samples=N)
    assert (again / "samples.jsonl").read_bytes() == (out / "samples.jsonl").read_bytes()


def test_config_section_defaults_and_checks(tmp_path):
    from refine_iqa_lib.config import PretrainConfig

    cfg = load_config("smoke")
    assert PretrainConfig().n_samples == 6000 and cfg.pretrain.n_samples == 48   # smoke's warm-up draws from 48
    assert set(cfg.pretrain.task_shares) == set(TASKS)
    with pytest.raises(ConfigError, match="pretrain.think_share"):
        load_config("smoke", {"pretrain.think_share": 1.5})
    with pytest.raises(ConfigError, match="pretrain.image_size"):
        load_config("smoke", {"pretrain.image_size": 100})
    bad = _cfg(tmp_path, task_shares={"name_object": 1.0, "grounding": 1.0})
    with pytest.raises(ValueError, match="unknown task.*grounding"):
        build_pretrain_samples(bad, 5, pictures=[Picture("p", "scoring_train_photo", "photo:x",
                                                         np.zeros((56, 56, 3), np.uint8), [("cup", (0, 0, 20, 20))])])


def test_undistorted_attribute_rates_the_distortion_strength(built):
    """pretrain.attributes with "undistorted": its targets are 4.9 - 0.98 x the global distortion's
    severity (4.9 for a pristine picture), never a statistic of a scoring set; unknown names fail."""
    cfg, _, _ = built
    on = load_config(cfg, {"pretrain.attributes": ["undistorted"], "pretrain.task_shares": {"name_object": 0, "object_box": 0, "global_distortion": 0, "rate_attribute": 1.0}})
    rows = build_pretrain_samples(on, 60, seed=1).samples
    assert {r["attribute"] for r in rows} == {"undistorted"}
    for r in rows:
        assert abs(float(r["answer"]) - round(4.9 - 0.98 * r["severity"], 1)) < 0.051, r
        assert "free of distortion" in r["prompt"]
    assert {r["severity"] for r in rows} >= {0, 1, 5}
    with pytest.raises(ValueError, match="pretrain.attributes"):
        build_pretrain_samples(load_config(cfg, {"pretrain.attributes": ["shiny"]}), 10)
