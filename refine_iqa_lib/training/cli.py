"""The training command line (what :mod:`refine_iqa_lib.training.launch` runs under
``accelerate launch`` / ``torchrun``)::

    python -m refine_iqa_lib.training.cli --stage {warmup,1,2} --profile P [--set key=value ...]
        [--run-dir DIR] [--resume | --no-resume] [--dry-run]

It calls :func:`refine_iqa_lib.training.run.run_stage`. Only the main process logs at INFO
level (every process would otherwise repeat each line; :func:`refine_iqa_lib.configure_command_logging`).
"""
from __future__ import annotations

import argparse
import logging
import sys

from pathlib import Path

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.config import ConfigError, load_config
from refine_iqa_lib.runs import STAGES, default_run_dir
from refine_iqa_lib.training.run import last_complete_checkpoint, run_stage, stage_command

log = logging.getLogger(__name__)

__all__ = ["main"]


def _interrupted(cfg, args) -> str:
    """The one line printed on Ctrl-C: where the last complete checkpoint is and how to resume.
    Nothing half-written is ever used: checkpoints and ``final/`` count only once their marker,
    written last, exists."""
    if cfg is None:
        return "interrupted before the configuration was loaded; nothing was written"
    run_dir = Path(args.run_dir) if args.run_dir else default_run_dir(cfg, args.stage)
    ckpt = last_complete_checkpoint(run_dir)
    where = f"last complete checkpoint: {ckpt}" if ckpt else f"no complete checkpoint in {run_dir} yet"
    resume = stage_command(cfg, args.stage) + (f" --run-dir {args.run_dir}" if args.run_dir else "")
    return f"interrupted: stage {args.stage}, {where}; resume with: {resume}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.training.cli",
                                 description="Run one training stage (the warm-up, Stage-1 or Stage-2).")
    ap.add_argument("--stage", required=True, choices=list(STAGES))
    ap.add_argument("--profile", default="tiny", help="profile name or a resolved config YAML")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted config override, e.g. stage2.learning_rate=5e-5 (repeatable)")
    ap.add_argument("--run-dir", default=None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="resume", action="store_true", default=True)
    g.add_argument("--no-resume", dest="resume", action="store_false")
    ap.add_argument("--dry-run", action="store_true", help="print settings and checks; train nothing")
    args = ap.parse_args(argv)
    configure_command_logging()
    cfg = None
    try:
        cfg = load_config(args.profile, args.sets)
        run_dir = run_stage(cfg, args.stage, run_dir=args.run_dir, resume=args.resume, dry_run=args.dry_run)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(_interrupted(cfg, args), file=sys.stderr)
        return 130
    if not args.dry_run:
        log.info("[train] stage %s done: %s", args.stage, run_dir)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
