"""The training CLI contract the launcher depends on (``python -m refine_iqa_lib.training.cli``)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.training.launch import build_command
from refine_iqa_lib.training.cli import main
from refine_iqa_lib.training.metrics import read_metrics

SETS = ["--set", "warmup.enabled=false", "--set", "stage2.init_from=base", "--set", "stage2.no_think_every=1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("cli_work")


def _args(work, *extra):
    return ["--profile", "smoke", "--set", f"paths.work_dir={work}", *SETS, *extra]


def test_dry_run_prints_settings_and_checks(work, capsys):
    assert main(["--stage", "2", *_args(work), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "mode=think G=4" in out and "loss=dapo" in out and "PD=True PM=True" in out
    assert "ok  initial weights" in out and "ok  scoring data koniq" in out
    assert not (work / "runs" / "stage2").exists()                     # nothing trained


def test_missing_previous_stage_is_a_clear_error(work, capsys):
    rc = main(["--stage", "2", "--profile", "smoke", "--set", f"paths.work_dir={work}",
               "--set", "warmup.enabled=false"])
    err = capsys.readouterr().err
    assert rc == 1 and "Stage-1 output not found" in err and "--stage 1 --profile smoke" in err


def test_bad_override_is_a_clear_error(work, capsys):
    assert main(["--stage", "2", *_args(work), "--set", "stage2.lerning_rate=1"]) == 1
    assert "lerning_rate" in capsys.readouterr().err


def test_cli_run_writes_the_run_folder_and_is_not_repeated(work):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run_dir = work / "cli_run"
    cmd = [sys.executable, "-m", "refine_iqa_lib.training.cli", "--stage", "2", *_args(work), "--run-dir", str(run_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (run_dir / "final" / "refine_final.json").is_file()
    saved = load_config(str(run_dir / "run_config.yaml"))
    assert saved.stage2.init_from == "base" and saved.profile == "smoke"
    m = read_metrics(run_dir)
    assert m["step"].tolist() == [1, 2]
    for col in ("rewards/answer/mean", "rewards/format/mean", "rewards/pd/mean", "refine/answer_think",
                "refine/answer_no_think", "refine/think_tokens", "refine/pd_raw", "adv/mean", "adv/std",
                "adv/zero_signal_groups", "loss", "learning_rate", "wall_time_s"):
        assert col in m.columns, col
    assert sorted(p.name for p in (run_dir / "checkpoints").glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0 and "already complete" in again.stdout
    # --no-resume starts over: old checkpoints, metrics and advantages are replaced, not appended to
    assert main(["--stage", "2", *_args(work), "--run-dir", str(run_dir), "--no-resume"]) == 0
    assert read_metrics(run_dir)["step"].tolist() == [1, 2]
    assert len((run_dir / "advantages" / "rank0.jsonl").read_text().splitlines()) == 2


def test_launcher_command_parses(work, capsys):
    cfg = load_config("smoke", {"paths.work_dir": str(work), "warmup.enabled": False, "stage2.init_from": "base"})
    cmd = build_command(cfg, "2", work / "cli_run", config_file=None, resume=False)
    train_args = cmd[cmd.index("refine_iqa_lib.training.cli") + 1:]
    assert "--no-resume" in train_args
    assert main(train_args + ["--set", "warmup.enabled=false", "--set", "stage2.init_from=base", "--dry-run"]) == 0
    assert "stage 2 -> " in capsys.readouterr().out


def test_dry_run_with_something_missing_fails(work, capsys):
    rc = main(["--stage", "2", "--profile", "smoke", "--set", f"paths.work_dir={work}", "--set", "warmup.enabled=false",
               "--dry-run"])
    captured = capsys.readouterr()
    assert rc == 1 and "MISSING initial weights" in captured.out and "1 check(s) failed" in captured.err


def test_hint_carries_the_users_overrides(work, capsys):
    rc = main(["--stage", "2", "--profile", "smoke", "--set", f"paths.work_dir={work}", "--set", "warmup.enabled=false"])
    err = capsys.readouterr().err
    assert rc == 1 and f"--set=paths.work_dir={work}" in err and "--set=warmup.enabled=false" in err


def _default_sigint():
    """In the child: Ctrl-C's default disposition, whatever this process inherited (a shell's
    background job, e.g. ``nohup make test &``, ignores SIGINT, and so would the child's Python)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_names_the_last_complete_checkpoint(work):
    import signal
    import time

    run_dir = work / "interrupted"
    cmd = [sys.executable, "-m", "refine_iqa_lib.training.cli", "--stage", "2", *_args(work), "--run-dir", str(run_dir),
           "--set", "stage2.max_steps=200", "--set", "stage2.save_steps=1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, preexec_fn=_default_sigint)
    marker = run_dir / "checkpoints" / "checkpoint-1" / "refine_run.json"
    deadline = time.time() + 240
    while not marker.is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    assert marker.is_file(), "no checkpoint within 240 s"
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err[-2000:]
    line = [ln for ln in err.splitlines() if ln.startswith("interrupted:")]
    assert len(line) == 1 and "last complete checkpoint:" in line[0] and "resume with:" in line[0], err[-2000:]
    assert "Traceback" not in err
    assert not (run_dir / "final" / "refine_final.json").exists()
