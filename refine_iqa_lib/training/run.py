"""Run one training stage: the SFT warm-up (stand-in only), Stage-1 or Stage-2 GRPO.

CLI (what ``refine_iqa_lib.training.launch`` runs under ``accelerate launch`` / ``torchrun``)::

    python -m refine_iqa_lib.training.run --stage {warmup,1,2} --profile P [--set key=value ...]
        [--run-dir DIR] [--resume | --no-resume] [--dry-run]

Python: :func:`run_stage` (the CLI calls it). A stage reads like a list of steps: resolve the run
folder and the initial weights -> build and check the dataset -> load the policy -> look for a
checkpoint to resume (and check it belongs to this configuration) -> train -> save ``final/``.

Run folder (default ``<work_dir>/runs/{warmup,stage1,stage2}``; ablations pass their own):
``run_config.yaml`` (the resolved config), ``run_meta.json`` (settings, initial weights, what is
and is not reproduced, evaluation-side choices), ``metrics.jsonl`` (one row per step),
``checkpoints/checkpoint-N/`` (TRL/transformers checkpoints with optimizer, scheduler and RNG
state, the last ``save_total_limit`` kept; ``refine_run.json`` in each marks it complete and names
its configuration), ``advantages/rank<r>.jsonl`` (the gathered advantages per step and process) and
``final/`` (weights + processor; ``refine_final.json`` written last marks the stage done).

Initial weights: Stage-1 starts from the warm-up output when the model is the offline stand-in
(and ``warmup.enabled``), else from the base model; Stage-2 from Stage-1's ``final/``
(``init_from: previous``) or from what Stage-1 would start from (``init_from: base``, the
"w/o Stage-1" ablation); ``init_path`` overrides both.

Resuming (the default): the latest complete checkpoint of the run folder is loaded, after checking
that it was written with the same training-relevant settings (a different configuration is an
error that names the differing keys, before any training). A finished stage (``final/`` present)
is not retrained. ``--no-resume`` deletes the run folder's previous checkpoints, metrics and
outputs first.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from dataclasses import asdict
from pathlib import Path

from refine_iqa_lib.config import Config, ConfigError, load_config, save_config
from refine_iqa_lib.io import read_json, write_json

__all__ = ["STAGE_SECTIONS", "FINAL_MARKER", "CHECKPOINT_MARKER", "default_run_dir", "resolve_init",
           "stage_fingerprint", "find_resume_checkpoint", "grpo_config", "run_stage", "stage_checks", "main"]

STAGE_SECTIONS = {"1": "stage1", "2": "stage2"}
FINAL_MARKER = "refine_final.json"
CHECKPOINT_MARKER = "refine_run.json"
#: StageConfig keys that do not change what a run computes (excluded from the fingerprint).
_HARMLESS = {"save_steps", "save_total_limit", "logging_steps", "enabled", "init_path", "init_from"}


def _stage(stage) -> str:
    stage = str(stage)
    if stage not in ("warmup", "1", "2"):
        raise ConfigError(f"unknown stage {stage!r}; expected warmup, 1 or 2")
    return stage


def default_run_dir(cfg: Config, stage) -> Path:
    """``<work_dir>/runs/{warmup,stage1,stage2}`` (the launcher uses the same folders)."""
    from refine_iqa_lib.training.launch import default_run_dir as launch_default

    return launch_default(cfg, _stage(stage))


def _final_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "final"


def is_complete(run_dir: Path) -> bool:
    """Whether a run folder holds a finished stage (``final/refine_final.json``)."""
    return (_final_dir(run_dir) / FINAL_MARKER).is_file()


def _require_final(run_dir: Path, what: str, stage: str, cfg: Config) -> Path:
    if not is_complete(run_dir):
        raise FileNotFoundError(
            f"{_final_dir(run_dir)}: {what} output not found (no {FINAL_MARKER}); run "
            f"`python -m refine_iqa_lib.training.run --stage {stage} --profile {cfg.profile}` first")
    return _final_dir(run_dir)


def resolve_init(cfg: Config, stage) -> tuple[Path, str]:
    """``(initial weights folder, how it was chosen)`` for ``stage`` (see the module docstring)."""
    from refine_iqa_lib.models import check_model_dir, is_stand_in, resolve_model_path

    stage = _stage(stage)
    base = resolve_model_path(cfg)
    if stage == "warmup":
        return base, "base model (offline stand-in)"

    def stage1_start() -> tuple[Path, str]:
        if is_stand_in(base) and cfg.warmup.enabled:
            return _require_final(default_run_dir(cfg, "warmup"), "warm-up", "warmup", cfg), \
                "warm-up output (the stand-in's base; not in the paper)"
        return base, "base model"

    s = getattr(cfg, STAGE_SECTIONS[stage])
    if s.init_path:
        return check_model_dir(cfg.resolve(s.init_path)), f"{STAGE_SECTIONS[stage]}.init_path"
    if stage == "1":
        return stage1_start()
    if s.init_from not in ("previous", "base"):
        raise ConfigError(f"stage2.init_from {s.init_from!r}: expected 'previous' (Stage-1 weights) or 'base'")
    if s.init_from == "base":
        path, how = stage1_start()
        return path, f"{how}; Stage-1 skipped (init_from: base)"
    if not cfg.stage1.enabled:
        path, how = stage1_start()
        return path, f"{how}; stage1.enabled is false"
    return _require_final(default_run_dir(cfg, "1"), "Stage-1", "1", cfg), "Stage-1 final weights"


def _data_spec(cfg: Config, stage: str) -> dict:
    if stage == "1":
        return {"perception": asdict(cfg.perception)}
    sc = asdict(cfg.scoring)
    spec = {k: sc[k] for k in ("train", "embedded_n_images", "embedded_image_size", "embedded_categories", "seed")}
    spec["roots"] = {k: v for k, v in sc["roots"].items() if k in sc["train"]}
    return spec


def stage_fingerprint(cfg: Config, stage, init_path: str | os.PathLike, world_size: int) -> dict:
    """The settings a checkpoint must share with the run that resumes it, and their hash."""
    stage = _stage(stage)
    if stage == "warmup":
        section = asdict(cfg.warmup)
    else:
        section = {k: v for k, v in asdict(getattr(cfg, STAGE_SECTIONS[stage])).items() if k not in _HARMLESS}
    settings = {
        "stage": stage, "section": section, "data": _data_spec(cfg, "1" if stage == "1" else "2"),
        "model": {k: v for k, v in asdict(cfg.model).items() if k != "path"},
        "init": str(Path(init_path).resolve()), "world_size": int(world_size),
        "launch": {"bf16": cfg.launch.bf16, "use_vllm": cfg.launch.use_vllm},
    }
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]
    return {"fingerprint": digest, "settings": settings}


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            out += _diff(a.get(k), b.get(k), f"{prefix}.{k}" if prefix else str(k))
        return out
    return [] if a == b else [f"{prefix}: checkpoint {a!r} vs now {b!r}"]


def _checkpoints(ckpt_dir: Path) -> list[Path]:
    if not ckpt_dir.is_dir():
        return []
    found = [p for p in ckpt_dir.iterdir() if p.is_dir() and p.name.startswith("checkpoint-")
             and p.name.split("-")[-1].isdigit()]
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def find_resume_checkpoint(run_dir: Path, fingerprint: dict) -> Path | None:
    """The latest complete checkpoint of ``run_dir`` (``None`` when there is none).

    A checkpoint without ``refine_run.json`` was interrupted while saving (or not written by this
    project) and is skipped with a message; one whose fingerprint differs raises ``ValueError``
    naming the differing settings."""
    for ckpt in reversed(_checkpoints(Path(run_dir) / "checkpoints")):
        marker = ckpt / CHECKPOINT_MARKER
        if not marker.is_file():
            print(f"[train] skipping {ckpt}: incomplete (no {CHECKPOINT_MARKER})", flush=True)
            continue
        saved = read_json(marker)
        if saved.get("fingerprint") != fingerprint["fingerprint"]:
            diffs = _diff(saved.get("settings", {}), fingerprint["settings"])
            raise ValueError(
                f"{ckpt}: checkpoint from another configuration; differing settings: "
                + ("; ".join(diffs[:8]) or "unknown") + ". Use --no-resume (deletes the old checkpoints) or another "
                "--run-dir.")
        return ckpt
    return None


def _marker_callback(fingerprint: dict):
    from transformers import TrainerCallback

    class CheckpointMarker(TrainerCallback):
        """Writes ``refine_run.json`` into each checkpoint once it is saved (marks it complete)."""

        def on_save(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                ckpt = Path(args.output_dir) / f"checkpoint-{state.global_step}"
                if ckpt.is_dir():
                    write_json(ckpt / CHECKPOINT_MARKER, {**fingerprint, "step": int(state.global_step)})

    return CheckpointMarker()


def grpo_config(cfg: Config, stage, run_dir: Path):
    """TRL ``GRPOConfig`` of a GRPO stage: batch = ``prompts_per_step × G`` completions per
    process, explicit sampling settings, no KL by default, checkpoints under ``run_dir``."""
    from trl import GRPOConfig

    s = getattr(cfg, STAGE_SECTIONS[_stage(stage)])
    L = cfg.launch
    world = int(os.environ.get("WORLD_SIZE", "1"))
    kwargs = dict(
        output_dir=str(Path(run_dir) / "checkpoints"),
        per_device_train_batch_size=int(s.prompts_per_step) * int(s.num_generations),
        gradient_accumulation_steps=int(s.gradient_accumulation_steps),
        num_generations=int(s.num_generations),
        max_completion_length=int(s.max_completion_length),
        temperature=float(s.temperature), top_p=float(s.top_p), top_k=int(s.top_k),
        beta=float(s.beta), loss_type=s.loss_type,
        learning_rate=float(s.learning_rate), lr_scheduler_type=s.lr_scheduler_type,
        warmup_steps=float(s.warmup_ratio) if s.warmup_ratio else 0,
        max_steps=int(s.max_steps), num_train_epochs=float(s.num_train_epochs),
        max_grad_norm=float(s.max_grad_norm),
        save_strategy="steps", save_steps=int(s.save_steps), save_total_limit=int(s.save_total_limit),
        logging_steps=int(s.logging_steps), seed=int(s.seed),
        use_cpu=bool(L.use_cpu), bf16=bool(L.bf16), gradient_checkpointing=bool(L.gradient_checkpointing),
        use_vllm=bool(L.use_vllm), vllm_mode=L.vllm_mode,
        report_to="none", log_completions=False, remove_unused_columns=False, dataloader_num_workers=0,
        shuffle_dataset=True, disable_tqdm=True,
    )
    if L.use_cpu and world > 1:
        kwargs["ddp_backend"] = "gloo"
    return GRPOConfig(**kwargs)


def stage_checks(cfg: Config, stage) -> list[tuple[str, bool, str]]:
    """``[(check, ok, detail)]``: model folder, initial weights, datasets (what ``--dry-run`` prints)."""
    stage = _stage(stage)
    out = []
    try:
        init, how = resolve_init(cfg, stage)
        out.append(("initial weights", True, f"{init} ({how})"))
    except (FileNotFoundError, ValueError, ConfigError) as e:
        out.append(("initial weights", False, str(e)))
    if stage in ("warmup", "2"):
        from refine_iqa_lib.data.scoring_set import is_embedded

        for name in cfg.scoring.train:
            if is_embedded(cfg, name):
                out.append((f"scoring data {name}", True, "embedded synthetic set (built on demand)"))
                continue
            root = cfg.scoring.roots.get(name)
            path = cfg.resolve(root) if root else None
            ok = path is not None and path.is_dir()
            out.append((f"scoring data {name}", ok, f"{path}" if root else "no scoring.roots entry"))
    if stage in ("warmup", "1"):
        from refine_iqa_lib.training.data import perception_dir

        p = perception_dir(cfg) / "samples_train.jsonl"
        needed = stage == "1"
        out.append(("perception dataset", p.is_file() or not needed,
                    str(p) if p.is_file() else f"{p} missing (python -m refine_iqa_lib.data.build --profile "
                                                f"{cfg.profile})" + ("" if needed else "; warm-up uses scoring only")))
    return out


def _clean_run_dir(run_dir: Path) -> None:
    for name in ("checkpoints", "final", "advantages", "metrics.jsonl", "run_meta.json"):
        p = run_dir / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def run_stage(cfg: Config, stage, run_dir: str | os.PathLike | None = None, resume: bool = True,
              callbacks: list | None = None, dry_run: bool = False) -> Path:
    """Run ``stage`` (``"warmup"``, ``"1"``, ``"2"``) for ``cfg``; returns the run folder.

    ``callbacks``: extra ``TrainerCallback`` objects (tests use them to interrupt a run).
    ``dry_run``: print the resolved settings and the checks, train nothing.
    """
    stage = _stage(stage)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg, stage)
    if dry_run:
        from refine_iqa_lib.training.launch import stage_settings

        print(f"[train] stage {stage} -> {run_dir}")
        print(f"[train] {stage_settings(cfg, stage)}")
        for name, ok, detail in stage_checks(cfg, stage):
            print(f"[train] {'ok ' if ok else 'MISSING'} {name}: {detail}")
        return run_dir
    if stage == "warmup":
        from refine_iqa_lib.training.warmup import run_warmup

        return run_warmup(cfg, run_dir, resume=resume, callbacks=callbacks)
    return _run_grpo(cfg, stage, run_dir, resume, callbacks or [])


def _truncate_advantages(folder: Path, step: int) -> None:
    """Drop the per-rank advantage rows after ``step`` (a resumed run writes them again)."""
    from refine_iqa_lib.io import read_jsonl, write_jsonl

    for path in sorted(Path(folder).glob("rank*.jsonl")):
        write_jsonl(path, [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step])


def _run_grpo(cfg: Config, stage: str, run_dir: Path, resume: bool, callbacks: list) -> Path:
    from accelerate import PartialState

    from refine_iqa_lib.io import seed_everything
    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.training.data import stage1_dataset, stage2_dataset
    from refine_iqa_lib.training.metrics import MetricsJSONLCallback, last_wall_time, quiet_console, truncate_metrics
    from refine_iqa_lib.training.trainer import NaNGuardCallback, RefineGRPOTrainer, RefineSettings

    state = PartialState()
    s = getattr(cfg, STAGE_SECTIONS[stage])
    if resume and is_complete(run_dir):
        print(f"[train] stage {stage}: {run_dir} is already complete (final/{FINAL_MARKER}); nothing to do",
              flush=True)
        return run_dir
    if not resume and state.is_main_process and run_dir.exists():
        _clean_run_dir(run_dir)
    state.wait_for_everyone()
    seed_everything(int(s.seed))

    # 1. initial weights and data (the main process builds shared files first)
    with state.main_process_first():
        init, how = resolve_init(cfg, stage)
        dataset = stage1_dataset(cfg) if stage == "1" else stage2_dataset(cfg)
    print(f"[train] stage {stage}: {len(dataset)} training prompts; initial weights {init} ({how})", flush=True)

    # 2. resume point, checked against this configuration before anything trains
    fp = stage_fingerprint(cfg, stage, init, state.num_processes)
    ckpt = find_resume_checkpoint(run_dir, fp) if resume else None
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is not None:
            step = int(ckpt.name.split("-")[-1])
            kept = truncate_metrics(run_dir, step)
            _truncate_advantages(run_dir / "advantages", step)
            print(f"[train] resuming from {ckpt} ({kept} metric rows kept)", flush=True)
        elif (run_dir / "advantages").exists():
            shutil.rmtree(run_dir / "advantages")
        save_config(cfg, run_dir / "run_config.yaml")
    state.wait_for_everyone()

    # 3. policy and trainer
    model, processor = load_policy(init, dtype=cfg.model.dtype, min_pixels=cfg.model.min_pixels,
                                   max_pixels=cfg.model.max_pixels)
    args = grpo_config(cfg, stage, run_dir)
    refine = RefineSettings.from_stage(s, stage, advantages_dir=run_dir / "advantages")
    wall0 = last_wall_time(run_dir) if ckpt is not None else 0.0
    cbs = [MetricsJSONLCallback(run_dir, wall_offset=wall0, extra={"stage": stage}), NaNGuardCallback(),
           _marker_callback(fp), *callbacks]
    trainer = RefineGRPOTrainer(model=model, args=args, train_dataset=dataset, processing_class=processor,
                                callbacks=cbs, refine=refine)
    quiet_console(trainer, f"stage{stage}")
    if state.is_main_process:
        write_json(run_dir / "run_meta.json", _run_meta(cfg, stage, init, how, refine, fp, args, len(dataset)))

    # 4. train, then save the final weights (the marker is written last)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    final = _final_dir(run_dir)
    trainer.save_model(str(final))
    if state.is_main_process:
        processor.save_pretrained(str(final))
        write_json(final / FINAL_MARKER, {**fp, "steps": int(trainer.state.global_step), "stage": stage})
    state.wait_for_everyone()
    return run_dir


def _run_meta(cfg, stage, init, how, refine, fp, args, n_prompts) -> dict:
    import torch
    import transformers
    import trl

    s = getattr(cfg, STAGE_SECTIONS[stage])
    notes = []
    if s.variant == "authors":
        notes.append("variant=authors reproduces: answer reward with <=, 'Score: X.XX' answers (two decimals), "
                     "PD from the first decimal digit only, advantage offset -2e-5 with std+1e-4 (all-equal "
                     "wrong group -> -0.2). loss_type/beta/pd_reference are separate keys (AUTHORS_OVERRIDES "
                     "sets grpo per-sequence averaging, beta 0.04, sampled no-think reference). Not reproduced: "
                     "gradients through the PD term (always detached here).")
    return {
        "stage": stage, "initial_weights": str(init), "initial_weights_source": how,
        "fingerprint": fp["fingerprint"], "refine": refine.to_dict(), "n_prompts": int(n_prompts),
        "batch": {"completions_per_process": args.per_device_train_batch_size,
                  "prompts_per_process": s.prompts_per_step, "num_generations": s.num_generations,
                  "processes": int(os.environ.get("WORLD_SIZE", "1"))},
        "loss_type": s.loss_type, "beta": s.beta,
        "sampling": {"temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k},
        "evaluation": {"methods": list(cfg.eval.methods), "modes": list(cfg.eval.modes),
                       "note": "numeric vs probability (Eq. 8) inference is an evaluation-side choice "
                               "(Table 6); training is identical"},
        "no_think_metric": ("refine/answer_no_think: Eq. 1 on one sampled no-think completion per rollout, "
                            f"every {s.no_think_every} steps (not used by the loss)") if stage == "2" else None,
        "notes": notes,
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m refine_iqa_lib.training.run", description=__doc__.split("\n\n")[0])
    ap.add_argument("--stage", required=True, choices=["warmup", "1", "2"])
    ap.add_argument("--profile", default="tiny", help="profile name or a resolved config YAML")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="dotted config override, e.g. stage2.learning_rate=5e-5 (repeatable)")
    ap.add_argument("--run-dir", default=None)
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--resume", dest="resume", action="store_true", default=True)
    g.add_argument("--no-resume", dest="resume", action="store_false")
    ap.add_argument("--dry-run", action="store_true", help="print settings and checks; train nothing")
    args = ap.parse_args(argv)
    try:
        cfg = load_config(args.profile, args.sets)
        run_dir = run_stage(cfg, args.stage, run_dir=args.run_dir, resume=args.resume, dry_run=args.dry_run)
    except (ConfigError, FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"[train] stage {args.stage} done: {run_dir}", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
