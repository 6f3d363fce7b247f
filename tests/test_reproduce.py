import json
import subprocess
import sys

import nbformat as nbf
import pytest

from refine_iqa_lib import reproduce


def _write_nb(path, *sources):
    nb = nbf.v4.new_notebook(cells=[nbf.v4.new_code_cell('profile = "smoke"\noverrides = {}',
                                                         metadata={"tags": ["parameters"]})]
                             + [nbf.v4.new_code_cell(s) for s in sources])
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"}}
    nbf.write(nb, path)


def test_runs_in_order_and_stops_at_the_failing_cell(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_ok.ipynb", "open('ran_00', 'w').write(profile)")
    _write_nb(nbs / "01_bad.ipynb", "x = 1", "raise ValueError('expected a positive MOS')")
    _write_nb(nbs / "02_never.ipynb", "open('ran_02', 'w').write('x')")
    _write_nb(nbs / "scratch.ipynb", "raise SystemExit")  # not numbered: ignored
    with pytest.raises(reproduce.NotebookFailure) as e:
        reproduce.run_all("smoke", results_dir=tmp_path / "out", directory=nbs)
    assert e.value.notebook == "01_bad.ipynb"
    assert "ValueError: expected a positive MOS" in str(e.value)
    assert (nbs / "ran_00").read_text() == "smoke"
    assert not (nbs / "ran_02").exists()
    executed = tmp_path / "out" / "executed" / "smoke"
    assert (executed / "00_ok.ipynb").is_file() and (executed / "01_bad.ipynb").is_file()


def test_overrides_reach_the_notebook(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    _write_nb(nbs / "00_x.ipynb", "import json; open('ov.json','w').write(json.dumps(overrides))")
    reproduce.run_all("smoke", {"stage2.max_steps": 3}, results_dir=tmp_path / "out", directory=nbs)
    assert json.loads((nbs / "ov.json").read_text()) == {"stage2.max_steps": 3}
    timings = json.loads((tmp_path / "out" / "executed" / "smoke" / "timings.json").read_text())
    assert [t["notebook"] for t in timings["notebooks"]] == ["00_x.ipynb"]


def test_cli_rejects_unknown_profile_and_key():
    assert reproduce.main(["--profile", "huge", "--list"]) == 2
    assert reproduce.main(["--profile", "smoke", "--set", "stage9.x=1", "--list"]) == 2


def test_cli_failure_exit_code_names_the_notebook(tmp_path, monkeypatch, capsys):
    def boom(*a, **k):
        raise reproduce.NotebookFailure("03_stage1_grpo.ipynb", 4, "RuntimeError: loss is NaN")
    monkeypatch.setattr(reproduce, "run_all", boom)
    assert reproduce.main(["--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert "03_stage1_grpo.ipynb (cell 4) failed: RuntimeError: loss is NaN" in err


def test_paper_dry_run_reports_missing_inputs_and_prints_commands(tmp_path):
    root = tmp_path.as_posix()
    proc = subprocess.run(
        [sys.executable, "-m", "refine_iqa_lib.reproduce", "--profile", "paper", "--dry-run",
         "--set", f"model.path={root}/nomodel", "--set", f"scoring.roots.koniq={root}/nokoniq"],
        capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1
    out = proc.stdout
    assert f"{root}/nomodel: model folder not found" in out
    assert f"koniq: folder {root}/nokoniq not found" in out
    assert "launch --config_file" in out and "zero3.yaml --num_processes 8 -m refine_iqa_lib.training.cli --stage 2" in out
    assert "mode=think G=8" in out and "beta=0.0 loss=dapo PD=True PM=True" in out


def test_ctrl_c_is_a_clean_stop_and_a_rerun_redoes_the_notebook(tmp_path):
    import os
    import signal
    import time

    nbs, results = tmp_path / "nbs", tmp_path / "results"
    nbs.mkdir()
    _write_nb(nbs / "00_quick.ipynb", "x = 1")
    _write_nb(nbs / "01_sleepy.ipynb", "open('started', 'w').write('1')",
              "import os, time\nif not os.path.exists('rerun'):\n    time.sleep(120)",
              "open('finished', 'w').write('1')")
    _write_nb(nbs / "02_later.ipynb", "open('ran_02', 'w').write('1')")
    executed = results / "executed" / "smoke"
    executed.mkdir(parents=True)
    (executed / "timings.json").write_text(json.dumps(  # an older run's record must not survive as current
        {"profile": "smoke", "notebooks": [{"notebook": "02_later.ipynb", "seconds": 1.0}]}))
    cmd = [sys.executable, "-m", "refine_iqa_lib.reproduce", "--profile", "smoke", "--notebooks", str(nbs),
           "--set", f"paths.results_dir={results}"]
    # the child gets Ctrl-C's default disposition: a shell's background job (``nohup make test &``)
    # ignores SIGINT, and a Python started with it ignored never raises KeyboardInterrupt
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (nbs / "started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    time.sleep(1.0)  # inside the sleeping cell
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=90)
    assert proc.returncode == 130, err
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("[IPKernelApp] WARNING | Kernel is running")]
    assert len(lines) == 1 and "Traceback" not in err, err  # nothing else: no kernel left to notice its parent exit
    assert lines[0].startswith("interrupted: 01_sleepy.ipynb interrupted (3 of 5 code cells ran), kernel stopped")
    assert lines[0].endswith(f"resume with: python -m refine_iqa_lib.reproduce --profile smoke "
                             f"--set paths.results_dir={results} --notebooks {nbs} --only 01 02")
    assert not (nbs / "finished").exists() and not (nbs / "ran_02").exists()
    partial = nbf.read(executed / "01_sleepy.ipynb", as_version=4)
    assert partial.metadata["refine_iqa"]["status"] == "interrupted" and partial.metadata["papermill"]["exception"]
    assert partial.cells[0].cell_type == "markdown" and partial.cells[0].source.startswith("**Interrupted**")
    assert partial.cells[-1].metadata["papermill"]["status"] == "pending"  # never ran, not "completed"
    timings = json.loads((executed / "timings.json").read_text())
    assert timings["status"] == "interrupted" and timings["run_started"]
    assert [(t["notebook"], t["status"]) for t in timings["notebooks"]] == [("00_quick.ipynb", "done"),
                                                                          ("01_sleepy.ipynb", "interrupted")]
    (nbs / "rerun").write_text("1")
    rerun = subprocess.run(cmd + ["--only", "01", "02"], capture_output=True, text=True, timeout=180)
    assert rerun.returncode == 0, rerun.stderr
    assert (nbs / "finished").exists() and (nbs / "ran_02").exists()
    redone = nbf.read(executed / "01_sleepy.ipynb", as_version=4)
    assert "refine_iqa" not in redone.metadata and not redone.cells[0].source.startswith("**Interrupted**")
    timings = json.loads((executed / "timings.json").read_text())
    assert timings["status"] == "complete"
    assert [(t["notebook"], t["status"]) for t in timings["notebooks"]] == [("01_sleepy.ipynb", "done"),
                                                                          ("02_later.ipynb", "done")]
