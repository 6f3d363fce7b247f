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


def main(argv: list[str] | None = None) -> int:
    import torch

    from refine_iqa_lib.config import load_config
    from refine_iqa_lib.data.build import build_perception_dataset
    from refine_iqa_lib.training.launch import run_stage_subprocess

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--work-dir", default=str(ROOT / "results" / "work" / "gpu_check"))
    ap.add_argument("--steps", type=int, default=12, help="Stage-1 and Stage-2 steps (each device)")
    args = ap.parse_args(argv)
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
