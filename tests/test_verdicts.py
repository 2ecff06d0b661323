"""The shared verdict rules: every outcome comes out of the interval it should, and a claim's parts combine
by the truth table its docstring states."""

import itertools
import math
import re

import pytest

from landscape.paper import verdicts
from landscape.paper.stats import Interval
from landscape.paper.verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    REFUTED,
    SUPPORTED,
    Verdict,
    combine,
    family_level,
    not_testable,
    verdict_from_correlation,
    verdict_from_interval,
    verdict_in_band,
)


def test_docstring_examples():
    import doctest

    result = doctest.testmod(verdicts)
    assert result.attempted >= 9
    assert result.failed == 0


@pytest.mark.parametrize(
    ("low", "high", "sign", "null", "outcome"),
    [
        (0.1, 0.5, 1, 0.0, SUPPORTED),
        (-0.5, -0.1, -1, 0.0, SUPPORTED),
        (-0.5, -0.1, 1, 0.0, REFUTED),
        (0.1, 0.5, -1, 0.0, REFUTED),
        (-0.1, 0.5, 1, 0.0, NOT_SUPPORTED),
        (0.0, 0.5, 1, 0.0, NOT_SUPPORTED),  # touching the null value is not excluding it
        (-0.5, 0.0, 1, 0.0, NOT_SUPPORTED),  # high == null: not refuted either
        (-0.5, 0.0, -1, 0.0, NOT_SUPPORTED),
        (1.2, 1.5, 1, 1.0, SUPPORTED),  # a ratio against 1
        (0.7, 0.9, 1, 1.0, REFUTED),
        (0.5, 0.99, -1, 1.0, SUPPORTED),  # sign −1 against the null 1
        (0.5, 1.0, -1, 1.0, NOT_SUPPORTED),
        (1.0, 1.5, -1, 1.0, NOT_SUPPORTED),
        (1.01, 1.5, -1, 1.0, REFUTED),
        (math.nan, 0.5, 1, 0.0, NOT_TESTABLE),
    ],
)
def test_each_outcome_from_its_interval(low, high, sign, null, outcome):
    assert verdict_from_interval(low, high, sign, null=null).outcome == outcome


def test_bad_input_is_named():
    with pytest.raises(ValueError, match="expected_sign"):
        verdict_from_interval(0, 1, 0)
    with pytest.raises(ValueError, match="low <= high"):
        verdict_from_interval(1, 0, 1)
    with pytest.raises(ValueError, match="outcome"):
        Verdict("maybe", "")
    with pytest.raises(ValueError, match="why"):
        not_testable("")
    assert str(not_testable("unequal training losses")) == NOT_TESTABLE


# ----------------------------------------------------------------------------------------------------- in band


@pytest.mark.parametrize(
    ("low", "high", "outcome"),
    [
        (0.9, 1.1, SUPPORTED),
        (0.85, 1.15, SUPPORTED),  # the band's edges count as inside
        (0.85, 0.85, SUPPORTED),
        (1.2, 1.5, REFUTED),
        (0.5, 0.8, REFUTED),
        (0.5, 0.8499, REFUTED),
        (1.1501, 2.0, REFUTED),
        (0.5, 0.85, NOT_SUPPORTED),  # touching the edge from outside: straddles it
        (1.15, 1.4, NOT_SUPPORTED),
        (0.9, 1.3, NOT_SUPPORTED),
        (0.7, 1.2, NOT_SUPPORTED),  # contains the whole band
        (math.nan, math.nan, NOT_TESTABLE),
        (0.9, math.nan, NOT_TESTABLE),
    ],
)
def test_verdict_in_band(low, high, outcome):
    verdict = verdict_in_band(low, high, 0.85, 1.15)
    assert verdict.outcome == outcome
    assert ("[0.85, 1.15]" in verdict.reason) == (outcome != NOT_TESTABLE)


def test_verdict_in_band_rejects_bad_bands_and_intervals():
    with pytest.raises(ValueError, match=r"band_low < band_high, got \[1.2, 0.8\]"):
        verdict_in_band(0.9, 1.1, 1.2, 0.8)
    with pytest.raises(ValueError, match="band_low < band_high"):
        verdict_in_band(0.9, 1.1, 1.0, 1.0)
    with pytest.raises(ValueError, match="band_low < band_high"):
        verdict_in_band(0.9, 1.1, math.nan, 1.0)
    with pytest.raises(ValueError, match="low <= high"):
        verdict_in_band(1.1, 0.9, 0.85, 1.15)


# ------------------------------------------------------------------------------------------------ correlations


@pytest.mark.parametrize(
    ("low", "high", "sign", "outcome"),
    [
        (0.2, 0.9, 1, SUPPORTED),
        (-0.9, -0.2, -1, SUPPORTED),
        (-0.9, -0.2, 1, REFUTED),
        (0.2, 0.9, -1, REFUTED),
        (-0.3, 0.4, 1, NOT_SUPPORTED),
        (-0.8, 0.0, -1, NOT_SUPPORTED),  # high == 0: not below 0
        (0.0, 0.8, 1, NOT_SUPPORTED),
        (1.0, 1.0, 1, SUPPORTED),
        (math.nan, math.nan, 1, NOT_TESTABLE),
    ],
)
def test_verdict_from_correlation(low, high, sign, outcome):
    assert verdict_from_correlation((low, high), sign).outcome == outcome
    interval = Interval((low + high) / 2, low, high, 0.95, 12, "bootstrap BCa")
    assert verdict_from_correlation(interval, sign) == verdict_from_interval(low, high, sign, null=0.0)


def test_verdict_from_correlation_rejects_bad_input():
    with pytest.raises(ValueError, match=r"lies in \[-1, 1\], got \[0.5, 1.5\]"):
        verdict_from_correlation((0.5, 1.5), 1)
    with pytest.raises(TypeError, match=r"low and \.high or be a pair"):
        verdict_from_correlation(0.5, 1)
    with pytest.raises(ValueError, match="expected_sign"):
        verdict_from_correlation((0.1, 0.2), 0)


# ---------------------------------------------------------------------------------------------------- combine

S, R, N, T = SUPPORTED, REFUTED, NOT_SUPPORTED, NOT_TESTABLE
# Written out by hand (not read from the docstring): which outcomes occur among the parts -> the claim's.
TRUTH_TABLE = {
    (S,): (S, S),
    (R,): (R, R),
    (N,): (N, N),
    (T,): (T, T),
    (S, R): (N, R),
    (S, N): (N, N),
    (S, T): (T, T),
    (R, N): (N, R),
    (R, T): (R, R),
    (N, T): (T, T),
    (S, R, N): (N, R),
    (S, R, T): (N, R),
    (S, N, T): (T, T),
    (R, N, T): (N, R),
    (S, R, N, T): (N, R),
}


def _parts(outcomes, copies=1):
    return [Verdict(outcome, f"reason {i}") for i, outcome in enumerate(list(outcomes) * copies)]


def test_truth_table_covers_every_combination():
    every = {combo for k in range(1, 5) for combo in itertools.combinations((S, R, N, T), k)}
    assert set(TRUTH_TABLE) == every


@pytest.mark.parametrize("present", list(TRUTH_TABLE))
@pytest.mark.parametrize("copies", [1, 2])
def test_combine_every_row(present, copies):
    expected_all, expected_conjunction = TRUTH_TABLE[present]
    parts = _parts(present, copies)
    assert combine(parts).outcome == expected_all
    assert combine(parts, rule="all").outcome == expected_all
    assert combine(parts, rule="conjunction").outcome == expected_conjunction
    assert combine(list(reversed(parts))).outcome == expected_all  # the order of the parts does not matter


def test_combine_docstring_table_is_the_rule():
    letters = {"S": S, "R": R, "N": N, "T": T}
    rows = re.findall(r"^\s{4}([SRNT](?:, [SRNT])*)\s+([SRNT])\s+([SRNT])\s*$", combine.__doc__, re.MULTILINE)
    assert len(rows) == 15
    for present, all_rule, conjunction in rows:
        key = tuple(letters[c] for c in present.split(", "))
        assert TRUTH_TABLE[key] == (letters[all_rule], letters[conjunction])


def test_combine_reason_names_every_part():
    verdict = combine({"λmax": Verdict(S, "ρ < 0"), "normalised sharpness": Verdict(R, "ρ > 0")})
    assert verdict.outcome == N
    assert "λmax: supported (ρ < 0)" in verdict.reason
    assert "normalised sharpness: refuted (ρ > 0)" in verdict.reason
    assert "1 supported, 1 refuted" in verdict.reason
    assert "part 2: not testable here (b)" in combine([Verdict(S, "a"), not_testable("b")]).reason


def test_combine_rejects_bad_input():
    with pytest.raises(ValueError, match="at least one part"):
        combine([])
    with pytest.raises(ValueError, match=r"rule must be one of \('all', 'conjunction'\), got 'any'"):
        combine(_parts((S,)), rule="any")
    with pytest.raises(TypeError, match="part 1 must be a Verdict, got 'supported'"):
        combine([S])
    with pytest.raises(TypeError, match="parts must be a sequence"):
        combine(Verdict(S, "a"))


# ------------------------------------------------------------------------------------------------ multiplicity


def test_family_level():
    assert family_level(0.95, 1) == pytest.approx(0.95)
    assert family_level(0.95, 2) == pytest.approx(0.975)
    assert family_level(0.95, 5) == pytest.approx(0.99)
    assert family_level(0.9, 4, "bonferroni") == pytest.approx(0.975)
    assert family_level(0.95, 2, "sidak") == pytest.approx(math.sqrt(0.95))
    assert family_level(0.95, 1, "sidak") == pytest.approx(0.95)
    # Šidák is exact for independent parts: k intervals at its level all cover with probability `level`;
    # Bonferroni's level is higher (its intervals wider), so it holds whatever the dependence.
    for k in (2, 3, 10):
        assert family_level(0.95, k, "sidak") ** k == pytest.approx(0.95)
        assert family_level(0.95, k) > family_level(0.95, k, "sidak")
        assert 1 - k * (1 - family_level(0.95, k)) == pytest.approx(0.95)  # the union bound


def test_family_level_rejects_bad_input():
    with pytest.raises(ValueError, match=r"level must be a number in \(0, 1\).*got 95"):
        family_level(95, 2)
    with pytest.raises(ValueError, match=r"num_parts must be a positive integer.*got 0"):
        family_level(0.95, 0)
    with pytest.raises(ValueError, match=r"num_parts must be a positive integer.*got 2\.0"):
        family_level(0.95, 2.0)
    with pytest.raises(ValueError, match=r"method must be one of \('bonferroni', 'sidak'\), got 'holm'"):
        family_level(0.95, 2, "holm")
