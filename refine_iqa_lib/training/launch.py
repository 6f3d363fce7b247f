"""Launch training stages as ``accelerate`` jobs, from a notebook or a shell.

The same command serves both scales; only the accelerate config and the profile differ::

    # CPU, one process (smoke / tiny)
    accelerate launch --config_file refine_iqa_lib/configs/accelerate/cpu.yaml \\
        -m refine_iqa_lib.training.cli --stage 2 --profile <resolved.yaml>
    # paper: 8 GPUs, DeepSpeed ZeRO-3
    accelerate launch --config_file refine_iqa_lib/configs/accelerate/zero3.yaml --num_processes 8 \\
        -m refine_iqa_lib.training.cli --stage 2 --profile paper

Several CPU processes are started with ``torchrun --nproc_per_node N`` (gloo), which is what
accelerate cannot do on CPU. vLLM generation goes through TRL (``launch.use_vllm``): colocate
mode needs nothing else; server mode needs ``trl vllm-serve`` running first (printed by
``--dry-run``).

CLI: ``python -m refine_iqa_lib.training.launch --stage {warmup,1,2} --profile P [--set k=v] [--dry-run]``.
"""
from __future__ import annotations

import argparse
import logging
import os
import shlex
import subprocess
import sys
from pathlib import Path

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.config import Config, ConfigError, accelerate_config_path, load_config, save_config
from refine_iqa_lib.data.iqa import DATASETS
from refine_iqa_lib.models import REQUIRED_FILES
from refine_iqa_lib.runs import FINAL_MARKER, STAGES, check_stage, default_run_dir, is_complete, uses_warmup
from refine_iqa_lib.training.run import stage_settings

log = logging.getLogger(__name__)


def build_command(cfg: Config, stage, run_dir: str | os.PathLike | None = None,
                  config_file: str | os.PathLike | None = None, resume: bool = True,
                  threads: int | None = None) -> list[str]:
    """The exact command that runs ``stage`` for ``cfg``.

    ``config_file`` is the resolved config the job reads (written by :func:`run_stage_subprocess`);
    without it the profile name is passed (its overrides then must be given again). ``threads``:
    CPU threads per process (accelerate's ``--num_cpu_threads_per_process``; CPU runs only).

    >>> from refine_iqa_lib.config import load_config
    >>> cmd = build_command(load_config("smoke"), "2", threads=1)
    >>> cmd[cmd.index("--num_cpu_threads_per_process") + 1], "--cpu" in cmd
    ('1', True)
    """
    stage = check_stage(stage)
    launch = cfg.launch
    profile_arg = str(config_file) if config_file else cfg.profile
    train_args = ["-m", "refine_iqa_lib.training.cli", "--stage", stage, "--profile", profile_arg]
    if run_dir is not None:
        train_args += ["--run-dir", str(run_dir)]
    train_args.append("--resume" if resume else "--no-resume")
    if launch.use_cpu and launch.num_processes > 1:
        return ["torchrun", "--standalone", f"--nproc_per_node={launch.num_processes}", *train_args]
    cmd = [_accelerate_executable(), "launch", "--config_file",
           str(accelerate_config_path(launch.accelerate_config)), "--num_processes", str(launch.num_processes)]
    if launch.use_cpu:
        cmd.append("--cpu")
        if threads:
            cmd += ["--num_cpu_threads_per_process", str(int(threads))]
    return cmd + train_args


def cpu_cores() -> int:
    """CPU cores this process may use (its affinity mask where the OS has one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - macOS / Windows
        return max(1, os.cpu_count() or 1)


def _accelerate_executable() -> str:
    """``accelerate`` from this environment (so a notebook's kernel and the job agree)."""
    exe = Path(sys.executable).parent / "accelerate"
    return str(exe) if exe.is_file() else "accelerate"


def vllm_server_command(cfg: Config, model_path: str) -> list[str] | None:
    """The ``trl vllm-serve`` command to start first when ``launch.vllm_mode == "server"``."""
    if not (cfg.launch.use_vllm and cfg.launch.vllm_mode == "server"):
        return None
    return ["trl", "vllm-serve", "--model", str(model_path)]


def run_stage_subprocess(cfg: Config, stage, run_dir: str | os.PathLike | None = None,
                         overrides: list[str] | dict | None = None, resume: bool = True,
                         dry_run: bool = False, log_file: str | os.PathLike | None = None,
                         label: str | None = None, threads: int | None = None) -> Path:
    """Run one stage in a child process and stream its output (notebooks call this).

    The resolved config (``cfg`` plus ``overrides``) is written next to the run folder and passed
    to the job, so the child sees exactly the notebook's settings. Returns the run folder. A
    failing job raises ``RuntimeError`` with the exit code and the log's last lines.
    ``label`` prefixes every streamed line (runs started together by :func:`run_concurrently`);
    ``threads`` caps the job's CPU threads (``OMP_NUM_THREADS`` and accelerate's flag).
    A finished run (``final/refine_final.json``) with ``resume`` is returned without starting a
    child: the child would only find the marker and stop (the check of
    :func:`refine_iqa_lib.training.run.run_stage`), after the 8-9 s an ``accelerate launch`` takes
    to import the stack; ``resume=False`` always starts one (it retrains).
    The child's lines are streamed through the library's logger as they come (the command line
    shows them on the terminal); a failed child's ``RuntimeError`` repeats its last error line
    (:func:`last_error_line`) and names the log file, which holds every line.
    """
    stage = check_stage(stage)
    cfg = load_config(cfg, overrides) if overrides else cfg
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg, stage)
    prefix = f"[{label}] " if label else ""
    if dry_run:
        log.info("%s$ %s", prefix, shlex.join(build_command(cfg, stage, run_dir, None, resume, threads)))
        log.info("# %s\n# resolved config:\n%s", stage_settings(cfg, stage), cfg.to_yaml())
        return run_dir
    if resume and is_complete(run_dir):
        log.info("%s[train] stage %s: %s is already complete (final/%s); nothing to do",
                 prefix, stage, run_dir, FINAL_MARKER)
        return run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = save_config(cfg, run_dir.parent / f"{run_dir.name}.launch.yaml")
    cmd = build_command(cfg, stage, run_dir, resolved, resume, threads)
    log.info("%s$ %s", prefix, shlex.join(cmd))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5")}
    if threads:
        env.update(OMP_NUM_THREADS=str(int(threads)), MKL_NUM_THREADS=str(int(threads)))
    log_path = Path(log_file) if log_file else run_dir.parent / f"{run_dir.name}.log"
    tail: list[str] = []                 # the last lines, searched for the error line of a failed child
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                          bufsize=1) as proc, log_path.open("a", encoding="utf-8") as logfile:
        assert proc.stdout is not None
        for line in proc.stdout:
            logfile.write(line)
            tail = (tail + [line.rstrip()])[-200:]
            if _worth_showing(line):
                log.info("%s%s", prefix, line.rstrip("\n"))
        code = proc.wait()
    if code != 0:
        why = last_error_line(tail)
        raise RuntimeError(f"stage {stage} failed (exit code {code}){f': {why}' if why else ''}; log: {log_path}")
    return run_dir


def run_concurrently(cfg: Config, jobs: list[dict], parallel: int | None = None) -> list[Path]:
    """Run independent stage jobs, at most ``parallel`` at once (default ``launch.parallel_runs``).

    Each job is a dict of :func:`run_stage_subprocess` keyword arguments (``stage``, ``run_dir``,
    ``overrides``, ...) plus a ``label`` that prefixes its streamed lines. On CPU the cores are
    split between the jobs running together: the stand-in is too small for a second thread to
    help one job much (on 2 cores: 1.23 s per Stage-2 step with one thread, 0.80 with two), so two
    one-thread jobs side by side finish more steps per second (0.60 s per step, measured). On GPUs
    every job needs all of them, so jobs always run one after another there. All jobs run even
    when one fails; then a ``RuntimeError`` names every failed job. Returns the run folders in
    the order of ``jobs``.
    """
    from concurrent.futures import ThreadPoolExecutor

    n = max(1, int(parallel if parallel is not None else cfg.launch.parallel_runs))
    if not cfg.launch.use_cpu or len(jobs) < 2:
        n = 1
    threads = max(1, cpu_cores() // min(n, len(jobs))) if n > 1 else None
    if n > 1:
        log.info("running %d jobs, %d at a time, %d CPU thread(s) each", len(jobs), n, threads)

    def one(job: dict) -> Path:
        kwargs = {k: v for k, v in job.items() if k != "stage"}
        return run_stage_subprocess(cfg, job["stage"], threads=threads, **kwargs)

    with ThreadPoolExecutor(max_workers=n) as pool:
        futures = [pool.submit(one, job) for job in jobs]
    failed = [(job.get("label") or str(job.get("run_dir")), f.exception()) for job, f in zip(jobs, futures)
              if f.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} of {len(jobs)} jobs failed:\n" +
                           "\n".join(f"- {name}: {err}" for name, err in failed))
    return [f.result() for f in futures]


#: Exceptions a launcher raises about its child (the child's own error comes before them).
_LAUNCHER_ERRORS = ("CalledProcessError", "ChildFailedError")


def last_error_line(lines: list[str]) -> str | None:
    """The line that says why a child failed: its last ``error: ...`` line (the library's command
    lines print their errors so; the prefix is dropped), else the last exception line of a
    traceback that is not the launcher's own (accelerate's ``CalledProcessError``, torchrun's
    ``ChildFailedError``), else the last non-blank line; ``None`` for no output.

    >>> last_error_line(["step 3", "error: warm-up output not found; run ... first",
    ...                  "Traceback (most recent call last):",
    ...                  "subprocess.CalledProcessError: Command '[...]' returned non-zero exit status 1."])
    'warm-up output not found; run ... first'
    >>> last_error_line(["Traceback (most recent call last):", '  File "x.py", line 1', "ValueError: bad box"])
    'ValueError: bad box'
    """
    import re

    for line in reversed(lines):
        if line.startswith("error: "):
            return line.removeprefix("error: ").strip()
    pattern = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b")
    for line in reversed(lines):
        if pattern.match(line) and not any(name in line.split(":", 1)[0] for name in _LAUNCHER_ERRORS):
            return line.strip()
    return next((line.strip() for line in reversed(lines) if line.strip()), None)


def _worth_showing(line: str) -> bool:
    """Drop blank lines and the noisiest library chatter from the streamed log (it stays in the
    log file); blank lines would show as bare ``[label]`` prefixes when runs share one output.

    >>> _worth_showing("[stage2] step 20/250: reward 1.2"), _worth_showing("   "), _worth_showing("Loading weights: 9%")
    (True, False, False)
    """
    noisy = ("Loading weights", "Writing model shards", "[transformers]")
    return bool(line.strip()) and not any(n in line for n in noisy)


def pipeline_plan(cfg: Config) -> list[dict]:
    """Every step of the pipeline with the inputs it needs, what is missing, and its command."""
    steps = []

    def add(name, description, problems, command=None):
        steps.append({"name": name, "description": description, "problems": problems,
                      "command": shlex.join(command) if command else None})

    # model
    model_problems = []
    if cfg.model.path != "tiny":
        mp = cfg.resolve(cfg.model.path)
        if not mp.is_dir():
            model_problems.append(f"{mp}: model folder not found (put Qwen2.5-VL-7B-Instruct here or set model.path)")
        else:
            model_problems += [f"{mp / f}: missing" for f in REQUIRED_FILES if not (mp / f).is_file()]
            if not any(mp.glob("*.safetensors")):
                model_problems.append(f"{mp}: no *.safetensors weights")
    add("model", f"policy {cfg.model.path}", model_problems)

    # perception sources
    per = cfg.perception
    per_problems = []
    if per.source != "embedded":
        for label, p in (("image folder", per.root), ("annotations", per.annotations)):
            if not p or not cfg.resolve(p).exists():
                per_problems.append(f"perception {label} {p!r}: not found")
    add("perception build", f"Refine-Perception from {per.source}", per_problems,
        [sys.executable, "-m", "refine_iqa_lib.data.build", "--profile", cfg.profile])

    # scoring datasets
    score_problems = []
    for name in sorted(set(cfg.scoring.train) | set(cfg.scoring.eval)):
        root = cfg.scoring.roots.get(name)
        if name in cfg.scoring.custom:
            labels = cfg.resolve(cfg.scoring.custom[name].get("labels", ""))
            if not labels.is_file():
                score_problems.append(f"{name}: labels file {labels} (scoring.custom.{name}.labels) not found")
        elif root is None:
            score_problems.append(f"scoring.roots has no entry for {name!r} (nor scoring.custom)")
        elif root != "embedded" and not cfg.resolve(root).is_dir():
            score_problems.append(f"{name}: folder {cfg.resolve(root)} not found")
        elif root != "embedded":
            score_problems += _dataset_file_problems(name, cfg.resolve(root))
    add("IQA datasets", f"train {cfg.scoring.train}, eval {cfg.scoring.eval}", score_problems)
    if cfg.eval.qbench_root != "embedded":
        qb = cfg.resolve(cfg.eval.qbench_root)
        f = qb / f"llvisionqa_{cfg.eval.qbench_split}.json"
        add("Q-Bench", f"A1 {cfg.eval.qbench_split} split", [] if f.is_file() else [f"{f}: not found"])

    for stage, label in (("warmup", "SFT warm-up (stand-in only)"), ("1", "Stage-1 GRPO"), ("2", "Stage-2 GRPO")):
        if stage == "warmup" and not uses_warmup(cfg):
            continue
        if stage == "1" and not cfg.stage1.enabled:
            continue
        cmd = build_command(cfg, stage, default_run_dir(cfg, stage))
        add(label, stage_settings(cfg, stage), [], cmd)
    server = vllm_server_command(cfg, str(cfg.resolve(cfg.model.path)))
    if server:
        add("vLLM server", "start before the stages (server mode)", [], server)
    return steps


def _dataset_file_problems(name: str, root: Path) -> list[str]:
    info = DATASETS.get(name)
    if info is None:
        return [f"{name}: unknown dataset; valid: {sorted(DATASETS)}"]
    files = (info.labels,) if isinstance(info.labels, str) else tuple(info.labels)
    return [f"{root / f}: missing ({name} labels file)" for f in files if not (root / f).exists()]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.training.launch", description="Launch a training stage.")
    ap.add_argument("--stage", required=True, choices=STAGES)
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--run-dir")
    ap.add_argument("--no-resume", action="store_true")
    ap.add_argument("--dry-run", action="store_true", help="print the exact command and resolved settings")
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        cfg = load_config(args.profile, args.sets)
        run_stage_subprocess(cfg, args.stage, args.run_dir, resume=not args.no_resume, dry_run=args.dry_run)
    except (ConfigError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
