"""A 7B-shaped rehearsal on CPU: per-layer cost of Qwen2.5-VL-7B-Instruct, projected to paper scale.

Builds ``models.paper_shaped_config`` (Qwen2.5-VL-7B-Instruct's published architecture) on the meta
device to count its parameters, then a depth-reduced copy with random weights on CPU in **bf16**
(2 text layers, 2 vision blocks; the 1-layer / 1-block model is the same weights with the last
layer / block dropped). For each depth it times, with the paper's image size (448 x 336 px, 192
visual tokens) and a prompt of ``--prompt-len`` tokens:

(i)   generation: G rows, greedy, prefill + ``--decode-steps`` decode steps (extrapolated to 1,024);
(ii)  the PD teacher-forcing pass: one plain batched forward of ``--pd-rows`` rows of prompt +
      ``--pd-len`` completion tokens, logits only at the two digit positions (as
      ``method.teacher_forcing`` does), no gradients;
(iii) one training step: forward + backward of ``--train-rows`` rows of prompt + ``--train-len``
      completion tokens with gradient checkpointing, logits and log-softmax on the completion.

Per text layer = (2-layer model) - (1-layer model); the vision tower's per-block cost the same way.
Everything else (embeddings, lm_head, one vision block, merger) is the fixed part. Shapes smaller
than the paper's are scaled by FLOP count (linear layers + causal attention), then extrapolated to
28 layers / 32 blocks, converted to one GPU by a stated throughput ratio, and put together as one
Stage-2 step on 8 GPUs under ZeRO-3. Also printed: the authors' sampled-reference PD step over ours.
All figures are CPU-measured projections, not GPU measurements.

    python benchmarks/bench_paper_scale.py            # ~3-4 min on 2 shared cores, ~5.2 GiB peak RSS
    python benchmarks/bench_paper_scale.py --quick    # smaller shapes, ~1.5-2 min

On a shared machine the 2-layer minus 1-layer difference can come out below what the layer's FLOPs
need at the measured GEMM rate; the script then says so and uses that floor.
"""
from __future__ import annotations

import argparse
import os
import threading
import time

import torch

from refine_iqa_lib.models import PAPER_N_PARAMETERS, PAPER_TEXT_ARCH, PAPER_TOKEN_IDS, paper_shaped_config

GIB = 1024 ** 3
IMAGE_GRID = (1, 24, 32)   # 448 x 336 px in 14-px patches: a KonIQ 4:3 picture under the 151,200-px cap
PAPER_LAYERS, PAPER_BLOCKS = 28, 32


# ------------------------------------------------------------------------------------ measuring


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def measure(fn, repeat: int = 1):
    """(best seconds, peak RSS growth in bytes over the call) of ``fn()``; RSS sampled every 2 ms."""
    best, peak_growth = float("inf"), 0
    for _ in range(repeat):
        base, peak, stop = _rss(), [0], threading.Event()

        def sample():
            while not stop.is_set():
                peak[0] = max(peak[0], _rss())
                time.sleep(0.002)

        th = threading.Thread(target=sample, daemon=True)
        th.start()
        t = time.perf_counter()
        fn()
        dt = time.perf_counter() - t
        stop.set()
        th.join()
        best = min(best, dt)
        peak_growth = max(peak_growth, max(peak[0], _rss()) - base)
    return best, peak_growth


def calibrate(dtype=torch.bfloat16):
    """This CPU's bf16 GEMM rate (FLOP/s, a 512 x 3584 x 18944 product) and weight-streaming rate
    (bytes/s, 8 rows through an 18944 x 3584 weight: what a decode step does)."""
    w = torch.randn(18944, 3584, dtype=dtype)
    a, b = torch.randn(512, 3584, dtype=dtype), torch.randn(8, 3584, dtype=dtype)
    torch.nn.functional.linear(a, w)
    t_gemm, _ = measure(lambda: torch.nn.functional.linear(a, w), repeat=3)
    t_gemv, _ = measure(lambda: [torch.nn.functional.linear(b, w) for _ in range(5)], repeat=2)
    return 2 * 512 * 3584 * 18944 / t_gemm, 5 * w.numel() * w.element_size() / t_gemv


# ------------------------------------------------------------------------------------ model


def build(layers: int, blocks: int):
    from transformers import Qwen2_5_VLForConditionalGeneration

    config = paper_shaped_config(layers, vision_depth=blocks)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(prev)
    model.config.use_cache = True
    return model.eval()


def set_depth(model, layers: int, blocks: int, all_layers, all_blocks):
    """Use the first ``layers`` text layers and ``blocks`` vision blocks (same weights)."""
    lm, vis = model.model.language_model, model.model.visual
    lm.layers = torch.nn.ModuleList(all_layers[:layers])
    vis.blocks = torch.nn.ModuleList(all_blocks[:blocks])
    vis.fullatt_block_indexes = [blocks - 1]
    tc = model.config.text_config
    tc.num_hidden_layers = layers
    tc.layer_types = ["full_attention"] * layers
    model.config.vision_config.depth = blocks
    model.config.vision_config.fullatt_block_indexes = [blocks - 1]


def prompt_inputs(rows: int, prompt_len: int, completion_len: int = 0, seed: int = 0):
    """Token ids of ``rows`` rows: system/user text, the image's 192 pad tokens, more text, and
    ``completion_len`` completion tokens; random ids below the special tokens."""
    g = torch.Generator().manual_seed(seed)
    ids = PAPER_TOKEN_IDS
    n_img = IMAGE_GRID[0] * IMAGE_GRID[1] * IMAGE_GRID[2] // 4
    n_text = prompt_len - n_img - 2
    head = torch.randint(0, 150000, (n_text // 2,), generator=g)
    tail = torch.randint(0, 150000, (n_text - n_text // 2,), generator=g)
    prompt = torch.cat([head, torch.tensor([ids["vision_start_token_id"]]),
                        torch.full((n_img,), ids["image_token_id"]), torch.tensor([ids["vision_end_token_id"]]), tail])
    comp = torch.randint(0, 150000, (rows, completion_len), generator=g)
    input_ids = torch.cat([prompt[None].expand(rows, -1), comp], dim=1)
    mm = (input_ids == ids["image_token_id"]).long()
    n_patch = IMAGE_GRID[0] * IMAGE_GRID[1] * IMAGE_GRID[2]
    pixel = torch.randn(n_patch, 3 * 2 * 14 * 14, generator=g).to(torch.bfloat16)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "mm_token_type_ids": mm,
            "pixel_values": pixel.repeat(rows, 1), "image_grid_thw": torch.tensor([IMAGE_GRID] * rows)}


# ------------------------------------------------------------------------------------ phases


def run_generate(model, rows, prompt_len, steps):
    """Greedy generation as ``generate`` does it (prefill, then one token per step on the KV cache);
    returns (prefill seconds, decode seconds for ``steps`` steps)."""
    inputs = prompt_inputs(rows, prompt_len)
    mask = inputs["attention_mask"]
    model.model.rope_deltas = None
    with torch.no_grad():
        t = time.perf_counter()
        out = model(**inputs, use_cache=True, logits_to_keep=1)
        t_prefill = time.perf_counter() - t
        cache, tok = out.past_key_values, out.logits[:, -1].argmax(-1, keepdim=True)
        t = time.perf_counter()
        deltas = model.model.rope_deltas.view(1, rows, 1)                   # Qwen2.5-VL's 3-D positions
        for _ in range(steps):
            pos = (cache.get_seq_length() + deltas).expand(3, rows, 1)
            mask = torch.cat([mask, torch.ones_like(tok)], dim=1)
            out = model(input_ids=tok, attention_mask=mask, position_ids=pos, past_key_values=cache,
                        use_cache=True, logits_to_keep=1)
            cache, tok = out.past_key_values, out.logits[:, -1].float().argmax(-1, keepdim=True)
        t_decode = time.perf_counter() - t
    assert cache.get_seq_length() == prompt_len + steps
    return t_prefill, t_decode


def run_pd(model, rows, prompt_len, comp_len):
    inputs = prompt_inputs(rows, prompt_len, comp_len)
    T = inputs["input_ids"].shape[1]
    keep = torch.tensor([T - 4, T - 3])  # logits before the two ground-truth digits only
    with torch.no_grad():
        logits = model(**inputs, use_cache=False, logits_to_keep=keep).logits
    torch.softmax(logits.float(), -1)


def run_train(model, rows, prompt_len, comp_len):
    inputs = prompt_inputs(rows, prompt_len, comp_len)
    model.train()
    try:
        out = model(**inputs, use_cache=False, logits_to_keep=comp_len + 1)
        logp = torch.log_softmax(out.logits[:, :-1].float(), -1)
        target = inputs["input_ids"][:, -comp_len:]
        loss = -logp.gather(-1, target[..., None]).mean()
        loss.backward()
    finally:
        model.eval()


# ------------------------------------------------------------------------------------ FLOP model


def layer_params() -> int:
    t = PAPER_TEXT_ARCH
    h, kv = t["hidden_size"], t["num_key_value_heads"] * t["hidden_size"] // t["num_attention_heads"]
    return h * h * 2 + h * kv * 2 + 3 * h * t["intermediate_size"]


def layer_flops(rows: int, total_len: int) -> float:
    """Forward FLOPs of one decoder layer: linear layers + causal attention (QK^T and AV)."""
    h = PAPER_TEXT_ARCH["hidden_size"]
    return rows * (2 * layer_params() * total_len + 2 * total_len * total_len * h)


def head_flops(rows: int, n_logits: int) -> float:
    return 2 * rows * n_logits * PAPER_TEXT_ARCH["hidden_size"] * PAPER_TEXT_ARCH["vocab_size"]


# ------------------------------------------------------------------------------------ main


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true", help="smaller shapes (~1 min)")
    ap.add_argument("--G", type=int, default=8)
    ap.add_argument("--prompt-len", type=int, default=300, help="prompt tokens incl. 192 visual tokens")
    ap.add_argument("--completion-len", type=int, default=1024, help="paper: max completion 1,024 tokens")
    ap.add_argument("--answer-len", type=int, default=16, help="tokens of a no-think answer (authors' reference)")
    ap.add_argument("--decode-steps", type=int, default=None)
    ap.add_argument("--pd-rows", type=int, default=None)
    ap.add_argument("--pd-len", type=int, default=None)
    ap.add_argument("--train-rows", type=int, default=1)
    ap.add_argument("--train-len", type=int, default=None)
    ap.add_argument("--correct-share", type=float, default=0.30,
                    help="share of rollouts Eq. 5 can reward (r_ans = r_fmt = 1); ~0.3 measured at tiny scale")
    ap.add_argument("--gpu-tflops", type=float, default=790.0, help="H200 dense bf16 peak")
    ap.add_argument("--gpu-util", type=float, default=0.40, help="share of peak sustained (MFU)")
    ap.add_argument("--gpu-hbm-tbs", type=float, default=4.8, help="H200 HBM bandwidth, TB/s")
    ap.add_argument("--gpu-hbm-util", type=float, default=0.6)
    ap.add_argument("--link-gbs", type=float, default=300.0, help="effective per-GPU collective bandwidth, GB/s")
    ap.add_argument("--gpus", type=int, default=8)
    ap.add_argument("--steps-total", type=int, default=5984, help="3 epochs x 15,958 pictures / 8 prompts")
    args = ap.parse_args(argv)
    q = args.quick
    steps = args.decode_steps or (24 if q else 128)
    pd_rows = args.pd_rows or (1 if q else 2)
    pd_len = args.pd_len or (128 if q else 512)
    train_len = args.train_len or (32 if q else 128)
    reps = 1 if q else 2
    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", os.cpu_count() or 1))))
    G, P, L = args.G, args.prompt_len, args.completion_len

    # the full architecture, on the meta device
    from transformers import Qwen2_5_VLForConditionalGeneration
    with torch.device("meta"):
        full = Qwen2_5_VLForConditionalGeneration(paper_shaped_config())
    n_full = sum(p.numel() for p in full.parameters())
    n_vis = sum(p.numel() for p in full.model.visual.parameters())
    del full
    print(f"Qwen2.5-VL-7B-Instruct shape (meta device): {n_full:,} parameters ({n_vis:,} vision); "
          f"expected {PAPER_N_PARAMETERS:,}: {'OK' if n_full == PAPER_N_PARAMETERS else 'MISMATCH'}")

    t0 = time.perf_counter()
    cpu_flops, cpu_bw = calibrate()
    model = build(2, 2)
    all_layers, all_blocks = list(model.model.language_model.layers), list(model.model.visual.blocks)
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    for p in model.parameters():  # compute every weight gradient, keep none (CPU memory)
        p.register_post_accumulate_grad_hook(lambda p: setattr(p, "grad", None))
    n_cpu = sum(p.numel() for p in model.parameters())
    print(f"CPU: {torch.get_num_threads()} threads; bf16 GEMM {cpu_flops / 1e9:.0f} GFLOP/s, weight streaming "
          f"{cpu_bw / 1e9:.1f} GB/s; built 2-layer/2-block copy, {n_cpu:,} parameters, bf16, random weights, "
          f"in {time.perf_counter() - t0:.0f} s")
    print(f"measured shapes: prompt {P} tokens (192 visual), generation {G} rows x {steps} decode steps, "
          f"PD {pd_rows} rows x ({P}+{pd_len}), training {args.train_rows} row(s) x ({P}+{train_len}) with "
          f"gradient checkpointing")

    res = {}
    for depth in (1, 2):
        set_depth(model, depth, depth, all_layers, all_blocks)
        run_pd(model, 1, P, 8)  # warm-up: first-call costs stay out of the differences
        run_train(model, 1, P, 8)
        run_generate(model, 2, P, 2)
        r, timing = {}, {}
        r["gen"] = measure(lambda: timing.update(zip(("prefill", "decode"), run_generate(model, G, P, steps))))
        r["prefill"], r["decode"] = (timing["prefill"], r["gen"][1]), (timing["decode"], r["gen"][1])
        r["pd"] = measure(lambda: run_pd(model, pd_rows, P, pd_len), repeat=reps)
        r["train"] = measure(lambda: run_train(model, args.train_rows, P, train_len), repeat=reps)
        res[depth] = r
        print(f"  {depth} layer(s)/{depth} block(s): prefill {r['prefill'][0]:.2f} s, decode {r['decode'][0]:.2f} s "
              f"(+{r['gen'][1] / GIB:.2f} GiB), PD {r['pd'][0]:.2f} s (+{r['pd'][1] / GIB:.2f} GiB), "
              f"train {r['train'][0]:.2f} s (+{r['train'][1] / GIB:.2f} GiB)")
    set_depth(model, 2, 2, all_layers, all_blocks)

    def split(key, floor):
        """(per layer, fixed, per-layer peak-RSS growth); a difference below ``floor`` (what the
        layer's FLOPs take at this CPU's GEMM rate) is noise on a shared machine: use the floor."""
        per = res[2][key][0] - res[1][key][0]
        if per < floor:
            print(f"  note: {key}: measured per-layer {per:.2f} s < FLOP floor {floor:.2f} s (noise); using the floor")
            per = floor
        return per, max(0.0, res[1][key][0] - per), res[2][key][1] - res[1][key][1]

    # (i) generation: decode-only time = gen - prefill; per layer+block, fixed
    lp_bytes = layer_params() * 2
    dec_layer, dec_fixed, _ = split("decode", steps * lp_bytes / cpu_bw)
    pre_layer, pre_fixed, _ = split("prefill", layer_flops(G, P) / cpu_flops)
    pd_layer, pd_fixed, pd_mem_layer = split("pd", layer_flops(pd_rows, P + pd_len) / cpu_flops)
    tr_layer, tr_fixed, tr_mem_layer = split("train", 4 * layer_flops(args.train_rows, P + train_len) / cpu_flops)
    print("\nper text layer + vision block (2-layer minus 1-layer model), CPU, measured shape:")
    print(f"  generation: prefill {pre_layer:.2f} s, decode {dec_layer / steps * 1e3:.1f} ms/step "
          f"(fixed part {dec_fixed / steps * 1e3:.1f} ms/step: lm_head + embeddings)")
    print(f"  PD pass:    {pd_layer:.2f} s, +{pd_mem_layer / GIB:.2f} GiB peak  (fixed {pd_fixed:.2f} s)")
    print(f"  train step: {tr_layer:.2f} s, +{tr_mem_layer / GIB:.2f} GiB peak  (fixed {tr_fixed:.2f} s)")

    # --- extrapolate to the paper's shapes (FLOP scaling) and 28 layers, CPU seconds
    nl = PAPER_LAYERS  # each measured "layer" carries one vision block along (28 of the 32 blocks)

    def scale_layer(t, rows_m, len_m, rows_f, len_f):
        return t * layer_flops(rows_f, len_f) / layer_flops(rows_m, len_m)
    pd_layer_full = scale_layer(pd_layer, pd_rows, P + pd_len, G, P + L)
    tr_layer_full = scale_layer(tr_layer, args.train_rows, P + train_len, G, P + L)
    tr_fixed_full = tr_fixed * (head_flops(G, L) / head_flops(args.train_rows, train_len))
    pd_fixed_full = pd_fixed * G / pd_rows
    cpu = {
        "generate 1,024 tokens": (pre_layer + dec_layer * L / steps) * nl + pre_fixed + dec_fixed * L / steps,
        "PD pass, G rollouts": pd_layer_full * nl + pd_fixed_full,
        "training step": tr_layer_full * nl + tr_fixed_full,
    }
    gpu_ratio = args.gpu_tflops * 1e12 * args.gpu_util / cpu_flops
    bw_ratio = args.gpu_hbm_tbs * 1e12 * args.gpu_hbm_util / cpu_bw
    gen_decode_cpu = dec_layer * L / steps * nl + dec_fixed * L / steps
    gen_prefill_cpu = pre_layer * nl + pre_fixed
    gpu = {
        "generate 1,024 tokens": gen_prefill_cpu / gpu_ratio + gen_decode_cpu / bw_ratio,
        "PD pass, G rollouts": cpu["PD pass, G rollouts"] / gpu_ratio,
        "training step": cpu["training step"] / gpu_ratio,
    }
    # ZeRO-3 collectives per step: gather bf16 params for generation (TRL ds3_gather_for_generation), for the
    # PD forward, for training forward + recompute + backward; reduce-scatter bf16 grads
    param_bytes = 2 * n_full
    coll = param_bytes * (args.gpus - 1) / args.gpus / (args.link_gbs * 1e9)
    comm = {"generate 1,024 tokens": coll, "PD pass, G rollouts": coll, "training step": 4 * coll}

    # --- the authors' sampled reference vs ours (per GPU = per group; one prompt per GPU)
    per_row_tf = gpu["PD pass, G rollouts"] / G                       # one think row, prompt + 1,024
    short_row = per_row_tf * layer_flops(1, P + args.answer_len) / layer_flops(1, P + L)
    prompt_only = per_row_tf * layer_flops(1, P) / layer_flops(1, P + L)
    gen_short = gen_prefill_cpu / gpu_ratio + gen_decode_cpu / bw_ratio * args.answer_len / L
    ours_rows = max(1, round(args.correct_share * G))
    # ours: the prompt once (shared), the correct rollouts' completions on its cache, one r_ref row
    ours = prompt_only + (per_row_tf - prompt_only) * ours_rows + short_row + comm["PD pass, G rollouts"]
    # authors': G no-think samples generated, then all G think rows and all G no-think rows teacher-forced
    authors = gen_short + comm["generate 1,024 tokens"] + G * per_row_tf + G * short_row + comm["PD pass, G rollouts"]
    base = gpu["generate 1,024 tokens"] + comm["generate 1,024 tokens"] + gpu["training step"] + comm["training step"]

    # --- ZeRO-3 memory per GPU
    states = n_full * (2 + 2 + 12) / args.gpus
    kv = G * (P + L) * nl * 2 * PAPER_TEXT_ARCH["num_key_value_heads"] * 128 * 2
    boundaries = nl * G * (P + L) * PAPER_TEXT_ARCH["hidden_size"] * 2
    t = PAPER_TEXT_ARCH  # one layer's activations while it is recomputed (bf16, per token: q/k/v/o, norms, MLP)
    recompute = G * (P + L) * 2 * (6 * t["hidden_size"] + 2 * 512 + 3 * t["intermediate_size"])
    logits = G * L * PAPER_TEXT_ARCH["vocab_size"] * 2 + L * PAPER_TEXT_ARCH["vocab_size"] * 4
    mem_gen = states + param_bytes + kv
    mem_train = states + boundaries + recompute + logits + 2 * layer_params() * 2

    step = base + ours
    print(f"\nprojection to Qwen2.5-VL-7B-Instruct, 28 layers, one Stage-2 step, {args.gpus} GPUs under ZeRO-3")
    print("assumptions: one prompt per GPU, G = %d rollouts of %d tokens (the cap; worst case), prompt %d tokens;"
          % (G, L, P))
    print(f"  compute: GPU sustains {args.gpu_util:.0%} of {args.gpu_tflops:.0f} TFLOP/s bf16 = "
          f"{gpu_ratio:.0f}x this CPU's measured bf16 GEMM rate; decode is weight-streaming bound: "
          f"{args.gpu_hbm_util:.0%} of {args.gpu_hbm_tbs} TB/s = {bw_ratio:.0f}x this CPU's rate "
          "(kernel-launch overhead of eager decoding not modelled: a lower bound)")
    print(f"  shapes beyond the measured ones scaled by FLOPs (linear + causal attention); vision blocks "
          f"counted as measured (1 per layer up to 28; the other 4 of 32 are < 1% and left out)")
    print(f"  ZeRO-3: bf16 params gathered for generation, for the PD forward and 3x for training "
          f"(forward, recompute, backward) + one grad reduce-scatter, {args.link_gbs:.0f} GB/s per GPU: "
          f"{coll:.2f} s per full pass")
    print(f"  memory: params + grads (bf16) + Adam (fp32 master, m, v) = 16 B/param / {args.gpus}; gradient "
          f"checkpointing (layer inputs kept); bf16 logits of the completion + one fp32 row")
    print(f"  {'phase':<24}{'CPU s':>10}{'GPU s':>9}{'+ZeRO-3 comm':>14}")
    for k in cpu:
        print(f"  {k:<24}{cpu[k]:>10.0f}{gpu[k]:>9.2f}{comm[k]:>14.2f}")
    print(f"  step with our PD (correct share {args.correct_share:.0%} -> {ours_rows} rows + 1 reference row): "
          f"{step:.1f} s/step; {args.steps_total:,} steps = {step * args.steps_total / 3600:.1f} h "
          f"({step * args.steps_total / 3600 * args.gpus:.0f} GPU-hours)")
    print(f"  memory per GPU: states {states / GIB:.1f} GiB; generation peak {mem_gen / GIB:.1f} GiB (gathered "
          f"bf16 weights {param_bytes / GIB:.1f} + KV cache {kv / GIB:.1f}); training peak {mem_train / GIB:.1f} GiB "
          f"(layer inputs {boundaries / GIB:.1f} + one layer's recompute {recompute / GIB:.1f} + logits "
          f"{logits / GIB:.1f} + gathered layers)")
    print(f"  PD part of a step: ours {ours:.2f} s, authors' sampled reference {authors:.2f} s "
          f"(PD alone {authors / ours:.2f}x)")
    print(f"PROJECTED RATIO authors' sampled-reference PD step / ours at paper scale: "
          f"{(base + authors) / (base + ours):.2f}x (whole step; PD part alone {authors / ours:.2f}x)")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
