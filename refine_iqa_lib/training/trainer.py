"""``RefineGRPOTrainer``: TRL's ``GRPOTrainer`` with the paper's rewards and advantage.

No RL loop is written here: generation, the clipped policy-gradient loss, optimisation,
checkpointing and distribution are TRL's / transformers'. The subclass changes three things.

1. **Rewards** (built from :class:`RefineSettings`, passed to TRL with ``reward_weights``):

   * Stage-1: ``stage1`` (routes each sample by its ``task`` column: multiple choice or IoU) and
     ``format`` (no-think layout), weights ``[λ1, λ2]``;
   * Stage-2: ``answer`` (Eq. 1), ``format`` and ``pd`` (Eq. 2-4, *gated*: 0 unless
     ``r_ans = r_fmt = 1``), weights ``[λ1, λ2, λ3]``. TRL's weighted sum of the three columns is
     then exactly Eq. 5. Without PD (ablation) only ``answer`` and ``format``.

   The PD reward needs the *live* policy, so it is a bound method of the trainer: for every local
   group it calls :func:`refine_iqa_lib.method.teacher_forcing.pd_rewards_for_group` (one batched no-grad forward of
   the G think rollouts with the ground truth forced in + the fixed no-think layout). Every group
   is evaluated, also those where nothing is correct (their PD is logged but gated to 0), so every
   process runs the same number of forward passes (required under ZeRO-3). PD is detached: it is a
   number in the reward, no gradient flows through it.

2. **Advantage** (Eq. 6, "PM"). TRL computes the GRPO advantage inline in
   ``_generate_and_score_completions`` from the rewards it gathered across processes in
   ``_calculate_rewards``. The override of ``_calculate_rewards`` keeps that gathered matrix
   (``(N_total, n_rewards)``, identical on every process); the override of
   ``_generate_and_score_completions`` calls TRL's, then replaces ``advantages`` with
   :func:`refine_iqa_lib.method.advantages.refine_advantages` over the gathered groups (``correct`` =
   ``r_ans = r_fmt = 1`` from the same gathered columns), sliced to this process exactly as TRL
   slices. So every process computes the same advantages. ``use_pm=False`` keeps TRL's advantage
   (standard GRPO, the "w/o PM" ablation). The gathered advantages of every step are written per
   process to ``<advantages_dir>/rank<r>.jsonl`` (audit; the distributed test compares them).

3. **Metrics** for the paper's figures, gathered across processes and added to TRL's log row:
   ``refine/answer_think`` (mean answer reward of the sampled rollouts), ``refine/answer_no_think``
   (see below), ``refine/think_tokens`` (think length in tokens, the "think collapse" curve),
   ``refine/pd_raw`` (ungated Eq. 4), ``refine/r_think``, ``refine/r_ref``, ``refine/correct``
   and the advantage statistics ``adv/mean``, ``adv/std``, ``adv/zero_signal_groups`` (share of
   groups whose advantages are all 0).

   *No-think answer reward (Fig. 4).* Every ``no_think_every`` steps the step's prompts are also
   answered in no-think mode: one sampled no-think completion per rollout (same sampling settings),
   scored with Eq. 1. Those samples never enter the loss. The authors' code did this at every step
   (it used the samples as the PD reference); here it is a metric only, so sampling every k steps
   keeps its cost at 1/k of a generation per step. ``pd_reference="sampled"`` reproduces the
   authors' reference: r_no-think is then computed per rollout on its own sampled no-think
   completion (teacher-forced like the think rollouts) instead of once per group on the fixed
   layout (Eq. 4); the no-think samples are then drawn every step.

Loss: TRL's ``loss_type="dapo"`` normalises the summed per-token loss by the number of completion
tokens in the whole (gathered, accumulated) generation batch - Eq. 7's token-level
``1/Σ|o_i|`` averaging over the group(s). ``"grpo"`` is the per-sequence mean then batch mean (the
authors' code). ``beta=0`` removes the KL term and the reference model (paper); the authors used 0.04.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.data_utils import prepare_multimodal_messages
from trl.trainer.utils import RepeatSampler

from refine_iqa_lib.method.advantages import grpo_advantages, refine_advantages
from refine_iqa_lib.io import append_jsonl
from refine_iqa_lib.prompts import check_mode, check_variant, user_message
from refine_iqa_lib.method.rewards import (
    answer_reward, completion_to_text, extract_think, format_reward, get_reward_funcs, mode_reward,
    parse_score, pd_reward,
)

__all__ = ["RefineSettings", "RefineGRPOTrainer", "NonFiniteLossError", "NaNGuardCallback",
           "EpochRepeatSampler", "CheckpointLoadMixin", "AUTHORS_OVERRIDES"]

#: Overrides that reproduce the authors' Stage-2 code as far as it is reproduced here: their
#: reward/advantage details (``variant``), per-sequence loss averaging and KL with β = 0.04
#: against the initial policy, and their sampled no-think reference. Not reproduced: gradients
#: flowing through PD (theirs is not detached) - here PD is always a detached reward.
AUTHORS_OVERRIDES = {"stage2.variant": "authors", "stage2.loss_type": "grpo", "stage2.beta": 0.04,
                     "stage2.pd_reference": "sampled"}


class NonFiniteLossError(RuntimeError):
    """Training stopped because the loss or the gradients were not finite."""


@dataclass
class RefineSettings:
    """What the trainer needs beyond TRL's ``GRPOConfig`` (built from a ``StageConfig``)."""

    stage: str = "2"                     # "1" perception (task router) | "2" scoring
    mode: str = "think"
    use_pd: bool = True
    use_pm: bool = True
    variant: str = "paper"
    answer_eps: float = 0.5
    adv_eps: float = 0.02
    lambdas: tuple = (1.0, 1.0, 1.0)
    pd_reference: str = "forced"         # forced | sampled
    no_think_every: int = 0              # 0 = never sample no-think answers for the metric
    advantages_dir: str | None = None    # per-rank JSONL of the gathered advantages

    def __post_init__(self):
        self.stage = str(self.stage)
        if self.stage not in ("1", "2"):
            raise ValueError(f"RefineSettings.stage {self.stage!r}: expected '1' or '2'")
        check_mode(self.mode)
        check_variant(self.variant)
        if self.pd_reference not in ("forced", "sampled"):
            raise ValueError(f"pd_reference {self.pd_reference!r}: expected 'forced' or 'sampled'")
        self.lambdas = tuple(float(x) for x in self.lambdas)
        if len(self.lambdas) != 3:
            raise ValueError(f"lambdas {self.lambdas}: expected three weights [λ1, λ2, λ3] (Eq. 5)")
        if self.stage == "1" and self.use_pd:
            raise ValueError("the PD reward is a Stage-2 (scoring) reward; set stage1.use_pd=false")
        if self.use_pd and self.mode != "think":
            raise ValueError("the PD reward compares think with no-think; it needs mode='think'")

    @classmethod
    def from_stage(cls, stage_cfg, stage: str, advantages_dir: str | os.PathLike | None = None) -> "RefineSettings":
        s = stage_cfg
        return cls(stage=str(stage), mode=s.mode, use_pd=bool(s.use_pd), use_pm=bool(s.use_pm), variant=s.variant,
                   answer_eps=float(s.answer_eps), adv_eps=float(s.adv_eps), lambdas=tuple(s.lambdas),
                   pd_reference=s.pd_reference, no_think_every=int(s.no_think_every),
                   advantages_dir=None if advantages_dir is None else str(advantages_dir))

    def reward_names(self) -> list[str]:
        if self.stage == "1":
            return ["stage1", "format"]
        return ["answer", "format"] + (["pd"] if self.use_pd else [])

    def reward_weights(self) -> list[float]:
        return list(self.lambdas[: len(self.reward_names())])

    @property
    def eq6_eps(self) -> float:
        """Eq. 6's offset: ``adv_eps`` (paper, 0.02); the authors' code's 2e-5 for ``variant="authors"``
        (their offset goes with their ``std + 1e-4`` denominator; 0.02 / 1e-4 would give -200)."""
        from refine_iqa_lib.method.advantages import AUTHORS_EPS

        return float(self.adv_eps) if self.variant == "paper" else AUTHORS_EPS

    @property
    def samples_no_think(self) -> bool:
        return self.stage == "2" and (self.pd_reference == "sampled" and self.use_pd or self.no_think_every > 0)

    def to_dict(self) -> dict:
        return asdict(self)


class EpochRepeatSampler(RepeatSampler):
    """TRL's ``RepeatSampler`` whose shuffle depends only on ``(seed, epoch)``.

    TRL's sampler keeps one generator across epochs, so a run resumed in epoch 2 would replay
    epoch 1's order. ``Trainer`` calls ``set_epoch`` at the start of every epoch; reseeding there
    makes a resumed run see the same prompts as an uninterrupted one.
    """

    def set_epoch(self, epoch: int) -> None:
        if self.shuffle:
            self.generator.manual_seed(int(self.seed or 0) + 1000003 * int(epoch))


class NaNGuardCallback(TrainerCallback):
    """Stop before a non-finite update: checks the (already synchronised) gradients before every
    optimizer step. On a NaN/Inf it saves a checkpoint of the last finite weights (the state after
    the previous step) and raises :class:`NonFiniteLossError` naming the step and the checkpoint.
    Gradients are all-reduced before this hook, so every process takes the same decision."""

    def __init__(self):
        self.trainer = None

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        model = kwargs.get("model")
        trainer = self.trainer
        if model is None or trainer is None:
            return
        bad = None
        for name, p in model.named_parameters():
            if p.grad is not None and not torch.isfinite(p.grad).all():
                bad = name
                break
        loss = getattr(trainer, "_last_loss", None)
        loss_bad = loss is not None and not math.isfinite(loss)
        flag = torch.tensor([1.0 if (bad is not None or loss_bad) else 0.0], device=trainer.accelerator.device)
        if trainer.accelerator.num_processes > 1:  # one decision for all processes
            flag = trainer.accelerator.reduce(flag, reduction="sum")
        if float(flag.item()) == 0.0:
            return
        step = state.global_step + 1
        model.zero_grad(set_to_none=True)
        trainer._save_checkpoint(trainer.model_wrapped, trial=None)
        trainer.callback_handler.on_save(args, state, control)  # marks the checkpoint complete
        where = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        what = f"gradient of {bad}" if bad else (f"loss {loss}" if loss_bad else "loss on another process")
        raise NonFiniteLossError(f"non-finite {what} at training step {step}; stopped before applying it. "
                                 f"Last finite weights (after step {state.global_step}) saved in {where}")


class CheckpointLoadMixin:
    """Resume-safe weight loading for models whose saved keys differ from their module keys.

    transformers 5.x saves Qwen2.5-VL checkpoints in the original key layout (``visual.*``,
    ``model.layers.*``) but ``Trainer._load_from_checkpoint`` loads them with a plain, non-strict
    ``load_state_dict`` into the new layout (``model.visual.*``, ``model.language_model.*``): every
    key misses and a resumed run silently continues from its *initial* weights
    (huggingface/transformers#43701). Here the checkpoint is read with ``from_pretrained`` (which
    applies the key conversion) and copied in strictly, so a mismatch is an error, never silent.
    DeepSpeed and FSDP restore their own engine state and keep the stock path.
    """

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        target = self.accelerator.unwrap_model(model if model is not None else self.model)
        names = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
        has_weights = any((Path(resume_from_checkpoint) / n).is_file() for n in names)
        if self.is_deepspeed_enabled or self.is_fsdp_enabled or not has_weights \
                or not hasattr(type(target), "from_pretrained"):
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        dtype = next(target.parameters()).dtype
        loaded = type(target).from_pretrained(resume_from_checkpoint, dtype=dtype)
        target.load_state_dict(loaded.state_dict(), strict=True)
        del loaded


def _group_bounds(keys: list) -> list[tuple[int, int]]:
    """Runs of equal consecutive keys: TRL lays out each prompt's G rollouts consecutively."""
    bounds, start = [], 0
    for i in range(1, len(keys) + 1):
        if i == len(keys) or keys[i] != keys[start]:
            bounds.append((start, i))
            start = i
    return bounds


class RefineGRPOTrainer(CheckpointLoadMixin, GRPOTrainer):
    """``GRPOTrainer`` with the Refine-IQA rewards (Eq. 1-5), the modified advantage (Eq. 6) and
    the per-step metrics the paper's figures need. See the module docstring.

    ``refine``: a :class:`RefineSettings`. Reward functions are built from it (do not pass
    ``reward_funcs``); ``args.reward_weights`` is set from its λ. Dataset columns used: ``prompt``,
    ``images``, and per stage ``task``/``answer``/``options``/``bbox``/``mode`` (Stage-1) or ``mos``,
    ``mode``, ``id``, ``prompt_text``, ``no_think_text`` (Stage-2).
    """

    def __init__(self, *args, refine: RefineSettings, **kwargs):
        if kwargs.get("reward_funcs") is not None:
            raise ValueError("RefineGRPOTrainer builds its reward functions from `refine`; do not pass reward_funcs")
        self.refine = refine
        training_args = kwargs.get("args")
        if training_args is None:
            raise ValueError("RefineGRPOTrainer needs an explicit GRPOConfig (args=...)")
        training_args.reward_weights = refine.reward_weights()
        kwargs["reward_funcs"] = self._build_reward_funcs()
        self._step_cache: dict[str, Any] = {}
        self._gathered_rewards: torch.Tensor | None = None
        self._last_loss: float | None = None
        super().__init__(*args, **kwargs)
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, NaNGuardCallback):
                cb.trainer = self

    # ------------------------------------------------------------------ rewards
    def _build_reward_funcs(self) -> list:
        r = self.refine
        if r.stage == "1":
            return get_reward_funcs(["stage1", "format"], eps=r.answer_eps, variant=r.variant, mode=r.mode)
        funcs = get_reward_funcs(["answer", "format"], eps=r.answer_eps, variant=r.variant, mode=r.mode)
        if r.use_pd:
            def pd(prompts=None, completions=None, completion_ids=None, **kw):
                return self._pd_reward(prompts, completions, **kw)
            pd.__name__ = pd.__qualname__ = "pd"
            funcs.append(pd)
        return funcs

    def _pd_policy(self):
        return self.model  # the unwrapped module (DDP / DeepSpeed keep the wrapper in model_wrapped)

    def _pd_reward(self, prompts, completions, **kw) -> list[float]:
        """Eq. 4 per rollout, gated by Eq. 5; keeps the ungated values for the metrics."""
        from refine_iqa_lib.method.teacher_forcing import forced_completion, forced_digit_probs, pd_rewards_for_group

        r = self.refine
        texts = [completion_to_text(c) for c in completions]
        n = len(texts)
        for col in ("mos", "images", "prompt_text", "no_think_text"):
            if kw.get(col) is None or len(kw[col]) != n:
                raise ValueError(f"reward 'pd' needs the dataset column {col!r} ({n} values); got {sorted(kw)}")
        keys = list(kw["id"]) if kw.get("id") is not None else [(t, float(m)) for t, m in
                                                                   zip(kw["prompt_text"], kw["mos"])]
        policy = self._pd_policy()
        processor = self.processing_class
        sampled = self._step_cache.get("no_think_texts") if r.pd_reference == "sampled" else None
        raw = np.zeros(n)
        r_think = np.zeros(n)
        r_ref = np.zeros(n)
        for lo, hi in _group_bounds(keys):
            images = kw["images"][lo]
            image = images[0] if isinstance(images, (list, tuple)) else images
            n_img = len(images) if isinstance(images, (list, tuple)) else 1
            think_msgs = user_message(kw["prompt_text"][lo], n_img)
            no_think_msgs = user_message(kw["no_think_text"][lo], n_img)
            res = pd_rewards_for_group(policy, processor, image, texts[lo:hi], float(kw["mos"][lo]),
                                       think_messages=think_msgs, no_think_messages=no_think_msgs,
                                       variant=r.variant)
            r_think[lo:hi] = res.r_think
            if sampled is not None:  # authors' reference: each rollout's own sampled no-think answer
                forced = [forced_completion(t, res.gt_text, "no_think", r.variant) for t in sampled[lo:hi]]
                prompt = processor.apply_chat_template(no_think_msgs, add_generation_prompt=True, tokenize=False)
                z = forced_digit_probs(policy, processor, [prompt] * len(forced), forced, image, res.gt_text)
                ref = np.array([mode_reward(p, r.variant) for p in z])
                r_ref[lo:hi] = ref
                raw[lo:hi] = [pd_reward(a, b) for a, b in zip(res.r_think, ref)]
            else:
                r_ref[lo:hi] = res.r_ref
                raw[lo:hi] = res.r_pd
        correct = np.array([answer_reward(parse_score(t), m, r.answer_eps, r.variant) == 1.0
                            and format_reward(t, r.mode) == 1.0 for t, m in zip(texts, kw["mos"])])
        self._step_cache.update(pd_raw=raw, r_think=r_think, r_ref=r_ref)
        return [float(v) if c else 0.0 for v, c in zip(raw, correct)]

    # ------------------------------------------------------------------ no-think samples
    def _sample_no_think(self, prompts: list, inputs: list[dict]) -> list[str]:
        """One sampled no-think completion per rollout (TRL's own generation path and settings)."""
        nt_prompts = []
        for x in inputs:
            imgs = x.get("images")
            if imgs is None and x.get("image") is not None:
                imgs = [x["image"]]
            nt_prompts.append(prepare_multimodal_messages([{"role": "user", "content": x["no_think_text"]}],
                                                          images=list(imgs or [])))
        prompt_ids, images, mm_fields = self._tokenize_prompts(nt_prompts)
        completion_ids, _ = self._generate_single_turn(prompt_ids, images, mm_fields, self.num_generations)
        return self.processing_class.batch_decode(completion_ids, skip_special_tokens=True)

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        r = self.refine
        self._step_cache = {}
        texts = [completion_to_text(c) for c in completions]
        if self.model.training and r.samples_no_think:
            step = self.state.global_step
            every = r.no_think_every
            if (r.pd_reference == "sampled" and r.use_pd) or (every > 0 and step % every == 0):
                self._step_cache["no_think_texts"] = self._sample_no_think(prompts, inputs)
        gathered = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        self._gathered_rewards = gathered.detach().clone()
        self._step_cache["texts"] = texts
        self._step_cache["mos"] = [x.get("mos") for x in inputs]
        return gathered

    # ------------------------------------------------------------------ advantage + metrics
    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if not self.model.training or self._gathered_rewards is None:
            return out
        device = self.accelerator.device
        G = self.num_generations
        rpf = self._gathered_rewards.to(device)
        names = self.reward_func_names
        weights = self.reward_weights.to(device)
        rewards = torch.nan_to_num((rpf * weights.unsqueeze(0)).nansum(dim=1), nan=0.0).double()
        first = 0 if "stage1" not in names else names.index("stage1")
        task_col = names.index("answer") if "answer" in names else first
        correct = (rpf[:, task_col] == 1.0) & (rpf[:, names.index("format")] == 1.0)
        n_local = out["advantages"].shape[0]
        lo = self.accelerator.process_index * n_local
        if self.refine.use_pm:
            adv_all = refine_advantages(rewards.view(-1, G), correct.view(-1, G), eps=self.refine.eq6_eps,
                                        variant=self.refine.variant).reshape(-1)
            local = adv_all[lo:lo + n_local].to(dtype=out["advantages"].dtype, device=out["advantages"].device)
            out["advantages"] = local
            # TRL logged its own advantages for this batch; replace them in the completions log
            logged = self._logs["advantages"]
            for _ in range(min(len(adv_all), len(logged))):
                logged.pop()
            logged.extend(adv_all.float().tolist())
        else:
            adv_all = grpo_advantages(rewards.view(-1, G)).reshape(-1)  # TRL's formula, for the logs
            local = out["advantages"]
        self._record_step_metrics(adv_all, correct, rewards, local)
        return out

    def _record_step_metrics(self, adv_all: torch.Tensor, correct: torch.Tensor, rewards: torch.Tensor,
                             local_adv: torch.Tensor) -> None:
        r = self.refine
        mode = "train"
        G = self.num_generations
        metrics = self._metrics[mode]
        groups = adv_all.view(-1, G)
        metrics["adv/mean"].append(float(adv_all.mean()))
        metrics["adv/std"].append(float(adv_all.std()) if adv_all.numel() > 1 else 0.0)
        metrics["adv/zero_signal_groups"].append(float((groups.abs() < 1e-8).all(dim=1).float().mean()))
        metrics["refine/correct"].append(float(correct.float().mean()))

        cache = self._step_cache
        texts = cache.get("texts", [])
        n = len(texts)
        nan = float("nan")
        tok = getattr(self.processing_class, "tokenizer", self.processing_class)
        cols = {
            "think_tokens": [len(tok(extract_think(t), add_special_tokens=False)["input_ids"]) if r.mode == "think"
                             else nan for t in texts],
            "pd_raw": list(cache.get("pd_raw", [nan] * n)),
            "r_think": list(cache.get("r_think", [nan] * n)),
            "r_ref": list(cache.get("r_ref", [nan] * n)),
            "answer_no_think": [nan] * n,
        }
        if r.stage == "2" and cache.get("no_think_texts") is not None:
            cols["answer_no_think"] = [answer_reward(parse_score(t), m, r.answer_eps, r.variant)
                                       for t, m in zip(cache["no_think_texts"], cache["mos"])]
        local = torch.tensor([cols[k] for k in cols], dtype=torch.float64, device=self.accelerator.device).T
        gathered = self.accelerator.gather(local.contiguous()).cpu().numpy()
        for j, key in enumerate(cols):
            col = gathered[:, j]
            if np.isfinite(col).any():
                metrics[f"refine/{key}"].append(float(np.nanmean(col)))
        if r.stage == "2" and "answer" in self.reward_func_names:
            i = self.reward_func_names.index("answer")
            metrics["refine/answer_think" if r.mode == "think" else "refine/answer_no_think_train"].append(
                float(torch.nanmean(self._gathered_rewards[:, i]))
            )
        if r.advantages_dir and self.model.training:
            row = {"step": int(self.state.global_step) + 1, "rank": int(self.accelerator.process_index),
                   "world_size": int(self.accelerator.num_processes), "advantages": adv_all.double().tolist(),
                   "local": local_adv.double().tolist(), "rewards": rewards.double().tolist(),
                   "correct": correct.int().tolist()}
            append_jsonl(Path(r.advantages_dir) / f"rank{self.accelerator.process_index}.jsonl", row)

    # ------------------------------------------------------------------ sampler, loss guard
    def _get_train_sampler(self, dataset=None):
        if dataset is None:
            dataset = self.train_dataset
        return EpochRepeatSampler(
            data_source=dataset,
            mini_repeat_count=self.num_generations,
            batch_size=self.args.generation_batch_size // self.num_generations,
            repeat_count=self.num_iterations * self.args.steps_per_generation,
            shuffle=self.shuffle_dataset,
            seed=self.args.seed,
        )

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        try:
            self._last_loss = float(loss.detach().float().mean())
        except Exception:  # pragma: no cover - loss always a tensor in TRL
            self._last_loss = None
        return loss
