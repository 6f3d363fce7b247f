"""Every command line shows its progress on the terminal: each ``python -m`` entry point and
``refine-iqa`` subcommand is run as a subprocess (dry runs, error paths and tiny runs, two at a
time) and what reaches its stdout / stderr is checked."""
from __future__ import annotations

import logging
import os
import subprocess
import sys
import types
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from refine_iqa_lib.io import REPO_ROOT


def _commands(tmp, model_dir) -> dict[str, list[str]]:
    work = ["--set", f"paths.work_dir={tmp / 'work'}"]
    return {
        "launch_dry_run": ["refine_iqa_lib.training.launch", "--stage", "2", "--profile", "smoke", "--dry-run", *work],
        "launch_failed_child": ["refine_iqa_lib.training.launch", "--stage", "1", "--profile", "smoke", *work],
        "train_dry_run": ["refine_iqa_lib.training.cli", "--stage", "warmup", "--profile", "smoke", "--dry-run", *work],
        "cli_train_dry_run": ["refine_iqa_lib.cli", "train", "--stage", "warmup", "--profile", "smoke", "--dry-run",
                              *work],
        "cli_score": ["refine_iqa_lib.cli", "score", "--model", str(model_dir), str(tmp / "pictures")],
        "cli_evaluate": ["refine_iqa_lib.cli", "evaluate", "--model", str(model_dir), "--profile", "smoke",
                         "--modes", "no_think", "--methods", "prob", "--set", "eval.max_samples=3", *work,
                         "--out-dir", str(tmp / "results")],
        "build": ["refine_iqa_lib.data.build", "--profile", "smoke", "--set", "n_images=3", "--set", "test_size=1",
                  "--set", f"paths.results_dir={tmp / 'results'}", "--workers", "1", *work],
        "reproduce_dry_run": ["refine_iqa_lib.reproduce", "--profile", "smoke", "--dry-run", *work],
        "findings_bad_profile": ["refine_iqa_lib.findings", "--profile", "no_such_profile"],
        "standin_bad_profile": ["refine_iqa_lib.standin", "--profile", "no_such_profile"],
    }


@pytest.fixture(scope="module")
def ran(tmp_path_factory, tiny_model_dir):
    tmp = tmp_path_factory.mktemp("entry_points")
    (tmp / "pictures").mkdir()
    Image.fromarray(np.full((40, 60, 3), 120, np.uint8)).save(tmp / "pictures" / "a.png")
    Image.fromarray(np.full((4000, 3, 3), 90, np.uint8)).save(tmp / "pictures" / "b_thin.png")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO_ROOT)}

    def run(item):
        name, args = item
        proc = subprocess.run([sys.executable, "-m", *args], cwd=REPO_ROOT, env=env, capture_output=True,
                              text=True, timeout=300)
        return name, proc

    with ThreadPoolExecutor(max_workers=2) as pool:
        return dict(pool.map(run, _commands(tmp, tiny_model_dir).items()))


def test_launcher_dry_run_prints_its_command(ran):
    p = ran["launch_dry_run"]
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first.startswith("$ ") and "launch --config_file" in first
    assert "-m refine_iqa_lib.training.cli --stage 2" in first
    assert "# mode=think G=4" in p.stdout and "resolved config:" in p.stdout


def test_launcher_streams_the_child_and_repeats_its_error(ran):
    p = ran["launch_failed_child"]
    assert p.returncode == 1
    out = p.stdout.splitlines()
    assert out[0].startswith("$ ") and "--stage 1" in out[0]
    child = [line for line in out if line.startswith("error: ")]           # the child's own line, streamed
    assert child and "warm-up output not found" in child[0]
    err = p.stderr.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: stage 1 failed (exit code 1): ")
    assert "warm-up output not found" in err[0] and "--stage warmup" in err[0] and "; log: " in err[0]


@pytest.mark.parametrize("name", ["train_dry_run", "cli_train_dry_run"])
def test_training_cli_dry_run(ran, name):
    p = ran[name]
    assert p.returncode == 0, p.stdout + p.stderr
    assert p.stdout.startswith("[train] stage warmup -> ") and "[train] ok " in p.stdout


def test_score_rows_on_stdout_progress_and_failures_on_stderr(ran):
    p = ran["cli_score"]
    assert p.returncode == 2
    lines = p.stdout.splitlines()
    assert lines[0] == "image,score,method,mode,parsed,error" and len(lines) == 3
    assert lines[1].split(",")[0].endswith("a.png") and "aspect ratio 1333.3:1" in lines[2]
    assert "scoring 2 input(s) with" in p.stderr
    assert "failed: " in p.stderr and "1 of 2 input(s) could not be read" in p.stderr


def test_evaluate_reports_what_it_does_and_its_numbers(ran):
    p = ran["cli_evaluate"]
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("evaluating ") and "datasets ['koniq'], modes ['no_think'], methods ['prob']" in p.stdout
    assert "koniq      no_think prob SRCC" in p.stdout and "run config: " in p.stdout


def test_build_and_reproduce_print_their_progress(ran):
    b = ran["build"]
    assert b.returncode == 0, b.stderr
    assert "Refine-Perception build -> " in b.stdout and "samples_train" in b.stdout
    r = ran["reproduce_dry_run"]
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout.startswith("[ok] model: ") and "    $ " in r.stdout


@pytest.mark.parametrize("name", ["findings_bad_profile", "standin_bad_profile"])
def test_errors_reach_stderr(ran, name):
    p = ran[name]
    assert p.returncode == 1 and p.stdout == ""
    assert p.stderr.startswith("error: unknown profile 'no_such_profile'")


def test_a_module_run_as_main_logs_through_the_library(monkeypatch, capsys):
    """``python -m refine_iqa_lib.x`` names the module ``__main__``; configure_command_logging gives
    that logger the library's handler and level (without it the line below is dropped)."""
    from refine_iqa_lib import configure_command_logging

    main_logger, lib = logging.getLogger("__main__"), logging.getLogger("refine_iqa_lib")
    monkeypatch.setattr(main_logger, "handlers", [])
    monkeypatch.setattr(main_logger, "level", logging.NOTSET)
    monkeypatch.setattr(lib, "level", logging.INFO)
    fake = types.ModuleType("__main__")
    fake.__spec__ = types.SimpleNamespace(name="refine_iqa_lib.training.launch")
    monkeypatch.setitem(sys.modules, "__main__", fake)
    monkeypatch.delenv("RANK", raising=False)
    monkeypatch.delenv("LOCAL_RANK", raising=False)
    main_logger.info("dropped")
    configure_command_logging()
    main_logger.info("$ accelerate launch ...")
    assert capsys.readouterr().out == "$ accelerate launch ...\n"
    monkeypatch.setenv("RANK", "1")                                         # another rank: warnings only
    configure_command_logging()
    main_logger.info("not shown")
    logging.getLogger("refine_iqa_lib.training.run").info("not shown either")
    assert capsys.readouterr().out == ""
