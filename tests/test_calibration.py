"""The claims rule on synthetic data: few verdicts without an effect, and the power it reports."""
from __future__ import annotations

import math

import pandas as pd

from refine_iqa_lib.evaluation.calibration import KINDS, calibrate

#: Smaller test sets than the tiny profile's, so that the whole table takes seconds.
SMALL = {"images": 300, "hard": 171, "questions": 300, "pictures": 120}


def test_every_claim_kind_rarely_decides_without_an_effect():
    sims = {"accuracy": 400, "iou": 150, "hard_vs_easy": 400, "keeps": 400, "srcc": 80, "srcc_plcc_mean": 80,
            "equivalence": 80, "curve": 2000, "two_curves": 2000}
    table = calibrate(n_sims=sims, sizes=SMALL, n_resamples=300, power=False, seed=0)
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.max_colwidth", 70):
        print(table[["kind", "setting", "sims", "supports", "contradicts", "decided"]].round(3).to_string())
    assert set(table["kind"]) == set(KINDS) and table["null"].all()
    # at most 5 % plus twice the Monte-Carlo error of a 5 % rate
    bound = 0.05 + 2 * (0.05 * 0.95 / table["sims"]).map(math.sqrt)
    assert (table["decided"] <= bound).all(), table[table["decided"] > bound]
    # nearly identical models disagree on a handful of items: never a verdict
    near = table[table["setting"].str.startswith("nearly the same model")]
    assert len(near) == 1 and near["decided"].iloc[0] == 0.0


def test_power_on_planted_effects():
    table = calibrate(n_sims=0, n_power_sims={"accuracy": 60, "curve": 300}, kinds=("accuracy", "curve"),
                      sizes=SMALL, n_resamples=300, seed=1)
    assert not table["null"].any() and (table["sims"] > 0).all()
    power = table.set_index(["kind", "setting", "effect"])["supports"]
    assert power[("accuracy", "independent answers", "each item +10 pp more likely right")] > 0.6
    assert power[("curve", "AR(1) noise, rho = 0.0", "linear rise of 2 noise SD")] > 0.9
    # autocorrelation costs power: the same rise is found far less often at rho = 0.9
    assert power[("curve", "AR(1) noise, rho = 0.9", "linear rise of 2 noise SD")] < 0.5
    assert (table["contradicts"] <= 0.02).all()
