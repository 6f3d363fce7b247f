"""The stand-in's SFT warm-up: data, completion-only loss, a short run, skip for real models."""
from __future__ import annotations

import shutil

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.prompts import format_mos_text
from refine_iqa_lib.method.rewards import completion_to_text, format_reward, parse_score
from refine_iqa_lib.training.run import resolve_init, run_stage
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.training.warmup import quality_word, warmup_dataset


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
