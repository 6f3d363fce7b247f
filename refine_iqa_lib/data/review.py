"""Human review of the built marked images (the paper's subjective scrutiny), in Jupyter.

:class:`ReviewPanel` shows one marked image at a time - the reference and the distorted image
side by side, the distorted box outlined, with its object, distortion, severity and strength -
and Accept / Reject / Previous / Next buttons. Every decision is saved at once, atomically, to the
review file (``perception.review_file``; when empty, ``<work_dir>/perception/review.json``)::

    {"decisions": {"s000012_o1": "reject", "s000013_o0": "accept", ...}}

The next build honours it: rejected ids are excluded before the split and counted in the skip
report as "rejected by reviewer" (ids without a decision are kept). Reviewing happens between two
builds: build, review, build again (the second build reuses every image and only redoes the split
and the samples).

Headless (papermill) the panel simply renders; clicking can be simulated with
``panel.accept_button.click()``.
"""
from __future__ import annotations

import html
import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from refine_iqa_lib.data.build import load_review_decisions, review_path
from refine_iqa_lib.data.stage1 import load_perception_images
from refine_iqa_lib.io import open_image, write_json

#: Displayed width of each of the two images (px); small stored images are enlarged (nearest).
DISPLAY_WIDTH = 336


def save_decisions(path: str | Path, decisions: dict[str, str]) -> Path:
    """Atomically write ``{"decisions": {id: "accept" | "reject"}}`` (sorted ids)."""
    bad = {k: v for k, v in decisions.items() if v not in ("accept", "reject")}
    if bad:
        raise ValueError(f"{path}: decisions must be 'accept' or 'reject', got {bad}")
    return write_json(path, {"decisions": dict(sorted(decisions.items()))})


def review_image(reference: str | Path, distorted: str | Path, bbox, width: int = DISPLAY_WIDTH) -> bytes:
    """PNG bytes: reference | distorted (box outlined in red, outside the box), enlarged."""
    ref, dis = open_image(reference), open_image(distorted)
    f = max(1, width // ref.width)
    ref, dis = (im.resize((im.width * f, im.height * f), Image.NEAREST) for im in (ref, dis))
    x1, y1, x2, y2 = (int(v) * f for v in bbox)
    draw = ImageDraw.Draw(dis)
    draw.rectangle([x1 - 2, y1 - 2, x2 + 1, y2 + 1], outline=(255, 0, 0), width=2)
    gap = 8
    canvas = Image.new("RGB", (ref.width * 2 + gap, ref.height), (255, 255, 255))
    canvas.paste(ref, (0, 0))
    canvas.paste(dis, (ref.width + gap, 0))
    buf = io.BytesIO()
    canvas.save(buf, format="PNG")
    return buf.getvalue()


class ReviewPanel:
    """Accept / reject the marked images of a built dataset (``dataset_dir``: the perception folder)."""

    def __init__(self, dataset_dir: str | Path, review_file: str | Path, start: int = 0):
        import ipywidgets as w

        self.dataset_dir = Path(dataset_dir)
        self.review_file = Path(review_file)
        self.rows = load_perception_images(self.dataset_dir, "built").to_dict("records")
        if not self.rows:
            raise ValueError(f"{self.dataset_dir}: no built marked images to review")
        self.decisions = load_review_decisions(self.review_file)
        self.index = int(np.clip(start, 0, len(self.rows) - 1))
        self.image = w.Image(format="png")
        self.meta = w.HTML()
        self.status = w.HTML()
        self.prev_button = w.Button(description="< Previous")
        self.next_button = w.Button(description="Next >")
        self.accept_button = w.Button(description="Accept", button_style="success")
        self.reject_button = w.Button(description="Reject", button_style="danger")
        self.prev_button.on_click(lambda _: self.go(self.index - 1))
        self.next_button.on_click(lambda _: self.go(self.index + 1))
        self.accept_button.on_click(lambda _: self.decide("accept"))
        self.reject_button.on_click(lambda _: self.decide("reject"))
        buttons = w.HBox([self.prev_button, self.accept_button, self.reject_button, self.next_button])
        self.widget = w.VBox([self.image, self.meta, buttons, self.status])
        self._show()

    @property
    def current(self) -> dict:
        return self.rows[self.index]

    def go(self, index: int) -> None:
        self.index = int(np.clip(index, 0, len(self.rows) - 1))
        self._show()

    def decide(self, decision: str) -> None:
        """Record ``decision`` for the current image, save the file atomically, move on."""
        self.decisions[self.current["id"]] = decision
        save_decisions(self.review_file, self.decisions)
        if self.index < len(self.rows) - 1:
            self.go(self.index + 1)
        else:
            self._show()

    def _show(self) -> None:
        r = self.current
        self.image.value = review_image(r["reference"], r["image"], r["bbox"])
        steps = " + ".join(f"{c} ({s}/5, {v})" for c, s, v in zip(r["categories"], r["severities"], r["variants"]))
        self.meta.value = (
            f"<b>{html.escape(r['id'])}</b> &nbsp; object: <b>{html.escape(r['object'])}</b> "
            f"box {r['bbox']} in {r['width']}x{r['height']}<br>distortion: {html.escape(steps)} "
            f"({html.escape(r['severity_name'])}), strength {r['strength']:.3f}<br>"
            f"other objects: {html.escape(', '.join(o['name'] for o in r['objects'] if o['name'] != r['object']))}")
        done = len([k for k in self.decisions if any(k == x["id"] for x in self.rows)])
        rejected = sum(v == "reject" for v in self.decisions.values())
        this = self.decisions.get(r["id"], "undecided")
        self.status.value = (f"{self.index + 1} / {len(self.rows)} &nbsp; this image: <b>{this}</b> &nbsp; "
                             f"decided {done}, rejected {rejected} &nbsp; saved to {html.escape(str(self.review_file))}")

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)


def review_panel(cfg, review_file: str | Path | None = None) -> ReviewPanel:
    """The panel for ``cfg``'s built dataset; decisions go to ``perception.review_file`` (or
    ``<work_dir>/perception/review.json`` when that is empty)."""
    return ReviewPanel(cfg.work_dir / "perception", review_file or review_path(cfg))
