from refine_iqa_lib.config import load_config
from refine_iqa_lib.launch import build_command, default_run_dir, run_stage_subprocess, vllm_server_command


def test_cpu_command_is_accelerate_with_one_process():
    cfg = load_config("smoke")
    cmd = build_command(cfg, 2, "/tmp/run")
    assert cmd[1:3] == ["launch", "--config_file"] and cmd[3].endswith("configs/accelerate/cpu.yaml")
    assert cmd[cmd.index("--num_processes") + 1] == "1" and "--cpu" in cmd
    assert cmd[cmd.index("-m") + 1:] == ["refine_iqa_lib.train", "--stage", "2", "--profile", "smoke",
                                         "--run-dir", "/tmp/run", "--resume"]


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
    assert "refine_iqa_lib.train --stage 2" in out and "mode=think" in out and "stage2:" in out
    assert not (tmp_path / "w").exists()
