import doctest
import importlib

import pytest

MODULES = [
    "landscape.operators",
    "landscape.curvature",
    "landscape.eigen",
    "landscape.trace",
    "landscape.density",
    "landscape.sharpness",
    "landscape.geometry",
    "landscape.ruggedness",
    "landscape.hierarchy",
    "landscape.stability",
    "landscape.dynamics",
    "landscape.paper.glue",
    "landscape.paper.typeset",
    "landscape.paper.tables",
    "landscape.paper.claims",
    "landscape.paper.verdicts",
    "landscape.paper.experiments.rq2",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0
