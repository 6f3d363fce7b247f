"""Probability-based scoring (Eq. 8: one forward pass, no generation) vs generate-and-parse scoring.

Same model (the tiny stand-in, or ``--model PATH``), same images (the embedded scoring set's
pictures), same batch size, timed in the same run after a warm-up pass. Prints images per second
for each and the ratio prob / numeric.

Generate-and-parse costs one decoding step per generated token, so the ratio depends on how
long the model's answer is. A trained model stops at its end-of-turn token; the random stand-in
rarely does, so it writes ``--max-new-tokens`` tokens: the benchmark therefore sweeps the
completion lengths that matter and reports the tokens actually generated:

* ``8``   ~ a bare no-think answer ``<answer>3.4</answer>`` plus end-of-turn;
* ``24``  the ``tiny`` profile's ``eval.max_new_tokens`` (a short think + answer);
* ``256`` a paper-like think (the paper allows 1,024 completion tokens).

    .venv/bin/python benchmarks/bench_scoring.py [--quick] [--images 32] [--batch-size 8] [--threads 2]
        [--lengths 8 24 256] [--model PATH]
"""
from __future__ import annotations

import argparse
import os
import time


def _images(n: int):
    """``n`` pictures of the embedded scoring set, built in a temporary folder (not the shared one)."""
    import tempfile

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.data.scoring_data import load_scoring_split
    from refine_iqa_lib.io import open_image

    with tempfile.TemporaryDirectory(prefix="bench_scoring_") as tmp:
        cfg = load_config("smoke", {"scoring.embedded_n_images": max(n, 24), "paths.work_dir": tmp})
        df = load_scoring_split(cfg, "koniq", split="all")
        return [open_image(p) for p in df["image"].head(n)]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "2")))
    ap.add_argument("--lengths", type=int, nargs="+", default=[8, 24, 256])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--model", default=None, help="a Qwen2.5-VL folder (default: the tiny stand-in)")
    ap.add_argument("--quick", action="store_true", help="8 images, lengths 8 and 64, 2 repeats (make bench)")
    args = ap.parse_args(argv)
    if args.quick:
        args.images, args.lengths, args.repeats = 8, [8, 64], 2

    import logging

    import torch

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.runs import resolve_model_path
    from refine_iqa_lib.method.scoring import score_images

    torch.set_num_threads(args.threads)
    logging.getLogger("refine_iqa_lib.method.scoring").setLevel(logging.ERROR)  # the random model's answers never parse
    path = args.model or resolve_model_path(load_config("smoke"))
    device = "cuda" if torch.cuda.is_available() else None
    model, processor = load_policy(path, dtype="bfloat16" if device else "float32", device=device)
    images = _images(args.images)
    tok = processor.tokenizer
    kw = dict(mode="no_think", batch_size=args.batch_size, progress=False)

    score_images(model, processor, images[: args.batch_size], method="prob", **kw)  # warm-up
    score_images(model, processor, images[: args.batch_size], method="numeric", max_new_tokens=4, **kw)
    runs = {"prob": lambda: score_images(model, processor, images, method="prob", **kw)}
    outputs: dict[int, list] = {}
    for n in args.lengths:
        def run(n=n):
            outputs[n] = score_images(model, processor, images, method="numeric", max_new_tokens=n, **kw)
        runs[n] = run
    best = {k: float("inf") for k in runs}
    for _ in range(args.repeats):  # interleaved, best of repeats (the CPU is shared)
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            best[k] = min(best[k], time.perf_counter() - t0)
    rate = {k: len(images) / t for k, t in best.items()}
    dev = torch.cuda.get_device_name() if device else f"CPU, {args.threads} thread(s)"
    print(f"model: {path}\ndevice: {dev}; {len(images)} images, batch {args.batch_size}, no-think prompt, "
          f"best of {args.repeats}")
    print(f"{'method':<34}{'tokens/img':>11}{'img/s':>10}{'prob / this':>13}")
    print(f"{'prob (Eq. 8, one forward pass)':<34}{0:>11}{rate['prob']:>10.1f}{1.0:>12.1f}x")
    for n in args.lengths:
        tokens = sum(len(tok(r["text"], add_special_tokens=False)["input_ids"]) for r in outputs[n]) / len(outputs[n])
        label = f"generate + parse (max {n} tokens)"
        print(f"{label:<34}{tokens:>11.1f}{rate[n]:>10.1f}{rate['prob'] / rate[n]:>12.1f}x")
    print("target: prob / generate >= 5x. The ratio grows with the completion length: a no-think answer "
          "(~8 tokens) is cheap to generate; a think of hundreds of tokens is not.")


if __name__ == "__main__":
    main()
