"""Tests for refine_iqa_lib.standin.perceive: label-free pixel statistics and the think texts made of them."""
from __future__ import annotations

import ast
import inspect
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import refine_iqa_lib.standin.perceive as perceive
from refine_iqa_lib.data.distortions import DISTORTIONS, distort
from refine_iqa_lib.standin.perceive import (PHRASES, STAT_NAMES, TYPICAL, describe, describe_stats, description_lengths,
                                          deviations, pixel_stats, pristine_ranges, stat_response, vocabulary, words)
from refine_iqa_lib.io import ImageNotFoundError
from refine_iqa_lib.standin.world import load_photo


def _square(name: str, side: int = 112) -> np.ndarray:
    a = load_photo(name)
    c = min(a.shape[:2])
    out = cv2.resize(a[:c, :c], (side, side), interpolation=cv2.INTER_AREA)
    out.setflags(write=False)
    return out


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _square("chelsea")


@pytest.fixture(scope="module")
def photos() -> list[np.ndarray]:
    return [_square(n) for n in ("chelsea", "coffee", "astronaut", "rocket")]


def _series(img: np.ndarray, category: str, variant: str, stat: str) -> list[float]:
    """The statistic on the pristine picture, then at severities 1-5 of one variant."""
    return [pixel_stats(img)[stat]] + [pixel_stats(distort(img, category, s, rng=0, variant=variant))[stat]
                                       for s in range(1, 6)]


# --------------------------------------------------------------------------- pixels only
def test_describe_takes_pixels_only():
    assert list(inspect.signature(describe).parameters) == ["image", "seed"]
    assert list(inspect.signature(describe_stats).parameters) == ["stats", "rng"]
    assert list(inspect.signature(pixel_stats).parameters) == ["image"]
    for fn in (describe, describe_stats, pixel_stats, deviations):
        names = set(inspect.signature(fn).parameters)
        assert not names & {"category", "severity", "mos", "label", "score"}, fn.__name__


def test_data_layer_imports_only():
    """The module may use the io helpers and other data modules, never training, method,
    evaluation or the models."""
    tree = ast.parse(Path(perceive.__file__).read_text())
    mods = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    mods |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    banned = ("refine_iqa_lib.training", "refine_iqa_lib.method", "refine_iqa_lib.evaluation", "refine_iqa_lib.models")
    assert not [m for m in mods if m.startswith(banned)], mods


def test_stats_are_named_and_finite(photo):
    s = pixel_stats(photo)
    assert list(s) == list(STAT_NAMES) == list(TYPICAL)
    assert all(np.isfinite(v) for v in s.values())
    assert 0 <= s["mean_luma"] <= 1 and 0 <= s["dark_clip"] <= 1 and 0 <= s["saturation"] <= 1
    assert 1 <= s["tone_levels"] <= 256 and s["blockiness"] >= 1


def test_stats_of_a_flat_picture_are_defined():
    s = pixel_stats(np.full((32, 32, 3), 7, np.uint8))
    assert s["sharpness"] == 0.0 and s["noise"] == 0.0 and s["tone_levels"] == 1.0 and s["blockiness"] == 1.0


def test_accepts_array_pil_and_path(photo, tmp_path):
    path = tmp_path / "crop.png"
    Image.fromarray(photo).save(path)
    assert pixel_stats(photo) == pixel_stats(Image.fromarray(photo)) == pixel_stats(path) == pixel_stats(str(path))
    assert describe(photo, seed=4) == describe(path, seed=4)


def test_errors_name_the_input_and_the_expectation(tmp_path):
    with pytest.raises(ValueError, match=r"\(64, 64\).*H x W x 3 uint8"):
        pixel_stats(np.zeros((64, 64), np.uint8))
    with pytest.raises(ValueError, match=r"float32.*uint8"):
        pixel_stats(np.zeros((64, 64, 3), np.float32))
    with pytest.raises(ValueError, match=r"8x8 px.*>= 16"):
        pixel_stats(np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ImageNotFoundError, match="nothing.png"):
        pixel_stats(tmp_path / "nothing.png")
    with pytest.raises(ValueError, match=r"missing \['noise'\]"):
        describe_stats({k: 0.5 for k in STAT_NAMES if k != "noise"}, np.random.default_rng(0))
    with pytest.raises(TypeError, match="Generator"):
        describe_stats({k: TYPICAL[k][1] for k in STAT_NAMES}, 0)
    with pytest.raises(TypeError, match="seed"):
        describe(np.zeros((32, 32, 3), np.uint8), seed="a")


# --------------------------------------------------------------------------- thresholds
def test_typical_ranges_are_those_of_the_training_photographs():
    """TYPICAL is exactly what pristine_ranges(TYPICAL_PHOTOS) prints (the module docstring says which)."""
    from refine_iqa_lib.standin.perceive import TYPICAL_PHOTOS

    ranges = pristine_ranges(list(TYPICAL_PHOTOS))
    assert list(ranges) == list(TYPICAL)
    for name, quantiles in ranges.items():
        assert quantiles == pytest.approx(TYPICAL[name], rel=2e-3, abs=1e-6), name
    for lo, med, hi in TYPICAL.values():
        assert lo <= med <= hi


def test_deviation_sides_and_strength():
    typical = {k: TYPICAL[k][1] for k in STAT_NAMES}
    assert deviations(typical) == {}
    lo, med, hi = TYPICAL["mean_luma"]
    mild = deviations({**typical, "mean_luma": lo - 0.1 * (med - lo)})[("mean_luma", "low")]
    strong = deviations({**typical, "mean_luma": lo - (med - lo)})[("mean_luma", "low")]
    assert 0 < mild < perceive.STRONG_FACTOR <= strong
    assert ("mean_luma", "high") in deviations({**typical, "mean_luma": 0.99})


# --------------------------------------------------------------------------- responses
@pytest.mark.parametrize("category, variant, stat, sign", [
    ("blur", "gaussian", "sharpness", -1),
    ("noise", "gaussian_rgb", "noise", +1),
    ("underexposure", "rgb_shift", "mean_luma", -1),
    ("overexposure", "rgb_shift", "mean_luma", +1),
    ("desaturate", "hsv", "colourfulness", -1),
    ("compression", "jpeg", "blockiness", +1),
    ("pixelate", "block", "pixelation", +1),
    ("oversharpen", "unsharp", "halo", +1),
    ("quantization", "bins", "tone_levels", -1),
    ("low_contrast", "linear", "contrast", -1),
    ("high_contrast", "linear", "contrast", +1),
])
def test_statistic_moves_with_the_distortion(photo, category, variant, stat, sign):
    """Pristine, then severities 1-5: strictly monotonic in the expected direction."""
    v = np.array(_series(photo, category, variant, stat))
    assert np.all(sign * np.diff(v) > 0), (category, v)


def test_stat_response_has_every_category_and_expected_signs():
    r = stat_response(photos=["coffee"], n_crops=2)
    assert set(r) == set(DISTORTIONS)
    for category, row in r.items():
        assert row["statistic"] == perceive.RELEVANT_STAT[category][0]
        assert -1 <= row["pooled"] <= 1
    for category in ("noise", "underexposure", "desaturate", "pixelate", "quantization", "oversharpen"):
        assert perceive.RELEVANT_STAT[category][1] * r[category]["within_crop"] > 0.5, (category, r[category])


# --------------------------------------------------------------------------- descriptions
def test_deterministic_by_seed_and_phrasing_varies(photo):
    noisy = distort(photo, "noise", 4, rng=0, variant="gaussian_rgb")
    assert describe(noisy, seed=3) == describe(noisy, seed=3)
    assert describe(noisy) == describe(noisy, seed=0)
    assert len({describe(noisy, seed=s) for s in range(10)}) >= 3


@pytest.mark.parametrize("category, variant, pattern", [
    ("blur", "gaussian", r"\b(soft|blur\w*|out of focus)\b"),
    ("noise", "gaussian_rgb", r"\b(grain\w*|noise|speckle\w*)\b"),
    ("underexposure", "rgb_shift", r"\bdark\b"),
])
def test_heavy_distortions_are_described_as_perceived(photos, category, variant, pattern):
    for img in photos:
        pristine, text = describe(img, seed=1), describe(distort(img, category, 5, rng=0, variant=variant), seed=1)
        assert text != pristine
        assert re.search(pattern, text), text
        assert not re.search(pattern, pristine) or category == "underexposure", pristine


def test_a_typical_picture_gets_one_short_sentence():
    text = describe_stats({k: TYPICAL[k][1] for k in STAT_NAMES}, np.random.default_rng(2))
    assert text == "Looking at it, the picture looks sharp and clean, with natural colours and even exposure."
    assert ";" not in text


def test_length_varies_with_what_is_seen(photos):
    counts = [len(words(describe(distort(img, c, s, rng=i), seed=i)))
              for i, img in enumerate(photos) for c in DISTORTIONS for s in (1, 3, 5)]
    assert np.median(counts) >= 12
    assert len(set(counts)) >= 6 and max(counts) >= 1.5 * min(counts)
    report = description_lengths(photos=["coffee"], n_crops=2)
    assert report["n"] == 2 + 2 * len(DISTORTIONS) * 5
    assert report["median"] >= 12 and report["distinct"] >= 4 and report["min"] < report["max"]


def test_every_emitted_word_is_in_the_vocabulary(photos):
    vocab = set(vocabulary())
    assert all(isinstance(p, str) and p and p == p.strip() for p in PHRASES)
    texts = [describe(img, seed=s) for s, img in enumerate(photos)]
    texts += [describe(distort(img, c, s, rng=i), seed=i + s)
              for i, img in enumerate(photos) for c in DISTORTIONS for s in (2, 5)]
    for text in texts:
        assert set(words(text)) <= vocab, set(words(text)) - vocab
        assert set(re.findall(r"[^\w\s'-]", text)) <= vocab, text
        assert text.endswith(".") and text[0].isupper()
