"""Eq. 8 and the model scorer (probability-based and numeric, think and no-think)."""
import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from PIL import Image

from refine_iqa_lib import prompts
from refine_iqa_lib.method import scoring
from refine_iqa_lib.method.scoring import count_unparsed, digit_token_ids, expected_score, score_images
from refine_iqa_lib.standin.world import photo_ids
from refine_iqa_lib.standin.world import load_photo


@pytest.fixture(scope="module")
def images():
    return [Image.fromarray(load_photo(n)).resize((64 + 8 * i, 96 - 8 * i)) for i, n in enumerate(photo_ids()[:5])]


def test_expected_score_known_values():
    assert expected_score([0, 0, 0, 0, 0]) == pytest.approx(2.5)
    assert expected_score([100, 0, 0, 0, 0]) == pytest.approx(0.5)
    assert expected_score([0, 0, 0, 0, 100]) == pytest.approx(4.5)
    assert expected_score([0, 0, 0, math.log(3), 0]) == pytest.approx((0 + 1 + 2 + 3 * 3 + 4) / 7 + 0.5)
    with pytest.raises(ValueError, match="5 digit logits"):
        expected_score([0, 0, 0, 0])
    with pytest.raises(ValueError, match="5 digit logits"):
        expected_score(torch.zeros(3, 4))


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.just(5)), elements=st.floats(-30, 30)),
       st.floats(-50, 50))
@settings(max_examples=200, deadline=None)
def test_expected_score_range_shift_invariance_and_torch_agreement(logits, shift):
    q = expected_score(logits)
    assert q.shape == (logits.shape[0],)
    assert np.all((q >= 0.5 - 1e-9) & (q <= 4.5 + 1e-9))
    np.testing.assert_allclose(expected_score(logits + shift), q, atol=1e-9)
    np.testing.assert_allclose(expected_score(torch.tensor(logits)).numpy(), q, atol=1e-5)


def test_digit_token_ids(tiny_policy):
    _, processor = tiny_policy
    ids = digit_token_ids(processor.tokenizer)
    assert len(set(ids)) == 5
    assert [processor.tokenizer.decode([i]) for i in ids] == list("01234")

    class Wordy:
        def __call__(self, text, add_special_tokens=False):
            return {"input_ids": [1, 2]}

    with pytest.raises(ValueError, match="one token"):
        digit_token_ids(Wordy())


def test_prob_no_think_is_one_forward_and_matches_eq8(tiny_policy, images):
    model, processor = tiny_policy
    out = score_images(model, processor, images[:2], mode="no_think", method="prob", progress=False)
    prompt = processor.apply_chat_template(prompts.user_message(prompts.scoring_prompt("no_think")),
                                           add_generation_prompt=True, tokenize=False)
    ids = digit_token_ids(processor.tokenizer)
    for img, row in zip(images[:2], out):
        batch = processor(text=[prompt + "<answer>"], images=[img], return_tensors="pt")
        with torch.no_grad():
            logits = model(**batch).logits[0, -1]
        assert row["score"] == pytest.approx(expected_score(logits[ids].double().numpy()), abs=1e-5)
        assert sum(row["digit_probs"]) == pytest.approx(1.0)
        full = torch.softmax(logits.double(), -1)[ids].sum().item()
        assert row["digit_mass"] == pytest.approx(full, rel=1e-4)


def test_authors_layout_forces_score_prefix(tiny_policy, images, monkeypatch):
    model, processor = tiny_policy
    seen = []
    real = scoring._digit_logits

    def spy(model, processor, texts, *a, **k):
        seen.extend(texts)
        return real(model, processor, texts, *a, **k)

    monkeypatch.setattr(scoring, "_digit_logits", spy)
    score_images(model, processor, images[:1], variant="authors", progress=False)
    assert seen[0].endswith("<answer>Score: ")


@pytest.mark.parametrize("mode", ["no_think", "think"])
def test_batched_equals_one_at_a_time(tiny_policy, images, mode):
    model, processor = tiny_policy
    a = score_images(model, processor, images, mode=mode, batch_size=5, max_new_tokens=6, progress=False)
    b = score_images(model, processor, images, mode=mode, batch_size=1, max_new_tokens=6, progress=False)
    assert len(a) == len(images)
    np.testing.assert_allclose([r["score"] for r in a], [r["score"] for r in b], atol=1e-5)
    assert all(0.5 <= r["score"] <= 4.5 for r in a)
    if mode == "think":
        assert [r["think"] for r in a] == [r["think"] for r in b]


def test_think_prob_forces_the_generated_think(tiny_policy, images, monkeypatch):
    model, processor = tiny_policy
    monkeypatch.setattr(scoring, "generate_greedy", lambda *a, **k: ["<think>soft focus</think><answer>9", "no think"])
    seen = []
    real = scoring._digit_logits
    monkeypatch.setattr(scoring, "_digit_logits", lambda m, p, texts, *a, **k: seen.extend(texts) or real(m, p, texts, *a, **k))
    out = score_images(model, processor, images[:2], mode="think", progress=False)
    assert seen[0].endswith("<think>soft focus</think><answer>")
    assert seen[1].endswith("<think>no think</think><answer>")
    assert [r["think"] for r in out] == ["soft focus", "no think"]


def test_numeric_parses_and_counts_unparsable(tiny_policy, images, monkeypatch, caplog):
    model, processor = tiny_policy
    texts = iter([["<answer>3.5</answer>", "<answer>n/a</answer>"], ["<think>x</think><answer>Score: 1,5</answer>"]])
    monkeypatch.setattr(scoring, "generate_greedy", lambda *a, **k: next(texts))
    out = score_images(model, processor, images[:3], method="numeric", batch_size=2, progress=False)
    assert [r["parsed"] for r in out] == [True, False, True]
    assert out[0]["score"] == 3.5 and math.isnan(out[1]["score"]) and out[2]["score"] == 1.5
    assert count_unparsed(out) == 1
    assert "1 of 3" in caplog.text


def test_numeric_real_generation_runs(tiny_policy, images):
    model, processor = tiny_policy
    out = score_images(model, processor, images[:2], method="numeric", max_new_tokens=4, progress=False)
    assert len(out) == 2 and all(set(r) == {"score", "parsed", "text"} for r in out)
    assert all(r["parsed"] == (not math.isnan(r["score"])) for r in out)


def test_inputs_as_arrays_and_paths(tiny_policy, images, tmp_path):
    model, processor = tiny_policy
    p = tmp_path / "x.png"
    images[0].save(p)
    a = score_images(model, processor, [images[0], np.asarray(images[0]), str(p)], progress=False)
    np.testing.assert_allclose([r["score"] for r in a], a[0]["score"], atol=1e-6)
    with pytest.raises(FileNotFoundError, match="missing.png"):
        score_images(model, processor, [str(tmp_path / "missing.png")], progress=False)


def test_argument_errors(tiny_policy, images):
    model, processor = tiny_policy
    with pytest.raises(ValueError, match="method"):
        score_images(model, processor, images[:1], method="logits")
    with pytest.raises(ValueError, match="mode"):
        score_images(model, processor, images[:1], mode="fast")
    with pytest.raises(ValueError, match="batch_size"):
        score_images(model, processor, images[:1], batch_size=0)
