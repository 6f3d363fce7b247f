"""Sources: image reading, geometry, COCO / JSONL parsing, the embedded photos and composites."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from refine_iqa_lib.data.build import make_source
from refine_iqa_lib.data.sources import (CocoSource, DataError, JsonlSource, SceneObject, SourceRecord, check_box,
                                         fit_size, intersection, keep_largest_per_name, read_rgb, scale_box)
from refine_iqa_lib.standin.scenes import EmbeddedSource
from refine_iqa_lib.standin.world import load_photo


# --------------------------------------------------------------------------- geometry
@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000), st.integers(1, 5000), st.sampled_from([112, 224, 448]),
       st.sampled_from([None, 12544, 151200]))
def test_fit_size_multiples_longest_and_pixels(w, h, longest, max_pixels):
    W, H = fit_size(w, h, longest, max_pixels)
    assert W % 28 == 0 and H % 28 == 0 and W >= 28 and H >= 28
    assert max(W, H) <= longest
    if max_pixels is None:
        assert max(W, H) == longest or min(w, h) * longest / max(w, h) < 14
    else:
        assert W * H <= max(max_pixels, 28 * 28)


def test_fit_size_rejects_bad_size():
    with pytest.raises(DataError, match="multiple of 28"):
        fit_size(100, 100, 100)


def test_scale_box_and_check_box():
    assert scale_box((0, 0, 640, 427), (640, 427), (112, 84)) == (0, 0, 112, 84)
    assert check_box([-0.5, 0, 20.7, 10], 20, 10, "r") == (0, 0, 20, 10)  # within 1 px: clipped
    with pytest.raises(DataError, match="outside the 20x10 image"):
        check_box([0, 0, 25, 10], 20, 10, "file.jpg object 'cup'")
    with pytest.raises(DataError, match="file.jpg object 'cup': degenerate"):
        check_box([5, 5, 4, 9], 20, 10, "file.jpg object 'cup'")
    with pytest.raises(DataError, match="non-numeric"):
        check_box([0, 0, "a", 9], 20, 10, "x")
    with pytest.raises(DataError, match="expected \\[x1, y1, x2, y2\\]"):
        check_box([0, 0, 9], 20, 10, "x")


def test_keep_largest_per_name():
    objs = [SceneObject("cup", (0, 0, 10, 10)), SceneObject("cup", (0, 0, 20, 20)), SceneObject("dog", (0, 0, 5, 5))]
    kept, dropped = keep_largest_per_name(objs)
    assert kept == objs[1:] and dropped == objs[:1]


# --------------------------------------------------------------------------- image files
@pytest.fixture()
def photo():
    return load_photo("coffee")[:120, :160]


def test_read_rgb_converts_modes(tmp_path, photo):
    gray = np.asarray(Image.fromarray(photo).convert("L"))
    cases = {
        "rgb.png": Image.fromarray(photo),
        "gray.png": Image.fromarray(gray),
        "rgba.png": Image.fromarray(np.dstack([photo, np.full(photo.shape[:2], 128, np.uint8)])),
        "gray16.png": Image.fromarray(gray.astype(np.uint16) * 257),
        "palette.png": Image.fromarray(photo).convert("P"),
        "photo.jpg": Image.fromarray(photo),
    }
    for name, im in cases.items():
        im.save(tmp_path / name)
        arr = read_rgb(tmp_path / name)
        assert arr.shape == (120, 160, 3) and arr.dtype == np.uint8, name
    assert np.array_equal(read_rgb(tmp_path / "rgba.png"), photo)          # alpha dropped
    assert np.array_equal(read_rgb(tmp_path / "gray16.png")[..., 0], gray)  # 16 -> 8 bit exactly
    assert np.array_equal(read_rgb(tmp_path / "gray.png")[..., 1], gray)


def test_read_rgb_errors_name_the_file(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "trunc.png").write_bytes(data[: len(data) // 2])
    (tmp_path / "junk.jpg").write_bytes(b"not an image at all")
    for name in ("trunc.png", "junk.jpg"):
        with pytest.raises(DataError, match=f"{name}: not a readable image"):
            read_rgb(tmp_path / name)
    with pytest.raises(DataError, match="missing.png: image not found") as e:
        read_rgb(tmp_path / "missing.png")
    assert e.value.reason == "image file not found"


def test_record_size_mismatch(tmp_path, photo):
    Image.fromarray(photo).save(tmp_path / "a.png")
    rec = SourceRecord("x", [], path=tmp_path / "a.png", where="ann.json image id 3", size=(100, 100))
    with pytest.raises(DataError, match="a.png: image is 160x120 but ann.json image id 3 says 100x100"):
        rec.load()


# --------------------------------------------------------------------------- COCO
def _coco(tmp_path, **changes):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
                   {"id": 2, "file_name": "b.jpg", "width": 200, "height": 100}],
        "categories": [{"id": 1, "name": "person"}, {"id": 2, "name": "dog"}, {"id": 3, "name": "cup"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40], "iscrowd": 0},
            {"id": 11, "image_id": 1, "category_id": 1, "bbox": [100, 10, 50.5, 60], "iscrowd": 0},  # larger person
            {"id": 12, "image_id": 1, "category_id": 2, "bbox": [0, 50, 40, 40], "iscrowd": 0},
            {"id": 13, "image_id": 1, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},      # crowd
            {"id": 14, "image_id": 1, "category_id": 3, "bbox": [150, 80, 4, 4], "iscrowd": 0},       # too small
            {"id": 15, "image_id": 2, "category_id": 2, "bbox": [0, 0, 50, 50], "iscrowd": 0},
        ],
    }
    data.update(changes)
    p = tmp_path / "instances.json"
    p.write_text(json.dumps(data))
    return p


def test_coco_rules(tmp_path):
    src = CocoSource(_coco(tmp_path), tmp_path, min_object_area=0.01)
    assert len(src) == 2
    r = src.record(0)
    assert r.source_id == "coco:a.jpg" and r.size == (200, 100)
    assert {o.name: o.bbox for o in r.objects} == {"person": (100, 10, 151, 70), "dog": (0, 50, 40, 90)}
    assert [o.name for o in src.record(1).objects] == ["dog"]  # stays in the pool; the pipeline drops it


def test_coco_missing_fields_name_file_and_record(tmp_path):
    with pytest.raises(DataError, match="instances.json: missing or non-list field 'categories'"):
        p = tmp_path / "instances.json"
        p.write_text(json.dumps({"images": [], "annotations": []}))
        CocoSource(p, tmp_path)
    ann = [{"id": 77, "image_id": 1, "category_id": 1}]
    with pytest.raises(DataError, match=r"annotation id 77 is missing field\(s\) \['bbox'\]"):
        CocoSource(_coco(tmp_path, annotations=ann), tmp_path)
    with pytest.raises(DataError, match=r"images\[0\] .* missing field\(s\) \['width'\]"):
        CocoSource(_coco(tmp_path, images=[{"id": 1, "file_name": "a.jpg", "height": 5}], annotations=[]), tmp_path)
    ann = [{"id": 5, "image_id": 1, "category_id": 99, "bbox": [0, 0, 5, 5]}]
    with pytest.raises(DataError, match="annotation id 5: unknown category_id 99"):
        CocoSource(_coco(tmp_path, annotations=ann), tmp_path)
    ann = [{"id": 6, "image_id": 1, "category_id": 1, "bbox": [190, 0, 50, 5]}]
    with pytest.raises(DataError, match="annotation id 6 .*outside the 200x100 image"):
        CocoSource(_coco(tmp_path, annotations=ann), tmp_path)


def test_coco_skip_mode_records_every_problem(tmp_path):
    ann = [{"id": 1, "image_id": 1, "category_id": 1},
           {"id": 2, "image_id": 1, "category_id": 9, "bbox": [0, 0, 5, 5]},
           {"id": 3, "image_id": 1, "category_id": 1, "bbox": [0, 0, 0, 5]},
           {"id": 4, "image_id": 1, "category_id": 2, "bbox": [0, 0, 50, 50]}]
    src = CocoSource(_coco(tmp_path, annotations=ann), tmp_path, on_error="skip")
    assert [s.reason for s in src.skips] == ["missing box", "unknown category", "degenerate box"]
    assert all("instances.json: annotation id" in s.detail for s in src.skips)
    assert [o.name for o in src.record(0).objects] == ["dog"]


def test_coco_every_object_left_out_is_reported_with_its_own_reason(tmp_path):
    images = [{"id": 1, "file_name": "a.jpg", "width": 200, "height": 100},
              {"id": 2, "file_name": "degenerate_cases.jpg", "width": 200, "height": 100}]
    ann = [{"id": 10, "image_id": 1, "category_id": 1, "bbox": [10, 10, 30, 40]},       # smaller duplicate
           {"id": 11, "image_id": 1, "category_id": 1, "bbox": [100, 10, 50, 60]},
           {"id": 12, "image_id": 1, "category_id": 2, "bbox": [150, 80, 4, 4]},         # tiny
           {"id": 13, "image_id": 1, "category_id": 3, "bbox": [0, 0, 200, 100], "iscrowd": 1},
           {"id": 14, "image_id": 2, "category_id": 2, "bbox": [190, 0, 50, 5]},         # outside, in "degenerate_*"
           {"id": 15, "image_id": 2, "category_id": 3, "bbox": [10, 10, 0, 5]},          # degenerate
           {"id": 16, "image_id": 2, "category_id": 1}]                                  # no box
    src = CocoSource(_coco(tmp_path, images=images, annotations=ann), tmp_path, min_object_area=0.01, on_error="skip")
    got = {s.item: (s.level, s.reason) for s in src.skips}
    assert got == {"annotation 10": ("object", "duplicate object name"),
                   "annotation 12": ("object", "object below min_object_area"),
                   "annotation 13": ("object", "crowd annotation"),
                   "annotation 14": ("record", "box outside image"),
                   "annotation 15": ("record", "degenerate box"),
                   "annotation 16": ("record", "missing box")}
    assert all(f"annotation id {s.item.split()[1]}" in s.detail for s in src.skips)
    assert [o.name for o in src.record(0).objects] == ["person"] and src.record(1).objects == []
    # the filters are not errors: a strict parse of a file with only filtered objects still works
    strict = CocoSource(_coco(tmp_path, images=images[:1], annotations=ann[:4]), tmp_path, min_object_area=0.01)
    assert [s.reason for s in strict.skips] == ["object below min_object_area", "crowd annotation",
                                                "duplicate object name"]


def test_box_errors_carry_their_reason_code():
    for box, reason in (([1, 2, 3], "invalid box"), (["a", 0, 1, 1], "invalid box"),
                        ([5, 5, 5, 9], "degenerate box"), ([0, 0, 50, 5], "box outside image")):
        with pytest.raises(DataError) as e:
            check_box(box, 20, 10, "degenerate_named.png object 'x'")
        assert e.value.reason == reason


# --------------------------------------------------------------------------- JSONL
def test_jsonl_source(tmp_path):
    p = tmp_path / "objects.jsonl"
    rows = [{"image": "f1.png", "objects": [{"name": "car", "bbox": [0, 0, 20, 20]},
                                            {"name": "car", "bbox": [0, 0, 40, 40]},
                                            {"name": "tree", "bbox": [50, 0, 90, 30]}]},
            {"image": "f2.png"}]
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\nnot json\n")
    with pytest.raises(DataError, match=r"objects.jsonl:2: .*missing \['objects'\]"):
        JsonlSource(p, tmp_path)
    src = JsonlSource(p, tmp_path, on_error="skip")
    assert len(src) == 1 and [s.reason for s in src.skips] == ["duplicate object name", "missing field",
                                                               "malformed record"]
    assert src.skips[0].item == f"{p}:1/car" and "[0, 0, 20, 20] left out" in src.skips[0].detail
    assert {o.name: o.bbox for o in src.record(0).objects} == {"car": (0, 0, 40, 40), "tree": (50, 0, 90, 30)}
    assert src.record(0).path == tmp_path / "f1.png"


# --------------------------------------------------------------------------- embedded
def test_embedded_scenes_deterministic_distinct_and_exact():
    src = EmbeddedSource(112, 112 * 112, seed=0, min_object_area=0.02)
    a, b = src.record(20), EmbeddedSource(112, 112 * 112, seed=0, min_object_area=0.02).record(20)
    assert np.array_equal(a.array, b.array) and a.objects == b.objects
    assert not np.array_equal(EmbeddedSource(112, 112 * 112, seed=1).record(20).array, a.array)
    hashes, n_ok = set(), 0
    for i in range(60):
        r = src.record(i)
        h, w = r.array.shape[:2]
        assert w % 28 == 0 and h % 28 == 0 and max(w, h) == 112 and r.array.dtype == np.uint8
        names = [o.name for o in r.objects]
        assert len(set(names)) == len(names)
        for o in r.objects:
            x1, y1, x2, y2 = o.bbox
            assert 0 <= x1 and x2 <= w and 0 <= y1 and y2 <= h and x2 - x1 >= 8 and y2 - y1 >= 8
        assert [p["bbox"] for p in r.meta["pasted"]] == [list(o.bbox) for o in r.objects]
        assert all(intersection(o.bbox, q.bbox) == 0 for o in r.objects for q in r.objects if o is not q)
        n_ok += len(r.objects) >= 2
        hashes.add(hashlib.sha1(r.array.tobytes()).hexdigest())
    assert len(hashes) == 60 and n_ok >= 57


@pytest.mark.parametrize("heldout", ["test", "validation"])
def test_embedded_scenes_declare_their_side_and_draw_only_its_pictures(heldout):
    """Two of every five scenes are held out; a held-out scene takes its photograph and cut-outs
    from the world's held-out split only, a training scene from its training split only."""
    from refine_iqa_lib.standin import world

    src = EmbeddedSource(112, seed=3, heldout=heldout)
    cat = world.catalogue()
    sides = [src.record(k).meta["split"] for k in range(10)]
    assert sides == ["test", "train", "train", "test", "train"] * 2
    for k in range(40):
        meta = src.record(k).meta
        want = heldout if meta["split"] == "test" else "train"
        assert meta["world_split"] == want
        assert cat.at[meta["background"], "split"] == want
        assert {cat.at[p["object"], "split"] for p in meta["pasted"]} <= {want}
        assert [p["name"] for p in meta["pasted"]] == [world.object_name(p["object"]) for p in meta["pasted"]]
    with pytest.raises(ValueError, match="heldout 'train'"):
        EmbeddedSource(112, heldout="train")


def test_make_source_errors(smoke_cfg):
    import dataclasses

    from refine_iqa_lib.config import ConfigError, load_config

    with pytest.raises(ConfigError, match="perception.source = 'flickr': expected one of embedded, coco, jsonl"):
        load_config("smoke", {"perception.source": "flickr"})
    flickr = dataclasses.replace(smoke_cfg, perception=dataclasses.replace(smoke_cfg.perception, source="flickr"))
    with pytest.raises(DataError, match="unknown perception.source 'flickr'"):  # a config built by hand
        make_source(flickr)
    with pytest.raises(DataError, match="needs perception.annotations and perception.root"):
        make_source(load_config("smoke", {"perception.source": "coco"}))
