"""Cost of the Refine-IQA trainer relative to plain TRL, timed in one run (no assertions).

Four trainers on the same settings (the profile's Stage-2 batch: prompts × G completions,
completion length, sampling), the same data order and the same starting weights:

* ``trl``         - TRL's ``GRPOTrainer`` with the ``answer`` and ``format`` rewards;
* ``pd_off``      - ``RefineGRPOTrainer`` without PD (Eq. 6 advantage, metrics, per-rank advantage log);
* ``pd_on``       - with PD as trained here: the paper's reference (one teacher-forced row per
  group, Eq. 4), only the rollouts Eq. 5 can reward teacher-forced (all of them every
  ``stage2.pd_raw_every`` steps, for the ungated metrics), token-exact from the sampled ids;
* ``pd_sampled``  - with PD the authors' way: an extra sampled no-think generation per rollout, and
  every think rollout and every sample teacher-forced at every step.

Each variant runs ``--steps`` optimizer steps per round, ``--rounds`` rounds in turn (so drift on a
shared machine hits all of them); the first ``--skip`` steps of each run are discarded and the
median step time is reported. Ratios: ``pd_off / trl`` (target <= 1.10), ``pd_on / pd_off``
(target <= 1.15) and ``pd_sampled / pd_on`` (the authors' way over ours, expected >= 1.5), plus the
cost of the reference alone (each variant's step time over ``pd_off``). At the tiny scale a
completion is ~18 tokens, so the authors' extra generation is a small part of a step; with the
paper's 1024-token completions generation dominates the step and the whole-step ratio grows.

    python benchmarks/bench_trainer.py --profile tiny [--steps 10 --rounds 2] [--set key=value]

The starting weights are the warm-up output when it exists (its completions end like a trained
model's), else the random stand-in (every completion runs to the length limit); the script says
which.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from transformers import TrainerCallback


class StepTimer(TrainerCallback):
    def __init__(self):
        self.times: list[float] = []
        self._t = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._t = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        self.times.append(time.perf_counter() - self._t)


def _weights(cfg) -> tuple[Path, str]:
    from refine_iqa_lib.runs import resolve_model_path
    from refine_iqa_lib.runs import default_run_dir, is_complete

    warm = default_run_dir(cfg, "warmup")
    if is_complete(warm):
        return warm / "final", "warm-up output"
    return resolve_model_path(cfg), "random stand-in (no warm-up output found)"


def _run(variant: str, cfg, weights: Path, dataset, steps: int, out: Path) -> list[float]:
    from trl import GRPOTrainer

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.method.rewards import get_reward_funcs
    from refine_iqa_lib.training.run import grpo_config
    from refine_iqa_lib.training.trainer import RefineGRPOTrainer, RefineSettings

    over = {"stage2.max_steps": steps, "stage2.save_steps": 10**6, "stage2.no_think_every": 0,
            "stage2.use_pd": variant in ("pd_on", "pd_sampled"),
            "stage2.pd_reference": "sampled" if variant == "pd_sampled" else "forced",
            # the authors teacher-force every rollout at every step; ours only the rollouts Eq. 5 can
            # reward (+ one reference row per group), and every rollout every pd_raw_every steps
            "stage2.pd_raw_every": 1 if variant == "pd_sampled" else cfg.stage2.pd_raw_every}
    vcfg = load_config(cfg, over)
    s = vcfg.stage2
    model, processor = load_policy(weights, dtype=vcfg.model.dtype, min_pixels=vcfg.model.min_pixels,
                                   max_pixels=vcfg.model.max_pixels)
    args = grpo_config(vcfg, "2", out / variant)
    args.save_strategy = "no"
    timer = StepTimer()
    if variant == "trl":
        args.reward_weights = list(s.lambdas[:2])
        trainer = GRPOTrainer(model=model, reward_funcs=get_reward_funcs(["answer", "format"], eps=s.answer_eps,
                                                                         variant=s.variant, mode=s.mode),
                              args=args, train_dataset=dataset, processing_class=processor, callbacks=[timer])
    else:
        refine = RefineSettings.from_stage(s, "2", advantages_dir=out / variant / "advantages")
        trainer = RefineGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                    callbacks=[timer], refine=refine)
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.train()
    return timer.times


def main(argv=None) -> None:
    import torch

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.training.data import stage2_dataset

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[])
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--skip", type=int, default=2)
    a = ap.parse_args(argv)
    cfg = load_config(a.profile, a.sets)
    weights, how = _weights(cfg)
    dataset = stage2_dataset(cfg)
    s = cfg.stage2
    print(f"profile {cfg.profile}: {s.prompts_per_step} prompts x G={s.num_generations}, "
          f"max {s.max_completion_length} completion tokens, torch threads {torch.get_num_threads()}; "
          f"weights: {how}")
    variants = ("trl", "pd_off", "pd_on", "pd_sampled")
    times: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(a.rounds):
            for v in variants:
                times[v] += _run(v, cfg, weights, dataset, a.steps + a.skip, Path(tmp))[a.skip:]
    ms = {v: 1000 * statistics.median(t) for v, t in times.items()}
    for v in variants:
        print(f"{v:11s} {ms[v]:8.1f} ms/step (median of {len(times[v])} steps)")
    print(f"RefineGRPOTrainer PD off / TRL GRPOTrainer : {ms['pd_off'] / ms['trl']:.3f}  (target <= 1.10)")
    print(f"PD on / PD off                             : {ms['pd_on'] / ms['pd_off']:.3f}  (target <= 1.15)")
    print(f"authors' sampled reference / ours          : {ms['pd_sampled'] / ms['pd_on']:.3f}  (target >= 1.5)")
    extra_ours, extra_theirs = ms["pd_on"] - ms["pd_off"], ms["pd_sampled"] - ms["pd_off"]
    if extra_ours > 0:
        print(f"cost of the no-think reference alone (step time over PD off), authors' / ours: "
              f"{extra_theirs / extra_ours:.2f} ({extra_theirs:.0f} vs {extra_ours:.0f} ms)")


if __name__ == "__main__":
    main()
