"""Stage-1 samples: options, prompts, task mix, schema and the datasets loader."""
from __future__ import annotations

import json
import re
import string
from collections import Counter

import numpy as np
import pytest

from refine_iqa_lib.data import distortions as D
from refine_iqa_lib.data.stage1 import (TASK_SETS, TASKS, load_perception_images, load_stage1_dataset, make_samples,
                                        object_options, option_text, render_prompt, type_severity_options)

REQUIRED = ["id", "image", "reference", "task", "form", "mode", "prompt", "options", "answer", "bbox",
            "category", "severity", "object", "split", "image_id"]


def _row(k=1, j=0, steps=(("blur", 4),)):
    return {"id": f"s{k:06d}_o{j}", "scene": f"s{k:06d}", "image": f"images/s{k:06d}_o{j}.png",
            "reference": f"images/s{k:06d}_ref.png", "object": "cup", "bbox": [10, 12, 50, 60],
            "distractors": ["spoon", "table", "lamp", "dog"], "category": steps[0][0], "severity": steps[0][1],
            "categories": [c for c, _ in steps], "severities": [s for _, s in steps], "width": 112, "height": 84}


def test_type_severity_options_need_type_and_severity():
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = D.DISTORTIONS[int(rng.integers(12))]
        s = int(rng.integers(1, 6))
        opts, ans = type_severity_options([(c, s)], rng)
        assert ans == option_text([(c, s)]) and ans in opts and len(set(opts)) == len(opts) == 4
        others = [o for o in opts if o != ans]
        assert any(o.startswith(c.replace("_", " ") + ",") for o in others)     # same type, other severity
        assert any(o.endswith(", " + D.SEVERITIES[s - 1]) for o in others)      # same severity, other type
    opts, ans = type_severity_options([("blur", 2), ("noise", 1)], rng)
    assert ans == "blur, just noticeable + noise, slight" and len(opts) == 4
    labels = {c.replace("_", " "): c for c in D.DISTORTIONS}
    for _ in range(100):
        opts, _ = type_severity_options([("quantization", 3), ("compression", 3)], rng)
        for o in opts:  # every wrong pair is still an allowed combination
            first, second = (labels[part.split(",")[0]] for part in o.split(" + "))
            assert second in D.ALLOWED_PAIRS[first], o
    assert all(sev in ("slight", "just noticeable", "relatively obvious")
               for o in opts for sev in re.findall(r", ([a-z ]+?)(?: \+|$)", o))
    opts, ans = type_severity_options([("blur", 2)], rng, categories=["blur"], severities=[2, 3])
    assert sorted(opts) == ["blur, just noticeable", "blur, relatively obvious"]  # pools too small for 4


def test_object_options():
    opts, ans = object_options("cup", ["spoon", "cup", "saucer", "table", "lamp"], np.random.default_rng(0))
    assert ans == "cup" and "cup" in opts and len(opts) == 4 and len(set(opts)) == 4
    opts, _ = object_options("cup", ["spoon"], np.random.default_rng(0))
    assert sorted(opts) == ["cup", "spoon"]


def test_prompts_for_both_modes():
    p = render_prompt("Which object?", ["cup", "spoon"], "no_think")
    assert "Which object?\nA. cup\nB. spoon\n" in p and "<answer>X</answer>" in p and "<think>" not in p
    assert not re.search(r"<answer>[A-D]</answer>", p)          # no concrete answer in the layout
    p = render_prompt("Where?", [], "think")
    assert "<think>" in p and "<answer>[x1, y1, x2, y2]</answer>" in p
    with pytest.raises(ValueError, match="unknown mode"):
        render_prompt("q", [], "fast")


def test_make_samples_schema_and_answers():
    test = make_samples(_row(), "test", test_forms=("fr", "nr"), options="compact")
    assert sorted((s["task"], s["form"]) for s in test) == sorted((t, f) for t in TASK_SETS["compact"]
                                                                  for f in ("fr", "nr"))
    for s in test:
        assert set(REQUIRED) <= set(s) and s["split"] == "test" and s["image_id"] == "s000001_o0"
        assert s["reference"] == ("images/s000001_ref.png" if s["form"] == "fr" else "")
        assert s["id"] == f"s000001_o0_{s['task']}_{s['form']}"
        if s["task"] == "grounding":
            assert s["answer"] == [10, 12, 50, 60] and s["options"] == [] and "112x84" in s["prompt"]
        else:
            letter = string.ascii_uppercase[s["options"].index(s["answer"])]
            assert s["answer_letter"] == letter and f"{letter}. {s['answer']}" in s["prompt"]
        assert ("first image is the pristine reference" in s["prompt"]) == (s["form"] == "fr")
    assert [s for s in test if s["task"] == "type_severity"][0]["answer"] == "blur, severe"
    assert [s for s in test if s["task"] == "object"][0]["answer"] == "cup"
    assert make_samples(_row(), "test", options="compact") == test  # deterministic


def test_paper_pools_ask_type_and_severity_over_the_whole_pools():
    test = make_samples(_row(), "test", test_forms=("nr",))
    by_task = {s["task"]: s for s in test}
    assert sorted(by_task) == sorted(TASK_SETS["paper"]) == sorted(["type", "severity", "object", "grounding"])
    assert by_task["type"]["answer"] == "blur" and len(by_task["type"]["options"]) == 12
    assert sorted(by_task["type"]["options"]) == sorted(c.replace("_", " ") for c in D.DISTORTIONS)
    assert by_task["severity"]["answer"] == "severe" and sorted(by_task["severity"]["options"]) == sorted(D.SEVERITIES)
    assert sorted(by_task["object"]["options"]) == sorted({"cup", *_row()["distractors"]})   # every recorded object
    assert "L. " in by_task["type"]["prompt"]


@pytest.mark.parametrize("task", ["type", "severity", "object"])
def test_right_letter_is_uniform_over_positions(task):
    """Chi-square test of the right option's position over a build's worth of test images, with the
    options shuffled (``perception.option_order: shuffled``)."""
    from scipy.stats import chisquare

    rows = [make_samples(_row(k), "test", test_forms=("nr",), option_order="shuffled") for k in range(1500)]
    hits = [next(s for s in samples if s["task"] == task) for samples in rows]
    k = len(hits[0]["options"])
    assert all(len(h["options"]) == k for h in hits)
    counts = np.bincount([h["options"].index(h["answer"]) for h in hits], minlength=k)
    assert chisquare(counts).pvalue > 0.001, counts


def test_fixed_order_lists_each_pool_in_one_order():
    """``option_order: fixed`` (the default): type and severity list their whole pool in the pool's
    order, objects in reading order, so a letter always names the same option within an image."""
    seen = {"type": set(), "severity": set()}
    for k in range(200):
        for s in make_samples(_row(k), "test", test_forms=("nr",)):
            if s["task"] in seen:
                seen[s["task"]].add(tuple(s["options"]))
            if s["options"]:
                assert s["answer_letter"] == "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[s["options"].index(s["answer"])]
    assert len(seen["type"]) == 1 and len(seen["severity"]) == 1
    with pytest.raises(ValueError, match="option_order"):
        make_samples(_row(0), "test", option_order="sorted")


def test_train_mix_about_2_6_per_image():
    counts, tasks, forms = [], Counter(), Counter()
    for k in range(600):
        samples = make_samples(_row(k), "train", samples_per_image=2.6, fr_prob=0.5, modes=("no_think", "think"))
        counts.append(len(samples))
        tasks.update(s["task"] for s in samples)
        forms.update(s["form"] for s in samples)
        assert len({s["id"] for s in samples}) == len(samples) >= 1
    assert 2.5 < np.mean(counts) < 2.7
    assert min(tasks.values()) > 0.3 * len(counts) and abs(forms["fr"] - forms["nr"]) < 0.15 * sum(forms.values())
    assert make_samples(_row(5), "train", samples_per_image=0.0)  # at least one task


def test_loaders(tmp_path):
    d = tmp_path / "perception"
    d.mkdir()
    rows = make_samples(_row(), "test", options="compact")
    (d / "samples_test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (d / "images_test.jsonl").write_text(json.dumps({**_row(), "split": "test"}) + "\n")
    ds = load_stage1_dataset(tmp_path, "test")  # the work dir above works too
    assert len(ds) == 6 and set(REQUIRED) <= set(ds.column_names)
    g = ds.filter(lambda r: r["task"] == "grounding")[0]
    assert g["answer"] == "[10, 12, 50, 60]" and g["bbox"] == [10, 12, 50, 60]
    fr = ds.filter(lambda r: r["form"] == "fr")[0]
    assert fr["images"] == [str((d / "images/s000001_ref.png").resolve()), str((d / "images/s000001_o0.png").resolve())]
    df = load_perception_images(d, "test")
    assert df.loc[0, "image"] == str((d / "images/s000001_o0.png").resolve())
    with pytest.raises(FileNotFoundError, match="samples_train.jsonl: not found; build the dataset first"):
        load_stage1_dataset(d, "train")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_stage1_dataset(d, "val")
