"""Throughput of the distortion engine over the 12 x 5 grid (every variant) on 512x384 photos.

Beside it, the floor a dataset build cannot go below: decoding the source PNG and encoding the
result (Pillow; PNG and JPEG q95), timed on the same images in the same run. Prints ms per call
and images/s per category (and per variant), and the ratio distortion / floor. No assertions.

    .venv/bin/python benchmarks/bench_distortions.py [--quick] [--threads 1]
"""
from __future__ import annotations

import argparse
import io
import time

import cv2
import numpy as np
from PIL import Image

from refine_iqa_lib.standin.world import photo_ids
from refine_iqa_lib.standin.world import load_photo
from refine_iqa_lib.data.distortions import DISTORTIONS, VARIANTS, distort

SIZE = (512, 384)  # width, height (KonIQ's 512x384)


def _photos(n: int) -> list[np.ndarray]:
    return [cv2.resize(load_photo(name), SIZE, interpolation=cv2.INTER_AREA) for name in photo_ids()[:n]]


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


def _floor_ms(pngs: list[bytes], repeats: int) -> dict[str, float]:
    """Mean ms per image: PNG decode of the source, PNG / JPEG encode of the (same-size) result."""
    t = {"decode_png": 0.0, "encode_png": 0.0, "encode_jpeg": 0.0}
    for _ in range(repeats):
        for data in pngs:
            t0 = time.perf_counter()
            with Image.open(io.BytesIO(data)) as im:
                arr = np.asarray(im.convert("RGB"))
            t1 = time.perf_counter()
            Image.fromarray(arr).save(io.BytesIO(), "PNG")
            t2 = time.perf_counter()
            Image.fromarray(arr).save(io.BytesIO(), "JPEG", quality=95)
            t3 = time.perf_counter()
            t["decode_png"] += t1 - t0
            t["encode_png"] += t2 - t1
            t["encode_jpeg"] += t3 - t2
    return {k: 1000 * v / (repeats * len(pngs)) for k, v in t.items()}


def _grid_ms(photos: list[np.ndarray], repeats: int) -> dict[tuple[str, str], float]:
    """Mean ms per call for every (category, variant), over severities 1-5, photos and seeds."""
    h, w = photos[0].shape[:2]
    box = (w // 4, h // 4, 3 * w // 4, 3 * h // 4)  # an object-sized box (a quarter of the image)
    for img in photos[:1]:  # warm-up (imports, caches)
        for c in DISTORTIONS:
            distort(img, c, 1, bbox=box, rng=0)
    out = {}
    for c in DISTORTIONS:
        for v in VARIANTS[c]:
            t0 = time.perf_counter()
            for seed in range(repeats):
                for sev in range(1, 6):
                    for img in photos:
                        distort(img, c, sev, bbox=box, rng=seed, variant=v)
            out[c, v] = 1000 * (time.perf_counter() - t0) / (repeats * 5 * len(photos))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 photos, 1 repeat")
    ap.add_argument("--photos", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1, help="cv2.setNumThreads (1 = one worker's view)")
    ap.add_argument("--per-variant", action="store_true", help="also print every variant")
    args = ap.parse_args()
    n_photos, repeats = (2, 1) if args.quick else (args.photos, args.repeats)
    cv2.setNumThreads(args.threads)

    photos = _photos(n_photos)
    floor = _floor_ms([_png(p) for p in photos], max(3, repeats))
    grid = _grid_ms(photos, repeats)
    floor_png = floor["decode_png"] + floor["encode_png"]
    floor_jpg = floor["decode_png"] + floor["encode_jpeg"]

    print(f"# distortion engine, {SIZE[0]}x{SIZE[1]}, {n_photos} photos x 5 severities x {repeats} seeds "
          f"per variant, cv2 threads {args.threads}")
    print(f"floor per image: PNG decode {floor['decode_png']:.2f} ms + PNG encode {floor['encode_png']:.2f} ms "
          f"= {floor_png:.2f} ms | PNG decode + JPEG q95 encode = {floor_jpg:.2f} ms")
    print(f"{'category':14s} {'variants':>8s} {'ms/call':>8s} {'img/s':>8s} {'/floor(png)':>11s} {'/floor(jpg)':>11s}")
    per_cat = {}
    for c in DISTORTIONS:
        ms = float(np.mean([grid[c, v] for v in VARIANTS[c]]))  # variants are drawn uniformly
        per_cat[c] = ms
        print(f"{c:14s} {len(VARIANTS[c]):8d} {ms:8.2f} {1000 / ms:8.1f} {ms / floor_png:11.2f} {ms / floor_jpg:11.2f}")
    ms = float(np.mean(list(per_cat.values())))  # categories are drawn uniformly
    print(f"{'ALL (uniform)':14s} {len(grid):8d} {ms:8.2f} {1000 / ms:8.1f} "
          f"{ms / floor_png:11.2f} {ms / floor_jpg:11.2f}")
    print(f"build estimate (decode + distort + encode) / floor: PNG {(floor_png + ms) / floor_png:.2f}x, "
          f"JPEG {(floor_jpg + ms) / floor_jpg:.2f}x")
    slow = max(grid, key=grid.get)
    print(f"slowest variant: {slow[0]}/{slow[1]} {grid[slow]:.2f} ms")
    if args.per_variant:
        for (c, v), t in grid.items():
            print(f"  {c:14s} {v:22s} {t:8.2f} ms")


if __name__ == "__main__":
    main()
