"""vLLM: whether it can run here, which engine generates a training run's rollouts, and greedy
generation for the evaluators.

* **Training.** TRL generates the rollouts, with vLLM when ``launch.use_vllm`` is true; the settings
  reach TRL's own ``GRPOConfig`` fields (:data:`refine_iqa_lib.training.run.LAUNCH_FIELDS`), and the
  sampling that vLLM does is the stage's (temperature, top-p, top-k, ``max_completion_length``:
  TRL hands the same ``GRPOConfig`` values to both engines). :func:`training_engine` decides at the
  start of a run whether vLLM can be used here: where it cannot be imported (or the run is on
  CPU) the run says so in one line and generates with transformers' ``generate``, or stops when
  ``launch.vllm_required`` is true. Teacher-forced PD (Eq. 2-4) and Eq. 8 always run through the
  policy itself, never through vLLM.
* **Evaluation** (``refine-iqa evaluate --engine vllm``). :class:`VLLMGreedy` generates the answers
  (think mode, numeric answers, Q-Bench) greedily with every sampling field set explicitly
  (:func:`vllm_greedy_fields`, the counterpart of :data:`refine_iqa_lib.generation.GREEDY_FIELDS`)
  and the checkpoint's ``generation_config.json`` ignored, from the same chat text, with the same
  stop tokens and the same decoding of the new tokens as
  :func:`refine_iqa_lib.generation.greedy_generate`. The no-think Eq. 8 path keeps its one
  teacher-forced forward of the policy. vLLM's kernels are not transformers', so on a rare near-tie
  of the two most likely tokens a greedy answer can differ.
"""
from __future__ import annotations

import functools
import importlib.util
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from refine_iqa_lib.generation import GREEDY_FIELDS, chat_text
from refine_iqa_lib.io import open_image

__all__ = ["ENGINES", "VLLMUnavailableError", "vllm_unavailable_reason", "require_vllm", "EngineChoice",
           "training_engine", "describe_engine", "vllm_greedy_fields", "VLLMGreedy"]

log = logging.getLogger(__name__)

#: ``refine-iqa evaluate --engine`` values.
ENGINES = ("transformers", "vllm")
#: Requests handed to vLLM at once by :meth:`VLLMGreedy.generate` (bounds the decoded images in memory).
VLLM_CHUNK = 512


class VLLMUnavailableError(RuntimeError):
    """vLLM is needed (``--engine vllm``, ``launch.vllm_required``) but cannot be used here."""


@functools.lru_cache(maxsize=2)
def vllm_unavailable_reason(import_check: bool = True) -> str | None:
    """``None`` when vLLM can be used here, else one line saying why not. ``import_check=False``
    only looks for the package (what a dry run does: importing vLLM takes seconds)."""
    if importlib.util.find_spec("vllm") is None:
        return "vLLM is not installed (pip install -e .[vllm] on a GPU machine)"
    if not import_check:
        return None
    try:
        import vllm  # noqa: F401
    except Exception as e:  # noqa: BLE001 - a broken install raises anything (CUDA, ABI, ...)
        text = str(e).strip().splitlines()
        return f"vLLM is installed but cannot be imported ({type(e).__name__}: {text[0] if text else ''})"
    return None


def require_vllm(what: str) -> None:
    """Raise :class:`VLLMUnavailableError` (one line naming ``what`` needed it) where vLLM cannot run."""
    why = vllm_unavailable_reason()
    if why is not None:
        raise VLLMUnavailableError(f"{what}: {why}")


@dataclass(frozen=True)
class EngineChoice:
    """How a training run generates: ``use_vllm`` (what TRL gets), ``engine`` (in words) and, when
    the configured vLLM cannot be used here, ``fallback``: the one line the run logs at its start."""

    use_vllm: bool
    engine: str
    fallback: str | None = None


def training_engine(cfg) -> EngineChoice:
    """The generation engine of a training run of ``cfg`` on this machine (module docstring).

    >>> from refine_iqa_lib.config import load_config
    >>> training_engine(load_config("smoke"))
    EngineChoice(use_vllm=False, engine='transformers generate', fallback=None)
    >>> choice = training_engine(load_config("smoke", {"launch.use_vllm": True}))
    >>> choice.use_vllm, choice.fallback.split(": ")[1]
    (False, "generating with transformers' generate (launch.vllm_required=true stops instead)")
    """
    L = cfg.launch
    if not L.use_vllm:
        return EngineChoice(False, "transformers generate")
    wanted = f"vLLM {L.vllm_mode}"
    why = "launch.use_cpu is true and vLLM runs on GPUs" if L.use_cpu else vllm_unavailable_reason()
    if why is None:
        return EngineChoice(True, wanted)
    if L.vllm_required:
        raise VLLMUnavailableError(
            f"launch.vllm_required is true but {why}; install vLLM here or set launch.vllm_required=false "
            "to generate with transformers' generate")
    return EngineChoice(False, "transformers generate",
                        f"[generation] {wanted} requested (launch.use_vllm) but {why}: generating with "
                        "transformers' generate (launch.vllm_required=true stops instead)")


def describe_engine(cfg) -> str:
    """The rollout engine of ``cfg`` in one line (what ``make dry-run`` prints).

    >>> from refine_iqa_lib.config import load_config
    >>> line = describe_engine(load_config("paper"))
    >>> line.startswith("vLLM colocate"), "0.3 of each GPU's memory, tensor parallel 1, context 4096 tokens" in line
    (True, True)
    """
    L = cfg.launch
    tail = ("; sampling with each stage's T, top_p, top_k and max_completion (below); teacher-forced PD and "
            "Eq. 8 run through the policy")
    if not L.use_vllm:
        return "transformers generate inside every training process (launch.use_vllm: false)" + tail
    context = f"{L.vllm_max_model_length} tokens" if L.vllm_max_model_length else "the model's own"
    if L.vllm_mode == "colocate":
        return (f"vLLM colocate inside every training process (TRL use_vllm: {L.vllm_gpu_memory_utilization} "
                f"of each GPU's memory, tensor parallel {L.vllm_tensor_parallel_size}, context {context})" + tail)
    return (f"vLLM server: trl vllm-serve at {L.vllm_server_host}:{L.vllm_server_port} (tensor parallel "
            f"{L.vllm_tensor_parallel_size}, context {context}), weights pushed from the trainer every step" + tail)


def vllm_greedy_fields(max_new_tokens: int) -> dict:
    """vLLM ``SamplingParams`` of plain greedy decoding of at most ``max_new_tokens`` tokens: the
    fields :data:`~refine_iqa_lib.generation.GREEDY_FIELDS` sets for transformers, taken from it
    (``temperature=0`` is vLLM's greedy search), plus vLLM's own penalties at their neutral values.

    >>> f = vllm_greedy_fields(64)
    >>> f["temperature"], f["top_k"], f["top_p"], f["repetition_penalty"], f["min_p"], f["max_tokens"]
    (0.0, 0, 1.0, 1.0, 0.0, 64)
    """
    g = GREEDY_FIELDS
    return dict(n=1, temperature=0.0, top_p=float(g["top_p"]), top_k=int(g["top_k"]), min_p=float(g["min_p"] or 0.0),
                repetition_penalty=float(g["repetition_penalty"]), presence_penalty=0.0, frequency_penalty=0.0,
                min_tokens=int(g["min_new_tokens"]), bad_words=g["bad_words_ids"], max_tokens=int(max_new_tokens),
                skip_special_tokens=True, detokenize=False)


class VLLMGreedy:
    """Greedy answers from a model folder through vLLM, for the evaluators: :meth:`generate` takes
    and returns what :func:`refine_iqa_lib.generation.greedy_generate` does (without the model).

    ``processor``: the folder's processor (chat template, decoding); ``eos_token_id``: the stop
    token(s) transformers would use (the model's ``generation_config.eos_token_id``, else the
    tokenizer's). ``min_pixels`` / ``max_pixels`` reach vLLM's image processor; ``max_images``
    bounds the images of one prompt. vLLM ignores the folder's ``generation_config.json``.
    """

    def __init__(self, model_dir: str | Path, processor, *, eos_token_id=None, dtype: str = "bfloat16",
                 min_pixels: int | None = None, max_pixels: int | None = None, max_images: int = 2,
                 gpu_memory_utilization: float = 0.3, tensor_parallel_size: int = 1, max_model_length: int = 0,
                 seed: int = 0):
        require_vllm("--engine vllm")
        import vllm
        from vllm import LLM

        tok = processor.tokenizer
        eos = eos_token_id if eos_token_id is not None else tok.eos_token_id
        self.processor = processor
        self.stop_token_ids = [int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])]
        mm = {k: int(v) for k, v in (("min_pixels", min_pixels), ("max_pixels", max_pixels)) if v is not None}
        self.settings = {"engine": "vllm", "vllm": vllm.__version__, "dtype": dtype,
                         "gpu_memory_utilization": float(gpu_memory_utilization),
                         "tensor_parallel_size": int(tensor_parallel_size),
                         "max_model_length": int(max_model_length) or None, "mm_processor_kwargs": mm,
                         "stop_token_ids": self.stop_token_ids, "generation_config": "ignored (vllm defaults)",
                         "sampling": vllm_greedy_fields(0) | {"max_tokens": "eval.max_new_tokens"}}
        self.llm = LLM(model=str(model_dir), dtype=dtype, seed=int(seed),
                       tensor_parallel_size=int(tensor_parallel_size),
                       gpu_memory_utilization=float(gpu_memory_utilization),
                       max_model_len=int(max_model_length) or None, generation_config="vllm",
                       limit_mm_per_prompt={"image": int(max_images)}, mm_processor_kwargs=mm or None)

    def generate(self, images: Sequence[Any], prompts: Sequence[str], *, max_new_tokens: int, batch_size: int = 8,
                 desc: str = "generate", progress: bool = True) -> list[str]:
        """Greedy completions for image/prompt pairs, in input order (``images[i]``: a path, a PIL
        image or a list of them). ``batch_size`` is accepted for the same call as the transformers
        path; vLLM batches by itself."""
        from vllm import SamplingParams

        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images for {len(prompts)} prompts; expected one entry per prompt")
        params = SamplingParams(**vllm_greedy_fields(max_new_tokens), stop_token_ids=self.stop_token_ids)
        groups = [list(im) if isinstance(im, (list, tuple)) else [im] for im in images]
        ids: list[list[int]] = []
        for lo in range(0, len(groups), VLLM_CHUNK):
            requests = [{"prompt": chat_text(self.processor, p, len(g)),
                         "multi_modal_data": {"image": [open_image(x) for x in g]}}
                        for p, g in zip(prompts[lo:lo + VLLM_CHUNK], groups[lo:lo + VLLM_CHUNK])]
            log.info("[%s] vLLM: %d-%d of %d", desc, lo + 1, lo + len(requests), len(groups))
            outs = self.llm.generate(requests, params, use_tqdm=progress)
            ids += [list(o.outputs[0].token_ids) for o in outs]
        return self.processor.tokenizer.batch_decode(ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)
