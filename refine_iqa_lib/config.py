"""One typed configuration for data, model, training and evaluation.

A run is described by a *profile* - a YAML file under ``refine_iqa_lib/configs/profiles/``
(``smoke``, ``tiny``, ``paper``) - plus dotted overrides::

    cfg = load_config("tiny", {"stage2.learning_rate": 5e-5, "model.path": "/models/Qwen2.5-VL-7B-Instruct"})
    cfg = load_config("smoke", ["stage1.max_steps=2"])

Unknown profiles, sections or keys fail with an error naming them and listing the valid ones.
Values are converted to the field's declared type (so ``"1e-4"`` from a command line becomes a
float). The only differences between scales are values in these files: no code path is specific
to a profile.
"""
from __future__ import annotations

import dataclasses
import json
import os
import typing
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from refine_iqa_lib.method.rewards import PAPER_REWARDS, REQUIRED_REWARDS, REWARDS, reward_names
from refine_iqa_lib.io import DEFAULT_PIXEL_LIMIT, REPO_ROOT, write_text

PROFILE_DIR = Path(__file__).parent / "configs" / "profiles"
ACCELERATE_DIR = Path(__file__).parent / "configs" / "accelerate"


class ConfigError(ValueError):
    """A profile, section, key or value that does not exist or does not fit; ``key`` is the dotted
    key at fault when there is one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


@dataclass
class PathsConfig:
    """Where things are written. Relative paths are resolved against the repository root."""

    results_dir: str = "results"          # tables, metrics JSON, executed notebooks
    figures_dir: str = "figures"          # PNG + PDF figures
    work_dir: str = "results/work/{profile}"  # built datasets, runs, checkpoints (git-ignored)
    cache_dir: str = ".cache/refine_iqa"  # the stand-in model cache (git-ignored)


@dataclass
class ModelConfig:
    """The policy. ``path: tiny`` builds the offline stand-in; anything else is a local folder."""

    path: str = "tiny"
    seed: int = 0                         # stand-in initialisation seed
    dtype: str = "float32"                # float32 on CPU; bfloat16 on GPUs (paper)
    min_pixels: int = 56 * 56
    max_pixels: int = 112 * 112           # paper: about 151,200
    tiny_arch: dict = field(default_factory=dict)  # overrides of standin.model.TINY_ARCH


@dataclass
class PerceptionConfig:
    """Refine-Perception dataset construction (Fig. 2)."""

    source: str = "embedded"              # embedded | coco | jsonl
    # embedded source: the world split its held-out scenes come from - test (the tables) or
    # validation (measurements that choose settings; standin.informativeness)
    heldout: str = "test"
    root: str = ""                        # image folder (coco / jsonl sources)
    annotations: str = ""                 # COCO instances JSON or the objects JSONL
    n_images: int = 200                   # source scenes drawn from the pool (embedded: composites)
    image_size: int = 112                 # longest side of stored images (snapped to multiples of 28)
    min_object_area: float = 0.02         # minimum box area as a fraction of the image
    quality_scorer: str = "default"       # no-reference filter; see data.pipeline
    quality_threshold: float = 50.0       # scorer output is 0-100 (paper: Q-Align/DBCNN/HyperIQA all > 80)
    perceptibility_threshold: float = 0.01  # distortions.strength (1 - SSIM in the box) must exceed it
    combo_prob: float = 0.0               # share of two-distortion samples
    test_size: int = 40                   # paper: 1,500
    workers: int = 2
    review_file: str = ""                 # human review decisions (accept/reject), honoured by the build
    seed: int = 0
    min_box_side: int = 8                 # px; smaller objects are dropped after resizing
    max_objects: int = 5                  # objects (= marked images) kept per source image, largest first
    categories: list = field(default_factory=list)  # distortion pool; [] = all 12
    severities: list = field(default_factory=lambda: [1, 2, 3, 4, 5])
    options: str = "paper"                # answer pools: paper (12 types, 5 severities, every distractor) | compact
    # how the paper pools' options are listed: fixed (types in the engine's order, severities slight ->
    # very severe, objects left to right) | shuffled (seeded). The stand-in cannot bind a letter to a
    # shuffled option (measured in standin/pretrain_data.py), so fixed is the default at both scales.
    option_order: str = "fixed"
                                          # (object distractors: the max_objects largest objects, less same-name
                                          # ones and those mostly inside the target's box)
    n_options: int = 4                    # options per multiple-choice question in the compact layout
    samples_per_image: float = 2.6        # expected Stage-1 samples per train image (paper: 55K / 20.9K)
    fr_prob: float = 0.5                  # share of full-reference samples (train)
    test_forms: list = field(default_factory=lambda: ["fr", "nr"])  # test: all 3 tasks in these forms
    sample_modes: list = field(default_factory=lambda: ["no_think"])  # prompt modes drawn per sample
    chunk_size: int = 8                   # scenes per worker task


@dataclass
class ScoringDataConfig:
    """Stage-2 training sets and the IQA evaluation sets.

    ``roots`` maps a dataset name to its folder; the name ``embedded`` (or a root of
    ``"embedded"``) uses the synthetic stand-in written in KonIQ's layout. ``custom`` maps a
    name to your own labels file (:data:`CUSTOM_LABEL_KEYS`; read by
    :func:`refine_iqa_lib.data.iqa.load_labels`), usable in ``train`` and ``eval`` like any other::

        custom: {mine: {labels: data/mine.csv, range: [1, 10], image_column: path, split_column: set}}
    """

    train: list = field(default_factory=lambda: ["koniq"])
    eval: list = field(default_factory=lambda: ["koniq"])
    roots: dict = field(default_factory=lambda: {"koniq": "embedded"})
    custom: dict = field(default_factory=dict)
    embedded_n_images: int = 400
    embedded_image_size: int = 112
    embedded_categories: list = field(default_factory=lambda: ["noise", "underexposure"])
    # How the embedded set's synthetic MOS is made (EMBEDDED_MOS_MODELS): ``severity`` = the fixed map
    # 4.5 - 0.8 s + noise of the generating severity (refine_iqa_lib.standin.scoring_set.SYNTHETIC_MOS);
    # ``fidelity`` = a full-reference perceptual model of the distorted picture against its pristine
    # crop, so the MOS depends on the content too (refine_iqa_lib.standin.fidelity).
    embedded_mos: str = "severity"
    seed: int = 0


@dataclass
class WarmupConfig:
    """The offline stand-in's pre-training, run as the stage ``warmup`` before Stage-1: a supervised
    fine-tune (TRL's ``SFTTrainer``) of the random stand-in on the samples of
    :mod:`refine_iqa_lib.standin.pretrain_data` (see :class:`PretrainConfig`), never on a Stage-1
    answer or a MOS. Not in the paper, whose base model arrives pre-trained; skipped for any model
    other than the stand-in."""

    enabled: bool = True                  # only ever applied when model.path == "tiny"
    max_steps: int = 500
    batch_size: int = 16
    learning_rate: float = 1e-3
    warmup_steps: int = 20
    min_lr_ratio: float = 0.1             # cosine decay to this fraction of learning_rate
    # keep the vision tower (patch embedding, blocks, merger) fixed during the warm-up, e.g. so that
    # model.tiny_arch.vision_init "filters" survives it; off = every parameter trains
    freeze_vision: bool = False
    # batches of similar prompt length (transformers' group_by_length: little padding); false =
    # uniformly shuffled batches, each a mixture of tasks (the pre-training's tasks have
    # different prompt lengths, so length-grouped batches are each nearly one task)
    group_by_length: bool = True
    # a committed warm-up output (standin/prebuilt.py), adopted instead of training when its key
    # matches this configuration; repository-relative folder, empty = always train
    prebuilt: str = ""
    save_steps: int = 100
    seed: int = 0


@dataclass
class PretrainConfig:
    """The data of the stand-in's pre-training (:mod:`refine_iqa_lib.standin.pretrain_data`): the
    analogue of Qwen2.5-VL's pre-training and instruction tuning, samples on training-side pictures
    and tasks other than the tested ones, written by ``write_pretrain_dataset`` when the warm-up
    (:class:`WarmupConfig`) trains."""

    n_samples: int = 6000
    image_size: int = 112                 # longest side of the pictures shown (a multiple of 28)
    task_shares: dict = field(default_factory=lambda: {"name_object": 0.1, "object_name": 0.0, "object_box": 0.0,
                                                       "distortion_type": 0.28, "distortion_severity": 0.17,
                                                       "distortion_box": 0.2, "rate_attribute": 0.25})
    think_share: float = 0.35             # share of samples in think mode (the rest: no-think)
    pristine_share: float = 0.08          # distortion_type: share of undistorted pictures (answer "none")
    region_share: float = 0.6             # share of distortions confined to a random rectangle (never an object box)
    composite_share: float = 0.5          # distortion / rating pictures that are composite scenes (the rest: photo windows)
    # rate_attribute's attributes (standin.pretrain_data.ATTRIBUTES)
    attributes: list = field(default_factory=lambda: ["bright", "colourful", "sharp", "contrasty", "undistorted"])
    workers: int = 2                      # processes drawing the samples (the result does not depend on it)
    seed: int = 0


@dataclass
class StageConfig:
    """One GRPO stage (Stage-1 perception or Stage-2 scoring)."""

    enabled: bool = True
    mode: str = "no_think"                # no_think (Stage-1) | think (Stage-2)
    num_train_epochs: float = 1.0
    max_steps: int = -1                   # > 0 overrides epochs
    max_samples: int = 0                  # 0 = all
    learning_rate: float = 1e-4
    lr_scheduler_type: str = "linear"
    warmup_ratio: float = 0.0
    num_generations: int = 8              # G
    prompts_per_step: int = 2             # prompts per optimizer step per process
    gradient_accumulation_steps: int = 1
    max_completion_length: int = 32
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    beta: float = 0.0                     # KL coefficient (paper: none)
    loss_type: str = "dapo"               # token-level averaging (Eq. 7)
    use_pd: bool = True                   # probability-difference reward (Eq. 2-5), Stage-2
    use_pm: bool = True                   # policy-gradient modification (Eq. 6), Stage-2
    answer_eps: float = 0.5               # Eq. 1
    adv_eps: float = 0.02                 # Eq. 6
    # reward name -> weight (method.rewards.REWARDS); each stage section's default is the paper's
    # (PAPER_REWARDS: Eq. 5 with lambda = 1). Listed here, a profile's entries are added to the
    # default (a dict merges); pd trains only with use_pd (the w/o-PD ablation switch).
    rewards: dict = field(default_factory=dict)
    variant: str = "paper"                # paper (the paper's equations) | authors (the authors' released code)
    init_from: str = "previous"           # previous stage's weights, or "base"
    init_path: str = ""                   # explicit initial weights (overrides init_from)
    pd_reference: str = "forced"          # forced (Eq. 4, one pass) | sampled (authors: G no-think samples)
    no_think_every: int = 10              # sample no-think answers every k steps for Fig. 4 (0 = never)
    pd_raw_every: int = 10                # ungated PD of every rollout (refine/pd_raw) every k steps (0 = never)
    max_grad_norm: float = 1.0
    save_steps: int = 50
    save_total_limit: int = 2             # checkpoints kept
    logging_steps: int = 1
    eval_every: int = 0                   # Stage-2: validation SRCC/PLCC + answer reward every k steps (0 = off)
    eval_samples: int = 32                # pictures in the fixed validation subset
    keep_best: bool = False               # keep <run>/best/: the weights with the best validation SRCC
    seed: int = 0

    @property
    def lambdas(self) -> tuple[float, float, float]:
        """Eq. 5's ``(λ1, λ2, λ3)``: the weights of ``answer``, ``format`` and ``pd`` (0 for one not listed)."""
        return tuple(float(self.rewards.get(n, 0.0)) for n in ("answer", "format", "pd"))

    def active_rewards(self) -> dict[str, float]:
        """The rewards this stage trains with, name -> weight, in the listed order: ``rewards`` without
        ``pd`` when ``use_pd`` is off (the w/o-PD ablation)."""
        return {n: float(w) for n, w in self.rewards.items() if n != "pd" or self.use_pd}


@dataclass
class LaunchConfig:
    """How training jobs are launched (accelerate)."""

    accelerate_config: str = "cpu"        # cpu | ddp | zero3 | zero3_multinode | zero3_cpu (configs/accelerate)
    num_processes: int = 1                # processes (GPUs) per machine
    num_machines: int = 1                 # machines (nodes); the world size is num_processes x num_machines.
                                          # Each node's rank, the main node's address and port are read at
                                          # launch from the scheduler's variables (training.launch.NODE_VARIABLES)
    parallel_runs: int = 1                # independent runs (the ablations) started at once; on CPU the
                                          # cores are split between them (>1 pays off only on CPU)
    # Rollout generation through TRL's own GRPOConfig fields (training.run.LAUNCH_FIELDS). Teacher-forced
    # PD and Eq. 8 always run through the policy itself.
    use_vllm: bool = False                # generate rollouts with vLLM instead of transformers' generate
    vllm_mode: str = "colocate"           # colocate (inside every training process) | server (trl vllm-serve)
    vllm_required: bool = False           # vLLM cannot be imported: stop (true) or say so and use generate (false)
    vllm_gpu_memory_utilization: float = 0.3  # colocate: share of each GPU's memory vLLM takes (TRL's default)
    vllm_tensor_parallel_size: int = 1    # GPUs per vLLM engine (colocate: divides num_processes; server: its GPUs)
    vllm_max_model_length: int = 0        # vLLM's context (prompt + completion tokens); 0 = the model's own
    vllm_server_host: str = "0.0.0.0"     # server mode: where the trainer finds `trl vllm-serve`
    vllm_server_port: int = 8000
    # Live training curves: transformers' integrations, e.g. [tensorboard] (written to <run>/tensorboard),
    # [wandb], [trackio], [tensorboard, wandb]; [none] = metrics.jsonl only. A tracker that is not
    # installed is named in one line at the start of the run and left out.
    report_to: list = field(default_factory=lambda: ["none"])
    bf16: bool = False
    gradient_checkpointing: bool = False
    use_cpu: bool = True


@dataclass
class LoraConfig:
    """LoRA adapters for the GRPO stages (one GPU), through TRL's ``peft_config``; off by default.

    Only the adapters train; ``final/`` holds the merged weights (a plain model folder) and
    ``adapter/`` the adapter itself (:mod:`refine_iqa_lib.training.lora`). Not with a DeepSpeed
    ZeRO-3 launch config (refused at load, :data:`LORA_ZERO3`)."""

    enabled: bool = False
    r: int = 64                           # rank
    alpha: int = 128                      # scaling alpha / r
    dropout: float = 0.05
    target_modules: list = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj",
                                                          "up_proj", "down_proj"])
    vision: bool = False                  # also adapt the vision tower's layers of those names


@dataclass
class ImagesConfig:
    """How every picture is opened (:func:`refine_iqa_lib.io.open_image`): scoring, evaluation,
    training data and the dataset builds alike."""

    exif_orientation: bool = True         # turn phone photographs upright by their EXIF tag; false = raw pixels
    pixel_limit: int = DEFAULT_PIXEL_LIMIT  # pictures with more pixels are refused, by name, before decoding


@dataclass
class EvalConfig:
    """Evaluation settings (Tables 1-4)."""

    batch_size: int = 8
    max_samples: int = 0                  # 0 = all
    qbench_max_samples: int = 0           # questions scored (0 = eval.max_samples)
    modes: list = field(default_factory=lambda: ["no_think", "think"])
    methods: list = field(default_factory=lambda: ["prob", "numeric"])
    logistic_plcc: bool = False           # PLCC raw (default) or after a 4-parameter logistic fit
    max_new_tokens: int = 32
    qbench_root: str = "embedded"
    qbench_split: str = "dev"
    skip_unreadable: bool = False         # unreadable test images: stop naming them (default) or score the rest
    unparsable: str = "fallback"          # unparsable numeric answers: score them 2.5 (fallback) or drop them
    ci_resamples: int = 2000              # bootstrap resamples of every 95 % interval (evaluation.statistics)
    ci_level: float = 0.95                # confidence level of those intervals


@dataclass
class Config:
    profile: str = "tiny"
    seed: int = 0
    paths: PathsConfig = field(default_factory=PathsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    perception: PerceptionConfig = field(default_factory=PerceptionConfig)
    scoring: ScoringDataConfig = field(default_factory=ScoringDataConfig)
    warmup: WarmupConfig = field(default_factory=WarmupConfig)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig)
    stage1: StageConfig = field(default_factory=lambda: StageConfig(mode="no_think", use_pd=False, use_pm=False,
                                                                    rewards=dict(PAPER_REWARDS["1"])))
    stage2: StageConfig = field(default_factory=lambda: StageConfig(mode="think", rewards=dict(PAPER_REWARDS["2"])))
    launch: LaunchConfig = field(default_factory=LaunchConfig)
    lora: LoraConfig = field(default_factory=LoraConfig)
    images: ImagesConfig = field(default_factory=ImagesConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    # ---- derived locations (absolute) -------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """Absolute path for a config path (``{profile}`` substituted, relative to the repo)."""
        p = Path(os.path.expanduser(str(path).format(profile=self.profile)))
        return p if p.is_absolute() else REPO_ROOT / p

    @property
    def results_dir(self) -> Path:
        return self.resolve(self.paths.results_dir)

    @property
    def figures_dir(self) -> Path:
        return self.resolve(self.paths.figures_dir)

    @property
    def work_dir(self) -> Path:
        return self.resolve(self.paths.work_dir)

    @property
    def cache_dir(self) -> Path:
        return self.resolve(self.paths.cache_dir)

    def to_dict(self) -> dict:
        return asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)


def available_profiles() -> list[str]:
    """Profile names (YAML files under ``configs/profiles``)."""
    return sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))


def _convert(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}", where)
        return _build(tp, value, where)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        raise ConfigError(f"{where}: expected true/false, got {value!r}", where)
    if tp in (int, float):
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a {tp.__name__}, got {value!r}", where)
        try:
            out = tp(float(value)) if tp is int and isinstance(value, str) and "e" in value.lower() else tp(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a {tp.__name__}, got {value!r}", where) from None
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ConfigError(f"{where}: expected an integer, got {value!r}", where)
        return out
    if tp is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{where}: expected a string, got {value!r}", where)
        return "" if value is None else str(value)
    if tp is list or origin is list:
        if isinstance(value, str):
            value = yaml.safe_load(value) if value.strip().startswith("[") else [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}", where)
        return list(value)
    if tp is dict or origin is dict:
        if isinstance(value, str):
            value = yaml.safe_load(value)
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}", where)
        return dict(value)
    return value


def _build(cls, data: dict, where: str = ""):
    hints = typing.get_type_hints(cls)
    valid = [f.name for f in fields(cls)]
    unknown = sorted(set(data) - set(valid))
    if unknown:
        name = where or "config"
        raise ConfigError(f"unknown key(s) {unknown} in {name}; valid keys: {valid}")
    base = cls()
    kwargs = {}
    for f in fields(cls):
        key = f"{where}.{f.name}" if where else f.name
        if f.name in data:
            cur = getattr(base, f.name)
            val = data[f.name]
            if dataclasses.is_dataclass(cur) and isinstance(val, dict):
                kwargs[f.name] = _build(type(cur), _deep_merge(asdict(cur), val), key)
            elif isinstance(cur, dict) and isinstance(val, dict):  # free-form mapping: merge
                kwargs[f.name] = _convert(_deep_merge(cur, val), hints[f.name], key)
            else:
                kwargs[f.name] = _convert(val, hints[f.name], key)
    return dataclasses.replace(base, **kwargs)


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {p!r} is not a section")
    node[parts[-1]] = value


def _check_path(dotted: str) -> None:
    cls: Any = Config
    parts = dotted.split(".")
    for i, p in enumerate(parts):
        valid = [f.name for f in fields(cls)]
        if p not in valid:
            where = ".".join(parts[:i]) or "config"
            raise ConfigError(f"unknown key {dotted!r}: {p!r} is not in {where}; valid keys: {valid}")
        tp = typing.get_type_hints(cls)[p]
        if i < len(parts) - 1:
            if not dataclasses.is_dataclass(tp):
                if tp is dict or typing.get_origin(tp) is dict:
                    return  # free-form mapping (e.g. scoring.roots.koniq)
                raise ConfigError(f"unknown key {dotted!r}: {p!r} is a value, not a section")
            cls = tp


def parse_overrides(overrides: dict | list | tuple | None) -> dict:
    """Normalise overrides (``{"a.b": v}``, nested dicts, or ``["a.b=v", ...]``) to a nested dict."""
    tree: dict = {}
    if not overrides:
        return tree
    if isinstance(overrides, dict):
        items = list(overrides.items())
    else:
        items = []
        for item in overrides:
            if "=" not in str(item):
                raise ConfigError(f"override {item!r}: expected KEY=VALUE, e.g. stage2.learning_rate=1e-4")
            k, v = str(item).split("=", 1)
            items.append((k.strip(), yaml.safe_load(v) if v.strip() else ""))
    for k, v in items:
        if isinstance(v, dict) and "." not in k and k in [f.name for f in fields(Config)] and k not in ("profile", "seed"):
            for kk, vv in _flatten(v, k).items():
                _check_path(kk)
                _set_dotted(tree, kk, vv)
        else:
            _check_path(k)
            _set_dotted(tree, k, v)
    return tree


def _flatten(d: dict, prefix: str) -> dict:
    """``{"lr": 1, "x": {...}}`` under ``stage2`` -> ``{"stage2.lr": 1, ...}`` (sections only)."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}.{k}"
        if isinstance(v, dict) and _section_type(key) is not None:
            out.update(_flatten(v, key))
        else:
            out[key] = v
    return out


def _section_type(dotted: str):
    cls: Any = Config
    for p in dotted.split("."):
        hints = typing.get_type_hints(cls)
        if p not in hints:
            return None
        cls = hints[p]
    return cls if dataclasses.is_dataclass(cls) else None


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# --------------------------------------------------------------------------------------------
# values that cannot work (checked at load; each rule: dotted key (``*`` = stage1 and stage2),
# the test, and the rule as the error states it)

MODES = ("no_think", "think")
LOSS_TYPES = ("dapo", "grpo", "bnpo", "dr_grpo")     # TRL loss formulations the trainer supports
EMBEDDED_MOS_MODELS = ("severity", "fidelity")     # scoring.embedded_mos: the embedded set's synthetic MOS
#: launch.report_to values: transformers' reporting integrations, "all" (every one installed) or "none".
TRACKERS = ("none", "all", "tensorboard", "wandb", "trackio", "mlflow", "comet_ml", "clearml", "dvclive", "swanlab",
            "azure_ml", "codecarbon", "dagshub", "flyte", "neptune")
_pos = lambda v: v > 0                                 # noqa: E731
_ge = lambda n: (lambda v: v >= n)                     # noqa: E731
_one_of = lambda opts: (lambda v: v in opts)           # noqa: E731
_subset = lambda opts: (lambda v: bool(v) and all(x in opts for x in v))  # noqa: E731
_unit = lambda v: 0 <= v <= 1                          # noqa: E731

VALUE_RULES: tuple[tuple[str, Any, str], ...] = (
    ("model.dtype", _one_of(("float32", "bfloat16", "float16", "auto")), "one of float32, bfloat16, float16, auto"),
    ("model.min_pixels", _ge(1), ">= 1"),
    ("perception.source", _one_of(("embedded", "coco", "jsonl")), "one of embedded, coco, jsonl"),
    ("perception.heldout", _one_of(("test", "validation")), "test or validation (the world split of the embedded "
                                                            "source's held-out scenes)"),
    ("perception.n_images", _ge(1), ">= 1"),
    ("perception.image_size", lambda v: v >= 28 and v % 28 == 0, "a positive multiple of 28 (Qwen2.5-VL patches)"),
    ("perception.min_object_area", lambda v: 0 <= v < 1, "a fraction of the image area in [0, 1)"),
    ("perception.test_size", _ge(0), ">= 0 images (0 = no test split: the build works, the evaluation stops)"),
    ("perception.combo_prob", _unit, "a probability in [0, 1]"),
    ("perception.fr_prob", _unit, "a probability in [0, 1]"),
    ("perception.min_box_side", _ge(1), ">= 1 px"),
    ("perception.max_objects", _ge(1), ">= 1"),
    ("perception.n_options", _ge(2), ">= 2 options per question"),
    ("perception.options", _one_of(("paper", "compact")), "one of paper, compact"),
    ("perception.option_order", _one_of(("fixed", "shuffled")), "fixed or shuffled (how the paper pools' options are listed)"),
    ("perception.samples_per_image", _pos, "> 0"),
    ("perception.test_forms", _subset(("fr", "nr")), "a non-empty list of fr, nr"),
    ("perception.sample_modes", _subset(MODES), "a non-empty list of no_think, think"),
    ("perception.chunk_size", _ge(1), ">= 1"),
    ("scoring.embedded_mos", _one_of(EMBEDDED_MOS_MODELS), f"one of {', '.join(EMBEDDED_MOS_MODELS)} (the embedded "
                                                          "set's synthetic MOS model)"),
    ("warmup.max_steps", _ge(1), ">= 1"),
    ("warmup.batch_size", _ge(1), ">= 1"),
    ("warmup.learning_rate", _pos, "> 0"),
    ("pretrain.n_samples", _ge(1), ">= 1"),
    ("pretrain.image_size", lambda v: v >= 56 and v % 28 == 0, "a multiple of 28, at least 56 (Qwen2.5-VL patches)"),
    ("pretrain.task_shares", lambda v: bool(v) and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                      and x >= 0 for x in v.values()) and sum(v.values()) > 0,
     "a mapping task -> share >= 0 with a positive sum (tasks: name_object, object_name, object_box, "
     "distortion_type, distortion_severity, distortion_box, rate_attribute)"),
    ("pretrain.think_share", _unit, "a share in [0, 1]"),
    ("pretrain.pristine_share", _unit, "a share in [0, 1]"),
    ("pretrain.region_share", _unit, "a share in [0, 1]"),
    ("pretrain.composite_share", _unit, "a share in [0, 1]"),
    ("pretrain.workers", _ge(1), ">= 1"),
    ("*.mode", _one_of(MODES), "one of no_think, think"),
    ("*.num_generations", _ge(2), ">= 2 (G: GRPO's advantages compare at least two completions of a prompt)"),
    ("*.prompts_per_step", _ge(1), ">= 1 (the generation batch is prompts_per_step x num_generations "
                                   "completions per process, so a whole number of prompts is a multiple of G)"),
    ("*.gradient_accumulation_steps", _ge(1), ">= 1"),
    ("*.max_completion_length", _ge(1), ">= 1 token"),
    ("*.learning_rate", _pos, "> 0"),
    ("*.max_steps", lambda v: v == -1 or v >= 1, "-1 (train num_train_epochs) or >= 1"),
    ("*.num_train_epochs", _pos, "> 0"),
    ("*.warmup_ratio", _unit, "a fraction in [0, 1]"),
    ("*.temperature", _pos, "> 0 (sampling needs a positive temperature)"),
    ("*.top_p", lambda v: 0 < v <= 1, "in (0, 1]"),
    ("*.top_k", _ge(0), ">= 0 (0 = off)"),
    ("*.beta", _ge(0), ">= 0"),
    ("*.loss_type", _one_of(LOSS_TYPES), f"one of {', '.join(LOSS_TYPES)}"),
    ("*.answer_eps", _pos, "> 0"),
    ("*.adv_eps", _pos, "> 0"),
    ("*.variant", _one_of(("paper", "authors")), "one of paper, authors"),
    ("*.init_from", _one_of(("previous", "base")), "one of previous, base"),
    ("*.pd_reference", _one_of(("forced", "sampled")), "one of forced, sampled"),
    ("*.no_think_every", _ge(0), ">= 0 (0 = never)"),
    ("*.max_samples", _ge(0), ">= 0 (0 = all)"),
    ("*.pd_raw_every", _ge(0), ">= 0 (0 = never)"),
    ("*.max_grad_norm", _pos, "> 0"),
    ("*.save_steps", _ge(1), ">= 1"),
    ("*.save_total_limit", _ge(1), ">= 1"),
    ("*.logging_steps", _ge(1), ">= 1"),
    ("*.eval_every", _ge(0), ">= 0 steps (0 = no validation while training)"),
    ("*.eval_samples", _ge(2), ">= 2 pictures (a correlation needs at least two)"),
    ("launch.num_processes", _ge(1), ">= 1"),
    ("lora.r", _ge(1), ">= 1 (the adapters' rank)"),
    ("lora.alpha", _pos, "> 0"),
    ("lora.dropout", lambda v: 0 <= v < 1, "a probability in [0, 1)"),
    ("lora.target_modules", lambda v: bool(v) and all(isinstance(x, str) and x for x in v),
     "a non-empty list of module names (e.g. q_proj, v_proj)"),
    ("launch.parallel_runs", _ge(1), ">= 1"),
    ("launch.vllm_mode", _one_of(("colocate", "server")), "one of colocate, server"),
    ("images.pixel_limit", _ge(1), ">= 1 pixel"),
    ("launch.num_machines", _ge(1), ">= 1"),
    ("launch.vllm_gpu_memory_utilization", lambda v: 0 < v <= 1, "a share of the GPU's memory in (0, 1]"),
    ("launch.vllm_tensor_parallel_size", _ge(1), ">= 1"),
    ("launch.vllm_max_model_length", _ge(0), ">= 0 tokens (0 = the model's own context length)"),
    ("launch.vllm_server_port", lambda v: 1 <= v <= 65535, "a TCP port in 1-65535"),
    ("launch.report_to", lambda v: bool(v) and all(x in TRACKERS for x in v)
     and (len(v) == 1 or not {"none", "all"} & set(v)),
     f"a list of trackers from {', '.join(TRACKERS)} ([none] or [all] alone)"),
    ("eval.batch_size", _ge(1), ">= 1"),
    ("eval.max_samples", _ge(0), ">= 0 (0 = all)"),
    ("eval.qbench_max_samples", _ge(0), ">= 0 (0 = eval.max_samples)"),
    ("eval.max_new_tokens", _ge(1), ">= 1"),
    ("eval.modes", _subset(MODES), "a non-empty list of no_think, think"),
    ("eval.methods", _subset(("prob", "numeric", "num")), "a non-empty list of prob, numeric"),
    ("eval.qbench_split", _one_of(("dev", "test")), "dev or test"),
    ("eval.unparsable", _one_of(("fallback", "drop")), "fallback (score 2.5, the midpoint of [0, 5)) or drop"),
    ("eval.ci_resamples", _ge(1000), ">= 1000 bootstrap resamples"),
    ("eval.ci_level", lambda v: 0 < v < 1, "a confidence level in (0, 1)"),
)


#: Keys of one ``scoring.custom.<name>`` entry and their defaults (``labels`` and ``range`` required).
#: Paths are relative to the repository root unless absolute, like every config path.
CUSTOM_LABEL_KEYS = {"labels": None, "range": None, "image_dir": "", "image_column": "image", "mos_column": "mos",
                     "higher_is_better": True, "split_column": "", "std_column": ""}


def custom_labels(cfg: Config, name: str) -> dict:
    """The ``scoring.custom.<name>`` entry with its defaults filled in, checked; ``ConfigError``
    naming the key otherwise."""
    key = f"scoring.custom.{name}"
    entry = cfg.scoring.custom.get(name)
    if not isinstance(entry, dict):
        raise ConfigError(f"{key} = {entry!r}: expected a mapping with labels and range (and optionally "
                          f"{', '.join(k for k in CUSTOM_LABEL_KEYS if k not in ('labels', 'range'))})", key)
    unknown = sorted(set(entry) - set(CUSTOM_LABEL_KEYS))
    if unknown:
        raise ConfigError(f"{key}: unknown key(s) {unknown}; valid keys: {list(CUSTOM_LABEL_KEYS)}", key)
    out = {k: entry.get(k, v) for k, v in CUSTOM_LABEL_KEYS.items()}
    if not isinstance(out["labels"], str) or not out["labels"].strip():
        raise ConfigError(f"{key}.labels = {out['labels']!r}: expected the path of a CSV or JSONL labels file",
                          f"{key}.labels")
    r = out["range"]
    if (not isinstance(r, (list, tuple)) or len(r) != 2
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in r) or not r[0] < r[1]):
        raise ConfigError(f"{key}.range = {r!r}: expected [lo, hi] with lo < hi (the labels' MOS scale)",
                          f"{key}.range")
    if not isinstance(out["higher_is_better"], bool):
        raise ConfigError(f"{key}.higher_is_better = {out['higher_is_better']!r}: expected true or false",
                          f"{key}.higher_is_better")
    for k in ("image_dir", "image_column", "mos_column", "split_column", "std_column"):
        if not isinstance(out[k], str):
            raise ConfigError(f"{key}.{k} = {out[k]!r}: expected a string", f"{key}.{k}")
    if name in cfg.scoring.roots:
        raise ConfigError(f"{key}: {name!r} is also in scoring.roots; expected each dataset name once", key)
    return out


def check_stage_rewards(cfg: Config, stage: str) -> None:
    """Check ``stage<n>.rewards``: known names (:data:`refine_iqa_lib.method.rewards.REWARDS`) with
    finite weights, the stage's required rewards (:data:`~refine_iqa_lib.method.rewards.REQUIRED_REWARDS`),
    and ``pd`` listed when ``use_pd`` is on (only in think mode); ``ConfigError`` naming the key otherwise.

    >>> load_config("smoke", ["stage2.rewards.accuracy=1"])
    Traceback (most recent call last):
    ...
    refine_iqa_lib.config.ConfigError: --set stage2.rewards.accuracy=1: stage2.rewards: unknown reward 'accuracy'; known rewards: ['answer', 'format', 'grounding', 'mcq', 'pd', 'stage1']
    """
    key = f"stage{stage}.rewards"
    section = getattr(cfg, f"stage{stage}")
    rewards = section.rewards
    for name, weight in rewards.items():
        if name not in REWARDS:
            raise ConfigError(f"{key}: unknown reward {name!r}; known rewards: {reward_names()}", f"{key}.{name}")
        if (not isinstance(weight, (int, float)) or isinstance(weight, bool) or weight != weight
                or abs(weight) == float("inf")):
            raise ConfigError(f"{key}.{name} = {weight!r}: expected a finite number (the reward's weight)", f"{key}.{name}")
    missing = [n for n in REQUIRED_REWARDS[stage] if n not in rewards]
    if missing:
        raise ConfigError(f"{key} = {rewards}: expected {list(REQUIRED_REWARDS[stage])} among them (a rollout is "
                          f"correct when both are 1; weight 0 keeps one out of the sum), missing {missing}", key)
    if section.use_pd and "pd" not in rewards:
        raise ConfigError(f"stage{stage}.use_pd = true but {key} lists no pd; add pd with its weight (Eq. 5's "
                          f"lambda_3) or set stage{stage}.use_pd=false", f"stage{stage}.use_pd")
    if section.use_pd and section.mode != "think":
        raise ConfigError(f"stage{stage}.use_pd = true in {section.mode} mode: the PD reward compares a think with "
                          f"no-think; expected stage{stage}.mode=think or stage{stage}.use_pd=false", f"stage{stage}.use_pd")
#: Why ``lora.enabled`` is refused with a DeepSpeed ZeRO-3 launch.
LORA_ZERO3 = ("LoRA does not run under DeepSpeed ZeRO-3 here: ZeRO-3 splits every weight across the processes, and "
              "the adapter is merged into the base weights (peft merge_and_unload) on one process at the end, which "
              "would merge into partitioned, empty tensors and save a wrong final/. LoRA does not need ZeRO-3: the "
              "frozen base and the small adapter state fit one GPU (profile single_gpu), or several with "
              "launch.accelerate_config=ddp; full fine-tuning keeps zero3")


def deepspeed_file_zero_stage(path: str | os.PathLike) -> int | None:
    """The ZeRO stage of a DeepSpeed JSON config (``zero_optimization.stage``), or ``None``."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    stage = (data.get("zero_optimization") or {}).get("stage") if isinstance(data, dict) else None
    return int(stage) if isinstance(stage, (int, str)) and str(stage).isdigit() else None


def accelerate_zero_stage(name: str) -> int | None:
    """The DeepSpeed ZeRO stage an accelerate config (shipped name or YAML path) sets; ``None`` for
    one that is not DeepSpeed. Raises :class:`ConfigError` for an unknown config.

    >>> accelerate_zero_stage("zero3"), accelerate_zero_stage("ddp")
    (3, None)
    """
    path = accelerate_config_path(name)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict) or str(data.get("distributed_type", "")).upper() != "DEEPSPEED":
        return None
    ds = data.get("deepspeed_config") or {}
    if ds.get("zero_stage") is not None:
        return int(ds["zero_stage"])
    if ds.get("deepspeed_config_file"):
        f = Path(ds["deepspeed_config_file"])
        return deepspeed_file_zero_stage(f if f.is_absolute() else path.parent / f)
    return None


def check_values(cfg: Config) -> None:
    """Raise :class:`ConfigError` (with ``key``) for the first value of ``cfg`` that cannot work,
    naming the key, the value and the rule (:data:`VALUE_RULES`); also ``model.max_pixels >=
    model.min_pixels`` and no LoRA with a ZeRO-3 launch config (:data:`LORA_ZERO3`).

    >>> cfg = load_config("smoke")
    >>> cfg.stage2.num_generations = 1
    >>> check_values(cfg)
    Traceback (most recent call last):
    ...
    refine_iqa_lib.config.ConfigError: stage2.num_generations = 1: expected >= 2 (G: GRPO's advantages compare at least two completions of a prompt)
    """
    for key, ok, rule in VALUE_RULES:
        keys = [key.replace("*", s, 1) for s in ("stage1", "stage2")] if key.startswith("*") else [key]
        for k in keys:
            section, name = k.split(".")
            value = getattr(getattr(cfg, section), name)
            try:
                good = bool(ok(value))
            except TypeError:
                good = False
            if not good:
                raise ConfigError(f"{k} = {value!r}: expected {rule}", k)
    for stage in ("1", "2"):
        check_stage_rewards(cfg, stage)
    for name in cfg.scoring.custom:
        custom_labels(cfg, name)
    L = cfg.launch
    if L.use_vllm and L.vllm_mode == "colocate" and L.num_processes % L.vllm_tensor_parallel_size:
        raise ConfigError(f"launch.vllm_tensor_parallel_size = {L.vllm_tensor_parallel_size}: expected a divisor of "
                          f"launch.num_processes ({L.num_processes}); colocated vLLM engines span whole groups of "
                          "one machine's processes", "launch.vllm_tensor_parallel_size")
    if L.num_machines > 1 and L.use_cpu:
        raise ConfigError(f"launch.num_machines = {L.num_machines}: expected 1 with launch.use_cpu (more than one "
                          "machine runs on GPUs)", "launch.num_machines")
    if cfg.model.max_pixels < cfg.model.min_pixels:
        raise ConfigError(f"model.max_pixels = {cfg.model.max_pixels!r}: expected >= model.min_pixels "
                          f"({cfg.model.min_pixels})", "model.max_pixels")
    if cfg.lora.enabled:
        try:
            stage = accelerate_zero_stage(cfg.launch.accelerate_config)
        except ConfigError:
            stage = None  # an unknown accelerate config is reported where the job is built
        if stage == 3:
            raise ConfigError(f"lora.enabled = true with launch.accelerate_config = "
                              f"{cfg.launch.accelerate_config!r} (DeepSpeed ZeRO-3): {LORA_ZERO3}", "lora.enabled")


def _blame(e: ConfigError, path: Path | None, sets: dict) -> ConfigError:
    """Name the override that set the bad key (``--set key=value``), else the profile file."""
    key = e.key
    hit = None
    if key is not None:
        hit = next((k for k in sets if k == key or key.startswith(k + ".") or k.startswith(key + ".")), None)
    if hit is not None:
        v = sets[hit]
        shown = v if isinstance(v, str) else yaml.safe_dump(v, default_flow_style=True).strip().removesuffix("...").strip()
        return ConfigError(f"--set {hit}={shown}: {e}", key)
    return ConfigError(f"{path}: {e}" if path is not None else str(e), key)


def load_config(profile: str = "tiny", overrides: dict | list | None = None) -> Config:
    """Load a profile and apply dotted overrides.

    >>> cfg = load_config("smoke", {"stage2.learning_rate": "5e-5"})
    >>> cfg.profile, cfg.stage2.learning_rate, cfg.stage2.mode
    ('smoke', 5e-05, 'think')
    >>> load_config("nope")
    Traceback (most recent call last):
    ...
    refine_iqa_lib.config.ConfigError: unknown profile 'nope'; valid profiles: ['paper', 'single_gpu', 'smoke', 'tiny']
    """
    sets = _flatten_overrides(overrides)
    if isinstance(profile, Config):  # already loaded
        cfg = profile
        if not overrides:
            return cfg
        try:
            out = _build(Config, _deep_merge(cfg.to_dict(), parse_overrides(overrides)))
            check_values(out)
        except ConfigError as e:
            raise _blame(e, None, sets) from None
        return out
    path = Path(profile)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        name = path.stem
    else:
        name = str(profile)
        path = PROFILE_DIR / f"{name}.yaml"
        if not path.is_file():
            raise ConfigError(f"unknown profile {name!r}; valid profiles: {available_profiles()}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML ({e})") from e
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    data.setdefault("profile", name)
    for section, body in data.items():
        if isinstance(body, dict):
            for k in _flatten(body, section):
                try:
                    _check_path(k)
                except ConfigError as e:
                    raise ConfigError(f"{path}: {e}") from None
    merged = _deep_merge(data, parse_overrides(overrides))
    try:
        cfg = _build(Config, merged)
        check_values(cfg)
    except ConfigError as e:
        raise _blame(e, path, sets) from None
    return cfg


def overrides_of(cfg: Config) -> list[str]:
    """The ``key=value`` overrides that turn ``cfg``'s profile into ``cfg`` (every leaf that
    differs), so a hint can repeat the user's own ``--set`` values.

    >>> overrides_of(load_config("smoke", {"stage2.learning_rate": 5e-5, "paths.work_dir": "w"}))
    ['paths.work_dir=w', 'stage2.learning_rate=5e-05']
    """
    try:
        base = load_config(cfg.profile).to_dict()
    except ConfigError:
        return []
    ours = cfg.to_dict()

    def leaves(d: dict) -> dict:
        out = {}
        for k, v in d.items():
            out.update(_flatten(v, k) if isinstance(v, dict) else {k: v})
        return out

    mine, theirs = leaves(ours), leaves(base)
    out = []
    for key in sorted(set(mine) | set(theirs)):
        a, b = mine.get(key), theirs.get(key)
        if a != b:
            shown = a if isinstance(a, str) else json.dumps(a)
            out.append(f"{key}={shown}")
    return out


def _flatten_overrides(overrides: dict | list | tuple | None) -> dict:
    """Overrides as ``{dotted key: value}`` (what the user wrote, for error messages)."""
    if not overrides:
        return {}
    if isinstance(overrides, dict):
        out = {}
        for k, v in overrides.items():
            out.update(_flatten(v, k) if isinstance(v, dict) and _section_type(k) is not None else {k: v})
        return out
    out = {}
    for item in overrides:
        if "=" in str(item):
            k, v = str(item).split("=", 1)
            out[k.strip()] = v.strip()
    return out


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML (atomically)."""

    return write_text(path, cfg.to_yaml())


def accelerate_config_path(name: str) -> Path:
    """Path of a shipped accelerate config (``cpu``, ``ddp``, ``zero3``) or a user file."""
    p = Path(name)
    if p.suffix in (".yaml", ".yml") and p.is_file():
        return p
    p = ACCELERATE_DIR / f"{name}.yaml"
    if not p.is_file():
        valid = sorted(q.stem for q in ACCELERATE_DIR.glob("*.yaml"))
        raise ConfigError(f"unknown accelerate config {name!r}; valid: {valid} or a path to a YAML file")
    return p
