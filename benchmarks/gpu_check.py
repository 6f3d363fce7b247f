"""GPU check of the one code path: the smoke pipeline on one CUDA GPU with paper-scale launch settings.

Not part of ``make test`` (CI has no GPU). On a machine with one CUDA GPU::

    python benchmarks/gpu_check.py [--work-dir DIR] [--steps N]

What it runs, through the same library calls the notebooks make:

1. the perception build (smoke size), then the warm-up, Stage-1 and Stage-2 as ``accelerate launch``
   jobs with the GPU settings the paper profile uses (``launch.use_cpu=false``, bf16 weights and
   mixed precision, gradient checkpointing, the multi-GPU accelerate config with one process);
2. the same Stage-2 on CPU (fp32, ``--cpu``) from the same Stage-1 weights, as the baseline timed
   in the same run: it prints seconds per step on each and their ratio;
3. Eq. 8 scoring of the held-out set with the GPU-trained Stage-2 model, once on the GPU (bf16) and
   once on the CPU (fp32, ``CUDA_VISIBLE_DEVICES=""``), and how far the two sets of scores are apart.

It exits non-zero when a stage fails, a run has no finite loss, or GPU and CPU scores disagree
(SRCC between them below 0.95). The tiny stand-in is far too small for the GPU to be fast; the
step-time ratio shows the overhead of the GPU path, not a paper-scale speed-up.

**One Stage-2 step of the 7B-shaped model** (``--paper-step``, on its own; about 6-9 minutes of
one 80 GB GPU, every part under ``--timeout`` seconds)::

    python benchmarks/gpu_check.py --paper-step [--engines generate,vllm] [--steps 3] [--completion-len 256]

``models.paper_shaped_config`` (28 layers, Qwen2.5-VL-7B-Instruct's shapes) with random bf16
weights, built offline on the GPU and saved once (``--work-dir``/paper_shaped, 16.6 GB), with the
stand-in's processor whose tokenizer is grown to the 7B vocabulary (every sampled id decodes).
Each engine then runs in its own process: ``run_stage`` of Stage-2 with the ``single_gpu`` recipe
(LoRA r = 64, bf16, gradient checkpointing, the profile's vLLM colocate share), one prompt x G = 8
rollouts per step, completions of ``--completion-len`` tokens (random weights never stop early),
448 x 336 pictures (192 visual tokens; a labels file written here, read as ``scoring.custom``), PD
teacher-forced for **every** rollout (``pd_raw_every = 1``: random rollouts are never correct, and
gated PD would cost nothing). Printed per engine: s/step (median after the first step), the
generation and PD seconds within it (PD's share), the peak memory torch allocated and the peak of
the whole device (sampled every 50 ms). ``--engines vllm`` needs vLLM importable there (else that
engine is reported as skipped). ``--rehearse`` runs the same path on CPU with a 1-layer copy in
fp32, G = 2 and 8-token completions: it checks the code, not the speed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GPU = ["launch.use_cpu=false", "launch.accelerate_config=ddp", "launch.num_processes=1", "launch.bf16=true",
       "launch.gradient_checkpointing=true", "model.dtype=bfloat16"]
CPU = ["launch.use_cpu=true", "launch.accelerate_config=cpu", "launch.num_processes=1", "launch.bf16=false",
       "launch.gradient_checkpointing=false", "model.dtype=float32"]


def _rows(run_dir: Path) -> list[dict]:
    from refine_iqa_lib.io import read_jsonl

    path = run_dir / "metrics.jsonl"
    return [r for r in read_jsonl(path) if r.get("kind") == "step"] if path.is_file() else []


def _seconds_per_step(run_dir: Path) -> float:
    rows = [r for r in _rows(run_dir) if isinstance(r.get("wall_time_s"), (int, float))]
    if len(rows) < 2:
        return float("nan")
    # skip the first step (compilation, allocator warm-up)
    return (rows[-1]["wall_time_s"] - rows[0]["wall_time_s"]) / (rows[-1]["step"] - rows[0]["step"])


def _check_run(run_dir: Path, what: str) -> list[str]:
    problems = []
    if not (run_dir / "final").is_dir():
        problems.append(f"{what}: no final/ in {run_dir}")
    losses = [r.get("loss") for r in _rows(run_dir) if r.get("loss") is not None]
    if run_dir.name != "warmup" and not any(isinstance(v, (int, float)) and math.isfinite(v) for v in losses):
        problems.append(f"{what}: no finite loss in {run_dir / 'metrics.jsonl'}")
    return problems


SCORE_SNIPPET = """
import json, sys
from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import scoring_eval as ev
cfg = load_config('smoke', json.loads(sys.argv[1]))
recs = ev.evaluate_scoring(cfg, model='s2', modes=['no_think'], methods=['prob'])
print('RECORDS ' + json.dumps([{k: r.get(k) for k in ('dataset', 'srcc', 'plcc', 'n')} for r in recs]))
"""


def _score(overrides: list[str], cpu_only: bool) -> tuple[list[dict], float]:
    env = dict(os.environ)
    if cpu_only:
        env["CUDA_VISIBLE_DEVICES"] = ""
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", SCORE_SNIPPET, json.dumps(overrides)], cwd=ROOT, env=env,
                         capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if out.returncode != 0:
        raise RuntimeError(f"scoring ({'cpu' if cpu_only else 'gpu'}) failed:\n{out.stderr[-3000:]}")
    line = [ln for ln in out.stdout.splitlines() if ln.startswith("RECORDS ")][-1]
    return json.loads(line[len("RECORDS "):]), dt


def _predictions(work: Path) -> dict[str, float]:
    """Per-image Eq. 8 scores the last evaluation wrote (``<work_dir>/eval/scoring/s2__*no_think*.csv``)."""
    import pandas as pd

    preds: dict[str, float] = {}
    for path in sorted((work / "eval" / "scoring").glob("s2__*__no_think__*.csv")):
        df = pd.read_csv(path)
        preds.update({f"{path.stem}/{k}": float(v) for k, v in zip(df["image"].astype(str), df["pred"])})
    return preds


# ------------------------------------------------------------------------ one 7B-shaped Stage-2 step

GIB = 1024 ** 3
#: A KonIQ-like 4:3 picture under the paper's 151,200-pixel cap: 32 x 24 patches, 192 visual tokens.
PAPER_PICTURE = (448, 336)
#: What ``--paper-step`` prints a line for, in order.
ENGINES = ("generate", "vllm")
STEP_MARK = "PAPERSTEP "


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", default=str(ROOT / "results" / "work" / "gpu_check"))
    ap.add_argument("--steps", type=int, default=None,
                    help="training steps per run (default: 12 for the smoke check, 3 for --paper-step: "
                         "the first is a warm-up and is not timed)")
    ap.add_argument("--paper-step", action="store_true", help="time one Stage-2 step of the 7B-shaped model only")
    ap.add_argument("--engines", default="generate,vllm", help="--paper-step: generate, vllm or both")
    ap.add_argument("--completion-len", type=int, default=256, help="--paper-step: tokens per completion")
    ap.add_argument("--generations", type=int, default=8, help="--paper-step: G, rollouts of the one prompt")
    ap.add_argument("--timeout", type=int, default=300, help="--paper-step: seconds each part may take")
    ap.add_argument("--rehearse", action="store_true",
                    help="--paper-step on CPU with a 1-layer copy and 8-token completions (checks the code path)")
    ap.add_argument("--worker", choices=("prepare", *ENGINES), help=argparse.SUPPRESS)
    return ap


def paper_step_settings(args) -> dict:
    """Depth, device and sizes of a ``--paper-step`` run (``--rehearse``: 1 layer and 1 vision block
    on CPU in fp32, G = 2, 8-token completions, 2 steps).

    >>> s = paper_step_settings(build_parser().parse_args(["--paper-step"]))
    >>> s["layers"], s["vision_depth"], s["device"], s["completion_len"], s["generations"], s["steps"]
    (None, None, 'cuda', 256, 8, 3)
    """
    if args.rehearse:
        return {"layers": 1, "vision_depth": 1, "device": "cpu", "completion_len": min(8, args.completion_len),
                "generations": min(2, args.generations), "steps": args.steps or 2}
    return {"layers": None, "vision_depth": None, "device": "cuda", "completion_len": args.completion_len,
            "generations": args.generations, "steps": args.steps or 3}


def paper_processor(min_pixels: int = 3136, max_pixels: int = 151200):
    """The stand-in's processor (chat template, Qwen2.5-VL image processor at the paper's pixel
    bounds) with its tokenizer grown to the 7B vocabulary: ids past the stand-in's own decode as
    ``<|tN|>``, so every id a random 7B-shaped model samples decodes (transformers and vLLM alike)."""
    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.models import PAPER_TEXT_ARCH, load_processor
    from refine_iqa_lib.runs import resolve_model_path

    processor = load_processor(resolve_model_path(load_config("smoke")), min_pixels=min_pixels, max_pixels=max_pixels)
    tok = processor.tokenizer
    tok.add_tokens([f"<|t{i}|>" for i in range(len(tok), PAPER_TEXT_ARCH["vocab_size"])])
    return processor


def paper_config(processor, layers: int | None = None, vision_depth: int | None = None):
    """``models.paper_shaped_config`` with the special-token ids of ``processor``'s tokenizer."""
    from refine_iqa_lib.models import paper_shaped_config

    tid = processor.tokenizer.convert_tokens_to_ids
    config = paper_shaped_config(layers, vision_depth)
    ids = {"image_token_id": tid("<|image_pad|>"), "video_token_id": tid("<|video_pad|>"),
           "vision_start_token_id": tid("<|vision_start|>"), "vision_end_token_id": tid("<|vision_end|>"),
           "bos_token_id": tid("<|endoftext|>"), "eos_token_id": tid("<|im_end|>"), "pad_token_id": tid("<|endoftext|>")}
    for k, v in ids.items():
        setattr(config, k, v)
        if k in ("bos_token_id", "eos_token_id", "pad_token_id"):
            setattr(config.text_config, k, v)
    return config


def build_paper_folder(folder: Path, layers: int | None, vision_depth: int | None, device: str) -> Path:
    """The 7B-shaped model folder (random bf16 weights, seed 0), built on ``device`` and saved once;
    a folder whose ``refine_bench.json`` names the same shape is reused."""
    import torch
    from transformers import Qwen2_5_VLForConditionalGeneration

    from refine_iqa_lib.io import read_json, write_json

    key = {"layers": layers, "vision_depth": vision_depth, "recipe": 1}
    marker = folder / "refine_bench.json"
    if marker.is_file() and read_json(marker) == key:
        return folder
    processor = paper_processor()
    config = paper_config(processor, layers, vision_depth)
    torch.manual_seed(0)
    prev = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device(device):
            model = Qwen2_5_VLForConditionalGeneration(config)
    finally:
        torch.set_default_dtype(prev)
    g = model.generation_config
    g.bos_token_id, g.eos_token_id, g.pad_token_id = config.bos_token_id, config.eos_token_id, config.pad_token_id
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(str(folder), max_shard_size="5GB")
    processor.save_pretrained(str(folder))
    write_json(marker, key)
    return folder


def write_pictures(folder: Path, n: int = 8) -> Path:
    """``n`` 448 x 336 pictures (smooth random colour fields with noise) and their labels file."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    w, h = PAPER_PICTURE
    rows = ["image,mos"]
    for i in range(n):
        yy, xx = np.mgrid[0:h, 0:w] / max(w, h)
        base = np.stack([np.sin(6 * xx * rng.uniform(0.5, 2) + c) for c in rng.uniform(0, 6, 3)], -1)
        pixels = np.clip(127 + 90 * base + rng.normal(0, 12, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"p{i}.png")
        rows.append(f"p{i}.png,{rng.uniform(1, 5):.2f}")
    labels = folder / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return labels


def paper_step_overrides(args, engine: str, folder: Path, labels: Path) -> dict:
    """The ``single_gpu`` profile's overrides of one timed run: this folder, one prompt x G rollouts
    per optimizer step, PD on every rollout, the pictures of :func:`write_pictures`, no validation,
    checkpoints or trackers; ``engine`` ``vllm`` = TRL's colocate mode (stops if vLLM is missing)."""
    s = paper_step_settings(args)
    work = Path(args.work_dir)
    out = {"model.path": str(folder), "stage2.init_path": str(folder), "paths.work_dir": str(work / "paper_step"),
           "scoring.train": ["bench"], "scoring.eval": ["bench"],
           "scoring.custom": {"bench": {"labels": str(labels), "range": [1, 5]}},
           "stage2.max_steps": s["steps"], "stage2.num_generations": s["generations"], "stage2.prompts_per_step": 1,
           "stage2.gradient_accumulation_steps": 1, "stage2.max_completion_length": s["completion_len"],
           "stage2.save_steps": 100000, "stage2.eval_every": 0, "stage2.keep_best": False,
           "stage2.pd_raw_every": 1, "stage2.no_think_every": 0,
           "launch.use_vllm": engine == "vllm", "launch.vllm_required": True, "launch.report_to": ["none"]}
    if s["device"] == "cpu":
        out.update({"launch.use_cpu": True, "launch.bf16": False, "launch.accelerate_config": "cpu",
                    "model.dtype": "float32"})
    return out


class _Timers:
    """Seconds spent in generation and in the PD reward (CUDA-synchronised), by wrapping the trainer's
    generation and PDReward's call in this process only."""

    def __init__(self):
        self.total = {"generation": 0.0, "pd": 0.0}

    def wrap(self, owner, name: str, what: str) -> None:
        import functools

        import torch

        inner = getattr(owner, name)
        timers = self

        @functools.wraps(inner)
        def timed(*a, **k):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t = time.perf_counter()
            try:
                return inner(*a, **k)
            finally:
                if torch.cuda.is_available():
                    torch.cuda.synchronize()
                timers.total[what] += time.perf_counter() - t

        setattr(owner, name, timed)


def _step_timer(timers: _Timers):
    import threading

    import torch
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        """Per optimizer step: seconds, generation and PD seconds, peak allocated and peak device
        memory (a thread samples ``cudaMemGetInfo`` every 50 ms)."""

        def __init__(self):
            self.rows, self.peak_device = [], 0
            self._stop = threading.Event()
            self._thread = None

        def _sample(self):
            while not self._stop.is_set():
                free, total = torch.cuda.mem_get_info()
                self.peak_device = max(self.peak_device, total - free)
                time.sleep(0.05)

        def on_train_begin(self, args, state, control, **kw):
            if torch.cuda.is_available():
                self._thread = threading.Thread(target=self._sample, daemon=True)
                self._thread.start()

        def on_step_begin(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
                self.peak_device = 0
            self._start = (time.perf_counter(), dict(timers.total))

        def on_step_end(self, args, state, control, **kw):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            t0, before = self._start
            row = {"step": int(state.global_step), "seconds": time.perf_counter() - t0}
            row.update({k: timers.total[k] - before[k] for k in timers.total})
            if torch.cuda.is_available():
                row["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GIB
                row["peak_device_gib"] = self.peak_device / GIB
            self.rows.append(row)

        def on_train_end(self, args, state, control, **kw):
            self._stop.set()

    return StepTimer()


def paper_step_worker(args) -> dict:
    """One engine's timed run (in its own process): ``{"engine", "steps": [per-step rows], ...}``."""
    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.method.teacher_forcing import PDReward
    from refine_iqa_lib.training.run import run_stage
    from refine_iqa_lib.training.trainer import RefineGRPOTrainer

    s = paper_step_settings(args)
    work = Path(args.work_dir)
    folder = work / ("paper_shaped_rehearsal" if args.rehearse else "paper_shaped")
    if args.worker == "prepare":
        t0 = time.perf_counter()
        build_paper_folder(folder, s["layers"], s["vision_depth"], s["device"])
        return {"engine": "prepare", "seconds": time.perf_counter() - t0, "folder": str(folder)}
    labels = write_pictures(work / "paper_step_pictures")
    cfg = load_config("single_gpu", paper_step_overrides(args, args.worker, folder, labels))
    timers = _Timers()
    timers.wrap(RefineGRPOTrainer, "_generate_single_turn", "generation")
    timers.wrap(PDReward, "__call__", "pd")
    timer = _step_timer(timers)
    t0 = time.perf_counter()
    run_stage(cfg, "2", run_dir=work / "paper_step" / f"stage2_{args.worker}", resume=False, callbacks=[timer])
    return {"engine": args.worker, "steps": timer.rows, "seconds": time.perf_counter() - t0}


def summarise_steps(rows: list[dict]) -> dict:
    """Medians over the timed steps (all but the first, the warm-up; the only one if there is one).

    >>> r = summarise_steps([{"seconds": 9.0, "generation": 8.0, "pd": 0.5},
    ...                      {"seconds": 4.0, "generation": 3.0, "pd": 0.4}, {"seconds": 6.0, "generation": 5.0, "pd": 0.6}])
    >>> r["s_per_step"], r["generation"], r["pd"], round(r["pd_share"], 3), r["timed_steps"]
    (5.0, 4.0, 0.5, 0.1, 2)
    """
    import statistics

    timed = rows[1:] or rows
    med = {k: statistics.median(r[k] for r in timed) for k in ("seconds", "generation", "pd")}
    out = {"s_per_step": med["seconds"], "generation": med["generation"], "pd": med["pd"],
           "pd_share": med["pd"] / med["seconds"] if med["seconds"] else float("nan"), "timed_steps": len(timed)}
    for k in ("peak_allocated_gib", "peak_device_gib"):
        if all(k in r for r in rows):
            out[k] = max(r[k] for r in rows)
    return out


def _run_worker(args, worker: str) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--paper-step", "--worker", worker,
           "--work-dir", str(args.work_dir), "--completion-len", str(args.completion_len),
           "--generations", str(args.generations)] + (["--steps", str(args.steps)] if args.steps else []) \
        + (["--rehearse"] if args.rehearse else [])
    try:
        out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {"engine": worker, "error": f"did not finish within --timeout {args.timeout} s"}
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith(STEP_MARK)]
    if out.returncode != 0 or not lines:
        tail = (out.stderr or out.stdout).strip().splitlines()[-25:]
        return {"engine": worker, "error": f"exit code {out.returncode}", "log": tail}
    return json.loads(lines[-1][len(STEP_MARK):])


def paper_step(args) -> int:
    """Prepare the 7B-shaped folder, then time one Stage-2 step with each engine (own processes)."""
    import torch

    from refine_iqa_lib.vllm_engine import vllm_unavailable_reason

    s = paper_step_settings(args)
    if s["device"] == "cuda" and not torch.cuda.is_available():
        print("gpu_check --paper-step: no CUDA GPU visible (use --rehearse to check the code path on CPU)",
              file=sys.stderr)
        return 2
    engines = [e.strip() for e in args.engines.split(",") if e.strip()]
    unknown = sorted(set(engines) - set(ENGINES))
    if unknown:
        print(f"gpu_check: --engines {unknown}: expected generate and/or vllm", file=sys.stderr)
        return 2
    if s["device"] == "cuda":
        print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
              f"{torch.cuda.get_device_properties(0).total_memory / GIB:.1f} GiB", flush=True)
    prep = _run_worker(args, "prepare")
    if "error" in prep:
        print(f"PROBLEM preparing the 7B-shaped folder: {prep['error']}\n" + "\n".join(prep.get("log", [])))
        return 1
    print(f"7B-shaped folder ready in {prep['seconds']:.0f} s: {prep['folder']}", flush=True)
    results, problems = {}, []
    for engine in engines:
        why = vllm_unavailable_reason(import_check=False) if engine == "vllm" else None
        if why:
            results[engine] = {"skipped": why}
            continue
        got = _run_worker(args, engine)
        if "error" in got:
            problems.append(f"{engine}: {got['error']}")
            print(f"PROBLEM {engine}: {got['error']}\n" + "\n".join(got.get("log", [])), flush=True)
            continue
        results[engine] = {**summarise_steps(got["steps"]), "run_seconds": got["seconds"], "steps": got["steps"]}
        print(f"{engine}: {json.dumps(results[engine])}", flush=True)
    shape = "1-layer rehearsal copy, CPU, fp32" if args.rehearse else "28 layers, 8.29 B parameters, bf16"
    print(f"\n== one Stage-2 step, 7B-shaped ({shape}), random weights, LoRA r=64 (single_gpu), "
          f"G = {s['generations']}, {s['completion_len']}-token completions, one 448x336 picture, PD on every "
          "rollout ==")
    print(f"{'engine':10s} {'s/step':>8s} {'generation':>11s} {'PD':>7s} {'PD share':>9s} "
          f"{'peak alloc GiB':>15s} {'peak device GiB':>16s}")
    for engine in engines:
        r = results.get(engine)
        if r is None:
            print(f"{engine:10s} failed (see PROBLEM above)")
        elif "skipped" in r:
            print(f"{engine:10s} skipped: {r['skipped']}")
        else:
            print(f"{engine:10s} {r['s_per_step']:8.2f} {r['generation']:11.2f} {r['pd']:7.2f} {r['pd_share']:9.1%} "
                  f"{r.get('peak_allocated_gib', float('nan')):15.1f} {r.get('peak_device_gib', float('nan')):16.1f}")
    print("(medians over the steps after the first; PD forced for all rollouts, an upper bound of the gated PD)")
    return 1 if problems else 0


def main(argv: list[str] | None = None) -> int:
    import torch

    args = build_parser().parse_args(argv)
    if args.worker:
        print(STEP_MARK + json.dumps(paper_step_worker(args)), flush=True)
        return 0
    if args.paper_step:
        return paper_step(args)

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.data.build import build_perception_dataset
    from refine_iqa_lib.training.launch import run_stage_subprocess

    args.steps = args.steps or 12
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU visible; nothing to check", file=sys.stderr)
        return 2
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
          f"bf16 supported: {torch.cuda.is_bf16_supported()}", flush=True)
    import transformers
    import trl

    print(f"transformers {transformers.__version__}, trl {trl.__version__}", flush=True)
    work = Path(args.work_dir)
    base = [f"paths.work_dir={work}", f"stage1.max_steps={args.steps}", f"stage2.max_steps={args.steps}",
            "stage1.save_steps=1000", "stage2.save_steps=1000"]
    problems: list[str] = []
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    build_perception_dataset(load_config("smoke", base))
    timings["perception build"] = time.perf_counter() - t0
    gpu_cfg = load_config("smoke", base + GPU)
    for stage, name in (("warmup", "warmup"), ("1", "stage1"), ("2", "stage2")):
        t0 = time.perf_counter()
        run_dir = run_stage_subprocess(gpu_cfg, stage, resume=False)
        timings[f"{name} (gpu, launch included)"] = time.perf_counter() - t0
        problems += _check_run(run_dir, f"{name} on GPU")

    stage1_final = work / "runs" / "stage1" / "final"
    cpu_cfg = load_config("smoke", base + CPU + [f"stage2.init_path={stage1_final}"])
    cpu_run = run_stage_subprocess(cpu_cfg, "2", run_dir=work / "runs" / "stage2_cpu", resume=False)
    problems += _check_run(cpu_run, "stage2 on CPU")
    gpu_s = _seconds_per_step(work / "runs" / "stage2")
    cpu_s = _seconds_per_step(cpu_run)

    gpu_recs, gpu_t = _score(base + GPU, cpu_only=False)
    gpu_preds = _predictions(work)
    cpu_recs, cpu_t = _score(base + GPU, cpu_only=True)
    cpu_preds = _predictions(work)

    print("\n== timings ==")
    for k, v in timings.items():
        print(f"{k:36s} {v:8.1f} s")
    print(f"Stage-2 s/step: GPU {gpu_s:.3f}, CPU {cpu_s:.3f}; GPU/CPU ratio {gpu_s / cpu_s:.2f} "
          f"(tiny 4M-parameter stand-in: the GPU cannot pay off at this size)")
    print(f"Eq. 8 scoring of the held-out set: GPU bf16 {gpu_t:.1f} s, CPU fp32 {cpu_t:.1f} s (process start included)")
    print("\n== Eq. 8 scoring, GPU bf16 vs CPU fp32 ==")
    for g, c in zip(gpu_recs, cpu_recs):
        print(f"{g['dataset']}: SRCC gpu {g['srcc']:.4f} cpu {c['srcc']:.4f}; PLCC gpu {g['plcc']:.4f} "
              f"cpu {c['plcc']:.4f}; n={g['n']}")
    common = sorted(set(gpu_preds) & set(cpu_preds))
    if len(common) >= 3:
        import numpy as np
        from scipy.stats import spearmanr

        a = np.array([gpu_preds[k] for k in common])
        b = np.array([cpu_preds[k] for k in common])
        rho = float(spearmanr(a, b).statistic) if np.ptp(a) > 0 and np.ptp(b) > 0 else float("nan")
        print(f"per-image scores: n={len(common)}, max |gpu-cpu| {np.abs(a - b).max():.4f}, "
              f"mean {np.abs(a - b).mean():.4f}, SRCC(gpu, cpu) {rho:.4f}")
        if not (rho >= 0.95 or np.abs(a - b).max() < 0.05):
            problems.append(f"GPU and CPU Eq. 8 scores disagree (SRCC {rho:.3f}, max diff {np.abs(a - b).max():.3f})")
    else:
        print(f"per-image scores: only {len(common)} matched between runs; compared the records only")
        for g, c in zip(gpu_recs, cpu_recs):
            if abs(g["srcc"] - c["srcc"]) > 0.1:
                problems.append(f"{g['dataset']}: SRCC gpu {g['srcc']:.3f} vs cpu {c['srcc']:.3f}")
    print("\n== result ==")
    print("\n".join(f"PROBLEM {p}" for p in problems) or "all GPU checks passed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
