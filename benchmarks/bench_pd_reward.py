"""Cost of the teacher-forced PD reward (Eq. 2-4) for one group, against its baselines.

Times, on the profile's policy (the tiny stand-in by default) and one image:

* **batched PD** - :func:`refine_iqa_lib.method.teacher_forcing.pd_rewards_for_group`: G think rollouts + the no-think
  reference teacher-forced in one no-grad forward pass;
* **full rows** - the same, ``share_prompt=False``: G + 1 rows of prompt + completion in one pass;
* **one at a time** - the same G + 1 rows, one forward pass each;
* **GRPO-step proxy** - one ``model.generate`` of G sampled completions (the profile's
  ``max_completion_length``, temperature 1) plus one forward + backward of a token-level
  policy-gradient loss on them (what a GRPO step costs apart from the optimizer update).

All rollouts are ``max_completion_length`` tokens long in total (think text cut from the sampled
tokens, plus the ``<think>…</think><answer>X.Y</answer>`` layout), like the completions a GRPO step
samples. The three measurements are interleaved and each is the median of ``--repeats`` runs, in
CPU time of this process (robust when other jobs share the machine; the workload is
single-threaded with ``OMP_NUM_THREADS=1``) and in wall-clock time. The target is batched PD <= 15%
of a GRPO step. Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_pd_reward.py [--profile tiny] [--repeats 7] [--quick]
"""
from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
from PIL import Image

from refine_iqa_lib import prompts
from refine_iqa_lib.config import load_config
from refine_iqa_lib.standin.world import load_photo
from refine_iqa_lib.models import load_policy
from refine_iqa_lib.runs import resolve_model_path
from refine_iqa_lib.method.teacher_forcing import pd_rewards_for_group, teacher_forced_digit_probs


def _time(fn) -> tuple[float, float]:
    """(CPU ms of this process, wall ms) of one call."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    c0, w0 = time.process_time(), time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return (time.process_time() - c0) * 1e3, (time.perf_counter() - w0) * 1e3


def _fit_rollout(tok, think_ids: list[int], score: str, length: int) -> str:
    """A think-mode completion of at most ``length`` tokens, its think cut from ``think_ids``."""
    n = len(think_ids)
    while True:
        text = prompts.completion_text(score, "think", tok.decode(think_ids[:n], skip_special_tokens=True))
        if len(tok(text, add_special_tokens=False)["input_ids"]) <= length or n == 0:
            return text
        n -= 1


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", default="tiny")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="3 repeats (for `make bench`)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats = 3

    torch.set_num_threads(int(os.environ.get("OMP_NUM_THREADS", "1")))
    cfg = load_config(args.profile)
    s2 = cfg.stage2
    model, processor = load_policy(resolve_model_path(cfg), dtype=cfg.model.dtype, min_pixels=cfg.model.min_pixels,
                                   max_pixels=cfg.model.max_pixels, device=args.device)
    image = Image.fromarray(load_photo("chelsea"))
    G, L = s2.num_generations, s2.max_completion_length
    think_msgs = prompts.user_message(prompts.scoring_prompt("think", s2.variant))
    no_think_msgs = prompts.user_message(prompts.scoring_prompt("no_think", s2.variant))
    prompt = processor.apply_chat_template(think_msgs, add_generation_prompt=True, tokenize=False)
    inputs = processor(text=[prompt], images=[image], return_tensors="pt").to(args.device)
    tok = processor.tokenizer

    # the random stand-in samples from its whole vocabulary: keep vision placeholders out of completions
    vision = [tok.convert_tokens_to_ids(t) for t in ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>",
                                                       "<|vision_end|>", "<|vision_pad|>")]
    gen_kwargs = dict(do_sample=True, temperature=s2.temperature, top_p=s2.top_p, top_k=s2.top_k,
                      max_new_tokens=L, num_return_sequences=G, pad_token_id=tok.pad_token_id,
                      suppress_tokens=vision)

    def sample():
        with torch.no_grad():
            return model.generate(**inputs, **gen_kwargs)

    torch.manual_seed(cfg.seed)
    sequences = sample()
    n_prompt = inputs["input_ids"].shape[1]
    rollouts = [_fit_rollout(tok, sequences[i, n_prompt:].tolist(), f"{2.0 + 0.1 * i:.1f}", L) for i in range(G)]
    mos = 3.42

    def batched():
        return pd_rewards_for_group(model, processor, image, rollouts, mos, variant=s2.variant)

    def batched_plain():
        return pd_rewards_for_group(model, processor, image, rollouts, mos, variant=s2.variant, share_prompt=False)

    def one_at_a_time():
        z = [teacher_forced_digit_probs(model, processor, think_msgs, image, [c], mos, variant=s2.variant)
             for c in rollouts]
        z.append(teacher_forced_digit_probs(model, processor, no_think_msgs, image, ["<answer>0</answer>"], mos,
                                            mode="no_think", variant=s2.variant))
        return z

    params = [p for p in model.parameters() if p.requires_grad]

    def grpo_step():
        seqs = sample()
        n_prompt = inputs["input_ids"].shape[1]
        mask = torch.ones_like(seqs)
        batch = {"input_ids": seqs, "attention_mask": mask,
                 "pixel_values": inputs["pixel_values"].repeat(G, 1),
                 "image_grid_thw": inputs["image_grid_thw"].repeat(G, 1),
                 "mm_token_type_ids": torch.cat([inputs["mm_token_type_ids"].repeat(G, 1),
                                                 torch.zeros_like(seqs[:, n_prompt:])], dim=1)}
        model.train()
        logits = model(**batch, use_cache=False, logits_to_keep=seqs.shape[1] - n_prompt + 1).logits[:, :-1]
        logp = torch.log_softmax(logits.float(), -1).gather(-1, seqs[:, n_prompt:, None])[..., 0]
        adv = torch.linspace(-1, 1, G, device=logp.device)[:, None]
        loss = -(adv * logp).sum() / logp.numel()        # token-level average (Eq. 7, on-policy)
        loss.backward()
        for p in params:
            p.grad = None
        model.eval()

    check = batched()
    single = one_at_a_time()
    err = float(np.abs(np.concatenate(single[:-1]) - check.think_probs).max())

    fns = {"batched": batched, "plain": batched_plain, "single": one_at_a_time, "grpo": grpo_step}
    runs = {k: [] for k in fns}
    for fn in fns.values():  # warm-up
        fn()
    for _ in range(args.repeats):
        for name, fn in fns.items():
            runs[name].append(_time(fn))
    cpu = {k: statistics.median(c for c, _ in v) for k, v in runs.items()}
    wall = {k: statistics.median(w for _, w in v) for k, v in runs.items()}
    n_tokens = [len(tok(r, add_special_tokens=False)["input_ids"]) for r in rollouts]
    n_params = sum(p.numel() for p in model.parameters())
    print(f"profile {cfg.profile} | device {args.device} | threads {torch.get_num_threads()} | "
          f"{n_params / 1e6:.1f} M parameters | G = {G} | completions {min(n_tokens)}-{max(n_tokens)} tokens "
          f"(limit {L}) | prompt {n_prompt} tokens | median of {args.repeats}")
    print(f"max |batched - one at a time| = {err:.2e}")
    print(f"{'':34s} {'CPU ms':>9s} {'wall ms':>9s}")
    print(f"{'batched PD (G+1 rows, shared prompt)':34s} {cpu['batched']:9.1f} {wall['batched']:9.1f}")
    print(f"{'batched PD, full rows (no sharing)':34s} {cpu['plain']:9.1f} {wall['plain']:9.1f}")
    print(f"{'one at a time (G+1 passes)':34s} {cpu['single']:9.1f} {wall['single']:9.1f}"
          f"   -> batched is {cpu['single'] / cpu['batched']:.1f}x cheaper")
    print(f"{'GRPO-step proxy (generate + f/b)':34s} {cpu['grpo']:9.1f} {wall['grpo']:9.1f}")
    ratio = cpu["batched"] / cpu["grpo"]
    print(f"batched PD / GRPO step = {ratio:.1%} CPU time, {wall['batched'] / wall['grpo']:.1%} wall "
          f"(target <= 15%: {'met' if ratio <= 0.15 else 'NOT met'})")
    return {"cpu_ms": cpu, "wall_ms": wall, "ratio": ratio}

if __name__ == "__main__":
    main()
