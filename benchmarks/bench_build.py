"""End-to-end Refine-Perception build rate beside its floor, and a paper-scale projection.

* **build**: ``build_perception_dataset`` from scratch (embedded source, ``--workers`` processes),
  counted in final marked images per second.
* **floor**: in the same run, with the same workers, the part of that work no build can avoid:
  read each source scene (decode the photo / compose the scene), bring it to the stored size and
  write the same number of PNGs the build wrote for it (reference + marked images), atomically,
  through the same writer (``refine_iqa_lib.io.write_bytes``, which fsyncs).
* **ratio** build / floor (target <= 3) and the projected time for 20,907 final images, the size of
  Refine-Perception-20K (target < 15 min on 2 cores), at the tiny stored size (112 px) and at the
  paper's (longest side 448 px, <= 151,200 pixels).

Prints, never asserts. ``--quick`` uses fewer scenes.

    .venv/bin/python benchmarks/bench_build.py [--quick] [--workers 2]
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

from refine_iqa_lib.config import load_config  # noqa: E402
from refine_iqa_lib.data.build import build_perception_dataset, encode_png, make_source  # noqa: E402
from refine_iqa_lib.data.sources import fit_size, resize_rgb  # noqa: E402
from refine_iqa_lib.io import read_json, write_bytes  # noqa: E402

PAPER_IMAGES = 20_907

_FLOOR: dict = {}


def _floor_init(source, image_size, max_pixels, out):
    _FLOOR.update(source=source, size=image_size, max_pixels=max_pixels, out=Path(out))


def _floor_scene(job):
    k, index, n_png = job
    img = _FLOOR["source"].record(index).load()
    h, w = img.shape[:2]
    img = resize_rgb(img, fit_size(w, h, _FLOOR["size"], _FLOOR["max_pixels"]))
    for j in range(n_png):
        write_bytes(_FLOOR["out"] / f"f{k:06d}_{j}.png", encode_png(img))
    return n_png


def run(image_size: int, max_pixels: int, n_images: int, workers: int) -> dict:
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_"))
    try:
        cfg = load_config("tiny", {"paths.work_dir": str(tmp / "work"), "paths.results_dir": str(tmp / "results"),
                                   "perception.n_images": n_images, "perception.image_size": image_size,
                                   "model.max_pixels": max_pixels, "perception.workers": workers,
                                   "perception.test_size": max(1, n_images // 10)})
        t0 = time.perf_counter()
        report = build_perception_dataset(cfg, progress=False)
        t_build = time.perf_counter() - t0
        n_final = report.count("reviewed")

        # the same scenes, the same number of PNGs per scene
        source = make_source(cfg)
        jobs = []
        for k, index in enumerate(source.candidates(n_images, cfg.perception.seed)):
            part = read_json(tmp / "work" / "perception" / "parts" / f"s{k:06d}.json")
            jobs.append((k, index, len(part["files"])))
        (tmp / "floor").mkdir()
        t0 = time.perf_counter()
        with ProcessPoolExecutor(workers, initializer=_floor_init,
                                 initargs=(source, image_size, max_pixels, str(tmp / "floor"))) as ex:
            n_png = sum(ex.map(_floor_scene, jobs, chunksize=cfg.perception.chunk_size))
        t_floor = time.perf_counter() - t0
        return {"size": image_size, "scenes": n_images, "final": n_final, "pngs": n_png,
                "t_build": t_build, "t_floor": t_floor}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    runs = [(112, 112 * 112, 120 if args.quick else 400), (448, 151_200, 40 if args.quick else 120)]
    print(f"Refine-Perception build vs floor (decode + write PNG), {args.workers} worker processes, "
          f"{os.cpu_count()} CPUs visible\n")
    print(f"{'stored':>8} {'scenes':>6} {'final':>6} {'PNGs':>6} | {'build s':>8} {'img/s':>7} | "
          f"{'floor s':>8} {'img/s':>7} | {'ratio':>5} | {'20,907 images':>14}")
    for size, max_pixels, n in runs:
        r = run(size, max_pixels, n, args.workers)
        rate_b, rate_f = r["final"] / r["t_build"], r["final"] / r["t_floor"]
        minutes = PAPER_IMAGES / rate_b / 60
        print(f"{size:>6}px {r['scenes']:>6} {r['final']:>6} {r['pngs']:>6} | {r['t_build']:>8.2f} {rate_b:>7.1f} | "
              f"{r['t_floor']:>8.2f} {rate_f:>7.1f} | {r['t_build'] / r['t_floor']:>5.2f} | {minutes:>10.1f} min")
    print("\ntargets: ratio <= 3 (build / floor); paper-scale build < 15 min on 2 cores.\n"
          "img/s counts final marked images. The projection scales the measured rate to 20,907 final images;\n"
          "a COCO/keyframe pool also decodes and scores every rejected candidate (the paper screened >100K\n"
          "images for 8,221 kept), which adds the per-candidate decode + filter cost on top.")


if __name__ == "__main__":
    main()
