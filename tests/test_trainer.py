"""RefineGRPOTrainer: Eq. 5 rewards, Eq. 6 advantages, PD with the live policy, sampling settings,
NaN guard, checkpoint checks and resume equivalence (smoke sizes, tiny stand-in)."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from refine_iqa_lib.method.advantages import grpo_advantages, refine_advantages
from refine_iqa_lib.config import load_config
from refine_iqa_lib.method.teacher_forcing import pd_rewards_for_group
from refine_iqa_lib.prompts import scoring_prompt, user_message
from refine_iqa_lib.method.rewards import final_reward
from refine_iqa_lib.training.run import grpo_config, run_stage
from refine_iqa_lib.training.data import (
    DatasetCheckError, check_dataset, check_images_load, stage2_dataset, to_trl_dataset,
)
from refine_iqa_lib.training.metrics import read_metrics
from refine_iqa_lib.training.trainer import (
    AUTHORS_OVERRIDES, NonFiniteLossError, RefineGRPOTrainer, RefineSettings,
)

G = 4
#: A group with MOS 3.4: correct, correct, answer right but no think (format 0), wrong answer.
COMPLETIONS = ["<think>noise</think><answer>3.4</answer>", "<think>dark</think><answer>3.0</answer>",
               "<answer>3.4</answer>", "<think>clean</think><answer>1.0</answer>"]


def _cfg(tmp_path, **over):
    base = {"paths.work_dir": str(tmp_path), "warmup.enabled": False, "stage2.init_from": "base",
            "stage2.no_think_every": 1}
    return load_config("smoke", {**base, **over})


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("trainer_work")


def _one_row_dataset(cfg):
    ds = stage2_dataset(cfg)
    row = ds.select([0]).to_dict()
    row["mos"] = [3.4]
    row["images"] = [[ds.select([0])[0]["image_path"]]]
    return to_trl_dataset(row)


def _trainer(cfg, tmp_path, tiny_policy_fresh, **refine_over):
    model, processor = tiny_policy_fresh
    args = grpo_config(cfg, "2", tmp_path / "run")
    refine = RefineSettings.from_stage(cfg.stage2, "2", advantages_dir=tmp_path / "run" / "advantages")
    for k, v in refine_over.items():
        setattr(refine, k, v)
    return RefineGRPOTrainer(model=model, args=args, train_dataset=_one_row_dataset(cfg), processing_class=processor,
                             refine=refine)


@pytest.fixture
def fresh_policy(tiny_model_dir):
    from refine_iqa_lib.models import load_policy

    return load_policy(tiny_model_dir)


def _fixed_generation(trainer, texts):
    tok = trainer.processing_class.tokenizer
    ids = [tok(t, add_special_tokens=False)["input_ids"] + [tok.eos_token_id] for t in texts]

    def fake(prompt_ids, images, multimodal_fields, num_generations, has_tool_images=False):
        return [list(ids[i % len(ids)]) for i in range(len(prompt_ids))], None
    trainer._generate_single_turn = fake


def _score_batch(trainer):
    trainer.model.train()
    row = trainer.train_dataset[0]
    return trainer._generate_and_score_completions([dict(row) for _ in range(G)])


def _audit(trainer) -> dict:
    """The last step's row of the per-rank advantages audit file (gathered rewards per function)."""
    path = trainer.refine.advantages_dir + "/rank0.jsonl"
    return json.loads(open(path).read().splitlines()[-1])


def test_eq5_rewards_and_eq6_advantages_on_a_known_group(work, fresh_policy):
    cfg = _cfg(work)
    trainer = _trainer(cfg, work, fresh_policy)
    assert trainer.reward_func_names == ["answer", "format", "pd"]
    assert trainer.reward_weights.tolist() == [1.0, 1.0, 1.0]
    assert trainer.loss_type == "dapo" and trainer.beta == 0.0 and trainer.ref_model is None
    _fixed_generation(trainer, COMPLETIONS)
    out = _score_batch(trainer)
    rpf = np.array(_audit(trainer)["rewards_per_func"])
    assert rpf[:, 0].tolist() == [1.0, 1.0, 1.0, 0.0]          # Eq. 1
    assert rpf[:, 1].tolist() == [1.0, 1.0, 0.0, 1.0]          # format
    assert (rpf[2:, 2] == 0).all() and ((rpf[:2, 2] >= 0) & (rpf[:2, 2] <= 1)).all()  # PD gated by Eq. 5

    # PD came from the live policy: the same numbers as a direct teacher-forced pass
    image = trainer.train_dataset[0]["images"][0]
    direct = pd_rewards_for_group(trainer.model, trainer.processing_class, image, COMPLETIONS, 3.4,
                                  think_messages=user_message(scoring_prompt("think")),
                                  no_think_messages=user_message(scoring_prompt("no_think")))
    m = trainer._metrics["train"]
    assert m["refine/pd_raw"][-1] == pytest.approx(direct.r_pd.mean(), abs=1e-6)   # ungated Eq. 4, all 4
    np.testing.assert_allclose(rpf[:2, 2], direct.r_pd[:2], atol=1e-6)

    final = [final_reward(a, f, p) for a, f, p in zip(rpf[:, 0], rpf[:, 1], direct.r_pd)]
    correct = [True, True, False, False]
    want = refine_advantages(np.array(final), correct)
    np.testing.assert_allclose(out["advantages"].numpy(), want, atol=1e-5)
    assert (out["advantages"][2:] == 0).all()                  # PM: nothing pushed down when some are right
    logged = json.loads((work / "run" / "advantages" / "rank0.jsonl").read_text().splitlines()[-1])
    np.testing.assert_allclose(logged["advantages"], want, atol=1e-6)
    m = trainer._metrics["train"]
    assert m["refine/answer_think"][-1] == pytest.approx(0.75) and m["refine/correct"][-1] == pytest.approx(0.5)
    assert m["refine/think_tokens"][-1] > 0 and not np.isnan(m["refine/answer_no_think"][-1])
    assert m["adv/zero_signal_groups"][-1] == 0.0


def test_without_pm_the_advantage_is_trls_grpo(work, fresh_policy):
    cfg = _cfg(work, **{"stage2.use_pm": False, "stage2.use_pd": False})
    trainer = _trainer(cfg, work, fresh_policy)
    assert trainer.reward_func_names == ["answer", "format"]
    _fixed_generation(trainer, COMPLETIONS)
    out = _score_batch(trainer)
    rewards = np.array(_audit(trainer)["rewards_per_func"]).sum(1)
    np.testing.assert_allclose(out["advantages"].numpy(), grpo_advantages(rewards), atol=1e-5)
    assert out["advantages"][3] < 0                            # GRPO pushes the wrong rollout down


def test_all_wrong_group_gets_the_eps_offset(work, fresh_policy):
    trainer = _trainer(_cfg(work), work, fresh_policy)
    _fixed_generation(trainer, ["<think>a</think><answer>0.1</answer>", "<answer>nope</answer>"])
    out = _score_batch(trainer)
    rewards = np.array(_audit(trainer)["rewards_per_func"]).sum(1)   # [1, 0, 1, 0]: format only
    np.testing.assert_allclose(out["advantages"].numpy(),
                               refine_advantages(rewards, [False] * G), atol=1e-5)
    assert (out["advantages"].numpy() < refine_advantages(rewards, [True] * G) + 1e-9).all()


def test_sampling_settings_beat_the_models_greedy_defaults(work, fresh_policy):
    model, processor = fresh_policy
    gc = model.generation_config                                 # a near-greedy model default
    gc.do_sample, gc.temperature, gc.top_k, gc.top_p = False, 0.01, 1, 0.01
    trainer = _trainer(_cfg(work, **{"stage2.max_completion_length": 12}), work, (model, processor))
    from trl.data_utils import prepare_multimodal_messages

    row = trainer.train_dataset[0]
    prompts = [prepare_multimodal_messages(row["prompt"], images=row["images"]) for _ in range(8)]
    ids, images, mm = trainer._tokenize_prompts(prompts)
    torch.manual_seed(0)
    completions, _ = trainer._generate_single_turn(ids, images, mm, 8)
    assert len({tuple(c) for c in completions}) > 1             # sampled at T = 1, not greedy
    assert trainer.generation_config.temperature == 1.0 and trainer.generation_config.do_sample


def test_grpo_config_and_authors_overrides(work):
    cfg = _cfg(work)
    args = grpo_config(cfg, "2", work / "r")
    assert (args.loss_type, args.beta, args.temperature, args.top_p, args.top_k) == ("dapo", 0.0, 1.0, 1.0, 0)
    assert args.per_device_train_batch_size == cfg.stage2.prompts_per_step * cfg.stage2.num_generations
    a = grpo_config(load_config(cfg, AUTHORS_OVERRIDES), "2", work / "r")
    assert (a.loss_type, a.beta) == ("grpo", 0.04)
    s = RefineSettings.from_stage(load_config(cfg, AUTHORS_OVERRIDES).stage2, "2")
    assert s.variant == "authors" and s.pd_reference == "sampled" and s.samples_no_think
    assert s.eq6_eps == 2e-5 and RefineSettings().eq6_eps == 0.02      # an all-wrong flat group: -0.2, not -200
    with pytest.raises(ValueError, match="Stage-2"):
        RefineSettings(stage="1", mode="no_think", use_pd=True)


def test_dataset_checks_fail_before_training(work, tmp_path):
    cfg = _cfg(work)
    ds = stage2_dataset(cfg).remove_columns(["mos"])
    with pytest.raises(DatasetCheckError, match=r"missing column\(s\) \['mos'\]"):
        check_dataset(ds, ("prompt", "images", "mos"), "test data")
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG not really")
    good = stage2_dataset(cfg)[0]["image_path"]
    with pytest.raises(DatasetCheckError, match=r"1 of 2 image file\(s\) cannot be loaded, e.g. .*broken.png"):
        check_images_load([good, str(bad), good], "test data")
    with pytest.raises(DatasetCheckError, match="file not found"):
        check_images_load([str(tmp_path / "nothere.png")], "test data")


def _weights(run_dir):
    from safetensors.torch import load_file

    return load_file(str(run_dir / "final" / "model.safetensors"))


class _Interrupt(Exception):
    pass


def test_resume_after_a_kill_matches_an_uninterrupted_run(work):
    """6 steps straight vs. 4 steps (killed right after the step-4 checkpoint) + resume to 6. Three
    prompts per epoch, so the resumed part crosses into epoch 2; no-think sampling every step, so
    the restored RNG must cover generation. Tolerance: weights within 1e-6, metrics within 1e-6."""
    from transformers import TrainerCallback

    over = {"stage2.max_steps": 6, "stage2.save_steps": 2, "stage2.max_samples": 3, "stage2.no_think_every": 1}
    cfg = _cfg(work, **over)
    straight = run_stage(cfg, "2", run_dir=work / "straight", resume=False)

    class KillAt4(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 4:
                raise _Interrupt

    with pytest.raises(_Interrupt):
        run_stage(cfg, "2", run_dir=work / "killed", resume=False, callbacks=[KillAt4()])
    assert not (work / "killed" / "final").exists()
    resumed = run_stage(cfg, "2", run_dir=work / "killed", resume=True)

    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    assert max(float((a[k] - b[k]).abs().max()) for k in a) <= 1e-6
    ma, mb = read_metrics(straight), read_metrics(resumed)
    assert ma["step"].tolist() == mb["step"].tolist() == [1, 2, 3, 4, 5, 6]
    for col in ("loss", "reward", "refine/r_think", "refine/answer_no_think", "completions/mean_length"):
        np.testing.assert_allclose(ma[col].astype(float), mb[col].astype(float), atol=1e-6, err_msg=col)
    assert (mb["wall_time_s"].diff().dropna() >= 0).all()
    adv = {name: [json.loads(x) for x in (run / "advantages" / "rank0.jsonl").read_text().splitlines()]
           for name, run in (("a", straight), ("b", resumed))}
    assert [r["step"] for r in adv["b"]] == [1, 2, 3, 4, 5, 6]         # the killed run's rows replaced
    np.testing.assert_allclose([r["advantages"] for r in adv["a"]], [r["advantages"] for r in adv["b"]], atol=1e-9)


def test_checkpoint_from_another_configuration_is_refused(work):
    cfg = _cfg(work, **{"stage2.max_steps": 6, "stage2.save_steps": 2, "stage2.max_samples": 3,
                        "stage2.no_think_every": 1, "stage2.learning_rate": 5e-5})
    ckpts = sorted((work / "killed" / "checkpoints").glob("checkpoint-*"))
    assert ckpts, "needs the run of test_resume_after_a_kill..."
    (work / "killed" / "final" / "refine_final.json").unlink()   # pretend it is unfinished
    with pytest.raises(ValueError, match=r"another configuration.*learning_rate: checkpoint 0.0001 vs now 5e-05"):
        run_stage(cfg, "2", run_dir=work / "killed", resume=True)


def test_nan_loss_stops_with_the_step_and_a_checkpoint(work, monkeypatch):
    original = RefineGRPOTrainer.compute_loss

    def poisoned(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        loss = original(self, model, inputs, return_outputs, num_items_in_batch)
        return loss * float("nan") if self.state.global_step == 1 else loss

    monkeypatch.setattr(RefineGRPOTrainer, "compute_loss", poisoned)
    cfg = _cfg(work, **{"stage2.max_steps": 4, "stage2.save_steps": 10, "stage2.no_think_every": 0})
    with pytest.raises(NonFiniteLossError, match=r"at training step 2.*checkpoint-1"):
        run_stage(cfg, "2", run_dir=work / "nan", resume=False)
    ckpt = work / "nan" / "checkpoints" / "checkpoint-1"
    assert (ckpt / "refine_run.json").is_file()
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(str(ckpt / "model.safetensors")).values())


def test_an_interrupted_checkpoint_is_skipped(tmp_path, capsys):
    from refine_iqa_lib.io import write_json
    from refine_iqa_lib.training.run import find_resume_checkpoint

    fp = {"fingerprint": "abc", "settings": {"x": 1}}
    good, partial = tmp_path / "checkpoints" / "checkpoint-2", tmp_path / "checkpoints" / "checkpoint-4"
    partial.mkdir(parents=True)
    good.mkdir()
    write_json(good / "refine_run.json", fp)                     # written last: checkpoint-2 is complete
    assert find_resume_checkpoint(tmp_path, fp) == good
    out = capsys.readouterr().out
    assert "skipping" in out and "checkpoint-4" in out
    assert find_resume_checkpoint(tmp_path / "empty", fp) is None


def test_a_grpo_step_moves_the_policy(work, fresh_policy):
    """TRL's own check: after one optimizer step the weights differ. With Eq. 6's max(·, 0) and
    no-signal groups a step could otherwise leave the policy unchanged unnoticed."""
    cfg = _cfg(work, **{"stage2.max_steps": 1, "stage2.save_steps": 100, "stage2.use_pd": False})
    model, processor = fresh_policy
    refine = RefineSettings.from_stage(cfg.stage2, "2")
    trainer = RefineGRPOTrainer(model=model, args=grpo_config(cfg, "2", work / "moves"),
                                train_dataset=stage2_dataset(cfg), processing_class=processor, refine=refine)
    _fixed_generation(trainer, COMPLETIONS)                  # rewards [2, 2, 1, 0]: some signal in every group
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    assert trainer.state.global_step == 1
    changed = {n for n, p in trainer.model.named_parameters() if not torch.equal(before[n], p.detach())}
    layers = [n for n in before if ".layers." in n and "visual" not in n]
    assert layers and set(layers) <= changed, sorted(set(layers) - changed)[:5]


def test_a_reward_registered_by_name_trains_a_stage2_step(work, fresh_policy):
    """The worked example of adding a reward: a class registered under a name, listed with its
    weight in ``stage2.rewards``, is built by the trainer, enters TRL's weighted sum and is logged
    as ``rewards/<name>/mean``."""
    from refine_iqa_lib.method.rewards import Reward, completion_to_text, register_reward, unregister_reward

    @register_reward("toy_brevity", "not in the paper")
    class ToyBrevity(Reward):
        """1 for completions shorter than ``limit`` characters."""

        def __init__(self, mode: str, limit: int = 30):
            self.mode, self.limit = mode, limit

        def __call__(self, completions, **columns):
            return [float(len(completion_to_text(c)) < self.limit) for c in completions]

    try:
        cfg = _cfg(work, **{"stage2.max_steps": 1, "stage2.save_steps": 100, "stage2.use_pd": False,
                            "stage2.rewards.toy_brevity": 0.5})
        model, processor = fresh_policy
        refine = RefineSettings.from_stage(cfg.stage2, "2")
        trainer = RefineGRPOTrainer(model=model, args=grpo_config(cfg, "2", work / "toy"),
                                    train_dataset=_one_row_dataset(cfg), processing_class=processor, refine=refine)
        assert trainer.reward_func_names == ["answer", "format", "toy_brevity"]
        assert trainer.reward_weights.tolist() == [1.0, 1.0, 0.5]
        _fixed_generation(trainer, COMPLETIONS)              # only "<answer>3.4</answer>" is under 30 characters
        trainer.train()
        logged = trainer.state.log_history[0]
        assert logged["rewards/toy_brevity/mean"] == pytest.approx(0.25)
        assert (logged["rewards/answer/mean"], logged["rewards/format/mean"]) == (0.75, 0.75)   # MOS 3.4
        assert logged["reward"] == pytest.approx(0.75 + 0.75 + 0.5 * 0.25)  # the toy entered the sum with its weight
    finally:
        unregister_reward("toy_brevity")
def test_unscorable_rollouts_are_left_out_of_eq6_as_trl_does():
    """A rollout every reward function returned None (NaN) for: TRL leaves it out of its group's
    mean and std and gives it advantage 0; the Eq. 6 override does the same."""
    from collections import defaultdict
    from types import SimpleNamespace

    nan = float("nan")
    fake = SimpleNamespace(
        accelerator=SimpleNamespace(device=torch.device("cpu"), process_index=0, num_processes=1),
        num_generations=G, reward_func_names=["answer", "format", "pd"], reward_weights=torch.ones(3),
        refine=RefineSettings(stage="2"), _metrics=defaultdict(lambda: defaultdict(list)),
        _log_completion_extra=lambda *a: None, state=SimpleNamespace(global_step=0))
    rpf = torch.tensor([[1, 1, 0.3], [1, 1, 0.0], [nan, nan, nan], [0, 1, 0],         # one unscorable
                        [nan, nan, nan]] + [[nan, nan, nan]] * 3, dtype=torch.float32)  # a group of none
    adv = RefineGRPOTrainer._advantages(fake, rpf, 2 * G).numpy()
    scored = [0, 1, 3]
    np.testing.assert_allclose(adv[scored], refine_advantages(np.array([2.3, 2.0, 1.0]), [True, True, False]),
                               atol=1e-6)
    assert adv[2] == 0 and (adv[4:] == 0).all()
    assert fake._metrics["train"]["refine/correct"][-1] == pytest.approx(2 / 8)


def test_pd_checks_its_rows_against_the_prompt_trl_sampled_from(work, fresh_policy, monkeypatch):
    trainer = _trainer(_cfg(work), work, fresh_policy)
    _fixed_generation(trainer, COMPLETIONS)
    seen = []
    real = trainer.reward_funcs[2].compute

    def spy(*a, **k):
        seen.append(k.get("sampled_prompt_ids"))
        return real(*a, **k)

    monkeypatch.setattr(trainer.reward_funcs[2], "compute", spy)
    _score_batch(trainer)                                       # TRL's prompt ids reach PD and match
    assert seen[-1] is not None and len(seen[-1]) == G and all(len(ids) > 10 for ids in seen[-1])
    original = RefineGRPOTrainer._generate

    def tampered(self, prompts):
        out = original(self, prompts)
        self._sampled_prompt_ids[0][-1] += 1
        return out

    monkeypatch.setattr(RefineGRPOTrainer, "_generate", tampered)
    with pytest.raises(ValueError, match=r"row 0 \(id 0\): the prompt the PD reward forces from is not the prompt "
                                         r"TRL sampled"):
        _score_batch(trainer)


def test_sampled_no_think_references_reach_pd_with_their_token_ids(work, fresh_policy, monkeypatch):
    trainer = _trainer(_cfg(work, **{"stage2.pd_reference": "sampled"}), work, fresh_policy)
    _fixed_generation(trainer, COMPLETIONS)
    seen = {}
    real = trainer.reward_funcs[2].compute

    def spy(*a, **k):
        seen.update(k)
        return real(*a, **k)

    monkeypatch.setattr(trainer.reward_funcs[2], "compute", spy)
    _score_batch(trainer)
    tok = trainer.processing_class.tokenizer
    assert [tok.decode(ids, skip_special_tokens=True) for ids in seen["no_think_sample_ids"]] == seen["no_think_sample"]
    assert trainer._metrics["train"]["refine/pd_retokenised"][-1] == 0     # every row forced from sampled ids
