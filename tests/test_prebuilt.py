"""The committed pre-trained stand-in (standin/prebuilt.py, standin/__main__.py): exported, adopted
only on an exact key, trained again (naming what differs) otherwise."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.runs import is_complete
from refine_iqa_lib.standin.prebuilt import PREBUILT_FILE, export_prebuilt, key_hash, warmup_key, warmup_settings
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
    assert "differs in: warmup.learning_rate" in caplog.text and "make standin" in caplog.text


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
    """The committed base is adopted only on an exact key: the tiny profile's warm-up settings (with
    the retired recipe fields held fixed), model and launch parts are those it was trained with.
    (The data part needs the tiny build; it is checked whenever `make reproduce` adopts the base.)"""
    tiny = load_config("tiny")
    committed = json.loads((tiny.resolve(tiny.warmup.prebuilt) / PREBUILT_FILE).read_text())["key"]
    assert warmup_settings(tiny) == committed["warmup"]
    assert {k: getattr(tiny.model, k) for k in ("dtype", "min_pixels", "max_pixels")} == committed["model"]
