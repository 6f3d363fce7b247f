"""Group-relative advantages: the paper's modified advantage (Eq. 6) and plain GRPO.

Both take the rewards of one group, shape ``(G,)``, or of a batch of groups, shape ``(N, G)``
(normalised along the last axis), as a list, a numpy array or a torch tensor, and return the
same type (numpy for lists; torch keeps the input's device and floating dtype).

**Which standard deviation.** The sample standard deviation (``ddof=1``, Bessel-corrected), as
``torch.std`` and therefore TRL's ``GRPOTrainer`` and the authors' code compute it. With the same
statistic in :func:`grpo_advantages` and :func:`refine_advantages` the GRPO-vs-PM ablation
(Table 6) changes only Eq. 6's branches. ``ddof=0`` gives the population version.

**A group without spread.** Eq. 6 divides by the group's std, which is 0 when every rollout has
the same reward (and undefined for G = 1). A std below ``1e-6`` (rewards are O(1); float noise
in the mean can leave ~1e-17) counts as zero, and then (paper variant):

* some rollout correct: every advantage is 0 - all rollouts are equally good (all correct: a
  correct rollout scores at least λ1 + λ2, an incorrect one at most max(λ1, λ2)), there is
  nothing to prefer, and the max(·, 0) of Eq. 6 would clip any negative value anyway;
* no rollout correct: every advantage is ``−min(eps, 1)``: the offset ε is kept in reward units
  (divided by 1 instead of 0), a small uniform push away from the group's outputs, which is the
  stated purpose of the ε branch ("encourage exploration of alternative predictions").

So an all-equal group always gets finite advantages with ``|A| ≤ 1``. The authors' code avoids
the division by zero with ``std + 1e-4`` and an offset of 2e-5, so its all-equal, all-wrong
group gets ``−2e-5 / 1e-4 = −0.2``.

**Near-ties.** Above that threshold the paper's formula is kept as printed: it divides by the bare
std, so the advantages do not depend on how far apart the rewards are, only on their order and
relative spacing. Rewards that differ by a tiny amount therefore still get full-size advantages:
G = 8 rewards ``[2.0001, 2, 2, 2, 2, 2, 2, 2]`` give the first rollout ``A = 2.47``, exactly what a
PD gap of 1.0 gives. Such a gap must then be real and not rounding: the PD reward's digit
probabilities come from float32 logits (:mod:`refine_iqa_lib.method.teacher_forcing`), where
bfloat16 logits would differ by up to about 6 % between rollouts that are equally good. (GRPO's
``std + 1e-4`` shrinks such a group's advantages instead: 0.26 for the example.)

**Rewards that are missing** (NaN: TRL's value for a completion no reward function could score)
are handled as TRL handles them: left out of their group's mean and std, with advantage 0. A
group whose rewards are all missing gets 0 everywhere; infinite rewards raise.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from refine_iqa_lib.prompts import check_variant

__all__ = ["refine_advantages", "grpo_advantages", "eq6_eps", "STD_ZERO_TOL", "PAPER_EPS", "AUTHORS_EPS",
           "AUTHORS_STD_EPS"]

#: A group std below this counts as zero (no spread).
STD_ZERO_TOL = 1e-6
#: Eq. 6's offset ε (paper) and the authors' code's offset and std guard.
PAPER_EPS = 0.02
AUTHORS_EPS = 2e-5
AUTHORS_STD_EPS = 1e-4


def eq6_eps(variant: str = "paper", eps: float | None = None) -> float:
    """Eq. 6's offset ε: ``eps`` (default 0.02) for the paper; the authors' code's 2e-5 for
    ``variant="authors"``, whose offset goes with their ``std + 1e-4`` denominator (0.02 / 1e-4
    would give -200). The one place ε is chosen.

    >>> eq6_eps(), eq6_eps("paper", 0.05), eq6_eps("authors", 0.05)
    (0.02, 0.05, 2e-05)
    """
    if check_variant(variant) == "authors":
        return AUTHORS_EPS
    return PAPER_EPS if eps is None else float(eps)


def _as_tensor(x: Any, name: str) -> tuple[torch.Tensor, str, torch.dtype | None]:
    """``(float64 tensor, kind, original dtype)``; kind is 'torch', 'numpy' or 'list'."""
    if isinstance(x, torch.Tensor):
        dtype = x.dtype if x.is_floating_point() else torch.get_default_dtype()
        return x.detach().to(torch.float64), "torch", dtype
    kind = "numpy" if isinstance(x, np.ndarray) else "list"
    arr = np.asarray(x, dtype=np.float64)
    return torch.from_numpy(arr.copy()), kind, None


def _restore(t: torch.Tensor, kind: str, dtype: torch.dtype | None, like: Any) -> Any:
    if kind == "torch":
        return t.to(dtype=dtype, device=like.device)
    return t.numpy()


def _check_shape(r: torch.Tensor, name: str) -> None:
    if r.ndim not in (1, 2) or r.shape[-1] == 0:
        raise ValueError(f"{name}: expected rewards of shape (G,) or (N, G) with G >= 1, got {tuple(r.shape)}")
    if torch.isinf(r).any():
        raise ValueError(f"{name}: rewards must be finite or NaN (missing), got {r.tolist()}")


def _group_stats(r: torch.Tensor, ddof: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and std of each group over its rewards that are not NaN (missing). A group with at
    most ``ddof`` of them has std 0 (no spread); one with none has mean 0."""
    valid = ~torch.isnan(r)
    n = valid.sum(dim=-1, keepdim=True).to(r.dtype)
    x = torch.where(valid, r, torch.zeros_like(r))
    mean = x.sum(dim=-1, keepdim=True) / n.clamp(min=1)
    var = torch.where(valid, (r - mean) ** 2, torch.zeros_like(r)).sum(dim=-1, keepdim=True)
    dof = n - ddof
    std = torch.where(dof > 0, (var / dof.clamp(min=1)).sqrt(), torch.zeros_like(var))
    return mean, std


def refine_advantages(rewards: Any, correct: Any, eps: float | None = None, variant: str = "paper",
                      ddof: int = 1) -> Any:
    """Eq. 6, the modified group-relative advantage ("policy-gradient modification", PM).

    For a group with final rewards ``r`` (Eq. 5) and ``correct`` marking the rollouts with
    ``r_ans = r_fmt = 1``:

    * if any rollout is correct: ``A_i = max((r_i − mean(r)) / std(r), 0)`` - only better-than-
      average rollouts are pushed up, nothing is pushed down (scoring as distribution prediction);
    * otherwise: ``A_i = (r_i − mean(r) − ε) / std(r)`` with ε = 0.02 - every rollout gets a small
      extra negative push.

    (Eq. 6's printed condition, ``0 ≤ |λ1 r_ans + λ2 r_fmt − λ1 − λ2| < G``, is read as the text
    explains it: "if no rollout in a group is correct" selects the second branch.) The advantage
    is the same for every token ``t`` of a rollout. See the module docstring for ``std = 0``.

    ``variant="authors"``: ``max((r − mean)/(std + 1e-4), 0)`` and ``(r − mean − 2e-5)/(std + 1e-4)``;
    ε comes from :func:`eq6_eps` (``eps``, default 0.02, for the paper; 2e-5 for the authors).

    Worked example, G = 4 (λ = 1): rewards [2.3, 2.0, 1.0, 0.0] - two correct rollouts (PD 0.3
    and 0), one with only the format right, one with nothing right. Mean 1.325, sample std 1.0436:
    A = [0.934, 0.647, 0, 0] (GRPO would give the last two −0.311 and −1.269). A group where nobody
    is correct, rewards [1, 1, 0, 0]: mean 0.5, std 0.5774, A = (r − 0.5 − 0.02)/0.5774 =
    [0.831, 0.831, −0.901, −0.901].

    >>> import numpy as np
    >>> r = np.array([2.3, 2.0, 1.0, 0.0])
    >>> np.round(refine_advantages(r, [True, True, False, False]), 3).tolist()
    [0.934, 0.647, 0.0, 0.0]
    >>> np.round(refine_advantages([1.0, 1.0, 0.0, 0.0], [False] * 4), 3).tolist()
    [0.831, 0.831, -0.901, -0.901]
    >>> refine_advantages([1.0, 1.0], [False, False]).tolist()                   # no spread, none correct
    [-0.02, -0.02]
    >>> np.round(refine_advantages([1.0, 1.0], [False, False], variant="authors"), 6).tolist()
    [-0.2, -0.2]
    >>> np.round(refine_advantages([2.3, float("nan"), 2.0, 1.0, 0.0], [True, False, True, False, False]), 3).tolist()
    [0.934, 0.0, 0.647, 0.0, 0.0]
    """
    eps = eq6_eps(variant, eps)
    r, kind, dtype = _as_tensor(rewards, "rewards")
    _check_shape(r, "refine_advantages")
    c, _, _ = _as_tensor(correct, "correct")
    if c.shape != r.shape:
        raise ValueError(f"refine_advantages: correct has shape {tuple(c.shape)}, rewards {tuple(r.shape)}")
    c = c != 0
    mean, std = _group_stats(r, ddof)
    any_correct = c.any(dim=-1, keepdim=True)
    if variant == "authors":
        denom = std + AUTHORS_STD_EPS
        pos = ((r - mean) / denom).clamp(min=0.0)
        neg = (r - mean - eps) / denom
    else:
        flat = std < STD_ZERO_TOL
        denom = torch.where(flat, torch.ones_like(std), std)
        pos = torch.where(flat, torch.zeros_like(r), ((r - mean) / denom).clamp(min=0.0))
        neg = torch.where(flat, torch.full_like(r, -min(float(eps), 1.0)), (r - mean - eps) / denom)
    adv = torch.where(any_correct, pos, neg)
    adv = torch.where(torch.isnan(r), torch.zeros_like(adv), adv)     # a missing reward: advantage 0 (as TRL)
    return _restore(adv, kind, dtype, rewards)


def grpo_advantages(rewards: Any, scale: bool = True, ddof: int = 1) -> Any:
    """Standard GRPO group-relative advantage (the "w/o PM" ablation), as TRL computes it:
    ``A_i = (r_i − mean(r)) / (std(r) + 1e-4)``, or ``r_i − mean(r)`` with ``scale=False``
    (Dr. GRPO). A group without spread gets 0.

    >>> import numpy as np
    >>> np.round(grpo_advantages([2.3, 2.0, 1.0, 0.0]), 3).tolist()
    [0.934, 0.647, -0.311, -1.269]
    >>> grpo_advantages([1.0, 1.0, 1.0]).tolist(), np.round(grpo_advantages([1.0, 0.0], scale=False), 6).tolist()
    ([0.0, 0.0, 0.0], [0.5, -0.5])
    >>> np.round(grpo_advantages([2.3, float("nan"), 2.0, 1.0, 0.0]), 3).tolist()   # NaN: left out, 0
    [0.934, 0.0, 0.647, -0.311, -1.269]
    """
    r, kind, dtype = _as_tensor(rewards, "rewards")
    _check_shape(r, "grpo_advantages")
    mean, std = _group_stats(r, ddof)
    adv = r - mean
    if scale:
        adv = adv / (std + AUTHORS_STD_EPS)
    adv = torch.where((std < STD_ZERO_TOL) | torch.isnan(r), torch.zeros_like(adv), adv)
    return _restore(adv, kind, dtype, rewards)
