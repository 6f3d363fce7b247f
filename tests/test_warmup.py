"""The stand-in's pre-training (the SFT warm-up): data, completion-only loss, a short run, skip for real models."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.method.rewards import completion_to_text, format_reward
from refine_iqa_lib.standin.pretraining import warmup_dataset
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.training.run import resolve_init, run_stage


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    work = tmp_path_factory.mktemp("warmup_work")
    return load_config("smoke", {"paths.work_dir": str(work), "warmup.max_steps": 8, "warmup.warmup_steps": 1,
                                 "warmup.batch_size": 4, "warmup.save_steps": 4})


def test_dataset_is_the_pretraining_samples_in_both_layouts(cfg):
    """Every row is a sample of the pre-training set, verbatim, in the think and the no-think layout;
    no Stage-1 question and no scoring prompt (the base is never trained on what it is tested on)."""
    from refine_iqa_lib.io import read_jsonl
    from refine_iqa_lib.standin.pretrain_data import TASKS, pretrain_dir
    from refine_iqa_lib.training.data import stage1_frame

    ds = warmup_dataset(cfg, n_samples=60)
    assert len(ds) == 60 and set(ds.column_names) >= {"prompt", "completion", "images", "kind", "length"}
    root = pretrain_dir(cfg)
    samples = read_jsonl(root / "samples.jsonl")
    assert len(samples) == cfg.pretrain.n_samples == 48     # smoke's pre-training set
    known = {(r["prompt"], r["completion"], str((root / r["images"][0]).resolve())) for r in samples}
    from refine_iqa_lib.data.build import build_perception_dataset

    build_perception_dataset(cfg, progress=False)   # the Stage-1 questions the base must never train on
    stage1_questions = set()
    for mode in ("think", "no_think"):
        stage1_questions |= set(stage1_frame(cfg, "train", mode=mode)["prompt"])
    assert stage1_questions
    for row in ds:
        prompt, completion = row["prompt"][0]["content"], completion_to_text(row["completion"])
        image = row["images"][0]
        path = str(Path(image.filename).resolve()) if hasattr(image, "filename") else str(image)
        assert (prompt, completion, path) in known, (prompt, completion, path)   # a pre-training sample, verbatim
        task, mode = row["kind"].split("/")
        assert task in TASKS and format_reward(completion, mode) == 1.0
        # no Stage-1 question and never the quality question Stage-2 and the scoring evaluations ask
        assert prompt not in stage1_questions and "overall visual quality" not in prompt
    assert len({r["kind"].split("/")[0] for r in ds}) >= 3
    assert {r["kind"].split("/")[1] for r in ds} == {"think", "no_think"}
    # batches may be grouped by length: the length must not depend on the target (else one batch = one answer)
    assert ds["length"] == [len(r["prompt"][0]["content"]) + 64 * len(r["images"]) for r in ds]


def test_loss_is_on_the_completion_tokens_only(cfg, tiny_policy):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = tiny_policy
    ds = warmup_dataset(cfg, n_samples=4)
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(r) for r in ds])
    tok = processor.tokenizer
    for ids, labels, row in zip(batch["input_ids"], batch["labels"], ds):
        learned = tok.decode(ids[labels != -100])
        assert learned.startswith(completion_to_text(row["completion"]))
        assert "<|im_end|>" in learned and row["prompt"][0]["content"] not in learned


def test_short_warmup_learns_and_resumes_done(cfg, capsys):
    run_dir = run_stage(cfg, "warmup", resume=False)
    assert (run_dir / "final" / "refine_final.json").is_file()
    m = read_metrics(run_dir)
    assert m["step"].tolist() == list(range(1, 9))
    assert m["loss"].iloc[-1] < m["loss"].iloc[0]              # it learns the layouts quickly
    assert resolve_init(cfg, "1")[0] == run_dir / "final"      # Stage-1 starts from the warm-up output
    run_stage(cfg, "warmup")
    assert "already complete" in capsys.readouterr().out


def test_skipped_for_a_model_that_is_not_the_stand_in(cfg, tiny_model_dir, tmp_path, capsys):
    real = tmp_path / "not-the-stand-in"
    shutil.copytree(tiny_model_dir, real)
    (real / "refine_iqa_stand_in.json").unlink()
    other = load_config(cfg, {"model.path": str(real), "paths.work_dir": str(tmp_path / "w")})
    run_dir = run_stage(other, "warmup")
    assert "skipped" in capsys.readouterr().out and not (run_dir / "final").exists()
    assert resolve_init(other, "1") == (real, "base model")      # Stage-1 then starts from the base model


def test_one_warmup_the_pretraining_and_its_data_in_the_fingerprint(cfg):
    """The warm-up has one meaning: the stand-in's pre-training. Its resume fingerprint holds the
    ``pretrain`` section (the data it trains on); the retired recipe switch is no key any more."""
    from refine_iqa_lib.config import ConfigError
    from refine_iqa_lib.training.run import stage_fingerprint

    fp = stage_fingerprint(cfg, "warmup", "/x", 1)
    assert fp["settings"]["pretrain"]["n_samples"] == 48 and "recipe" not in fp["settings"]["section"]
    assert stage_fingerprint(load_config(cfg, {"pretrain.n_samples": 60}), "warmup", "/x", 1) != fp
    for key in ("warmup.recipe", "warmup.scoring_share"):
        with pytest.raises(ConfigError, match="unknown key"):
            load_config("smoke", {key: "labels" if key.endswith("recipe") else 0.5})


def test_freeze_vision_keeps_the_tower_and_trains_the_rest(cfg, tmp_path):
    """warmup.freeze_vision: the vision tower's weights come out of the warm-up unchanged, the language
    model's change; the switch is in the fingerprint only when on."""
    import torch
    from safetensors.torch import load_file

    from refine_iqa_lib.training.run import stage_fingerprint

    frozen = load_config(cfg, {"warmup.freeze_vision": True, "warmup.max_steps": 2, "warmup.save_steps": 2})
    init, _ = resolve_init(frozen, "warmup")
    run_dir = run_stage(frozen, "warmup", run_dir=tmp_path / "frozen", resume=False)
    before, after = load_file(str(Path(init) / "model.safetensors")), load_file(str(run_dir / "final" / "model.safetensors"))
    visual = [k for k in before if ".visual." in f".{k}"]
    text = [k for k in before if not k.startswith("visual.") and ".visual." not in k and k.endswith("mlp.down_proj.weight")]
    assert visual and text
    assert all(torch.equal(before[k], after[k]) for k in visual)
    assert any(not torch.equal(before[k], after[k]) for k in text)
    assert "freeze_vision" not in stage_fingerprint(cfg, "warmup", "/x", 1)["settings"]["section"]
    assert stage_fingerprint(frozen, "warmup", "/x", 1)["settings"]["section"]["freeze_vision"] is True


def test_group_by_length_switch(cfg, tmp_path):
    """warmup.group_by_length: on (default) = TRL/transformers' length-grouped sampler, off = uniform
    shuffling; in the resume fingerprint only when off."""
    from refine_iqa_lib.training.run import stage_fingerprint
    from refine_iqa_lib.standin.pretraining import sft_config

    assert cfg.warmup.group_by_length is True
    assert str(sft_config(cfg, tmp_path).train_sampling_strategy).endswith("group_by_length")
    mixed = load_config(cfg, {"warmup.group_by_length": False})
    assert str(sft_config(mixed, tmp_path).train_sampling_strategy).endswith("random")
    assert "group_by_length" not in stage_fingerprint(cfg, "warmup", "/x", 1)["settings"]["section"]
    assert stage_fingerprint(mixed, "warmup", "/x", 1)["settings"]["section"]["group_by_length"] is False
