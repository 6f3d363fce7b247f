"""The reward explorer: the pure table function, the presets, and the live widget."""
import numpy as np
import pandas as pd
import pytest

from refine_iqa_lib.method.advantages import grpo_advantages, refine_advantages
from refine_iqa_lib.method.explorer import COLUMNS, PRESETS, build_explorer, explore_group, parse_probs, plot_advantages


def _args(name):
    return {k: v for k, v in PRESETS[name].items() if k != "description"}


def test_table_columns_and_consistency():
    df = explore_group(**_args("mixed group"))
    assert list(df.columns) == COLUMNS and len(df) == 4
    assert df["r_ref"].nunique() == 1
    np.testing.assert_allclose(df["r_pd"], np.clip(df["r_think"] - df["r_ref"], 0, 1))
    gate = df["correct"].to_numpy()
    np.testing.assert_allclose(df["r_final"], df["r_ans"] + df["r_fmt"] + np.where(gate, df["r_pd"], 0))
    np.testing.assert_allclose(df["adv_grpo"], grpo_advantages(df["r_final"].to_numpy()))
    np.testing.assert_allclose(df["adv_refine"], refine_advantages(df["r_final"].to_numpy(), gate))


def test_presets_show_their_cases():
    assert {"think collapse", "no rollout correct", "mixed group"} <= set(PRESETS)
    collapse = explore_group(**_args("think collapse"))
    assert collapse["correct"].all() and (collapse["r_pd"] == 0).all()
    assert (collapse["adv_refine"] == 0).all() and (collapse["adv_grpo"] == 0).all()
    none = explore_group(**_args("no rollout correct"))
    assert not none["correct"].any()
    assert np.all(none["adv_refine"] < none["adv_grpo"])  # the eps push
    mixed = explore_group(**_args("mixed group"))
    assert mixed["correct"].tolist() == [True, True, False, False]
    assert mixed["r_pd"].iloc[0] > 0 and mixed["r_pd"].iloc[1] == 0
    assert (mixed["adv_refine"][~mixed["correct"]] == 0).all() and (mixed["adv_grpo"][~mixed["correct"]] < 0).all()
    for name in PRESETS:  # every preset is consistent
        df = explore_group(**_args(name))
        assert len(df) == len(PRESETS[name]["rollouts"]) and np.isfinite(df["adv_refine"]).all()


def test_parameters_change_the_table():
    base = explore_group(**_args("mixed group"))
    strict = explore_group(**_args("mixed group"), eps=0.05)
    assert strict["r_ans"].sum() < base["r_ans"].sum()
    lam = explore_group(**_args("mixed group"), lambdas=(1, 1, 3))
    assert lam["r_final"].iloc[0] == pytest.approx(base["r_final"].iloc[0] + 2 * base["r_pd"].iloc[0])
    authors = explore_group(**_args("mixed group"), variant="authors")
    assert authors["r_think"].tolist() == [z[1] for z in PRESETS["mixed group"]["think_digit_probs"]]


def test_input_errors():
    a = _args("mixed group")
    with pytest.raises(ValueError, match="rows of think"):
        explore_group(**{**a, "think_digit_probs": a["think_digit_probs"][:2]})
    with pytest.raises(ValueError, match="one per ground-truth digit"):
        explore_group(**{**a, "no_think_digit_probs": [0.5]})
    with pytest.raises(ValueError, match="at least one"):
        explore_group([], 3.0, [], [0.5, 0.5])
    with pytest.raises(ValueError):
        parse_probs("a, b")


def test_plot_has_two_bar_series():
    df = explore_group(**_args("mixed group"))
    fig = plot_advantages(df)
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and [len(c) for c in ax.containers] == [4, 4]
    heights = [b.get_height() for b in ax.containers[1]]
    np.testing.assert_allclose(heights, df["adv_refine"])


def test_widget_updates_when_values_are_assigned():
    w = build_explorer("mixed group")
    assert w.error is None and isinstance(w.table, pd.DataFrame)
    n0, png0 = w.n_updates, w.figure_png
    assert len(w.rollouts) == len(w.think_probs) == 4
    kinds = [set(o["data"]) for o in w.output.outputs]
    assert any("text/html" in k for k in kinds) and any("image/png" in k for k in kinds)

    w.mos.value = 1.0                       # every rollout is now wrong
    assert w.n_updates == n0 + 1
    assert w.table["r_ans"].sum() == 0 and not w.table["correct"].any()
    assert w.figure_png != png0

    w.rollouts[3].value = "<think>grainy, dark</think><answer>1.1</answer>"
    assert w.table["correct"].tolist() == [False, False, False, True]
    assert w.table["adv_refine"].iloc[3] > 0 and (w.table["adv_refine"].iloc[:3] == 0).all()

    w.think_probs[3].value = "0.95, 0.9"
    assert w.table["r_pd"].iloc[3] == pytest.approx(0.95 + 0.09 - w.table["r_ref"].iloc[3])

    w.no_think_probs.value = "oops"
    assert "expected probabilities" in w.error
    assert "input error" in w.output.outputs[0]["data"]["text/html"]

    w.preset.value = "think collapse"       # loads every field, recomputes once
    n = w.n_updates
    assert w.error is None and w.mos.value == PRESETS["think collapse"]["mos"]
    assert [t.value for t in w.rollouts] == PRESETS["think collapse"]["rollouts"]
    assert (w.table["adv_refine"] == 0).all()
    w.preset.value = "no rollout correct"
    assert w.n_updates == n + 1


def test_unknown_preset():
    with pytest.raises(ValueError, match="valid presets"):
        build_explorer("nope")


def test_one_apply_rule_numbered_labels_and_a_reset():
    w = build_explorer("mixed group")
    fields = [w.mos, w.no_think_probs, *w.rollouts, *w.think_probs]
    assert all(f.continuous_update is False for f in fields)   # applied on Enter / leaving the field
    assert [r.description for r in w.rollouts] == [f"rollout {i}" for i in range(1, 5)]
    assert [t.description for t in w.think_probs] == [f"z think {i}" for i in range(1, 5)]
    note = w.note.value
    w.mos.value = 0.3
    w.rollouts[0].value = "edited"
    w.think_probs[1].value = "0.1, 0.1"
    assert w.table["rollout"].iloc[0] == "edited"
    w.reset.click()                                            # re-selecting the preset sends no event
    p = PRESETS["mixed group"]
    assert w.mos.value == p["mos"] and [r.value for r in w.rollouts] == p["rollouts"]
    assert w.think_probs[1].value == ", ".join(f"{v:g}" for v in p["think_digit_probs"][1])
    assert w.note.value == note and w.error is None
    assert w.table.equals(build_explorer("mixed group").table)


def test_layout_wraps_instead_of_scrolling():
    w = build_explorer("mixed group")
    rows = [c for c in w.children if isinstance(c, __import__("ipywidgets").HBox)]
    assert rows and all(r.layout.flex_flow == "row wrap" for r in rows)
    assert all(r.layout.min_width for r in w.rollouts) and w.output.layout.overflow == "auto"
