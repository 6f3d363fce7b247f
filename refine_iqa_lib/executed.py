"""Executed notebooks as the repository keeps them: volatile fields normalised, figures checked.

``make reproduce`` writes each executed notebook to ``results/executed/<profile>/``; the ``tiny``
copies are committed, so that a reader sees every output without running anything. Two runs whose
numbers agree must write the same bytes, so :func:`normalise_notebook` removes what changes from
run to run and nothing else:

* timing: papermill's ``start_time`` / ``end_time`` / ``duration`` (notebook and cells), nbclient's
  ``execution`` timestamps, and durations written in outputs (``12.3 s``, ``0.78 s/step``,
  ``4 min``, tqdm's ``it/s``) become ``<t>``;
* progress bars: tqdm lines in text outputs are dropped, and so are tqdm's notebook widgets;
* widgets: the widget state (``metadata.widgets``, random model ids) and widget views are dropped,
  each output keeping its text form (a static notebook cannot run a widget anyway);
* identities: memory addresses (``at 0x7f...``) and pandas Styler ids (``T_3fa2c``);
* paths: the repository folder becomes ``.`` and the Python installation ``<python>``; papermill's
  input and output paths outside the repository keep only the file name;
* layout: consecutive stream outputs of one name are merged (how the kernel split them is timing),
  and the lines of jobs run at once (after the launcher's ``running N jobs, M at a time`` line,
  each prefixed ``[job]``) are grouped by job, jobs in name order, each job's lines in their order
  (how their lines interleave is timing).

Execution counts, numbers, tables and figures are kept as they are. :func:`figure_gaps` lists what
a folder of executed notebooks lacks: a numbered notebook with no executed copy, an error output, or
a figure-making cell (one that calls a plotting function) without an ``image/png`` output.
"""
from __future__ import annotations

import copy
import json
import re
import sys
from pathlib import Path
from typing import Any

from refine_iqa_lib.io import REPO_ROOT, write_text

__all__ = ["normalise_notebook", "normalise_file", "normalise_text", "group_parallel_jobs", "figure_gaps", "FIGURE_CALL"]

_WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
_TIMING_KEYS = ("start_time", "end_time", "duration")
# a tqdm bar: ends with its "[elapsed<remaining, rate]" block ("0it [00:00, ?it/s]" included)
_TQDM = re.compile(r"\[(\d+:)?\d\d:\d\d(<[^\]]*)?(, [^\]]*)?\]\s*$")
_DURATION = re.compile(r"(?<![\w.])\d+(\.\d+)?(e[-+]?\d+)? ?(s/step|s/it|it/s|examples/s|ms|s|min|h)\b")
_ADDRESS = re.compile(r"\bat 0x[0-9a-fA-F]{6,}")
_STYLER_ID = re.compile(r"\bT_[0-9a-f]{5}(?=[_\"' ])")
#: A code cell that calls one of these draws a figure; its executed copy must hold an ``image/png``.
FIGURE_CALL = re.compile(r"\b(plt\.subplots|plot_\w+|show_figure)\(")


def _path_prefixes() -> list[tuple[str, str]]:
    """(folder, replacement) pairs, longest first: the repository and the Python installation.

    A Python installation inside the repository (``make``'s ``.venv``) keeps its relative path.
    """
    root = str(REPO_ROOT)
    pairs = {prefix: "<python>" for prefix in (sys.prefix, sys.base_prefix)
             if not (prefix + "/").startswith(root + "/")}
    pairs[root] = "."
    return sorted(((k, v) for k, v in pairs.items() if k and k != "/"), key=lambda kv: -len(kv[0]))


def normalise_text(text: str) -> str:
    """One text output without its volatile parts (see the module docstring).

    >>> normalise_text("loading: 100%|##| 80/80 [00:01<00:00, 60.1it/s]\\n[stage1] step 2/2: loss 0.5 (0.79 s/step)\\n")
    '[stage1] step 2/2: loss 0.5 (<t>)\\n'
    >>> normalise_text("<pandas.io.formats.style.Styler at 0x7f5ea03508d0> done in 12.3 s, 3 steps, IoU 0.31")
    '<pandas.io.formats.style.Styler at 0x…> done in <t>, 3 steps, IoU 0.31'
    """
    for folder, short in _path_prefixes():
        text = text.replace(folder, short)
    lines = []
    for line in re.split(r"(?<=\n)", text):
        last = line.rstrip("\n").split("\r")[-1]          # what a terminal shows of a \r-redrawn line
        if _TQDM.search(last):
            continue
        end = "\n" if line.endswith("\n") else ""
        lines.append(last + end if "\r" in line else line)
    text = "".join(lines)
    text = _DURATION.sub("<t>", text)
    text = _ADDRESS.sub("at 0x…", text)
    return _STYLER_ID.sub("T_00000", text)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value)


def _normalise_output(out: dict) -> dict | None:
    """The output without volatile parts, or None when nothing is left (a progress bar)."""
    kind = out.get("output_type")
    if kind == "stream":
        text = normalise_text(_text(out.get("text", "")))
        return {**out, "text": text} if text else None
    if kind in ("display_data", "execute_result"):
        data = dict(out.get("data", {}))
        if _WIDGET_VIEW in data:
            data.pop(_WIDGET_VIEW)
            plain = _text(data.get("text/plain", ""))
            if not data or _TQDM.search(plain.strip().split("\n")[-1]):
                return None                                # a progress bar (tqdm.auto in a notebook)
        for mime, value in data.items():
            if mime.startswith("text/") or mime.endswith("json") and isinstance(value, (str, list)):
                data[mime] = normalise_text(_text(value))
        return {**out, "data": data}
    if kind == "error":
        return {**out, "traceback": [normalise_text(t) for t in out.get("traceback", [])],
                "evalue": normalise_text(str(out.get("evalue", "")))}
    return out


_PARALLEL_HEADER = re.compile(r"^running \d+ jobs, \d+ at a time")
_JOB_PREFIX = re.compile(r"^\[([^\]\s]+)\] ")


def group_parallel_jobs(text: str) -> str:
    r"""The lines after a ``running N jobs, M at a time`` line grouped by their ``[job]`` prefix
    (jobs in name order, each job's lines in their order; unprefixed lines after them).

    >>> print(group_parallel_jobs("x\nrunning 2 jobs, 2 at a time\n[b] 1\n[a] 1\n[b] 2\n[a] 2\ndone\n"), end="")
    x
    running 2 jobs, 2 at a time
    [a] 1
    [a] 2
    [b] 1
    [b] 2
    done
    """
    lines = (text if text.endswith("\n") else text + "\n").splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if _PARALLEL_HEADER.match(line)), None)
    if start is None:
        return text
    jobs: dict[str, list[str]] = {}
    rest: list[str] = []
    for line in lines[start + 1:]:
        m = _JOB_PREFIX.match(line)
        (jobs.setdefault(m.group(1), []) if m else rest).append(line)
    out = "".join(lines[:start + 1] + [line for job in sorted(jobs) for line in jobs[job]] + rest)
    return out if text.endswith("\n") else out[:-1]


def _merge_streams(outputs: list[dict]) -> list[dict]:
    merged: list[dict] = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if (prev is not None and out.get("output_type") == "stream" and prev.get("output_type") == "stream"
                and prev.get("name") == out.get("name")):
            merged[-1] = {**prev, "text": prev["text"] + out["text"]}
        else:
            merged.append(out)
    return merged


def normalise_notebook(nb: dict) -> dict:
    """A copy of the notebook (nbformat 4 as a dict) with its volatile fields normalised; applying
    it twice changes nothing more."""
    nb = copy.deepcopy(dict(nb))
    meta = nb.setdefault("metadata", {})
    meta.pop("widgets", None)
    pm = meta.get("papermill")
    if isinstance(pm, dict):
        for key in _TIMING_KEYS:
            pm.pop(key, None)
        for key in ("input_path", "output_path"):
            if isinstance(pm.get(key), str):
                path = normalise_text(pm[key])
                pm[key] = Path(path).name if Path(path).is_absolute() else path  # outside the repository
    for i, cell in enumerate(nb.get("cells", [])):
        cmeta = cell.get("metadata", {})
        cmeta.pop("execution", None)
        if isinstance(cmeta.get("papermill"), dict):
            for key in _TIMING_KEYS:
                cmeta["papermill"].pop(key, None)
        if "injected-parameters" in cmeta.get("tags", []):
            cell["id"] = "injected-parameters"                # papermill gives it a random id
        if cell.get("cell_type") == "code":
            outputs = [_normalise_output(o) for o in cell.get("outputs", [])]
            cell["outputs"] = [{**o, "text": group_parallel_jobs(o["text"])} if o.get("output_type") == "stream" else o
                               for o in _merge_streams([o for o in outputs if o is not None])]
    return nb


def normalise_file(path: str | Path) -> Path:
    """Normalise an executed notebook in place (atomically), written as nbformat writes it."""
    import nbformat

    path = Path(path)
    nb = normalise_notebook(json.loads(path.read_text(encoding="utf-8")))
    text = nbformat.writes(nbformat.from_dict(nb))
    return write_text(path, text if text.endswith("\n") else text + "\n")


def figure_gaps(executed_dir: str | Path, notebooks: list[Path]) -> list[str]:
    """What the executed copies in ``executed_dir`` lack, one line each (empty when complete): a
    notebook of ``notebooks`` (e.g. :func:`refine_iqa_lib.reproduce.numbered_notebooks`) with no
    executed copy, an error output, or a figure-making cell (:data:`FIGURE_CALL`, read from the
    executed copy's source) without an ``image/png`` output."""
    executed_dir = Path(executed_dir)
    problems = []
    for source in notebooks:
        copy_ = executed_dir / source.name
        if not copy_.is_file():
            problems.append(f"{copy_}: no executed copy of {source.name}")
            continue
        nb = json.loads(copy_.read_text(encoding="utf-8"))
        code = [c for c in nb.get("cells", []) if c.get("cell_type") == "code"]
        for n, cell in enumerate(code, 1):
            outputs = cell.get("outputs", [])
            if any(o.get("output_type") == "error" for o in outputs):
                problems.append(f"{copy_}: code cell {n} ended in an error")
            elif FIGURE_CALL.search(_text(cell.get("source", ""))) and not any(
                    "image/png" in o.get("data", {}) for o in outputs):
                problems.append(f"{copy_}: code cell {n} draws a figure but holds no image/png output")
    return problems
