"""A committed warm-up output: the pre-trained stand-in, shipped so that ``make reproduce`` need not
re-train it (**not in the paper**).

The paper's base is downloaded, not trained. The stand-in's analogue of that download is a
warm-up run (:mod:`refine_iqa_lib.standin.pretraining`) whose output is committed
to the repository with the exact key of what it was trained from, and adopted by
:func:`refine_iqa_lib.training.run.run_stage` instead of training when the key matches:

* ``warmup.prebuilt`` (a folder, repository-relative; empty = off): where the committed output
  lies. ``tiny.yaml`` names ``results/tiny/stand_in``.
* :func:`warmup_key`: what the weights are a function of, independent of where the repository
  lies - the stand-in's build fingerprint (architecture, tokenizer corpus, seed; from its
  ``refine_iqa_stand_in.json``), the ``warmup`` section (less ``prebuilt`` and ``save_steps``;
  two retired settings held fixed, :data:`_RETIRED_KEY_FIELDS`),
  the model's dtype and pixel limits, the launch's bf16 flag and world size, and a SHA-256 over
  the warm-up rows in training order (prompt, completion and the bytes of every image file).
  Any change of the data build, the pre-training set or a warm-up setting changes the key.
* :func:`adopt_prebuilt`: when the committed ``prebuilt.json`` holds the same key, its ``final/``
  is copied into the run folder (atomically) with its ``metrics.jsonl`` and a ``run_meta.json``
  that says where it came from; otherwise the log names the parts of the key that differ and the
  warm-up trains as usual. Nothing is ever adopted on a partial match.
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

from refine_iqa_lib.io import atomic_dir, read_json, repo_relative, write_json
from refine_iqa_lib.runs import FINAL_MARKER, final_dir, is_complete

__all__ = ["PREBUILT_FILE", "REGENERATE", "warmup_settings", "warmup_key", "key_hash", "key_differences",
           "adopt_prebuilt", "export_prebuilt"]

log = logging.getLogger(__name__)

#: The stamp of a committed warm-up folder.
PREBUILT_FILE = "prebuilt.json"
#: The command that regenerates the tiny profile's committed folder.
REGENERATE = "make standin"
#: Warm-up settings that do not change the weights.
_NOT_IN_KEY = ("prebuilt", "save_steps")
#: Two settings of a warm-up recipe since removed (the warm-up trains on the pre-training set only),
#: held at the values the committed base's key was written with, so that it is still adopted; they
#: change nothing that trains. Drop them when the base is regenerated.
_RETIRED_KEY_FIELDS = {"recipe": "pretrain", "scoring_share": 0.75}


def _file_digest(path: str, cache: dict[str, str]) -> str:
    if path not in cache:
        try:
            cache[path] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
        except OSError as e:
            raise FileNotFoundError(f"{path}: a warm-up image could not be read for the committed-base key ({e})") from e
    return cache[path]


def warmup_settings(cfg) -> dict:
    """The ``warmup`` part of :func:`warmup_key`: the section less :data:`_NOT_IN_KEY`, with
    :data:`_RETIRED_KEY_FIELDS` held fixed."""
    return {**{k: v for k, v in asdict(cfg.warmup).items() if k not in _NOT_IN_KEY}, **_RETIRED_KEY_FIELDS}


def warmup_key(cfg, init, world_size: int = 1) -> dict:
    """What the warm-up's weights are a function of (see the module docstring); a JSON-able dict."""
    from refine_iqa_lib.standin.pretraining import warmup_frame

    stamp = Path(init) / "refine_iqa_stand_in.json"
    if not stamp.is_file():
        raise FileNotFoundError(f"{stamp}: the initial weights carry no stand-in stamp; a committed base exists "
                                "only for the offline stand-in")
    frame = warmup_frame(cfg)
    h, cache = hashlib.sha256(), {}
    for prompt, completion, images in zip(frame["prompt_text"], frame["completion_text"], frame["images"]):
        h.update(json.dumps([prompt, completion, [_file_digest(str(p), cache) for p in images]]).encode())
    return {"stand_in": read_json(stamp)["fingerprint"], "warmup": warmup_settings(cfg),
            "model": {k: getattr(cfg.model, k) for k in ("dtype", "min_pixels", "max_pixels")},
            "launch": {"bf16": bool(cfg.launch.bf16), "world_size": int(world_size)},
            "data": {"rows": len(frame), "images": len(cache), "sha256": h.hexdigest()}}


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
    theirs = read_json(stamp)
    ours = warmup_key(cfg, init, world_size)
    diff = key_differences(ours, theirs.get("key", {}))
    if diff:
        log.warning("[warmup] the committed pre-trained stand-in %s was built from other settings or data "
                    "(differs in: %s): training the warm-up instead (regenerate it with `%s`)",
                    repo_relative(folder), ", ".join(diff), theirs.get("command", REGENERATE))
        return False
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
    key = warmup_key(cfg, init, world_size)
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
        write_json(tmp / PREBUILT_FILE, {"key": key, "key_hash": key_hash(key), "steps": int(marker.get("steps", 0)),
                                         "train_seconds": round(seconds, 1), "command": REGENERATE,
                                         "note": "the offline stand-in after its pre-training warm-up (not part of "
                                                 "the paper); adopted by run_stage when the key matches"})
    log.info("[warmup] exported %s -> %s (key %s)", run_dir, out, key_hash(key))
    return out
