"""Regenerate the committed pre-trained stand-in (``make standin``)::

    python -m refine_iqa_lib.standin --profile tiny [--set key=value ...] [--out DIR]

Builds (or reuses) every data collection the pre-training set is audited against - the perception
dataset, the embedded scoring set's splits and the Q-Bench stand-in - then trains the warm-up in
``<work_dir>/runs/standin`` (``warmup.prebuilt`` switched off for that run, so that it trains) and
writes it to ``warmup.prebuilt`` (or ``--out``) with :func:`refine_iqa_lib.standin.prebuilt.
export_prebuilt`. Run it after changing anything the key holds (the log of ``make reproduce``
names what differs); commit the folder it writes.
"""
from __future__ import annotations

import argparse
from pathlib import Path
import logging
import sys
import time

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.config import ConfigError, load_config

__all__ = ["build_data", "build_standin", "main"]

log = logging.getLogger(__name__)


def build_data(cfg) -> float:
    """Build (or reuse) the perception dataset, every embedded scoring set's splits and the Q-Bench
    stand-in of ``cfg``; returns the seconds it took."""
    from refine_iqa_lib.data.build import build_perception_dataset
    from refine_iqa_lib.standin.qbench_set import build_embedded_qbench
    from refine_iqa_lib.data.scoring_data import is_embedded, load_scoring_split

    t0 = time.perf_counter()
    build_perception_dataset(cfg, progress=False)
    for name in dict.fromkeys(list(cfg.scoring.train) + list(cfg.scoring.eval)):
        if is_embedded(cfg, name):
            for split in ("train", "val", "test"):
                load_scoring_split(cfg, name, split)
    build_embedded_qbench(cfg)
    return time.perf_counter() - t0


def describe_base(cfg, folder) -> Path:
    """Measure a committed base on the validation split
    (:func:`refine_iqa_lib.standin.informativeness.base_informativeness`) and write the table beside
    it (:data:`refine_iqa_lib.standin.informativeness.INFORMATIVENESS_FILE`); returns the file."""
    from refine_iqa_lib.io import write_text
    from refine_iqa_lib.standin.informativeness import INFORMATIVENESS_FILE, base_informativeness

    table = base_informativeness(cfg, Path(folder) / "final", "validation", max_images=200, max_scoring=300)
    return write_text(Path(folder) / INFORMATIVENESS_FILE, table.to_csv(index=False, float_format="%.6g"))


def build_standin(cfg, out_dir=None, resume: bool = True, describe: bool = False):
    """Build the data, train the warm-up without the committed base and export it (with
    ``describe``, also its validation informativeness, :func:`describe_base`); returns the folder."""
    from refine_iqa_lib.standin.prebuilt import export_prebuilt
    from refine_iqa_lib.training.run import run_stage

    if cfg.model.path != "tiny":
        raise ConfigError(f"model.path = {cfg.model.path!r}: a committed pre-trained base exists only for the offline "
                          "stand-in (model.path: tiny); a real model is used as it is")
    log.info("[standin] data ready in %.0f s", build_data(cfg))
    train_cfg = load_config(cfg, {"warmup.prebuilt": ""})
    run_dir = run_stage(train_cfg, "warmup", run_dir=cfg.work_dir / "runs" / "standin", resume=resume)
    out = export_prebuilt(cfg, run_dir, out_dir)
    if describe:
        log.info("[standin] validation informativeness: %s", describe_base(cfg, out))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.standin",
                                 description="Train the stand-in's pre-training warm-up and write it as the committed base.")
    ap.add_argument("--profile", default="tiny")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="folder to write (default: warmup.prebuilt)")
    ap.add_argument("--no-resume", dest="resume", action="store_false", default=True)
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        cfg = load_config(args.profile, args.sets)
        out = build_standin(cfg, args.out, resume=args.resume, describe=True)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"committed pre-trained stand-in written to {out}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
