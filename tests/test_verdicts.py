"""The shared verdict rule: every outcome comes out of the interval it should."""

import math

import pytest

from landscape.paper.verdicts import (
    NOT_SUPPORTED,
    NOT_TESTABLE,
    REFUTED,
    SUPPORTED,
    Verdict,
    not_testable,
    verdict_from_interval,
)


@pytest.mark.parametrize(
    ("low", "high", "sign", "null", "outcome"),
    [
        (0.1, 0.5, 1, 0.0, SUPPORTED),
        (-0.5, -0.1, -1, 0.0, SUPPORTED),
        (-0.5, -0.1, 1, 0.0, REFUTED),
        (0.1, 0.5, -1, 0.0, REFUTED),
        (-0.1, 0.5, 1, 0.0, NOT_SUPPORTED),
        (0.0, 0.5, 1, 0.0, NOT_SUPPORTED),  # touching the null value is not excluding it
        (1.2, 1.5, 1, 1.0, SUPPORTED),  # a ratio against 1
        (0.7, 0.9, 1, 1.0, REFUTED),
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
