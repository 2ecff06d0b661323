"""The chapters' shared task runner: cached, ordered, keyed by the declared code."""

import pytest

from landscape.paper.experiments.common import run_cached

CALLS = []


def double(settings):
    CALLS.append(settings["x"])
    return {"y": 2 * settings["x"]}


def test_tasks_run_once_in_order_and_recompute_when_their_code_changes(tmp_path):
    CALLS.clear()
    code = tmp_path / "task_code.py"
    code.write_text("VERSION = 1\n")
    settings = [{"x": x} for x in (3, 1, 2)]
    kwargs = {"cache": tmp_path / "cache", "depends_on": [code], "workers": 1}
    assert run_cached(double, settings, **kwargs) == [{"y": 6}, {"y": 2}, {"y": 4}]
    assert run_cached(double, settings, **kwargs) == [{"y": 6}, {"y": 2}, {"y": 4}]
    assert CALLS == [3, 1, 2]  # the second sweep read every result back
    code.write_text("VERSION = 2\n")
    run_cached(double, settings[:1], **kwargs)
    assert CALLS == [3, 1, 2, 3]


def test_only_module_level_functions():
    with pytest.raises(TypeError, match="module-level"):
        run_cached(lambda s: s, [{}], cache="x", workers=1)
