"""Held-out before/after scoring (notebooks 03-04): intervals on every metric, paired differences."""
from __future__ import annotations

import numpy as np
import pytest

from refine_iqa_lib.config import load_config
from refine_iqa_lib.evaluation import heldout as H


class _Tok:
    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": list(range(len(text.split())))}


class _Processor:
    tokenizer = _Tok()


def test_heldout_rows_carry_intervals_and_differences_are_paired(tmp_path, monkeypatch):
    cfg = load_config("smoke", {"paths.work_dir": str(tmp_path / "work"), "paths.results_dir": str(tmp_path / "r")})
    noise = {"good": 0.1, "bad": 2.0}
    state = {}

    def fake_load(path, **kw):
        state["model"] = str(path)
        return object(), _Processor()

    def fake_score(model, processor, images, mode, method, **kw):
        from refine_iqa_lib.data.scoring_data import load_scoring_split

        df = load_scoring_split(cfg, cfg.scoring.train[0], "test").set_index("image")
        rng = np.random.default_rng(len(state["model"]) + (method == "prob"))
        out = []
        for i, im in enumerate(images):
            v = float(df.loc[im, "mos"]) + rng.normal(0, noise[state["model"]])
            unparsable = method == "numeric" and i == 0
            out.append({"score": float("nan") if unparsable else v, "text": "<think>a b c</think>"})
        return out

    monkeypatch.setattr(H, "load_policy", fake_load)
    monkeypatch.setattr(H, "score_images", fake_score)
    monkeypatch.setattr(H, "_sampled_scores", lambda model, proc, images, k, *a, **kw: [[2.0] * k for _ in images])
    held = H.heldout_scoring(cfg, {"good": "good", "bad": "bad"}, max_samples=0, k=2)
    for col in H.HELDOUT_METRICS:
        for _, row in held.iterrows():
            lo, hi = row[f"{col}_ci_low"], row[f"{col}_ci_high"]
            assert np.isnan(row[col]) or lo - 1e-9 <= row[col] <= hi + 1e-9, (col, row.to_dict())
    good = held.set_index("model").loc["good"]
    assert good["parsed"] == pytest.approx(1 - 1 / good["n"])  # the unparsable answer is counted ...
    items = held.attrs["items"]["good"]
    assert items["numeric"][0] == 2.5  # ... and scored with the fallback (eval.unparsable: fallback)
    d = H.heldout_difference(held, "good", "bad", "srcc_prob")
    assert d.value == pytest.approx(held.set_index("model").loc["good", "srcc_prob"]
                                    - held.set_index("model").loc["bad", "srcc_prob"])
    assert d.n == good["n"] and d.low - 1e-9 <= d.value <= d.high + 1e-9
    with pytest.raises(ValueError, match="unknown held-out metric"):
        H.heldout_difference(held, "good", "bad", "kendall")
