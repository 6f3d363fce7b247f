"""Live training curves: launch.report_to reaches TRL, and the project's own metrics (refine/*, the
validation SRCC) reach the same tracker through TRL's logging, not only metrics.jsonl."""
from __future__ import annotations

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.io import read_json
from refine_iqa_lib.training.run import TENSORBOARD_DIR, grpo_config, run_stage, runtime_config


def test_report_to_passes_through_and_a_missing_tracker_is_named_once(tmp_path, monkeypatch, capsys):
    import transformers.integrations as integrations

    args = grpo_config(load_config("smoke", {"launch.report_to": ["tensorboard", "wandb"]}), "2", tmp_path)
    assert args.report_to == ["tensorboard", "wandb"]
    assert grpo_config(load_config("smoke"), "2", tmp_path).report_to == []          # none: metrics.jsonl only
    monkeypatch.setattr(integrations, "get_available_reporting_integrations", lambda: ["tensorboard"])
    cfg, info = runtime_config(load_config("smoke", {"launch.report_to": ["tensorboard", "wandb"]}))
    out = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert out == ["[trackers] launch.report_to: wandb not installed here (pip install wandb); left out, reporting "
                   "to tensorboard (metrics.jsonl is always written)"]
    assert cfg.launch.report_to == ["tensorboard"] and info["notes"] == out


def test_smoke_stage2_with_tensorboard_writes_the_refine_and_validation_curves(tmp_path, capsys):
    pytest.importorskip("tensorboard", reason="tensorboard (the test extra) is not installed")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path), "warmup.enabled": False,
                                "stage2.init_from": "base", "stage2.no_think_every": 1, "stage2.eval_every": 2,
                                "stage2.eval_samples": 6, "scoring.embedded_n_images": 80,  # 8 val pictures
                                "launch.report_to": ["tensorboard"],
                                "launch.use_vllm": True})   # asked for, but this is a CPU run: one line, then generate
    run = run_stage(cfg, "2", run_dir=tmp_path / "tb", resume=False)
    out = capsys.readouterr().out
    assert out.count("[generation] vLLM colocate requested (launch.use_vllm) but launch.use_cpu is true") == 1
    meta = read_json(run / "run_meta.json")
    assert meta["generation"]["engine"] == "transformers generate" and meta["generation"]["configured"] == "vLLM colocate"
    assert meta["report_to"] == ["tensorboard"]
    assert load_config(str(run / "run_config.yaml")).launch.use_vllm is False       # what ran is what is recorded

    events = EventAccumulator(str(run / TENSORBOARD_DIR))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/refine/answer_think", "train/refine/answer_no_think", "train/refine/think_tokens",
                "train/refine/correct", "train/refine/pd_raw", "train/rewards/pd/mean", "train/adv/std", "train/loss",
                "train/val/srcc", "train/val/plcc", "train/val/answer"):
        assert tag in tags, (tag, sorted(tags))
    assert [e.step for e in events.Scalars("train/refine/answer_think")] == [1, 2]
    assert [e.step for e in events.Scalars("train/val/answer")] == [2]               # eval_every = 2
    from refine_iqa_lib.training.metrics import read_metrics

    val = read_metrics(run, kind="val")                                                 # and metrics.jsonl still
    assert events.Scalars("train/val/answer")[0].value == pytest.approx(float(val["val/answer"].iloc[0]), abs=1e-6)
