"""Run one training stage: the SFT warm-up (stand-in only), Stage-1 or Stage-2 GRPO.

Python: :func:`run_stage`; the command line is :mod:`refine_iqa_lib.training.cli`. Every stage
reads like the same list of steps (:func:`_train`): resolve the run folder and the initial
weights -> build and check the dataset -> look for a checkpoint to resume (and check it belongs to
this configuration) -> load the policy -> train -> save ``final/``. The warm-up and the GRPO
stages differ only in their dataset, their TRL trainer and its config.

Run folder (default ``<work_dir>/runs/{warmup,stage1,stage2}``; ablations pass their own):
``run_config.yaml`` (the resolved config), ``run_meta.json`` (settings, initial weights, what is
and is not reproduced, evaluation-side choices), ``metrics.jsonl`` (one row per step),
``checkpoints/checkpoint-N/`` (TRL/transformers checkpoints with optimizer, scheduler and RNG
state, the last ``save_total_limit`` kept; ``refine_run.json`` in each marks it complete and names
its configuration), ``advantages/rank<r>.jsonl`` (the gathered advantages per step and process) and
``final/`` (weights + processor; ``refine_final.json`` written last marks the stage done).

Initial weights: Stage-1 starts from the warm-up output when the base is the offline stand-in
(:func:`refine_iqa_lib.runs.uses_warmup`), else from the base model; Stage-2 from Stage-1's
``final/`` (``init_from: previous``) or from what Stage-1 would start from (``init_from: base``,
the "w/o Stage-1" ablation); ``init_path`` overrides both.

TRL settings: a GRPO stage's TRL fields go to ``GRPOConfig`` through one mapping,
:data:`TRL_FIELDS`; :class:`~refine_iqa_lib.training.trainer.RefineSettings` takes the rest of the
same section by name; the dry-run summary and ``run_meta.json`` are read back from those two
objects, never copied by hand. ``launch``'s vLLM and tracker settings go to TRL's own fields
(:data:`LAUNCH_FIELDS`); at the start of a run :func:`runtime_config` keeps only what this machine
has (vLLM, the trackers), saying in one line what it left out, and the run records what ran.

Resuming (the default): the latest complete checkpoint of the run folder is loaded, after checking
that it was written with the same training-relevant settings (a different configuration is an
error that names the differing keys, before any training). A finished stage (``final/`` present)
is not retrained. ``resume=False`` deletes the run folder's previous checkpoints, metrics and
outputs first.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shlex
import shutil
from dataclasses import asdict
from pathlib import Path
from typing import Callable

from refine_iqa_lib.config import Config, ConfigError, load_config, overrides_of, save_config
from refine_iqa_lib.environment import numeric_versions
from refine_iqa_lib.io import (read_json, read_jsonl, repo_relative, seed_everything, using_image_rules, write_json,
                              write_jsonl)
from refine_iqa_lib.models import check_model_dir
from refine_iqa_lib.runs import (
    CHECKPOINT_MARKER, FINAL_MARKER, STAGE_SECTIONS, check_stage, default_run_dir, final_dir, is_complete,
    resolve_model_path, stage_section, uses_warmup,
)

log = logging.getLogger(__name__)

__all__ = ["TRL_FIELDS", "FINGERPRINT_EXCLUDED", "resolve_init", "stage_fingerprint", "find_resume_checkpoint",
           "trl_kwargs", "grpo_config", "stage_settings", "stage_checks", "stage_command", "clean_run_dir",
           "last_complete_checkpoint", "run_stage", "runtime_config", "LAUNCH_FIELDS", "TENSORBOARD_DIR"]

#: StageConfig field -> ``GRPOConfig`` field: the one place a stage's TRL settings are named.
TRL_FIELDS = {
    "num_generations": "num_generations", "max_completion_length": "max_completion_length",
    "temperature": "temperature", "top_p": "top_p", "top_k": "top_k", "beta": "beta", "loss_type": "loss_type",
    "learning_rate": "learning_rate", "lr_scheduler_type": "lr_scheduler_type",
    "warmup_ratio": "warmup_steps",      # transformers reads a value below 1 as a ratio of the steps
    "max_steps": "max_steps", "num_train_epochs": "num_train_epochs", "max_grad_norm": "max_grad_norm",
    "gradient_accumulation_steps": "gradient_accumulation_steps", "save_steps": "save_steps",
    "save_total_limit": "save_total_limit", "logging_steps": "logging_steps", "seed": "seed",
}
#: LaunchConfig field -> ``GRPOConfig`` field (TRL's own names: vLLM generation and the trackers).
LAUNCH_FIELDS = {"use_cpu": "use_cpu", "bf16": "bf16", "gradient_checkpointing": "gradient_checkpointing",
                 "use_vllm": "use_vllm", "vllm_mode": "vllm_mode",
                 "vllm_gpu_memory_utilization": "vllm_gpu_memory_utilization",
                 "vllm_tensor_parallel_size": "vllm_tensor_parallel_size",
                 "vllm_max_model_length": "vllm_max_model_length",  # 0 -> None (the model's own context)
                 "vllm_server_host": "vllm_server_host", "vllm_server_port": "vllm_server_port",
                 "report_to": "report_to"}
#: Fixed ``GRPOConfig`` settings of every GRPO stage.
TRL_FIXED = dict(save_strategy="steps", log_completions=False, remove_unused_columns=False,
                 dataloader_num_workers=0, shuffle_dataset=True, disable_tqdm=True)
#: Where a run's TensorBoard event files go (``launch.report_to: [tensorboard]``), inside the run folder.
TENSORBOARD_DIR = "tensorboard"
#: StageConfig keys left out of the resume fingerprint: they do not change what a run computes.
FINGERPRINT_EXCLUDED = {"save_steps", "save_total_limit", "logging_steps", "enabled", "init_path", "init_from",
                        "pd_raw_every", "eval_every", "eval_samples", "keep_best"}  # metrics/validation only


# --------------------------------------------------------------------------------------------
# initial weights, fingerprints, checkpoints


def stage_command(cfg: Config, stage) -> str:
    """The training command that runs ``stage`` for ``cfg``, with the config's own overrides
    repeated as ``--set`` (so a hint carries the user's ``paths.work_dir`` and the rest)."""
    sets = " ".join(shlex.quote(f"--set={o}") for o in overrides_of(cfg))
    return f"python -m refine_iqa_lib.training.cli --stage {check_stage(stage)} --profile {cfg.profile}" \
        + (f" {sets}" if sets else "")


def _require_final(run_dir: Path, what: str, stage: str, cfg: Config) -> Path:
    if not is_complete(run_dir):
        raise FileNotFoundError(
            f"{final_dir(run_dir)}: {what} output not found (no {FINAL_MARKER}); run `{stage_command(cfg, stage)}` first")
    return final_dir(run_dir)


def resolve_init(cfg: Config, stage) -> tuple[Path, str]:
    """``(initial weights folder, how it was chosen)`` for ``stage`` (see the module docstring)."""
    stage = check_stage(stage)
    base = resolve_model_path(cfg)
    if stage == "warmup":
        return base, "base model (offline stand-in)"

    def stage1_start() -> tuple[Path, str]:
        if uses_warmup(cfg):
            return _require_final(default_run_dir(cfg, "warmup"), "warm-up", "warmup", cfg), \
                "warm-up output (the stand-in's base; not in the paper)"
        return base, "base model"

    s = stage_section(cfg, stage)
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
    if sc["embedded_mos"] != "severity":  # absent for the default, so that earlier runs still resume
        spec["embedded_mos"] = sc["embedded_mos"]
    spec["roots"] = {k: v for k, v in sc["roots"].items() if k in sc["train"]}
    custom = {k: v for k, v in sc["custom"].items() if k in sc["train"]}
    if custom:  # absent otherwise, so that runs from before scoring.custom existed still resume
        spec["custom"] = custom
    return spec


def stage_fingerprint(cfg: Config, stage, init_path: str | os.PathLike, world_size: int) -> dict:
    """The settings a checkpoint must share with the run that resumes it, and their hash."""
    stage = check_stage(stage)
    section = {k: v for k, v in asdict(stage_section(cfg, stage)).items()
               if stage == "warmup" or k not in FINGERPRINT_EXCLUDED}
    if stage == "warmup" and not section.get("freeze_vision", True):  # absent for the default: earlier runs still resume
        section.pop("freeze_vision")
    if stage == "warmup" and section.get("group_by_length", False):  # likewise
        section.pop("group_by_length")
    if stage == "warmup":  # where a committed output lies does not change what trains
        section.pop("prebuilt", None)
    settings = {
        "stage": stage, "section": section, "data": _data_spec(cfg, "1" if stage == "1" else "2"),
        "model": {k: v for k, v in asdict(cfg.model).items() if k != "path"},
        "init": str(Path(init_path).resolve()), "world_size": int(world_size),
        "launch": {"bf16": cfg.launch.bf16, "use_vllm": cfg.launch.use_vllm},
    }
    if stage == "warmup":  # its data is the stand-in's pre-training set
        settings["pretrain"] = asdict(cfg.pretrain)
    if cfg.lora.enabled and stage != "warmup":  # absent otherwise: full fine-tuning runs keep their fingerprint
        settings["lora"] = asdict(cfg.lora)
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


def last_complete_checkpoint(run_dir: str | os.PathLike) -> Path | None:
    """The newest checkpoint of a run folder whose completion marker was written (an interrupted
    save has none and is never resumed from), or None."""
    done = [c for c in _checkpoints(Path(run_dir) / "checkpoints") if (c / CHECKPOINT_MARKER).is_file()]
    return done[-1] if done else None


def find_resume_checkpoint(run_dir: Path, fingerprint: dict) -> Path | None:
    """The latest complete checkpoint of ``run_dir`` (``None`` when there is none).

    A checkpoint without ``refine_run.json`` was interrupted while saving (or not written by this
    project) and is skipped with a message; one whose fingerprint differs raises ``ValueError``
    naming the differing settings."""
    for ckpt in reversed(_checkpoints(Path(run_dir) / "checkpoints")):
        marker = ckpt / CHECKPOINT_MARKER
        if not marker.is_file():
            log.info("[train] skipping %s: incomplete (no %s)", ckpt, CHECKPOINT_MARKER)
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


def clean_run_dir(run_dir: Path) -> None:
    """Delete a run folder's checkpoints, final weights, advantages, metrics and metadata."""
    for name in ("checkpoints", "final", "best", "adapter", "advantages", "metrics.jsonl", "run_meta.json"):
        p = Path(run_dir) / name
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()


def _truncate_advantages(folder: Path, step: int) -> None:
    """Drop the per-rank advantage rows after ``step`` (a resumed run writes them again)."""
    for path in sorted(Path(folder).glob("rank*.jsonl")):
        write_jsonl(path, [r for r in read_jsonl(path) if int(r.get("step", 0)) <= step])


# --------------------------------------------------------------------------------------------
# TRL settings


def trl_kwargs(cfg: Config, stage, run_dir: str | os.PathLike = ".") -> dict:
    """The ``GRPOConfig`` keyword arguments of a GRPO stage: :data:`TRL_FIELDS` of its section,
    :data:`LAUNCH_FIELDS` of ``launch``, the batch (``prompts_per_step × G`` completions per
    process), checkpoints under ``run_dir`` and :data:`TRL_FIXED`.

    >>> from refine_iqa_lib.config import load_config
    >>> kw = trl_kwargs(load_config("smoke"), "2")
    >>> kw["per_device_train_batch_size"] == kw["num_generations"] * load_config("smoke").stage2.prompts_per_step
    True
    """
    stage = check_stage(stage)
    if stage == "warmup":
        raise ConfigError("the warm-up is supervised (TRL's SFTConfig, standin.pretraining.sft_config), not GRPO")
    s = stage_section(cfg, stage)
    kwargs = {trl: getattr(s, ours) for ours, trl in TRL_FIELDS.items()}
    kwargs.update({trl: getattr(cfg.launch, ours) for ours, trl in LAUNCH_FIELDS.items()})
    kwargs.update(TRL_FIXED, output_dir=str(Path(run_dir) / "checkpoints"),
                  per_device_train_batch_size=int(s.prompts_per_step) * int(s.num_generations),
                  run_name=f"{cfg.profile}-{Path(run_dir).resolve().name}")
    kwargs["vllm_max_model_length"] = int(kwargs["vllm_max_model_length"]) or None
    kwargs["report_to"] = "none" if list(kwargs["report_to"]) == ["none"] else list(kwargs["report_to"])
    if cfg.launch.use_cpu and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        kwargs["ddp_backend"] = "gloo"
    return kwargs


def grpo_config(cfg: Config, stage, run_dir: Path):
    """TRL ``GRPOConfig`` of a GRPO stage (:func:`trl_kwargs`)."""
    from trl import GRPOConfig

    return GRPOConfig(**trl_kwargs(cfg, stage, run_dir))


def stage_settings(cfg: Config, stage) -> str:
    """One line with a stage's resolved training settings (printed by dry runs), read from the
    TRL keyword arguments and the trainer's settings."""
    stage = check_stage(stage)
    if stage == "warmup":
        w = cfg.warmup
        return f"SFT steps={w.max_steps} batch={w.batch_size} lr={w.learning_rate}"
    from refine_iqa_lib.training.trainer import RefineSettings

    kw = trl_kwargs(cfg, stage)
    r = RefineSettings.from_stage(stage_section(cfg, stage), stage)
    length = f"max_steps={kw['max_steps']}" if kw["max_steps"] > 0 else f"epochs={kw['num_train_epochs']}"
    L = cfg.launch
    procs = (f"processes={L.num_processes * L.num_machines} ({L.num_machines} machines x {L.num_processes}, "
             if L.num_machines > 1 else f"processes={L.num_processes} (")
    return (f"mode={r.mode} G={kw['num_generations']} prompts/step={kw['per_device_train_batch_size'] // kw['num_generations']} "
            f"{length} lr={kw['learning_rate']} ({kw['lr_scheduler_type']}) beta={kw['beta']} loss={kw['loss_type']} "
            f"PD={r.use_pd} PM={r.use_pm} variant={r.variant} T={kw['temperature']} top_p={kw['top_p']} "
            f"top_k={kw['top_k']} max_completion={kw['max_completion_length']} {procs}"
            f"{L.accelerate_config}{', vLLM ' + L.vllm_mode if L.use_vllm else ''})"
            + (f" LoRA r={cfg.lora.r} alpha={cfg.lora.alpha} dropout={cfg.lora.dropout} "
               f"targets={','.join(cfg.lora.target_modules)}{' +vision' if cfg.lora.vision else ''}"
               if cfg.lora.enabled else ""))


def stage_checks(cfg: Config, stage) -> list[tuple[str, bool, str]]:
    """``[(check, ok, detail)]``: model folder, initial weights, datasets (what ``--dry-run`` prints)."""
    from refine_iqa_lib.data.scoring_data import is_custom, is_embedded, load_custom_split
    from refine_iqa_lib.training.data import perception_dir

    stage = check_stage(stage)
    out = []
    try:
        init, how = resolve_init(cfg, stage)
        out.append(("initial weights", True, f"{init} ({how})"))
    except (FileNotFoundError, ValueError, ConfigError) as e:
        out.append(("initial weights", False, str(e)))
    if stage in ("warmup", "2"):
        for name in cfg.scoring.train:
            if is_embedded(cfg, name):
                out.append((f"scoring data {name}", True, "embedded synthetic set (built on demand)"))
                continue
            if is_custom(cfg, name):
                try:  # reads and checks every row (the errors name the file and the line)
                    df = load_custom_split(cfg, name, "train")
                    out.append((f"scoring data {name}", not df.empty,
                                f"{len(df)} training row(s) from scoring.custom.{name}.labels "
                                f"{cfg.resolve(cfg.scoring.custom[name]['labels'])}"))
                except (FileNotFoundError, ValueError, ConfigError) as e:
                    out.append((f"scoring data {name}", False, str(e)))
                continue
            root = cfg.scoring.roots.get(name)
            path = cfg.resolve(root) if root else None
            ok = path is not None and path.is_dir()
            out.append((f"scoring data {name}", ok, f"{path}" if root else "no scoring.roots entry"))
    if stage in ("warmup", "1"):
        p = perception_dir(cfg) / "samples_train.jsonl"
        needed = stage == "1"
        out.append(("perception dataset", p.is_file() or not needed,
                    str(p) if p.is_file() else f"{p} missing (python -m refine_iqa_lib.data.build --profile "
                                                f"{cfg.profile})" + ("" if needed else "; warm-up uses scoring only")))
    return out


# --------------------------------------------------------------------------------------------
# running a stage


def run_stage(cfg: Config, stage, run_dir: str | os.PathLike | None = None, resume: bool = True,
              callbacks: list | None = None, dry_run: bool = False) -> Path:
    """Run ``stage`` (``"warmup"``, ``"1"``, ``"2"``) for ``cfg``; returns the run folder.

    ``callbacks``: extra ``TrainerCallback`` objects (tests use them to interrupt a run).
    ``dry_run``: log the resolved settings and the checks, train nothing; a failed check raises
    ``ConfigError`` naming it (so a dry run that finds something missing is not a success).
    """
    stage = check_stage(stage)
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg, stage)
    if dry_run:
        log.info("[train] stage %s -> %s", stage, run_dir)
        log.info("[train] %s", stage_settings(cfg, stage))
        checks = stage_checks(cfg, stage)
        for name, ok, detail in checks:
            log.info("[train] %s %s: %s", "ok " if ok else "MISSING", name, detail)
        missing = [name for name, ok, _ in checks if not ok]
        if missing:
            raise ConfigError(f"dry run of stage {stage}: {len(missing)} check(s) failed: {', '.join(missing)} "
                              "(see the MISSING lines above)")
        return run_dir
    with using_image_rules(cfg):  # every picture of the run (data, validation) opened by cfg's images rules
        if stage == "warmup":
            return _run_warmup(cfg, run_dir, resume, callbacks or [])
        return _run_grpo(cfg, stage, run_dir, resume, callbacks or [])


def _train(cfg: Config, stage: str, run_dir: Path, resume: bool, callbacks: list, *, seed: int,
           build_dataset: Callable[[], object], build_trainer: Callable[..., object],
           meta: Callable[..., dict]) -> Path:
    """The steps every stage runs (module docstring). ``build_trainer(model, processor, dataset,
    callbacks)`` returns a TRL trainer; ``meta(init, how, fingerprint, trainer, dataset)`` the
    stage's ``run_meta.json`` content."""
    from accelerate import PartialState

    from refine_iqa_lib.models import load_policy
    from refine_iqa_lib.training.lora import is_peft_model, save_lora_final
    from refine_iqa_lib.training.metrics import MetricsJSONLCallback, last_wall_time, quiet_console, truncate_metrics
    from refine_iqa_lib.training.trainer import NaNGuardCallback

    state = PartialState()
    if resume and is_complete(run_dir):
        log.info("[train] stage %s: %s is already complete (final/%s); nothing to do", stage, run_dir, FINAL_MARKER)
        return run_dir
    if not resume and state.is_main_process and run_dir.exists():
        clean_run_dir(run_dir)
    state.wait_for_everyone()
    seed_everything(int(seed))

    # 1. initial weights and data (the main process builds shared files first)
    with state.main_process_first():
        init, how = resolve_init(cfg, stage)
        dataset = build_dataset()
    log.info("[train] stage %s: %d training rows; initial weights %s (%s)", stage, len(dataset), init, how)

    # 2. resume point, checked against this configuration before anything trains
    fp = stage_fingerprint(cfg, stage, init, state.num_processes)
    ckpt = find_resume_checkpoint(run_dir, fp) if resume else None
    if state.is_main_process:
        run_dir.mkdir(parents=True, exist_ok=True)
        if ckpt is not None:
            step = int(ckpt.name.split("-")[-1])
            kept = truncate_metrics(run_dir, step)
            _truncate_advantages(run_dir / "advantages", step)
            log.info("[train] resuming from %s (%d metric rows kept)", ckpt, kept)
        elif (run_dir / "advantages").exists():
            shutil.rmtree(run_dir / "advantages")
        save_config(cfg, run_dir / "run_config.yaml")
    state.wait_for_everyone()

    # 3. policy and trainer
    model, processor = load_policy(init, dtype=cfg.model.dtype, min_pixels=cfg.model.min_pixels,
                                   max_pixels=cfg.model.max_pixels)
    wall0 = last_wall_time(run_dir) if ckpt is not None else 0.0
    cbs = [MetricsJSONLCallback(run_dir, wall_offset=wall0, extra={"stage": stage}), NaNGuardCallback(),
           _marker_callback(fp), *callbacks]
    trainer = build_trainer(model, processor, dataset, cbs)
    for cb in trainer.callback_handler.callbacks:
        if isinstance(cb, NaNGuardCallback):
            cb.trainer = trainer
    quiet_console(trainer, f"stage{stage}" if stage != "warmup" else "warmup")
    if state.is_main_process:
        write_json(run_dir / "run_meta.json", {**meta(init, how, fp, trainer, dataset), "versions": numeric_versions()})

    # 4. train, then save the final weights (the marker is written last)
    trainer.train(resume_from_checkpoint=str(ckpt) if ckpt is not None else None)
    final = final_dir(run_dir)
    if is_peft_model(trainer.model):  # LoRA: adapter/ plus the merged weights in final/
        save_lora_final(trainer, processor, run_dir, final)
    else:
        trainer.save_model(str(final))
    if state.is_main_process:
        processor.save_pretrained(str(final))
        write_json(final / FINAL_MARKER, {**fp, "steps": int(trainer.state.global_step), "stage": stage})
    state.wait_for_everyone()
    return run_dir


def _run_warmup(cfg: Config, run_dir: Path, resume: bool, callbacks: list) -> Path:
    """The stand-in's supervised warm-up (:mod:`refine_iqa_lib.standin.pretraining`); skipped with a
    message for a real model or when ``warmup.enabled`` is false."""
    import pandas as pd

    from refine_iqa_lib.standin.pretraining import WarmupTrainer, sft_config, warmup_dataset

    if not uses_warmup(cfg):
        why = "warmup.enabled is false" if not cfg.warmup.enabled else f"{cfg.model.path} is not the offline stand-in"
        log.info("[warmup] skipped: %s. The warm-up only exists to give the random stand-in a starting point; "
                 "the paper fine-tunes Qwen2.5-VL-7B-Instruct directly.", why)
        return run_dir

    def build_trainer(model, processor, dataset, cbs):
        if cfg.warmup.freeze_vision:
            from refine_iqa_lib.standin.model import freeze_vision_tower

            log.info("[warmup] vision tower frozen: %d parameters fixed", freeze_vision_tower(model))
        return WarmupTrainer(model=model, args=sft_config(cfg, run_dir), train_dataset=dataset,
                             processing_class=processor, callbacks=cbs)

    def meta(init, how, fp, trainer, dataset):
        kinds = pd.Series(dataset["kind"]).value_counts().to_dict()
        return {"stage": "warmup", "initial_weights": repo_relative(init), "fingerprint": fp["fingerprint"],
                "n_samples": len(dataset), "kinds": {k: int(v) for k, v in kinds.items()},
                "note": "supervised warm-up of the offline stand-in; not part of the paper"}

    if cfg.warmup.prebuilt and not (resume and is_complete(run_dir)):
        from accelerate import PartialState

        from refine_iqa_lib.standin.prebuilt import adopt_prebuilt

        if PartialState().num_processes == 1:  # one process: the committed base's key has world size 1
            init, _ = resolve_init(cfg, "warmup")
            if not resume and run_dir.exists():
                clean_run_dir(run_dir)
            if adopt_prebuilt(cfg, run_dir, init, stage_fingerprint(cfg, "warmup", init, 1)):
                return run_dir
        else:
            log.info("[warmup] %d processes: the committed pre-trained stand-in (one process) is not used; training",
                     PartialState().num_processes)
    return _train(cfg, "warmup", run_dir, resume, callbacks, seed=cfg.warmup.seed,
                  build_dataset=lambda: warmup_dataset(cfg), build_trainer=build_trainer, meta=meta)


def runtime_config(cfg: Config) -> tuple[Config, dict]:
    """``cfg`` as this machine runs it, and ``{"engine", "notes"}``: the rollout engine
    (:func:`refine_iqa_lib.vllm_engine.training_engine`: where the configured vLLM cannot be used,
    ``launch.use_vllm`` becomes false and one line says why, or ``launch.vllm_required`` stops the
    run with :class:`~refine_iqa_lib.vllm_engine.VLLMUnavailableError`) and the trackers of
    ``launch.report_to`` that are installed (one line names those left out). The main process logs
    the lines; ``run_config.yaml`` and the resume fingerprint record what runs.

    >>> from refine_iqa_lib.config import load_config
    >>> cfg, info = runtime_config(load_config("smoke"))
    >>> cfg.launch.use_vllm, info
    (False, {'engine': 'transformers generate', 'notes': []})
    """
    from accelerate import PartialState

    from refine_iqa_lib.training.metrics import missing_trackers
    from refine_iqa_lib.vllm_engine import training_engine

    choice = training_engine(cfg)
    changes, notes = {}, []
    if choice.fallback:
        changes["launch.use_vllm"] = False
        notes.append(choice.fallback)
    missing = missing_trackers(cfg.launch.report_to)
    if missing:
        kept = [t for t in cfg.launch.report_to if t not in missing] or ["none"]
        changes["launch.report_to"] = kept
        notes.append(f"[trackers] launch.report_to: {', '.join(missing)} not installed here (pip install "
                     f"{' '.join(missing)}); left out, reporting to {', '.join(kept)} "
                     "(metrics.jsonl is always written)")
    if PartialState().is_main_process:
        for note in notes:
            log.info("%s", note)
    return (load_config(cfg, changes) if changes else cfg), {"engine": choice.engine, "notes": notes}


def _run_grpo(cfg: Config, stage: str, run_dir: Path, resume: bool, callbacks: list) -> Path:
    from refine_iqa_lib.training.data import stage1_dataset, stage2_dataset
    from refine_iqa_lib.training.metrics import point_trackers_at_run
    from refine_iqa_lib.training.trainer import RefineGRPOTrainer, RefineSettings

    s = stage_section(cfg, stage)
    refine = RefineSettings.from_stage(s, stage, advantages_dir=run_dir / "advantages")
    configured = cfg
    cfg, runtime = runtime_config(cfg)   # the engine and trackers this machine has (one line each if not)

    def build_trainer(model, processor, dataset, cbs):
        val = None
        if stage == "2" and s.eval_every > 0:
            from refine_iqa_lib.training.validation import ValidationCallback

            val = ValidationCallback(cfg, run_dir, processor)
            cbs = [*cbs, val]
        peft = {}
        if cfg.lora.enabled:
            from refine_iqa_lib.training.lora import peft_config

            peft = {"peft_config": peft_config(cfg)}
        trainer = RefineGRPOTrainer(model=model, args=grpo_config(cfg, stage, run_dir), train_dataset=dataset,
                                    processing_class=processor, callbacks=cbs, refine=refine, **peft)
        if val is not None:
            val.trainer = trainer
        point_trackers_at_run(trainer, run_dir, TENSORBOARD_DIR)
        return trainer

    def meta(init, how, fp, trainer, dataset):
        out = _run_meta(cfg, stage, init, how, refine, fp, trainer.args, len(dataset), trainer.model)
        out["generation"] = {"engine": runtime["engine"], "configured": "vLLM " + configured.launch.vllm_mode
                             if configured.launch.use_vllm else "transformers generate", "notes": runtime["notes"]}
        out["report_to"] = list(cfg.launch.report_to)
        return out

    return _train(cfg, stage, run_dir, resume, callbacks, seed=s.seed,
                  build_dataset=lambda: stage1_dataset(cfg) if stage == "1" else stage2_dataset(cfg),
                  build_trainer=build_trainer, meta=meta)


def _trainable(model) -> dict:
    from refine_iqa_lib.training.lora import trainable_parameters

    n, total = trainable_parameters(model)
    return {"trainable": int(n), "total": int(total)}


def _run_meta(cfg, stage, init, how, refine, fp, args, n_prompts, trainer_model=None) -> dict:
    import torch
    import transformers
    import trl

    s = stage_section(cfg, stage)
    notes = []
    if refine.variant == "authors":
        notes.append("variant=authors reproduces: answer reward with <=, 'Score: X.XX' answers (two decimals), "
                     "PD from the first decimal digit only, advantage offset -2e-5 with std+1e-4 (all-equal "
                     "wrong group -> -0.2). loss_type/beta/pd_reference are separate keys (AUTHORS_OVERRIDES "
                     "sets grpo per-sequence averaging, beta 0.04, sampled no-think reference). Not reproduced: "
                     "gradients through the PD term (always detached here).")
    refine_dict = refine.to_dict()
    if refine_dict.get("advantages_dir"):
        refine_dict["advantages_dir"] = repo_relative(refine_dict["advantages_dir"])
    return {
        "stage": stage, "initial_weights": repo_relative(init), "initial_weights_source": how,
        "fingerprint": fp["fingerprint"], "refine": refine_dict, "n_prompts": int(n_prompts),
        "trl": {trl_name: getattr(args, trl_name) for trl_name in TRL_FIELDS.values()},
        "batch": {"completions_per_process": args.per_device_train_batch_size,
                  "prompts_per_process": args.per_device_train_batch_size // args.num_generations,
                  "num_generations": args.num_generations,
                  "processes": int(os.environ.get("WORLD_SIZE", "1"))},
        "evaluation": {"methods": list(cfg.eval.methods), "modes": list(cfg.eval.modes),
                       "note": "numeric vs probability (Eq. 8) inference is an evaluation-side choice "
                               "(Table 6); training is identical"},
        "no_think_metric": ("refine/answer_no_think: Eq. 1 on one sampled no-think completion per rollout, "
                            f"every {s.no_think_every} steps (not used by the loss)") if stage == "2" else None,
        "notes": notes,
        "lora": ({**asdict(cfg.lora), "trainable_parameters": _trainable(trainer_model)} if cfg.lora.enabled else None),
        "versions": {"trl": trl.__version__, "transformers": transformers.__version__, "torch": torch.__version__},
    }
