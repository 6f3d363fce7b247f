"""Which distortion families can a linear probe see in the stand-in's vision tower? Random vs conditioned.

Builds the stand-in twice from the same seed - ``vision_init="random"`` (the default) and
``"filters"`` (:func:`refine_iqa_lib.standin.model.condition_vision_tower`) - in a temporary folder and
runs :func:`refine_iqa_lib.standin.probe.probe_report` on each: ridge probes fitted on crops of
the training photographs, scored on the validation photograph (where the conditioned design was
chosen) and on the test photographs. Prints per family the held-out SRCC with severity and its
bootstrap 95 % interval, the detection AUC, the families visible after the merger (SRCC interval
at or above ``VISIBLE_SRCC``) and the seconds each step took. Then the same probe on
:func:`refine_iqa_lib.standin.probe.pixel_statistics` of the same pictures (no model): a
family the tower misses but the pixel statistics see is the tower's limit, one that neither sees
is the photographs'. Full tables for the first probe seed, then one summary over every seed
(``--seeds``, default 0 1 2: the crops, the distortion variants and the bootstrap change, so the
count of visible families is itself a measurement with a spread). Prints, never asserts.

``--photos-dir DIR`` adds your own photographs (:func:`refine_iqa_lib.standin.probe.load_photo_folder`)
to the probe's training side, for the towers and the pixel statistics alike. ``--test-photos-dir
DIR`` adds a held-out side ``own``: the same probes scored on your photographs, which no design
choice has seen (``probe_report(..., test_photos=)``).

    .venv/bin/python benchmarks/probe_vision_tower.py [--n-train 48] [--n-test 24] [--seeds 0 1 2] [--split test]
                                                     [--photos-dir DIR] [--test-photos-dir DIR]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import pandas as pd  # noqa: E402

from refine_iqa_lib.standin.probe import (  # noqa: E402
    PROBE_SITES, VISIBLE_SRCC, held_out_images, linear_probe, load_photo_folder, pixel_statistics, probe_report,
    probe_table, srcc_lows, training_images, visible_families,
)
from refine_iqa_lib.standin.model import build_tiny_model  # noqa: E402


def _lows(table: pd.DataFrame, where: str) -> dict[str, float]:
    return {f: round(v, 2) for f, v in srcc_lows(table, where).items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n-train", type=int, default=48, help="training crops per (family, severity) cell")
    ap.add_argument("--n-test", type=int, default=24, help="held-out crops per cell")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2],
                    help="probe seeds (crops, distortion variants, bootstrap); full tables for the first")
    ap.add_argument("--model-seed", type=int, default=0, help="stand-in seed")
    ap.add_argument("--split", choices=("validation", "test", "both"), default="both")
    ap.add_argument("--photos-dir", default=None, help="a folder of your own photographs for the probe's training side")
    ap.add_argument("--test-photos-dir", default=None,
                    help="a folder of your own photographs to score the probes on as well (held-out side 'own')")
    args = ap.parse_args()
    extra = load_photo_folder(args.photos_dir) if args.photos_dir else None
    own = load_photo_folder(args.test_photos_dir) if args.test_photos_dir else None
    if own:
        print(f"held-out side 'own': {sorted(own)} from {args.test_photos_dir}")
    if extra:
        print(f"probe's training side: the embedded training photographs + {sorted(extra)} from {args.photos_dir}")

    import torch

    torch.set_num_threads(1)
    pd.set_option("display.width", 250)
    pd.set_option("display.max_columns", 20)
    splits = (("validation", "test") if args.split == "both" else (args.split,)) + (("own",) if own else ())
    summary = []
    with tempfile.TemporaryDirectory() as tmp:
        folders = {v: build_tiny_model(Path(tmp) / v, seed=args.model_seed, arch={"vision_init": v})
                   for v in ("random", "filters")}
        for seed in args.seeds:
            for vision_init, folder in folders.items():
                for split in splits:
                    table = probe_report(folder, seed=seed, n_train=args.n_train, n_test=args.n_test,
                                         where=PROBE_SITES, test_split="test" if split == "own" else split,
                                         extra_train_photos=extra, test_photos=own if split == "own" else None)
                    seen = visible_families(table, "post_merger")
                    summary.append({"seed": seed, "features": f"tower {vision_init}", "split": split,
                                    "visible": len(seen), **_lows(table, "post_merger")})
                    if seed == args.seeds[0]:
                        secs = {k: round(v, 1) for k, v in table.attrs["seconds"].items()}
                        print(f"\n== seed {seed}  vision_init={vision_init}  held-out {split} photographs "
                              f"{table.attrs['test_photos']}  (probe {secs})")
                        print(probe_table(table).to_string())
                        print(f"visible after the merger (SRCC low >= {VISIBLE_SRCC}): {len(seen)}/12 {seen}")
            t0 = time.perf_counter()
            img_tr, y_tr = training_images(seed, args.n_train, 112, extra_photos=extra)
            f_tr = pixel_statistics(img_tr)
            for split in splits:
                img_te, y_te, _ = held_out_images(seed, args.n_test, 112, "test" if split == "own" else split,
                                                  photos=own if split == "own" else None)
                table = linear_probe(f_tr, y_tr, pixel_statistics(img_te), y_te, seed=seed)
                seen = visible_families(table, "pixel_stats")
                summary.append({"seed": seed, "features": "pixel statistics", "split": split,
                                "visible": len(seen), **_lows(table, "pixel_stats")})
                if seed == args.seeds[0]:
                    print(f"\n== seed {seed}  reference: pixel statistics, no model (standin.probe.pixel_statistics)  "
                          f"held-out {split} photographs ({time.perf_counter() - t0:.1f} s so far)")
                    print(probe_table(table).to_string())
                    print(f"visible to the pixel statistics (SRCC low >= {VISIBLE_SRCC}): {len(seen)}/12 {seen}")
    table = pd.DataFrame(summary).sort_values(["split", "features", "seed"], kind="stable")
    print(f"\n== every probe seed: families visible (of 12) and each family's SRCC interval low "
          f"({args.n_train} / {args.n_test} crops per cell; visible = low >= {VISIBLE_SRCC})")
    print(table.to_string(index=False))


if __name__ == "__main__":
    main()
