"""Verdict vocabulary and the rule every chapter's claims share: a claim about a direction is decided by a
confidence interval, never by a point estimate.

Outcomes:

- ``SUPPORTED``: the interval lies entirely on the claimed side of the null value.
- ``REFUTED``: the interval lies entirely on the opposite side (the data show the reverse effect).
- ``NOT_SUPPORTED``: the interval contains the null value (no effect of either sign shown with this many
  seeds); the chapter reports the interval so a reader sees how large an effect is still possible.
- ``NOT_TESTABLE``: a confound remains that the experiment cannot remove (e.g. the compared networks did not
  reach the same training loss, or too few runs are left); the reason is part of the verdict.

Chapters may combine these for a claim with several parts (e.g. "supported for the squared loss, not supported
for cross-entropy"), but each part comes from `verdict_from_interval` or `not_testable`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = [
    "NOT_SUPPORTED",
    "NOT_TESTABLE",
    "OUTCOMES",
    "REFUTED",
    "SUPPORTED",
    "Verdict",
    "not_testable",
    "verdict_from_interval",
]

SUPPORTED = "supported"
REFUTED = "refuted"
NOT_SUPPORTED = "not supported"
NOT_TESTABLE = "not testable here"
OUTCOMES = (SUPPORTED, REFUTED, NOT_SUPPORTED, NOT_TESTABLE)


@dataclass(frozen=True)
class Verdict:
    """The outcome of a claim and the reason, in words a reader can check against the evidence.

    Attributes:
        outcome: one of `OUTCOMES`.
        reason: why (which interval, against which null value, or which confound).
    """

    outcome: str
    reason: str

    def __post_init__(self) -> None:
        if self.outcome not in OUTCOMES:
            raise ValueError(f"outcome must be one of {OUTCOMES}, got {self.outcome!r}")

    def __str__(self) -> str:
        return self.outcome


def not_testable(reason: str) -> Verdict:
    """A claim that this experiment cannot decide, with the confound that remains."""
    if not reason:
        raise ValueError("say why the claim is not testable here")
    return Verdict(NOT_TESTABLE, reason)


def verdict_from_interval(low: float, high: float, expected_sign: int, *, null: float = 0.0) -> Verdict:
    """Decide a directional claim from a confidence interval [low, high] of an effect.

    Args:
        low, high: the interval's bounds (low ≤ high); NaN bounds (e.g. too few runs) give NOT_TESTABLE.
        expected_sign: +1 if the claim says the effect is above `null`, −1 if below.
        null: the value of "no effect" (0 for a difference or a correlation, 1 for a ratio).

    >>> verdict_from_interval(0.2, 0.6, +1).outcome
    'supported'
    >>> verdict_from_interval(-0.6, -0.2, +1).outcome
    'refuted'
    >>> verdict_from_interval(-0.1, 0.4, +1).outcome
    'not supported'
    """
    if expected_sign not in (1, -1):
        raise ValueError(f"expected_sign must be +1 or -1, got {expected_sign!r}")
    if math.isnan(low) or math.isnan(high):
        return not_testable("the interval is undefined (too few runs)")
    if low > high:
        raise ValueError(f"the interval must have low <= high, got [{low}, {high}]")
    side = "above" if expected_sign > 0 else "below"
    interval = f"[{low:.3g}, {high:.3g}]"
    if (expected_sign > 0 and low > null) or (expected_sign < 0 and high < null):
        return Verdict(SUPPORTED, f"the interval {interval} lies {side} {null:g}, as claimed")
    if (expected_sign > 0 and high < null) or (expected_sign < 0 and low > null):
        return Verdict(REFUTED, f"the interval {interval} lies on the other side of {null:g}")
    return Verdict(NOT_SUPPORTED, f"the interval {interval} contains {null:g}")
