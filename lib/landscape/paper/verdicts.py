"""Verdict vocabulary and the rule every chapter's claims share: a claim about a direction is decided by a
confidence interval, never by a point estimate.

Outcomes:

- ``SUPPORTED``: the interval lies entirely on the claimed side of the null value.
- ``REFUTED``: the interval lies entirely on the opposite side (the data show the reverse effect).
- ``NOT_SUPPORTED``: the interval contains the null value (no effect of either sign shown with this many
  seeds); the chapter reports the interval so a reader sees how large an effect is still possible.
- ``NOT_TESTABLE``: a confound remains that the experiment cannot remove (e.g. the compared networks did not
  reach the same training loss, or too few runs are left); the reason is part of the verdict.

Rules here: `verdict_from_interval` (a direction against a null value), `verdict_from_correlation` (the same
against 0 for a correlation), `verdict_in_band` ("the value is ≈ c": an interval against a tolerance band),
`not_testable` (a confound remains).

A claim with several parts (e.g. "flatter by λmax and by normalised sharpness", or "for the squared loss and for
cross-entropy") gets one verdict per part and one overall verdict from `combine`, whose rule is written out as a
truth table there; with k parts each part's interval should be a simultaneous one, at `family_level`.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from landscape.paper.glue import format_number, plural

__all__ = [
    "COMBINE_RULES",
    "FAMILY_METHODS",
    "NOT_SUPPORTED",
    "NOT_TESTABLE",
    "OUTCOMES",
    "REFUTED",
    "SUPPORTED",
    "Verdict",
    "combine",
    "family_level",
    "not_testable",
    "verdict_from_correlation",
    "verdict_from_interval",
    "verdict_in_band",
]

SUPPORTED = "supported"
REFUTED = "refuted"
NOT_SUPPORTED = "not supported"
NOT_TESTABLE = "not testable here"
OUTCOMES = (SUPPORTED, REFUTED, NOT_SUPPORTED, NOT_TESTABLE)
COMBINE_RULES = ("all", "conjunction")
FAMILY_METHODS = ("bonferroni", "sidak")


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
    interval = f"[{format_number(low, 3)}, {format_number(high, 3)}]"
    if (expected_sign > 0 and low > null) or (expected_sign < 0 and high < null):
        return Verdict(SUPPORTED, f"the interval {interval} lies {side} {null:g}, as claimed")
    if (expected_sign > 0 and high < null) or (expected_sign < 0 and low > null):
        return Verdict(REFUTED, f"the interval {interval} lies on the other side of {null:g}")
    return Verdict(NOT_SUPPORTED, f"the interval {interval} contains {null:g}")


def _bounds(low, high) -> tuple[float, float] | None:
    """(low, high) as floats, None when a bound is NaN; raises when low > high."""
    low, high = float(low), float(high)
    if math.isnan(low) or math.isnan(high):
        return None
    if low > high:
        raise ValueError(f"the interval must have low <= high, got [{low}, {high}]")
    return low, high


def verdict_in_band(low: float, high: float, band_low: float, band_high: float) -> Verdict:
    """Decide a claim "the value is about c" from its interval [low, high] and a tolerance band
    [band_low, band_high] around c (e.g. [0.85, 1.15] for "the ratio is ≈ 1"):

    - SUPPORTED when the interval lies inside the band: band_low ≤ low and high ≤ band_high (touching an edge
      from inside counts as inside);
    - REFUTED when it lies entirely outside: high < band_low or low > band_high;
    - NOT_SUPPORTED otherwise: it straddles an edge (contains band_low or band_high), too wide to tell;
    - NOT_TESTABLE when a bound is NaN (too few runs).

    >>> [verdict_in_band(*ci, 0.85, 1.15).outcome for ci in ((0.95, 1.05), (1.3, 1.6), (0.9, 1.3))]
    ['supported', 'refuted', 'not supported']
    """
    band_low, band_high = float(band_low), float(band_high)
    if not band_low < band_high:  # also False for a NaN edge
        raise ValueError(f"the band must have band_low < band_high, got [{band_low}, {band_high}]")
    bounds = _bounds(low, high)
    if bounds is None:
        return not_testable("the interval is undefined (too few runs)")
    low, high = bounds
    interval = f"[{format_number(low, 3)}, {format_number(high, 3)}]"
    band = f"[{format_number(band_low)}, {format_number(band_high)}]"
    if band_low <= low and high <= band_high:
        return Verdict(SUPPORTED, f"the interval {interval} lies inside the band {band}")
    if high < band_low or low > band_high:
        return Verdict(REFUTED, f"the interval {interval} lies outside the band {band}")
    return Verdict(NOT_SUPPORTED, f"the interval {interval} straddles an edge of the band {band}")


def verdict_from_correlation(interval, expected_sign: int) -> Verdict:
    """Decide "x and y are positively (+1) / negatively (−1) associated" from a correlation's interval:
    `verdict_from_interval` against the null value 0.

    Args:
        interval: an object with ``low`` and ``high`` (e.g. `landscape.paper.stats.Interval`, or the result of
            `landscape.paper.stats.rank_correlation_of_means`) or a pair (low, high); bounds in [−1, 1].
        expected_sign: +1 or −1, the claimed sign of the correlation.

    >>> verdict_from_correlation((-0.9, -0.3), -1).outcome
    'supported'
    """
    if hasattr(interval, "low") and hasattr(interval, "high"):
        low, high = interval.low, interval.high
    elif isinstance(interval, Sequence) and not isinstance(interval, str) and len(interval) == 2:
        low, high = interval
    else:
        raise TypeError(f"interval must have .low and .high or be a pair (low, high), got {interval!r}")
    low, high = float(low), float(high)
    for bound in (low, high):
        if not math.isnan(bound) and not -1 <= bound <= 1:
            raise ValueError(f"a correlation's interval lies in [-1, 1], got [{low}, {high}]")
    return verdict_from_interval(low, high, expected_sign, null=0.0)


def family_level(level: float, num_parts: int, method: str = "bonferroni") -> float:
    """The confidence level each of k intervals needs so that all k cover together with probability ≥ `level`.

    ``"bonferroni"``: 1 − (1 − level)/k, valid under any dependence between the parts (the union bound);
    ``"sidak"``: level^(1/k), exact for independent parts and slightly less wide. A claim with k parts that is
    supported only when every part is (`combine`) errs when any interval misses, so its parts' intervals
    should be made at this level for the claim's error rate to be 1 − level.

    >>> family_level(0.95, 2)
    0.975
    >>> round(family_level(0.95, 2, "sidak"), 6)
    0.974679
    """
    if isinstance(level, bool) or not isinstance(level, numbers.Real) or not 0 < level < 1:
        raise ValueError(f"level must be a number in (0, 1), e.g. 0.95, got {level!r}")
    if isinstance(num_parts, bool) or not isinstance(num_parts, numbers.Integral) or num_parts < 1:
        raise ValueError(
            f"num_parts must be a positive integer (the claim's number of intervals), got {num_parts!r}"
        )
    if method not in FAMILY_METHODS:
        raise ValueError(f"method must be one of {FAMILY_METHODS}, got {method!r}")
    if method == "bonferroni":
        return 1 - (1 - level) / num_parts
    return level ** (1 / num_parts)


def _combined_outcome(outcomes: set, rule: str) -> str:
    if rule == "conjunction":
        if REFUTED in outcomes:
            return REFUTED
        if outcomes == {SUPPORTED}:
            return SUPPORTED
        return NOT_TESTABLE if NOT_TESTABLE in outcomes else NOT_SUPPORTED
    if outcomes == {SUPPORTED}:
        return SUPPORTED
    if REFUTED in outcomes and not outcomes & {SUPPORTED, NOT_SUPPORTED}:
        return REFUTED
    if NOT_TESTABLE in outcomes and REFUTED not in outcomes:
        return NOT_TESTABLE
    return NOT_SUPPORTED


def combine(parts: Sequence[Verdict] | Mapping[str, Verdict], *, rule: str = "all") -> Verdict:
    """The verdict of a claim from the verdicts of its parts.

    ``rule="all"`` (the default): the parts are tests of one claim that must all come out — e.g. two measures
    of the same effect (λmax and normalised sharpness), or the settings the claim names. The claim is

    - SUPPORTED iff every part is supported;
    - REFUTED iff every part that could be tested is refuted and at least one could (refuted and not-testable
      parts only): the reverse effect is shown wherever the claim could be checked;
    - NOT_TESTABLE iff some part is not testable and none is refuted (the untested part could still decide
      the claim either way: supported parts cannot make it supported, nor inconclusive ones "not supported");
    - NOT_SUPPORTED otherwise: some part is inconclusive, or the parts contradict each other (one supported,
      one refuted — conflicting evidence is neither support nor refutation).

    ``rule="conjunction"``: the claim is the logical AND of separate sub-claims, so one refuted part refutes it:
    REFUTED iff some part is refuted; else SUPPORTED iff every part is; else NOT_TESTABLE iff some part is not
    testable; else NOT_SUPPORTED (for claims whose parts are separate sub-claims, e.g. RQ2's).

    Truth table, by the set of outcomes among the parts (S supported, R refuted, N not supported, T not
    testable; how many parts have each outcome does not matter):

    ==========  =======  ===============
    parts       ``all``  ``conjunction``
    ==========  =======  ===============
    S           S        S
    R           R        R
    N           N        N
    T           T        T
    S, R        N        R
    S, N        N        N
    S, T        T        T
    R, N        N        R
    R, T        R        R
    N, T        T        T
    S, R, N     N        R
    S, R, T     N        R
    S, N, T     T        T
    R, N, T     N        R
    S, R, N, T  N        R
    ==========  =======  ===============

    Error rate: "supported" needs every part's interval to exclude its null, so with k parts made at level
    `family_level`(level, k) the claim is wrongly supported with probability ≤ 1 − level (any dependence).

    Args:
        parts: the parts' verdicts, as a sequence or as a mapping from a part's name to its verdict (the names
            then head each part in the reason).
        rule: ``"all"`` or ``"conjunction"`` (above).

    Returns:
        A `Verdict` whose reason lists every part: ``"name: outcome (reason); ..."``.

    >>> combine([Verdict(SUPPORTED, "a"), Verdict(REFUTED, "b")]).outcome
    'not supported'
    >>> combine([Verdict(REFUTED, "a"), not_testable("b")]).outcome
    'refuted'
    """
    if rule not in COMBINE_RULES:
        raise ValueError(f"rule must be one of {COMBINE_RULES}, got {rule!r}")
    if isinstance(parts, Mapping):
        named = [(str(name), verdict) for name, verdict in parts.items()]
    elif isinstance(parts, Sequence) and not isinstance(parts, str):
        named = [(f"part {i + 1}", verdict) for i, verdict in enumerate(parts)]
    else:
        raise TypeError(f"parts must be a sequence of Verdicts or a mapping name -> Verdict, got {parts!r}")
    if not named:
        raise ValueError("a claim needs at least one part")
    for name, verdict in named:
        if not isinstance(verdict, Verdict):
            raise TypeError(f"{name} must be a Verdict, got {verdict!r}")
    outcomes = {verdict.outcome for _, verdict in named}
    outcome = _combined_outcome(outcomes, rule)
    counts = ", ".join(f"{sum(v.outcome == o for _, v in named)} {o}" for o in OUTCOMES if o in outcomes)
    details = "; ".join(f"{name}: {verdict.outcome} ({verdict.reason})" for name, verdict in named)
    return Verdict(outcome, f"{plural(len(named), 'part')}: {counts} — {details}")
