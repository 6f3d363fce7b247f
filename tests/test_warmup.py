"""The stand-in's SFT warm-up: data, completion-only loss, a short run, skip for real models."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.prompts import format_mos_text
from refine_iqa_lib.method.rewards import completion_to_text, format_reward, parse_score
from refine_iqa_lib.training.run import resolve_init, run_stage
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.standin.pretraining import quality_word, warmup_dataset


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    work = tmp_path_factory.mktemp("warmup_work")
    return load_config("smoke", {"paths.work_dir": str(work), "warmup.max_steps": 8, "warmup.warmup_steps": 1,
                                 "warmup.batch_size": 4, "warmup.save_steps": 4})


def test_dataset_teaches_both_layouts_and_the_mos(cfg):
    ds = warmup_dataset(cfg, n_samples=40)
    assert len(ds) == 40 and set(ds.column_names) >= {"prompt", "completion", "images", "kind"}
    assert {"scoring/think", "scoring/no_think"} <= set(ds["kind"])
    meta_words = {"clean", "noise", "dark"}
    for row in ds:
        text = completion_to_text(row["completion"])
        mode = row["kind"].split("/")[1]
        assert format_reward(text, mode) == 1.0, text
        assert len(row["images"]) == 1
        if mode == "think":  # think cue from the embedded set's metadata: the distortion it carries
            assert any(w in text for w in meta_words), text
    # the answers are the training MOS written as the Stage-2 layout
    score = [parse_score(completion_to_text(r["completion"])) for r in ds]
    assert all(s is not None and 0 <= s <= 4.9 for s in score)
    assert format_mos_text(3.44) == "3.4" and quality_word(2.2) == "fair"
    # batches are grouped by length: the length must not depend on the target (else one batch = one answer)
    think_lengths = {ln for ln, k in zip(ds["length"], ds["kind"]) if k == "scoring/think"}
    assert len(think_lengths) == 1


def test_loss_is_on_the_completion_tokens_only(cfg, tiny_policy):
    from trl.trainer.sft_trainer import DataCollatorForVisionLanguageModeling

    model, processor = tiny_policy
    ds = warmup_dataset(cfg, n_samples=4)
    batch = DataCollatorForVisionLanguageModeling(processor, completion_only_loss=True)([dict(r) for r in ds])
    tok = processor.tokenizer
    for ids, labels, row in zip(batch["input_ids"], batch["labels"], ds):
        learned = tok.decode(ids[labels != -100])
        assert learned.startswith(completion_to_text(row["completion"]))
        assert "<|im_end|>" in learned and "How would you rate" not in learned


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


# --------------------------------------------------------------------------- warmup.recipe
@pytest.fixture(scope="module")
def pretrain_cfg(tmp_path_factory):
    from refine_iqa_lib.data.build import build_perception_dataset

    work = tmp_path_factory.mktemp("warmup_pretrain")
    pcfg = load_config("smoke", {"paths.work_dir": str(work / "work"), "paths.results_dir": str(work / "results"),
                                 "warmup.recipe": "pretrain", "pretrain.n_samples": 120, "warmup.max_steps": 8,
                                 "warmup.batch_size": 4})
    build_perception_dataset(pcfg, progress=False)
    return pcfg


def test_pretrain_recipe_trains_on_the_pretraining_samples_only(pretrain_cfg):
    from refine_iqa_lib.standin.pretrain_data import TASKS, pretrain_dir
    from refine_iqa_lib.io import read_jsonl
    from refine_iqa_lib.training.data import stage1_frame

    ds = warmup_dataset(pretrain_cfg, n_samples=60)
    assert len(ds) == 60 and set(ds.column_names) >= {"prompt", "completion", "images", "kind", "length"}
    root = pretrain_dir(pretrain_cfg)
    samples = read_jsonl(root / "samples.jsonl")
    known = {(r["prompt"], r["completion"], str((root / r["images"][0]).resolve())) for r in samples}
    stage1_questions = set()
    for mode in ("think", "no_think"):
        stage1_questions |= set(stage1_frame(pretrain_cfg, "train", mode=mode)["prompt"])
    assert stage1_questions  # the perception build is there: the labels recipe would have used it
    for row in ds:
        prompt, completion = row["prompt"][0]["content"], completion_to_text(row["completion"])
        image = row["images"][0]
        path = str(Path(image.filename).resolve()) if hasattr(image, "filename") else str(image)
        assert (prompt, completion, path) in known, (prompt, completion, path)   # a pre-training sample, verbatim
        task, mode = row["kind"].split("/")
        assert task in TASKS and format_reward(completion, mode) == 1.0
        assert prompt not in stage1_questions and "How would you rate" not in prompt   # no Stage-1, no scoring MOS
    assert len({r["kind"].split("/")[0] for r in ds}) >= 3


def test_default_recipe_is_unchanged_and_stays_out_of_the_fingerprint(cfg, pretrain_cfg):
    from refine_iqa_lib.config import ConfigError
    from refine_iqa_lib.training.run import stage_fingerprint

    assert cfg.warmup.recipe == "labels"
    explicit = load_config(cfg, {"warmup.recipe": "labels"})
    a, b = warmup_dataset(cfg, n_samples=24), warmup_dataset(explicit, n_samples=24)
    for key in ("prompt", "completion", "kind", "length"):
        assert a[key] == b[key]
    assert all(k.startswith("scoring/") for k in a["kind"])   # smoke without a perception build: scoring only
    fp = stage_fingerprint(cfg, "warmup", "/x", 1)
    assert "recipe" not in fp["settings"]["section"] and "pretrain" not in fp["settings"]
    assert fp == stage_fingerprint(explicit, "warmup", "/x", 1)
    other = stage_fingerprint(pretrain_cfg, "warmup", "/x", 1)
    assert other["settings"]["section"]["recipe"] == "pretrain" and "pretrain" in other["settings"]
    with pytest.raises(ConfigError, match="labels, pretrain"):
        load_config("smoke", {"warmup.recipe": "mos"})


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
