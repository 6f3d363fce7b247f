"""Which vision-tower design lets a linear probe see the most families on photographs it was not fitted on?

Issue 13, part 1 asks for a stand-in tower on which a linear probe sees all 12 distortion families.
The committed tower (``models.condition_vision_tower``, the defaults) shows 11 of 12 on the one
validation photograph and 9 of 12 on the two test photographs. One validation photograph is too
few to choose a design by, so this script compares designs by a criterion fixed before any was run:

* **score** (:func:`refine_iqa_lib.standin.probe.selection_score`): over six held-out folds -
  each of the 5 training photographs held out from a probe fitted on the other 4
  (:func:`~refine_iqa_lib.standin.probe.leave_one_photo_out`), and the validation photograph
  held out from a probe fitted on all 5 - the number of (family, fold) pairs whose held-out SRCC
  with severity reaches 0.5 (of 72);
* **adopt** a design over the committed one only if its score is at least 2 higher *and* it shows
  at least as many families on the validation photograph (interval low >= 0.5). The test
  photographs are scored once per section, after the choice, and never enter it.

Four routes, one section each (``--part``):

``grid``    the fixed design's three free constants (merger gain x DC gain x anchor value, 27
            designs, the committed 4 / 0.25 / 4 among them);
``pretext`` the tower trained with the pretext head of ``pretext_vision_tower.py``, on
            procedurally generated *dead-leaves* scenes (opaque discs with radii ~ r^-3, the
            classic model of natural-image statistics, coloured from pixels of the training
            photographs) - unlimited scenes, none shared with a held-out photograph - each shown
            with a random family and severity;
``quiet``   the committed design with the blocks' random parts silenced (``condition_vision_tower(
            quiet=)``: ``"attention"`` zeroes every block's attention output, ``"blocks"`` also
            block 1's MLP), judged by a second rule, fixed (2 Dec 2026) before either design was
            run, because the first is at its ceiling: over probe seeds 0, 1, 2 (new crops and
            variants each) and the same six folds, **weakest** = the mean over folds of the
            weakest family's held-out SRCC (``selection_score``'s ``weakest``), averaged over the
            seeds; a design replaces the committed one only if its weakest is >= 0.05 higher,
            its mean SRCC over all pairs at most 0.01 lower and its count of families visible on
            the validation photograph (interval low >= 0.5), averaged over the seeds, no lower.
            Then, the choice made, the test photographs and ``--own-photos`` (default
            matplotlib's ``grace_hopper.jpg``) are scored for every design;
``photos``  more scenes for the probe: the committed tower, with crops of extra photographs
            (``--extra-photos``; default matplotlib's ``grace_hopper.jpg``, public domain, the one
            further natural photograph installed) added to the probe's training pictures.

Prints, never asserts.

    .venv/bin/python benchmarks/probe_design_selection.py [--part all|grid|pretext|quiet|photos] [--extra-photos A.jpg ...]

Measured (2 Dec 2026, 2 cores, this script; 40 training / 12 held-out crops per cell; 30 min
while another job ran, max RSS 1.1 GB), with the probe's ridge penalty chosen by leaving one
photograph out (``linear_probe``'s default since this script found that leaving one *row* out
lets the probe learn the training scenes: under it the committed design showed 11 of 12 families
on validation and 7 on test, oversharpen's test bound 0.01; under the grouped choice 12 and 9,
oversharpen 0.84)::

    grid (27 designs)        score 70-71 of 72; the committed one 71 (validation 12/12) -> rule: none
                             adopted (a design would need 73 of 72: the criterion is at its ceiling)
    committed, on test       9/12: compression 0.33, overexposure 0.35, underexposure 0.50 (lows)
    pretext on dead leaves   all 69 / merger 70 / blocks 69 (validation 10 / 10 / 12) -> none adopted
    quiet (second rule; 3 probe seeds x 6 folds; 2 Dec 2026, 2:37 alone on 2 cores)
                             weakest / mean SRCC / validation visible: committed 0.597 / 0.812 / 11.33,
                             attention 0.584 / 0.805 / 11.00, blocks 0.584 / 0.805 / 11.00 -> none
                             adopted (a design needed weakest >= 0.647); after the choice, test
                             visible per seed 9 / 10 / 11 (committed), 10 / 10 / 11 (attention),
                             10 / 10 / 10 (blocks), grace_hopper 11 / 11 / 10, 11 / 10 / 9, 11 / 10 / 9:
                             the random attention is not what fades the faint cues
    probe + grace_hopper     validation 12/12, test 10/12 (underexposure 0.50 -> 0.76;
                             compression 0.36, overexposure 0.18)
    probe + grace_hopper, quokka (imgaug 0.4.0), luispedro (mahotas 1.4.19), with --extra-photos:
                             validation 12/12, test 11/12 (only compression below: 0.40)

Under the earlier leave-one-row-out probe the same routes read: grid 64-68 (committed 68),
pretext 59-61, the three extra photographs test 7 -> 8 of 12.

No tower design chosen on the training and validation photographs beats the committed one, and a
tower trained on unlimited synthetic scenes generalises to photographs worse than the fixed
filters - as the tower trained on the training photographs did (``pretext_vision_tower.py``).
Two families stay below the bar on the test photographs (JPEG / JPEG 2000 compression and
overexposure); more photographs on the probe's training side lift them (three more: 11 of 12).
"""
from __future__ import annotations

import argparse
import copy
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from refine_iqa_lib.data.distortions import distort  # noqa: E402
from refine_iqa_lib.data.photos import load_photo  # noqa: E402
from refine_iqa_lib.data.scoring_set import photo_splits  # noqa: E402
from refine_iqa_lib.standin.probe import (  # noqa: E402
    VISIBLE_SRCC, held_out_images, leave_one_photo_out, linear_probe, probe_images, selection_score, vision_features,
)
from refine_iqa_lib.io import open_image  # noqa: E402
from refine_iqa_lib.models import (  # noqa: E402
    ANCHOR_VALUE, DC_GAIN, MERGER_GAIN, build_tiny_model, condition_vision_tower, load_policy,
)

SITE = "post_merger"
COMMITTED = {"merger_gain": MERGER_GAIN, "dc_gain": DC_GAIN, "anchor_value": ANCHOR_VALUE}


class Bench:
    """The pictures (made once) and the randomly initialised stand-in every design starts from."""

    def __init__(self, args, tmp: Path):
        self.args = args
        t0 = time.perf_counter()
        self.pictures = {"training": probe_images(args.seed, args.n_train, 112, "training"),
                         "validation": probe_images(args.seed, args.n_test, 112, "validation"),
                         "test": probe_images(args.seed, args.n_test, 112, "test")}
        folder = build_tiny_model(tmp / "random", seed=0, arch={"vision_init": "random", "tokenizer_corpus": "pretrain"})
        self.random, self.processor = load_policy(folder)
        print(f"pictures and the random stand-in: {time.perf_counter() - t0:.0f} s "
              f"({ {k: len(v[0]) for k, v in self.pictures.items()} } pictures)", flush=True)

    def tower(self, **kw):
        model = copy.deepcopy(self.random)
        return condition_vision_tower(model, **kw)

    def features(self, model, pictures=None) -> dict[str, np.ndarray]:
        pictures = pictures if pictures is not None else self.pictures
        return {s: vision_features(model, self.processor, pics, (SITE,))[SITE] for s, (pics, _) in pictures.items()}

    def judge(self, feats, extra=None) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
        """Selection score (LOPO folds + validation), the validation table and the test table.
        ``extra``: (features, labels) added to the probe's training rows (never held out)."""
        score, tables = judge_sides(feats, self.pictures, self.args.seed, extra)
        return score, tables["validation"], tables["test"]


def judge_sides(feats, pictures, seed: int, extra=None) -> tuple[dict, dict[str, pd.DataFrame]]:
    """The selection score (the training photographs held out in turn + the validation photograph)
    and a probe table for every held-out side of ``pictures`` (all but ``"training"``)."""
    y_tr = pictures["training"][1]
    x_tr = feats["training"]
    lopo = leave_one_photo_out({SITE: x_tr}, y_tr, seed=seed)
    if extra is not None:
        x_tr = np.concatenate([x_tr, extra[0]])
        y_tr = pd.concat([y_tr, extra[1]], ignore_index=True)
    tables = {s: linear_probe({SITE: x_tr}, y_tr, {SITE: feats[s]}, pictures[s][1], include_all=False,
                              seed=seed, n_resamples=2000).assign(fold=s)
              for s in pictures if s != "training"}
    return selection_score([lopo, tables["validation"]], where=SITE), tables


def _visible(table: pd.DataFrame) -> int:
    return int((table["srcc_low"] >= VISIBLE_SRCC).sum())


def _lows(table: pd.DataFrame) -> str:
    return " ".join(f"{f}={v:.2f}" for f, v in zip(table["family"], table["srcc_low"]))


def _report(name: str, score: dict, val: pd.DataFrame, test: pd.DataFrame | None = None) -> dict:
    line = (f"{name:44s} score {score['score']:2d}/{score['of']}  tiebreak {score['tiebreak']:.3f}  "
            f"validation visible {_visible(val):2d}/12")
    if test is not None:
        line += f"  test visible {_visible(test):2d}/12"
    print(line, flush=True)
    return {"design": name, **score, "validation_visible": _visible(val)}


def _adopt(rows: list[dict], committed: dict) -> dict | None:
    """The fixed rule: the best-scoring design, if it beats the committed one by >= 2 and shows as
    many families on the validation photograph."""
    ok = [r for r in rows if r["score"] >= committed["score"] + 2 and r["validation_visible"] >= committed["validation_visible"]]
    return max(ok, key=lambda r: (r["score"], r["tiebreak"])) if ok else None


def part_grid(bench: Bench) -> None:
    print("\n== grid: the fixed design's constants (merger gain, DC gain, anchor value)")
    rows, tests = [], {}
    for g, dc, av in itertools.product((1.0, 4.0, 16.0), (0.1, 0.25, 1.0), (2.0, 4.0, 8.0)):
        kw = {"merger_gain": g, "dc_gain": dc, "anchor_value": av}
        name = f"gain {g:g}, dc {dc:g}, anchor {av:g}" + ("  (committed)" if kw == COMMITTED else "")
        score, val, tests[name] = bench.judge(bench.features(bench.tower(**kw)))  # test: shown after the choice
        rows.append(_report(name, score, val))
    committed = next(r for r in rows if r["design"].endswith("(committed)"))
    chosen = _adopt(rows, committed)
    print(f"rule: adopt a design scoring >= {committed['score'] + 2} with >= {committed['validation_visible']} "
          f"families on validation -> {chosen['design'] if chosen else 'none: the committed design stays'}")
    for r in [committed] + ([chosen] if chosen else []):
        test = tests[r["design"]]
        print(f"  {r['design']}: test visible {_visible(test)}/12  SRCC low: {_lows(test)}")


def _palette(names: list[str]) -> np.ndarray:
    return np.concatenate([load_photo(n).reshape(-1, 3)[::97] for n in names]).astype(np.float32) / 255.0


def dead_leaves(rng: np.random.Generator, palette: np.ndarray, size: int = 112) -> np.ndarray:
    """A dead-leaves scene: opaque discs (radii ~ r^-3 between a random r_min in [2.5, 8] and r_max
    in [40, 160] px) dropped front to back until the canvas is covered, each a colour near one of
    12 drawn from ``palette`` with a gentle linear shading; then a Gaussian blur (sigma 0.4-1.5,
    camera-like edges) and faint grain."""
    from scipy.ndimage import gaussian_filter

    rmin, rmax = rng.uniform(2.5, 8.0), rng.uniform(40.0, 160.0)
    img = np.zeros((size, size, 3), np.float32)
    covered = np.zeros((size, size), bool)
    base = palette[rng.integers(len(palette), size=12)]
    for _ in range(3000):
        r = 1.0 / np.sqrt(1.0 / rmin ** 2 - rng.random() * (1.0 / rmin ** 2 - 1.0 / rmax ** 2))
        cy, cx = rng.uniform(-r * 0.5, size + r * 0.5, 2)
        y0, y1 = max(0, int(cy - r)), min(size, int(cy + r) + 1)
        x0, x1 = max(0, int(cx - r)), min(size, int(cx + r) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        m = ((yy - cy) ** 2 + (xx - cx) ** 2 <= r * r) & ~covered[y0:y1, x0:x1]
        if not m.any():
            continue
        colour = np.clip(base[rng.integers(len(base))] + rng.normal(0, 0.05, 3), 0, 1)
        gy, gx = rng.normal(0, 0.006, 2)
        shade = 1.0 + gy * (yy[m] - cy) + gx * (xx[m] - cx)
        img[y0:y1, x0:x1][m] = np.clip(colour[None] * shade[:, None], 0, 1)
        covered[y0:y1, x0:x1] |= m
        if covered.all():
            break
    sigma = rng.uniform(0.4, 1.5)
    img = np.stack([gaussian_filter(img[..., k], sigma) for k in range(3)], -1)
    img += rng.normal(0, rng.uniform(0.0, 0.01), img.shape)
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def part_pretext(bench: Bench) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pretext_vision_tower import FAMILIES, train_tower  # the head that benchmark measures on photographs

    print(f"\n== pretext on {bench.args.scenes} dead-leaves scenes (one random family and severity each)")
    palette = _palette(photo_splits()["training"])
    t0 = time.perf_counter()
    rows = []
    for i in range(bench.args.scenes):
        rng = np.random.default_rng([bench.args.seed, 0xDEAD, i])
        img = dead_leaves(rng, palette)
        f = int(rng.integers(len(FAMILIES)))
        s = int(rng.integers(1, 6)) if f else 0
        if f:
            img = distort(img, FAMILIES[f], s, rng=rng)
        rows.append({"image": img, "family": f, "severity": float(s)})
    print(f"scenes: {time.perf_counter() - t0:.0f} s", flush=True)
    committed_score, committed_val, _ = bench.judge(bench.features(bench.tower()))
    results = [_report("fixed filters (committed, no pretext)", committed_score, committed_val)]
    tests = {}  # design -> its test table, shown after the choice
    for train, lr, ce in (("all", 1e-4, 0.5), ("merger", 1e-4, 0.5), ("blocks", 5e-5, 0.0)):
        model = bench.tower()
        with tempfile.TemporaryDirectory() as out:
            seconds = train_tower(model, bench.processor, rows, Path(out), train=train, lr=lr,
                                  steps=bench.args.steps, batch=32, ce=ce, seed=bench.args.seed)
        name = f"pretext {train}, lr {lr:g}, ce {ce:g}, {bench.args.steps} steps ({seconds:.0f} s)"
        score, val, tests[name] = bench.judge(bench.features(model))
        results.append(_report(name, score, val))
    chosen = _adopt(results[1:], results[0])
    print(f"rule -> {chosen['design'] if chosen else 'none: the fixed filters stay'}")
    if chosen:
        test = tests[chosen["design"]]
        print(f"  {chosen['design']}: test visible {_visible(test)}/12  SRCC low: {_lows(test)}")


def _grace_hopper() -> str:
    from matplotlib import cbook

    return str(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))


QUIET_DESIGNS = ("none", "attention", "blocks")   # "none" = the committed design


def part_quiet(bench: Bench) -> None:
    """The second rule (see the module docstring), over probe seeds 0, 1, 2."""
    paths = bench.args.own_photos or [_grace_hopper()]
    own = {Path(p).stem: np.asarray(open_image(p).convert("RGB")) for p in paths}
    print(f"\n== quiet: the blocks' random parts silenced; rule: weakest-family SRCC over 6 folds x 3 probe seeds")
    per_seed, held = [], []
    for seed in (0, 1, 2):
        pictures = {"training": probe_images(seed, bench.args.n_train, 112, "training"),
                    "validation": probe_images(seed, bench.args.n_test, 112, "validation"),
                    "test": probe_images(seed, bench.args.n_test, 112, "test"),
                    "own": held_out_images(seed, bench.args.n_test, 112, photos=own)[:2]}
        for design in QUIET_DESIGNS:
            score, tables = judge_sides(bench.features(bench.tower(quiet=design), pictures), pictures, seed)
            per_seed.append({"design": design, "seed": seed, "weakest": score["weakest"], "mean": score["mean"],
                             "score": score["score"], "validation_visible": _visible(tables["validation"])})
            held += [{"design": design, "seed": seed, "side": k, "visible": _visible(tables[k]),
                      "lows": _lows(tables[k])} for k in ("test", "own")]
            print(f"  seed {seed} {design:9s} weakest {score['weakest']:.3f}  mean {score['mean']:.3f}  "
                  f"score {score['score']}/{score['of']}  validation visible {_visible(tables['validation'])}/12", flush=True)
    rows = pd.DataFrame(per_seed).groupby("design", sort=False)[["weakest", "mean", "score", "validation_visible"]].mean()
    print(rows.round(3).to_string())
    base = rows.loc["none"]
    ok = rows[(rows.index != "none") & (rows["weakest"] >= base["weakest"] + 0.05)
              & (rows["mean"] >= base["mean"] - 0.01) & (rows["validation_visible"] >= base["validation_visible"])]
    chosen = ok["weakest"].idxmax() if len(ok) else None
    print(f"rule: weakest >= {base['weakest'] + 0.05:.3f}, mean >= {base['mean'] - 0.01:.3f}, validation visible >= "
          f"{base['validation_visible']:.2f} -> {('adopt quiet=' + repr(chosen)) if chosen else 'none: the committed design stays'}")
    print(f"after the choice - held-out photographs (test: {photo_splits()['test']}; own: {sorted(own)}), "
          "families visible and SRCC lows:")
    for r in held:
        print(f"  {r['design']:9s} seed {r['seed']} {r['side']:4s} visible {r['visible']:2d}/12  {r['lows']}")


def part_photos(bench: Bench) -> None:
    paths = bench.args.extra_photos or [_grace_hopper()]
    print(f"\n== more scenes for the probe: the committed tower, probe also fitted on {[Path(p).name for p in paths]}")
    model = bench.tower()
    feats = bench.features(model)
    photos = {Path(p).stem: np.asarray(open_image(p).convert("RGB")) for p in paths}
    images, labels = probe_images(bench.args.seed, bench.args.n_train, 112, photos=photos)
    extra = (vision_features(model, bench.processor, images, (SITE,))[SITE], labels)
    for name, ex in (("5 training photographs (committed probe)", None),
                     (f"+ {len(paths)} extra photograph(s)", extra)):
        score, val, test = bench.judge(feats, ex)
        # the LOPO part of the score is the same for both (it never sees the extra photographs)
        _report(name, score, val, test)
        print(f"    validation SRCC low: {_lows(val)}\n    test       SRCC low: {_lows(test)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("all", "grid", "pretext", "quiet", "photos"), default="all")
    ap.add_argument("--n-train", type=int, default=40, help="training crops per (family, severity) cell")
    ap.add_argument("--n-test", type=int, default=12, help="held-out crops per cell")
    ap.add_argument("--scenes", type=int, default=4000, help="dead-leaves pretext pictures")
    ap.add_argument("--steps", type=int, default=400, help="pretext steps")
    ap.add_argument("--extra-photos", nargs="*", default=[], help="photographs added to the probe's training side")
    ap.add_argument("--own-photos", nargs="*", default=[], help="held-out photographs the quiet part also scores")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    torch.set_num_threads(2)
    torch.manual_seed(args.seed)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        bench = Bench(args, Path(tmp))
        for part, fn in (("grid", part_grid), ("pretext", part_pretext), ("quiet", part_quiet), ("photos", part_photos)):
            if args.part in ("all", part):
                fn(bench)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
