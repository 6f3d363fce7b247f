"""Validation while training: val rows in metrics.jsonl every eval_every steps, best/ with keep_best,
and a run with validation trains exactly like one without (settings outside the fingerprint)."""
from __future__ import annotations

import numpy as np

from refine_iqa_lib.config import load_config
from refine_iqa_lib.io import read_json
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.training.run import TRL_FIELDS, run_stage, stage_fingerprint
from refine_iqa_lib.training.validation import BEST_MARKER, validation_frame


def _cfg(tmp_path, **over):
    base = {"paths.work_dir": str(tmp_path), "warmup.enabled": False, "stage2.init_from": "base",
            "stage2.max_steps": 4, "stage2.save_steps": 2, "stage2.max_samples": 3, "stage2.no_think_every": 0,
            "scoring.embedded_n_images": 80}  # 8 validation pictures (10 %)
    return load_config("smoke", {**base, **over})


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "model.safetensors"))


def test_validation_subset_is_fixed_and_from_the_val_split(tmp_path):
    cfg = _cfg(tmp_path, **{"stage2.eval_samples": 3})
    a, b = validation_frame(cfg), validation_frame(cfg)
    assert a.equals(b) and len(a) <= 3 and set(a["split"]) == {"val"}


def test_validation_keys_are_not_trl_fields_nor_in_the_fingerprint(tmp_path):
    on = _cfg(tmp_path, **{"stage2.eval_every": 2, "stage2.keep_best": True, "stage2.eval_samples": 4})
    off = _cfg(tmp_path)
    assert not {"eval_every", "eval_samples", "keep_best"} & set(TRL_FIELDS)
    assert stage_fingerprint(on, "2", tmp_path, 1)["fingerprint"] == stage_fingerprint(off, "2", tmp_path, 1)["fingerprint"]


def test_four_step_run_writes_val_rows_and_best(tmp_path):
    cfg = _cfg(tmp_path, **{"stage2.eval_every": 2, "stage2.keep_best": True, "stage2.eval_samples": 6})
    run = run_stage(cfg, "2", run_dir=tmp_path / "val", resume=False)
    val = read_metrics(run, kind="val")
    assert val["step"].tolist() == [2, 4]
    for key in ("val/srcc", "val/plcc", "val/answer"):
        assert key in val.columns
    assert val["val/answer"].between(0, 1).all() and (val["val/n"] == 6).all()
    marker = read_json(run / "best" / BEST_MARKER)
    assert val["val/srcc"].notna().all()
    assert marker["step"] == int(val.loc[val["val/srcc"].idxmax(), "step"])  # first of the best on a tie
    assert (run / "best" / "model.safetensors").is_file() and (run / "best" / "config.json").is_file()
    assert len(read_metrics(run)) == 4  # the step rows are unchanged

    plain = run_stage(_cfg(tmp_path), "2", run_dir=tmp_path / "plain", resume=False)
    a, b = _weights(run), _weights(plain)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) == 0.0  # validation never changes training
    np.testing.assert_allclose(read_metrics(run)["loss"].astype(float), read_metrics(plain)["loss"].astype(float))
