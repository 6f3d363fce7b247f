"""The vision-tower probe (standin.probe) and the conditioned stand-in (standin.model.condition_vision_tower)."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.data.audit import audit_splits
from refine_iqa_lib.data.distortions import DISTORTIONS
from refine_iqa_lib.standin.scoring_set import photo_splits
from refine_iqa_lib.standin.probe import (
    PRISTINE, PROBE_SITES, linear_probe, probe_images, probe_report, probe_table,
    vision_features, visible_families,
)


def _labels(n_crops: int, families=("blur", "noise"), photo="p") -> pd.DataFrame:
    rows = []
    for k in range(n_crops):
        rows.append({"photo": photo, "crop": k, "family": PRISTINE, "severity": 0})
        rows += [{"photo": photo, "crop": k, "family": f, "severity": s} for f in families for s in range(1, 6)]
    return pd.DataFrame(rows)


def test_probe_recovers_a_planted_severity_and_not_noise():
    rng = np.random.default_rng(0)
    y_tr, y_te = _labels(20, photo="a"), _labels(30, photo="b")

    def planted(y):  # one column per family carries that family's severity, plus 6 noise columns
        cols = [np.where(y["family"] == f, y["severity"], 0) + rng.normal(0, 0.2, len(y)) for f in ("blur", "noise")]
        return np.c_[np.stack(cols, 1), rng.normal(size=(len(y), 6))]

    t = linear_probe({"planted": planted(y_tr), "random": rng.normal(size=(len(y_tr), 8))}, y_tr,
                     {"planted": planted(y_te), "random": rng.normal(size=(len(y_te), 8))}, y_te, n_resamples=300)
    assert set(t["family"]) == {"blur", "noise", "all"} and set(t["where"]) == {"planted", "random"}
    fam = t[t["family"] != "all"].set_index(["family", "where"])
    for f in ("blur", "noise"):
        assert fam.loc[(f, "planted"), "srcc"] > 0.95 and fam.loc[(f, "planted"), "auc"] > 0.95
        assert 0.9 < fam.loc[(f, "planted"), "srcc_low"] <= fam.loc[(f, "planted"), "srcc_high"] <= 1.0
        assert abs(fam.loc[(f, "random"), "srcc"]) < 0.25 and fam.loc[(f, "random"), "srcc_low"] < 0.1
        assert fam.loc[(f, "planted"), "n_train"] == 20 * 6 and fam.loc[(f, "planted"), "n_test"] == 30 * 6
    assert visible_families(t, "planted") == ["blur", "noise"] and visible_families(t, "random") == []
    shown = probe_table(t)
    assert list(shown.index) == ["blur", "noise", "all"] and "planted srcc" in shown.columns


def test_probe_checks_its_inputs():
    y = _labels(3)
    with pytest.raises(ValueError, match="one row per label row"):
        linear_probe({"x": np.zeros((len(y) - 1, 2))}, y, {"x": np.zeros((len(y), 2))}, y)
    with pytest.raises(ValueError, match="columns 'family' and 'severity'"):
        linear_probe(np.zeros((4, 2)), pd.DataFrame({"a": range(4)}), np.zeros((4, 2)), y.head(4))
    with pytest.raises(ValueError, match="expected pristine and distorted"):
        only = y[y["severity"] > 0].reset_index(drop=True)
        linear_probe(np.zeros((len(only), 2)), only, np.zeros((len(only), 2)), only, families=["blur"], include_all=False)
    with pytest.raises(ValueError, match="expected one of"):
        probe_images(split="train")
    with pytest.raises(ValueError, match="unknown families"):
        probe_images(n_per_cell=1, families=["fog"])


def test_probe_images_cover_every_cell_and_are_deterministic():
    images, y = probe_images(seed=3, n_per_cell=2, size=56, split="training")
    again, y2 = probe_images(seed=3, n_per_cell=2, size=56, split="training")
    assert len(images) == len(y) == 2 * (1 + len(DISTORTIONS) * 5)
    assert all(a.shape == (56, 56, 3) and a.dtype == np.uint8 for a in images)
    assert all(np.array_equal(a, b) for a, b in zip(images, again)) and y.equals(y2)
    cells = y.groupby(["family", "severity"]).size()
    assert cells.loc[(PRISTINE, 0)] == 2 and len(cells) == 1 + len(DISTORTIONS) * 5 and set(cells) == {2}
    other = probe_images(seed=4, n_per_cell=2, size=56, split="training")[0]
    assert not np.array_equal(images[0], other[0])


def test_train_and_test_pictures_come_from_disjoint_photographs():
    splits = photo_splits()
    img_tr, y_tr = probe_images(0, 5, 56, "training")
    img_te, y_te = probe_images(0, 2, 56, "test")
    assert set(y_tr["photo"]) <= set(splits["training"]) and set(y_te["photo"]) <= set(splits["test"])
    assert len(set(y_tr["photo"])) > 1 and len(set(y_te["photo"])) > 1
    assert set(y_tr["photo"]).isdisjoint(y_te["photo"])
    audit_splits(img_tr, img_te, names=("probe training", "probe test")).require_disjoint()


def test_vision_features_shapes_and_determinism(tiny_policy):
    model, processor = tiny_policy
    images, _ = probe_images(0, 1, 112, "test", families=("blur",))
    f = vision_features(model, processor, images, where=PROBE_SITES, batch_size=4)
    d, out = model.config.vision_config.hidden_size, model.config.vision_config.out_hidden_size
    assert f["patch_embed"].shape == (6, 2 * d) and f["pre_merger"].shape == (6, 2 * d)
    assert f["post_merger"].shape == (6, 2 * out)
    assert all(np.isfinite(v).all() for v in f.values())
    again = vision_features(model, processor, images, where=PROBE_SITES, batch_size=1)
    for w in PROBE_SITES:  # the same numbers whatever the batching
        np.testing.assert_allclose(f[w], again[w], rtol=1e-4, atol=1e-5)
    assert not np.allclose(f["pre_merger"][0], f["pre_merger"][5])  # pristine vs severity 5 differ
    with pytest.raises(ValueError, match="expected one or more of"):
        vision_features(model, processor, images, where=("merger",))


@pytest.fixture(scope="module")
def filters_dir(tmp_path_factory):
    from refine_iqa_lib.standin.model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("stand_in_filters") / "tiny", seed=0,
                            arch={"vision_init": "filters"})


def test_conditioned_stand_in_loads_and_generates(filters_dir, tiny_model_dir):
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from refine_iqa_lib.generation import chat_text, generate_greedy
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.standin.model import ANCHOR_CHANNELS, ANCHOR_VALUE, condition_vision_tower

    torch.set_num_threads(1)
    model, processor = load_policy(filters_dir)
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    # the saved weights are the random stand-in of the same seed, conditioned: deterministic, and
    # only the vision tower differs
    by_hand = condition_vision_tower(load_policy(tiny_model_dir)[0]).state_dict()
    for name, value in model.state_dict().items():
        assert torch.equal(value, by_hand[name]), name
    meta = json.loads((filters_dir / "refine_iqa_stand_in.json").read_text())
    assert meta["arch"]["vision_init"] == "filters" and "conditioned" in meta["note"]
    bias = model.model.visual.blocks[0].mlp.down_proj.bias
    assert torch.all(bias[-ANCHOR_CHANNELS:] == ANCHOR_VALUE)   # saved and loaded, not re-initialised
    image = probe_images(0, 1, 112, "test", families=("blur",))[0][0]
    out = generate_greedy(model, processor, [chat_text(processor, "Rate the quality of this image.")], [image], 4)
    assert len(out) == 1 and isinstance(out[0], str)


def test_conditioned_tower_sees_blur_better_than_the_random_one(tiny_model_dir, filters_dir):
    kw = dict(n_train=12, n_test=6, size=112, families=("blur",), where=("post_merger",), n_resamples=200)
    random_init = probe_report(tiny_model_dir, **kw).set_index("family").loc["blur", "srcc"]
    filters = probe_report(filters_dir, **kw).set_index("family").loc["blur", "srcc"]
    assert filters > random_init + 0.15, (filters, random_init)


def test_default_stand_in_is_unchanged_by_the_vision_init_flag(tiny_model_dir, tmp_path):
    from refine_iqa_lib.standin.model import TINY_ARCH, build_tiny_model

    assert TINY_ARCH["vision_init"] == "random"
    stamp = tiny_model_dir / "refine_iqa_stand_in.json"
    before = stamp.stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir, seed=0, arch={"vision_init": "random"}) == tiny_model_dir  # cache hit
    assert stamp.stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="expected one of"):
        build_tiny_model(tmp_path / "bad", arch={"vision_init": "dct"})


def test_tokenizer_corpus_switch_keeps_the_default_and_shortens_thinks(tiny_model_dir, tmp_path):
    """TINY_ARCH["tokenizer_corpus"]: "project" (default) is a cache hit of today's stand-in;
    "pretrain" trains the BPE on standin.perceive's phrases too, so a pixel description takes fewer
    tokens; an unknown value fails naming the choices."""
    from refine_iqa_lib.standin.perceive import describe
    from refine_iqa_lib.standin.model import TINY_ARCH, _build_tokenizer, build_tiny_model

    assert TINY_ARCH["tokenizer_corpus"] == "project"
    stamp = tiny_model_dir / "refine_iqa_stand_in.json"
    before = stamp.stat().st_mtime_ns
    assert build_tiny_model(tiny_model_dir, seed=0, arch={"tokenizer_corpus": "project"}) == tiny_model_dir
    assert stamp.stat().st_mtime_ns == before
    rng = np.random.default_rng(0)
    texts = [describe(rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), seed=i) for i in range(8)]
    project, pretrain = _build_tokenizer(2048, "project"), _build_tokenizer(2048, "pretrain")
    n_project = sum(len(project(t)["input_ids"]) for t in texts)
    n_pretrain = sum(len(pretrain(t)["input_ids"]) for t in texts)
    assert n_pretrain < 0.8 * n_project, (n_pretrain, n_project)
    assert [len(pretrain(d)["input_ids"]) for d in ("0", "12")] == [1, 2]   # digits stay single tokens
    with pytest.raises(ValueError, match="expected one of"):
        build_tiny_model(tmp_path / "bad", arch={"tokenizer_corpus": "wiki"})


def test_condition_vision_tower_constants_can_be_overridden(tiny_model_dir):
    import torch

    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.standin.model import ANCHOR_CHANNELS, condition_vision_tower

    default = condition_vision_tower(load_policy(tiny_model_dir)[0]).state_dict()
    same = condition_vision_tower(load_policy(tiny_model_dir)[0], dc_gain=0.25, anchor_value=4.0,
                                  merger_gain=4.0).state_dict()
    assert all(torch.equal(v, same[k]) for k, v in default.items())
    other = condition_vision_tower(load_policy(tiny_model_dir)[0], anchor_value=2.0, merger_gain=16.0)
    tower = other.model.visual
    assert torch.all(tower.blocks[0].mlp.down_proj.bias[-ANCHOR_CHANNELS:] == 2.0)
    assert not torch.equal(tower.merger.mlp[0].weight, default["model.visual.merger.mlp.0.weight"])
    # quiet: the blocks' random attention (and block 1's MLP) add nothing to the residual stream
    quiet = condition_vision_tower(load_policy(tiny_model_dir)[0], quiet="blocks").model.visual
    assert all(torch.count_nonzero(b.attn.proj.weight) == 0 for b in quiet.blocks)
    assert torch.count_nonzero(quiet.blocks[1].mlp.down_proj.weight) == 0
    assert torch.equal(quiet.blocks[0].mlp.down_proj.weight, default["model.visual.blocks.0.mlp.down_proj.weight"])
    attention = condition_vision_tower(load_policy(tiny_model_dir)[0], quiet="attention").model.visual
    assert torch.count_nonzero(attention.blocks[1].mlp.down_proj.weight) > 0
    with pytest.raises(ValueError, match="quiet 'loud'"):
        condition_vision_tower(load_policy(tiny_model_dir)[0], quiet="loud")


def test_ridge_penalty_is_chosen_by_leaving_photographs_out():
    # rows cluster by photograph (a per-photograph offset on every feature): the penalty is the one
    # scikit-learn's grid search over leave-one-group-out folds picks (equal folds, so its mean of
    # fold MSEs ranks penalties as our summed errors do); one photograph falls back to rows
    from sklearn.linear_model import Ridge
    from sklearn.model_selection import GridSearchCV, LeaveOneGroupOut

    from refine_iqa_lib.standin.probe import RIDGE_ALPHAS, _standardise

    rng = np.random.default_rng(3)
    y_tr = pd.concat([_labels(4, ("blur",), photo=ph) for ph in "abcd"], ignore_index=True)
    y_te = _labels(4, ("blur",), photo="t")
    offsets = {ph: rng.normal(0, 2, 12) for ph in "abcdt"}

    def feats(y):
        return (np.outer(y["severity"], rng.normal(size=12)) * 0.2 + np.stack([offsets[p] for p in y["photo"]])
                + rng.normal(0, 1, (len(y), 12)))

    x_tr, x_te = feats(y_tr), feats(y_te)
    t = linear_probe({"x": x_tr}, y_tr, {"x": x_te}, y_te, include_all=False, n_resamples=50).iloc[0]
    assert t["alpha_cv"] == "photo"
    xs, _ = _standardise(x_tr, x_te)
    search = GridSearchCV(Ridge(), {"alpha": list(RIDGE_ALPHAS)}, cv=LeaveOneGroupOut(),
                          scoring="neg_mean_squared_error").fit(xs, y_tr["severity"], groups=y_tr["photo"])
    assert t["alpha"] == pytest.approx(search.best_params_["alpha"])
    by_row = linear_probe({"x": x_tr}, y_tr, {"x": x_te}, y_te, include_all=False, n_resamples=50, group_by=None)
    assert by_row.iloc[0]["alpha_cv"] == "row"
    assert by_row.iloc[0]["alpha"] < t["alpha"]  # rows of the same photograph make leave-one-row-out too lenient
    one = y_tr.assign(photo="a")
    assert linear_probe({"x": x_tr}, one, {"x": x_te}, y_te, include_all=False, n_resamples=50).iloc[0]["alpha_cv"] == "row"


def test_probe_images_of_photographs_from_outside_the_embedded_set():
    rng = np.random.default_rng(0)
    photos = {"b": rng.integers(0, 256, (90, 120, 3), dtype=np.uint8), "a": rng.integers(0, 256, (80, 80, 3), dtype=np.uint8)}
    images, y = probe_images(seed=1, n_per_cell=3, size=56, photos=photos, families=("blur",))
    assert len(images) == 3 * 6 and y["photo"].tolist()[::6] == ["a", "b", "a"]
    assert all(im.shape == (56, 56, 3) for im in images)
    again, _ = probe_images(seed=1, n_per_cell=3, size=56, photos=photos, families=("blur",))
    assert all(np.array_equal(u, v) for u, v in zip(images, again))
    with pytest.raises(ValueError, match="at least one photograph"):
        probe_images(photos={})


def test_pixel_statistics_move_with_the_distortion_they_describe():
    """The model-free reference: each statistic rises with the family it was written for, on a
    photograph crop, and bad input names the picture."""
    from refine_iqa_lib.data.distortions import distort
    from refine_iqa_lib.standin.world import load_photo
    from refine_iqa_lib.standin.probe import PIXEL_STATISTICS, pixel_statistics

    crop = np.array(Image.fromarray(load_photo("astronaut")[:224, :224]).resize((112, 112)))
    rng = np.random.default_rng(0)
    variants = {"compression": "jpeg", "overexposure": "rgb_shift", "noise": "gaussian_rgb", "blur": "gaussian"}
    pics = [crop] + [distort(crop, fam, 5, rng=rng, variant=v) for fam, v in variants.items()]
    f = pd.DataFrame(pixel_statistics(pics)["pixel_stats"], columns=PIXEL_STATISTICS,
                     index=["pristine", "compression", "overexposure", "noise", "blur"])
    assert f.shape == (5, len(PIXEL_STATISTICS)) and np.isfinite(f.to_numpy()).all()
    assert f.loc["overexposure", "share_white"] > f.loc["pristine", "share_white"] + 0.05   # clipped
    assert f.loc["overexposure", "luma_q05"] > f.loc["pristine", "luma_q05"] + 0.1         # shadows lifted
    assert f.loc["noise", "noise_sigma"] > 2 * f.loc["pristine", "noise_sigma"]
    assert f.loc["blur", "laplacian_var"] < 0.5 * f.loc["pristine", "laplacian_var"]
    assert f.loc["compression", ["blockiness_h", "blockiness_v"]].mean() > f.loc["pristine", ["blockiness_h", "blockiness_v"]].mean()
    with pytest.raises(ValueError, match="image 1: expected an H x W x 3 uint8"):
        pixel_statistics([crop, crop[..., 0]])


def _smooth_photo(seed: int, shape=(150, 200)) -> np.ndarray:
    """A photograph-like picture unlike any embedded one (smooth random blobs)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
    return np.asarray(Image.fromarray(small).resize(shape[::-1], Image.BICUBIC))


def test_photo_folder_names_every_unusable_file(tmp_path):
    from refine_iqa_lib.standin.probe import load_photo_folder
    from refine_iqa_lib.standin.world import load_photo

    Image.fromarray(_smooth_photo(1)).save(tmp_path / "mine.png")
    Image.fromarray(_smooth_photo(2)).save(tmp_path / "other.jpg", quality=95)
    (tmp_path / "notes.txt").write_text("licences: mine.png CC0, other.jpg CC0")   # not a photograph: ignored
    photos = load_photo_folder(tmp_path)
    assert sorted(photos) == ["mine", "other"] and photos["mine"].shape == (150, 200, 3)
    Image.fromarray(_smooth_photo(3, (60, 300))).save(tmp_path / "thin.png")
    (tmp_path / "cut.jpg").write_bytes((tmp_path / "other.jpg").read_bytes()[:200])
    copy = np.asarray(Image.fromarray(load_photo("chelsea")).resize((225, 150)))   # a resized test photograph
    Image.fromarray(copy).save(tmp_path / "cat.jpg", quality=80)
    with pytest.raises(ValueError, match="3 of 5 photograph") as e:
        load_photo_folder(tmp_path)
    msg = str(e.value)
    assert "thin.png: 300 x 60 pixels" in msg and "cut.jpg: does not decode" in msg and "'chelsea'" in msg
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no photographs"):
        load_photo_folder(tmp_path / "empty")


def test_probe_report_fits_on_extra_photographs_too(tiny_policy):
    model, processor = tiny_policy
    extra = {"mine": _smooth_photo(1), "other": _smooth_photo(2)}
    kw = dict(seed=0, n_train=2, n_test=1, size=56, where=("post_merger",), families=("blur",), n_resamples=50,
              model=model, processor=processor)
    base = probe_report(None, **kw)
    more = probe_report(None, extra_train_photos=extra, **kw)
    assert set(more.attrs["train_photos"]) == set(base.attrs["train_photos"]) | {"mine", "other"}
    blur = lambda t: t[(t["family"] == "blur") & (t["where"] == "post_merger")].iloc[0]  # noqa: E731
    assert int(blur(more)["n_train"]) == int(blur(base)["n_train"]) * 2   # 2 crops of the 2 photographs per cell
    assert more.attrs["test_photos"] == base.attrs["test_photos"]
    with pytest.raises(ValueError, match="names of embedded photographs"):
        probe_report(None, extra_train_photos={"chelsea": extra["mine"]}, **kw)


def test_probe_report_scores_on_own_held_out_photographs(tiny_policy):
    model, processor = tiny_policy
    mine = {"mine": _smooth_photo(1), "other": _smooth_photo(2)}
    kw = dict(seed=0, n_train=2, n_test=2, size=56, where=("post_merger",), families=("blur",), n_resamples=50,
              model=model, processor=processor)
    table = probe_report(None, test_photos=mine, **kw)
    assert table.attrs["test_split"] == "own" and table.attrs["test_photos"] == ["mine", "other"]
    assert "mine" not in table.attrs["train_photos"]
    blur = table[(table["family"] == "blur") & (table["where"] == "post_merger")].iloc[0]
    assert int(blur["n_test"]) == 2 * 6          # 2 crops x (pristine + 5 severities)
    # the same photographs on the training side are cut elsewhere than on the held-out side
    train_side, _ = probe_images(seed=0, n_per_cell=1, size=56, photos=mine, families=("blur",))
    test_side, _ = probe_images(seed=0, n_per_cell=1, size=56, split="test", photos=mine, families=("blur",))
    assert not np.array_equal(train_side[0], test_side[0])
    with pytest.raises(ValueError, match="also on the probe's training side"):
        probe_report(None, test_photos=mine, extra_train_photos={"mine": mine["mine"]}, **kw)
