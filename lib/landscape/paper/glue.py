"""Numbers into the paper: one glue helper and one formatter for "estimate [CI]" used by every chapter.

Every number the text shows is glued (``paste(key, value)`` in the notebook, ``{glue:text}`key``` in the
text), never typed. The pipeline reads the glued values back from the executed notebooks into the build's
manifest, so two builds can be compared value by value.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

__all__ = [
    "MISSING",
    "format_decimals",
    "format_estimate",
    "format_interval",
    "format_number",
    "format_range",
    "paste",
    "paste_all",
    "plain",
    "plural",
    "times_ten",
]

MISSING = "n/a"  # a value that could not be estimated, written the same way in the text and in every table
_SUPERSCRIPT = str.maketrans("0123456789-", "⁰¹²³⁴⁵⁶⁷⁸⁹⁻")


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


def format_number(value, digits: int = 3) -> str:
    """A number for reading, to `digits` significant figures: positional notation from 0.001 to 100,000 (whole
    numbers of more than `digits` digits keep them all), ``m×10ⁿ`` outside that range, `MISSING` for NaN or None.

    >>> [format_number(v) for v in (0.051234, 690.4, 42038.9, 3.7e5, -5.0e-5, 0.0, float("nan"))]
    ['0.0512', '690', '42039', '3.7×10⁵', '-5×10⁻⁵', '0', 'n/a']
    >>> format_number(1.0), format_number(0.25, 1), format_number(float("inf"))
    ('1', '0.2', '∞')
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    if value is None:
        return MISSING
    value = float(plain(value))
    if math.isnan(value):
        return MISSING
    if math.isinf(value):
        return "∞" if value > 0 else "−∞"
    if value == 0:
        return "0"
    rounded = f"{value:.{digits - 1}e}"
    mantissa, exponent = rounded.split("e")
    exponent = int(exponent)
    if -3 <= exponent < 5:
        if exponent >= digits - 1:
            return f"{value:.0f}"
        text = f"{float(rounded):.{digits - 1 - exponent}f}"
        return text.rstrip("0").rstrip(".") if "." in text else text
    return times_ten(mantissa.rstrip("0").rstrip(".") if "." in mantissa else mantissa, exponent)


def times_ten(mantissa: str, exponent: int) -> str:
    """``mantissa×10ⁿ`` with the exponent in superscript digits (the mantissa alone for n = 0).

    >>> times_ten("3.7", 5), times_ten("-5", -5), times_ten("2", 0)
    ('3.7×10⁵', '-5×10⁻⁵', '2')
    """
    return mantissa if exponent == 0 else f"{mantissa}×10{str(exponent).translate(_SUPERSCRIPT)}"


def format_decimals(value, decimals: int = 2) -> str:
    """`value` with a fixed number of decimals (for quantities on a fixed scale: correlations, AUCs, rates),
    `MISSING` for NaN or None.

    >>> format_decimals(0.8567), format_decimals(float("nan")), format_decimals(-0.05, 1)
    ('0.86', 'n/a', '-0.1')
    """
    if isinstance(decimals, bool) or not isinstance(decimals, int) or decimals < 0:
        raise ValueError(f"decimals must be a non-negative integer, got {decimals!r}")
    if value is None or math.isnan(float(plain(value))):
        return MISSING
    return f"{float(plain(value)):.{decimals}f}"


def format_range(low, high, digits: int = 2, separator: str = " to ") -> str:
    """A range of values as text, ``"0.055 to 0.1"``; one value when both ends read the same.

    >>> format_range(4.9e-5, 0.0127), format_range(1.0, 1.0)
    ('4.9×10⁻⁵ to 0.013', '1')
    """
    low_text, high_text = format_number(low, digits), format_number(high, digits)
    return low_text if low_text == high_text else f"{low_text}{separator}{high_text}"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``"1 probe"``, ``"2 probes"``: a count with its noun in the right number.

    >>> plural(1, "part"), plural(3, "part"), plural(2, "entry", "entries")
    ('1 part', '3 parts', '2 entries')
    """
    word = noun if count == 1 else (plural_form or f"{noun}s")
    return f"{count} {word}"


def format_estimate(estimate, low: float | None = None, high: float | None = None, *, digits: int = 3) -> str:
    """An estimate with its confidence interval as text: ``"0.512 [0.43, 0.6]"``.

    Args:
        estimate: a number, or an object with ``estimate``, ``low`` and ``high`` attributes (e.g.
            `landscape.paper.stats.Interval`), whose bounds are then used.
        low, high: the interval's bounds (omitted: the estimate alone).
        digits: significant digits of the estimate; the bounds get one fewer (at least 2), or more where that
            rounding would put a bound on the wrong side of the estimate.

    >>> format_estimate(0.51234, 0.4321, 0.6012)
    '0.512 [0.43, 0.6]'
    >>> format_estimate(1.07, 1.052, 1.098)  # not "1.07 [1.1, 1.1]"
    '1.07 [1.05, 1.1]'
    >>> format_estimate(float("nan"))
    'n/a'
    """
    if hasattr(estimate, "estimate") and low is None and high is None:
        estimate, low, high = estimate.estimate, estimate.low, estimate.high
    if (low is None) != (high is None):
        raise ValueError("give both bounds of the interval or neither")
    if not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    text = format_number(estimate, digits)
    if low is None or not math.isfinite(float(estimate)):
        return text
    if math.isnan(float(low)) and math.isnan(float(high)):
        return f"{text} (interval {MISSING})"
    bound_digits = max(2, digits - 1)
    value = float(estimate)
    while bound_digits < digits + 2 and (  # a rounded bound must not cross the estimate it brackets
        (float(low) <= value < float(f"{float(low):.{bound_digits}g}"))
        or (float(f"{float(high):.{bound_digits}g}") < value <= float(high))
    ):
        bound_digits += 1
    return f"{text} [{format_number(low, bound_digits)}, {format_number(high, bound_digits)}]"


def format_interval(low: float, high: float, digits: int = 2) -> str:
    """An interval alone as text, ``"[low, high]"``, each bound to `digits` decimals, e.g. for a correlation whose
    estimate is shown separately; `MISSING` stands for a NaN bound, or for the whole interval when both are NaN.

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
    if math.isnan(low) and math.isnan(high):
        return MISSING
    return "[" + ", ".join(MISSING if math.isnan(v) else f"{v:.{digits}f}" for v in (low, high)) + "]"
