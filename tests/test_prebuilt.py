"""The committed pre-trained stand-in (standin/prebuilt.py, standin/__main__.py): exported, adopted
only on an exact key, trained again (naming what differs) otherwise."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.runs import is_complete
from refine_iqa_lib.standin.prebuilt import (MANIFEST_FILE, PREBUILT_FILE, export_prebuilt, key_hash, warmup_key,
                                            warmup_settings)
from refine_iqa_lib.training.run import resolve_init, run_stage, stage_fingerprint


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    work = tmp_path_factory.mktemp("prebuilt_work")
    return load_config("smoke", {"paths.work_dir": str(work), "warmup.max_steps": 3, "warmup.warmup_steps": 1,
                                 "warmup.batch_size": 2, "warmup.save_steps": 3,
                                 "warmup.prebuilt": str(work / "committed")})


@pytest.fixture(scope="module")
def exported(cfg):
    """The regenerating command's library call, on the smoke profile (what `make standin` runs)."""
    from refine_iqa_lib.standin.__main__ import build_standin

    return build_standin(cfg)


def test_the_regenerating_command_writes_a_committed_folder(cfg, exported):
    assert exported == cfg.resolve(cfg.warmup.prebuilt)
    stamp = json.loads((exported / PREBUILT_FILE).read_text())
    assert stamp["steps"] == 3 and stamp["command"] == "make standin"
    assert (exported / "final" / "model.safetensors").is_file() and (exported / "metrics.jsonl").is_file()
    assert not (exported / "final" / "refine_final.json").exists()   # the marker belongs to a run, not the folder
    init, _ = resolve_init(cfg, "warmup")
    assert stamp["key_hash"] == key_hash(warmup_key(cfg, init)) and stamp["key"]["data"]["rows"] == 6
    assert "prebuilt" not in stamp["key"]["warmup"] and "save_steps" not in stamp["key"]["warmup"]
    assert {"python", "torch", "numpy", "pillow", "scipy"} <= set(stamp["versions"])    # the stack it was made with
    manifest = (exported / MANIFEST_FILE).read_text().splitlines()
    assert manifest[0] == "id,text,pixels" and len(manifest) - 1 == stamp["key"]["data"]["samples"]


def test_a_matching_key_is_adopted_without_training(cfg, exported, tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="refine_iqa_lib"):
        run = run_stage(cfg, "warmup", run_dir=tmp_path / "run", resume=True)
    assert is_complete(run) and "adopted the committed pre-trained stand-in" in caplog.text
    assert not (run / "checkpoints").exists()   # nothing trained
    assert (run / "final" / "model.safetensors").read_bytes() == (exported / "final" / "model.safetensors").read_bytes()
    marker = json.loads((run / "final" / "refine_final.json").read_text())
    init, _ = resolve_init(cfg, "warmup")
    assert marker["fingerprint"] == stage_fingerprint(cfg, "warmup", init, 1)["fingerprint"]
    assert json.loads((run / "run_meta.json").read_text())["prebuilt"]


def test_a_different_key_trains_and_names_the_difference(cfg, exported, tmp_path, caplog):
    other = load_config(cfg, {"warmup.learning_rate": 5e-4})
    with caplog.at_level(logging.INFO, logger="refine_iqa_lib"):
        run = run_stage(other, "warmup", run_dir=tmp_path / "run", resume=True)
    assert is_complete(run) and (run / "checkpoints").exists()
    assert "settings or model: warmup.learning_rate" in caplog.text and "make standin" in caplog.text


def test_the_key_holds_pixels_not_file_bytes_and_a_change_is_named(cfg, exported, tmp_path, caplog):
    """Re-encoding every pre-training picture (same pixels, other bytes, as an encoder update does)
    keeps the key; changing one picture's pixels changes it, and the log names that sample."""
    import numpy as np
    from PIL import Image

    from refine_iqa_lib.io import read_jsonl
    from refine_iqa_lib.standin.pretrain_data import pretrain_dir

    init, _ = resolve_init(cfg, "warmup")
    before = warmup_key(cfg, init)
    from refine_iqa_lib.standin.pretraining import warmup_frame

    rows = read_jsonl(pretrain_dir(cfg) / "samples.jsonl")
    used = warmup_frame(cfg)["id"][0]                       # a sample the warm-up trains on
    row = next(r for r in rows if r["id"] == used)
    first = pretrain_dir(cfg) / row["images"][0]
    original = first.read_bytes()
    try:
        for r in rows:
            path = pretrain_dir(cfg) / r["images"][0]
            with Image.open(path) as im:
                arr = np.asarray(im)
            Image.fromarray(arr).save(path, format="PNG", compress_level=9)
        assert first.read_bytes() != original and warmup_key(cfg, init) == before
        with Image.open(first) as im:
            arr = np.array(im)
        arr[0, 0] = 255 - arr[0, 0]
        Image.fromarray(arr).save(first)
        assert warmup_key(cfg, init)["data"]["sha256"] != before["data"]["sha256"]
        with caplog.at_level(logging.INFO, logger="refine_iqa_lib"):
            run = run_stage(cfg, "warmup", run_dir=tmp_path / "run", resume=True)
        assert is_complete(run) and (run / "checkpoints").exists()
        assert f"{used} {first.name} (pixels)" in caplog.text and "samples differ" in caplog.text
    finally:
        first.write_bytes(original)


def test_a_missing_folder_trains_and_the_switch_is_off_by_default(cfg, tmp_path, caplog):
    assert load_config("smoke").warmup.prebuilt == ""
    missing = load_config(cfg, {"warmup.prebuilt": str(tmp_path / "nowhere")})
    with caplog.at_level(logging.INFO, logger="refine_iqa_lib"):
        run = run_stage(missing, "warmup", run_dir=tmp_path / "run", resume=True)
    assert is_complete(run) and "no committed pre-trained stand-in" in caplog.text
    assert "prebuilt" not in stage_fingerprint(cfg, "warmup", "/x", 1)["settings"]["section"]


def test_export_refuses_an_unfinished_run(cfg, tmp_path):
    with pytest.raises(FileNotFoundError, match="not finished"):
        export_prebuilt(cfg, tmp_path / "empty", tmp_path / "out")


def test_the_tiny_profiles_settings_still_match_the_committed_key():
    """The committed base is adopted only on an exact key: the tiny profile's warm-up settings,
    model and launch parts are those it was trained with.
    (The data part needs the tiny build; it is checked whenever `make reproduce` adopts the base.)"""
    tiny = load_config("tiny")
    committed = json.loads((tiny.resolve(tiny.warmup.prebuilt) / PREBUILT_FILE).read_text())["key"]
    assert warmup_settings(tiny) == committed["warmup"]
    assert {k: getattr(tiny.model, k) for k in ("dtype", "min_pixels", "max_pixels")} == committed["model"]
