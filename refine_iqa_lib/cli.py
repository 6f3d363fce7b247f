"""``refine-iqa``: one command-line tool for scoring, evaluating, building, training and reproducing.

::

    refine-iqa score --model DIR INPUT... [--mode no_think|think] [--method prob|num] [--out FILE.csv|.json]
                     [--raw-orientation] [--pixel-limit N]
    refine-iqa evaluate --model DIR [--datasets koniq spaq ...] [--qbench] [--profile P] [--set k=v] [--out-dir DIR]
        [--engine transformers|vllm]
    refine-iqa build ...       # = python -m refine_iqa_lib.data.build ...
    refine-iqa train ...       # = python -m refine_iqa_lib.training.cli ...
    refine-iqa reproduce ...   # = python -m refine_iqa_lib.reproduce ...

``score`` is :class:`refine_iqa_lib.method.scoring.Scorer` on a command line: INPUT is image
files, folders (their image files, sorted by name) or CSV files with an image column
(``--image-column``, paths relative to the CSV's folder unless ``--image-dir``). One row per input
(image, score, method, mode, parsed, error); every picture is opened by
:func:`refine_iqa_lib.io.open_image` (16-bit and float pictures scaled to 8 bits, EXIF orientation
applied unless ``--raw-orientation``), and one that cannot be read or is refused (above
``--pixel-limit``, an aspect ratio beyond the processor's 200:1) gets a row naming it and the reason
or limit while the others are scored; the exit code is then 2. ``--labels FILE`` scores the images of a
labels file (:func:`refine_iqa_lib.data.iqa.load_labels`) and prints SRCC / PLCC against its MOS.

``evaluate`` is the Table 3 / Table 4 harness for any local Qwen2.5-VL checkpoint folder: it loads
the folder once, runs :func:`refine_iqa_lib.evaluation.scoring_eval.evaluate_scoring` (and with
``--qbench`` :func:`refine_iqa_lib.evaluation.qbench.evaluate_qbench`) under the model name
``evaluated:<folder name>``, writes ``<results>/<profile>/evaluated/<name>/run_config.json`` (the
model folder and a content hash of its files, decoding settings and generation engine, seed,
library versions) and Tables 3-4 with the folder's rows marked "evaluated here". ``--engine vllm``
generates every answer (think mode, numeric answers, Q-Bench) greedily with vLLM
(:class:`refine_iqa_lib.vllm_engine.VLLMGreedy`, the ``launch.vllm_*`` memory and parallel
settings); Eq. 8 still reads the policy (one teacher-forced forward in no-think mode). Without an
importable vLLM it stops with a one-line error before loading anything.

Exit codes: 0 done; 1 bad arguments, configuration or model folder; 2 some inputs could not be read or were
refused. Progress lines go to the terminal (:func:`refine_iqa_lib.configure_command_logging`; with
the rows on stdout, to stderr).
"""
from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import math
import sys
from pathlib import Path
from typing import Sequence

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.io import DEFAULT_PIXEL_LIMIT

__all__ = ["main", "expand_inputs", "IMAGE_SUFFIXES", "model_hash", "evaluate_folder"]

log = logging.getLogger(__name__)

#: File name endings ``score`` treats as images inside a folder (case-insensitive).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")
#: Files of a model folder that decide what it computes (hashed into run_config.json).
HASHED_SUFFIXES = (".json", ".safetensors", ".bin", ".txt", ".model", ".jinja", ".tiktoken")
#: Subcommands handed to an existing entry point (their own ``--help`` applies).
DELEGATED = {
    "build": ("refine_iqa_lib.data.build", "build Refine-Perception and its Stage-1 samples"),
    "train": ("refine_iqa_lib.training.cli", "run one training stage (warmup, 1, 2)"),
    "reproduce": ("refine_iqa_lib.reproduce", "run every notebook with a profile (the paper's artifacts)"),
}
EXIT_OK, EXIT_ERROR, EXIT_INPUTS_FAILED = 0, 1, 2


# --------------------------------------------------------------------------------------------
# score


def expand_inputs(inputs: Sequence[str], image_column: str = "image", image_dir: str | None = None) -> list[str]:
    """The image paths ``inputs`` name, in order: a folder gives its image files (sorted), a
    ``.csv`` its ``image_column`` (relative paths against ``image_dir`` or the CSV's folder),
    anything else is taken as one image path (a missing one becomes an error row later)."""
    import pandas as pd

    out: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file())
            images = [p for p in files if p.suffix.lower() in IMAGE_SUFFIXES]
            if len(images) < len(files):
                log.info("%s: %d file(s) without an image suffix %s not scored", path, len(files) - len(images),
                         "/".join(IMAGE_SUFFIXES))
            out += [str(p) for p in images]
        elif path.suffix.lower() == ".csv" and path.is_file():
            df = pd.read_csv(path)
            if image_column not in df.columns:
                raise ValueError(f"{path}: no column {image_column!r} (found {list(df.columns)}); expected the "
                                 "image paths there (set --image-column)")
            base = Path(image_dir) if image_dir else path.parent
            for line, v in enumerate(df[image_column], start=2):
                if not isinstance(v, str) or not v.strip():
                    raise ValueError(f"{path}, line {line}: empty {image_column!r}; expected an image path")
                p = Path(v.strip())
                out.append(str(p if p.is_absolute() else base / p))
        else:
            out.append(str(path))
    return out


def _json_rows(rows: list[dict]) -> list[dict]:
    return [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in r.items()} for r in rows]


def write_rows(rows: list[dict], out: str | Path) -> Path:
    """Write score rows as CSV or JSON (by suffix), atomically."""
    import pandas as pd

    from refine_iqa_lib.io import write_json, write_text
    from refine_iqa_lib.method.scoring import SCORER_COLUMNS

    out = Path(out)
    if out.suffix.lower() == ".json":
        return write_json(out, _json_rows(rows))
    if out.suffix.lower() == ".csv":
        return write_text(out, pd.DataFrame(rows, columns=list(SCORER_COLUMNS)).to_csv(index=False))
    raise ValueError(f"--out {out}: expected a file ending in .csv or .json")


def _score(args) -> int:
    import pandas as pd

    from refine_iqa_lib.method.scoring import SCORER_COLUMNS, Scorer

    labels = None
    if args.labels:
        from refine_iqa_lib.data.iqa import load_labels

        labels = load_labels(args.labels, image_dir=args.image_dir, image_column=args.image_column,
                             mos_column=args.mos_column, mos_range=tuple(args.mos_range),
                             higher_is_better=not args.lower_is_better)
    images = expand_inputs(args.inputs, args.image_column, args.image_dir)
    if labels is not None:
        images += list(labels["image"])
    if not images:
        print("error: no inputs to score (give image files, folders, CSV files or --labels)", file=sys.stderr)
        return EXIT_ERROR
    from refine_iqa_lib.io import ImageRules

    rules = ImageRules(pixel_limit=args.pixel_limit, exif_orientation=not args.raw_orientation)
    # with the rows on stdout, progress lines and warnings go to stderr (the library logs to stdout)
    with contextlib.redirect_stdout(sys.stderr if not args.out else sys.stdout):
        log.info("scoring %d input(s) with %s (%s, %s)", len(images), args.model, args.mode, args.method)
        scorer = Scorer(args.model, mode=args.mode, method=args.method, batch_size=args.batch_size,
                        device=args.device, max_new_tokens=args.max_new_tokens, progress=not args.no_progress,
                        rules=rules)
        rows = scorer.score(images)
    failed = [r for r in rows if r["error"] is not None]
    if args.out:
        path = write_rows(rows, args.out)
        print(f"scored {len(rows) - len(failed)} of {len(rows)} input(s) ({args.mode}, {scorer.method}); "
              f"wrote {path}")
    else:
        sys.stdout.write(pd.DataFrame(rows, columns=list(SCORER_COLUMNS)).to_csv(index=False))
    if labels is not None:
        from refine_iqa_lib.evaluation.metrics import correlation_report

        got = {r["image"]: r["score"] for r in rows}
        pred = [got[str(p)] for p in labels["image"]]
        rep = correlation_report(pred, labels["mos"].to_numpy(), logistic=False)
        print(f"{args.labels}: SRCC {rep['srcc']:.4f}, PLCC {rep['plcc']:.4f} ({rep['plcc_kind']}), "
              f"n = {rep['n']} ({rep['n_nan']} without a score)")
    for r in failed:
        print(f"failed: {r['image']}: {r['error']}", file=sys.stderr)
    if failed:
        print(f"{len(failed)} of {len(rows)} input(s) could not be read or were refused; their rows say why",
              file=sys.stderr)
        return EXIT_INPUTS_FAILED
    return EXIT_OK


# --------------------------------------------------------------------------------------------
# evaluate


def model_hash(folder: str | Path) -> dict:
    """SHA-256 of each file of a model folder that decides what it computes (config, tokenizer,
    weights: :data:`HASHED_SUFFIXES`, top level) and one hash over all of them (sorted by name)."""
    folder = Path(folder)
    files = {}
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix.lower() in HASHED_SUFFIXES:
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for block in iter(lambda: f.read(1 << 20), b""):
                    h.update(block)
            files[p.name] = h.hexdigest()
    total = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest()
    return {"sha256": total, "files": files}


def evaluate_folder(cfg, folder: str | Path, datasets: Sequence[str] | None = None, qbench: bool = False,
                    modes: Sequence[str] | None = None, methods: Sequence[str] | None = None,
                    device: str | None = None, engine: str = "transformers") -> dict:
    """Tables 3 (and with ``qbench`` 4) for any local Qwen2.5-VL folder; returns ``{"name",
    "scoring", "qbench", "run_config", "tables"}`` (records, the run_config.json path, the two
    tables' rows of this folder). ``engine``: what generates the answers, ``transformers`` or
    ``vllm`` (:mod:`refine_iqa_lib.vllm_engine`; checked before the model is loaded)."""
    import torch

    from refine_iqa_lib.environment import package_versions
    from refine_iqa_lib.evaluation.qbench import evaluate_qbench, qbench_result_path
    from refine_iqa_lib.evaluation.results import result_dir
    from refine_iqa_lib.evaluation.scoring_eval import evaluate_scoring, method_name, scoring_result_path
    from refine_iqa_lib.evaluation.tables import EVALUATED_SECTION, our_table
    from refine_iqa_lib.generation import GREEDY_FIELDS
    from refine_iqa_lib.io import repo_relative, using_image_rules, write_json
    from refine_iqa_lib.models import check_model_dir, load_policy
    from refine_iqa_lib.runs import evaluated_name, result_stem

    from refine_iqa_lib.vllm_engine import ENGINES, VLLMGreedy, require_vllm

    if engine not in ENGINES:
        raise ValueError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if engine == "vllm":
        require_vllm("--engine vllm")
    folder = check_model_dir(Path(folder).expanduser().resolve())
    name = evaluated_name(folder)
    datasets = list(datasets or cfg.scoring.eval)
    modes = list(modes or cfg.eval.modes)
    methods = [method_name(m) for m in (methods or cfg.eval.methods)]
    device = device or ("cuda" if torch.cuda.is_available() else None)
    dtype = cfg.model.dtype if device else "float32"
    loaded = load_policy(folder, dtype=dtype, min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                         device=device)
    generator = None
    if engine == "vllm":
        L = cfg.launch
        eos = getattr(loaded[0].generation_config, "eos_token_id", None)  # what transformers would stop at
        generator = VLLMGreedy(folder, loaded[1], eos_token_id=eos, dtype=cfg.model.dtype,
                               min_pixels=cfg.model.min_pixels, max_pixels=cfg.model.max_pixels,
                               gpu_memory_utilization=L.vllm_gpu_memory_utilization,
                               tensor_parallel_size=L.vllm_tensor_parallel_size,
                               max_model_length=L.vllm_max_model_length, seed=cfg.seed)
    with using_image_rules(cfg):  # every picture opened by the config's images rules
        scoring = evaluate_scoring(cfg, name, datasets=datasets, modes=modes, methods=methods, loaded=loaded,
                                   model_path=folder, engine=generator)
        qb = (evaluate_qbench(cfg, name, modes=modes, loaded=loaded, model_path=folder, engine=generator)
              if qbench else [])
    run_config = {
        "model": name, "model_folder": repo_relative(folder), "model_hash": model_hash(folder),
        "profile": cfg.profile, "seed": cfg.seed, "datasets": datasets, "qbench": bool(qbench),
        "decoding": {"greedy": {k: v for k, v in GREEDY_FIELDS.items()}, "max_new_tokens": cfg.eval.max_new_tokens,
                     "batch_size": cfg.eval.batch_size, "modes": modes, "methods": methods, "dtype": dtype,
                     "device": str(device or "cpu"), "min_pixels": cfg.model.min_pixels,
                     "max_pixels": cfg.model.max_pixels, "eq8": "softmax over digits 0-4 at the answer's integer "
                     "position, expectation + 0.5",
                     "engine": generator.settings if generator is not None else {"engine": "transformers"}},
        "eval": {"max_samples": cfg.eval.max_samples, "logistic_plcc": cfg.eval.logistic_plcc,
                 "qbench_root": cfg.eval.qbench_root, "qbench_split": cfg.eval.qbench_split,
                 "skip_unreadable": cfg.eval.skip_unreadable},
        "images": {"exif_orientation": cfg.images.exif_orientation, "pixel_limit": cfg.images.pixel_limit},
        "roots": {d: str(cfg.scoring.roots.get(d, "")) for d in datasets},
        "versions": {k: v for k, v in package_versions().items() if v != "not installed"},
        "results": [repo_relative(scoring_result_path(cfg, name, r["dataset"], r["mode"], r["method"])) for r in scoring]
                   + [repo_relative(qbench_result_path(cfg, name, r["mode"])) for r in qb],
    }
    path = write_json(result_dir(cfg, "scoring").parent / "evaluated" / result_stem(name) / "run_config.json",
                      run_config)
    tables = {}
    for n in ((3, 4) if qbench else (3,)):
        df = our_table(cfg, n, write=True)
        tables[n] = df[df["section"] == EVALUATED_SECTION]
    return {"name": name, "scoring": scoring, "qbench": qb, "run_config": path, "tables": tables}


def _evaluate(args) -> int:
    from refine_iqa_lib.config import load_config

    sets = (list(args.sets) + ([f"paths.results_dir={args.out_dir}"] if args.out_dir else [])
            + (["images.exif_orientation=false"] if args.raw_orientation else []))
    cfg = load_config(args.profile, sets)
    log.info("evaluating %s (profile %s): datasets %s, modes %s, methods %s%s", args.model, cfg.profile,
             list(args.datasets or cfg.scoring.eval), list(args.modes or cfg.eval.modes),
             list(args.methods or cfg.eval.methods), ", with Q-Bench" if args.qbench else "")
    got = evaluate_folder(cfg, args.model, datasets=args.datasets, qbench=args.qbench, modes=args.modes,
                          methods=args.methods, device=args.device, engine=args.engine)
    print(f"evaluated {args.model} as {got['name']!r} (profile {cfg.profile}):")
    for r in got["scoring"]:
        print(f"  {r['dataset']:<10} {r['mode']:<8} {r['method']:<4} SRCC {_fmt(r.get('srcc'))}  "
              f"PLCC {_fmt(r.get('plcc'))}  n = {r.get('n')}")
    for r in got["qbench"]:
        print(f"  qbench     {r['mode']:<8}      accuracy {_fmt(r['accuracy'].get('overall'))}  n = {r['n']}")
    for n, df in got["tables"].items():
        shown = df.drop(columns=["section"]).dropna(axis=1, how="all")
        print(f"\nTable {n}, rows evaluated here:\n{shown.to_markdown(index=False)}")
    print(f"\nrun config: {got['run_config']}")
    print(f"tables: {cfg.results_dir / 'tables'}/table{{3,4}}_{cfg.profile}.{{csv,md,tex}}")
    return EXIT_OK


def _fmt(v) -> str:
    return "  n/a" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{float(v):.4f}"


# --------------------------------------------------------------------------------------------
# the tool


def _positive_int(text: str) -> int:
    try:
        value = int(float(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number of pixels") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected at least 1 pixel")
    return value


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="refine-iqa", description="Refine-IQA: score, evaluate, build, train, reproduce.")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")

    sc = sub.add_parser("score", help="score images with any local Qwen2.5-VL folder (Eq. 8 by default)",
                        description="Score image files, folders or CSV files; one row per input.")
    sc.add_argument("--model", required=True, help="local Qwen2.5-VL folder")
    sc.add_argument("inputs", nargs="*", metavar="INPUT", help="image files, folders or CSV files")
    sc.add_argument("--mode", default="no_think", choices=["no_think", "think"])
    sc.add_argument("--method", default="prob", choices=["prob", "num"],
                    help="prob: Eq. 8 expectation over the integer digit; num: the parsed number")
    sc.add_argument("--out", default=None, help="FILE.csv or FILE.json (default: CSV on stdout)")
    sc.add_argument("--batch-size", type=int, default=8)
    sc.add_argument("--max-new-tokens", type=int, default=256, help="generation bound (think / num)")
    sc.add_argument("--image-column", default="image", help="image column of CSV inputs / --labels")
    sc.add_argument("--image-dir", default=None, help="folder relative image paths of CSV inputs are under")
    sc.add_argument("--labels", default=None, help="CSV/JSONL labels file: also print SRCC/PLCC against its MOS")
    sc.add_argument("--mos-column", default="mos", help="MOS column of --labels")
    sc.add_argument("--mos-range", type=float, nargs=2, default=(0.0, 5.0), metavar=("LO", "HI"),
                    help="the labels' MOS range (default 0 5)")
    sc.add_argument("--lower-is-better", action="store_true", help="the labels' MOS is a distortion score")
    sc.add_argument("--device", default=None, help="cuda, cpu, ... (default: cuda when there is one)")
    sc.add_argument("--no-progress", action="store_true", help="no progress bar")
    sc.add_argument("--raw-orientation", action="store_true",
                    help="score the pixels as stored; by default a picture with an EXIF orientation tag "
                         "(a phone photograph stored sideways) is turned upright first")
    sc.add_argument("--pixel-limit", type=_positive_int, default=DEFAULT_PIXEL_LIMIT, metavar="N",
                    help=f"pictures with more pixels are refused (a row says so) before decoding "
                         f"(default {DEFAULT_PIXEL_LIMIT:,})")

    ev = sub.add_parser("evaluate", help="Tables 3-4 for any local Qwen2.5-VL checkpoint folder",
                        description="Score the IQA test sets (and Q-Bench) with a checkpoint folder; the rows "
                                    "show in Tables 3-4 as 'evaluated here'.")
    ev.add_argument("--model", required=True, help="local Qwen2.5-VL folder")
    ev.add_argument("--datasets", nargs="*", default=None, help="configured dataset names (default: scoring.eval)")
    ev.add_argument("--qbench", action="store_true", help="also Q-Bench A1 (Table 4)")
    ev.add_argument("--profile", default="tiny", help="profile name or a resolved config YAML (default: tiny)")
    ev.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted config override, repeatable (e.g. eval.max_samples=100)")
    ev.add_argument("--modes", nargs="*", default=None, choices=["no_think", "think"], help="default: eval.modes")
    ev.add_argument("--methods", nargs="*", default=None, choices=["prob", "num", "numeric"],
                    help="default: eval.methods")
    ev.add_argument("--out-dir", default=None, help="results folder (default: paths.results_dir)")
    ev.add_argument("--device", default=None)
    ev.add_argument("--raw-orientation", action="store_true",
                    help="use the pixels as stored, ignoring EXIF orientation (= --set images.exif_orientation=false)")
    ev.add_argument("--engine", default="transformers", choices=["transformers", "vllm"],
                    help="what generates the answers: transformers (default) or vllm (greedy, GPU, pip install "
                         "-e .[vllm]); Eq. 8 always reads the policy")

    for name, (module, text) in DELEGATED.items():
        sub.add_parser(name, help=f"{text} (= python -m {module}; see refine-iqa {name} --help)", add_help=False)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    configure_command_logging()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in DELEGATED:
        import importlib

        return int(importlib.import_module(DELEGATED[argv[0]][0]).main(argv[1:]) or 0)
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.command is None:
        ap.print_help()
        return EXIT_ERROR
    from refine_iqa_lib.config import ConfigError
    from refine_iqa_lib.io import ImageReadError
    from refine_iqa_lib.vllm_engine import VLLMUnavailableError

    try:
        return _score(args) if args.command == "score" else _evaluate(args)
    except (ConfigError, FileNotFoundError, ImageReadError, KeyError, ValueError, VLLMUnavailableError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("interrupted; nothing half-written is kept (files are written atomically)", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
