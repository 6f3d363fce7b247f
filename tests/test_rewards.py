"""Rewards of both stages (Eq. 1-5), their parsers' robustness, and the TRL adapters."""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from refine_iqa_lib.method import rewards as R
from refine_iqa_lib.prompts import completion_text, format_mos_text

# --------------------------------------------------------------------------- strategies

FRAGMENTS = ["<think>", "</think>", "<answer>", "</answer>", "<answer", "answer>", "Score:", "Score: ",
             "3", "3.", ".5", "3,5", "3, 5", "1e0", "1e999", "nan", "inf", "-inf", "-2", "+4.4", "4.9",
             "0", "[", "]", "(", ")", ",", " ", "\n", "\t", "A", "B.", "(c)", "é", "😀", "٣", "３",
             "[10, 20, 30, 40]", "(1,2,3,4)", "blur", "very severe", "<", ">", "/"]
texty = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from(FRAGMENTS), max_size=40).map("".join),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=5)), max_size=30).map("".join),
)
fast = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# --------------------------------------------------------------------------- parsing


@pytest.mark.parametrize("content, expected", [
    ("3", 3.0), ("3.", 3.0), (".5", 0.5), ("3,5", 3.5), ("3, 5", 3.0), ("1e0", 1.0), ("-1.5", -1.5),
    ("+2.5", 2.5), ("Score: 3.46", 3.46), ("score:4", 4.0), (" 3.4 ", 3.4), ("The score is 2.7.", 2.7),
    ("nan", None), ("inf", None), ("1e999", None), ("", None), ("three", None), ("nan 2.5", 2.5),
    ("٣", None), ("３", None),
])
def test_parse_score_number_forms(content, expected):
    got = R.parse_score(f"<think>x</think><answer>{content}</answer>")
    assert got == expected if expected is None else math.isclose(got, expected)


@pytest.mark.parametrize("text, expected", [
    ("<answer>1</answer><answer>2</answer>", 2.0),          # last block wins
    ("<answer>1</answer><answer>2", 1.0),                   # unclosed last block: last closed one
    ("<answer><answer>3</answer></answer>", 3.0),           # nested: innermost of the last close
    ("<answer>3.4", None), ("3.4", None), ("</answer>3<answer>", None),
    ("<think>2.5</think>", None),                           # a number in the think is not an answer
])
def test_parse_score_blocks(text, expected):
    assert R.parse_score(text) == expected


@given(texty)
@fast
def test_parsers_total_on_arbitrary_text(text):
    s = R.parse_score(text)
    assert s is None or (isinstance(s, float) and math.isfinite(s))
    span = R.score_span(text)
    assert (span is None) == (s is None)
    if span is not None:
        assert R.answer_block_span(text)[0] <= span[0] < span[1] <= R.answer_block_span(text)[1]
    assert R.answer_reward(s, 3.4) in (0.0, 1.0)
    assert R.answer_reward(s, 3.4, variant="authors") in (0.0, 1.0)
    for mode in ("think", "no_think"):
        assert R.format_reward(text, mode) in (0.0, 1.0)
    assert R.mcq_reward(text, "noise", ["blur", "noise", "pixelate"]) in (0.0, 1.0)
    g = R.grounding_reward(text, (0, 0, 10, 10))
    assert 0.0 <= g <= 1.0
    box = R.parse_box(text)
    assert box is None or (all(math.isfinite(v) for v in box) and box[2] > box[0] and box[3] > box[1])
    assert isinstance(R.extract_think(text), str)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("make", [
    lambda n: "9" * n,
    lambda n: "<answer>" + "1" * n + "</answer>",
    lambda n: "<answer>" + "1," * (n // 2) + "</answer>",
    lambda n: "<answer>" + "[1," * (n // 3) + "</answer>",
    lambda n: "<answer>" + "[" + " " * n + "</answer>",
    lambda n: "<answer>" * (n // 8),
    lambda n: "</answer>" * (n // 9),
    lambda n: "<think>" + "a" * n + "</think><answer>" + "." * 100 + "</answer>",
    lambda n: "<answer>" + "1e" * (n // 2) + "</answer>",
    lambda n: "<answer>" + "1.1." * (n // 4) + "</answer>",
    lambda n: "é😀" * (n // 2),
])
def test_long_inputs_are_handled(make):
    """100k characters, shapes that make backtracking regexes explode; the timeout guards it."""
    text = make(100_000)
    for _ in range(3):
        s = R.parse_score(text)
        assert s is None or math.isfinite(s)
        R.format_reward(text, "think")
        R.format_reward(text, "no_think")
        R.mcq_reward(text, "blur", ["blur", "noise"])
        assert 0.0 <= R.grounding_reward(text, (0, 0, 1, 1)) <= 1.0


# --------------------------------------------------------------------------- Eq. 1


def test_answer_reward_boundary_paper_strict_authors_inclusive():
    assert R.answer_reward(3.9, 3.4) == 0.0
    assert R.answer_reward(3.9, 3.4, variant="authors") == 1.0
    assert R.answer_reward(2.9, 3.4) == 0.0 and R.answer_reward(2.9, 3.4, variant="authors") == 1.0
    assert R.answer_reward(3.89, 3.4) == 1.0 and R.answer_reward(3.91, 3.4, variant="authors") == 0.0
    assert R.answer_reward(3.4, 3.4, eps=0.0) == 0.0 and R.answer_reward(3.4, 3.4, eps=0.0, variant="authors") == 1.0


@pytest.mark.parametrize("pred", [None, float("nan"), float("inf"), "x"])
def test_answer_reward_no_prediction_is_zero(pred):
    assert R.answer_reward(pred, 3.4) == 0.0


def test_answer_reward_rejects_bad_ground_truth():
    with pytest.raises(ValueError, match="MOS"):
        R.answer_reward(3.0, float("nan"))
    with pytest.raises(ValueError, match="variant"):
        R.answer_reward(3.0, 3.0, variant="nope")


@given(st.floats(-10, 10), st.floats(0, 5), st.floats(0.01, 2))
@fast
def test_answer_reward_matches_definition(pred, mos, eps):
    d = round(abs(pred - mos), 9)
    assert R.answer_reward(pred, mos, eps) == float(d < eps)
    assert R.answer_reward(pred, mos, eps, "authors") == float(d <= eps)
    assert R.answer_reward(pred, mos, eps) == R.answer_reward(mos, pred, eps)


# --------------------------------------------------------------------------- format


GOOD_THINK = [
    "<think>The sky is noisy.</think><answer>2.1</answer>",
    "  <think>a</think>\n<answer>Score: 3.40</answer>\n",
    "<think>multi\nline</think><answer>B</answer>",
]
BAD_THINK = [
    "", "<answer>2.1</answer>", "<think></think><answer>2.1</answer>", "<think> \n</think><answer>2.1</answer>",
    "<think>x</think><answer></answer>", "<think>x</think><answer> </answer>", "<think>x</think>",
    "<think>x</think><answer>2.1", "<think>x</think><answer>2.1</answer>extra",
    "pre<think>x</think><answer>2.1</answer>", "<think>x</think>mid<answer>2.1</answer>",
    "<think>x<think>y</think><answer>2.1</answer>", "<think>x</think><answer>1</answer><answer>2</answer>",
    "<think>x</think><answer><answer>2</answer></answer>", "<think>x</think></think><answer>2</answer>",
    "<think>x</think><think>y</think><answer>2</answer>", "<THINK>x</THINK><answer>2</answer>",
    "<think>x</think><answer>2</answer></answer>", "<think>x<answer>1</answer></think><answer>2</answer>",
]


@pytest.mark.parametrize("text", GOOD_THINK)
def test_format_think_good(text):
    assert R.format_reward(text, "think") == 1.0


@pytest.mark.parametrize("text", BAD_THINK)
def test_format_think_bad(text):
    assert R.format_reward(text, "think") == 0.0


@pytest.mark.parametrize("text, expected", [
    ("<answer>2.1</answer>", 1.0), (" <answer>A</answer>\n", 1.0), ("<think>x</think><answer>2.1</answer>", 0.0),
    ("<answer></answer>", 0.0), ("2.1", 0.0), ("<answer>2.1</answer> ok", 0.0), ("<answer>a<answer>b</answer>", 0.0),
])
def test_format_no_think(text, expected):
    assert R.format_reward(text, "no_think") == expected


def test_format_is_layout_only_and_matches_prompt_layout():
    # the prompts module's own layouts are well formatted in their mode
    assert R.format_reward(completion_text("3.4", "think", "sharp"), "think") == 1.0
    assert R.format_reward(completion_text("3.4", "no_think"), "no_think") == 1.0
    assert R.format_reward("<think>t</think><answer>not a number</answer>", "think") == 1.0
    with pytest.raises(ValueError, match="mode"):
        R.format_reward("<answer>1</answer>", "thinking")


# --------------------------------------------------------------------------- Eq. 2-5


def test_mode_reward_weights_and_range():
    assert R.mode_reward([1.0, 1.0]) == pytest.approx(1.1)
    assert R.mode_reward([0.8, 0.5]) == pytest.approx(0.85)
    assert R.mode_reward([0.8, 0.5, 0.2]) == pytest.approx(0.8 + 0.05 + 0.002)
    assert R.mode_reward([0.8, 0.5, 0.2], "authors") == pytest.approx(0.5)
    assert R.pd_weights(4).tolist() == pytest.approx([1, 0.1, 0.01, 0.001])
    for bad in ([], [1.5, 0.1], [-0.2, 0.1], [float("inf"), 0.1]):
        with pytest.raises(ValueError):
            R.mode_reward(bad)
    with pytest.raises(ValueError, match="authors"):
        R.mode_reward([0.5], "authors")


@given(st.lists(st.floats(0, 1), min_size=1, max_size=4), st.lists(st.floats(0, 1), min_size=1, max_size=4))
@fast
def test_pd_reward_in_unit_interval_and_zero_when_think_no_better(a, b):
    n = min(len(a), len(b))
    rt, rr = R.mode_reward(a[:n]), R.mode_reward(b[:n])
    pd = R.pd_reward(rt, rr)
    assert 0.0 <= pd <= 1.0
    assert pd == pytest.approx(min(max(rt - rr, 0.0), 1.0))
    assert R.pd_reward(rr, rr) == 0.0


def test_nan_probabilities_give_nan_rewards_instead_of_stopping_the_step():
    """A diverged policy's NaN probabilities must reach TRL as a missing reward (the loss guard then
    saves a checkpoint and stops); an exception here would end the run before it could."""
    assert np.isnan(R.mode_reward([float("nan"), 0.1])) and np.isnan(R.mode_reward([0.2, float("nan")], "authors"))
    assert np.isnan(R.pd_reward(float("nan"), 0.1)) and np.isnan(R.pd_reward(0.5, float("nan")))
    with pytest.raises(ValueError):
        R.pd_reward(float("inf"), 0.1)


@given(st.sampled_from([0.0, 1.0]), st.sampled_from([0.0, 1.0]), st.floats(0, 1),
       st.tuples(st.floats(0, 3), st.floats(0, 3), st.floats(0, 3)))
@fast
def test_final_reward_gate(r_ans, r_fmt, r_pd, lambdas):
    got = R.final_reward(r_ans, r_fmt, r_pd, lambdas)
    base = lambdas[0] * r_ans + lambdas[1] * r_fmt
    assert got == pytest.approx(base + (lambdas[2] * r_pd if r_ans == r_fmt == 1 else 0.0))


# --------------------------------------------------------------------------- Stage 1

OPTS = ["blur", "noise", "very severe"]


@pytest.mark.parametrize("content, expected", [
    ("C", 1.0), ("C.", 1.0), ("C)", 1.0), ("(C)", 1.0), ("c", 1.0), ("very severe", 1.0), ("Very  Severe.", 1.0),
    ("C. very severe", 1.0), ("C. blur", 0.0), ("B", 0.0), ("D", 0.0), ("severe", 0.0), ("", 0.0),
    ("C or B", 0.0), ("very", 0.0),
])
def test_mcq_reward_forms(content, expected):
    for text in (f"<answer>{content}</answer>", f"<think>hmm</think><answer>{content}</answer>"):
        assert R.mcq_reward(text, "very severe", OPTS) == expected
        assert R.mcq_reward(text, "C", OPTS) == expected  # the answer given as a letter


def test_mcq_reward_needs_an_answer_block_and_valid_data():
    assert R.mcq_reward("C", "very severe", OPTS) == 0.0
    assert R.mcq_reward("<answer>A</answer><answer>C</answer>", "very severe", OPTS) == 1.0
    with pytest.raises(ValueError, match="neither an option"):
        R.mcq_reward("<answer>A</answer>", "pixelate", OPTS)
    with pytest.raises(ValueError, match="non-empty"):
        R.mcq_reward("<answer>A</answer>", "A", [])


def test_iou_known_values_and_symmetry():
    assert R.iou((0, 0, 10, 10), (0, 0, 10, 10)) == 1.0
    assert R.iou((0, 0, 10, 10), (5, 5, 15, 15)) == pytest.approx(25 / 175)
    assert R.iou((0, 0, 10, 10), (10, 0, 20, 10)) == 0.0  # touching edges
    assert R.iou((0, 0, 10, 10), (2, 2, 4, 4)) == pytest.approx(4 / 100)
    assert R.iou((0, 0, 10, 10), (10, 10, 0, 0)) == 0.0  # invalid box
    assert R.iou((0, 0, float("inf"), 10), (0, 0, 1, 1)) == 0.0


@given(st.tuples(*[st.floats(-100, 100)] * 4), st.tuples(*[st.floats(-100, 100)] * 4))
@fast
def test_iou_range_and_symmetry(a, b):
    v = R.iou(a, b)
    assert 0.0 <= v <= 1.0 and v == pytest.approx(R.iou(b, a))


@pytest.mark.parametrize("content, expected", [
    ("[0, 0, 10, 10]", 1.0), ("(0,0,10,10)", 1.0), ("0 0 10 10", 1.0), ("[0.0, 0.0, 10.0, 10.0]", 1.0),
    ('{"bbox_2d": [0, 0, 10, 10], "label": "cat"}', 1.0), ("x1=0 y1=0 x2=10 y2=10", 0.0),
    ("[0, 0, 5, 10]", 0.5), ("[10, 0, 0, 10]", 0.0), ("[0, 0, 10]", 0.0), ("[0, 0, nan, 10]", 0.0),
    ("[0, 0, 1e999, 10]", 0.0), ("the cat", 0.0), ("", 0.0),
])
def test_grounding_reward_forms(content, expected):
    assert R.grounding_reward(f"<answer>{content}</answer>", [0, 0, 10, 10]) == pytest.approx(expected)


def test_grounding_reward_rejects_bad_ground_truth():
    with pytest.raises(ValueError, match="valid"):
        R.grounding_reward("<answer>[0,0,1,1]</answer>", [5, 5, 1, 1])
    with pytest.raises(ValueError, match="four numbers"):
        R.grounding_reward("<answer>[0,0,1,1]</answer>", ["a", 1, 2, 3])


# --------------------------------------------------------------------------- TRL adapters


def _conv(text):
    return [{"role": "assistant", "content": text}]


GOOD_BAD = {
    "answer": (["<think>ok</think><answer>3.3</answer>", "<answer>Score: 3.5</answer>"],
               ["<answer>4.5</answer>", "3.4", ""], {"mos": 3.4}),
    "format": (["<think>ok</think><answer>3.3</answer>"], ["<answer>3.3</answer>", "<think></think><answer>1</answer>"],
               {"mode": "think"}),
    "mcq": (["<answer>B</answer>", "<answer>noise</answer>"], ["<answer>A</answer>", "B"],
            {"answer": "noise", "options": ["blur", "noise"]}),
    "grounding": (["<answer>[0, 0, 10, 10]</answer>"], ["<answer>[20, 20, 30, 30]</answer>", "[0,0,10,10]"],
                  {"bbox": [0, 0, 10, 10]}),
    "stage1": (["<answer>B</answer>"], ["<answer>A</answer>"],
               {"task": "object", "answer": "noise", "options": ["blur", "noise"], "bbox": None}),
}


def test_registry_names_resolve_and_are_stable():
    assert set(R.REWARDS) == set(GOOD_BAD) | {"pd"}
    for name in GOOD_BAD:
        assert R.build_reward(name).__name__ == name
        assert [f.__name__ for f in R.get_reward_funcs([name])] == [name]
        assert R.REWARDS[name].equation
    assert R.REWARDS["answer"].equation == "Eq. 1" and R.REWARDS["pd"].equation.startswith("Eq. 2-4")
    assert [f.__name__ for f in R.get_reward_funcs("answer,format")] == ["answer", "format"]
    assert R.build_reward("answer", eps=0.3, variant="authors").eps == 0.3
    with pytest.raises(ValueError, match=r"known rewards: \['answer', 'format', 'grounding', 'mcq', 'pd', 'stage1'\]"):
        R.get_reward_funcs(["answer", "acc"])
    with pytest.raises(ValueError, match="variant"):
        R.get_reward_funcs(["answer"], variant="x")
    with pytest.raises(ValueError, match=r"reward 'pd' needs \['policy', 'processor'\]"):
        R.build_reward("pd", eps=0.5)


def test_built_rewards_pickle_and_compute_the_same_after():
    import pickle

    good, bad, cols = GOOD_BAD["answer"]
    reward = R.build_reward("answer", eps=0.5, variant="paper")
    back = pickle.loads(pickle.dumps(reward))
    kwargs = {k: [v] * len(good + bad) for k, v in cols.items()}
    assert back.__name__ == "answer" and back(good + bad, **kwargs) == reward(good + bad, **kwargs)
    for name in GOOD_BAD:
        assert pickle.loads(pickle.dumps(R.build_reward(name, mode="think"))).__name__ == name


def test_registering_a_reward():
    @R.register_reward("toy_length", "not in the paper")
    class ToyLength(R.Reward):
        def __init__(self, mode, limit: int = 10):
            self.mode, self.limit = mode, limit

        def __call__(self, completions, **columns):
            return [float(len(R.completion_to_text(c)) <= self.limit) for c in completions]

    try:
        assert "toy_length" in R.reward_names() and ToyLength.equation == "not in the paper"
        toy = R.build_reward("toy_length", mode="think", eps=0.5)  # given only what its constructor names
        assert (toy.mode, toy.limit, toy.__name__) == ("think", 10, "toy_length")
        assert toy(["short", "much longer than ten"]) == [1.0, 0.0]
        with pytest.raises(ValueError, match=r"needs \['mode'\]"):
            R.build_reward("toy_length")
        with pytest.raises(ValueError, match="already registered"):
            R.register_reward("toy_length", "x", ToyLength)
        with pytest.raises(ValueError, match="lower-case"):
            R.register_reward("Toy Length", "x", ToyLength)
        with pytest.raises(TypeError, match="a closure does not"):
            R.register_reward("toy_fn", "x", lambda completions, **kw: [1.0] * len(completions))
    finally:
        R.unregister_reward("toy_length")
    assert "toy_length" not in R.REWARDS


@pytest.mark.parametrize("name", sorted(GOOD_BAD))
@pytest.mark.parametrize("conversational", [False, True])
def test_each_reward_on_good_and_bad_completions(name, conversational):
    good, bad, cols = GOOD_BAD[name]
    completions = good + bad
    if conversational:
        completions = [_conv(c) for c in completions]
    n = len(completions)
    kwargs = {k: [v] * n for k, v in cols.items()}
    kwargs.update(prompts=[[{"role": "user", "content": "q"}]] * n, completion_ids=[[1]] * n,
                  trainer_state=None, log_extra=None, log_metric=None)
    out = R.build_reward(name)(completions=completions, **kwargs)
    assert len(out) == n and all(isinstance(v, float) for v in out)
    assert all(v > 0.5 for v in out[:len(good)]), out
    assert all(v < 0.5 for v in out[len(good):]), out


def test_adapter_errors_name_the_missing_column():
    with pytest.raises(ValueError, match="'mos'"):
        R.AnswerReward()(["<answer>1</answer>"])
    with pytest.raises(ValueError, match="mode"):
        R.FormatReward()(["<answer>1</answer>"])
    with pytest.raises(ValueError, match="valid tasks"):
        R.Stage1Reward()(["<answer>1</answer>"], task=["caption"])
    with pytest.raises(ValueError, match="bbox"):
        R.Stage1Reward()(["<answer>1</answer>"], task=["grounding"], answer=["x"], options=[["x"]])
    with pytest.raises(ValueError, match="2 values for 1"):
        R.AnswerReward()(["<answer>1</answer>"], mos=[1.0, 2.0])


def test_stage1_router_mixed_batch_and_format_mode_column():
    out = R.Stage1Reward()(
        ["<answer>B</answer>", "<answer>[0, 0, 10, 5]</answer>", "<answer>A</answer>"],
        task=["type_severity", "grounding", "object"], answer=["noise", None, "cat"],
        options=[["blur", "noise"], None, ["dog", "cat"]], bbox=[None, [0, 0, 10, 10], None])
    assert out == [1.0, 0.5, 0.0]
    fmt = R.FormatReward()(["<answer>1</answer>", "<answer>1</answer>"], mode=["no_think", "think"])
    assert fmt == [1.0, 0.0]


def test_completion_to_text_shapes():
    assert R.completion_to_text(None) == ""
    assert R.completion_to_text(_conv("x")) == "x"
    assert R.completion_to_text([{"role": "assistant", "content": [{"type": "text", "text": "a"},
                                                                  {"type": "image"}, {"type": "text", "text": "b"}]}]) == "ab"


def test_format_mos_text_feeds_answer_reward():
    # the teacher-forcing text of a MOS is always within eps of it (rounding to one decimal)
    for mos in np.linspace(0, 4.99, 200):
        assert R.answer_reward(R.parse_score(f"<answer>{format_mos_text(mos)}</answer>"), mos) == 1.0
