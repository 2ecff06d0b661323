"""Numbers into the paper: one glue helper and one formatter for "estimate [CI]" used by every chapter.

Every number the text shows is glued (``paste(key, value)`` in the notebook, ``{glue:text}`key``` in the
text), never typed. The pipeline reads the glued values back from the executed notebooks into the build's
manifest, so two builds can be compared value by value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = ["format_estimate", "format_interval", "paste", "paste_all", "plain"]


def plain(value):
    """A plain Python value: NumPy and torch scalars become float/int/bool; strings and others stay as they are."""
    if hasattr(value, "item") and getattr(value, "ndim", 0) == 0:
        return value.item()
    return value


def paste(key: str, value) -> None:
    """`myst_nb.glue` a plain value (see `plain`) for the text, without displaying it in the notebook."""
    from myst_nb import glue

    if not isinstance(key, str) or not key:
        raise ValueError(f"glue key must be a non-empty string, got {key!r}")
    glue(key, plain(value), display=False)


def paste_all(values: Mapping[str, object], prefix: str = "") -> None:
    """`paste` every item of a mapping, keys prefixed with `prefix`."""
    for key, value in values.items():
        paste(f"{prefix}{key}", value)


def _significant(value: float, digits: int) -> str:
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else ("∞" if value > 0 else "−∞")
    return f"{value:.{digits}g}"


def format_estimate(estimate, low: float | None = None, high: float | None = None, *, digits: int = 3) -> str:
    """An estimate with its confidence interval as text: ``"0.512 [0.43, 0.6]"``.

    Args:
        estimate: a number, or an object with ``estimate``, ``low`` and ``high`` attributes (e.g.
            `landscape.paper.stats.Interval`), whose bounds are then used.
        low, high: the interval's bounds (omitted: the estimate alone).
        digits: significant digits of the estimate; the bounds get one fewer (at least 2).

    >>> format_estimate(0.51234, 0.4321, 0.6012)
    '0.512 [0.43, 0.6]'
    >>> format_estimate(float("nan"))
    'n/a'
    """
    if hasattr(estimate, "estimate") and low is None and high is None:
        estimate, low, high = estimate.estimate, estimate.low, estimate.high
    if (low is None) != (high is None):
        raise ValueError("give both bounds of the interval or neither")
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    text = _significant(float(estimate), digits)
    if low is None or not math.isfinite(float(estimate)):
        return text
    bound_digits = max(2, digits - 1)
    return f"{text} [{_significant(float(low), bound_digits)}, {_significant(float(high), bound_digits)}]"


def format_interval(low: float, high: float, digits: int = 2) -> str:
    """An interval alone as text: ``"[low, high]"``, each bound to `digits` decimals ("n/a" for a NaN bound),
    e.g. for a correlation whose estimate is shown separately.

    >>> format_interval(-0.8123, -0.2)
    '[-0.81, -0.20]'
    >>> format_interval(float("nan"), 0.5)
    '[n/a, 0.50]'
    """
    if not isinstance(digits, int) or isinstance(digits, bool) or digits < 0:
        raise ValueError(f"digits must be a non-negative integer, got {digits!r}")
    low, high = float(low), float(high)
    if low > high:
        raise ValueError(f"the interval must have low <= high, got [{low}, {high}]")
    return "[" + ", ".join("n/a" if math.isnan(v) else f"{v:.{digits}f}" for v in (low, high)) + "]"
