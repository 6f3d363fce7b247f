"""refine_iqa_lib: a reproducible companion to Refine-IQA (multi-stage RFT for perceptual IQA).

The folders follow the pipeline: :mod:`.data` (distortions, Refine-Perception, IQA datasets) ->
:mod:`.method` (Eq. 1-8: rewards, advantages, teacher forcing, scoring) -> :mod:`.training`
(TRL trainers, the training CLI and the launcher) -> :mod:`.evaluation` (evaluators, tables,
figures). The small shared base: :mod:`.config`, :mod:`.models`, :mod:`.prompts`,
:mod:`.generation`, :mod:`.runs`, :mod:`.io`, :mod:`.artifacts`. Around the notebooks:
:mod:`.reproduce` (runs them headless), :mod:`.executed` (their executed copies as committed) and
:mod:`.notebook` (the evaluation notebooks' first cells).

The library logs through :mod:`logging` (``logging.getLogger(__name__)``). Like transformers, it
gives its root logger ``refine_iqa_lib`` one handler of its own, writing plain messages at INFO to
the current ``sys.stdout``, so that notebooks and command lines show progress lines without any
set-up; :func:`set_verbosity` changes the level (``logging.WARNING`` silences progress).
"""
from __future__ import annotations

import logging
import sys

__all__ = ["set_verbosity"]


class _StdoutHandler(logging.StreamHandler):
    """A stream handler that always writes to the *current* ``sys.stdout`` (pytest, papermill and
    notebooks replace it after import)."""

    def __init__(self):
        super().__init__(sys.stdout)

    @property
    def stream(self):
        return sys.stdout

    @stream.setter
    def stream(self, value):  # the base class assigns it; the current sys.stdout is always used
        pass


def _configure_library_logger() -> None:
    logger = logging.getLogger(__name__)
    if not any(isinstance(h, _StdoutHandler) for h in logger.handlers):
        handler = _StdoutHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger.addHandler(handler)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.INFO)


def set_verbosity(level: int) -> None:
    """Set the level of the library's logger (e.g. ``logging.WARNING`` to silence progress lines)."""
    logging.getLogger(__name__).setLevel(level)


_configure_library_logger()
