"""``RefineGRPOTrainer``: TRL's ``GRPOTrainer`` with the paper's rewards and advantage.

No RL loop is written here: generation, the clipped policy-gradient loss, optimisation,
checkpointing and distribution are TRL's / transformers'. The subclass changes three things.

1. **Rewards**: the stage's ``rewards`` (name -> weight), each built by name from the registry
   (:func:`refine_iqa_lib.method.rewards.build_reward`) and passed to TRL with ``reward_weights``.
   The paper's (:data:`~refine_iqa_lib.method.rewards.PAPER_REWARDS`):

   * Stage-1: ``stage1`` (routes each sample by its ``task`` column: multiple choice or IoU) and
     ``format`` (no-think layout), weights ``[λ1, λ2]``;
   * Stage-2: ``answer`` (Eq. 1), ``format`` and ``pd`` (Eq. 2-4, *gated*: 0 unless
     ``r_ans = r_fmt = 1``), weights ``[λ1, λ2, λ3]``. TRL's weighted sum of the three columns is
     then exactly Eq. 5. Without PD (``use_pd=False``, the ablation) only ``answer`` and ``format``.

   Any other registered reward listed with its weight is added to TRL's sum.

   The PD reward needs the *live* policy: it is a
   :class:`refine_iqa_lib.method.teacher_forcing.PDReward` holding the trainer's current model.
   For every local group it runs one batched no-grad forward of the group's *correct* think
   rollouts (the only ones Eq. 5 uses) with the ground truth forced in, plus the group's no-think
   reference row; every ``pd_raw_every`` steps all G rollouts are forced, for the ungated
   ``refine/pd_raw`` metric. A group without a correct rollout still runs its reference row, so
   every process makes the same number of forward calls (required under ZeRO-3). Each rollout is
   forced from the token ids the policy sampled, up to its score (re-tokenised text only where the
   score does not start at a token boundary or is missing; those rows are counted in
   ``refine/pd_retokenised``). The forced rows continue exactly the prompt TRL sampled from: PD
   renders it with TRL's chat template and ``chat_template_kwargs``, and every forced think row is
   checked against the prompt ids TRL generated from (column ``sampled_prompt_ids``, added here;
   a mismatch raises naming the row); every image of a row is shown. The digit probabilities
   come from float32 logits. PD is detached: a number in the reward, no gradient.

2. **Advantage** (Eq. 6, "PM"). TRL computes the GRPO advantage inline in
   ``_generate_and_score_completions`` from the rewards it gathered across processes in
   ``_calculate_rewards``. The override of ``_calculate_rewards`` computes
   :func:`refine_iqa_lib.method.advantages.refine_advantages` over those gathered groups
   (``correct`` = ``r_ans = r_fmt = 1`` from the same gathered columns) and keeps this process's
   slice, exactly as TRL slices. A rollout no reward function could score (every column NaN) is
   left out of its group's statistics and gets advantage 0, as TRL does. The override of
   ``_generate_and_score_completions`` puts the result in place of TRL's ``advantages``. So
   every process computes the same advantages. ``use_pm=False`` keeps TRL's advantage (standard
   GRPO, the "w/o PM" ablation). The gathered advantages of every
   step are written per process to ``<advantages_dir>/rank<r>.jsonl`` (audit; the distributed
   test compares them) and added to TRL's completions table as the column ``advantage_eq6``
   (TRL's own ``advantage`` column there is its standard GRPO value).

3. **Metrics** for the paper's figures, logged through the ``log_metric`` hook TRL hands every
   reward function (TRL averages them over all processes): ``refine/answer_think`` (mean answer
   reward of the sampled rollouts), ``refine/answer_no_think`` (see below), ``refine/think_tokens``
   (think length in tokens, the "think collapse" curve), ``refine/pd_raw`` (ungated Eq. 4),
   ``refine/r_think``, ``refine/r_ref``; computed on the gathered rewards (identical on every
   process): ``refine/correct`` and the advantage statistics ``adv/mean``, ``adv/std``,
   ``adv/zero_signal_groups`` (share of groups whose advantages are all 0).

   *No-think answer reward (Fig. 4).* Every ``no_think_every`` steps the step's prompts are also
   answered in no-think mode: one sampled no-think completion per rollout (same sampling settings),
   handed to the reward functions as the column ``no_think_sample`` and scored with Eq. 1. Those
   samples never enter the loss. The authors' code did this at every step (it used the samples as
   the PD reference); here it is a metric only, so sampling every k steps keeps its cost at 1/k of
   a generation per step. ``pd_reference="sampled"`` reproduces the authors' reference:
   r_no-think is then computed per rollout on its own sampled no-think completion instead of once
   per group on the fixed layout (Eq. 4); the no-think samples are then drawn every step, and
   their sampled token ids go to PD as the column ``no_think_sample_ids``, so each reference is
   teacher-forced from its own sampled tokens exactly like the think rollouts (and counted in
   ``refine/pd_retokenised`` where it falls back to re-tokenised text).

Loss: TRL's ``loss_type="dapo"`` normalises the summed per-token loss by the number of completion
tokens in the whole (gathered, accumulated) generation batch - Eq. 7's token-level
``1/Σ|o_i|`` averaging over the group(s). ``"grpo"`` is the per-sequence mean then batch mean (the
authors' code). ``beta=0`` removes the KL term and the reference model (paper); the authors used 0.04.
"""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback
from trl import GRPOTrainer
from trl.data_utils import prepare_multimodal_messages
from trl.trainer.utils import RepeatSampler

from refine_iqa_lib.io import append_jsonl
from refine_iqa_lib.method.advantages import eq6_eps, grpo_advantages, refine_advantages
from refine_iqa_lib.method.rewards import (
    PAPER_REWARDS, REQUIRED_REWARDS, answer_reward, build_reward, check_reward_names, completion_to_text, correct_mask,
    extract_think, parse_score,
)
from refine_iqa_lib.method.teacher_forcing import PDReward
from refine_iqa_lib.prompts import check_mode, check_variant

__all__ = ["RefineSettings", "RefineGRPOTrainer", "NonFiniteLossError", "NaNGuardCallback", "GuardedStepMixin",
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
    rewards: dict | None = None          # name -> weight; None = the paper's for the stage (PAPER_REWARDS)
    pd_reference: str = "forced"         # forced | sampled
    no_think_every: int = 0              # 0 = never sample no-think answers for the metric
    pd_raw_every: int = 1                # ungated PD of every rollout (metrics) every k steps; 0 = never
    advantages_dir: str | None = None    # per-rank JSONL of the gathered advantages

    def __post_init__(self):
        self.stage = str(self.stage)
        if self.stage not in ("1", "2"):
            raise ValueError(f"RefineSettings.stage {self.stage!r}: expected '1' or '2'")
        check_mode(self.mode)
        check_variant(self.variant)
        if self.pd_reference not in ("forced", "sampled"):
            raise ValueError(f"pd_reference {self.pd_reference!r}: expected 'forced' or 'sampled'")
        listed = PAPER_REWARDS[self.stage] if self.rewards is None else self.rewards
        self.rewards = {str(n): float(w) for n, w in listed.items()}
        check_reward_names(self.rewards)
        missing = [n for n in REQUIRED_REWARDS[self.stage] if n not in self.rewards]
        if missing:
            raise ValueError(f"Stage-{self.stage} rewards {self.rewards}: missing {missing} (Eq. 6's correct rollout)")
        if self.stage == "1" and self.use_pd:
            raise ValueError("the PD reward is a Stage-2 (scoring) reward; set stage1.use_pd=false")
        if self.use_pd and self.mode != "think":
            raise ValueError("the PD reward compares think with no-think; it needs mode='think'")
        if self.use_pd and "pd" not in self.rewards:
            raise ValueError(f"use_pd is on but the rewards {self.rewards} list no pd")

    @classmethod
    def from_stage(cls, stage_cfg, stage: str, advantages_dir: str | os.PathLike | None = None) -> "RefineSettings":
        """The settings of a ``StageConfig``: every field of this class that the section has, by
        name (the section's TRL fields go to ``GRPOConfig`` instead, see :mod:`refine_iqa_lib.training.run`)."""
        names = {f.name for f in fields(cls)} - {"stage", "advantages_dir"}
        return cls(stage=str(stage), advantages_dir=None if advantages_dir is None else str(advantages_dir),
                   **{n: getattr(stage_cfg, n) for n in names if hasattr(stage_cfg, n)})

    def reward_names(self) -> list[str]:
        """The rewards that train, in the listed order: ``rewards`` without ``pd`` unless ``use_pd``."""
        return [n for n in self.rewards if n != "pd" or self.use_pd]

    def reward_weights(self) -> list[float]:
        return [self.rewards[n] for n in self.reward_names()]

    @property
    def task_reward(self) -> str:
        """The reward whose value is 1 for a right answer (``stage1`` / ``answer``); with ``format``
        it defines a correct rollout (Eq. 5's gate, Eq. 6)."""
        return REQUIRED_REWARDS[self.stage][0]

    @property
    def eq6_eps(self) -> float:
        """Eq. 6's offset (:func:`refine_iqa_lib.method.advantages.eq6_eps`)."""
        return eq6_eps(self.variant, self.adv_eps)

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
    """Stop before a non-finite update, from what every distributed set-up exposes: the step's loss
    and the global gradient norm that transformers computes right before the optimizer step
    (``Trainer._get_grad_norm``, recorded by :class:`GuardedStepMixin`; under ZeRO-3 ``p.grad`` is
    ``None`` for partitioned parameters, the global norm is not). One synchronisation per step: each
    process's finite/non-finite flag is summed across processes once, so every process takes the
    same decision. On a NaN/Inf before the update it saves a checkpoint of the last finite weights
    (the state after the previous step) and raises :class:`NonFiniteLossError` naming the step and
    the checkpoint. Under DeepSpeed the norm of a step is only known after its update; a non-finite
    one there stops the run at once, pointing at the last saved checkpoint instead."""

    def __init__(self):
        self.trainer = None

    def _bad(self) -> tuple[bool, str]:
        trainer = self.trainer
        loss = getattr(trainer, "_guard_loss", None)
        norm = getattr(trainer, "_guard_grad_norm", None)
        what = []
        if loss is not None and not math.isfinite(loss):
            what.append(f"loss {loss}")
        if norm is not None and not math.isfinite(norm):
            what.append(f"gradient norm {norm}")
        local = 1.0 if what else 0.0
        if trainer.accelerator.num_processes > 1:  # the one synchronisation of the step
            flag = trainer.accelerator.reduce(torch.tensor([local], device=trainer.accelerator.device), reduction="sum")
            total = float(flag.item())
        else:
            total = local
        return total > 0, ", ".join(what) or "loss or gradients on another process"

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer is None or trainer.is_deepspeed_enabled:
            return
        bad, what = self._bad()
        if not bad:
            return
        step = state.global_step + 1
        trainer.model.zero_grad(set_to_none=True)
        trainer._save_checkpoint(trainer.model_wrapped, trial=None)
        trainer.callback_handler.on_save(args, state, control)  # marks the checkpoint complete
        where = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        raise NonFiniteLossError(f"non-finite {what} at training step {step}; stopped before applying it. "
                                 f"Last finite weights (after step {state.global_step}) saved in {where}")

    def on_optimizer_step(self, args, state, control, **kwargs):
        trainer = self.trainer
        if trainer is None or not trainer.is_deepspeed_enabled:
            return
        bad, what = self._bad()
        if bad:
            raise NonFiniteLossError(f"non-finite {what} at training step {state.global_step + 1} (DeepSpeed applies "
                                     "the update before its global norm is known); resume from the last saved "
                                     f"checkpoint in {args.output_dir}")


class GuardedStepMixin:
    """Records what :class:`NaNGuardCallback` reads: each step's loss (``training_step``) and the
    global gradient norm transformers computes before the optimizer step (``_get_grad_norm``)."""

    _guard_loss: float | None = None
    _guard_grad_norm: float | None = None

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self._guard_loss = float(loss.detach().float().mean()) if torch.is_tensor(loss) else None
        return loss

    def _get_grad_norm(self, model, grad_norm=None):
        norm = super()._get_grad_norm(model, grad_norm=grad_norm)
        try:
            self._guard_grad_norm = None if norm is None else float(norm)
        except (TypeError, ValueError):  # pragma: no cover - an unexpected norm type
            self._guard_grad_norm = None
        return norm


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


class RefineGRPOTrainer(GuardedStepMixin, CheckpointLoadMixin, GRPOTrainer):
    """``GRPOTrainer`` with the Refine-IQA rewards (Eq. 1-5), the modified advantage (Eq. 6) and
    the per-step metrics the paper's figures need. See the module docstring.

    ``refine``: a :class:`RefineSettings`. Reward functions are built from it (do not pass
    ``reward_funcs``); ``args.reward_weights`` is set from its weights. Dataset columns used: ``prompt``,
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
        self._eq6_local: torch.Tensor | None = None   # this step's Eq. 6 advantages (this process's rows)
        self._sampled_prompt_ids: list | None = None  # this step's prompt ids, as TRL generated from them
        super().__init__(*args, **kwargs)
        for cb in self.callback_handler.callbacks:
            if isinstance(cb, NaNGuardCallback):
                cb.trainer = self
        for func in self.reward_funcs:                # PD renders its prompts as TRL renders them
            if isinstance(func, PDReward):
                func.chat_template, func.chat_template_kwargs = self.chat_template, dict(self.chat_template_kwargs)

    # ------------------------------------------------------------------ rewards
    def _build_reward_funcs(self) -> list:
        """The settings' rewards, each built by name from the registry with the stage's context
        (:data:`refine_iqa_lib.method.rewards.REWARD_CONTEXT`); the task reward also logs the figures'
        per-step metrics."""
        r = self.refine
        context = {"eps": r.answer_eps, "variant": r.variant, "mode": r.mode, "reference": r.pd_reference,
                   "raw_every": r.pd_raw_every, "policy": lambda: self.model, "processor": lambda: self.processing_class}
        funcs = [build_reward(name, **context) for name in r.reward_names()]
        return [self._with_step_metrics(f) if name == r.task_reward else f for name, f in zip(r.reward_names(), funcs)]

    def _with_step_metrics(self, task_reward):
        """The task reward (``answer`` / ``stage1``), also logging the figures' per-step metrics
        through TRL's ``log_metric`` hook: ``refine/think_tokens`` (think mode), and for Stage-2
        ``refine/answer_think`` (or ``refine/answer_no_think_train``) and, on steps with no-think
        samples, ``refine/answer_no_think`` (Fig. 4)."""
        r = self.refine

        def reward(completions, **kw):
            values = task_reward(completions, **kw)
            log_metric = kw.get("log_metric")
            if not callable(log_metric) or not self.model.training:
                return values
            if r.mode == "think":
                tok = getattr(self.processing_class, "tokenizer", self.processing_class)
                for c in completions:
                    log_metric("refine/think_tokens",
                               float(len(tok(extract_think(completion_to_text(c)), add_special_tokens=False)["input_ids"])))
            if r.stage == "2":
                name = "refine/answer_think" if r.mode == "think" else "refine/answer_no_think_train"
                for v in values:
                    log_metric(name, float(v))
                for t, m in zip(kw.get("no_think_sample") or [], kw.get("mos") or []):
                    log_metric("refine/answer_no_think", answer_reward(parse_score(t), m, r.answer_eps, r.variant))
            return values

        reward.__name__ = reward.__qualname__ = task_reward.__name__
        return reward

    def log_step_metric(self, name: str, value: float) -> None:
        """Add ``value`` to this step's logged metrics: TRL averages them into the step's ``log`` row,
        which reaches ``metrics.jsonl`` and every ``report_to`` tracker (validation uses it)."""
        self._metrics["train"][name].append(float(value))

    # ------------------------------------------------------------------ no-think samples
    def _sample_no_think(self, prompts: list, inputs: list[dict]) -> tuple[list[str], list[list[int]]]:
        """One sampled no-think completion per rollout (TRL's own generation path and settings):
        ``(texts, token ids)``."""
        nt_prompts = []
        for x in inputs:
            imgs = x.get("images")
            if imgs is None and x.get("image") is not None:
                imgs = [x["image"]]
            nt_prompts.append(prepare_multimodal_messages([{"role": "user", "content": x["no_think_text"]}],
                                                          images=list(imgs or [])))
        prompt_ids, images, mm_fields = self._tokenize_prompts(nt_prompts)
        completion_ids, _ = self._generate_single_turn(prompt_ids, images, mm_fields, self.num_generations)
        return (self.processing_class.batch_decode(completion_ids, skip_special_tokens=True),
                [[int(t) for t in ids] for ids in completion_ids])

    def _generate(self, prompts: list):
        """TRL's generation; keeps the prompt token ids it generated from (handed to the reward
        functions as the column ``sampled_prompt_ids``, which PD checks its prompts against)."""
        out = super()._generate(prompts)
        self._sampled_prompt_ids = [[int(t) for t in ids] for ids in out[0]]
        return out

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        """TRL's rewards (gathered over processes), then Eq. 6 on them. The prompt ids TRL generated
        from are added to the inputs as the column ``sampled_prompt_ids``; on steps that need them,
        one sampled no-think completion per rollout as ``no_think_sample`` (and its token ids as
        ``no_think_sample_ids``). TRL hands every input column to every reward function."""
        r = self.refine
        self._eq6_local = None
        sampled_ids, self._sampled_prompt_ids = self._sampled_prompt_ids, None
        if sampled_ids is not None and len(sampled_ids) == len(inputs):
            for x, ids in zip(inputs, sampled_ids):
                x["sampled_prompt_ids"] = ids
        if self.model.training and r.samples_no_think:
            every = r.no_think_every
            if (r.pd_reference == "sampled" and r.use_pd) or (every > 0 and self.state.global_step % every == 0):
                texts, ids = self._sample_no_think(prompts, inputs)
                for x, text, sample_ids in zip(inputs, texts, ids):
                    x["no_think_sample"], x["no_think_sample_ids"] = text, sample_ids
        gathered = super()._calculate_rewards(inputs, prompts, completions, completion_ids_list)
        if self.model.training:
            self._eq6_local = self._advantages(gathered.detach(), len(prompts))
        return gathered

    # ------------------------------------------------------------------ advantage + metrics
    def _advantages(self, rpf: torch.Tensor, n_local: int) -> torch.Tensor:
        """Eq. 6 (or TRL's GRPO formula with ``use_pm=False``, for the logs) over the gathered
        rewards ``rpf`` ``(N_total, n_rewards)``; returns this process's slice, exactly as TRL
        slices, and logs the advantage statistics and the per-rank audit file."""
        device = self.accelerator.device
        G = self.num_generations
        names = self.reward_func_names
        rpf = rpf.to(device)
        rewards = (rpf * self.reward_weights.to(device).unsqueeze(0)).nansum(dim=1).double()
        rewards[torch.isnan(rpf).all(dim=1)] = float("nan")   # unscorable: out of the group's statistics, A = 0
        task_col = names.index(self.refine.task_reward)
        correct = correct_mask(rpf[:, task_col], rpf[:, names.index("format")])
        if self.refine.use_pm:
            adv_all = refine_advantages(rewards.view(-1, G), correct.view(-1, G), eps=self.refine.eq6_eps,
                                        variant=self.refine.variant).reshape(-1)
        else:
            adv_all = grpo_advantages(rewards.view(-1, G)).reshape(-1)  # TRL's own formula (what trains)
        lo = self.accelerator.process_index * n_local
        local = adv_all[lo:lo + n_local]
        metrics = self._metrics["train"]
        groups = adv_all.view(-1, G)
        metrics["adv/mean"].append(float(adv_all.mean()))
        metrics["adv/std"].append(float(adv_all.std()) if adv_all.numel() > 1 else 0.0)
        metrics["adv/zero_signal_groups"].append(float((groups.abs() < 1e-8).all(dim=1).float().mean()))
        metrics["refine/correct"].append(float(correct.float().mean()))
        self._log_completion_extra("advantage_eq6" if self.refine.use_pm else "advantage_grpo",
                                   local.float().tolist())
        if self.refine.advantages_dir:
            row = {"step": int(self.state.global_step) + 1, "rank": int(self.accelerator.process_index),
                   "world_size": int(self.accelerator.num_processes), "advantages": adv_all.double().tolist(),
                   "local": local.double().tolist(), "rewards": rewards.double().tolist(),
                   "correct": correct.int().tolist(), "reward_names": list(names),
                   "rewards_per_func": rpf.double().cpu().tolist()}
            append_jsonl(Path(self.refine.advantages_dir) / f"rank{self.accelerator.process_index}.jsonl", row)
        return local

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        local, self._eq6_local = self._eq6_local, None
        if local is not None and self.refine.use_pm:
            out["advantages"] = local.to(dtype=out["advantages"].dtype, device=out["advantages"].device)
        return out

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
