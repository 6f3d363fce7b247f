"""Tests for refine_iqa_lib.data.distortions (local distortion engine)."""
from __future__ import annotations

import ast
import inspect
import json

import cv2
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import refine_iqa_lib.data.distortions as D
from refine_iqa_lib.data.distortions import (ALLOWED_PAIRS, DISTORTIONS, EASY, HARD, SEVERITIES, VARIANTS, distort,
                                        distort_pair, distort_pair_with_info, distort_with_info, strength,
                                        to_rgb_uint8)
from refine_iqa_lib.standin.world import photo_ids
from refine_iqa_lib.standin.world import load_photo

ALL_VARIANTS = [(c, v) for c in DISTORTIONS for v in VARIANTS[c]]
RANDOM_VARIANTS = {("blur", "motion"), ("blur", "glass"), ("blur", "jitter")}
RANDOM_VARIANTS |= {("noise", v) for v in VARIANTS["noise"]}
OPPOSITES = [("overexposure", "underexposure"), ("high_contrast", "low_contrast"),
             ("oversaturate", "desaturate"), ("blur", "oversharpen")]


def _photo(name: str, side: int) -> np.ndarray:
    a = load_photo(name)
    h, w = a.shape[:2]
    s = side / max(h, w)
    return cv2.resize(a, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    img = _photo("astronaut", 128)  # 128 x 128
    img.setflags(write=False)
    return img


# --------------------------------------------------------------------------- tables
def test_tables_follow_the_paper_and_spec():
    assert len(DISTORTIONS) == 12 and DISTORTIONS[0] == "blur" and DISTORTIONS[-1] == "quantization"
    assert SEVERITIES == ("slight", "just noticeable", "relatively obvious", "severe", "very severe")
    assert set(EASY) | set(HARD) == set(DISTORTIONS) and not set(EASY) & set(HARD) and len(HARD) == 7
    counts = {c: len(v) for c, v in VARIANTS.items()}
    assert counts == {"blur": 6, "noise": 6, "compression": 2, "overexposure": 4, "underexposure": 4,
                      "high_contrast": 2, "low_contrast": 2, "oversaturate": 2, "desaturate": 2,
                      "oversharpen": 1, "pixelate": 1, "quantization": 3}
    for c in DISTORTIONS:
        for v in VARIANTS[c]:
            assert len(D._REGISTRY[c][v].levels) == 5


def test_allowed_pairs_table_rules():
    assert list(ALLOWED_PAIRS) == list(DISTORTIONS)
    assert set(ALLOWED_PAIRS["blur"]) == {"overexposure", "compression", "high_contrast", "low_contrast",
                                          "underexposure", "noise", "quantization", "oversaturate", "desaturate"}
    assert ALLOWED_PAIRS["oversharpen"] == ("overexposure",)
    for first, seconds in ALLOWED_PAIRS.items():
        assert seconds, f"{first} has no partner"
        assert len(set(seconds)) == len(seconds) and set(seconds) <= set(DISTORTIONS)
        assert first not in seconds
        for second in seconds:
            assert first not in ALLOWED_PAIRS[second], f"{first}<->{second} allowed in both orders"
            assert (first, second) not in OPPOSITES and (second, first) not in OPPOSITES


# --------------------------------------------------------------------------- the in-box rule
@pytest.mark.parametrize("category,variant", ALL_VARIANTS)
def test_box_equals_whole_image_and_outside_untouched(photo, category, variant):
    box = (21, 37, 90, 101)
    full = distort(photo, category, 3, rng=7, variant=variant)
    local = distort(photo, category, 3, bbox=box, rng=7, variant=variant)
    x1, y1, x2, y2 = box
    assert local.dtype == np.uint8 and local.shape == photo.shape
    np.testing.assert_array_equal(local[y1:y2, x1:x2], full[y1:y2, x1:x2])  # exact, every variant
    mask = np.ones(photo.shape[:2], bool)
    mask[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(local[mask], photo[mask])
    assert not np.array_equal(local[y1:y2, x1:x2], photo[y1:y2, x1:x2]), "the box was not distorted"
    # same seed -> identical; input (read-only) untouched
    np.testing.assert_array_equal(local, distort(photo, category, 3, bbox=box, rng=7, variant=variant))
    assert not photo.flags.writeable


@pytest.mark.parametrize("category,variant", sorted(RANDOM_VARIANTS))
def test_random_variants_depend_on_the_seed(photo, category, variant):
    a = distort(photo, category, 2, rng=0, variant=variant)
    b = distort(photo, category, 2, rng=1, variant=variant)
    assert not np.array_equal(a, b)
    g = np.random.default_rng(5)
    np.testing.assert_array_equal(distort(photo, category, 2, rng=g, variant=variant),
                                  distort(photo, category, 2, rng=np.random.default_rng(5), variant=variant))


def test_none_rng_means_seed_zero(photo):
    np.testing.assert_array_equal(distort(photo, "noise", 2), distort(photo, "noise", 2, rng=0))


def test_variant_draw_is_seeded_and_naming_it_reproduces(photo):
    seen = set()
    for seed in range(40):
        out, info = distort_with_info(photo, "blur", 1, rng=seed)
        seen.add(info["variant"])
        np.testing.assert_array_equal(out, distort(photo, "blur", 1, rng=seed, variant=info["variant"]))
    assert seen == set(VARIANTS["blur"])


def test_info_records_parameters(photo):
    out, info = distort_with_info(photo, "blur", 4, bbox=(0, 0, 64, 64), rng=3, variant="motion")
    assert info["category"] == "blur" and info["severity"] == 4 and info["severity_name"] == "severe"
    assert info["params"]["radius"] == 15 and info["params"]["sigma"] == 9 and 0 <= info["params"]["angle"] < 360
    assert info["bbox"] == [0, 0, 64, 64] and info["feather"] == 0
    json.dumps(info)
    _, info2 = distort_with_info(photo, "blur", 4, rng=4, variant="motion")
    assert info2["params"]["angle"] != info["params"]["angle"]
    # the recorded angle reproduces the kernel: rebuilding the variant from info gives the same pixels
    again = D._u8(D._blur_motion(photo, None, **info["params"]))
    np.testing.assert_array_equal(out[:64, :64], again[:64, :64])


def test_no_global_rng_state_touched(photo):
    np.random.seed(123)
    state = np.random.get_state()[1].copy()
    for c, v in ALL_VARIANTS:
        distort(photo, c, 1, rng=0, variant=v)
    assert np.array_equal(np.random.get_state()[1], state)


def test_source_uses_no_module_level_numpy_random():
    tree = ast.parse(inspect.getsource(D))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Attribute) and node.value.attr == "random":
            assert node.attr in {"default_rng", "Generator"}, f"np.random.{node.attr} used"
        if isinstance(node, ast.Attribute) and node.attr in {"setRNGSeed", "randu", "randn"}:
            raise AssertionError(f"cv2.{node.attr} used")


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 119), st.integers(0, 119), st.integers(8, 128), st.integers(8, 128),
       st.sampled_from([("blur", "gaussian"), ("compression", "jpeg"), ("pixelate", "block"),
                        ("noise", "impulse"), ("quantization", "bins")]))
def test_any_box_matches_whole_image(x1, y1, w, h, cv):
    img = _photo("coffee", 128)
    H, W = img.shape[:2]
    x1, y1 = min(x1, W - 8), min(y1, H - 8)
    x2, y2 = min(W, x1 + w), min(H, y1 + h)
    full = distort(img, cv[0], 4, rng=1, variant=cv[1])
    local = distort(img, cv[0], 4, bbox=(x1, y1, x2, y2), rng=1, variant=cv[1])
    expect = img.copy()
    expect[y1:y2, x1:x2] = full[y1:y2, x1:x2]
    np.testing.assert_array_equal(local, expect)


# --------------------------------------------------------------------------- numerics
def test_float_to_uint8_rounds_not_truncates():
    ramp = np.arange(256, dtype=np.uint8).reshape(16, 16)[..., None].repeat(3, axis=2)
    out = distort(ramp, "overexposure", 2, rng=0, variant="rgb_gamma")  # x ** 0.7
    expect = np.clip(np.rint((ramp / 255.0) ** 0.7 * 255), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(out, expect)
    trunc = ((ramp / 255.0) ** 0.7 * 255).astype(np.uint8)
    assert not np.array_equal(out, trunc)


def test_linear_contrast_uses_whole_image_mean():
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, 16:] = 200
    out = distort(img, "high_contrast", 1, bbox=(0, 0, 16, 32), rng=0, variant="linear")  # factor 1.4
    m = 100.0  # mean luma of the whole image, not of the (all-black) box
    assert out[0, 0, 0] == np.clip(np.rint(m + 1.4 * (0 - m)), 0, 255)
    assert out[0, 0, 0] == 0 and out[0, 20, 0] == 200  # box clipped to 0; right half untouched


def test_multiotsu_dp_is_optimal_like_skimage():
    from skimage.filters import threshold_multiotsu

    chan = _photo("chelsea", 160)[..., 0]
    hist = np.bincount(chan.ravel(), minlength=256).astype(np.float64)

    def sse(labels):
        return sum(((chan[labels == k] - chan[labels == k].mean()) ** 2).sum() for k in np.unique(labels))

    for classes in (2, 3, 4):
        lut = D._multiotsu_lut(hist, classes)
        ours = np.unique(lut[chan], return_inverse=True)[1].reshape(chan.shape)
        assert len(np.unique(ours)) == classes
        theirs = np.searchsorted(threshold_multiotsu(chan, classes=classes), chan, side="left")  # class: x <= t
        assert sse(ours) <= sse(theirs) + 1e-6 * sse(theirs)
        # each class is mapped to its mean
        for k in np.unique(ours):
            assert abs(lut[chan][ours == k][0] - chan[ours == k].mean()) <= 0.5


def test_jpeg2000_roughly_hits_its_psnr_target():
    from skimage.metrics import peak_signal_noise_ratio

    img = _photo("astronaut", 256)
    for sev, target in ((1, 29.0), (5, 23.0)):
        out = distort(img, "compression", sev, rng=0, variant="jpeg2000")
        assert abs(peak_signal_noise_ratio(img, out) - target) < 1.5


# --------------------------------------------------------------------------- strength rises with severity
@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_photo(n, 144) for n in photo_ids()[:5]]


@pytest.mark.parametrize("category,variant", ALL_VARIANTS)
def test_strength_strictly_increases_with_severity(photos, category, variant):
    box = (8, 8, 120, 88)
    means = []
    for sev in range(1, 6):
        vals = [strength(p, distort(p, category, sev, bbox=box, rng=seed, variant=variant), bbox=box)
                for p in photos for seed in (0, 1)]
        means.append(np.mean(vals))
    assert all(b > a for a, b in zip(means, means[1:])), f"{category}/{variant}: {np.round(means, 4)}"
    assert means[0] > 0.01, "severity 1 should be measurable"


def test_strength_definition(photo):
    assert strength(photo, photo) == 0.0
    noisy = distort(photo, "noise", 3, rng=0, variant="gaussian_rgb")
    s = strength(photo, noisy)
    assert 0 < s < 2
    box = (10, 10, 60, 60)
    local = distort(photo, "noise", 3, bbox=box, rng=0, variant="gaussian_rgb")
    assert strength(photo, local, bbox=box) == pytest.approx(strength(photo, noisy, bbox=box))
    assert strength(photo, local, bbox=(70, 70, 120, 120)) == 0.0
    with pytest.raises(ValueError, match="shape"):
        strength(photo, photo[:64])


# --------------------------------------------------------------------------- feather
def test_feather_band(photo):
    box, f = (20, 30, 100, 110), 3
    hard = distort(photo, "underexposure", 4, bbox=box, rng=0, variant="rgb_shift")
    soft = distort(photo, "underexposure", 4, bbox=box, rng=0, variant="rgb_shift", feather=f)
    x1, y1, x2, y2 = box
    outside = np.ones(photo.shape[:2], bool)
    outside[y1:y2, x1:x2] = False
    np.testing.assert_array_equal(soft[outside], photo[outside])
    np.testing.assert_array_equal(soft[y1 + f:y2 - f, x1 + f:x2 - f], hard[y1 + f:y2 - f, x1 + f:x2 - f])
    a, b = photo[y1, x1 + 40].astype(float), hard[y1, x1 + 40].astype(float)  # on the edge: alpha 1/4
    np.testing.assert_array_equal(soft[y1, x1 + 40], np.rint(a + (b - a) / 4))
    a, b = photo[y1 + 2, x1 + 40].astype(float), hard[y1 + 2, x1 + 40].astype(float)  # d = 2: alpha 3/4
    np.testing.assert_array_equal(soft[y1 + 2, x1 + 40], np.rint(a + 0.75 * (b - a)))


# --------------------------------------------------------------------------- pairs
def test_pair_is_the_two_steps_in_order(photo):
    box = (16, 16, 112, 96)
    out, info = distort_pair_with_info(photo, ("blur", 2), ("noise", 3), bbox=box, rng=11)
    g = np.random.default_rng(11)
    step1 = distort(photo, "blur", 2, rng=g)
    step2 = distort(step1, "noise", 3, rng=g)
    expect = photo.copy()
    expect[16:96, 16:112] = step2[16:96, 16:112]
    np.testing.assert_array_equal(out, expect)
    assert [s["category"] for s in info["steps"]] == ["blur", "noise"] and info["bbox"] == list(box)
    json.dumps(info)
    np.testing.assert_array_equal(out, distort_pair(photo, ("blur", 2), ("noise", 3), bbox=box, rng=11))


def test_pair_validation(photo):
    with pytest.raises(ValueError, match="not allowed.*overexposure"):
        distort_pair(photo, ("oversharpen", 1), ("blur", 1))
    with pytest.raises(ValueError, match=r"severity 4.*\[1, 2, 3\]"):
        distort_pair(photo, ("blur", 4), ("noise", 1))
    with pytest.raises(ValueError, match="unknown variant"):
        distort_pair(photo, ("blur", 1), ("noise", 1), variants=("gaussian", "pink"))
    with pytest.raises(ValueError, match="expected a pair"):
        distort_pair(photo, "blur", ("noise", 1))


# --------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("image,match", [
    (np.zeros((32, 32, 3), np.uint16), "uint8.*16-bit"),
    (np.zeros((32, 32, 3), np.float32), "uint8"),
    (np.zeros((32, 32), np.uint8), "grayscale"),
    (np.zeros((32, 32, 4), np.uint8), "RGBA.*convert to RGB"),
    (np.zeros((4, 32, 3), np.uint8), "smaller than 8"),
])
def test_bad_images_are_named(image, match):
    with pytest.raises(ValueError, match=match):
        distort(image, "blur", 1)


def test_non_array_image():
    with pytest.raises(TypeError, match="numpy array"):
        distort([[0, 0, 0]], "blur", 1)


@pytest.mark.parametrize("bbox,match", [
    ((0, 0, 129, 64), "outside"), ((-1, 0, 20, 20), "outside"), ((20, 20, 20, 40), "degenerate"),
    ((30, 0, 20, 20), "degenerate"), ((0, 0, 7, 64), r"\(0, 0, 7, 64\).*>= 8"), ((0.0, 0, 20, 20), "integer"),
    ((0, 0, 20), "four"),
])
def test_bad_boxes_are_named(photo, bbox, match):
    with pytest.raises(ValueError, match=match):
        distort(photo, "blur", 1, bbox=bbox)


def test_numpy_integer_box_accepted(photo):
    out = distort(photo, "blur", 1, bbox=np.array([0, 0, 8, 8]), rng=0)
    assert np.array_equal(out, distort(photo, "blur", 1, bbox=(0, 0, 8, 8), rng=0))


def test_bad_category_severity_variant(photo):
    with pytest.raises(ValueError, match="valid:.*'blur'.*'quantization'"):
        distort(photo, "haze", 1)
    for sev in (0, 6, 2.5, "2", True):
        with pytest.raises(ValueError, match="severity"):
            distort(photo, "blur", sev)
    with pytest.raises(ValueError, match=r"unknown variant 'box' of 'blur'; valid: \['gaussian'"):
        distort(photo, "blur", 1, variant="box")
    with pytest.raises(ValueError, match="feather"):
        distort(photo, "blur", 1, feather=-1)
    with pytest.raises(TypeError, match="Generator"):
        distort(photo, "blur", 1, rng=np.random.RandomState(0))


def test_to_rgb_uint8_is_explicit():
    gray = np.arange(64, dtype=np.uint8).reshape(8, 8)
    np.testing.assert_array_equal(to_rgb_uint8(gray), np.repeat(gray[..., None], 3, 2))
    rgba = np.random.default_rng(0).integers(0, 256, (8, 8, 4), dtype=np.uint8)
    np.testing.assert_array_equal(to_rgb_uint8(rgba), rgba[..., :3])
    assert to_rgb_uint8(np.full((8, 8, 3), 32896, np.uint16))[0, 0, 0] == 128
    assert to_rgb_uint8(np.full((8, 8, 3), 0.5))[0, 0, 0] == 128  # rint(127.5) -> 128 (half to even)
    assert to_rgb_uint8(np.ones((8, 8), bool))[0, 0, 1] == 255
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        to_rgb_uint8(np.full((8, 8, 3), 2.0))
    with pytest.raises(ValueError, match="shape"):
        to_rgb_uint8(np.zeros((8, 8, 2), np.uint8))
    with pytest.raises(ValueError, match="dtype"):
        to_rgb_uint8(np.zeros((8, 8, 3), np.int64))


def test_every_variant_works_on_tiny_and_flat_images():
    rng = np.random.default_rng(0)
    for img in (rng.integers(0, 256, (8, 9, 3), dtype=np.uint8), np.zeros((8, 8, 3), np.uint8),
                np.full((9, 8, 3), 255, np.uint8)):
        for c, v in ALL_VARIANTS:
            for sev in (1, 5):
                out = distort(img, c, sev, rng=0, variant=v)
                assert out.shape == img.shape and out.dtype == np.uint8


def test_strength_measures_boxes_smaller_than_the_ssim_window():
    from refine_iqa_lib.standin.world import load_photo

    image = load_photo("chelsea")
    box = (40, 40, 48, 49)  # 8 x 9 px: narrower than SSIM's 11 px window
    noisy = D.distort(image, "noise", 3, bbox=box, rng=0)
    assert D.strength(image, noisy, box) > 0.1
    assert D.strength(image, image, box) == 0.0
