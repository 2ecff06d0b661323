"""Command line: `landscape probe` against exact dense answers on a stored MNIST-1D run, `landscape train` through
the store, and clear errors for bad paths and options."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from landscape.cli import main, probe_run
from landscape.data import mnist1d
from landscape.operators import dense_hessian
from landscape.results import run
from landscape.train import TrainConfig, loss_function


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    data = mnist1d(root)
    config = TrainConfig(
        model_config={"depth": 1, "width": 8}, batch_size=64, steps=40, eval_every=20, checkpoint_steps=(10,)
    )
    return root, data, run(config, root=root, data=data)


def test_probe_matches_the_dense_hessian(stored):
    root, data, record = stored
    out = probe_run(str(record.path), data_root=str(root), samples=200, float64=True, tol=1e-8)
    model = record.model().double()
    batch = (data.x_train[:200], data.y_train[:200])
    H = dense_hessian(model, loss_function("ce"), batch)
    eigs = torch.linalg.eigvalsh(H)
    assert out["lambda_max"] == pytest.approx(float(eigs[-1]), rel=1e-6)
    assert (
        abs(out["lambda_max"] - float(eigs[-1])) <= out["lambda_max_residual"]
    )  # the residual is an error bar
    exact_trace = float(torch.trace(H))
    assert abs(out["trace"] - exact_trace) <= 5 * out["trace_stderr"] + 1e-9
    theta = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).abs()
    scaled = theta[:, None] * H * theta[None, :]
    assert out["normalized_sharpness"] == pytest.approx(float(torch.linalg.eigvalsh(scaled)[-1]), rel=1e-6)
    assert out["samples"] == 200
    assert out["step"] == "final"
    assert out["dtype"] == "float64"


def test_probe_command_prints_a_table(stored, capsys):
    root, _, record = stored
    checkpoint = record.path / "checkpoints" / "step_10.safetensors"
    code = main(
        [
            "probe",
            str(checkpoint),
            "--data-root",
            str(root),
            "--samples",
            "100",
            "--no-sharpness",
            "--trace-matvecs",
            "20",
        ]
    )
    assert code == 0
    text = capsys.readouterr().out
    assert "step 10" in text
    assert "lambda_max" in text
    assert "trace" in text
    assert "normalized sharpness" not in text


def test_probe_errors(stored, tmp_path, capsys):
    _root, _, record = stored
    assert main(["probe", str(tmp_path / "nowhere")]) == 2
    assert "no stored run" in capsys.readouterr().err
    loose = tmp_path / "loose.safetensors"
    loose.write_bytes((record.path / "weights.safetensors").read_bytes())
    assert main(["probe", str(loose)]) == 2
    assert "does not say which model" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["probe", str(record.path), "--bogus"])
    assert exit_info.value.code == 2
    assert "unrecognized arguments: --bogus" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["probe", str(record.path), "--samples", "0"])
    assert "--samples must be a positive integer" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["frobnicate"])
    with pytest.raises(ValueError, match="unknown split"):
        probe_run(str(record.path), split="valid")


def test_train_command_uses_the_store(tmp_path, capsys, monkeypatch):
    import landscape.train as train_module

    real = train_module.paper_recipe

    def tiny(name, **overrides):  # the recipe, shortened to keep the test fast
        return real(name, **overrides).__class__.from_dict(
            {**real(name, **overrides).to_dict(), "steps": 5, "epochs": None, "eval_every": 5}
        )

    monkeypatch.setattr(train_module, "paper_recipe", tiny)
    args = ["train", "mlp", "--seeds", "0", "1", "--root", str(tmp_path / "cache")]
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "cache"))
    assert main(args) == 0
    first = capsys.readouterr().out
    assert "mean ± std over 2 seeds" in first
    assert first.count(" new") == 2
    assert main(args) == 0
    assert capsys.readouterr().out.count("cached") == 2


def test_python_dash_m_entry_point(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "landscape", "probe", str(tmp_path / "missing")],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "no stored run" in result.stderr
