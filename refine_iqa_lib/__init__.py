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
set-up; :func:`set_verbosity` changes the level (``logging.WARNING`` silences progress). Every
command line (``python -m refine_iqa_lib...``, ``refine-iqa ...``) calls
:func:`configure_command_logging` first.
"""
from __future__ import annotations

import logging
import os
import sys

__all__ = ["set_verbosity", "configure_command_logging"]


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


def configure_command_logging() -> logging.Logger:
    """Logging for a command line of the library; the ``main`` of every entry point calls it first.

    * A module run with ``python -m refine_iqa_lib.x`` is named ``__main__``, so the logger its
      ``logging.getLogger(__name__)`` returns is not under the library's logger: without a handler
      and at Python's default level (WARNING) its own INFO lines - the launcher's command, the
      child's streamed output, a dry run's summary - would go nowhere. Here the ``__main__``
      logger of a library module gets the library's handler and level.
    * In a distributed launch (``RANK`` / ``LOCAL_RANK`` set by torchrun or accelerate) processes
      other than the main one log warnings and errors only (each line would otherwise appear once
      per process).

    Idempotent; returns the library's logger.
    """
    lib = logging.getLogger(__name__)
    _configure_library_logger()
    if int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")) or 0) != 0:
        lib.setLevel(logging.WARNING)
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    if spec is not None and str(spec.name).startswith(f"{__name__}."):
        main = logging.getLogger("__main__")
        if not any(isinstance(h, _StdoutHandler) for h in main.handlers):
            main.handlers.extend(h for h in lib.handlers if isinstance(h, _StdoutHandler))
        main.setLevel(lib.level)
    return lib


_configure_library_logger()
