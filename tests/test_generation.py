"""Exact greedy decoding: a checkpoint's own generation_config.json never changes an evaluation."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import perception, qbench
from refine_iqa_lib.generation import GREEDY_FIELDS, chat_text, greedy_config
from refine_iqa_lib.method.scoring import score_images
from refine_iqa_lib.models import load_policy


@pytest.fixture(scope="module")
def policies(tiny_model_dir, tmp_path_factory):
    """The stand-in twice: as built, and saved with a generation config that samples and penalises."""
    odd = tmp_path_factory.mktemp("odd_generation") / "model"
    shutil.copytree(tiny_model_dir, odd)
    gc_path = odd / "generation_config.json"
    gc = json.loads(gc_path.read_text()) if gc_path.is_file() else {}
    gc.update(repetition_penalty=1.3, do_sample=True, temperature=0.1, top_k=1, top_p=0.5, no_repeat_ngram_size=2)
    gc_path.write_text(json.dumps(gc))
    torch.set_num_threads(1)
    return load_policy(tiny_model_dir), load_policy(odd)


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    root = tmp_path_factory.mktemp("greedy_eval")
    return load_config("smoke", {"paths.work_dir": str(root / "work"), "paths.results_dir": str(root / "results"),
                                 "eval.max_samples": 4})


def _manual_greedy(model, processor, text, image, n):
    """Plain greedy decoding by hand: argmax of the next-token logits, n times (no processors)."""
    batch = dict(processor(text=[text], images=[image], return_tensors="pt"))
    out = []
    for _ in range(n):
        with torch.no_grad():
            logits = model(**batch, use_cache=False).logits[0, -1]
        nxt = int(logits.argmax())
        out.append(nxt)
        if nxt == processor.tokenizer.eos_token_id:
            break
        grow = lambda x, v: torch.cat([x, torch.full((1, 1), v, dtype=x.dtype)], dim=1)  # noqa: E731
        batch.update(input_ids=grow(batch["input_ids"], nxt), attention_mask=grow(batch["attention_mask"], 1),
                     mm_token_type_ids=grow(batch["mm_token_type_ids"], 0))
    return out


def test_greedy_config_sets_every_field():
    from types import SimpleNamespace

    g = greedy_config(SimpleNamespace(pad_token_id=0, eos_token_id=1), 5)
    for k, v in GREEDY_FIELDS.items():
        assert getattr(g, k, v) == v, k


def test_every_evaluator_decodes_exactly_greedy(policies, cfg):
    (clean, proc), (odd, odd_proc) = policies
    assert odd.generation_config.repetition_penalty == 1.3 and odd.generation_config.do_sample
    rng = np.random.default_rng(0)
    from PIL import Image

    images = [Image.fromarray(rng.integers(0, 255, (56, 84, 3), dtype=np.uint8)) for _ in range(3)]
    # the scoring evaluator (numeric and think-mode Eq. 8 generate; no-think Eq. 8 does not)
    for mode, method in (("think", "numeric"), ("no_think", "numeric"), ("think", "prob")):
        a = score_images(clean, proc, images, mode=mode, method=method, max_new_tokens=12, progress=False)
        b = score_images(odd, odd_proc, images, mode=mode, method=method, max_new_tokens=12, progress=False)
        assert [r.get("text", r.get("think")) for r in a] == [r.get("text", r.get("think")) for r in b]
    # perception and Q-Bench on their smoke test items
    samples = perception.perception_test_samples(cfg)
    pa = perception.predict_perception(clean, proc, samples, batch_size=4, max_new_tokens=8)
    pb = perception.predict_perception(odd, odd_proc, samples, batch_size=4, max_new_tokens=8)
    assert pa["completion"].tolist() == pb["completion"].tolist()
    questions = qbench.load_qbench_questions(cfg)
    qa = qbench.predict_qbench(clean, proc, questions, "no_think", batch_size=4, max_new_tokens=8)
    qb = qbench.predict_qbench(odd, odd_proc, questions, "no_think", batch_size=4, max_new_tokens=8)
    assert qa["completion"].tolist() == qb["completion"].tolist()


def test_library_greedy_equals_greedy_by_hand(policies):
    from refine_iqa_lib.generation import generate_greedy
    from PIL import Image

    _, (odd, proc) = policies
    image = Image.fromarray(np.random.default_rng(1).integers(0, 255, (56, 56, 3), dtype=np.uint8))
    text = chat_text(proc, "Rate it.")
    got = generate_greedy(odd, proc, [text], [image], max_new_tokens=10)[0]
    want = proc.tokenizer.decode(_manual_greedy(odd, proc, text, image, 10), skip_special_tokens=True,
                                 clean_up_tokenization_spaces=False)
    assert got == want


def test_greedy_generate_batches_by_length_and_returns_input_order(policies, monkeypatch):
    """Rows are batched shortest first (in tokens), and every completion comes back at its own row."""
    import refine_iqa_lib.generation as G

    _, (_, proc) = policies
    seen = []

    def tokens(text):
        return len(proc.tokenizer(text, add_special_tokens=False)["input_ids"])

    def echo(model, processor, texts, images, max_new_tokens):
        seen.append([tokens(t) for t in texts])
        return [t[-12:] for t in texts]

    monkeypatch.setattr(G, "generate_greedy", echo)
    prompts = ["a much longer question about the picture " * 3, "short?", "medium length question?", "tiny"]
    got = G.greedy_generate(None, proc, ["img"] * 4, prompts, max_new_tokens=4, batch_size=2, progress=False)
    assert got == [chat_text(proc, p)[-12:] for p in prompts]
    flat = [n for batch in seen for n in batch]
    assert flat == sorted(flat) and [len(b) for b in seen] == [2, 2]
