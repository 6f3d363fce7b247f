"""The build: outputs and schema, determinism (byte-identical, workers-invariant), resume after a
kill, review decisions, bad inputs skipped and reported, CLI."""
from __future__ import annotations

import json
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.data import build as B
from refine_iqa_lib.data.build import build_perception_dataset, main
from refine_iqa_lib.data.review import ReviewPanel
from refine_iqa_lib.data.sources import DataError
from refine_iqa_lib.data.stage1 import load_perception_images, load_stage1_dataset
from refine_iqa_lib.standin.world import load_photo
from conftest import photo_objects

REQUIRED = ["id", "image", "reference", "task", "form", "mode", "prompt", "options", "answer", "bbox",
            "category", "severity", "object", "split", "image_id"]


def _cfg(base, **perception):
    over = {"paths.work_dir": str(base / "work"), "paths.results_dir": str(base / "results")}
    over.update({f"perception.{k}": v for k, v in perception.items()})
    return load_config("smoke", over)


def _files(root):
    """{relative path: bytes} of everything a build wrote (dataset + statistics)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("ref")
    report = build_perception_dataset(_cfg(root), progress=False)
    return root, report


def test_outputs_schema_and_counts(built):
    root, report = built
    out = root / "work" / "perception"
    counts = {c["stage"]: c["count"] for c in report.stage_counts}
    assert counts["drawn"] == 12 and counts["pool"] is None
    assert counts["drawn"] >= counts["decoded"] >= counts["quality"] >= counts["objects"] > 0
    assert counts["marked"] >= counts["distorted"] >= counts["perceptible"] >= counts["reviewed"]
    # the embedded source declares each scene's side (2 of 5 held out): whole scenes, at least test_size images
    assert counts["train"] + counts["test"] == counts["reviewed"] and 6 <= counts["test"] < counts["reviewed"]
    assert counts["samples_test"] == 8 * counts["test"]                 # 4 tasks (paper pools) x 2 forms
    skipped = report.skip_counts
    assert skipped.get("distortion not perceptible", 0) == counts["distorted"] - counts["perceptible"]
    for split in ("train", "test"):
        ds = load_stage1_dataset(out, split)
        assert set(REQUIRED) <= set(ds.column_names) and len(ds) == counts[f"samples_{split}"]
        df = load_perception_images(out, split)
        assert len(df) == counts[split] and set(df["split"]) == {split}
        for r in df.itertuples():
            im = Image.open(r.image)
            assert im.mode == "RGB" and im.size == (r.width, r.height)
            assert im.width % 28 == 0 and im.height % 28 == 0 and im.width * im.height <= 112 * 112
            x1, y1, x2, y2 = r.bbox
            assert 0 <= x1 < x2 <= r.width and 0 <= y1 < y2 <= r.height and x2 - x1 >= 8 and y2 - y1 >= 8
            dis, ref = np.asarray(im), np.asarray(Image.open(r.reference))
            changed = np.argwhere((dis != ref).any(axis=2))
            assert len(changed) and changed[:, 0].min() >= y1 and changed[:, 0].max() < y2
            assert changed[:, 1].min() >= x1 and changed[:, 1].max() < x2
    train, test = load_perception_images(out, "train"), load_perception_images(out, "test")
    assert set(train["id"]).isdisjoint(test["id"]) and set(train["scene"]).isdisjoint(test["scene"])
    assert set(train["reference"]).isdisjoint(test["reference"])
    audit = json.loads((root / "results" / "smoke" / "perception_split_audit.json").read_text())
    assert audit["n_shared"] == 0 and audit["n_a"] > 0 and audit["n_b"] > 0 and "cutouts" in audit["reuse"]
    res = root / "results" / "smoke"
    stats = pd.read_csv(res / "perception_stats_distortions.csv")
    assert len(stats) == 2 * 12 * 5 and stats.groupby("split")["images"].sum().to_dict() == {
        "test": counts["test"], "train": counts["train"]}
    tasks = pd.read_csv(res / "perception_stats_tasks.csv")
    assert tasks["samples"].sum() == counts["samples_train"] + counts["samples_test"]
    assert json.loads((res / "perception_stage_counts.json").read_text())["stages"] == report.stage_counts
    skip_csv = pd.read_csv(res / "perception_skip_report.csv")
    assert dict(zip(skip_csv["reason"], skip_csv["count"])) == skipped


def test_byte_identical_and_workers_invariant(built, tmp_path):
    root, _ = built
    build_perception_dataset(_cfg(tmp_path, workers=2, chunk_size=2), progress=False)
    a, b = _files(root), _files(tmp_path)
    assert a.keys() == b.keys() and len(a) > 50
    assert [k for k in a if a[k] != b[k]] == []


def test_resume_after_kill_equals_uninterrupted(built, tmp_path, monkeypatch):
    root, _ = built
    cfg = _cfg(tmp_path)
    real, calls = B._build_scene, []

    def dying(k, index):
        if len(calls) == 5:
            raise KeyboardInterrupt("killed")
        calls.append(k)
        return real(k, index)

    monkeypatch.setattr(B, "_build_scene", dying)
    with pytest.raises(KeyboardInterrupt):
        build_perception_dataset(cfg, progress=False)
    monkeypatch.setattr(B, "_build_scene", real)
    out = tmp_path / "work" / "perception"
    assert len(list((out / "parts").glob("*.json"))) == 5
    (out / "images" / ".s000009_o0.png.abc.tmp").write_bytes(b"half a png")  # a killed atomic write
    report = build_perception_dataset(cfg, progress=False)
    assert (report.scenes_reused, report.scenes_computed) == (5, 7)
    assert _files(root) == _files(tmp_path)
    # delete outputs of finished scenes: only those scenes are redone
    (out / "images" / "s000002_o1.png").unlink()
    (out / "parts" / "s000004.json").unlink()
    (out / "samples_train.jsonl").unlink()
    report = build_perception_dataset(cfg, progress=False)
    assert (report.scenes_reused, report.scenes_computed) == (10, 2)
    assert _files(root) == _files(tmp_path)
    # a changed config invalidates every scene; stale files are removed
    report = build_perception_dataset(_cfg(tmp_path, n_images=10, seed=1), progress=False)
    assert report.scenes_computed == 10
    assert not list((out / "images").glob("s000011_*")) and not (out / "parts" / "s000011.json").exists()


def test_review_panel_and_rebuild_honours_decisions(built, tmp_path):
    root, _ = built
    cfg = _cfg(tmp_path, review_file=str(tmp_path / "review.json"))
    first = build_perception_dataset(cfg, progress=False)
    panel = ReviewPanel(tmp_path / "work" / "perception", tmp_path / "review.json")
    ids = [panel.current["id"]]
    panel.reject_button.click()
    panel.accept_button.click()
    ids.append(panel.current["id"])
    panel.reject_button.click()
    panel.prev_button.click()
    panel.next_button.click()
    assert "this image" in panel.status.value and panel.image.value[:4] == b"\x89PNG"
    saved = json.loads((tmp_path / "review.json").read_text())["decisions"]
    assert sorted(saved.values()) == ["accept", "reject", "reject"] and {saved[i] for i in ids} == {"reject"}
    report = build_perception_dataset(cfg, progress=False)
    assert report.scenes_computed == 0 and report.skip_counts["rejected by reviewer"] == 2
    assert report.count("reviewed") == first.count("reviewed") - 2
    kept = set(load_perception_images(tmp_path / "work" / "perception", "train")["id"]) | set(
        load_perception_images(tmp_path / "work" / "perception", "test")["id"])
    assert kept.isdisjoint(ids)
    # without perception.review_file the panel and the build share <work_dir>/perception/review.json
    from refine_iqa_lib.data.review import review_panel

    default_cfg = _cfg(tmp_path)
    panel = review_panel(default_cfg)
    panel.go(3)
    third = panel.current["id"]
    panel.reject_button.click()
    assert (tmp_path / "work" / "perception" / "review.json").is_file()
    report = build_perception_dataset(default_cfg, progress=False)
    assert report.skip_counts["rejected by reviewer"] == 1 and report.count("reviewed") == first.count("reviewed") - 1
    assert third not in set(load_perception_images(tmp_path / "work" / "perception", "train")["id"])
    (tmp_path / "review.json").write_text(json.dumps({"decisions": {ids[0]: "maybe"}}))
    with pytest.raises(DataError, match="review.json: decision for .* is 'maybe'"):
        build_perception_dataset(cfg, progress=False)


def _write_user_images(folder):
    """A JSONL source with one good image and one of each kind of bad input."""
    folder.mkdir()
    photo = load_photo("coffee")
    objs = [o.to_dict() for o in photo_objects("coffee")]
    Image.fromarray(photo).save(folder / "good.png")
    Image.fromarray(photo).convert("L").save(folder / "gray.png")
    Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 200, np.uint8)])).save(folder / "rgba.png")
    Image.fromarray(np.asarray(Image.fromarray(photo).convert("L")).astype(np.uint16) * 257).save(folder / "g16.png")
    data = (folder / "good.png").read_bytes()
    (folder / "trunc.png").write_bytes(data[: len(data) // 3])
    rows = [{"image": n, "objects": objs} for n in ("good.png", "gray.png", "rgba.png", "g16.png", "trunc.png")]
    rows.append({"image": "good.png", "objects": objs[:2] + [{"name": "ghost", "bbox": [590, 0, 700, 40]}]})
    rows.append({"image": "good.png", "objects": objs[:2] + [{"name": "flat", "bbox": [10, 10, 10, 90]}]})
    rows.append({"image": "missing.png", "objects": objs})
    lines = [json.dumps(r) for r in rows] + ['{"image": "good.png"}', "{broken json"]
    (folder / "objects.jsonl").write_text("\n".join(lines) + "\n")


def test_bad_inputs_are_skipped_and_reported(tmp_path):
    _write_user_images(tmp_path / "user")
    cfg = _cfg(tmp_path, source="jsonl", root=str(tmp_path / "user"),
               annotations=str(tmp_path / "user" / "objects.jsonl"), n_images=100, test_size=2,
               quality_scorer="none")
    report = build_perception_dataset(cfg, progress=False)
    assert report.count("drawn") == 8 and report.count("pool") == 8
    s = report.skip_counts
    assert s["unreadable image"] == 1 and s["image file not found"] == 1
    assert s["box outside image"] == 1 and s["degenerate box"] == 1
    assert s["missing field"] == 1 and s["malformed record"] == 1
    assert report.count("objects") == 6  # good, gray, rgba, 16-bit and the two with a bad box
    items = json.loads((tmp_path / "work" / "perception" / "skip_report.json").read_text())["items"]
    details = " ".join(i["detail"] for i in items)
    assert "trunc.png: not a readable image" in details and "missing.png: image not found" in details
    assert "objects.jsonl:9" in details and "objects.jsonl:10" in details
    assert "'ghost': box [590, 0, 700, 40] is outside the 600x400 image" in details


def test_coco_build_and_config_errors(tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    Image.fromarray(load_photo("coffee")).save(folder / "a.jpg", quality=95)
    ann = {"images": [{"id": 1, "file_name": "a.jpg", "width": 600, "height": 400},
                      {"id": 2, "file_name": "b.jpg", "width": 600}],
           "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "spoon"}, {"id": 3, "name": "dining table"}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [172, 17, 238, 289], "iscrowd": 0},
                           {"id": 2, "image_id": 1, "category_id": 3, "bbox": [0, 0, 600, 400], "iscrowd": 1},
                           {"id": 3, "image_id": 1, "category_id": 2, "bbox": [300, 220, 120, 110], "iscrowd": 0},
                           {"id": 4, "image_id": 1, "category_id": 3, "bbox": [430, 0, 170, 400], "iscrowd": 0},
                           {"id": 5, "image_id": 1, "category_id": 2}]}
    (folder / "instances.json").write_text(json.dumps(ann))
    cfg = _cfg(tmp_path, source="coco", root=str(folder), annotations=str(folder / "instances.json"),
               test_size=0)
    report = build_perception_dataset(cfg, progress=False)
    assert report.count("pool") == 1 and report.count("objects") == 1 and report.count("marked") == 3
    assert report.skip_counts["missing field"] == 1  # image 2 (width/height)
    assert report.skip_counts["missing box"] == 1 and report.skip_counts["crowd annotation"] == 1
    with pytest.raises(DataError, match=r"unknown distortion category \['fog'\]"):
        build_perception_dataset(_cfg(tmp_path, categories=["fog"]), progress=False)
    with pytest.raises(DataError, match=r"unknown severity \[0\]"):
        build_perception_dataset(_cfg(tmp_path, severities=[0, 1]), progress=False)
    with pytest.raises(ConfigError, match="test_forms"):
        build_perception_dataset(_cfg(tmp_path, test_forms=["xr"]), progress=False)


def test_coco_build_reports_every_kind_of_bad_record(tmp_path):
    folder = tmp_path / "coco"
    folder.mkdir()
    Image.fromarray(load_photo("coffee")).save(folder / "a.jpg", quality=95)
    Image.fromarray(load_photo("coffee")).save(folder / "degenerate_boxes.jpg", quality=95)
    (folder / "cut.jpg").write_bytes((folder / "a.jpg").read_bytes()[:100])
    img = lambda i, name: {"id": i, "file_name": name, "width": 600, "height": 400}  # noqa: E731
    box = lambda i, im, cat, bb, **kw: {"id": i, "image_id": im, "category_id": cat, "bbox": bb, **kw}  # noqa: E731
    ann = {"images": [img(1, "a.jpg"), img(2, "degenerate_boxes.jpg"), img(3, "missing.jpg"), img(4, "cut.jpg"),
                      {"id": 5, "file_name": "b.jpg", "width": 600}],
           "categories": [{"id": 1, "name": "cup"}, {"id": 2, "name": "spoon"}, {"id": 3, "name": "dining table"}],
           "annotations": [box(1, 1, 1, [172, 17, 238, 289]), box(2, 1, 1, [10, 10, 40, 40]),     # duplicate
                           box(3, 1, 2, [300, 220, 120, 110]), box(4, 1, 3, [430, 0, 170, 400]),
                           box(5, 1, 2, [0, 390, 4, 4]),                                         # tiny
                           box(6, 1, 3, [0, 0, 600, 400], iscrowd=1),                            # crowd
                           {"id": 7, "image_id": 1, "category_id": 2},                           # no box
                           box(8, 2, 1, [590, 0, 110, 40]),                                      # outside
                           box(9, 2, 2, [10, 10, 0, 80]),                                        # degenerate
                           box(10, 2, 1, [1, 2, "x", 4]),                                        # not numbers
                           box(11, 2, 9, [0, 0, 50, 50]), box(12, 9, 1, [0, 0, 50, 50]),         # unknown ids
                           box(13, 3, 1, [0, 0, 300, 300]), box(14, 3, 2, [300, 0, 300, 300]),
                           box(15, 4, 1, [0, 0, 300, 300]), box(16, 4, 2, [300, 0, 300, 300])]}
    (folder / "instances.json").write_text(json.dumps(ann))
    cfg = _cfg(tmp_path, source="coco", root=str(folder), annotations=str(folder / "instances.json"),
               test_size=0, min_object_area=0.001, n_images=10)
    report = build_perception_dataset(cfg, progress=False)
    print(report)
    assert report.skip_counts == {
        "box outside image": 1, "crowd annotation": 1, "degenerate box": 1, "duplicate object name": 1,
        "fewer than 2 distinct objects": 1, "image file not found": 1, "invalid box": 1, "missing box": 1,
        "missing field": 1, "object below min_object_area": 1, "unknown category": 1, "unknown image": 1,
        "unreadable image": 1}
    items = {i["item"]: i for i in json.loads((tmp_path / "work" / "perception" / "skip_report.json").read_text())["items"]}
    assert items["annotation 8"]["reason"] == "box outside image" and "degenerate_boxes.jpg" in items["annotation 8"]["detail"]
    assert items["annotation 2"]["level"] == "object" and "[10, 10, 50, 50] left out" in items["annotation 2"]["detail"]


def test_cli(tmp_path, capsys):
    args = ["--profile", "smoke", "--no-progress", "--set", f"paths.work_dir={tmp_path}/w",
            "--set", f"paths.results_dir={tmp_path}/r", "--set", "n_images=9", "--set", "test_size=3"]
    assert main(args) == 0
    out = capsys.readouterr().out
    held = re.search(r"\n +test +(\d+) ", out)
    assert "Refine-Perception build" in out and held and int(held.group(1)) >= 3          # whole scenes: >= 3
    assert main(["--profile", "smoke", "--set", "perception.bogus=1"]) == 2
    assert "unknown key" in capsys.readouterr().err


def test_figures(built, tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from refine_iqa_lib.data import viz

    root, report = built
    img = load_photo("coffee")[:84, :112]
    paths = []
    for name in ("a", "b"):
        viz.plot_distortion_grid(img, (20, 10, 80, 70), tmp_path / name, categories=["blur", "noise"])
        paths.append((tmp_path / f"{name}.png", tmp_path / f"{name}.pdf"))
    assert all(p.stat().st_size > 1000 for pair in paths for p in pair)
    assert paths[0][0].read_bytes() == paths[1][0].read_bytes()  # deterministic PNG
    assert paths[0][1].read_bytes() == paths[1][1].read_bytes()  # and PDF (no timestamps)
    viz.plot_stage_counts(report.stage_counts)
    viz.plot_distortion_heatmap(pd.read_csv(root / "results" / "smoke" / "perception_stats_distortions.csv"))
    sample = load_stage1_dataset(root / "work" / "perception", "test")[0]
    fig = viz.plot_sample(sample)
    assert len(fig.axes) == (2 if sample["form"] == "fr" else 1)
    plt.close("all")
