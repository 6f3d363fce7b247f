"""Split audits by pixel content: planted overlaps are caught, whatever the files are called."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from refine_iqa_lib.config import load_config
from refine_iqa_lib.data import build as build_module
from refine_iqa_lib.data.audit import SplitOverlapError, audit_splits, content_hash
from refine_iqa_lib.data.build import build_perception_dataset


def _pictures(tmp_path, n=6):
    rng = np.random.default_rng(0)
    paths = []
    for k in range(n):
        p = tmp_path / f"p{k}.png"
        Image.fromarray(rng.integers(0, 255, (20, 28, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_a_planted_copy_under_another_name_and_format_is_caught(tmp_path):
    pics = _pictures(tmp_path)
    copy = tmp_path / "renamed_copy.bmp"                       # same pixels, other name and format
    Image.open(pics[2]).save(copy)
    rep = audit_splits(pics[:4], [pics[4], copy, pics[5]], names=("train", "test"))
    assert not rep.ok and len(rep.overlaps) == 1
    assert rep.overlaps.iloc[0]["train"].endswith("p2.png") and rep.overlaps.iloc[0]["test"].endswith("renamed_copy.bmp")
    with pytest.raises(SplitOverlapError, match=r"1 shared by pixel content, e.g. .*p2.png = .*renamed_copy.bmp"):
        rep.require_disjoint()
    assert audit_splits(pics[:3], pics[3:]).ok
    assert content_hash(pics[0]) != content_hash(pics[1])


def test_a_build_whose_split_breaks_a_scene_fails(tmp_path, monkeypatch):
    """Plant a leak: a split that puts one of a held-out scene's marked images on the training side
    shares its pristine reference, and the build must stop."""
    honest = build_module.declared_split_mask

    def leaky(declared, *args):
        mask = honest(declared, *args)
        mask[int(np.flatnonzero(mask)[0])] = False                 # one held-out image moves to train
        return mask

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w"), "paths.results_dir": str(tmp_path / "r"),
                                "perception.n_images": 8, "perception.test_size": 2})
    monkeypatch.setattr(build_module, "declared_split_mask", leaky)
    with pytest.raises(SplitOverlapError, match="train .* vs test .*shared by pixel content"):
        build_perception_dataset(cfg, progress=False)


def test_evaluated_sets_are_audited_against_every_training_picture(tmp_path):
    from refine_iqa_lib.evaluation.leaks import audit_against_training, audit_scoring_sets, training_pictures

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w"), "paths.results_dir": str(tmp_path / "r")})
    table = audit_scoring_sets(cfg)
    assert table["shared"].tolist() == [0] and table["n eval"].iloc[0] > 0 and table["n train"].iloc[0] > 0
    train = training_pictures(cfg)
    planted = audit_against_training(cfg, train[:2] + list(_pictures(tmp_path, 2)), "test")
    assert len(planted.overlaps) == 2                          # the two training pictures, not the new ones
