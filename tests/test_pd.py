"""Teacher forcing for the PD reward (Eq. 2-4) on the tiny stand-in."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from refine_iqa_lib import prompts
from refine_iqa_lib.method.teacher_forcing import (
    _gt_token_layout, forced_completion, forced_digit_probs, PDReward, pd_rewards_for_group,
    reference_completion, teacher_forced_digit_probs,
)
from refine_iqa_lib.standin.world import load_photo
from refine_iqa_lib.method.rewards import mode_reward, parse_score

ROLLOUTS = [
    "<think>The cat's fur is sharp; slight noise in the shadows, exposure is fine.</think><answer>3.9</answer>",
    "<think>noisy</think><answer>2</answer>",
    "<think>dark and grainy",                       # truncated: no answer block
    "no tags at all",
    "<think>a</think>\n<answer>Score: 4.4</answer>",
    "<think>ok</think><answer>nan</answer>",
]
MOS = 3.42


@pytest.fixture(scope="module")
def image():
    return Image.fromarray(load_photo("chelsea")).resize((96, 64))


@pytest.fixture(scope="module")
def other_image():
    return Image.fromarray(load_photo("coffee")).resize((64, 96))


THINK_MSGS = prompts.user_message(prompts.scoring_prompt("think"))


@given(st.text(max_size=80), st.sampled_from(["3.4", "0.0", "4.9"]), st.sampled_from(["think", "no_think"]))
@settings(max_examples=200, deadline=None)
def test_forced_completion_always_ends_with_ground_truth(text, gt, mode):
    forced = forced_completion(text, gt, mode)
    assert forced.endswith(gt)
    assert parse_score(forced + "</answer>") == float(gt)


def test_forced_completion_keeps_the_rollout_prefix():
    assert forced_completion(ROLLOUTS[0], "3.4") == ROLLOUTS[0][:ROLLOUTS[0].index("3.9")] + "3.4"
    assert forced_completion(ROLLOUTS[4], "3.4") == "<think>a</think>\n<answer>Score: 3.4"
    assert forced_completion(ROLLOUTS[2], "3.4") == "<think>dark and grainy</think><answer>3.4"
    assert forced_completion(ROLLOUTS[3], "3.4") == "<think></think><answer>3.4"
    assert forced_completion(ROLLOUTS[5], "3.4") == "<think>ok</think><answer>3.4"
    assert forced_completion([{"role": "assistant", "content": ROLLOUTS[1]}], "3.4") == "<think>noisy</think><answer>3.4"
    assert reference_completion("3.4") == "<answer>3.4"


@pytest.mark.parametrize("share_prompt, padding_side", [(True, "left"), (False, "left"), (False, "right")])
def test_batched_equals_one_at_a_time(tiny_policy, image, share_prompt, padding_side):
    model, processor = tiny_policy
    res = pd_rewards_for_group(model, processor, image, ROLLOUTS, MOS, padding_side=padding_side,
                               share_prompt=share_prompt)
    assert res.think_probs.shape == (len(ROLLOUTS), 2) and res.ref_probs.shape == (2,)
    single = np.concatenate([teacher_forced_digit_probs(model, processor, THINK_MSGS, image, [c], MOS)
                             for c in ROLLOUTS])
    np.testing.assert_allclose(res.think_probs, single, atol=1e-5, rtol=1e-4)
    no_think = prompts.user_message(prompts.scoring_prompt("no_think"))
    ref_single = teacher_forced_digit_probs(model, processor, no_think, image, ["<answer>0.0</answer>"], MOS,
                                            mode="no_think")[0]
    np.testing.assert_allclose(res.ref_probs, ref_single, atol=1e-5, rtol=1e-4)
    # chunked passes agree with the single pass
    chunked = pd_rewards_for_group(model, processor, image, ROLLOUTS, MOS, padding_side=padding_side, batch_size=2,
                                   share_prompt=share_prompt)
    np.testing.assert_allclose(chunked.think_probs, res.think_probs, atol=1e-5, rtol=1e-4)
    # rows really differ (the check above is not comparing constants)
    assert np.ptp(res.think_probs[:, 0]) / res.think_probs[:, 0].mean() > 1e-3


def test_shared_prompt_edge_cases_match_plain_rows(tiny_policy, image):
    """Prompts that differ before the image (no shared prefix), a digit that opens its completion
    (predicted by the prompt's last position), and one prompt for all rows."""
    model, processor = tiny_policy
    sys_a = [{"role": "system", "content": "Rate images."}] + THINK_MSGS
    sys_b = [{"role": "system", "content": "You judge quality."}] + THINK_MSGS
    texts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in (sys_a, sys_b)]
    prompts_ = [texts[0], texts[1], texts[0]]
    forced = ["3.4", "<think>x</think><answer>3.4", "<answer>Score: 3.4"]
    shared = forced_digit_probs(model, processor, prompts_, forced, image, "3.4", share_prompt=True)
    plain = forced_digit_probs(model, processor, prompts_, forced, image, "3.4", share_prompt=False)
    np.testing.assert_allclose(shared, plain, atol=1e-5, rtol=1e-4)
    one = forced_digit_probs(model, processor, [texts[0]] * 2, forced[::2], image, "3.4", share_prompt=True)
    np.testing.assert_allclose(one, plain[::2], atol=1e-5, rtol=1e-4)


def test_position_ids_need_the_multimodal_inputs(tiny_policy, image):
    """Negative control: without mm_token_type_ids Qwen2.5-VL falls back to 1D positions and the
    logits change far beyond the tolerance used above - so that test would catch mis-built positions."""
    model, processor = tiny_policy
    prompt = processor.apply_chat_template(THINK_MSGS, add_generation_prompt=True, tokenize=False)
    texts = [prompt + forced_completion(ROLLOUTS[0], "3.4"), prompt + forced_completion(ROLLOUTS[1], "3.4")]
    batch = processor(text=texts, images=[image] * 2, return_tensors="pt", padding=True, padding_side="left")
    with torch.no_grad():
        good = torch.softmax(model(**batch).logits[:, -2], -1)
        bad = torch.softmax(model(**{k: v for k, v in batch.items() if k != "mm_token_type_ids"}).logits[:, -2], -1)
    rel = ((good - bad).abs() / good).max().item()
    assert rel > 1e-3


def test_values_match_a_manual_forward(tiny_policy, image):
    model, processor = tiny_policy
    z = teacher_forced_digit_probs(model, processor, THINK_MSGS, image, [ROLLOUTS[0]], MOS)[0]
    prompt = processor.apply_chat_template(THINK_MSGS, add_generation_prompt=True, tokenize=False)
    batch = processor(text=[prompt + forced_completion(ROLLOUTS[0], "3.4")], images=[image], return_tensors="pt")
    with torch.no_grad():
        probs = torch.softmax(model(**batch).logits[0].double(), -1)
    ids = batch["input_ids"][0]
    tok = processor.tokenizer
    three, four = (tok.convert_tokens_to_ids(d) for d in "34")
    assert ids[-3].item() == three and ids[-1].item() == four
    np.testing.assert_allclose(z, [probs[-4, three].item(), probs[-2, four].item()], rtol=1e-5)


def test_group_rewards_follow_eq2_to_eq4(tiny_policy, image):
    model, processor = tiny_policy
    res = pd_rewards_for_group(model, processor, image, ROLLOUTS, MOS)
    assert res.gt_text == "3.4"
    np.testing.assert_allclose(res.r_think, [mode_reward(z) for z in res.think_probs])
    assert res.r_ref == pytest.approx(mode_reward(res.ref_probs))
    np.testing.assert_allclose(res.r_pd, np.clip(res.r_think - res.r_ref, 0, 1))
    assert np.all((res.think_probs > 0) & (res.think_probs < 1))


def test_authors_variant_uses_two_decimals_and_one_digit(tiny_policy, image):
    model, processor = tiny_policy
    res = pd_rewards_for_group(model, processor, image, ROLLOUTS[:2], MOS, variant="authors")
    assert res.gt_text == "3.42" and res.think_probs.shape == (2, 3)
    assert res.forced[1] == "<think>noisy</think><answer>3.42"
    np.testing.assert_allclose(res.r_think, res.think_probs[:, 1])
    assert res.r_ref == pytest.approx(res.ref_probs[1])


def test_training_flag_is_restored(tiny_policy, image):
    model, processor = tiny_policy
    model.train()
    try:
        pd_rewards_for_group(model, processor, image, ROLLOUTS[:1], MOS)
        assert model.training
    finally:
        model.eval()


def test_forced_text_must_end_with_the_ground_truth(tiny_policy, image):
    model, processor = tiny_policy
    with pytest.raises(ValueError, match="does not end"):
        forced_digit_probs(model, processor, ["p"], ["<answer>3.5"], image, "3.4")


def test_digits_must_be_single_tokens():
    class MergingTokenizer:  # a tokenizer that keeps "3.4" as one token
        def __call__(self, text, add_special_tokens=False, return_offsets_mapping=False):
            return {"input_ids": [7], "offset_mapping": [(0, len(text))]}

    with pytest.raises(ValueError, match="not a token of its own"):
        _gt_token_layout(MergingTokenizer(), "3.4")


def test_trl_pd_reward_is_gated_and_grouped(tiny_policy, image, other_image):
    model, processor = tiny_policy
    group_a = ["<think>sharp fur</think><answer>3.5</answer>", "<think>noisy</think><answer>1.0</answer>",
               "<think>fine detail, mild noise</think><answer>3.3</answer>"]
    group_b = ["<think>blurred</think><answer>4.8</answer>", "<answer>1.0</answer>", "x"]  # nobody correct
    completions = [[{"role": "assistant", "content": c}] for c in group_a + group_b]
    think, no_think = prompts.scoring_prompt("think"), prompts.scoring_prompt("no_think")
    columns = dict(mos=[3.4] * 3 + [1.9] * 3, images=[[image]] * 3 + [[other_image]] * 3, id=[0] * 3 + [1] * 3,
                   prompt_text=[think] * 6, no_think_text=[no_think] * 6)
    logged, extra = {}, {}
    fn = PDReward(lambda: model, lambda: processor)
    assert fn.__name__ == "pd"
    out = fn(completions=completions, log_metric=lambda k, v: logged.setdefault(k, []).append(v),
             log_extra=lambda k, v: extra.setdefault(k, v), **columns)
    res = pd_rewards_for_group(model, processor, image, group_a, 3.4)
    assert out[1] == 0.0                                      # wrong answer: gated off by Eq. 5
    assert out[0] == pytest.approx(res.r_pd[0]) and out[2] == pytest.approx(res.r_pd[2])
    assert out[3:] == [0.0, 0.0, 0.0]
    assert logged["refine/r_ref"][:3] == pytest.approx([res.r_ref] * 3)
    assert extra["pd_raw"][:3] == pytest.approx(res.r_pd.tolist())        # ungated, per rollout
    # without an id column the groups come from prompt text and MOS: the same numbers
    no_id = {k: v for k, v in columns.items() if k != "id"}
    assert fn(completions=completions, **no_id) == pytest.approx(out)
    with pytest.raises(ValueError, match="'mos'"):
        fn(completions=completions, **{k: v for k, v in columns.items() if k != "mos"})

def _group_columns(image, other_image, think, no_think):
    return dict(mos=[3.4] * 3 + [1.9] * 3, images=[[image]] * 3 + [[other_image]] * 3, id=[0] * 3 + [1] * 3,
                prompt_text=[think] * 6, no_think_text=[no_think] * 6)


def test_pd_forces_only_correct_rollouts_and_one_reference_row_per_group(tiny_policy, image, other_image):
    model, processor = tiny_policy
    group_a = ["<think>sharp fur</think><answer>3.5</answer>", "<think>noisy</think><answer>1.0</answer>",
               "<think>fine detail, mild noise</think><answer>3.3</answer>"]
    group_b = ["<think>blurred</think><answer>4.8</answer>", "<answer>1.0</answer>", "x"]  # nobody correct
    completions = group_a + group_b
    cols = _group_columns(image, other_image, prompts.scoring_prompt("think"), prompts.scoring_prompt("no_think"))
    calls = []
    real_forward = type(model).forward

    def counting(self, *a, **k):
        calls.append(1)
        return real_forward(self, *a, **k)

    gated_only = PDReward(lambda: model, lambda: processor, raw_every=0)
    full = PDReward(lambda: model, lambda: processor, raw_every=1)
    import unittest.mock as mock

    with mock.patch.object(type(model), "forward", counting):
        out = gated_only.compute(completions, **cols)
        n_gated = len(calls)
        calls.clear()
        ref = full.compute(completions, **cols)
        n_full = len(calls)
    assert out["rows"] == 2 + 1 + 1          # two correct rollouts + group a's reference + group b's cheap row
    assert ref["rows"] == 6 + 2
    assert n_gated == n_full                 # the same number of forward calls whatever is correct (ZeRO-3)
    np.testing.assert_allclose(out["gated"], ref["gated"], atol=1e-6)   # gating changes the cost, not the reward
    assert np.isnan(out["raw"][1]) and not np.isnan(ref["raw"][1])


def test_pd_starts_from_the_sampled_token_ids(tiny_policy, image):
    """A rollout sampled as tokens that re-tokenising its text would merge differently keeps its own
    tokens; only the score is replaced by the ground truth's."""
    from refine_iqa_lib.method.teacher_forcing import forced_ids_from_sampled

    model, processor = tiny_policy
    tok = processor.tokenizer
    text = "<think>sharp</think><answer>3.3</answer>"
    canonical = tok(text, add_special_tokens=False)["input_ids"]
    head = tok("<think>", add_special_tokens=False)["input_ids"]
    split_word = [i for ch in "sharp" for i in tok(ch, add_special_tokens=False)["input_ids"]]   # s,h,a,r,p
    tail = tok("</think><answer>3.3</answer>", add_special_tokens=False)["input_ids"]
    sampled = head + split_word + tail
    assert tok.decode(sampled) == text and sampled != canonical
    gt_ids = tok("3.4", add_special_tokens=False)["input_ids"]
    forced = forced_ids_from_sampled(tok, sampled, gt_ids)
    assert forced[:len(head) + len(split_word)] == head + split_word and forced[-len(gt_ids):] == gt_ids
    assert tok.decode(forced) == "<think>sharp</think><answer>3.4"
    assert forced_ids_from_sampled(tok, tok("<think>x</think>", add_special_tokens=False)["input_ids"], gt_ids) is None


# --------------------------------------------------------------------------- float32, prompts, images, NaN


def test_digit_probabilities_come_from_float32_logits_of_a_bf16_model(tiny_policy, image):
    """The probabilities are a softmax of logits projected in float32 from the final hidden state,
    not of the bf16 logits upcast afterwards (rounded to 8 significant bits)."""
    import copy

    model, processor = tiny_policy
    half = copy.deepcopy(model).to(torch.bfloat16)
    prompt = processor.apply_chat_template(THINK_MSGS, add_generation_prompt=True, tokenize=False)
    text = forced_completion(ROLLOUTS[0], "3.4")
    z = forced_digit_probs(half, processor, [prompt], [text], image, "3.4", share_prompt=False)[0]
    batch = processor(text=[prompt + text], images=[image], return_tensors="pt")
    batch["pixel_values"] = batch["pixel_values"].to(torch.bfloat16)
    with torch.no_grad():
        out = half(**batch, output_hidden_states=True)
    tok = processor.tokenizer
    three, four = (tok.convert_tokens_to_ids(d) for d in "34")
    hidden = out.hidden_states[-1][0, [-4, -2]].double()               # before "3" and before "4"
    exact = torch.softmax(hidden @ half.lm_head.weight.double().T, -1)
    want = np.array([exact[0, three].item(), exact[1, four].item()])
    rounded = torch.softmax(out.logits[0, [-4, -2]].float(), -1)        # what upcasting bf16 logits gives
    old = np.array([rounded[0, three].item(), rounded[1, four].item()])
    new_err, old_err = np.abs(z / want - 1).max(), np.abs(old / want - 1).max()
    assert new_err < 1e-5 and old_err > 20 * new_err, (new_err, old_err)


def test_every_image_of_a_row_is_shown(tiny_policy, image, other_image):
    """A row with two pictures has two placeholders and passes both images (both passes agree)."""
    model, processor = tiny_policy
    think = prompts.scoring_prompt("think")
    prompt = processor.apply_chat_template(prompts.user_message(think, 2), add_generation_prompt=True, tokenize=False)
    forced = [forced_completion(ROLLOUTS[0], "3.4"), forced_completion(ROLLOUTS[1], "3.4")]
    shared = forced_digit_probs(model, processor, [prompt] * 2, forced, [image, other_image], "3.4")
    plain = forced_digit_probs(model, processor, [prompt] * 2, forced, [image, other_image], "3.4", share_prompt=False)
    np.testing.assert_allclose(shared, plain, rtol=1e-5)
    one = forced_digit_probs(model, processor, [prompt] * 2, forced, [image, image], "3.4")
    assert np.abs(one - shared).max() > 1e-6                            # the second picture is really seen
    cols = dict(mos=[3.4] * 2, images=[[image, other_image]] * 2, id=[0, 0], prompt_text=[think] * 2,
                no_think_text=[prompts.scoring_prompt("no_think")] * 2)
    out = PDReward(lambda: model, lambda: processor).compute([ROLLOUTS[0], "<think>a</think><answer>3.3</answer>"],
                                                             **cols)
    assert out["r_think"][0] == pytest.approx(mode_reward(shared[0]), rel=1e-6)


def test_the_forced_rows_continue_the_prompt_trl_sampled_from(tiny_policy, image):
    model, processor = tiny_policy
    think, no_think = prompts.scoring_prompt("think"), prompts.scoring_prompt("no_think")
    messages = prompts.user_message(think)
    sampled = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=True, return_dict=True,
                                            images=[image])["input_ids"][0]
    sampled = [int(t) for t in sampled]
    comps = ["<think>sharp</think><answer>3.3</answer>", "<think>fine</think><answer>3.5</answer>"]
    cols = dict(mos=[3.4] * 2, images=[[image]] * 2, id=[7, 7], prompt_text=[think] * 2, no_think_text=[no_think] * 2)
    fn = PDReward(lambda: model, lambda: processor)
    ok = fn.compute(comps, sampled_prompt_ids=[sampled, sampled], **cols)
    assert np.isfinite(ok["gated"]).all()
    tampered = sampled[:-1] + [sampled[-1] + 1]
    with pytest.raises(ValueError, match=r"row 1 \(id 7\): the prompt the PD reward forces from is not the prompt "
                                         r"TRL sampled the completion from .*first difference at token"):
        fn.compute(comps, sampled_prompt_ids=[sampled, tampered], **cols)


def test_pd_renders_with_trls_chat_template_kwargs(tiny_policy, image):
    """TRL renders prompts with ``chat_template_kwargs``; PD uses them too, so its forced rows are
    the sampled prompt's continuation (checked against the ids) and give the numbers of that prompt."""
    model, processor = tiny_policy
    saved = processor.chat_template
    processor.chat_template = "{% if hint %}[{{ hint }}] {% endif %}" + saved
    try:
        think, no_think = prompts.scoring_prompt("think"), prompts.scoring_prompt("no_think")
        kwargs = {"hint": "rate the picture"}
        msgs = prompts.user_message(think)
        sampled = [int(t) for t in processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=True,
                                                                 return_dict=True, images=[image], **kwargs)[
            "input_ids"][0]]
        comps = ["<think>sharp</think><answer>3.3</answer>"]
        cols = dict(mos=[3.4], images=[[image]], id=[0], prompt_text=[think], no_think_text=[no_think])
        fn = PDReward(lambda: model, lambda: processor, chat_template_kwargs=kwargs)
        out = fn.compute(comps, sampled_prompt_ids=[sampled], **cols)
        text = processor.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False, **kwargs)
        assert text.startswith("[rate the picture] ")
        z = forced_digit_probs(model, processor, [text], [forced_completion(comps[0], "3.4")], image, "3.4")
        assert out["r_think"][0] == pytest.approx(mode_reward(z[0]), rel=1e-6)
        with pytest.raises(ValueError, match="row 0 \\(id 0\\)"):              # rendered without TRL's kwargs
            PDReward(lambda: model, lambda: processor).compute(comps, sampled_prompt_ids=[sampled], **cols)
    finally:
        processor.chat_template = saved


def test_nan_probabilities_give_a_nan_reward_not_an_exception(tiny_policy, image, monkeypatch):
    import refine_iqa_lib.method.teacher_forcing as TF

    model, processor = tiny_policy
    monkeypatch.setattr(TF, "forced_digit_probs", lambda *a, **k: np.full((len(a[2]), 2), np.nan))
    cols = dict(mos=[3.4] * 3, images=[[image]] * 3, id=[0] * 3, prompt_text=[prompts.scoring_prompt("think")] * 3,
                no_think_text=[prompts.scoring_prompt("no_think")] * 3)
    comps = ["<think>a</think><answer>3.3</answer>", "<think>b</think><answer>1.0</answer>",
             "<think>c</think><answer>3.5</answer>"]
    got = PDReward(lambda: model, lambda: processor)(completions=comps, **cols)
    assert np.isnan(got[0]) and got[1] == 0.0 and np.isnan(got[2])     # the wrong rollout is gated to 0


def test_sampled_no_think_references_start_from_their_sampled_tokens(tiny_policy, image, monkeypatch):
    """With pd_reference="sampled" each reference is forced from its own sampled token ids (a
    tokenisation re-tokenising its text would not give); only a fallback counts as re-tokenised."""
    import refine_iqa_lib.method.teacher_forcing as TF

    model, processor = tiny_policy
    tok = processor.tokenizer
    seen = []
    real = TF.forced_digit_probs

    def spy(*a, **k):
        seen.append(k["forced_ids"])
        return real(*a, **k)

    monkeypatch.setattr(TF, "forced_digit_probs", spy)
    head = tok("<answer>", add_special_tokens=False)["input_ids"]
    split = [i for ch in "Score" for i in tok(ch, add_special_tokens=False)["input_ids"]]
    sample_ids = head + split + tok(": 3.3</answer>", add_special_tokens=False)["input_ids"]
    sample = tok.decode(sample_ids)
    assert sample == "<answer>Score: 3.3</answer>" and sample_ids != tok(sample, add_special_tokens=False)["input_ids"]
    comps = ["<think>a</think><answer>3.3</answer>", "<think>b</think><answer>3.5</answer>"]
    cols = dict(mos=[3.4] * 2, images=[[image]] * 2, id=[0] * 2, prompt_text=[prompts.scoring_prompt("think")] * 2,
                no_think_text=[prompts.scoring_prompt("no_think")] * 2, no_think_sample=[sample, "<answer>no</answer>"],
                no_think_sample_ids=[sample_ids, tok("<answer>no</answer>", add_special_tokens=False)["input_ids"]])
    fn = PDReward(lambda: model, lambda: processor, reference="sampled")
    out = fn.compute(comps, completion_ids=[tok(c, add_special_tokens=False)["input_ids"] for c in comps], **cols)
    refs = seen[-1][2:]                                                 # after the two think rows
    assert refs[0][:len(head) + len(split)] == head + split            # its own sampled tokens
    assert out["retokenised"] == 1                                      # the sample without a score
