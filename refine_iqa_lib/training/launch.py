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
mode needs nothing else; server mode needs ``trl vllm-serve`` running first on its own GPUs
(:func:`vllm_server_command` and :func:`gpu_assignment`; ``--dry-run`` prints both).

More than one machine (``launch.num_machines`` > 1, ``--nodes N``): the same launcher runs once on
every node (e.g. ``srun`` in ``configs/slurm/two_nodes.sbatch``) and starts ``accelerate launch``
with ``--num_machines``, this node's ``--machine_rank`` and the main node's address and port, read
from the scheduler's variables (:data:`NODE_VARIABLES`). Each node writes its own log file.

CLI: ``python -m refine_iqa_lib.training.launch --stage {warmup,1,2} --profile P [--set k=v] [--nodes N] [--dry-run]``.
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
from refine_iqa_lib.io import repo_relative
from refine_iqa_lib.models import REQUIRED_FILES
from refine_iqa_lib.runs import FINAL_MARKER, STAGES, check_stage, default_run_dir, is_complete, uses_warmup
from refine_iqa_lib.training.run import stage_settings

log = logging.getLogger(__name__)

#: Where a multi-node launch reads its place, first variable set wins: this node's rank, the main
#: node's address and its port (accelerate's ``--machine_rank``, ``--main_process_ip``,
#: ``--main_process_port``). SLURM sets ``SLURM_NODEID`` in every task; torchrun-style schedulers
#: set ``NODE_RANK`` / ``MASTER_ADDR`` / ``MASTER_PORT``.
NODE_VARIABLES = {"machine_rank": ("MACHINE_RANK", "SLURM_NODEID", "NODE_RANK"),
                  "main_process_ip": ("MAIN_PROCESS_IP", "MASTER_ADDR"),
                  "main_process_port": ("MAIN_PROCESS_PORT", "MASTER_PORT")}
DEFAULT_MAIN_PORT = "29500"
#: The accelerate config ``--nodes N`` (N > 1) puts in place of the one-node ZeRO-3 config.
MULTINODE_CONFIGS = {"zero3": "zero3_multinode"}
#: A SLURM batch script that runs this launcher once on each of two 8-GPU nodes.
SLURM_EXAMPLE = Path(__file__).resolve().parents[1] / "configs" / "slurm" / "two_nodes.sbatch"


def node_settings(environ=None, machine_rank: int | None = None, strict: bool = False) -> dict[str, str]:
    """This node's ``{machine_rank, main_process_ip, main_process_port}`` from :data:`NODE_VARIABLES`
    (``machine_rank`` given: that one). A value that is not set is shown as ``${MACHINE_RANK}`` /
    ``${MAIN_PROCESS_IP}`` (what a printed command leaves to the shell), or with ``strict`` raises
    ``ConfigError`` naming the variables; the port defaults to 29500.

    >>> node_settings({"SLURM_NODEID": "1", "MASTER_ADDR": "gpu-a"})
    {'machine_rank': '1', 'main_process_ip': 'gpu-a', 'main_process_port': '29500'}
    >>> node_settings({}, machine_rank=0)["main_process_ip"]
    '${MAIN_PROCESS_IP}'
    """
    environ = os.environ if environ is None else environ
    out, missing = {}, []
    for key, names in NODE_VARIABLES.items():
        value = next((environ[n] for n in names if environ.get(n)), None)
        if key == "machine_rank" and machine_rank is not None:
            value = str(int(machine_rank))
        if value is None and key == "main_process_port":
            value = DEFAULT_MAIN_PORT
        if value is None:
            missing.append(f"{key} ({' or '.join(names)})")
            value = "${" + names[0] + "}"
        out[key] = value
    if strict and missing:
        raise ConfigError(f"launch.num_machines > 1: this node's {' and '.join(missing)} not set; a multi-node "
                          "launch reads them from the scheduler (see configs/slurm/two_nodes.sbatch)")
    return out


def node_overrides(nodes: int, cfg: Config) -> dict:
    """The overrides of ``--nodes N``: ``launch.num_machines=N`` and, for N > 1, the multi-node
    accelerate config in place of the one-node one (:data:`MULTINODE_CONFIGS`)."""
    out = {"launch.num_machines": int(nodes)}
    if int(nodes) > 1 and cfg.launch.accelerate_config in MULTINODE_CONFIGS:
        out["launch.accelerate_config"] = MULTINODE_CONFIGS[cfg.launch.accelerate_config]
    return out


def shell_join(cmd: list[str]) -> str:
    """``cmd`` as one shell line, ``${NAME}`` placeholders left for the shell to fill.

    >>> shell_join(["a b", "--ip", "${MAIN_PROCESS_IP}"])
    "'a b' --ip ${MAIN_PROCESS_IP}"
    """
    return " ".join(c if c.startswith("${") and c.endswith("}") and c[2:-1].isidentifier() else shlex.quote(c)
                    for c in cmd)


def build_command(cfg: Config, stage, run_dir: str | os.PathLike | None = None,
                  config_file: str | os.PathLike | None = None, resume: bool = True,
                  threads: int | None = None, node: dict | None = None) -> list[str]:
    """The exact command that runs ``stage`` for ``cfg``.

    ``config_file`` is the resolved config the job reads (written by :func:`run_stage_subprocess`);
    without it the profile name is passed (its overrides then must be given again). ``threads``:
    CPU threads per process (accelerate's ``--num_cpu_threads_per_process``; CPU runs only).
    ``node``: this node's :func:`node_settings` when ``launch.num_machines`` > 1 (default: read
    from the environment, placeholders where unset); ``--num_processes`` is then the world size.

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
    machines = int(launch.num_machines)
    cmd = [_accelerate_executable(), "launch", "--config_file",
           str(accelerate_config_path(launch.accelerate_config)),
           "--num_processes", str(launch.num_processes * machines)]
    if machines > 1:
        node = node or node_settings()
        cmd += ["--num_machines", str(machines), "--machine_rank", node["machine_rank"],
                "--main_process_ip", node["main_process_ip"], "--main_process_port", node["main_process_port"]]
    if launch.use_cpu:
        cmd.append("--cpu")
        if threads:
            cmd += ["--num_cpu_threads_per_process", str(int(threads))]
    return cmd + train_args


def command_line(cfg: Config, cmd: list[str], environ=None) -> str:
    """``cmd`` as printed: one shell line, prefixed by the variables :func:`launch_environment` adds
    given ``environ`` (default: none set, i.e. what a plan should say; server mode: the trainer's
    ``CUDA_VISIBLE_DEVICES``)."""
    env = launch_environment(cfg, environ={} if environ is None else environ)
    return " ".join([*(f"{k}={v}" for k, v in env.items()), shell_join(cmd)])


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
    """The ``trl vllm-serve`` command to start first when ``launch.vllm_mode == "server"`` (on the
    GPUs :func:`gpu_assignment` gives it). The served weights only fix the architecture and the
    processor: the trainer pushes its own weights to the server before every step's generation."""
    L = cfg.launch
    if not (L.use_vllm and L.vllm_mode == "server"):
        return None
    cmd = ["trl", "vllm-serve", "--model", str(model_path), "--tensor-parallel-size", str(L.vllm_tensor_parallel_size),
           "--host", str(L.vllm_server_host), "--port", str(L.vllm_server_port)]
    if L.vllm_max_model_length:
        cmd += ["--max-model-len", str(L.vllm_max_model_length)]
    return cmd


def gpu_assignment(cfg: Config) -> dict[str, str] | None:
    """Server mode: ``{"server": ..., "trainer": ...}`` values of ``CUDA_VISIBLE_DEVICES`` - the
    first ``vllm_tensor_parallel_size`` GPUs of a node for ``trl vllm-serve``, the next
    ``num_processes`` for the training processes (the same on every node, so each node runs as
    many processes). None in colocate mode (vLLM shares the training GPUs) or without vLLM.

    >>> from refine_iqa_lib.config import load_config
    >>> gpu_assignment(load_config("paper", {"launch.vllm_mode": "server", "launch.num_processes": 7}))
    {'server': '0', 'trainer': '1,2,3,4,5,6,7'}
    """
    L = cfg.launch
    if not (L.use_vllm and L.vllm_mode == "server"):
        return None
    tp, n = int(L.vllm_tensor_parallel_size), int(L.num_processes)
    return {"server": ",".join(map(str, range(tp))), "trainer": ",".join(map(str, range(tp, tp + n)))}


def launch_environment(cfg: Config, environ=None) -> dict[str, str]:
    """Variables the training job gets on top of this process's: in server mode the trainer's
    ``CUDA_VISIBLE_DEVICES`` (:func:`gpu_assignment`), unless the environment already sets it."""
    environ = os.environ if environ is None else environ
    gpus = gpu_assignment(cfg)
    if gpus is None or "CUDA_VISIBLE_DEVICES" in environ:
        return {}
    return {"CUDA_VISIBLE_DEVICES": gpus["trainer"]}


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
        log.info("%s$ %s", prefix, command_line(cfg, build_command(cfg, stage, run_dir, None, resume, threads)))
        log.info("# %s\n# resolved config:\n%s", stage_settings(cfg, stage), cfg.to_yaml())
        return run_dir
    if resume and is_complete(run_dir):
        log.info("%s[train] stage %s: %s is already complete (final/%s); nothing to do",
                 prefix, stage, run_dir, FINAL_MARKER)
        return run_dir
    node = node_settings(strict=True) if cfg.launch.num_machines > 1 else None  # rank, main address, port
    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = save_config(cfg, run_dir.parent / f"{run_dir.name}.launch.yaml")
    cmd = build_command(cfg, stage, run_dir, resolved, resume, threads, node=node)
    log.info("%s$ %s", prefix, command_line(cfg, cmd, os.environ))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_MININTERVAL": os.environ.get("TQDM_MININTERVAL", "5")}
    env.update(launch_environment(cfg))
    if threads:
        env.update(OMP_NUM_THREADS=str(int(threads)), MKL_NUM_THREADS=str(int(threads)))
    node_tag = f".node{node['machine_rank']}" if node else ""  # every node streams its own log
    log_path = Path(log_file) if log_file else run_dir.parent / f"{run_dir.name}{node_tag}.log"
    tail: list[str] = []
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
    """Every step of the pipeline with the inputs it needs, what is missing, and its commands.

    Each step: ``name``, ``description``, ``problems`` (each a missing input), ``notes`` (facts
    that are not problems), ``commands`` (``[(label, shell line)]``: one unlabelled line, or one
    per node, ``"node 0"``, ``"node 1"``, ... when ``launch.num_machines`` > 1) and ``command``
    (the first line, or None). The generation engine is a step of its own, and in vLLM server
    mode so is the server, which starts first."""
    steps = []

    def add(name, description, problems, command=None, notes=(), commands=None):
        lines = commands if commands is not None else ([(None, command_line(cfg, command))] if command else [])
        steps.append({"name": name, "description": description, "problems": problems, "notes": list(notes),
                      "commands": lines, "command": lines[0][1] if lines else None})

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

    _plan_generation(cfg, add)
    machines, per_node = int(cfg.launch.num_machines), int(cfg.launch.num_processes)
    if machines > 1:
        add("nodes", f"{machines} machines x {per_node} processes ({cfg.launch.accelerate_config}): each node runs "
            "its own command below; this node's rank, the main node's address and port come from "
            + ", ".join(" | ".join(v) for v in NODE_VARIABLES.values()), [],
            notes=[f"SLURM: sbatch {repo_relative(SLURM_EXAMPLE)} runs this launcher once per node"])
    for stage, label in (("warmup", "SFT warm-up (stand-in only)"), ("1", "Stage-1 GRPO"), ("2", "Stage-2 GRPO")):
        if stage == "warmup" and not uses_warmup(cfg):
            continue
        if stage == "1" and not cfg.stage1.enabled:
            continue
        run_dir = default_run_dir(cfg, stage)
        if machines > 1:
            lines = [(f"node {r}", command_line(cfg, build_command(cfg, stage, run_dir,
                                                                  node=node_settings(machine_rank=r))))
                     for r in range(machines)]
            add(label, stage_settings(cfg, stage), [], commands=lines)
        else:
            add(label, stage_settings(cfg, stage), [], build_command(cfg, stage, run_dir))
    return steps


def _plan_generation(cfg: Config, add) -> None:
    """The plan's generation step (the engine, and whether this machine can run it) and, in vLLM
    server mode, the server step with its GPUs."""
    from refine_iqa_lib.vllm_engine import describe_engine, vllm_unavailable_reason

    L = cfg.launch
    problems, notes = [], []
    if L.use_vllm:
        why = ("launch.use_cpu is true and vLLM runs on GPUs" if L.use_cpu
               else vllm_unavailable_reason(import_check=False))
        if why and L.vllm_required:
            problems.append(f"{why}; launch.vllm_required: true stops the run")
        elif why:
            notes.append(f"on this machine {why}: a run here says so in one line and generates with "
                         "transformers' generate (launch.vllm_required: false)")
    add("generation", describe_engine(cfg), problems, notes=notes)
    server = vllm_server_command(cfg, str(cfg.resolve(cfg.model.path)))
    if server:
        gpus = gpu_assignment(cfg)
        n_gpus = L.vllm_tensor_parallel_size + L.num_processes
        where = ("on the main node (node 0); the other nodes leave the same GPUs free so that every node runs "
                 f"{L.num_processes} processes" if L.num_machines > 1 else "on this node")
        add("vLLM server", f"start first, {where}: GPUs {gpus['server']} serve, the training processes use GPUs "
            f"{gpus['trainer']} ({n_gpus} GPUs per node)", [],
            commands=[(None, f"CUDA_VISIBLE_DEVICES={gpus['server']} {shell_join(server)}")])


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
    ap.add_argument("--nodes", type=int, default=None, metavar="N",
                    help="machines to run on: launch.num_machines=N (N > 1 also selects the multi-node ZeRO-3 "
                         "config); run the same command on every node")
    ap.add_argument("--dry-run", action="store_true", help="print the exact command and resolved settings")
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        cfg = load_config(args.profile, args.sets)
        if args.nodes is not None:
            cfg = load_config(cfg, node_overrides(args.nodes, cfg))
        run_stage_subprocess(cfg, args.stage, args.run_dir, resume=not args.no_resume, dry_run=args.dry_run)
    except (ConfigError, RuntimeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
