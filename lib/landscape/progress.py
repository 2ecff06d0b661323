"""One library-wide default for progress bars.

Every call that can take more than a few seconds (operator construction over many batches, Lanczos, trace,
density, sharpness, slices, barriers, sweeps) takes ``progress=None``, which means "the library default". The
default is on when standard error is a terminal and off otherwise, and off under pytest and papermill (their
output is a log, not a terminal) unless asked for: ``landscape.set_progress(True)`` or ``LANDSCAPE_PROGRESS=1``
turns bars on everywhere, ``set_progress(False)`` / ``LANDSCAPE_PROGRESS=0`` off, ``set_progress(None)`` returns
to the automatic rule. An explicit ``progress=True/False`` in a call always wins.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

__all__ = ["get_progress", "progress_bar", "resolve_progress", "set_progress"]

_default: bool | None = None  # None: the automatic rule


def set_progress(enabled: bool | None) -> None:
    """Set the library-wide default for ``progress=None`` (True, False, or None for the automatic rule)."""
    global _default
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"set_progress expects True, False or None, got {enabled!r}")
    _default = enabled


def get_progress() -> bool:
    """The current default: `set_progress`'s value, else ``$LANDSCAPE_PROGRESS``, else the automatic rule."""
    if _default is not None:
        return _default
    env = os.environ.get("LANDSCAPE_PROGRESS", "").strip().lower()
    if env in ("1", "true", "yes", "on"):
        return True
    if env in ("0", "false", "no", "off"):
        return False
    if env:
        raise ValueError(f"LANDSCAPE_PROGRESS={env!r}: expected 1/0, true/false, yes/no or on/off")
    if "PYTEST_CURRENT_TEST" in os.environ or "papermill" in sys.modules:
        return False
    stream = sys.stderr
    return bool(stream is not None and hasattr(stream, "isatty") and stream.isatty())


def resolve_progress(progress: bool | None) -> bool:
    """``progress`` itself when given, else the library default."""
    if progress is None:
        return get_progress()
    if not isinstance(progress, bool):
        raise TypeError(f"progress must be True, False or None (the library default), got {progress!r}")
    return progress


def progress_bar(progress: bool | None = None, **kwargs) -> tqdm:
    """A tqdm bar (``leave=False`` unless given) shown when `resolve_progress(progress)` is true."""
    kwargs.setdefault("leave", False)
    return tqdm(disable=not resolve_progress(progress), **kwargs)
