"""A committed warm-up output: the pre-trained stand-in, shipped so that ``make reproduce`` need not
re-train it (**not in the paper**).

The paper's base is downloaded, not trained. The stand-in's analogue of that download is a
warm-up run (:mod:`refine_iqa_lib.standin.pretraining`) whose output is committed
to the repository with the exact key of what it was trained from, and adopted by
:func:`refine_iqa_lib.training.run.run_stage` instead of training when the key matches:

* ``warmup.prebuilt`` (a folder, repository-relative; empty = off): where the committed output
  lies. ``tiny.yaml`` names ``results/tiny/stand_in``.
* :func:`warmup_key`: what the weights are a function of, independent of where the repository
  lies and of how its files are encoded - the stand-in's build fingerprint (architecture,
  tokenizer corpus, seed; from its ``refine_iqa_stand_in.json``), the ``warmup`` section (less
  ``prebuilt`` and ``save_steps``), the model's dtype and pixel limits, the launch's bf16 flag and
  world size, and a SHA-256 over the warm-up rows in training order, each row by the *content* of
  its sample: its prompt and completion texts and the **decoded pixels** of its pictures (never
  the files' bytes, which an encoder update changes where the pixels do not).
  Any change of the pre-training set or a warm-up setting changes the key.
* :func:`data_manifest`: per pre-training sample a short digest of its texts and one of its
  pixels, committed beside the key (``data_manifest.csv``), so that a mismatch can name the
  samples that differ and whether their texts or their pixels do.
* :func:`adopt_prebuilt`: when the committed ``prebuilt.json`` holds the same key, its ``final/``
  is copied into the run folder (atomically) with its ``metrics.jsonl`` and a ``run_meta.json``
  that says where it came from; otherwise the log names what differs - the settings, the data
  (how many samples, the first few by id and file) and the package versions
  (:func:`refine_iqa_lib.environment.numeric_versions`, recorded in ``prebuilt.json``) - and the
  warm-up trains as usual. Nothing is ever adopted on a partial match; package versions are not
  part of the key (the same data and settings adopt the base whatever the versions; differing
  versions are named in the log).
* :func:`export_prebuilt`: writes a finished warm-up run as a committed folder (``final/``,
  ``metrics.jsonl``, ``run_meta.json``, ``prebuilt.json`` with the key, its hash, the steps and
  the command that regenerates it). ``make standin`` runs the warm-up and exports it
  (``python -m refine_iqa_lib.standin``).

Training is deterministic by seed on one CPU process, so a regenerated folder has the same key;
its weights agree to float rounding (thread counts change reduction order).
"""
from __future__ import annotations

import hashlib
import json
import logging
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np

from refine_iqa_lib.io import atomic_dir, read_json, repo_relative, write_json, write_text
from refine_iqa_lib.runs import FINAL_MARKER, final_dir, is_complete

__all__ = ["PREBUILT_FILE", "MANIFEST_FILE", "REGENERATE", "warmup_settings", "warmup_key", "data_manifest",
           "manifest_differences", "version_differences", "key_hash", "key_differences", "adopt_prebuilt",
           "export_prebuilt"]

log = logging.getLogger(__name__)

#: The stamp of a committed warm-up folder.
PREBUILT_FILE = "prebuilt.json"
#: The command that regenerates the tiny profile's committed folder.
REGENERATE = "make standin"
#: Warm-up settings that do not change the weights.
_NOT_IN_KEY = ("prebuilt", "save_steps")
#: The per-sample digests committed beside the key.
MANIFEST_FILE = "data_manifest.csv"


def _pixels_digest(path: str, cache: dict[str, str]) -> str:
    """SHA-256 of a picture's decoded pixels (:func:`refine_iqa_lib.standin.world.pixels_sha256`)."""
    from PIL import Image

    from refine_iqa_lib.standin.world import pixels_sha256

    if path not in cache:
        try:
            with Image.open(path) as im:
                cache[path] = pixels_sha256(np.asarray(im.convert("RGB")))
        except OSError as e:
            raise FileNotFoundError(f"{path}: a warm-up picture could not be read for the committed-base key ({e})") from e
    return cache[path]


def warmup_settings(cfg) -> dict:
    """The ``warmup`` part of :func:`warmup_key`: the section less :data:`_NOT_IN_KEY`."""
    return {k: v for k, v in asdict(cfg.warmup).items() if k not in _NOT_IN_KEY}


def _rows_and_manifest(cfg) -> tuple[list[str], dict[str, tuple[str, str]], dict[str, str]]:
    """The warm-up rows' sample ids in training order, ``{id: (text digest, pixels digest)}`` and
    ``{id: picture path}``."""
    from refine_iqa_lib.standin.pretraining import warmup_frame

    frame = warmup_frame(cfg)
    manifest: dict[str, tuple[str, str]] = {}
    files: dict[str, str] = {}
    cache: dict[str, str] = {}
    for sid, prompt, completion, images in zip(frame["id"], frame["prompt_text"], frame["completion_text"],
                                               frame["images"]):
        if sid not in manifest:
            text = hashlib.sha256(json.dumps([prompt, completion]).encode()).hexdigest()
            pixels = hashlib.sha256("".join(_pixels_digest(str(p), cache) for p in images).encode()).hexdigest()
            manifest[sid] = (text, pixels)
            files[sid] = ", ".join(Path(p).name for p in images)
    return [str(x) for x in frame["id"]], manifest, files


def warmup_key(cfg, init, world_size: int = 1, *, with_manifest: bool = False):
    """What the warm-up's weights are a function of (see the module docstring); a JSON-able dict,
    and with ``with_manifest`` also the per-sample digests (:func:`data_manifest`)."""
    stamp = Path(init) / "refine_iqa_stand_in.json"
    if not stamp.is_file():
        raise FileNotFoundError(f"{stamp}: the initial weights carry no stand-in stamp; a committed base exists "
                                "only for the offline stand-in")
    order, manifest, _ = _rows_and_manifest(cfg)
    h = hashlib.sha256()
    for sid in order:
        h.update(json.dumps([sid, *manifest[sid]]).encode())
    key = {"stand_in": read_json(stamp)["fingerprint"], "warmup": warmup_settings(cfg),
           "model": {k: getattr(cfg.model, k) for k in ("dtype", "min_pixels", "max_pixels")},
           "launch": {"bf16": bool(cfg.launch.bf16), "world_size": int(world_size)},
           "data": {"rows": len(order), "samples": len(manifest), "sha256": h.hexdigest()}}
    return (key, manifest) if with_manifest else key


def data_manifest(manifest: dict[str, tuple[str, str]]) -> str:
    """The CSV text of a manifest: ``id,text,pixels`` with 12-hex-digit digests, sorted by id.

    >>> print(data_manifest({"pt1": ("a" * 64, "b" * 64)}), end="")
    id,text,pixels
    pt1,aaaaaaaaaaaa,bbbbbbbbbbbb
    """
    lines = ["id,text,pixels"] + [f"{k},{t[:12]},{p[:12]}" for k, (t, p) in sorted(manifest.items())]
    return "\n".join(lines) + "\n"


def manifest_differences(ours: dict[str, tuple[str, str]], committed_csv: str, files: dict[str, str] | None = None,
                         show: int = 5) -> str:
    """What differs between this configuration's samples and a committed manifest, in words:
    how many samples differ and the first ``show`` by id (with their files and whether the texts or
    the pixels differ), samples only one side has.

    >>> ours = {"pt1": ("a" * 64, "b" * 64), "pt2": ("c" * 64, "d" * 64)}
    >>> manifest_differences(ours, "id,text,pixels\\npt1,aaaaaaaaaaaa,bbbbbbbbbbbb\\npt2,cccccccccccc,eeeeeeeeeeee\\n")
    '1 of 2 samples differ: pt2 (pixels)'
    """
    theirs = {}
    for line in committed_csv.splitlines()[1:]:
        if line.strip():
            sid, text, pixels = line.split(",")
            theirs[sid] = (text, pixels)
    files = files or {}
    diff = []
    for sid in sorted(set(ours) & set(theirs)):
        what = [w for w, a, b in (("text", ours[sid][0][:12], theirs[sid][0]), ("pixels", ours[sid][1][:12], theirs[sid][1]))
                if a != b]
        if what:
            diff.append(f"{sid}{' ' + files[sid] if sid in files else ''} ({', '.join(what)})")
    parts = []
    if diff:
        parts.append(f"{len(diff)} of {len(ours)} samples differ: " + "; ".join(diff[:show]) + (" ..." if len(diff) > show else ""))
    only_ours, only_theirs = sorted(set(ours) - set(theirs)), sorted(set(theirs) - set(ours))
    if only_ours:
        parts.append(f"{len(only_ours)} samples not in the committed set (e.g. {', '.join(only_ours[:show])})")
    if only_theirs:
        parts.append(f"{len(only_theirs)} committed samples missing here (e.g. {', '.join(only_theirs[:show])})")
    return "; ".join(parts) or "no sample differs"


def version_differences(ours: dict, theirs: dict) -> list[str]:
    """``package committed -> here`` for every package whose version differs.

    >>> version_differences({"numpy": "2.4.6", "scipy": "1.17.1"}, {"numpy": "2.3.0", "scipy": "1.17.1"})
    ['numpy 2.3.0 -> 2.4.6']
    """
    return [f"{k} {theirs.get(k)} -> {ours.get(k)}" for k in sorted(set(ours) | set(theirs)) if ours.get(k) != theirs.get(k)]


def key_hash(key: dict) -> str:
    """A short hash of a key.

    >>> key_hash({"a": 1}) == key_hash({"a": 1}) != key_hash({"a": 2})
    True
    """
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def key_differences(ours: dict, theirs: dict, prefix: str = "") -> list[str]:
    """The dotted names where two keys differ.

    >>> key_differences({"warmup": {"max_steps": 900, "seed": 0}, "stand_in": "a"},
    ...                 {"warmup": {"max_steps": 300, "seed": 0}, "stand_in": "a"})
    ['warmup.max_steps']
    """
    out = []
    for k in sorted(set(ours) | set(theirs)):
        a, b = ours.get(k), theirs.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += key_differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def _folder(cfg) -> Path | None:
    return cfg.resolve(cfg.warmup.prebuilt) if cfg.warmup.prebuilt else None


def adopt_prebuilt(cfg, run_dir, init, fingerprint: dict, world_size: int = 1) -> bool:
    """Copy the committed warm-up output into ``run_dir`` when its key is this configuration's;
    returns whether it did (see the module docstring)."""
    folder = _folder(cfg)
    if folder is None:
        return False
    stamp = folder / PREBUILT_FILE
    if not stamp.is_file():
        log.info("[warmup] no committed pre-trained stand-in at %s (%s missing): training the warm-up",
                 repo_relative(folder), PREBUILT_FILE)
        return False
    from refine_iqa_lib.environment import numeric_versions

    theirs = read_json(stamp)
    ours, manifest = warmup_key(cfg, init, world_size, with_manifest=True)
    diff = key_differences(ours, theirs.get("key", {}))
    versions = version_differences(numeric_versions(), theirs.get("versions", {}))
    if diff:
        why = [f"settings or model: {', '.join(d for d in diff if not d.startswith('data.'))}"] \
            if any(not d.startswith("data.") for d in diff) else []
        if any(d.startswith("data.") for d in diff):
            committed = folder / MANIFEST_FILE
            _, _, files = _rows_and_manifest(cfg)
            why.append("data: " + (manifest_differences(manifest, committed.read_text(), files) if committed.is_file()
                                   else f"{', '.join(d for d in diff if d.startswith('data.'))} ({MANIFEST_FILE} missing)"))
        if versions:
            why.append(f"package versions: {', '.join(versions)}")
        log.warning("[warmup] the committed pre-trained stand-in %s was built from other settings or data (%s): "
                    "training the warm-up instead (regenerate it with `%s`)",
                    repo_relative(folder), "; ".join(why), theirs.get("command", REGENERATE))
        return False
    if versions:
        log.info("[warmup] the committed pre-trained stand-in was built with other package versions (%s); its data "
                 "and settings are this configuration's, so it is adopted", ", ".join(versions))
    if not (folder / "final" / "model.safetensors").is_file():
        raise FileNotFoundError(f"{folder / 'final'}: the committed pre-trained stand-in has no model.safetensors; "
                                f"expected the folder {REGENERATE} writes")
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with atomic_dir(final_dir(run_dir)) as tmp:
        for f in sorted((folder / "final").iterdir()):
            if f.is_file():
                shutil.copy2(f, tmp / f.name)
        write_json(tmp / FINAL_MARKER, {**fingerprint, "steps": int(theirs.get("steps", 0)), "stage": "warmup",
                                        "prebuilt": repo_relative(folder), "prebuilt_key": key_hash(ours)})
    if (folder / "metrics.jsonl").is_file():
        shutil.copy2(folder / "metrics.jsonl", run_dir / "metrics.jsonl")
    meta = read_json(folder / "run_meta.json") if (folder / "run_meta.json").is_file() else {}
    write_json(run_dir / "run_meta.json", {**meta, "prebuilt": repo_relative(folder), "prebuilt_key": key_hash(ours),
                                           "note": "committed pre-trained stand-in adopted (key matched); "
                                                   "supervised warm-up of the offline stand-in, not part of the paper"})
    log.info("[warmup] adopted the committed pre-trained stand-in %s (key %s, %s steps, trained in %s s)",
             repo_relative(folder), key_hash(ours), theirs.get("steps"), theirs.get("train_seconds"))
    return True


def export_prebuilt(cfg, run_dir, out_dir=None, world_size: int = 1) -> Path:
    """Write the finished warm-up run ``run_dir`` as a committed folder (``warmup.prebuilt`` unless
    ``out_dir``); see the module docstring."""
    run_dir = Path(run_dir)
    if not is_complete(run_dir):
        raise FileNotFoundError(f"{final_dir(run_dir) / FINAL_MARKER}: the warm-up run {run_dir} is not finished; "
                                "expected a complete run to export")
    out = Path(out_dir) if out_dir is not None else _folder(cfg)
    if out is None:
        raise ValueError("export_prebuilt: warmup.prebuilt is empty and no out_dir was given")
    meta = read_json(run_dir / "run_meta.json")
    init = cfg.resolve(meta["initial_weights"])
    from refine_iqa_lib.environment import numeric_versions

    key, manifest = warmup_key(cfg, init, world_size, with_manifest=True)
    marker = read_json(final_dir(run_dir) / FINAL_MARKER)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    seconds = max((float(r.get("wall_time_s", 0.0)) for r in rows), default=0.0)
    with atomic_dir(out) as tmp:
        (tmp / "final").mkdir()
        for f in sorted(final_dir(run_dir).iterdir()):
            if f.is_file() and f.name != FINAL_MARKER:
                shutil.copy2(f, tmp / "final" / f.name)
        shutil.copy2(run_dir / "metrics.jsonl", tmp / "metrics.jsonl")
        write_json(tmp / "run_meta.json", {k: v for k, v in meta.items() if k != "initial_weights"})
        write_text(tmp / MANIFEST_FILE, data_manifest(manifest))
        write_json(tmp / PREBUILT_FILE, {"key": key, "key_hash": key_hash(key), "steps": int(marker.get("steps", 0)),
                                         "train_seconds": round(seconds, 1), "command": REGENERATE,
                                         "versions": numeric_versions(),
                                         "note": "the offline stand-in after its pre-training warm-up (not part of "
                                                 "the paper); adopted by run_stage when the key matches"})
    log.info("[warmup] exported %s -> %s (key %s)", run_dir, out, key_hash(key))
    return out
