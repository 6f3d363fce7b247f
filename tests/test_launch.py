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
    assert vllm_server_command(cfg, "/m") == ["trl", "vllm-serve", "--model", "/m"]
    assert vllm_server_command(load_config("paper"), "/m") is None


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
