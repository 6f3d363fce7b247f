"""Every picture a user has gets a row: the one image opener (refine_iqa_lib.io.open_image) and the
places that use it (refine-iqa score, evaluate's pre-check, the training data, the dataset adapters).

The problem pictures are built here: a 3 x 4000 PNG (aspect ratio beyond the processor's), a 16-bit
gray PNG, a float TIFF, 32-bit integer TIFFs, an EXIF-rotated JPEG and a picture above the pixel
limit (kept cheap by lowering the limit)."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from refine_iqa_lib.standin.world import load_photo
from refine_iqa_lib.io import (ImageReadError, ImageRefusedError, ImageRules, check_images, open_image, to_rgb8,
                               using_image_rules)


@pytest.fixture(scope="module")
def photo():
    return load_photo("coffee")[:120, :160]


@pytest.fixture(scope="module")
def gray(photo):
    return np.asarray(Image.fromarray(photo).convert("L"))


@pytest.fixture(scope="module")
def pictures(tmp_path_factory, photo, gray):
    """A folder with a normal picture and each problem picture."""
    d = tmp_path_factory.mktemp("pictures")
    Image.fromarray(photo).save(d / "a_normal.png")
    Image.fromarray(gray).save(d / "b_gray8.png")
    Image.fromarray(np.full((4000, 3, 3), 90, np.uint8)).save(d / "c_thin_3x4000.png")
    Image.fromarray(gray.astype(np.uint16) * 257).save(d / "d_gray16.png")
    Image.fromarray((gray / 255.0).astype(np.float32)).save(d / "e_float.tif")
    im = Image.fromarray(photo)
    exif = im.getexif()
    exif[0x0112] = 6                                   # stored sideways: "rotate 90 degrees clockwise to view"
    im.save(d / "f_exif_rotated.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(np.tile(photo, (3, 3, 1))).save(d / "g_large.png")   # 480 x 360 = 172,800 px
    return d


def test_wide_bit_depths_are_scaled_by_their_range_not_clipped(pictures, gray):
    assert Image.open(pictures / "d_gray16.png").mode == "I;16"
    assert Image.open(pictures / "e_float.tif").mode == "F"
    for name in ("d_gray16.png", "e_float.tif"):
        got = np.asarray(open_image(pictures / name))
        assert got.dtype == np.uint8 and got.shape == (120, 160, 3)
        np.testing.assert_array_equal(got[..., 0], gray, err_msg=name)   # exactly the 8-bit picture
    # 32-bit integers: 16-bit data is scaled as 16-bit, 8-bit data kept, anything else refused
    for values, expect in ((gray.astype(np.int32) * 257, gray), (gray.astype(np.int32), gray)):
        Image.fromarray(values).save(pictures / "int32.tif")
        assert Image.open(pictures / "int32.tif").mode.startswith("I")
        np.testing.assert_array_equal(np.asarray(open_image(pictures / "int32.tif"))[..., 0], expect)
    Image.fromarray(gray.astype(np.int32) * 1000).save(pictures / "int32_wide.tif")
    with pytest.raises(ImageRefusedError, match=r"int32_wide.tif: integer values in 13000\.\.174000; "
                                                r"expected 0\.\.65535"):
        open_image(pictures / "int32_wide.tif")
    Image.fromarray((gray / 100.0).astype(np.float32)).save(pictures / "float_wide.tif")
    with pytest.raises(ImageRefusedError, match=r"float_wide.tif: floating-point values in \[0.13, 1.74\]; "
                                                r"expected values in \[0, 1\]"):
        open_image(pictures / "float_wide.tif")
    with pytest.raises(ValueError, match="NaN"):
        to_rgb8(np.array([[0.5, np.nan]], dtype=np.float32))


def test_exif_orientation_is_applied_unless_switched_off(pictures, photo):
    upright = open_image(pictures / "f_exif_rotated.jpg")
    raw = open_image(pictures / "f_exif_rotated.jpg", ImageRules(exif_orientation=False))
    assert raw.size == (160, 120) and upright.size == (120, 160)
    np.testing.assert_array_equal(np.asarray(upright), np.asarray(raw.transpose(Image.Transpose.ROTATE_270)))
    assert np.abs(np.asarray(raw, dtype=float) - photo).mean() < 3          # raw = the stored (JPEG) pixels
    # the pictures it returns carry no orientation still to apply: opening them again changes nothing
    assert open_image(raw).size == (160, 120) and open_image(upright).size == (120, 160)
    with using_image_rules(ImageRules(exif_orientation=False)):
        assert open_image(pictures / "f_exif_rotated.jpg").size == (160, 120)


def test_limits_are_named_and_checked_before_decoding(pictures, monkeypatch):
    with pytest.raises(ImageRefusedError, match=r"c_thin_3x4000.png: aspect ratio 1333.3:1 \(3x4000\) is above "
                                                r"the image processor's limit of 200:1"):
        open_image(pictures / "c_thin_3x4000.png")
    from PIL import ImageFile

    def never(self):
        raise AssertionError("a refused picture must not be decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", never)
    with pytest.raises(ImageRefusedError, match=r"g_large.png: 480x360 = 172,800 pixels is above the pixel limit "
                                                r"of 100,000 pixels .*not decoded") as e:
        open_image(pictures / "g_large.png", ImageRules(pixel_limit=100_000))
    assert e.value.reason == "image refused"


def test_pil_decompression_bomb_checks_are_replaced_by_the_stated_limit(pictures, monkeypatch):
    """PIL warns above its MAX_IMAGE_PIXELS and refuses above twice that, whatever the caller wants;
    the opener switches that off for its header read and applies its own limit instead."""
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 30_000)           # g_large: 172,800 > 2 x 30,000
    with pytest.raises(Image.DecompressionBombError):
        Image.open(pictures / "g_large.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")                                # no DecompressionBombWarning either
        assert open_image(pictures / "g_large.png").size == (480, 360)
        assert open_image(pictures / "a_normal.png").size == (160, 120)   # 19,200: PIL would only warn
    with pytest.raises(ImageRefusedError, match="pixel limit of 50,000 pixels"):
        open_image(pictures / "g_large.png", ImageRules(pixel_limit=50_000))
    assert Image.MAX_IMAGE_PIXELS == 30_000                           # PIL's setting is left as it was


def test_score_gives_every_picture_a_row(tiny_policy, pictures):
    from refine_iqa_lib.method.scoring import Scorer

    model, processor = tiny_policy
    files = sorted(str(p) for p in pictures.iterdir() if p.suffix in (".png", ".tif", ".jpg") and "int32" not in p.name
                   and "wide" not in p.name)
    scorer = Scorer(model=model, processor=processor, batch_size=4, progress=False,
                    rules=ImageRules(pixel_limit=100_000))
    rows = {r["image"].rsplit("/", 1)[1]: r for r in scorer.score(files)}
    assert len(rows) == 7
    assert "aspect ratio 1333.3:1" in rows["c_thin_3x4000.png"]["error"]
    assert "above the pixel limit of 100,000 pixels" in rows["g_large.png"]["error"]
    scored = [n for n, r in rows.items() if r["error"] is None]
    assert scored == ["a_normal.png", "b_gray8.png", "d_gray16.png", "e_float.tif", "f_exif_rotated.jpg"]
    assert all(np.isfinite(rows[n]["score"]) for n in scored)
    # the 16-bit and float pictures are the 8-bit gray picture, so they score exactly the same
    assert rows["d_gray16.png"]["score"] == rows["e_float.tif"]["score"] == rows["b_gray8.png"]["score"]


def test_a_picture_the_processor_still_refuses_gets_its_own_row(tiny_policy, pictures, monkeypatch):
    """Beyond the opener's rules, a batch the processor refuses is scored one picture at a time."""
    import refine_iqa_lib.io as io
    from refine_iqa_lib.method.scoring import Scorer

    monkeypatch.setattr(io, "MAX_ASPECT_RATIO", 10_000.0)               # let the 3 x 4000 picture through
    model, processor = tiny_policy
    scorer = Scorer(model=model, processor=processor, batch_size=8, progress=False)
    rows = scorer.score([pictures / "a_normal.png", pictures / "c_thin_3x4000.png", pictures / "b_gray8.png"])
    assert rows[1]["error"].startswith("the image processor refused it (absolute aspect ratio must be smaller than 200")
    assert rows[0]["error"] is None and rows[2]["error"] is None and np.isfinite(rows[0]["score"])


def test_score_cli_writes_a_row_per_picture_and_switches(tiny_model_dir, pictures, tmp_path, capsys):
    from refine_iqa_lib.cli import main

    out = tmp_path / "scores.csv"
    code = main(["score", "--model", str(tiny_model_dir), str(pictures), "--out", str(out), "--no-progress",
                 "--pixel-limit", "100000", "--raw-orientation"])
    err = capsys.readouterr().err
    assert code == 2
    df = pd.read_csv(out)
    assert len(df) == len([p for p in pictures.iterdir() if p.suffix in (".png", ".tif", ".jpg")])
    assert "c_thin_3x4000.png: aspect ratio 1333.3:1" in err and "g_large.png: 480x360" in err


def test_training_precheck_and_dataset_use_the_opener(pictures, gray):
    from refine_iqa_lib.training.data import DatasetCheckError, check_images_load, to_trl_dataset

    with pytest.raises(DatasetCheckError, match=r"2 of 3 image file\(s\) cannot be loaded, e\.g\. .*c_thin_3x4000.png "
                                                r"\(aspect ratio 1333.3:1.*g_large.png \(480x360 = 172,800 pixels"):
        check_images_load([str(pictures / n) for n in ("c_thin_3x4000.png", "d_gray16.png", "g_large.png")],
                          "test data", rules=ImageRules(pixel_limit=100_000))
    ds = to_trl_dataset({"prompt": [[{"role": "user", "content": "x"}]] * 2,
                         "images": [[str(pictures / "d_gray16.png")], [str(pictures / "f_exif_rotated.jpg")]]})
    first, second = ds[0]["images"][0], ds[1]["images"][0]
    assert first.mode == "RGB" and np.array_equal(np.asarray(first)[..., 0], gray)   # not clipped to 255
    assert second.size == (120, 160)                                                  # upright
    raw = to_trl_dataset({"images": [[str(pictures / "f_exif_rotated.jpg")]]}, ImageRules(exif_orientation=False))
    assert raw[0]["images"][0].size == (160, 120)


def test_dataset_adapters_and_evaluate_precheck_follow_the_same_rules(pictures, smoke_cfg):
    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.data.sources import DataError, SourceRecord
    from refine_iqa_lib.evaluation.results import usable_images

    with pytest.raises(DataError, match="aspect ratio 1333.3:1") as e:
        SourceRecord("x", [], path=pictures / "c_thin_3x4000.png", where="t").load()
    assert e.value.reason == "image refused"
    assert SourceRecord("y", [], path=pictures / "d_gray16.png").load().mean() > 0
    cfg = load_config(smoke_cfg, {"eval.skip_unreadable": True, "images.pixel_limit": 100_000})
    df = pd.DataFrame({"image": [str(pictures / n) for n in ("a_normal.png", "c_thin_3x4000.png", "g_large.png")],
                       "mos": [1.0, 2.0, 3.0]})
    kept, extra = usable_images(cfg, df, "test pictures")
    assert kept["image"].tolist() == [str(pictures / "a_normal.png")]
    reasons = {b["image"].rsplit("/", 1)[1]: b["reason"] for b in extra["unreadable"]}
    assert "200:1" in reasons["c_thin_3x4000.png"] and "pixel limit of 100,000" in reasons["g_large.png"]
    strict = load_config(smoke_cfg, {"images.pixel_limit": 100_000})
    with pytest.raises(ImageReadError, match="2 of 3 image files unreadable"):
        usable_images(strict, df, "test pictures")
    assert check_images(df, progress=False).n_unreadable == 1          # default limit: only the thin one
