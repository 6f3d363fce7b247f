"""Build Refine-Perception (Fig. 2) and its Stage-1 samples: library API and CLI.

    python -m refine_iqa_lib.data.build --profile tiny [--set n_images=100 --set perception.seed=1]

or ``build_perception_dataset(load_config("tiny")) -> BuildReport``. ``--set`` takes dotted config
keys; a bare key is taken from the ``perception`` section.

Outputs
-------
* ``<work_dir>/perception/``: images, samples and tables (schema: :mod:`refine_iqa_lib.data.stage1`),
  ``parts/<scene>.json`` (per-scene results, the resume points), ``skip_report.json`` (every item
  left out, with its reason and a message naming it), ``stage_counts.json``, ``dataset_info.json``.
* ``results/<profile>/``: ``perception_stage_counts.json`` (the Fig. 2 flow, real counts),
  ``perception_stats_distortions.csv`` (split x category x severity), ``perception_stats_tasks.csv``
  (split x task x form x mode), ``perception_stats_splits.csv``, ``perception_skip_report.csv``
  (level, reason, count).

Guarantees
----------
* **Deterministic**: the same config and seed give byte-identical files (PNG through Pillow with
  fixed parameters and no metadata; JSON with sorted keys; no timestamps, no absolute paths).
  Scene ``k`` depends only on ``(seed, k)``, so ``workers`` does not change any output.
* **Resumable**: each scene's PNGs are written atomically, then its ``parts/<scene>.json`` (also
  atomic). A re-run reuses a scene whose part exists, carries the same config fingerprint and
  whose files all exist; everything else is recomputed (identically). Killed at any moment, a
  re-run finishes and equals an uninterrupted build. Files no current scene refers to are removed.
* **Nothing dropped silently**: every skipped record, image, object or marked image is in the
  skip report with its reason; stage counts add up.
* Parallel over processes (``perception.workers``, chunks of ``perception.chunk_size`` scenes).
  One build per output folder at a time.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd
from PIL import Image

from refine_iqa_lib import configure_command_logging
from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.config import Config, ConfigError, load_config
from refine_iqa_lib.data import stage1
from refine_iqa_lib.data.pipeline import (STAGES, PipelineParams, apply_review, process_scene, scene_id,
                                          scene_split)
from refine_iqa_lib.data.audit import audit_splits, hash_images
from refine_iqa_lib.data.sources import CocoSource, DataError, JsonlSource, Skip, Source
from refine_iqa_lib.io import read_json, using_image_rules, write_bytes, write_json, write_jsonl, write_text

#: Pillow PNG settings (fixed so that files are byte-identical between runs).
PNG_PARAMS = {"format": "PNG", "compress_level": 1, "optimize": False}  # zlib level 1: 3x faster than 6, ~7 % larger


def encode_png(array: np.ndarray) -> bytes:
    """PNG bytes of an RGB uint8 array (no metadata, fixed compression)."""
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, **PNG_PARAMS)
    return buf.getvalue()


@dataclass
class BuildReport:
    """What a build did. ``stage_counts``: Fig. 2 flow; ``skip_counts``: reason -> count."""

    dataset_dir: Path
    results_dir: Path
    stage_counts: list[dict]
    skip_counts: dict[str, int]
    n_images: dict[str, int]
    n_samples: dict[str, int]
    scenes_computed: int = 0
    scenes_reused: int = 0
    review_unknown_ids: list[str] = field(default_factory=list)
    seconds: float = 0.0
    files: dict[str, Path] = field(default_factory=dict)

    def summary(self) -> str:
        lines = [f"Refine-Perception build -> {self.dataset_dir}",
                 f"  scenes computed {self.scenes_computed}, reused {self.scenes_reused}, {self.seconds:.1f} s"]
        lines += [f"  {c['stage']:<14} {c['count'] if c['count'] is not None else '-':>8}  {c['unit']:<14} {c['description']}"
                  for c in self.stage_counts]
        if self.skip_counts:
            lines.append("  skipped: " + ", ".join(f"{k} {v}" for k, v in sorted(self.skip_counts.items())))
        if self.review_unknown_ids:
            lines.append(f"  review file names {len(self.review_unknown_ids)} unknown id(s), e.g. {self.review_unknown_ids[:3]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()

    def count(self, stage: str) -> int | None:
        return next(c["count"] for c in self.stage_counts if c["stage"] == stage)


# --------------------------------------------------------------------------- workers
_STATE: dict[str, Any] = {}


def _init_worker(source: Source, params: PipelineParams, out_dir: str, fingerprint: str) -> None:
    _STATE.update(source=source, params=params, out_dir=Path(out_dir), fingerprint=fingerprint)


def _run_chunk(chunk: Sequence[tuple[int, int]]) -> list[int]:
    for k, index in chunk:
        _build_scene(k, index)
    return [k for k, _ in chunk]


def _build_scene(k: int, index: int) -> dict:
    """Compute scene ``k`` (source record ``index``), write its PNGs, then its part file."""
    source, params, out = _STATE["source"], _STATE["params"], _STATE["out_dir"]
    sid = scene_id(k)
    try:
        record = source.record(index)
    except DataError as e:
        part = {"scene": sid, "index": k, "source_index": index, "source_id": "", "reached": [],
                "skips": [Skip(sid, "image", e.reason, str(e)).to_dict()], "marked": [], "files": []}
    else:
        res = process_scene(k, record, params)
        files, marked = [], []
        if res.reference is not None and any(m.array is not None for m in res.marked):
            ref = f"images/{sid}_ref.png"
            write_bytes(out / ref, encode_png(res.reference))
            files.append(ref)
        else:
            ref = ""
        for m in res.marked:
            row = dict(m.row, reference=ref, image="")
            if m.array is not None:
                row["image"] = f"images/{row['id']}.png"
                write_bytes(out / row["image"], encode_png(m.array))
                files.append(row["image"])
            marked.append(row)
        part = {"scene": sid, "index": k, "source_index": index, "source_id": res.source_id,
                "reached": res.reached, "skips": [s.to_dict() for s in res.skips], "marked": marked,
                "files": files, "info": {k2: v for k2, v in res.info.items() if k2 != "objects"}}
    part["fingerprint"] = _STATE["fingerprint"]
    write_json(out / "parts" / f"{sid}.json", part)
    return part


def _part_ok(out: Path, sid: str, fingerprint: str) -> dict | None:
    p = out / "parts" / f"{sid}.json"
    if not p.is_file():
        return None
    try:
        part = read_json(p)
    except (ValueError, OSError):
        return None
    if part.get("fingerprint") != fingerprint or not all((out / f).is_file() for f in part.get("files", [])):
        return None
    return part


def make_source(cfg, on_error: str = "skip") -> Source:
    """The source named by ``cfg.perception.source`` (``embedded`` | ``coco`` | ``jsonl``)."""
    p = cfg.perception
    if p.source == "embedded":
        from refine_iqa_lib.standin.scenes import EmbeddedSource

        return EmbeddedSource(p.image_size, cfg.model.max_pixels, p.seed, p.min_box_side, p.min_object_area,
                              heldout=p.heldout)
    if p.source in ("coco", "jsonl"):
        if not p.annotations or not p.root:
            raise DataError(f"perception.source={p.source!r} needs perception.annotations and perception.root "
                            f"(got annotations={p.annotations!r}, root={p.root!r})")
        ann, root = cfg.resolve(p.annotations), cfg.resolve(p.root)
        if p.source == "coco":
            return CocoSource(ann, root, p.min_object_area, on_error=on_error)
        return JsonlSource(ann, root, on_error=on_error)
    raise DataError(f"unknown perception.source {p.source!r}; valid: ['coco', 'embedded', 'jsonl']")


# --------------------------------------------------------------------------- review file
def review_path(cfg: Config) -> Path:
    """The review decisions file: ``perception.review_file``, or ``<work_dir>/perception/review.json``
    when that is empty (where :func:`refine_iqa_lib.data.review.review_panel` saves by default)."""
    p = cfg.perception.review_file
    return cfg.resolve(p) if p else cfg.work_dir / "perception" / "review.json"


def load_review_decisions(path: str | os.PathLike | None) -> dict[str, str]:
    """``{id: "accept" | "reject"}`` from a review file (``{"decisions": {...}}``); ``""`` or a
    missing file -> no decisions. Malformed entries raise naming the file and id."""
    if not path:
        return {}
    p = Path(path)
    if not p.is_file():
        return {}
    data = read_json(p)
    decisions = data.get("decisions") if isinstance(data, dict) else None
    if not isinstance(decisions, dict):
        raise DataError(f"{p}: expected {{\"decisions\": {{id: \"accept\" | \"reject\"}}}}")
    for k, v in decisions.items():
        if v not in ("accept", "reject"):
            raise DataError(f"{p}: decision for {k!r} is {v!r}; expected 'accept' or 'reject'")
    return dict(decisions)


# --------------------------------------------------------------------------- build
def _params_check(cfg: Config) -> None:
    p = cfg.perception
    if p.n_images < 1:
        raise ConfigError(f"perception.n_images {p.n_images}: expected >= 1")
    if p.n_options < 2:
        raise ConfigError(f"perception.n_options {p.n_options}: expected >= 2")
    if p.workers < 1 or p.chunk_size < 1:
        raise ConfigError(f"perception.workers {p.workers} / chunk_size {p.chunk_size}: expected >= 1")
    bad = [f for f in p.test_forms if f not in stage1.FORMS]
    if bad or not p.test_forms:
        raise ConfigError(f"perception.test_forms {p.test_forms}: expected a non-empty subset of {list(stage1.FORMS)}")
    if not p.sample_modes:
        raise ConfigError("perception.sample_modes is empty; expected e.g. ['no_think']")
    for m in p.sample_modes:
        try:
            stage1.check_mode(m)
        except ValueError as e:
            raise ConfigError(f"perception.sample_modes: {e}") from None
    if not 0.0 <= p.fr_prob <= 1.0:
        raise ConfigError(f"perception.fr_prob {p.fr_prob}: expected a probability in [0, 1]")


def _run_scenes(todo: list[tuple[int, int]], source: Source, params: PipelineParams, out: Path,
                fingerprint: str, workers: int, chunk_size: int, progress: bool) -> None:
    from tqdm.auto import tqdm

    bar = tqdm(total=len(todo), desc="perception scenes", unit="scene", disable=not progress or not todo)
    try:
        if workers <= 1 or len(todo) <= chunk_size:
            _init_worker(source, params, str(out), fingerprint)
            for item in todo:
                _build_scene(*item)
                bar.update(1)
            return
        chunks = [todo[i:i + chunk_size] for i in range(0, len(todo), chunk_size)]
        with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                                 initargs=(source, params, str(out), fingerprint)) as ex:
            futures = [ex.submit(_run_chunk, c) for c in chunks]
            for f in as_completed(futures):
                bar.update(len(f.result()))
    finally:
        bar.close()


def _clean(out: Path, keep_parts: set[str] | None = None, keep_files: set[str] | None = None) -> None:
    """Remove temp files of killed runs; with ``keep_*`` given, also the parts / images that no
    current scene refers to."""
    for folder in (out, out / "images", out / "parts"):
        if not folder.is_dir():
            continue
        for f in folder.iterdir():
            if f.name.startswith(".") and f.name.endswith(".tmp"):
                f.unlink(missing_ok=True)
            elif folder.name == "parts" and keep_parts is not None and f.suffix == ".json" and f.stem not in keep_parts:
                f.unlink(missing_ok=True)
            elif (folder.name == "images" and keep_files is not None and f.suffix == ".png"
                  and f"images/{f.name}" not in keep_files):
                f.unlink(missing_ok=True)


def declared_split_mask(declared: list, source_name: str, test_size: int, n_images: int) -> np.ndarray:
    """The test mask of marked images whose source declares each one's side (``train`` / ``test``);
    a source that declares some sides and not others, or too few held-out images, is an error."""
    if not all(d in stage1.SPLITS for d in declared):
        raise DataError(f"{source_name} source: some scenes declare a split and some do not "
                        f"({sorted({str(d) for d in declared})}); expected every scene to declare train or test")
    mask = np.array([d == "test" for d in declared], dtype=bool)
    if int(mask.sum()) < test_size:
        raise DataError(f"perception.test_size {test_size}: the {source_name} source's held-out scenes give "
                        f"{int(mask.sum())} marked images; raise perception.n_images (now {n_images})")
    return mask


def build_perception_dataset(cfg: Config | str = "tiny", overrides: dict | list | None = None, *,
                             progress: bool = True, workers: int | None = None) -> BuildReport:
    """Build (or finish building) Refine-Perception for ``cfg``; see the module docstring."""
    t0 = time.perf_counter()
    cfg = load_config(cfg, overrides) if isinstance(cfg, str) or overrides else cfg
    _params_check(cfg)
    p = cfg.perception
    params = PipelineParams.from_config(cfg)
    source = make_source(cfg, on_error="skip")
    fingerprint = params.fingerprint(source.describe())
    out = cfg.work_dir / "perception"
    results = cfg.results_dir / cfg.profile
    out.mkdir(parents=True, exist_ok=True)

    indices = source.candidates(p.n_images, p.seed)
    scenes = [(k, idx) for k, idx in enumerate(indices)]
    _clean(out)
    todo = [(k, idx) for k, idx in scenes if _part_ok(out, scene_id(k), fingerprint) is None]
    with using_image_rules(cfg):  # source pictures are opened by the config's images rules (forked workers too)
        _run_scenes(todo, source, params, out, fingerprint, workers or p.workers, p.chunk_size, progress)
    parts = []
    for k, idx in scenes:
        part = _part_ok(out, scene_id(k), fingerprint)
        if part is None:  # pragma: no cover - a worker failed to write its part
            raise RuntimeError(f"{out / 'parts' / (scene_id(k) + '.json')}: scene {k} was not built")
        parts.append(part)

    # ---- aggregate
    skips = [s.to_dict() for s in source.skips] + [s for part in parts for s in part["skips"]]
    marked = [m for part in parts for m in part["marked"]]
    built = [m for m in marked if m["status"] == "accepted"]
    for r in built:
        r["severity_name"] = D.SEVERITIES[r["severity"] - 1]
        r["group"] = "easy" if r["category"] in D.EASY else "hard"
    review_file = review_path(cfg)
    decisions = load_review_decisions(review_file)
    kept, rejected = apply_review(built, decisions)
    known = {m["id"] for m in marked}
    unknown = sorted(k for k in decisions if k not in known)
    skips += [Skip(r["id"], "marked", "rejected by reviewer", f"{r['id']}: rejected in {review_file.name}").to_dict()
              for r in rejected]
    declared = [r.get("declared_split") for r in kept]
    if any(d is not None for d in declared):
        # a source that cuts each scene from split-specific pictures declares its side (the embedded one)
        mask = declared_split_mask(declared, source.name, p.test_size, p.n_images)
    else:
        # the split unit is the pristine picture's content: scenes whose stored originals are identical
        # (one file listed twice by a source, say) stay together
        refs = sorted({r["reference"] for r in kept})
        group = dict(zip(refs, hash_images([out / x for x in refs], workers=4)))
        mask = scene_split([group[r["reference"]] for r in kept], p.test_size, np.random.default_rng([p.seed, 0x5B]))
    split_rows = {"train": [], "test": []}
    for r, is_test in zip(kept, mask):
        split = "test" if is_test else "train"
        split_rows[split].append(dict(r, split=split))

    sample_kw = dict(seed=p.seed, n_options=p.n_options, categories=params.categories,
                     severities=params.severities, samples_per_image=p.samples_per_image, fr_prob=p.fr_prob,
                     test_forms=p.test_forms, modes=p.sample_modes, options=p.options, option_order=p.option_order)
    samples = {s: [x for r in split_rows[s] for x in stage1.make_samples(r, s, **sample_kw)] for s in stage1.SPLITS}

    # ---- leak check: no picture (distorted image or pristine reference) on both sides, by pixel content
    files = {}
    split_files = {s: sorted({out / r[c] for r in split_rows[s] for c in ("image", "reference")}) for s in stage1.SPLITS}
    audit = audit_splits(split_files["train"], split_files["test"], names=("train", "test"), workers=4)
    scene_of = {r["scene"]: s for s in stage1.SPLITS for r in split_rows[s]}
    files["split_audit"] = write_json(results / "perception_split_audit.json", {
        **audit.to_dict(), "unit": "scene (source record, its pristine reference and every marked image of it)",
        "scenes": {s: len({r["scene"] for r in split_rows[s]}) for s in stage1.SPLITS},
        "reuse": _reuse_report(source, scenes, scene_of)})
    audit.require_disjoint()

    image_cols = ["id", "scene", "source_id", "image", "reference", "object", "bbox", "objects", "distractors",
                  "category", "severity", "severity_name", "categories", "severities", "variants", "params",
                  "combo", "strength", "quality", "width", "height", "group"]
    files["images_built"] = write_jsonl(out / "images_built.jsonl", [{c: r[c] for c in image_cols} for r in built])
    for s in stage1.SPLITS:
        files[f"images_{s}"] = write_jsonl(out / f"images_{s}.jsonl",
                                           [{**{c: r[c] for c in image_cols}, "split": s} for r in split_rows[s]])
        files[f"samples_{s}"] = write_jsonl(out / f"samples_{s}.jsonl", samples[s])

    reached = Counter(st for part in parts for st in part["reached"])
    n_marked = len(marked)
    n_distorted = sum(m["status"] != "distortion failed" for m in marked)
    counts = {"pool": len(source) if source.bounded else None, "drawn": len(scenes), "decoded": reached["decoded"],
              "quality": reached["quality"], "objects": reached["objects"], "marked": n_marked,
              "distorted": n_distorted, "perceptible": len(built), "reviewed": len(kept),
              "train": len(split_rows["train"]), "test": len(split_rows["test"]),
              "samples_train": len(samples["train"]), "samples_test": len(samples["test"])}
    stage_counts = [{"stage": key, "unit": unit, "description": desc, "count": counts[key]} for key, unit, desc in STAGES]
    skip_counts = Counter(s["reason"] for s in skips)

    stage_doc = {"profile": cfg.profile, "source": source.describe(), "fingerprint": fingerprint,
                 "stages": stage_counts, "skipped": dict(sorted(skip_counts.items()))}
    files["stage_counts"] = write_json(out / "stage_counts.json", stage_doc)
    files["skip_report"] = write_json(out / "skip_report.json", {"counts": dict(sorted(skip_counts.items())),
                                                                 "items": skips})
    files["dataset_info"] = write_json(out / "dataset_info.json", {
        "name": f"Refine-Perception ({cfg.profile})", "schema": "refine_iqa_lib.data.stage1",
        "profile": cfg.profile, "fingerprint": fingerprint, "perception": _config_dict(cfg),
        "max_pixels": cfg.model.max_pixels, "source": source.describe(),
        "counts": {k: v for k, v in counts.items()}, "review_file": review_file.name,
        "review": {"rejected": len(rejected), "unknown_ids": unknown}})

    files.update(write_statistics(results, stage_doc, split_rows, samples, skips, params.categories))
    _clean(out, {scene_id(k) for k, _ in scenes}, {f for part in parts for f in part["files"]})
    return BuildReport(dataset_dir=out, results_dir=results, stage_counts=stage_counts,
                       skip_counts=dict(sorted(skip_counts.items())),
                       n_images={s: len(split_rows[s]) for s in stage1.SPLITS},
                       n_samples={s: len(samples[s]) for s in stage1.SPLITS},
                       scenes_computed=len(todo), scenes_reused=len(scenes) - len(todo),
                       review_unknown_ids=unknown, seconds=time.perf_counter() - t0, files=files)


def _reuse_report(source: Source, scenes: Sequence[tuple[int, int]], scene_of: dict[str, str]) -> dict:
    """What test scenes share with training scenes below the level of a picture: for composite
    scenes (records whose ``meta`` names a ``background`` photograph and ``pasted`` cut-outs), the
    cut-outs and background photographs used on each side and how many are used on both (the pixels
    of every stored picture differ - see the audit)."""
    used: dict[str, dict[str, set]] = {s: {"cutouts": set(), "backgrounds": set()} for s in stage1.SPLITS}
    per_test_scene = []
    composite = False
    for k, idx in scenes:
        split = scene_of.get(scene_id(k))
        if split is None:
            continue
        meta = source.record(idx).meta
        if "background" not in meta:
            continue
        composite = True
        cut = {p["object"] for p in meta.get("pasted", [])}
        bg = {meta["background"]}
        used[split]["cutouts"] |= cut
        used[split]["backgrounds"] |= bg
        if split == "test":
            per_test_scene.append((cut, bg))
    if not composite:
        return {"note": f"{source.name} source: every scene is its own source picture"}
    out = {}
    for key in ("cutouts", "backgrounds"):
        both = used["train"][key] & used["test"][key]
        out[key] = {"train": len(used["train"][key]), "test": len(used["test"][key]), "in_both": len(both),
                    "test_scenes_reusing_one": sum(bool((c if key == "cutouts" else b) & used["train"][key])
                                                   for c, b in per_test_scene)}
    out["note"] = "cut-outs and background photographs per side; in_both counts those used on both sides"
    return out


def _config_dict(cfg: Config) -> dict:
    d = {k: v for k, v in cfg.to_dict()["perception"].items() if k not in ("workers", "chunk_size")}
    return d


# --------------------------------------------------------------------------- statistics
def write_statistics(results: Path, stage_doc: dict, split_rows: dict[str, list[dict]],
                     samples: dict[str, list[dict]], skips: list[dict],
                     categories: Sequence[str] = D.DISTORTIONS) -> dict[str, Path]:
    """The CSV / JSON statistics under ``results/<profile>/`` (see the module docstring)."""
    files = {"stage_counts_results": write_json(results / "perception_stage_counts.json", stage_doc)}
    rows = []
    for s in stage1.SPLITS:
        c = Counter((r["category"], r["severity"]) for r in split_rows[s])
        cc = Counter((r["category"], r["severity"]) for r in split_rows[s] if r["combo"])
        for cat in categories:
            for sev in range(1, 6):
                rows.append({"split": s, "category": cat, "group": "easy" if cat in D.EASY else "hard",
                             "severity": sev, "severity_name": D.SEVERITIES[sev - 1],
                             "images": c[(cat, sev)], "combos": cc[(cat, sev)]})
    files["stats_distortions"] = _csv(results / "perception_stats_distortions.csv", pd.DataFrame(rows))
    rows = []
    for s in stage1.SPLITS:
        c = Counter((x["task"], x["form"], x["mode"]) for x in samples[s])
        rows += [{"split": s, "task": t, "form": f, "mode": m, "samples": n} for (t, f, m), n in sorted(c.items())]
    files["stats_tasks"] = _csv(results / "perception_stats_tasks.csv",
                                pd.DataFrame(rows, columns=["split", "task", "form", "mode", "samples"]))
    rows = [{"split": s, "scenes": len({r["scene"] for r in split_rows[s]}), "images": len(split_rows[s]),
             "samples": len(samples[s]),
             "samples_per_image": round(len(samples[s]) / len(split_rows[s]), 4) if split_rows[s] else 0.0,
             "easy_images": sum(r["group"] == "easy" for r in split_rows[s]),
             "hard_images": sum(r["group"] == "hard" for r in split_rows[s]),
             "combo_images": sum(bool(r["combo"]) for r in split_rows[s])} for s in stage1.SPLITS]
    files["stats_splits"] = _csv(results / "perception_stats_splits.csv", pd.DataFrame(rows))
    c = Counter((s["level"], s["reason"]) for s in skips)
    files["skip_report_csv"] = _csv(results / "perception_skip_report.csv",
                                    pd.DataFrame([{"level": lv, "reason": r, "count": n} for (lv, r), n in sorted(c.items())],
                                                 columns=["level", "reason", "count"]))
    return files


def _csv(path: Path, df: pd.DataFrame) -> Path:
    return write_text(path, df.to_csv(index=False, lineterminator="\n"))


# --------------------------------------------------------------------------- CLI
def _overrides(items: Sequence[str]) -> list[str]:
    from dataclasses import fields

    from refine_iqa_lib.config import PerceptionConfig

    names = {f.name for f in fields(PerceptionConfig)}
    out = []
    for item in items:
        key = item.split("=", 1)[0].strip()
        out.append(f"perception.{item.strip()}" if "." not in key and key in names else item)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.data.build",
                                 description="Build the Refine-Perception dataset and its Stage-1 samples.")
    ap.add_argument("--profile", default="tiny", help="smoke | tiny | paper | path to a YAML profile")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="config override (dotted key; bare keys are perception.*), repeatable")
    ap.add_argument("--workers", type=int, default=None, help="processes (default: perception.workers)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    configure_command_logging()
    try:
        cfg = load_config(args.profile, _overrides(args.overrides))
        report = build_perception_dataset(cfg, progress=not args.no_progress, workers=args.workers)
    except (ConfigError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(report.summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
