"""`unpack=` on every probe that reads data: batches of any format give the numbers of plain (inputs, targets)
pairs, and an ambiguous batch without `unpack` is a clear error."""

from __future__ import annotations

import copy

import pytest
import torch

from conftest import make_problem
from landscape import (
    average_case_sharpness,
    epsilon_sharpness,
    interpolation_barrier,
    pac_bayes_sigma,
    random_direction,
    slice_1d,
    slice_2d,
    unpack_first_two,
    worst_case_sharpness,
)


def _batches(inputs, targets, size=8):
    return [(inputs[i : i + size], targets[i : i + size]) for i in range(0, len(targets), size)]


def _with_extra(batches):
    # a third element (sample indices, as some loaders add) that the default rule cannot place
    return [(x, y, torch.arange(len(y))) for x, y in batches]


PROBES = {
    "slice_1d": lambda m, f, d, **kw: (
        slice_1d(m, f, d, random_direction(m, seed=0), [-0.5, 0.0, 0.5], **kw).losses
    ),
    "slice_2d": lambda m, f, d, **kw: (
        slice_2d(
            m, f, d, random_direction(m, seed=0), random_direction(m, seed=1), [-0.5, 0.5], [0.0, 0.5], **kw
        ).losses
    ),
    "barrier": lambda m, f, d, **kw: interpolation_barrier(m, _other(m), f, d, 5, **kw).losses,
    "epsilon": lambda m, f, d, **kw: torch.tensor(epsilon_sharpness(m, f, d, 1e-2, steps=3, **kw).value),
    "worst_case": lambda m, f, d, **kw: torch.tensor(
        worst_case_sharpness(m, f, d, 0.05, steps=3, **kw).value
    ),
    "average_case": lambda m, f, d, **kw: torch.tensor(
        average_case_sharpness(m, f, d, 0.05, num_samples=4, **kw).value
    ),
    "pac_bayes": lambda m, f, d, **kw: torch.tensor(
        pac_bayes_sigma(m, f, d, quantity="loss", num_samples=4, iterations=4, **kw).sigma
    ),
}


def _other(model):
    other = copy.deepcopy(model)
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    return other


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_unpack_reads_any_batch_format_as_plain_pairs(probe):
    model, loss_fn, inputs, targets = make_problem("mlp", n=24)
    plain = _batches(inputs, targets)
    expected = PROBES[probe](model, loss_fn, plain)
    got = PROBES[probe](model, loss_fn, _with_extra(plain), unpack=unpack_first_two)
    assert torch.isfinite(torch.as_tensor(expected)).all()
    torch.testing.assert_close(torch.as_tensor(got), torch.as_tensor(expected), rtol=1e-12, atol=1e-12)
    with pytest.raises(TypeError, match="ambiguous: pass unpack="):
        PROBES[probe](model, loss_fn, _with_extra(plain))


def test_unpack_must_be_callable():
    model, loss_fn, inputs, targets = make_problem("mlp", n=8)
    with pytest.raises(TypeError, match="unpack must be callable"):
        slice_1d(
            model, loss_fn, (inputs, targets), random_direction(model, seed=0), [0.0], unpack="first two"
        )
