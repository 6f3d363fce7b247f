"""LoRA on the stand-in (CPU, smoke sizes, lora.enabled): only adapter weights train, PD reads the
adapter-enabled policy, save / resume equals an uninterrupted run, the merged model scores as the
unmerged one (1e-5)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from transformers import TrainerCallback

from refine_iqa_lib.config import load_config
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.training.run import run_stage, stage_fingerprint

LORA = {"lora.enabled": True, "lora.r": 4, "lora.alpha": 8, "lora.dropout": 0.0}


class _Interrupt(Exception):
    pass


def _cfg(tmp_path, **over):
    base = {"paths.work_dir": str(tmp_path), "warmup.enabled": False, "stage2.init_from": "base",
            "stage2.max_steps": 4, "stage2.save_steps": 2, "stage2.max_samples": 3, "stage2.no_think_every": 0,
            "stage2.learning_rate": 5e-3, **LORA}
    return load_config("smoke", {**base, **over})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("lora_work")


@pytest.fixture(scope="module")
def runs(work):
    """A 4-step LoRA run straight, and one killed after the step-2 checkpoint and resumed."""
    cfg = _cfg(work)
    straight = run_stage(cfg, "2", run_dir=work / "straight", resume=False)

    class KillAt2(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise _Interrupt

    with pytest.raises(_Interrupt):
        run_stage(cfg, "2", run_dir=work / "killed", resume=False, callbacks=[KillAt2()])
    assert not (work / "killed" / "final").exists()
    resumed = run_stage(cfg, "2", run_dir=work / "killed", resume=True)
    return cfg, straight, resumed


def _load(path):
    from safetensors.torch import load_file

    return load_file(str(path))


def test_lora_is_in_the_fingerprint_only_when_enabled(work):
    on, off = _cfg(work), _cfg(work, **{"lora.enabled": False})
    assert "lora" in stage_fingerprint(on, "2", work, 1)["settings"]
    assert "lora" not in stage_fingerprint(off, "2", work, 1)["settings"]
    assert "LoRA r=4" in __import__("refine_iqa_lib.training.run", fromlist=["x"]).stage_settings(on, "2")


def test_only_adapters_train_and_pd_reads_the_adapter_enabled_policy(work, tiny_model_dir):
    from peft import PeftModel

    from refine_iqa_lib.method.teacher_forcing import PDReward, forced_digit_probs
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.prompts import scoring_prompt, user_message
    from refine_iqa_lib.training.data import stage2_dataset
    from refine_iqa_lib.training.lora import peft_config, trainable_parameters
    from refine_iqa_lib.training.run import grpo_config
    from refine_iqa_lib.training.trainer import RefineGRPOTrainer, RefineSettings

    cfg = _cfg(work)
    model, processor = load_policy(tiny_model_dir)
    trainer = RefineGRPOTrainer(model=model, args=grpo_config(cfg, "2", work / "unit"), train_dataset=stage2_dataset(cfg),
                                processing_class=processor, refine=RefineSettings.from_stage(cfg.stage2, "2"),
                                peft_config=peft_config(cfg))
    assert isinstance(trainer.model, PeftModel)
    trainable = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n and "visual" not in n for n in trainable)
    n, total = trainable_parameters(trainer.model)
    assert n == sum(p.numel() for n_, p in trainer.model.named_parameters() if "lora_" in n_) and n < 0.05 * total
    (pd,) = [f for f in trainer.reward_funcs if isinstance(f, PDReward)]
    assert pd.policy() is trainer.model
    with torch.no_grad():  # give the adapter an effect, then PD must see it
        for name, p in trainer.model.named_parameters():
            if "lora_B" in name:
                p.add_(0.05)
    prompt = processor.apply_chat_template(user_message(scoring_prompt("think")), add_generation_prompt=True,
                                           tokenize=False)
    image = stage2_dataset(cfg)[0]["image_path"]
    args = ([prompt], ["<think>x</think><answer>3.4"], image, "3.4")
    with_adapter = forced_digit_probs(pd.policy(), processor, *args)
    with trainer.model.disable_adapter():
        without = forced_digit_probs(pd.policy(), processor, *args)
    assert not np.allclose(np.asarray(with_adapter, dtype=float), np.asarray(without, dtype=float))


def test_run_changes_only_adapter_weights_and_resumes_exactly(runs, tiny_model_dir):
    cfg, straight, resumed = runs
    meta = json.loads((straight / "run_meta.json").read_text())
    assert meta["lora"]["r"] == 4 and meta["lora"]["trainable_parameters"]["trainable"] > 0
    a, b = _load(straight / "adapter" / "adapter_model.safetensors"), _load(resumed / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all("lora_" in k for k in a)
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    changed_b = sum(int((a[k] != 0).sum()) for k in a if "lora_B" in k)   # lora_B starts at zero
    n_b = sum(a[k].numel() for k in a if "lora_B" in k)
    print(f"LoRA run: {sum(v.numel() for v in a.values())} adapter parameters trained "
          f"({meta['lora']['trainable_parameters']}); {changed_b} of {n_b} lora_B entries moved from 0")
    assert changed_b > 0
    ma, mb = read_metrics(straight), read_metrics(resumed)
    assert ma["step"].tolist() == mb["step"].tolist() == [1, 2, 3, 4]
    np.testing.assert_allclose(ma["loss"].astype(float), mb["loss"].astype(float), atol=1e-6)

    # the base weights under the adapter are the base model's, unchanged
    from peft import PeftModel

    from refine_iqa_lib.models import load_policy

    base, _ = load_policy(tiny_model_dir)
    original = {k: v.clone() for k, v in base.state_dict().items()}
    peft_model = PeftModel.from_pretrained(base, str(straight / "adapter"))
    for name, p in peft_model.named_parameters():
        if "lora_" in name:
            continue
        key = name.removeprefix("base_model.model.").replace(".base_layer", "")
        assert torch.equal(p, original[key]), name


def test_merged_model_scores_as_the_unmerged_one(runs, tiny_model_dir, tmp_path):
    from peft import PeftModel

    from refine_iqa_lib.method.scoring import score_images
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.training.data import stage2_dataset
    from refine_iqa_lib.training.lora import merge_adapter

    cfg, straight, _ = runs
    images = list(stage2_dataset(cfg)["image_path"])
    base, processor = load_policy(tiny_model_dir)
    unmerged = PeftModel.from_pretrained(base, str(straight / "adapter")).eval()
    merged, _ = load_policy(straight / "final")
    s_un = [r["score"] for r in score_images(unmerged, processor, images, progress=False)]
    s_me = [r["score"] for r in score_images(merged, processor, images, progress=False)]
    plain, _ = load_policy(tiny_model_dir)
    s_base = [r["score"] for r in score_images(plain, processor, images, progress=False)]
    diff = float(np.max(np.abs(np.array(s_un) - np.array(s_me))))
    print(f"LoRA merge: max |merged - unmerged| score = {diff:.2e}; max |trained - base| = "
          f"{float(np.max(np.abs(np.array(s_me) - np.array(s_base)))):.2e}")
    assert diff <= 1e-5
    assert not np.allclose(s_me, s_base, atol=1e-6)  # the adapter did something
    again = merge_adapter(tiny_model_dir, straight / "adapter", tmp_path / "merged")
    m2, _ = load_policy(again)
    assert np.allclose([r["score"] for r in score_images(m2, processor, images, progress=False)], s_me, atol=1e-6)


def test_lora_with_zero3_is_refused_with_the_reason(tmp_path, monkeypatch):
    """ZeRO-3 partitions the base weights the adapter is merged into on one process: refused at
    config load (the paper profile's launch config) and, for a process accelerate launched with
    ZeRO-3 anyway, before the trainer is built and before anything is merged or written."""
    from refine_iqa_lib.config import ConfigError
    from refine_iqa_lib.training.lora import check_not_zero3, peft_config, save_lora_final

    for launch in ("zero3", "zero3_cpu"):
        with pytest.raises(ConfigError, match=r"lora.enabled = true with launch.accelerate_config = '" + launch
                                              + r"' \(DeepSpeed ZeRO-3\): .*merge_and_unload.*partitioned"):
            load_config("smoke", {**LORA, "launch.accelerate_config": launch})
    with pytest.raises(ConfigError, match="lora.enabled"):
        load_config("paper", {"lora.enabled": True})
    assert load_config("smoke", {**LORA, "launch.accelerate_config": "ddp"}).lora.enabled
    own = tmp_path / "ds.yaml"                                  # a user's file pointing at a DeepSpeed JSON
    (tmp_path / "ds.json").write_text(json.dumps({"zero_optimization": {"stage": 3}}))
    own.write_text("distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: ds.json\n")
    with pytest.raises(ConfigError, match="ZeRO-3"):
        load_config("smoke", {**LORA, "launch.accelerate_config": str(own)})

    cfg = load_config("smoke", LORA)
    check_not_zero3()
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "3")
    with pytest.raises(ValueError, match="under DeepSpeed ZeRO-3"):
        peft_config(cfg)

    class Trainer:                                             # saving must stop before writing anything
        def save_model(self, path):
            raise AssertionError("nothing may be written under ZeRO-3")

    with pytest.raises(ValueError, match="under DeepSpeed ZeRO-3"):
        save_lora_final(Trainer(), None, tmp_path / "run", tmp_path / "run" / "final")
    monkeypatch.setenv("ACCELERATE_DEEPSPEED_ZERO_STAGE", "2")
    check_not_zero3()
