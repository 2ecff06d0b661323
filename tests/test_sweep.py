"""The sweep engine on real Dask clusters (127.0.0.1 only, closed by each test)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import pytest
import torch

from landscape.data import Dataset
from landscape.results import load_run, run_sweep
from landscape.sweep import dask_executor, default_workers, parallel_map
from landscape.train import TrainConfig, train

GEN = torch.Generator().manual_seed(0)
X = torch.randn(768, 8, generator=GEN)
Y = (X @ torch.randn(8, 3, generator=GEN)).argmax(-1)
DATA = Dataset("mnist1d", X[:512], Y[:512], X[512:], Y[512:], 3)
BASE = TrainConfig(model_config={"depth": 2, "width": 64}, batch_size=16, steps=600, eval_every=300)


def square(x):
    return x * x


def slow_square(x):
    time.sleep(0.05 * (5 - x))  # the first items finish last
    return x * x


def fails_on_three(x):
    if x == 3:
        raise RuntimeError("task 3 failed")
    return x


def torch_threads(_):
    return torch.get_num_threads()


def test_in_process_map_keeps_order_and_sets_threads():
    before = torch.get_num_threads()
    assert parallel_map(square, range(5), workers=1, progress=False) == [0, 1, 4, 9, 16]
    assert parallel_map(torch_threads, [0], workers=1, threads=1, progress=False) == [1]
    assert torch.get_num_threads() == before  # restored
    assert parallel_map(square, [], workers=1, progress=False) == []
    with pytest.raises(RuntimeError, match="task 3"):
        parallel_map(fails_on_three, range(5), workers=1, progress=False)


def test_argument_errors(monkeypatch):
    with pytest.raises(ValueError, match="workers"):
        parallel_map(square, [1], workers=0)
    with pytest.raises(ValueError, match="threads"):
        parallel_map(square, [1], workers=1, threads=0)
    with pytest.raises(ValueError, match="units"):
        parallel_map(square, [1, 2], workers=1, units=[1])
    monkeypatch.setenv("LANDSCAPE_WORKERS", "two")
    with pytest.raises(ValueError, match="LANDSCAPE_WORKERS"):
        default_workers()
    monkeypatch.setenv("LANDSCAPE_WORKERS", "3")
    assert default_workers() == 3
    monkeypatch.setenv("LANDSCAPE_THREADS", "2")
    assert parallel_map(torch_threads, [0], workers=1, progress=False) == [2]
    assert parallel_map(torch_threads, [0], workers=1, threads=1, progress=False) == [
        2
    ]  # the rebuild's setting
    monkeypatch.setenv("LANDSCAPE_WORKERS", "1")
    with dask_executor(workers=2) as executor:
        assert executor is None  # one worker for the whole rebuild: in-process
    monkeypatch.setenv("LANDSCAPE_THREADS", "0")
    with pytest.raises(ValueError, match="LANDSCAPE_THREADS"):
        parallel_map(torch_threads, [0], workers=1, progress=False)


@pytest.fixture
def cluster():
    """A real two-process LocalCluster on 127.0.0.1 (one thread per worker), closed after the test."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
        ) as local,
        Client(local) as client,
    ):
        yield client


@pytest.mark.slow
def test_map_on_a_cluster_and_by_address(cluster, monkeypatch):
    assert parallel_map(slow_square, range(6), client=cluster, progress=False) == [0, 1, 4, 9, 16, 25]
    assert set(parallel_map(torch_threads, range(4), client=cluster, threads=1, progress=False)) == {1}
    with pytest.raises(RuntimeError, match="task 3"):
        parallel_map(fails_on_three, range(5), client=cluster, progress=False)
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler.address)
    with dask_executor(workers=1) as executor:  # the address wins over "one worker, in-process"
        assert executor is not None
        assert executor.submit(square, 7).result() == 49


@pytest.mark.slow
def test_embedded_cluster_is_local_and_closed():
    with dask_executor(workers=2) as executor:
        client = executor._client
        address = client.scheduler.address
        assert address.startswith("tcp://127.0.0.1:")
        assert len(client.scheduler_info()["workers"]) == 2
        assert all(w.startswith("tcp://127.0.0.1:") for w in client.scheduler_info()["workers"])
    assert client.status == "closed"
    clients = []

    def fail_inside_an_embedded_cluster():
        with dask_executor(workers=2) as executor:
            clients.append(executor._client)
            parallel_map(fails_on_three, range(5), client=clients[0], progress=False)

    with pytest.raises(RuntimeError, match="task 3"):
        fail_inside_an_embedded_cluster()
    assert clients[0].status == "closed"  # a task that raised still closes the embedded cluster


@pytest.mark.slow
def test_killed_worker_mid_sweep_stores_every_run_once(cluster, tmp_path, capsys):
    """SIGKILL one worker of a real 2-worker cluster while the sweep runs: Dask reruns its task elsewhere, every
    run ends stored exactly once, equal to the same run trained in this process, and the bar counts all runs."""
    configs = [replace(BASE, seed=s) for s in range(6)]
    root = tmp_path / "cache"
    runs = root / "runs"
    outcome: dict = {}

    def sweep():
        try:
            outcome["frame"] = run_sweep(
                configs, root=root, client=cluster, group_seeds=False, data={"mnist1d": DATA}, progress=True
            )
        except BaseException as err:  # noqa: BLE001 (reported by the assertion below)
            outcome["error"] = err

    pids = cluster.run(os.getpid)  # {worker address: pid}
    thread = threading.Thread(target=sweep, daemon=True)
    thread.start()
    deadline = time.monotonic() + 120
    while not (runs.is_dir() and any((p / "result.json").is_file() for p in runs.iterdir())):
        assert time.monotonic() < deadline, "no run was stored within 120 s"
        time.sleep(0.01)
    processing = cluster.processing()  # {worker address: keys running or queued there}
    victim = max(processing, key=lambda w: len(processing[w]))
    assert processing[victim], "the killed worker must have had work"
    os.kill(pids[victim], signal.SIGKILL)
    thread.join(timeout=300)
    assert not thread.is_alive(), "the sweep did not finish after a worker was killed"
    assert "error" not in outcome, outcome.get("error")
    frame = outcome["frame"]

    assert len(frame) == 6
    assert (frame["status"] == "finished").all()
    folders = sorted(p.name for p in runs.iterdir() if not p.name.startswith(".tmp-"))
    assert folders == sorted(frame["key"])  # one folder per run (a writer killed mid-save may leave a .tmp-*)
    for config, key in zip(configs, frame["key"], strict=True):
        stored = load_run(key, root=root).weights()
        in_process = parallel_map(
            lambda c: train(c, data=DATA).state_dict, [config], workers=1, progress=False
        )
        for name, value in in_process[0].items():  # one thread, as on the workers
            assert torch.equal(stored[name], value)
    assert "6/6" in capsys.readouterr().err  # the progress bar counted every run


def test_slurm_job_script_as_the_readme_shows():
    """The README's dask-jobqueue recipe gives a SLURM job that starts one single-threaded worker in the project's
    environment (checked without SLURM: only the job script is generated)."""
    from dask_jobqueue import SLURMCluster

    with SLURMCluster(
        cores=1,
        processes=1,
        memory="4GB",
        walltime="02:00:00",
        job_script_prologue=["source .venv/bin/activate"],
        scheduler_options={"host": "127.0.0.1", "dashboard_address": None},
    ) as slurm:
        script = slurm.job_script()
        address = slurm.scheduler_address
    assert address.startswith("tcp://127.0.0.1:")
    for line in (
        "#SBATCH --cpus-per-task=1",
        "#SBATCH --mem=4G",
        "#SBATCH -t 02:00:00",
        "source .venv/bin/activate",
    ):
        assert line in script.splitlines()
    worker = next(line for line in script.splitlines() if "distributed.cli.dask_worker" in line)
    assert address in worker
    assert "--nthreads 1" in worker
    assert "--nanny" in worker


def test_a_stored_group_is_skipped_and_a_partial_one_retrained_whole(tmp_path, monkeypatch):
    """`_run_group` checks the store first: a group stored completely trains nothing; a group with some runs
    stored trains all its seeds together (so a run's numbers never depend on its companions) and stores only the
    missing ones, leaving the stored ones untouched."""
    from landscape import results

    configs = [replace(BASE, steps=20, eval_every=20, seed=s) for s in range(3)]
    root = str(tmp_path)
    first = run_sweep(configs[:2], root=root, workers=1, data={"mnist1d": DATA}, progress=False)
    stamps = {k: (tmp_path / "runs" / k / "result.json").stat().st_mtime_ns for k in first["key"]}
    calls = []
    real = results.train_seeds

    def counting(config, seeds, **kwargs):
        calls.append(list(seeds))
        return real(config, seeds, **kwargs)

    monkeypatch.setattr(results, "train_seeds", counting)
    task = ([c.to_dict() for c in configs[:2]], DATA, root)
    assert results._run_group(task) == list(first["key"])
    assert calls == []  # nothing trained
    frame = run_sweep(configs, root=root, workers=1, data={"mnist1d": DATA}, progress=False)
    assert calls == [[0, 1, 2]]
    assert frame["computed"].tolist() == [False, False, True]
    for key, stamp in stamps.items():
        assert (tmp_path / "runs" / key / "result.json").stat().st_mtime_ns == stamp
