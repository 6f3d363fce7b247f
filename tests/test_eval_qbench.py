"""Q-Bench evaluation (Table 4): prompt convention, answer parsing, accuracy groups, result files."""
from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import qbench as qb
from refine_iqa_lib import generation
from refine_iqa_lib.evaluation.results import predictions_dir
from refine_iqa_lib.evaluation import tables
from refine_iqa_lib.io import read_json, read_jsonl


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("qbench_eval")
    return load_config("smoke", {"warmup.enabled": False, "paths.work_dir": str(root / "work"),
                                 "paths.results_dir": str(root / "results"), "eval.max_samples": 0})


def test_prompt_follows_the_qbench_convention():
    text = qb.qbench_prompt("How is the exposure?", ["Too dark", "Fine", "Too bright"])
    assert text == ("How is the exposure?\nA. Too dark\nB. Fine\nC. Too bright\n"
                    "Answer with the option's letter from the given choices directly.")
    think = qb.qbench_prompt("How is the exposure?", ["Too dark", "Fine"], "think")
    assert think.startswith("How is the exposure?\nA. Too dark\nB. Fine\nAnswer with the option's letter")
    assert "<think></think>" in think and "<answer></answer>" in think
    with pytest.raises(ValueError, match="expected 2-"):
        qb.qbench_prompt("?", ["only one"])


@pytest.mark.parametrize("text, expected", [
    ("B", 1), ("b.", 1), ("(C)", 2), ("C) Bright", 2), ("A. Dark", 0), ("<answer>C</answer>", 2),
    ("<think>it is well lit</think><answer>Medium</answer>", 1), ("<think>hmm</think>A", 0),
    ("bright", 2), ("The answer is B", 1), ("I would say the image looks dark overall", 0),
    ("A picture that is bright", 2),  # "A" is the article here, the option text decides
    ("D", -1), ("", -1), ("<answer></answer>", -1), ("nothing relevant", -1),
])
def test_parse_choice(text, expected):
    assert qb.parse_choice(text, ["Dark", "Medium", "Bright"]) == expected


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200), st.lists(st.text(min_size=1, max_size=12), min_size=2, max_size=4))
def test_parse_choice_never_raises_and_stays_in_range(text, candidates):
    assert -1 <= qb.parse_choice(text, candidates) < len(candidates)


def test_accuracy_by_type_concern_and_overall():
    df = pd.DataFrame({"correct": [True, False, True, True, False],
                       "type_name": ["yes_no", "yes_no", "what", "how", "how"],
                       "concern_name": ["technical", "incontext_technical", "other", "technical", "incontext_other"]})
    acc = qb.qbench_accuracy(df)
    assert list(acc) == list(qb.ACCURACY_KEYS) == [tables.T4_KEYS[k] for k in tables.T4_KEYS]
    assert acc["yes_no"] == 0.5 and acc["what"] == 1.0 and acc["how"] == 0.5
    assert acc["technical"] == 1.0 and acc["incontext_technical"] == 0.0 and acc["incontext_other"] == 0.0
    assert acc["overall"] == pytest.approx(0.6)
    assert qb.qbench_accuracy(df.iloc[:1])["what"] is None
    with pytest.raises(ValueError, match="missing column"):
        qb.qbench_accuracy(df.drop(columns="type_name"))


def test_accuracy_intervals_resample_questions():
    df = pd.DataFrame({"correct": [i % 4 != 0 for i in range(60)], "type_name": ["yes_no", "how"] * 30,
                       "concern_name": ["technical"] * 60})
    acc, ci = qb.qbench_accuracy(df), qb.qbench_intervals(df, seed=1, n_resamples=1000)
    assert list(ci) == list(qb.ACCURACY_KEYS) and ci["what"] is None and ci["other"] is None
    assert ci["overall"]["n"] == 60 and ci["yes_no"]["n"] == 30
    assert ci["overall"]["low"] < acc["overall"] == 0.75 < ci["overall"]["high"]
    assert ci == qb.qbench_intervals(df, seed=1, n_resamples=1000)


def test_evaluate_qbench_on_the_embedded_set_writes_the_schema(cfg, tiny_policy):
    records = qb.evaluate_qbench(cfg, "base", loaded=tiny_policy)
    assert [r["mode"] for r in records] == list(cfg.eval.modes)
    questions = qb.load_qbench_questions(cfg)
    for rec in records:
        disk = read_json(qb.qbench_result_path(cfg, "base", rec["mode"]))
        assert disk["model"] == "base" and disk["split"] == "dev" and disk["profile"] == "smoke"
        assert disk["n"] == len(questions) and disk["synthetic"] is True
        assert set(disk["accuracy"]) == set(qb.ACCURACY_KEYS)
        assert disk["ci"]["accuracy"]["overall"]["n"] == disk["n"] and disk["ci_method"]["unit"] == "question"
        assert all(v is None or 0.0 <= v <= 1.0 for v in disk["accuracy"].values())
        preds = read_jsonl(predictions_dir(cfg, "qbench") / f"base__{rec['mode']}.jsonl")
        assert len(preds) == len(questions)
    long = tables.load_results(cfg.results_dir, "smoke")
    t4 = tables.build_table(4, long, "smoke")
    ours = t4[(t4["source"] == "ours (smoke)") & t4["Models"].str.startswith("Qwen2.5-VL-7B")]
    assert len(ours) == 2 and ours["Overall"].notna().all()


def test_right_and_wrong_answers_are_scored(cfg, tiny_policy, monkeypatch):
    questions = qb.load_qbench_questions(cfg)
    by_question = {q: "ABCD"[i] for q, i in zip(questions["question"] + questions["image"], questions["answer_index"])}

    def oracle(model, processor, images, prompts, **kw):
        return [f"<answer>{by_question[p.split(chr(10))[0] + im]}</answer>" for im, p in zip(images, prompts)]

    monkeypatch.setattr(generation, "greedy_generate", oracle)
    right = qb.evaluate_qbench(cfg, "base", modes=["think"], loaded=tiny_policy)[0]
    assert right["accuracy"]["overall"] == 1.0 and right["n_unparsed"] == 0

    def wrong(model, processor, images, prompts, **kw):
        return [f"<answer>{'BA'[by_question[p.split(chr(10))[0] + im] == 'B']}</answer>" for im, p in zip(images, prompts)]

    monkeypatch.setattr(generation, "greedy_generate", wrong)
    assert qb.evaluate_qbench(cfg, "base", modes=["think"], loaded=tiny_policy)[0]["accuracy"]["overall"] == 0.0


def test_real_folder_missing_is_explained(tmp_path):
    cfg = load_config("smoke", {"eval.qbench_root": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="embedded"):
        qb.resolve_qbench_root(cfg)
