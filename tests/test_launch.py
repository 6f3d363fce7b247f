import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.runs import default_run_dir
from refine_iqa_lib.training.launch import build_command, run_stage_subprocess, vllm_server_command


def test_cpu_command_is_accelerate_with_one_process():
    cfg = load_config("smoke")
    cmd = build_command(cfg, 2, "runs/stage2_test")
    assert cmd[1:3] == ["launch", "--config_file"] and cmd[3].endswith("configs/accelerate/cpu.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "1" and "--cpu" in cmd
    assert cmd[cmd.index("-m") + 1:] == ["refine_iqa_lib.training.cli", "--stage", "2", "--profile", "smoke",
                                         "--run-dir", "runs/stage2_test", "--resume"]


def test_two_cpu_processes_use_torchrun():
    cfg = load_config("smoke", {"launch.num_processes": 2})
    cmd = build_command(cfg, "1")
    assert cmd[:3] == ["torchrun", "--standalone", "--nproc_per_node=2"]


def test_paper_uses_zero3_on_eight_gpus_and_vllm_server_is_printed():
    cfg = load_config("paper", {"launch.use_vllm": True, "launch.vllm_mode": "server"})
    cmd = build_command(cfg, "2")
    assert cmd[3].endswith("zero3.yaml") and cmd[cmd.index("--num_processes") + 1] == "8"
    assert "--cpu" not in cmd
    assert vllm_server_command(cfg, "/m") == ["trl", "vllm-serve", "--model", "/m", "--tensor-parallel-size", "1",
                                              "--host", "0.0.0.0", "--port", "8000", "--max-model-len", "4096"]
    assert vllm_server_command(load_config("paper"), "/m") is None          # colocate: no server


def test_dry_run_prints_and_writes_nothing(tmp_path, capsys):
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w")})
    run_dir = run_stage_subprocess(cfg, "2", dry_run=True)
    out = capsys.readouterr().out
    assert run_dir == default_run_dir(cfg, "2")
    assert "refine_iqa_lib.training.cli --stage 2" in out and "mode=think" in out and "stage2:" in out
    assert not (tmp_path / "w").exists()


def _fake_runs(monkeypatch, fail=()):
    """Replace the child process with a recorder; returns the list of calls."""
    import threading
    import time

    import refine_iqa_lib.training.launch as launch

    calls, lock, running = [], threading.Lock(), [0, 0]  # [now, most at once]

    def fake(cfg, stage, run_dir=None, overrides=None, resume=True, label=None, threads=None, **kw):
        with lock:
            running[0] += 1
            running[1] = max(running)
        time.sleep(0.2)
        with lock:
            running[0] -= 1
            calls.append({"label": label, "threads": threads, "stage": stage})
        if label in fail:
            raise RuntimeError(f"stage {stage} failed (exit code 1)")
        return run_dir

    monkeypatch.setattr(launch, "run_stage_subprocess", fake)
    monkeypatch.setattr(launch, "cpu_cores", lambda: 2)
    return calls, running


def test_run_concurrently_splits_cpu_cores_and_keeps_job_order(monkeypatch):
    from refine_iqa_lib.training.launch import run_concurrently

    calls, running = _fake_runs(monkeypatch)
    jobs = [{"stage": "2", "run_dir": f"/r/{n}", "label": n} for n in ("a", "b", "c")]
    out = run_concurrently(load_config("smoke"), jobs, parallel=3)
    assert out == ["/r/a", "/r/b", "/r/c"]
    assert running[1] == 3 and {c["threads"] for c in calls} == {1}  # 2 cores // 3 jobs -> 1 thread each
    calls.clear()
    run_concurrently(load_config("smoke"), jobs[:2], parallel=2)
    assert {c["threads"] for c in calls} == {1}
    calls.clear()
    run_concurrently(load_config("smoke"), jobs, parallel=1)  # one at a time, accelerate's own threads
    assert [c["label"] for c in calls] == ["a", "b", "c"] and {c["threads"] for c in calls} == {None}


def test_run_concurrently_runs_gpu_jobs_one_at_a_time_and_names_every_failure(monkeypatch):
    import pytest

    from refine_iqa_lib.training.launch import run_concurrently

    calls, running = _fake_runs(monkeypatch, fail=("a", "c"))
    jobs = [{"stage": "2", "run_dir": f"/r/{n}", "label": n} for n in ("a", "b", "c")]
    with pytest.raises(RuntimeError, match=r"2 of 3 jobs failed:\n- a: .*\n- c: "):
        run_concurrently(load_config("paper"), jobs, parallel=3)
    assert running[1] == 1 and [c["label"] for c in calls] == ["a", "b", "c"]  # b still ran


def test_cpu_threads_reach_accelerate_and_the_environment(tmp_path, capsys):
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w")})
    cmd = build_command(cfg, "2", threads=1)
    assert cmd[cmd.index("--num_cpu_threads_per_process") + 1] == "1"
    assert "--num_cpu_threads_per_process" not in build_command(cfg, "2")
    assert "--num_cpu_threads_per_process" not in build_command(load_config("paper"), "2", threads=1)
    run_stage_subprocess(cfg, "2", dry_run=True, label="s2_no_pd", threads=1)
    assert capsys.readouterr().out.startswith("[s2_no_pd] $ ")


def test_a_finished_run_starts_no_child_unless_it_is_retrained(tmp_path, monkeypatch, capsys):
    import subprocess

    from refine_iqa_lib.runs import FINAL_MARKER, final_dir

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w")})
    run_dir = default_run_dir(cfg, "1")
    final_dir(run_dir).mkdir(parents=True)

    class Started(Exception):
        pass

    def popen(*a, **k):
        raise Started(a[0])

    monkeypatch.setattr(subprocess, "Popen", popen)
    with pytest.raises(Started):   # no marker yet: the child is started
        run_stage_subprocess(cfg, "1")
    (final_dir(run_dir) / FINAL_MARKER).write_text("{}")
    assert run_stage_subprocess(cfg, "1") == run_dir          # finished: returned at once
    assert "is already complete" in capsys.readouterr().out
    with pytest.raises(Started):   # resume=False retrains, so it always starts the child
        run_stage_subprocess(cfg, "1", resume=False)


# ------------------------------------------------------------------ paper-scale plans: engine, nodes, server

NODE_ENV = ("MACHINE_RANK", "SLURM_NODEID", "NODE_RANK", "MAIN_PROCESS_IP", "MASTER_ADDR", "MAIN_PROCESS_PORT",
            "MASTER_PORT", "CUDA_VISIBLE_DEVICES")


@pytest.fixture
def no_scheduler(monkeypatch):
    """No scheduler variables in the environment (a dry run on a login node)."""
    for name in NODE_ENV:
        monkeypatch.delenv(name, raising=False)


def _dry_run(capsys, *args):
    from refine_iqa_lib import reproduce

    rc = reproduce.main(["--profile", "paper", "--dry-run", *args])
    return rc, capsys.readouterr().out


def test_paper_dry_run_on_one_node_prints_the_engine_and_one_command_per_stage(no_scheduler, capsys):
    rc, out = _dry_run(capsys)
    assert rc == 1                                                          # the model and data are not here
    assert "[ok] generation: vLLM colocate inside every training process (TRL use_vllm: 0.3 of each GPU's memory, " \
           "tensor parallel 1, context 4096 tokens)" in out
    assert "teacher-forced PD and Eq. 8 run through the policy" in out
    lines = out.splitlines()
    stage2 = lines[lines.index(next(ln for ln in lines if ln.startswith("[ok] Stage-2 GRPO"))) + 1]
    assert stage2.startswith("    $ ") and "zero3.yaml --num_processes 8 -m refine_iqa_lib.training.cli --stage 2" in stage2
    assert "--num_machines" not in out and "node 0" not in out and "vLLM server" not in out
    assert "processes=8 (zero3, vLLM colocate)" in out


def test_paper_dry_run_on_two_nodes_prints_each_nodes_command(no_scheduler, capsys):
    rc, out = _dry_run(capsys, "--nodes", "2")
    assert "[ok] nodes: 2 machines x 8 processes (zero3_multinode)" in out
    assert "MACHINE_RANK | SLURM_NODEID | NODE_RANK, MAIN_PROCESS_IP | MASTER_ADDR" in out
    assert "sbatch refine_iqa_lib/configs/slurm/two_nodes.sbatch" in out
    assert "processes=16 (2 machines x 8, zero3_multinode, vLLM colocate)" in out
    for stage in ("1", "2"):
        for rank in (0, 1):
            want = (f"    node {rank} $ ", "zero3_multinode.yaml --num_processes 16 --num_machines 2 "
                    f"--machine_rank {rank} --main_process_ip ${{MAIN_PROCESS_IP}} --main_process_port 29500 "
                    f"-m refine_iqa_lib.training.cli --stage {stage} ")
            assert any(ln.startswith(want[0]) and want[1] in ln for ln in out.splitlines()), (stage, rank)
    assert "node 2" not in out


def test_server_mode_plan_starts_the_server_on_its_own_gpus(no_scheduler, capsys):
    rc, out = _dry_run(capsys, "--set", "launch.vllm_mode=server", "--set", "launch.num_processes=7")
    assert "[ok] vLLM server: start first, on this node: GPUs 0 serve, the training processes use GPUs " \
           "1,2,3,4,5,6,7 (8 GPUs per node)" in out
    assert "    $ CUDA_VISIBLE_DEVICES=0 trl vllm-serve --model " in out
    assert "--tensor-parallel-size 1 --host 0.0.0.0 --port 8000 --max-model-len 4096" in out
    assert "    $ CUDA_VISIBLE_DEVICES=1,2,3,4,5,6,7 " in out and "--stage 2" in out
    assert out.index("vLLM server") < out.index("Stage-1 GRPO")


def test_a_multi_node_launch_reads_its_place_from_the_scheduler(no_scheduler, monkeypatch, tmp_path):
    import subprocess

    from refine_iqa_lib.config import ConfigError
    from refine_iqa_lib.training.launch import launch_environment, node_overrides, node_settings

    cfg = load_config("paper", {"paths.work_dir": str(tmp_path / "w")})
    cfg = load_config(cfg, node_overrides(2, cfg))
    assert (cfg.launch.num_machines, cfg.launch.accelerate_config) == (2, "zero3_multinode")
    with pytest.raises(ConfigError, match=r"machine_rank \(MACHINE_RANK or SLURM_NODEID or NODE_RANK\) and "
                                          r"main_process_ip \(MAIN_PROCESS_IP or MASTER_ADDR\) not set"):
        run_stage_subprocess(cfg, "2")
    assert not (tmp_path / "w").exists()                    # nothing written before the check

    class Started(Exception):
        pass

    seen = {}

    def popen(cmd, **kw):
        seen.update(cmd=cmd, env=kw["env"])
        raise Started

    monkeypatch.setattr(subprocess, "Popen", popen)
    monkeypatch.setenv("SLURM_NODEID", "1")
    monkeypatch.setenv("MASTER_ADDR", "gpu-a")
    with pytest.raises(Started):
        run_stage_subprocess(cfg, "2")
    cmd = seen["cmd"]
    assert cmd[cmd.index("--num_processes") + 1] == "16" and cmd[cmd.index("--machine_rank") + 1] == "1"
    assert cmd[cmd.index("--main_process_ip") + 1] == "gpu-a" and cmd[cmd.index("--main_process_port") + 1] == "29500"
    assert node_settings({"MACHINE_RANK": "0", "SLURM_NODEID": "1", "MAIN_PROCESS_IP": "a", "MASTER_PORT": "7"}) == \
        {"machine_rank": "0", "main_process_ip": "a", "main_process_port": "7"}     # the first variable set wins
    server = load_config("paper", {"launch.vllm_mode": "server", "launch.num_processes": 6,
                                   "launch.vllm_tensor_parallel_size": 2})
    assert launch_environment(server, {}) == {"CUDA_VISIBLE_DEVICES": "2,3,4,5,6,7"}
    assert launch_environment(server, {"CUDA_VISIBLE_DEVICES": "0,1"}) == {}        # the user's choice stands
    assert launch_environment(cfg, {}) == {}                                         # colocate: the same GPUs


def test_the_slurm_example_runs_the_launcher_once_per_node():
    import shutil
    import subprocess

    from refine_iqa_lib.training.launch import SLURM_EXAMPLE

    text = SLURM_EXAMPLE.read_text()
    assert "#SBATCH --nodes=2" in text and "#SBATCH --ntasks-per-node=1" in text and "#SBATCH --gpus-per-node=8" in text
    assert "-m refine_iqa_lib.training.launch --stage \"$stage\"" in text and "--nodes \"$SLURM_JOB_NUM_NODES\"" in text
    assert "MACHINE_RANK=$SLURM_NODEID" in text and "export MAIN_PROCESS_IP MAIN_PROCESS_PORT" in text
    if shutil.which("bash"):
        assert subprocess.run(["bash", "-n", str(SLURM_EXAMPLE)]).returncode == 0
