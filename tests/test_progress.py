import sys

import pytest

from conftest import make_problem
from landscape import HessianOperator, set_progress
from landscape.progress import get_progress, resolve_progress


@pytest.fixture(autouse=True)
def automatic_default(monkeypatch):
    monkeypatch.delenv("LANDSCAPE_PROGRESS", raising=False)
    yield
    set_progress(None)


def test_default_is_off_under_pytest_and_explicit_values_win(monkeypatch):
    assert get_progress() is False
    assert resolve_progress(True) is True
    set_progress(True)
    assert resolve_progress(None) is True
    assert resolve_progress(False) is False
    set_progress(None)
    monkeypatch.setenv("LANDSCAPE_PROGRESS", "1")
    assert get_progress() is True
    monkeypatch.setenv("LANDSCAPE_PROGRESS", "maybe")
    with pytest.raises(ValueError, match="LANDSCAPE_PROGRESS='maybe'"):
        get_progress()


def test_terminal_rule_outside_pytest(monkeypatch):
    monkeypatch.delenv("PYTEST_CURRENT_TEST")

    class Terminal:
        def isatty(self):
            return True

    monkeypatch.setattr(sys, "stderr", Terminal())
    monkeypatch.delitem(sys.modules, "papermill", raising=False)  # other tests may have imported it
    assert get_progress() is True
    monkeypatch.setitem(sys.modules, "papermill", object())
    assert get_progress() is False


def test_bad_values_are_clear_errors():
    with pytest.raises(TypeError, match="True, False or None"):
        set_progress("yes")
    with pytest.raises(TypeError, match="progress must be True, False or None"):
        resolve_progress(1)


def test_library_default_turns_bars_on(capsys):
    model, loss_fn, x, y = make_problem("mlp")
    batches = [(x[:12], y[:12]), (x[12:], y[12:])]
    HessianOperator(model, loss_fn, batches)
    assert "Hessian graphs" not in capsys.readouterr().err
    set_progress(True)
    HessianOperator(model, loss_fn, batches)
    assert "Hessian graphs" in capsys.readouterr().err
    HessianOperator(model, loss_fn, batches, progress=False)
    assert "Hessian graphs" not in capsys.readouterr().err
