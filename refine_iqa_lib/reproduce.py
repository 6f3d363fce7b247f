"""Run the numbered notebooks headless, in order, through papermill.

``make reproduce`` calls ``python -m refine_iqa_lib.reproduce --profile tiny``. Each notebook
``notebooks/NN_*.ipynb`` is executed with its ``parameters`` cell set to the profile (and any
``--set`` overrides); executed copies go to ``results/executed/<profile>/``, their volatile fields
(timestamps, durations, progress bars, widget state, absolute paths) normalised by
:func:`refine_iqa_lib.executed.normalise_file`, so that a run whose numbers agree writes the same
bytes: the ``tiny`` copies are committed. On a failure the runner stops, names the notebook and
the failing cell's error, and exits non-zero.

Ctrl-C is a clean stop: the kernel is interrupted (killed if it does not stop within
:data:`INTERRUPT_GRACE_S`) and shut down, the partial executed copy is marked interrupted (a
first markdown cell and ``metadata.refine_iqa.status = "interrupted"``; cells that never ran stay
``pending``), one line names the notebook and the command that resumes from it, and the runner
exits 130. ``timings.json`` beside the executed copies always describes the latest invocation only
(``run_started``, ``status``: running / complete / failed / interrupted, and one entry per notebook
it ran with that notebook's ``status``), rewritten after every notebook; notebooks from earlier
runs are not listed. A rerun executes the interrupted notebook again from the top.

``--dry-run`` executes nothing: it checks that the model and data folders have what each step
needs and prints the generation engine and every training command (``accelerate launch ...``)
with its resolved settings; with ``--nodes N`` one command per node.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import os
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.config import REPO_ROOT, ConfigError, load_config, parse_overrides
from refine_iqa_lib.executed import normalise_file
from refine_iqa_lib.io import repo_relative, write_json, write_text

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
_NUMBERED = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")
#: Seconds a kernel has to stop after Ctrl-C (KeyboardInterrupt in its cell) before it is killed.
INTERRUPT_GRACE_S = 20.0


@dataclass
class NotebookFailure(Exception):
    notebook: str
    cell: int | None
    error: str

    def __str__(self) -> str:
        where = f" (cell {self.cell})" if self.cell is not None else ""
        return f"{self.notebook}{where} failed: {self.error}"


@dataclass
class NotebookInterrupted(Exception):
    """Ctrl-C while ``notebook`` ran; ``executed`` is its partial copy (marked interrupted) and
    ``remaining`` the notebooks (this one first) a resume must run."""

    notebook: str
    executed: Path | None = None
    cells: str = ""
    remaining: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        at = f" ({self.cells})" if self.cells else ""
        return f"{self.notebook} interrupted{at}"


def numbered_notebooks(directory: Path = NOTEBOOK_DIR, only: list[str] | None = None) -> list[Path]:
    """The ``NN_name.ipynb`` notebooks in order; ``only`` keeps those whose number or name matches."""
    books = sorted(p for p in Path(directory).glob("*.ipynb") if _NUMBERED.match(p.name))
    if only:
        wanted = set(only)
        books = [p for p in books if p.name[:2] in wanted or p.stem in wanted or p.name in wanted]
        if not books:
            raise ValueError(f"--only {only} matches no notebook in {directory}")
    return books


def _failure_from(exc: Exception, nb_path: Path) -> NotebookFailure:
    cell = getattr(exc, "exec_count", None)
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = getattr(exc, "evalue", str(exc))
    return NotebookFailure(nb_path.name, cell, f"{ename}: {evalue}")


def _tracking_kernel_manager(started: list):
    """nbclient's kernel manager class, recording every instance in ``started`` (so that the main
    thread can interrupt the kernel papermill drives from its worker thread)."""
    from jupyter_client.manager import AsyncKernelManager

    class TrackedKernelManager(AsyncKernelManager):
        async def _async_launch_kernel(self, kernel_cmd, **kw):
            await super()._async_launch_kernel(kernel_cmd, **kw)
            pid = getattr(self.provisioner, "pid", None)
            if pid:
                started.append(pid)

    return TrackedKernelManager


def _signal_kernels(started: list, sig: int) -> None:
    for pid in started:
        try:
            os.killpg(pid, sig)  # the kernel leads its own session: reach its children too
        except (ProcessLookupError, PermissionError):
            pass


def _alive(pid: int) -> bool:
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:  # our child and it has exited (now reaped)
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _reap_kernels(started: list, wait_s: float = 5.0) -> None:
    """Make sure every kernel of this notebook has exited (SIGTERM, then SIGKILL after ``wait_s``)."""
    live = [pid for pid in started if _alive(pid)]
    if not live:
        return
    _signal_kernels(live, signal.SIGTERM)
    deadline = time.monotonic() + wait_s
    while any(_alive(p) for p in live) and time.monotonic() < deadline:
        time.sleep(0.05)
    _signal_kernels([p for p in live if _alive(p)], signal.SIGKILL)


def _stop_kernel(worker: threading.Thread, started: list) -> None:
    """Interrupt the kernel (KeyboardInterrupt in the running cell, so papermill saves the partial
    notebook and nbclient shuts the kernel down); kill it if it is still running after the grace
    period or a second Ctrl-C; wait for the worker to finish."""
    _signal_kernels(started, signal.SIGINT)
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    try:
        while worker.is_alive() and time.monotonic() < deadline:
            if not started:  # interrupted while the kernel was starting: interrupt it once it exists
                time.sleep(0.1)
                _signal_kernels(started, signal.SIGINT)
            worker.join(0.1)
    except KeyboardInterrupt:
        pass
    while worker.is_alive():
        _signal_kernels(started, signal.SIGKILL)
        try:
            worker.join(0.5)
        except KeyboardInterrupt:
            continue


def mark_interrupted(nb_path: Path, out: Path, when: str) -> str:
    """Mark the executed copy ``out`` (the input notebook if papermill wrote none) as interrupted:
    ``metadata.refine_iqa.status``, papermill's ``exception`` flag, a first markdown cell, and the
    cells that never ran put back to ``pending``. Returns "k of n code cells ran"."""
    import nbformat

    nb = nbformat.read(str(out if out.is_file() else nb_path), as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    done = 0
    for c in code:
        pm_meta = c.metadata.setdefault("papermill", {})
        if c.get("execution_count") is not None and pm_meta.get("status") == "completed":
            done += 1
            continue
        break
    for c in code[done + 1:]:
        if c.get("execution_count") is None:
            c.metadata.setdefault("papermill", {})["status"] = "pending"
    cells = f"{done} of {len(code)} code cells ran"
    nb.metadata.setdefault("papermill", {})["exception"] = True
    nb.metadata["refine_iqa"] = {"status": "interrupted", "interrupted_at": when, "cells": cells}
    banner = nbformat.v4.new_markdown_cell(
        f"**Interrupted** (Ctrl-C) at {when}: {cells}. This is a partial run, not a result; "
        "rerun the notebook to complete it.", metadata={"tags": ["refine-iqa-interrupted"]})
    nb.cells.insert(0, banner)
    write_text(out, nbformat.writes(nb))
    return cells


def run_notebook(path: Path, out_dir: Path, profile: str, overrides: dict | None = None,
                 kernel_name: str = "python3", timeout: int | None = None) -> Path:
    """Execute one notebook with papermill; return the executed copy's path (normalised, also when
    a cell failed).

    Papermill runs in a worker thread; Ctrl-C in this (main) thread stops the kernel
    (:func:`_stop_kernel`), marks the partial copy (:func:`mark_interrupted`) and raises
    :class:`NotebookInterrupted`."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    env_before = os.environ.get("TQDM_MININTERVAL")
    os.environ.setdefault("TQDM_MININTERVAL", "5")  # keep executed notebooks small
    started: list = []
    outcome: dict = {}

    def work() -> None:
        try:
            pm.execute_notebook(
                str(path), str(out), parameters={"profile": profile, "overrides": overrides or {}},
                kernel_name=kernel_name, cwd=str(path.parent), progress_bar=False,
                execution_timeout=timeout, log_output=False,
                kernel_manager_class=_tracking_kernel_manager(started),
            )
        except BaseException as e:  # handed to the main thread
            outcome["error"] = e

    worker = threading.Thread(target=work, name=f"papermill {path.name}", daemon=True)
    try:
        worker.start()
        try:
            while worker.is_alive():
                worker.join(0.2)
        except KeyboardInterrupt:
            _stop_kernel(worker, started)
            when = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            _reap_kernels(started)
            raise NotebookInterrupted(path.name, out, mark_interrupted(path, out, when)) from None
    finally:
        _reap_kernels(started)
        if env_before is None:
            os.environ.pop("TQDM_MININTERVAL", None)
    err = outcome.get("error")
    if out.is_file() and (err is None or isinstance(err, pm.PapermillExecutionError)):
        normalise_file(out)
    if isinstance(err, pm.PapermillExecutionError):
        raise _failure_from(err, path) from None
    if err is not None:
        raise err
    return out


def run_all(profile: str, overrides: dict | None = None, only: list[str] | None = None,
            results_dir: Path | None = None, directory: Path = NOTEBOOK_DIR) -> list[dict]:
    """Run every numbered notebook in order; stop at the first failure (raising NotebookFailure)
    or at Ctrl-C (raising :class:`NotebookInterrupted`). ``timings.json`` is rewritten after every
    notebook (see the module docstring)."""
    from tqdm.auto import tqdm

    cfg = load_config(profile, overrides)
    out_dir = (results_dir or cfg.results_dir) / "executed" / cfg.profile
    books = numbered_notebooks(directory, only)
    started = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    timings: list[dict] = []

    def record(status: str) -> None:
        write_json(out_dir / "timings.json", {"profile": cfg.profile, "run_started": started, "status": status,
                                              "notebooks": timings})

    record("running")
    bar = tqdm(books, desc=f"notebooks ({cfg.profile})", unit="nb")
    try:
        for i, nb in enumerate(bar):
            bar.set_postfix_str(nb.name)
            t0 = time.perf_counter()
            entry = {"notebook": nb.name, "status": "running", "seconds": None}
            timings.append(entry)
            try:
                run_notebook(nb, out_dir, profile, overrides)
            except NotebookInterrupted as e:
                entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 1))
                record("interrupted")
                e.remaining = [b.name for b in books[i:]]
                raise
            except KeyboardInterrupt:  # between notebooks or before papermill started
                entry.update(status="interrupted", seconds=round(time.perf_counter() - t0, 1))
                record("interrupted")
                raise NotebookInterrupted(nb.name, None, "", [b.name for b in books[i:]]) from None
            except BaseException:
                entry.update(status="failed", seconds=round(time.perf_counter() - t0, 1))
                record("failed")
                raise
            entry.update(status="done", seconds=round(time.perf_counter() - t0, 1))
            record("running" if i + 1 < len(books) else "complete")
            tqdm.write(f"  done {nb.name} in {entry['seconds']:.1f} s")
    finally:
        bar.close()
    if only is None and directory == NOTEBOOK_DIR:
        from refine_iqa_lib.artifacts import write_index

        tqdm.write(f"  wrote {write_index(cfg)}")
    return timings


def resume_command(profile: str, sets: list[str], remaining: list[str], directory: Path = NOTEBOOK_DIR) -> str:
    """The command that reruns ``remaining`` (the interrupted notebook first) with the same settings.

    >>> resume_command("smoke", ["stage2.max_steps=3"], ["04_stage2_grpo.ipynb", "05_eval_perception.ipynb"])
    'python -m refine_iqa_lib.reproduce --profile smoke --set stage2.max_steps=3 --only 04 05'
    """
    import shlex

    parts = ["python -m refine_iqa_lib.reproduce", "--profile", shlex.quote(profile)]
    for item in sets:
        parts += ["--set", shlex.quote(item)]
    if Path(directory).resolve() != NOTEBOOK_DIR.resolve():
        parts += ["--notebooks", shlex.quote(str(directory))]
    if remaining:
        parts += ["--only"] + [n[:2] for n in remaining]
    return " ".join(parts)


def dry_run(profile: str, overrides: dict | None = None) -> int:
    """Check inputs and print every training command of the pipeline without running anything."""
    from refine_iqa_lib.training.launch import pipeline_plan

    cfg = load_config(profile, overrides)
    problems = 0
    for step in pipeline_plan(cfg):
        status = "ok" if not step["problems"] else "MISSING"
        print(f"[{status}] {step['name']}: {step['description']}")
        for p in step["problems"]:
            print(f"    - {p}")
            problems += 1
        for note in step.get("notes", []):
            print(f"    note: {note}")
        for label, line in step.get("commands", []):
            print(f"    {label + ' ' if label else ''}$ {line}")
    print(f"\n{problems} problem(s) found." if problems else "\nAll inputs present.")
    return 1 if problems else 0


def _parse_sets(items: list[str]) -> dict:
    """``["a.b=1"]`` -> ``{"a.b": 1}`` (validated), the form notebooks receive as ``overrides``."""
    parse_overrides(items)  # raises ConfigError naming an unknown key
    out = {}
    for item in items:
        k, v = item.split("=", 1)
        out[k.strip()] = yaml.safe_load(v) if v.strip() else ""
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.reproduce", description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="tiny", help="smoke | tiny | paper (default: tiny)")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted config override, repeatable (e.g. stage2.max_steps=100)")
    ap.add_argument("--only", nargs="*", help="notebook numbers or names to run (default: all)")
    ap.add_argument("--notebooks", type=Path, default=NOTEBOOK_DIR, help="folder of NN_*.ipynb (default: notebooks/)")
    ap.add_argument("--dry-run", action="store_true", help="check inputs and print the commands only")
    ap.add_argument("--nodes", type=int, default=None, metavar="N",
                    help="machines the training runs on (launch.num_machines=N; N > 1 also selects the multi-node "
                         "ZeRO-3 config); with --dry-run, prints each node's command")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        overrides = _parse_sets(args.sets)
        cfg = load_config(args.profile, overrides)
        if args.nodes is not None:
            from refine_iqa_lib.training.launch import node_overrides

            overrides.update(node_overrides(args.nodes, cfg))
            load_config(args.profile, overrides)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for nb in numbered_notebooks(args.notebooks, only=args.only):
            print(nb.name)
        return 0
    if args.dry_run:
        return dry_run(args.profile, overrides)
    t0 = time.perf_counter()
    try:
        run_all(args.profile, overrides, args.only, directory=args.notebooks)
    except NotebookInterrupted as e:
        where = f"; partial copy marked interrupted: {repo_relative(e.executed)}" if e.executed else ""
        print(f"interrupted: {e}, kernel stopped{where}; resume with: "
              f"{resume_command(args.profile, args.sets, e.remaining, args.notebooks)}", file=sys.stderr)
        return 130
    except NotebookFailure as e:
        print(f"\nerror: {e}\nThe partial notebook (with the failing cell) is in results/executed/{args.profile}/.",
              file=sys.stderr)
        return 1
    print(f"All notebooks ran with profile {args.profile!r} in {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
