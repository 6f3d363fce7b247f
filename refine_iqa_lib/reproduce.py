"""Run the numbered notebooks headless, in order, through papermill.

``make reproduce`` calls ``python -m refine_iqa_lib.reproduce --profile tiny``. Each notebook
``notebooks/NN_*.ipynb`` is executed with its ``parameters`` cell set to the profile (and any
``--set`` overrides); executed copies go to ``results/executed/<profile>/``. On a failure the
runner stops, names the notebook and the failing cell's error, and exits non-zero.

``--dry-run`` executes nothing: it checks that the model and data folders have what each step
needs and prints every training command (``accelerate launch ...``) with its resolved settings.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from refine_iqa_lib.config import REPO_ROOT, ConfigError, load_config, parse_overrides
from refine_iqa_lib.io import write_json

NOTEBOOK_DIR = REPO_ROOT / "notebooks"
_NUMBERED = re.compile(r"^(\d\d)_[\w-]+\.ipynb$")


@dataclass
class NotebookFailure(Exception):
    notebook: str
    cell: int | None
    error: str

    def __str__(self) -> str:
        where = f" (cell {self.cell})" if self.cell is not None else ""
        return f"{self.notebook}{where} failed: {self.error}"


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


def run_notebook(path: Path, out_dir: Path, profile: str, overrides: dict | None = None,
                 kernel_name: str = "python3", timeout: int | None = None) -> Path:
    """Execute one notebook with papermill; return the executed copy's path."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / path.name
    env_before = os.environ.get("TQDM_MININTERVAL")
    os.environ.setdefault("TQDM_MININTERVAL", "5")  # keep executed notebooks small
    try:
        pm.execute_notebook(
            str(path), str(out), parameters={"profile": profile, "overrides": overrides or {}},
            kernel_name=kernel_name, cwd=str(path.parent), progress_bar=False,
            execution_timeout=timeout, log_output=False,
        )
    except pm.PapermillExecutionError as e:
        raise _failure_from(e, path) from None
    finally:
        if env_before is None:
            os.environ.pop("TQDM_MININTERVAL", None)
    return out


def run_all(profile: str, overrides: dict | None = None, only: list[str] | None = None,
            results_dir: Path | None = None, directory: Path = NOTEBOOK_DIR) -> list[dict]:
    """Run every numbered notebook in order; stop at the first failure (raising NotebookFailure)."""
    from tqdm.auto import tqdm

    cfg = load_config(profile, overrides)
    out_dir = (results_dir or cfg.results_dir) / "executed" / cfg.profile
    books = numbered_notebooks(directory, only)
    timings = []
    bar = tqdm(books, desc=f"notebooks ({cfg.profile})", unit="nb")
    for nb in bar:
        bar.set_postfix_str(nb.name)
        t0 = time.perf_counter()
        run_notebook(nb, out_dir, profile, overrides)
        timings.append({"notebook": nb.name, "seconds": round(time.perf_counter() - t0, 1)})
        tqdm.write(f"  done {nb.name} in {timings[-1]['seconds']:.1f} s")
    write_json(out_dir / "timings.json", {"profile": cfg.profile, "notebooks": timings})
    if only is None and directory == NOTEBOOK_DIR:
        from refine_iqa_lib.artifacts import write_index

        tqdm.write(f"  wrote {write_index(cfg)}")
    return timings


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
        if step.get("command"):
            print("    $ " + step["command"])
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
    ap.add_argument("--dry-run", action="store_true", help="check inputs and print the commands only")
    ap.add_argument("--list", action="store_true", help="list the notebooks and exit")
    args = ap.parse_args(argv)
    try:
        overrides = _parse_sets(args.sets)
        load_config(args.profile, overrides)
    except (ConfigError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.list:
        for nb in numbered_notebooks(only=args.only):
            print(nb.name)
        return 0
    if args.dry_run:
        return dry_run(args.profile, overrides)
    t0 = time.perf_counter()
    try:
        run_all(args.profile, overrides, args.only)
    except NotebookFailure as e:
        print(f"\nerror: {e}\nThe partial notebook (with the failing cell) is in results/executed/{args.profile}/.",
              file=sys.stderr)
        return 1
    print(f"All notebooks ran with profile {args.profile!r} in {time.perf_counter() - t0:.0f} s.")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
