"""Reward explorer: how one group's rollouts turn into rewards (Eq. 1-5) and advantages (Eq. 6).

:func:`explore_group` is the pure function: rollouts' text, the MOS and the teacher-forced digit
probabilities in, one row per rollout out (``r_ans``, ``r_fmt``, ``r_think``, ``r_ref``, ``r_pd``,
``r_final``, ``correct``, the standard GRPO advantage and the paper's modified advantage).
:data:`PRESETS` hold illustrative groups (the digit probabilities are made up, chosen to show each
case); :func:`plot_advantages` draws GRPO vs modified advantages side by side; and
:func:`build_explorer` wraps it all in a live ipywidgets view (:class:`RewardExplorer`).
"""
from __future__ import annotations

import io
from typing import Any, Sequence

import ipywidgets as widgets
import numpy as np
import pandas as pd

from refine_iqa_lib.method.advantages import grpo_advantages, refine_advantages
from refine_iqa_lib.prompts import check_mode, check_variant
from refine_iqa_lib.method.rewards import answer_reward, final_reward, format_reward, mode_reward, parse_score, pd_reward

__all__ = ["COLUMNS", "explore_group", "plot_advantages", "PRESETS", "RewardExplorer", "build_explorer",
           "parse_probs"]

COLUMNS = ["rollout", "score", "r_ans", "r_fmt", "r_think", "r_ref", "r_pd", "r_final", "correct",
           "adv_grpo", "adv_refine"]


def explore_group(rollouts: Sequence[str], mos: float, think_digit_probs: Sequence[Sequence[float]],
                  no_think_digit_probs: Sequence[float], mode: str = "think", eps: float = 0.5,
                  lambdas: Sequence[float] = (1.0, 1.0, 1.0), adv_eps: float | None = None,
                  variant: str = "paper") -> pd.DataFrame:
    """Per-rollout rewards and advantages of one group.

    ``think_digit_probs[i]`` is ``z^think`` of rollout i (the teacher-forced probability of each
    ground-truth digit, Eq. 2), ``no_think_digit_probs`` is ``z^no-think`` (one per group). Then
    ``r_ans`` (Eq. 1), ``r_fmt``, ``r_think``/``r_ref`` (Eq. 2), ``r_pd`` (Eq. 4, before Eq. 5's
    gate), ``r_final`` (Eq. 5), ``correct`` (``r_ans = r_fmt = 1``), ``adv_grpo`` (TRL's GRPO) and
    ``adv_refine`` (Eq. 6; ``adv_eps=None`` uses the variant's offset).

    Worked example (MOS 3.4, ``r_ref`` = 0.6 + 0.1·0.4 = 0.64): a correct rollout with z = (0.9,
    0.5) has ``r_think`` = 0.95, ``r_pd`` = 0.31 and ``r_final`` = 2.31; a wrong one gets 1.

    >>> df = explore_group(["<think>sharp fur</think><answer>3.5</answer>",
    ...                     "<think>blurry</think><answer>1.0</answer>"],
    ...                    3.4, [[0.9, 0.5], [0.2, 0.1]], [0.6, 0.4])
    >>> df[["r_ans", "r_fmt", "r_pd", "r_final", "correct"]].round(3).values.tolist()
    [[1.0, 1.0, 0.31, 2.31, True], [0.0, 1.0, 0.0, 1.0, False]]
    >>> df["adv_refine"].round(3).tolist(), df["adv_grpo"].round(3).tolist()
    ([0.707, 0.0], [0.707, -0.707])
    """
    check_mode(mode)
    check_variant(variant)
    rollouts = [str(r) for r in rollouts]
    g = len(rollouts)
    if g == 0:
        raise ValueError("explore_group: expected at least one rollout")
    think = [np.asarray(p, dtype=float).reshape(-1) for p in think_digit_probs]
    ref = np.asarray(no_think_digit_probs, dtype=float).reshape(-1)
    if len(think) != g:
        raise ValueError(f"explore_group: {len(think)} rows of think digit probabilities for {g} rollouts")
    for i, z in enumerate(think):
        if z.shape != ref.shape:
            raise ValueError(f"explore_group: rollout {i} has {z.size} digit probabilities, the no-think "
                             f"reference {ref.size}; expected one per ground-truth digit")
    r_ref = mode_reward(ref, variant)
    rows = []
    for text, z in zip(rollouts, think):
        score = parse_score(text)
        r_ans = answer_reward(score, mos, eps, variant)
        r_fmt = format_reward(text, mode)
        r_think = mode_reward(z, variant)
        r_pd = pd_reward(r_think, r_ref)
        rows.append({
            "rollout": text, "score": np.nan if score is None else score, "r_ans": r_ans, "r_fmt": r_fmt,
            "r_think": r_think, "r_ref": r_ref, "r_pd": r_pd,
            "r_final": final_reward(r_ans, r_fmt, r_pd, lambdas), "correct": bool(r_ans == 1 and r_fmt == 1),
        })
    df = pd.DataFrame(rows, columns=COLUMNS[:-2])
    rewards = df["r_final"].to_numpy(dtype=float)
    df["adv_grpo"] = grpo_advantages(rewards)
    df["adv_refine"] = refine_advantages(rewards, df["correct"].to_numpy(), eps=adv_eps, variant=variant)
    return df


def plot_advantages(df: pd.DataFrame, ax: Any = None, title: str | None = None):
    """Grouped bar chart of GRPO vs modified (Eq. 6) advantages per rollout; returns the figure.

    Without ``ax`` a standalone ``matplotlib.figure.Figure`` is made (no pyplot state).
    """
    if ax is None:
        from matplotlib.figure import Figure

        fig = Figure(figsize=(6.4, 3.2), dpi=100)
        ax = fig.add_subplot(1, 1, 1)
    else:
        fig = ax.figure
    x = np.arange(len(df))
    w = 0.38
    ax.bar(x - w / 2, df["adv_grpo"], w, label="GRPO", color="#9e9e9e")
    ax.bar(x + w / 2, df["adv_refine"], w, label="modified (Eq. 6)", color="#1f77b4")
    ax.axhline(0.0, color="black", linewidth=0.8)
    if np.allclose(df["adv_grpo"], 0) and np.allclose(df["adv_refine"], 0):
        ax.text(0.5, 0.6, "every advantage is 0:\nno learning signal", transform=ax.transAxes,
                ha="center", va="center", fontsize=9, color="#555555")
    labels = [f"{i}{' ✓' if c else ''}" for i, c in zip(range(len(df)), df["correct"])]
    ax.set_xticks(x, labels)
    ax.set_xlabel("rollout (✓ = correct: r_ans = r_fmt = 1)")
    ax.set_ylabel("advantage")
    ax.set_title(title or "Advantages of one group")
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


_GT = "3.4"
PRESETS: dict[str, dict] = {
    "mixed group": {
        "description": "MOS 3.4. Rollout 0 is correct and its think raises the ground truth's probability "
                       "(r_pd > 0); rollout 1 is correct with a stub think (r_pd = 0); rollout 2 is well "
                       "formatted but wrong; rollout 3 breaks the format. GRPO pushes 2 and 3 down; Eq. 6 "
                       "leaves them at 0 and ranks the correct ones by their PD.",
        "mos": 3.4,
        "rollouts": [
            "<think>Fine fur detail is sharp, slight noise in the dark background, exposure is good."
            "</think><answer>3.5</answer>",
            "<think>Okay.</think><answer>3.2</answer>",
            "<think>Looks excellent overall.</think><answer>4.6</answer>",
            "The picture is a bit noisy. Score 3.4",
        ],
        "think_digit_probs": [[0.85, 0.55], [0.55, 0.35], [0.30, 0.10], [0.50, 0.30]],
        "no_think_digit_probs": [0.55, 0.40],
    },
    "think collapse": {
        "description": "MOS 3.4. Every rollout is correct but its think is a stub that adds nothing: the "
                       "think-mode probability of the ground truth is no higher than without thinking, so "
                       "r_pd = 0 and all rewards tie. Neither GRPO nor Eq. 6 sees a difference: with the "
                       "answer reward alone nothing rewards a real think (the think collapse).",
        "mos": 3.4,
        "rollouts": [
            "<think>Fine.</think><answer>3.4</answer>",
            "<think>Ok.</think><answer>3.3</answer>",
            "<think>Good.</think><answer>3.6</answer>",
            "<think>Fine.</think><answer>3.1</answer>",
        ],
        "think_digit_probs": [[0.60, 0.40], [0.58, 0.41], [0.61, 0.35], [0.59, 0.40]],
        "no_think_digit_probs": [0.62, 0.42],
    },
    "no rollout correct": {
        "description": "MOS 1.2. No rollout is within 0.5 of the MOS, so Eq. 6 takes its second branch, "
                       "(r - mean - 0.02) / std: every advantage sits 0.02 / std below GRPO's, a push "
                       "towards other scores. Rollouts that kept the format still rank above those that "
                       "did not; had all rewards tied, every rollout would get -0.02.",
        "mos": 1.2,
        "rollouts": [
            "<think>Sharp and bright.</think><answer>3.0</answer>",
            "<think>Clean picture.</think><answer>2.9</answer>",
            "<think>Some noise</think><answer>",
            "<answer>4.1</answer>",
        ],
        "think_digit_probs": [[0.10, 0.20], [0.12, 0.25], [0.15, 0.20], [0.10, 0.10]],
        "no_think_digit_probs": [0.20, 0.20],
    },
    "informative thinks": {
        "description": "MOS 3.4. All rollouts are correct and differ only in how much their think raises "
                       "the ground truth's probability: the PD reward orders them, and Eq. 6 rewards the "
                       "above-average thinks without punishing the others.",
        "mos": 3.4,
        "rollouts": [
            "<think>Sharp subject, mild sensor noise in the shadows, natural colours.</think><answer>3.4</answer>",
            "<think>Good exposure and detail, slight softness at the edges.</think><answer>3.5</answer>",
            "<think>Decent.</think><answer>3.3</answer>",
            "<think>Noise is visible but detail is preserved.</think><answer>3.2</answer>",
        ],
        "think_digit_probs": [[0.90, 0.70], [0.80, 0.50], [0.50, 0.40], [0.70, 0.45]],
        "no_think_digit_probs": [0.55, 0.40],
    },
}


def parse_probs(text: str) -> list[float]:
    """Probabilities typed as ``"0.6, 0.4"`` (commas and/or spaces).

    >>> parse_probs("0.6, 0.4"), parse_probs(" 0.9 0.1 ")
    ([0.6, 0.4], [0.9, 0.1])
    """
    parts = [p for p in str(text).replace(",", " ").split() if p]
    if not parts:
        raise ValueError(f"expected probabilities like '0.6, 0.4', got {text!r}")
    try:
        return [float(p) for p in parts]
    except ValueError:
        raise ValueError(f"expected probabilities like '0.6, 0.4', got {text!r}") from None


def _fmt_probs(values: Sequence[float]) -> str:
    return ", ".join(f"{v:g}" for v in values)


def _figure_png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", metadata={"Software": None})
    return buf.getvalue()


def _table_view(df: pd.DataFrame) -> pd.DataFrame:
    view = df.copy()
    view["rollout"] = [t if len(t) <= 32 else t[:29] + "..." for t in view["rollout"]]
    return view.round(3)


class RewardExplorer(widgets.VBox):
    """Live view of :func:`explore_group` (a ``VBox``): a preset dropdown with a reset button, the
    MOS, one labelled textarea and one digit-probability field per rollout ("rollout 1",
    "z think 1", ...), the no-think probabilities, and an output with the table and the
    GRPO-vs-Eq. 6 bar chart.

    One apply rule for every field: a value applies on Enter or when the field loses focus
    (``continuous_update=False``), never per keystroke, so half-typed input ("0.9,") never shows
    an error. Assigning ``widget.value`` from code applies at once (that is how tests drive it).
    **reset** restores the selected preset (re-selecting the same preset in the dropdown sends no
    event). The rows wrap (flex layout) and the table is compact, so the view fits a 1024 px
    window with JupyterLab's file browser open.

    Attributes for code: ``preset``, ``reset``, ``mos``, ``rollouts`` (Textareas), ``think_probs``
    (Texts), ``no_think_probs``, ``output``; ``table`` (last DataFrame), ``figure_png`` (last
    chart), ``error`` (last input error or ``None``), ``n_updates``.
    """

    def __init__(self, preset: str = "mixed group", eps: float = 0.5,
                 lambdas: Sequence[float] = (1.0, 1.0, 1.0), adv_eps: float | None = None,
                 variant: str = "paper", mode: str = "think"):
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; valid presets: {sorted(PRESETS)}")
        self.params = {"eps": eps, "lambdas": tuple(lambdas), "adv_eps": adv_eps,
                       "variant": check_variant(variant), "mode": check_mode(mode)}
        g = len(PRESETS[preset]["rollouts"])
        label = {"description_width": "initial"}
        self.preset = widgets.Dropdown(options=list(PRESETS), value=preset, description="preset")
        self.reset = widgets.Button(description="reset to preset", tooltip="restore every field of the preset",
                                    layout=widgets.Layout(width="auto"))
        self.note = widgets.HTML(layout=widgets.Layout(max_width="100%"))
        self.mos = widgets.FloatText(value=0.0, description="MOS", step=0.1, continuous_update=False,
                                     layout=widgets.Layout(width="10em"))
        self.rollouts = [widgets.Textarea(description=f"rollout {i + 1}", continuous_update=False, style=label,
                                          layout=widgets.Layout(flex="3 1 20em", min_width="16em", height="4em"))
                         for i in range(g)]
        self.think_probs = [widgets.Text(description=f"z think {i + 1}", continuous_update=False, style=label,
                                         placeholder="0.9, 0.5",
                                         layout=widgets.Layout(flex="1 1 11em", min_width="11em"))
                            for i in range(g)]
        self.no_think_probs = widgets.Text(description="z no-think", continuous_update=False, style=label,
                                           placeholder="0.6, 0.4", layout=widgets.Layout(width="16em"))
        self.output = widgets.Output(layout=widgets.Layout(max_width="100%", overflow="auto"))
        self.table: pd.DataFrame | None = None
        self.figure_png: bytes | None = None
        self.error: str | None = None
        self.n_updates = 0
        self._loading = False
        wrap = widgets.Layout(flex_flow="row wrap", align_items="flex-start", width="100%")
        rows = [widgets.HBox([ta, tp], layout=wrap) for ta, tp in zip(self.rollouts, self.think_probs)]
        super().__init__([widgets.HBox([self.preset, self.reset], layout=wrap), self.note,
                          widgets.HBox([self.mos, self.no_think_probs], layout=wrap), *rows, self.output],
                         layout=widgets.Layout(max_width="100%"))
        self.preset.observe(self._on_preset, names="value")
        self.reset.on_click(lambda _: self.load_preset(self.preset.value))
        for w in [self.mos, self.no_think_probs, *self.rollouts, *self.think_probs]:
            w.observe(self._on_change, names="value")
        self.load_preset(preset)

    def load_preset(self, name: str) -> None:
        """Fill every input from ``PRESETS[name]`` (and its description) and re-compute once."""
        p = PRESETS[name]
        self._loading = True
        try:
            self.note.value = f"<i>{p['description']}</i>"
            self.mos.value = float(p["mos"])
            for ta, tp, text, z in zip(self.rollouts, self.think_probs, p["rollouts"], p["think_digit_probs"]):
                ta.value, tp.value = text, _fmt_probs(z)
            self.no_think_probs.value = _fmt_probs(p["no_think_digit_probs"])
        finally:
            self._loading = False
        self.update()

    def _on_preset(self, change) -> None:
        self.load_preset(change["new"])

    def _on_change(self, change) -> None:
        if not self._loading:
            self.update()

    def update(self) -> None:
        """Re-compute the table and chart from the current inputs."""
        from IPython.display import HTML, Image

        self.n_updates += 1
        try:
            df = explore_group([ta.value for ta in self.rollouts], float(self.mos.value),
                               [parse_probs(tp.value) for tp in self.think_probs],
                               parse_probs(self.no_think_probs.value), **self.params)
        except ValueError as e:
            self.error = str(e)
            self.output.outputs = ()
            self.output.append_display_data(HTML(f"<b>input error:</b> {e}"))
            return
        self.error = None
        self.table = df
        self.figure_png = _figure_png(plot_advantages(df, title=f"MOS {self.mos.value:g}"))
        self.output.outputs = ()
        table = _table_view(df).to_html(index=True)
        self.output.append_display_data(HTML(f'<div style="font-size:85%;overflow-x:auto">{table}</div>'))
        self.output.append_display_data(Image(data=self.figure_png, format="png", width=520))


def build_explorer(preset: str = "mixed group", **params) -> Any:
    """The live reward explorer (an ipywidgets ``VBox``; see :class:`RewardExplorer`).

    ``params``: ``eps``, ``lambdas``, ``adv_eps``, ``variant``, ``mode`` as in :func:`explore_group`.
    Changing any input (from the UI, or by assigning ``widget.value`` in code) re-computes.
    """
    return RewardExplorer(preset=preset, **params)
