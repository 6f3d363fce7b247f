"""Eq. 6 (modified advantage) and the GRPO baseline: formulas, shapes, types, zero-spread groups."""
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from refine_iqa_lib.method.advantages import AUTHORS_EPS, PAPER_EPS, grpo_advantages, refine_advantages


def reference(r, correct, eps=0.02):
    """Eq. 6 written out directly (sample std), for groups with spread."""
    r = np.asarray(r, float)
    mean, std = r.mean(), r.std(ddof=1)
    if np.any(correct):
        return np.maximum((r - mean) / std, 0.0)
    return (r - mean - eps) / std


def test_both_branches_match_the_equation():
    r = np.array([2.3, 2.0, 1.0, 0.0, 2.1, 1.0, 0.0, 0.0])
    c = np.array([1, 1, 0, 0, 1, 0, 0, 0], bool)
    np.testing.assert_allclose(refine_advantages(r, c), reference(r, c), atol=1e-12)
    r2 = np.array([1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(refine_advantages(r2, np.zeros(8, bool)), reference(r2, [False] * 8), atol=1e-12)
    # the no-correct branch sits exactly eps/std below the plain z-score
    shift = refine_advantages(r2, np.zeros(8, bool)) - (r2 - r2.mean()) / r2.std(ddof=1)
    np.testing.assert_allclose(shift, -0.02 / r2.std(ddof=1))


def test_correct_branch_never_negative_and_grpo_differs_only_below_mean():
    r = np.array([2.3, 2.0, 1.0, 0.0])
    a = refine_advantages(r, [True, True, False, False])
    g = grpo_advantages(r)
    assert np.all(a >= 0)
    above = r > r.mean()
    np.testing.assert_allclose(a[above], g[above], rtol=1e-3)  # GRPO adds 1e-4 to std
    assert np.all(a[~above] == 0) and np.all(g[~above] < 0)


def test_ddof_choice():
    r = np.array([1.0, 0.0, 0.0, 0.0])
    pop = refine_advantages(r, [False] * 4, ddof=0)
    np.testing.assert_allclose(pop, (r - r.mean() - 0.02) / r.std(ddof=0))
    assert not np.allclose(pop, refine_advantages(r, [False] * 4))


def test_zero_spread_groups():
    ones = np.ones(8)
    assert refine_advantages(ones * 2.0, np.ones(8, bool)).tolist() == [0.0] * 8
    np.testing.assert_allclose(refine_advantages(ones, np.zeros(8, bool)), -PAPER_EPS)
    np.testing.assert_allclose(refine_advantages(ones, np.zeros(8, bool), eps=5.0), -1.0)  # clipped to |A| <= 1
    # float noise in the mean (8 x 0.1 does not sum to 0.8) still counts as no spread
    np.testing.assert_allclose(refine_advantages(np.full(8, 0.1), np.zeros(8, bool)), -PAPER_EPS)
    assert grpo_advantages(np.full(8, 0.1)).tolist() == [0.0] * 8
    # G = 1: the sample std is undefined -> treated as no spread
    assert refine_advantages([3.0], [True]).tolist() == [0.0]
    assert refine_advantages([3.0], [False]).tolist() == [-PAPER_EPS]


def test_authors_variant():
    ones = np.ones(8)
    # the authors' all-equal, all-wrong group gets -2e-5 / 1e-4 = -0.2 (the authors' released code)
    np.testing.assert_allclose(refine_advantages(ones, np.zeros(8, bool), variant="authors"), -0.2)
    assert np.all(refine_advantages(ones * 2, np.ones(8, bool), variant="authors") == 0)
    r = np.array([1.0, 0.0, 1.0, 0.0])
    std = r.std(ddof=1)
    np.testing.assert_allclose(refine_advantages(r, [False] * 4, variant="authors"),
                               (r - r.mean() - AUTHORS_EPS) / (std + 1e-4))
    r = np.array([2.5, 2.0, 0.0, 1.0])
    np.testing.assert_allclose(refine_advantages(r, [1, 1, 0, 0], variant="authors"),
                               np.maximum((r - r.mean()) / (r.std(ddof=1) + 1e-4), 0))
    with pytest.raises(ValueError, match="variant"):
        refine_advantages(r, [1, 1, 0, 0], variant="dapo")


def test_batch_of_groups_equals_group_by_group():
    rng = np.random.default_rng(0)
    r = rng.integers(0, 3, size=(6, 8)).astype(float) + rng.random((6, 8)) * 0.3
    c = r >= 2
    c[2] = False
    r[4] = 1.0  # a flat group
    batch = refine_advantages(r, c)
    for i in range(6):
        np.testing.assert_allclose(batch[i], refine_advantages(r[i], c[i]), atol=1e-12)
    g = grpo_advantages(r)
    for i in range(6):
        np.testing.assert_allclose(g[i], grpo_advantages(r[i]), atol=1e-12)


def test_types_round_trip():
    r = [2.0, 1.0, 0.0, 2.5]
    c = [True, False, False, True]
    a_list = refine_advantages(r, c)
    assert isinstance(a_list, np.ndarray)
    a_np = refine_advantages(np.asarray(r, np.float32), np.asarray(c))
    assert isinstance(a_np, np.ndarray)
    t = torch.tensor(r, dtype=torch.float32)
    a_t = refine_advantages(t, torch.tensor(c))
    assert isinstance(a_t, torch.Tensor) and a_t.dtype == torch.float32 and a_t.device == t.device
    np.testing.assert_allclose(a_t.numpy(), a_list, rtol=1e-6)
    g_t = grpo_advantages(torch.tensor(r, dtype=torch.float64))
    assert g_t.dtype == torch.float64
    # integer tensors come back as the default float dtype
    assert refine_advantages(torch.tensor([1, 0, 1]), torch.tensor([0, 0, 0])).dtype == torch.get_default_dtype()


def test_grpo_matches_trl_formula():
    r = torch.tensor([[2.3, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])
    mean = r.mean(dim=1, keepdim=True)
    std = r.std(dim=1, keepdim=True)  # torch.std: unbiased, as TRL
    torch.testing.assert_close(grpo_advantages(r), (r - mean) / (std + 1e-4))
    torch.testing.assert_close(grpo_advantages(r, scale=False), r - mean)


def test_input_errors():
    with pytest.raises(ValueError, match="shape"):
        refine_advantages(np.zeros((2, 2, 2)), np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match="shape"):
        refine_advantages([1.0, 2.0], [True])
    with pytest.raises(ValueError, match="finite"):
        refine_advantages([1.0, float("inf")], [True, False])
    with pytest.raises(ValueError, match="shape"):
        grpo_advantages([])


def test_missing_rewards_are_left_out_of_the_group_as_trl_does():
    """TRL gives a completion no reward function scored (all NaN) a NaN reward, leaves it out of
    its group's mean and std (nanmean / nanstd) and sets its advantage to 0; Eq. 6 does the same."""
    from trl.trainer.utils import nanstd

    r = torch.tensor([[2.3, float("nan"), 2.0, 1.0, 0.0], [1.0, 1.0, float("nan"), 0.0, 0.0],
                      [float("nan")] * 5], dtype=torch.float64)
    correct = torch.tensor([[1, 0, 1, 0, 0], [0, 0, 0, 0, 0], [0] * 5], dtype=torch.bool)
    a = refine_advantages(r, correct)
    ok = ~torch.isnan(r)
    for g in range(2):                                  # = Eq. 6 over the scored rollouts only
        torch.testing.assert_close(a[g][ok[g]], refine_advantages(r[g][ok[g]], correct[g][ok[g]]))
    assert a[0, 1] == 0 and a[1, 2] == 0 and (a[2] == 0).all()
    # the GRPO ablation equals TRL's own computation on the same rows
    mean = torch.nanmean(r[:2], dim=1, keepdim=True)
    trl = torch.nan_to_num((r[:2] - mean) / (nanstd(r[:2], dim=1, keepdim=True) + 1e-4), nan=0.0)
    torch.testing.assert_close(grpo_advantages(r[:2]), trl)


rewards_strategy = hnp.arrays(np.float64, st.tuples(st.integers(1, 5), st.integers(1, 10)),
                              elements=st.sampled_from([0.0, 1.0, 2.0, 2.0, 2.3, 2.05, 3.1]))


@given(rewards_strategy, st.data(), st.sampled_from(["paper", "authors"]))
@settings(max_examples=300, deadline=None)
def test_always_finite_and_flat_groups_bounded(r, data, variant):
    c = data.draw(hnp.arrays(np.bool_, r.shape))
    a = refine_advantages(r, c, variant=variant)
    assert a.shape == r.shape and np.all(np.isfinite(a))
    flat = np.ptp(r, axis=1) == 0
    assert np.all(np.abs(a[flat]) <= 1.0)
    some = c.any(axis=1)
    assert np.all(a[some] >= 0)  # the correct branch never pushes down
    # within a group the advantage is monotone in the reward
    for row_r, row_a in zip(r, a):
        order = np.argsort(row_r, kind="stable")
        assert np.all(np.diff(row_a[order]) >= -1e-12)
    g = grpo_advantages(r)
    assert np.all(np.isfinite(g))
    np.testing.assert_allclose(g.sum(axis=1), 0.0, atol=1e-9)
