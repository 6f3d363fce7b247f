"""vLLM generation: the launch settings reach TRL's own GRPOConfig fields, the run falls back to
transformers' generate with one line (or stops when vLLM is required), and the evaluators take
their generated answers from an engine while Eq. 8 reads the policy. vLLM itself is not needed
(nor installed in CI): what runs here is the fallback and the plumbing."""
from __future__ import annotations

import importlib.util

import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.training.run import LAUNCH_FIELDS, grpo_config, runtime_config, trl_kwargs
from refine_iqa_lib import vllm_engine
from refine_iqa_lib.vllm_engine import VLLMUnavailableError, training_engine

VLLM_SETTINGS = {"launch.use_vllm": True, "launch.vllm_mode": "server", "launch.vllm_gpu_memory_utilization": 0.45,
                 "launch.vllm_tensor_parallel_size": 2, "launch.vllm_max_model_length": 4096,
                 "launch.vllm_server_host": "10.0.0.7", "launch.vllm_server_port": 8123,
                 "stage2.temperature": 0.9, "stage2.top_p": 0.95, "stage2.top_k": 50, "stage2.max_completion_length": 24}


def test_launch_settings_reach_grpo_configs_own_vllm_fields(tmp_path):
    cfg = load_config("smoke", VLLM_SETTINGS)
    args = grpo_config(cfg, "2", tmp_path / "run")
    assert (args.use_vllm, args.vllm_mode, args.vllm_gpu_memory_utilization, args.vllm_tensor_parallel_size,
            args.vllm_max_model_length, args.vllm_server_host, args.vllm_server_port) == \
        (True, "server", 0.45, 2, 4096, "10.0.0.7", 8123)
    # what TRL hands vLLM's SamplingParams (and transformers' generate): the stage's sampling settings
    assert (args.temperature, args.top_p, args.top_k, args.max_completion_length) == (0.9, 0.95, 50, 24)
    assert set(LAUNCH_FIELDS.values()) <= set(type(args).__dataclass_fields__)   # TRL's names, no invented ones
    plain = trl_kwargs(load_config("smoke"), "2")
    assert plain["use_vllm"] is False and plain["vllm_max_model_length"] is None and plain["report_to"] == "none"
    paper = trl_kwargs(load_config("paper"), "2", tmp_path / "stage2")
    assert (paper["use_vllm"], paper["vllm_mode"], paper["vllm_max_model_length"]) == (True, "colocate", 4096)
    assert paper["report_to"] == ["tensorboard"] and paper["run_name"] == "paper-stage2"
    assert load_config("single_gpu").launch.use_vllm and load_config("tiny").launch.report_to == ["none"]


def test_without_vllm_the_run_says_so_in_one_line_and_generates_with_transformers(monkeypatch, capsys):
    reason = "vLLM is not installed (pip install -e .[vllm] on a GPU machine)"
    monkeypatch.setattr(vllm_engine, "vllm_unavailable_reason", lambda import_check=True: reason)
    gpu = {"launch.use_vllm": True, "launch.use_cpu": False}
    cfg, info = runtime_config(load_config("smoke", gpu))
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.strip()]
    assert lines == [f"[generation] vLLM colocate requested (launch.use_vllm) but {reason}: generating with "
                     "transformers' generate (launch.vllm_required=true stops instead)"]
    assert cfg.launch.use_vllm is False and info["engine"] == "transformers generate"
    assert grpo_config(cfg, "2", "unused").use_vllm is False
    with pytest.raises(VLLMUnavailableError, match=r"^launch.vllm_required is true but vLLM is not installed .*; "
                                                   r"install vLLM here or set launch.vllm_required=false"):
        training_engine(load_config("smoke", {**gpu, "launch.vllm_required": True}))
    monkeypatch.setattr(vllm_engine, "vllm_unavailable_reason", lambda import_check=True: None)
    assert training_engine(load_config("smoke", gpu)) == vllm_engine.EngineChoice(True, "vLLM colocate")


def test_vllm_detection_names_what_is_missing():
    vllm_engine.vllm_unavailable_reason.cache_clear()
    if importlib.util.find_spec("vllm") is None:
        assert vllm_engine.vllm_unavailable_reason().startswith("vLLM is not installed")
        with pytest.raises(VLLMUnavailableError, match=r"^--engine vllm: vLLM is not installed"):
            vllm_engine.require_vllm("--engine vllm")
    else:
        assert vllm_engine.vllm_unavailable_reason(import_check=False) is None


def test_greedy_sampling_fields_match_the_transformers_path():
    from refine_iqa_lib.generation import GREEDY_FIELDS

    f = vllm_engine.vllm_greedy_fields(32)
    assert f["temperature"] == 0.0 and not GREEDY_FIELDS["do_sample"]         # both greedy
    assert (f["top_p"], f["top_k"], f["repetition_penalty"], f["min_tokens"]) == \
        (GREEDY_FIELDS["top_p"], GREEDY_FIELDS["top_k"], GREEDY_FIELDS["repetition_penalty"],
         GREEDY_FIELDS["min_new_tokens"])
    assert f["max_tokens"] == 32 and f["n"] == 1 and f["presence_penalty"] == f["frequency_penalty"] == 0.0


class RecordingEngine:
    """An engine with VLLMGreedy's call that generates with the policy (greedy, transformers)."""

    def __init__(self, model, processor):
        self.model, self.processor, self.calls = model, processor, []

    def generate(self, images, prompts, *, max_new_tokens, batch_size=8, desc="", progress=True):
        from refine_iqa_lib.generation import greedy_generate

        self.calls.append((desc, len(images), max_new_tokens))
        return greedy_generate(self.model, self.processor, images, prompts, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, progress=False)


def test_the_evaluators_take_generated_answers_from_the_engine(tiny_policy, tmp_path):
    from refine_iqa_lib.evaluation.qbench import evaluate_qbench
    from refine_iqa_lib.evaluation.scoring_eval import evaluate_scoring

    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "w"), "paths.results_dir": str(tmp_path / "r"),
                                "eval.max_samples": 4})
    kw = dict(modes=["no_think", "think"], methods=["prob", "num"], loaded=tiny_policy, model_path=tmp_path)
    plain = evaluate_scoring(cfg, "evaluated:x", **kw)
    engine = RecordingEngine(*tiny_policy)
    via = evaluate_scoring(cfg, "evaluated:x", **kw, engine=engine)
    # one generation per dataset and mode that generates; no-think Eq. 8 is a forward of the policy
    assert [(d.split()[-1], n) for d, n, _ in engine.calls] == [("no_think", 4), ("think", 4)]
    assert [(r["mode"], r["method"], r["n"]) for r in via] == [(r["mode"], r["method"], r["n"]) for r in plain]
    assert [r["srcc"] for r in via] == pytest.approx([r["srcc"] for r in plain], nan_ok=True)
    assert [r["pred_mean"] for r in via] == pytest.approx([r["pred_mean"] for r in plain], nan_ok=True)
    engine.calls.clear()
    evaluate_scoring(cfg, "evaluated:x", modes=["no_think"], methods=["prob"], loaded=tiny_policy,
                     model_path=tmp_path, engine=engine)
    assert engine.calls == []
    qb = evaluate_qbench(cfg, "evaluated:x", modes=["no_think"], loaded=tiny_policy, model_path=tmp_path,
                         engine=engine)
    assert len(engine.calls) == 1 and qb[0]["n"] == engine.calls[0][1]
