"""The stand-in pre-training data (refine_iqa_lib.standin.pretrain_data): training-side pictures only,
no Stage-1 sample or MOS, seeded, answers that match what the pictures hold."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data import stage1
from refine_iqa_lib.data.audit import SplitOverlapError, hash_images
from refine_iqa_lib.data.build import build_perception_dataset
from refine_iqa_lib.io import open_image, read_json, read_jsonl
from refine_iqa_lib.prompts import format_mos_text
from refine_iqa_lib.standin import pretrain_data as P
from refine_iqa_lib.standin import world
from refine_iqa_lib.standin.perceive import describe, pixel_stats, words
from refine_iqa_lib.standin.qbench_set import build_embedded_qbench
from refine_iqa_lib.standin.scoring_set import build_embedded_scoring_set

N = 360


def only(task: str) -> dict:
    """``pretrain.task_shares`` with one task (an override merges into the default shares)."""
    return {t: float(t == task) for t in P.TASKS}


def _cfg(root: Path, **pretrain):
    over = {"paths.work_dir": str(root / "work"), "paths.results_dir": str(root / "results"),
            "pretrain.workers": 1, **{f"pretrain.{k}": v for k, v in pretrain.items()}}
    return load_config("smoke", over)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("pretrain")
    cfg = _cfg(root)
    build_perception_dataset(cfg, progress=False)
    build_embedded_scoring_set(cfg)
    build_embedded_qbench(cfg)
    out = P.write_pretrain_dataset(cfg, n_samples=N)
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
    for name, files in P.heldout_images(cfg).items():
        assert ours.isdisjoint(hash_images(files)), name


def test_pictures_come_from_the_worlds_training_split_only(built):
    _, _, rows = built
    cat = world.catalogue()
    kinds = Counter(r["origin"]["kind"] for r in rows)
    assert set(kinds) == {"scene", "photo"}
    for r in rows:
        o = r["origin"]
        assert cat.at[o["background"], "split"] == "train", r["id"]
        assert {cat.at[x, "split"] for x in o["objects"]} <= {"train"}, r["id"]
        if r["task"] in ("object_name", "object_box"):
            assert o["kind"] == "scene" and o["objects"], r["id"]


@pytest.mark.parametrize("collection", ["perception test", "scoring test", "scoring validation", "Q-Bench stand-in"])
def test_a_planted_heldout_picture_fails_the_build_naming_it(built, tmp_path, monkeypatch, collection):
    cfg, _, _ = built
    planted_file = P.heldout_images(cfg)[collection][0]
    planted = np.asarray(open_image(planted_file), dtype=np.uint8)
    real = P.draw_picture
    monkeypatch.setattr(P, "draw_picture", lambda rng, *a, **k: (planted, [], {"kind": "photo", "background": "x",
                                                                              "objects": []})
                        if int(rng.integers(1 << 30)) % 7 == 0 else real(rng, *a, **k))
    out = tmp_path / "pt"
    tasks = only("rate_attribute")
    with pytest.raises(SplitOverlapError) as e:
        P.write_pretrain_dataset(load_config(cfg, {"pretrain.task_shares": tasks, "pretrain.attributes": ["bright"]}),
                                 out, n_samples=30)
    msg = str(e.value)
    assert "images/pt0000" in msg and collection in msg and planted_file.name in msg
    assert not out.exists()  # nothing written


# --------------------------------------------------------------------------- content
def test_no_stage1_question_no_mos_and_fixed_pools(built):
    _, out, rows = built
    for r in rows:
        assert "degraded" not in r["prompt"] and "pristine reference" not in r["prompt"], r["id"]
        assert not any(q.split("{")[0] in r["prompt"] for q in stage1.QUESTIONS.values()), r["id"]
    families = [stage1.category_label(c) for c in D.DISTORTIONS] + [P.NONE_OPTION]
    for r in (r for r in rows if r["task"] == "distortion_type"):
        assert r["options"] == families and r["options"][ord(r["answer_letter"]) - 65] == r["answer"], r["id"]
        assert (r["answer"] == P.NONE_OPTION) == (r["severity"] == 0), r["id"]
    for r in (r for r in rows if r["task"] == "distortion_severity"):
        assert r["options"] == list(D.SEVERITIES) and r["answer"] == D.SEVERITIES[r["severity"] - 1], r["id"]
    rated = [r for r in rows if r["task"] == "rate_attribute"]
    assert {r["attribute"] for r in rated} == set(P.DEFAULT_ATTRIBUTES)
    for r in rated:  # the target is the documented map of the shown picture (or of its distortion's severity)
        target = P.attribute_target(r["attribute"], pixel_stats(open_image(out / r["images"][0])), r["severity"])
        assert target == pytest.approx(r["target"], abs=1e-6), r["id"]
        assert r["answer"] == format_mos_text(target) and r["completion"].endswith(f"<answer>{r['answer']}</answer>")


def test_shuffled_pools_follow_the_perception_option_order(built):
    cfg, _, _ = built
    shuffled = load_config(cfg, {"perception.option_order": "shuffled",
                                 "pretrain.task_shares": only("distortion_type")})
    rows = P.build_pretrain_samples(shuffled, 40, seed=2).samples
    assert len({tuple(r["options"]) for r in rows}) > 30
    assert all(r["options"][ord(r["answer_letter"]) - 65] == r["answer"] for r in rows)


def test_modes_present_and_thinks_describe_the_shown_picture(built):
    _, out, rows = built
    counts = Counter(r["task"] for r in rows)
    cfg = built[0]
    drawn = {t for t, share in dict(cfg.pretrain.task_shares).items() if share > 0}
    assert set(counts) == drawn and sum(counts.values()) == N
    for task in drawn:
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


def test_object_and_region_answers_match_the_picture(built):
    _, out, rows = built
    train_names = {world.object_name(o) for o in world.object_ids("train")}
    for r in rows:
        if r["task"] not in ("object_name", "object_box", "distortion_box"):
            continue
        h, w = np.asarray(open_image(out / r["images"][0])).shape[:2]
        x1, y1, x2, y2 = r["region"] if r["task"] == "distortion_box" else r["box"]
        assert 0 <= x1 < x2 <= w and 0 <= y1 < y2 <= h, r["id"]
        if r["task"] == "object_name":
            assert r["object"] in train_names and r["completion"].endswith(f"<answer>{r['object']}</answer>")
            assert f"[{x1}, {y1}, {x2}, {y2}]" in r["prompt"]
        else:
            assert r["completion"].endswith(f"<answer>[{x1}, {y1}, {x2}, {y2}]</answer>"), r["id"]


def test_region_distortions_stay_inside_their_rectangle(built):
    cfg, _, _ = built
    rng = np.random.default_rng(0)
    img = world.load_photo("coffee")[:112, :112]
    seen = 0
    for _ in range(30):
        shown, category, severity, region = P.distort_picture(img, rng, 1.0)
        x1, y1, x2, y2 = region
        outside = np.ones(img.shape[:2], bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(shown[outside], img[outside]), (category, severity)
        area = (x2 - x1) * (y2 - y1) / (112 * 112)
        seen += P.REGION_AREA[0] * 0.8 <= area <= P.REGION_AREA[1] * 1.1
    assert seen >= 27


# --------------------------------------------------------------------------- determinism, reuse, config
def test_deterministic_by_seed_any_workers_and_reused(built, tmp_path):
    cfg, out, rows = built
    a, b = P.build_pretrain_samples(cfg, 40, seed=3), P.build_pretrain_samples(cfg, 40, seed=3, workers=2)
    assert a.samples == b.samples and a.images == b.images
    assert P.build_pretrain_samples(cfg, 40, seed=4).samples != a.samples
    mtime = (out / "samples.jsonl").stat().st_mtime_ns
    assert P.write_pretrain_dataset(cfg, n_samples=N) == out and (out / "samples.jsonl").stat().st_mtime_ns == mtime
    again = P.write_pretrain_dataset(cfg, tmp_path / "again", n_samples=N)
    assert (again / "samples.jsonl").read_bytes() == (out / "samples.jsonl").read_bytes()


def test_config_section_defaults_and_checks(tmp_path):
    from refine_iqa_lib.config import PretrainConfig

    cfg = load_config("smoke")
    assert PretrainConfig().n_samples == 6000 and cfg.pretrain.n_samples == 48   # smoke's warm-up draws from 48
    assert set(cfg.pretrain.task_shares) == set(P.TASKS)
    with pytest.raises(ConfigError, match="pretrain.think_share"):
        load_config("smoke", {"pretrain.think_share": 1.5})
    with pytest.raises(ConfigError, match="pretrain.image_size"):
        load_config("smoke", {"pretrain.image_size": 100})
    bad = _cfg(tmp_path, task_shares={"object_box": 1.0, "grounding": 1.0})
    with pytest.raises(ValueError, match="unknown task.*grounding"):
        P.build_pretrain_samples(bad, 5)
    with pytest.raises(ValueError, match="pretrain.attributes"):
        P.build_pretrain_samples(_cfg(tmp_path, attributes=["shiny"]), 5)


def test_undistorted_rates_the_distortion_strength(built):
    """``undistorted`` targets are 4.9 - 0.98 x the whole-picture distortion's severity (4.9 when
    pristine), never a statistic of a scoring set."""
    cfg, _, _ = built
    on = load_config(cfg, {"pretrain.attributes": ["undistorted"], "pretrain.task_shares": only("rate_attribute")})
    rows = P.build_pretrain_samples(on, 60, seed=1).samples
    assert {r["attribute"] for r in rows} == {"undistorted"}
    for r in rows:
        assert abs(float(r["answer"]) - round(4.9 - 0.98 * r["severity"], 1)) < 0.051, r
        assert "free of distortion" in r["prompt"] or "freedom from distortion" in r["prompt"], r["prompt"]
    assert {r["severity"] for r in rows} >= {0, 1, 5}
