"""Results store: keys, atomic storage, no recomputation, checksummed weights with clear errors for damaged files,
sweeps into one DataFrame (in-process and with worker processes), and resuming a sweep killed mid-way."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
import torch

from landscape import results as results_module
from landscape.data import Dataset
from landscape.results import (
    code_version,
    load_run,
    load_sweep,
    load_weights,
    run,
    run_key,
    run_sweep,
    save_result,
)
from landscape.train import TrainConfig, train


def synthetic(seed: int = 0) -> Dataset:
    gen = torch.Generator().manual_seed(seed)
    w = torch.randn(8, 3, generator=gen)
    x = torch.randn(128, 8, generator=gen)
    y = (x @ w).argmax(-1)
    return Dataset("mnist1d", x[:96], y[:96], x[96:], y[96:], 3)


DATA = synthetic()
CONFIG = TrainConfig(
    model_config={"depth": 1, "width": 8}, batch_size=16, steps=20, eval_every=10, checkpoint_steps=(0, 10)
)


def test_run_key_depends_on_config_code_and_data():
    k = run_key(CONFIG, DATA)
    assert k == run_key(TrainConfig.from_dict(CONFIG.to_dict()), DATA)
    assert len(k) == 16
    assert run_key(replace(CONFIG, lr=0.02), DATA) != k
    assert run_key(replace(CONFIG, seed=1), DATA) != k
    assert run_key(CONFIG, synthetic(seed=1)) != k
    assert len(code_version()) == 12


def test_run_trains_once_then_loads(tmp_path, monkeypatch):
    record = run(CONFIG, root=tmp_path, data=DATA)
    assert record.path == tmp_path / "runs" / record.key
    assert record.status == "finished"
    stored = json.loads((record.path / "result.json").read_text())
    assert stored["versions"]["torch"] == torch.__version__
    assert stored["code_version"] == code_version()
    assert stored["wall_time"] > 0
    assert stored["input_shape"] == [8]
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".tmp")]

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was recomputed")

    monkeypatch.setattr(results_module, "train", no_training)
    again = run(CONFIG, root=tmp_path, data=DATA)
    assert again == record

    direct = train(CONFIG, data=DATA)  # same config and seed: the same numbers as the stored run
    for k, v in direct.state_dict.items():
        assert torch.equal(record.weights()[k], v)
        assert torch.equal(record.weights(step=0)[k], direct.checkpoints[0][k])
    assert record.final == direct.final
    assert json.dumps(list(record.history)) == json.dumps(list(direct.history))  # NaN-aware equality
    model = record.model()
    assert not model.training
    torch.testing.assert_close(
        model(DATA.x_test).argmax(-1).eq(DATA.y_test).double().mean().item(), record.final["test_acc"]
    )
    with pytest.raises(ValueError, match="no checkpoint at step 5"):
        record.weights(step=5)


def test_cache_root_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDSCAPE_CACHE", str(tmp_path / "env"))
    record = run(CONFIG, data=DATA)
    assert record.path.parent == tmp_path / "env" / "runs"
    assert load_run(record.key).key == record.key  # by key under the default root


def test_save_result_keeps_an_existing_run(tmp_path):
    result = train(CONFIG, data=DATA)
    first = save_result(result, DATA, tmp_path)
    mtime = (first.path / "result.json").stat().st_mtime_ns
    second = save_result(result, DATA, tmp_path)
    assert second == first
    assert (first.path / "result.json").stat().st_mtime_ns == mtime


def test_damaged_weights_are_clear_errors(tmp_path):
    record = run(CONFIG, root=tmp_path, data=DATA)
    path = record.path / "weights.safetensors"
    payload = path.read_bytes()
    path.write_bytes(payload[: len(payload) // 2])  # truncated
    with pytest.raises(ValueError, match="corrupt"):
        record.weights()
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_weights(path)  # without the checksum the format check catches it
    flipped = bytearray(payload)
    flipped[-1] ^= 0xFF  # one byte of tensor data: still a valid file, caught by the checksum
    path.write_bytes(bytes(flipped))
    with pytest.raises(ValueError, match="SHA-256"):
        record.weights()
    (record.path / "result.json").write_text("{not json")
    with pytest.raises(ValueError, match=r"corrupt result\.json"):
        load_run(record.path)


def test_load_weights_formats_and_errors(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    torch.save(state, tmp_path / "a.pt")
    assert torch.equal(load_weights(tmp_path / "a.pt")["w"], state["w"])
    payload = (tmp_path / "a.pt").read_bytes()
    (tmp_path / "b.pt").write_bytes(payload[: len(payload) // 2])
    with pytest.raises(ValueError, match="corrupt or truncated"):
        load_weights(tmp_path / "b.pt")
    torch.save({"w": state["w"], "f": print}, tmp_path / "c.pt")  # not loadable with weights_only=True
    with pytest.raises(ValueError, match=r"c\.pt is corrupt"):
        load_weights(tmp_path / "c.pt")
    (tmp_path / "d.bin").write_bytes(b"")
    with pytest.raises(ValueError, match="unknown format"):
        load_weights(tmp_path / "d.bin")
    with pytest.raises(FileNotFoundError):
        load_weights(tmp_path / "missing.safetensors")
    with pytest.raises(FileNotFoundError, match="no stored run"):
        load_run(tmp_path / "nothing")


def test_sweep_in_process_groups_seeds_and_never_recomputes(tmp_path):
    configs = [replace(CONFIG, lr=lr, seed=s) for lr in (0.01, 0.003) for s in (0, 1)]
    diverging = replace(CONFIG, optimizer="sgd", lr=1e4)
    frame = run_sweep(
        [*configs, diverging, configs[0]], root=tmp_path, workers=1, data={"mnist1d": DATA}, progress=False
    )
    assert isinstance(frame, pd.DataFrame)
    assert len(frame) == 5
    assert frame["computed"].all()
    assert frame["trained_with"].tolist() == ["vmap"] * 4 + ["single"]
    assert frame["status"].tolist() == ["finished"] * 4 + ["diverged"]
    assert frame["lr"].tolist() == [0.01, 0.01, 0.003, 0.003, 1e4]
    assert frame["model_config.width"].tolist() == [8] * 5
    assert frame["test_acc"].iloc[:4].between(0, 1).all()
    assert pd.isna(frame["test_acc"].iloc[4])
    again = run_sweep(configs, root=tmp_path, workers=1, data={"mnist1d": DATA}, progress=False)
    assert not again["computed"].any()
    pd.testing.assert_frame_equal(again.drop(columns="computed"), frame.iloc[:4].drop(columns="computed"))
    assert frame["diverged_step"].dtype == "Int64"
    assert frame["diverged_step"].iloc[4] > 0
    everything = load_sweep(root=tmp_path)
    assert sorted(everything["key"]) == sorted(frame["key"])


@pytest.mark.slow
def test_sweep_with_worker_processes(tmp_path):
    configs = [replace(CONFIG, seed=0), replace(CONFIG, seed=1, lr=0.02)]
    frame = run_sweep(configs, root=tmp_path, workers=2, data={"mnist1d": DATA}, progress=False)
    assert frame["computed"].all()
    assert (frame["status"] == "finished").all()
    for config, key in zip(configs, frame["key"], strict=True):
        stored = load_run(key, root=tmp_path).weights()
        for k, v in train(config, data=DATA).state_dict.items():
            assert torch.equal(stored[k], v)  # a worker process computes the same numbers


SWEEP_SETUP = textwrap.dedent(
    """
    from dataclasses import replace
    import torch
    from landscape.data import Dataset
    from landscape.train import TrainConfig

    gen = torch.Generator().manual_seed(0)
    x = torch.randn(512, 8, generator=gen)
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(-1)
    data = Dataset("mnist1d", x[:384], y[:384], x[384:], y[384:], 3)
    base = TrainConfig(model_config={"depth": 2, "width": 32}, batch_size=16, steps=200, eval_every=100)
    configs = [replace(base, seed=s) for s in range(6)]
    """
)
SWEEP_SCRIPT = SWEEP_SETUP + textwrap.dedent(
    """
    import sys
    torch.set_num_threads(1)
    from landscape.results import run_sweep
    run_sweep(configs, root=sys.argv[1], workers=1, group_seeds=False, data={"mnist1d": data}, progress=False)
    """
)


@pytest.mark.slow
def test_killed_sweep_resumes_only_missing_runs(tmp_path):
    """A real process running a sweep is killed (SIGKILL) after two runs are stored; a rerun trains only the
    missing runs and leaves the finished ones untouched."""
    script = tmp_path / "sweep.py"
    script.write_text(SWEEP_SCRIPT)
    root = tmp_path / "cache"
    runs = root / "runs"

    def finished() -> list[Path]:
        return sorted(p for p in runs.glob("*") if (p / "result.json").is_file()) if runs.is_dir() else []

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(root)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 120
    while len(finished()) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    _, stderr = proc.communicate()
    assert proc.returncode == -signal.SIGKILL, stderr  # killed, not finished
    done_before = {p.name: (p / "result.json").stat().st_mtime_ns for p in finished()}
    assert 2 <= len(done_before) < 6

    namespace: dict = {}
    exec(SWEEP_SETUP, namespace)  # noqa: S102 (our own constant text: the same configs and data, in this process)
    frame = run_sweep(
        namespace["configs"],
        root=root,
        workers=1,
        group_seeds=False,
        data={"mnist1d": namespace["data"]},
        progress=False,
    )
    assert len(frame) == 6
    assert (frame["status"] == "finished").all()
    assert set(frame.loc[frame["computed"], "key"]) == set(frame["key"]) - set(done_before)
    for name, mtime in done_before.items():
        assert (runs / name / "result.json").stat().st_mtime_ns == mtime
    assert len(load_sweep(root=root)) == 6


def test_sweep_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="workers"):
        run_sweep([CONFIG], root=tmp_path, workers=0, data={"mnist1d": DATA})
    with pytest.raises(TypeError, match="TrainConfig"):
        run_sweep([{"lr": 1}], root=tmp_path, data={"mnist1d": DATA})


def test_cached_json_declares_the_code_it_depends_on(tmp_path):
    """A result keyed with `depends_on` is recomputed when that code changes, and only then; modules, their names
    and their source paths name the same code."""
    from landscape import dynamics
    from landscape.results import cached_json, source_version

    module = tmp_path / "measure.py"
    module.write_text("VERSION = 1\n")
    calls = []

    def compute():
        calls.append(1)
        return {"value": len(calls)}

    folder = tmp_path / "cache"
    assert cached_json(folder, {"k": 1}, compute, depends_on=[module]) == {"value": 1}
    assert cached_json(folder, {"k": 1}, compute, depends_on=[module]) == {"value": 1}
    assert cached_json(folder, {"k": 1}, compute) == {"value": 2}  # no declared code: another entry
    module.write_text("VERSION = 2\n")  # the declared code changed
    assert cached_json(folder, {"k": 1}, compute, depends_on=[module]) == {"value": 3}
    assert (
        source_version([dynamics]) == source_version(["dynamics"]) == source_version(["landscape.dynamics"])
    )
    assert source_version(["dynamics"]) != source_version(["train"])
    with pytest.raises(TypeError, match="depends_on"):
        source_version([42])


def test_runs_from_given_weights_are_never_stored(tmp_path):
    start = train(CONFIG, data=DATA)
    continued = train(CONFIG, data=DATA, start=start.state_dict)
    assert continued.started_from == "given weights"
    with pytest.raises(ValueError, match="given weights"):
        save_result(continued, DATA, root=tmp_path)


def test_schema_1_runs_still_load(tmp_path):
    record = save_result(train(CONFIG, data=DATA), DATA, root=tmp_path)
    stored = json.loads((record.path / "result.json").read_text())
    del stored["reached_step"]
    stored["schema"] = 1
    (record.path / "result.json").write_text(json.dumps(stored))
    assert load_run(record.path).reached_step is None
