"""Where many independent tasks run: `dask.distributed`, embedded by default, any cluster by address.

`parallel_map(function, items)` is the one scheduling loop of the project (training sweeps through
`results.run_sweep`, every chapter's measurement tasks). Where it runs is decided once, by `dask_executor`:

- ``client=`` given: that `distributed.Client`'s cluster, unchanged (its workers, its threads);
- else ``address=`` or the environment variable ``DASK_SCHEDULER_ADDRESS``: a client is connected to that
  scheduler (a standalone ``dask scheduler``, a SLURM cluster started with dask-jobqueue, ...) for the call;
- else ``workers > 1`` (``$LANDSCAPE_WORKERS``, when set, overrides the argument for a whole rebuild): a
  `distributed.LocalCluster` of that many worker *processes* with one thread each,
  scheduler and dashboard on 127.0.0.1 on free ports, started for the call and closed after it;
- else (one worker): in this process, no Dask at all.

Every task sets torch's thread count to ``threads`` (default 1; ``$LANDSCAPE_THREADS``, when set, overrides the
argument) while it runs and restores it after, in a worker
as in-process, so a task computes the same bits wherever it runs on one machine. The loop has
`concurrent.futures` semantics (the client's `get_executor()`): results are returned in input order, the first
exception is raised, a progress bar counts finished work.

Dask reruns the tasks of a worker that dies. Tasks that write results therefore check their store before
computing and write atomically (`results.save_result`, `results.cached_json`), so each result is stored once.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence

from .progress import progress_bar

__all__ = ["dask_executor", "default_threads", "default_workers", "parallel_map"]

ADDRESS_VARIABLE = "DASK_SCHEDULER_ADDRESS"
WORKERS_VARIABLE = "LANDSCAPE_WORKERS"
THREADS_VARIABLE = "LANDSCAPE_THREADS"


def _positive_from_environment(variable: str) -> int | None:
    value = os.environ.get(variable)
    if value is None:
        return None
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{variable}={value!r}: expected a positive integer")
    return int(value)


def default_workers() -> int:
    """Workers of an embedded cluster: ``$LANDSCAPE_WORKERS`` if set, else the number of usable CPU cores."""
    value = _positive_from_environment(WORKERS_VARIABLE)
    if value is not None:
        return value
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def default_threads() -> int:
    """torch threads of each task: ``$LANDSCAPE_THREADS`` if set, else 1 (many small tasks side by side)."""
    value = _positive_from_environment(THREADS_VARIABLE)
    return 1 if value is None else value


def _check_workers(workers) -> int:
    if workers is None:
        return default_workers()
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive integer or None, got {workers!r}")
    return workers


@contextlib.contextmanager
def dask_executor(
    *, workers: int | None = None, client=None, address: str | None = None
) -> Iterator[concurrent.futures.Executor | None]:
    """A `concurrent.futures.Executor` on the Dask cluster chosen as the module docstring says, or None for
    in-process execution (one worker). An embedded cluster is closed when the block ends.

    Args:
        workers: worker processes of an embedded cluster (default `default_workers()`); ignored with a client
            or an address.
        client: an existing `distributed.Client` (used unchanged, not closed).
        address: a scheduler address such as ``"tcp://127.0.0.1:8786"`` (default ``$DASK_SCHEDULER_ADDRESS``).
    """
    if client is not None:
        yield client.get_executor()
        return
    address = address or os.environ.get(ADDRESS_VARIABLE) or None
    if address is not None:
        from distributed import Client

        with Client(address) as connected:
            yield connected.get_executor()
        return
    workers = _check_workers(_positive_from_environment(WORKERS_VARIABLE) or workers)
    if workers == 1:
        yield None
        return
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            scheduler_port=0,
            dashboard_address="127.0.0.1:0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster) as local,
    ):
        yield local.get_executor()


def _with_threads(function: Callable, item, threads: int | None):
    """Run `function(item)` with torch using `threads` threads (restored after)."""
    import torch

    if threads is None:
        return function(item)
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return function(item)
    finally:
        torch.set_num_threads(before)


def parallel_map(
    function: Callable,
    items: Iterable,
    *,
    workers: int | None = None,
    client=None,
    address: str | None = None,
    threads: int | str | None = "default",
    units: Sequence[int] | None = None,
    desc: str = "tasks",
    progress: bool | None = None,
) -> list:
    """``[function(item) for item in items]``, run on Dask (see the module docstring for where).

    Args:
        function: a picklable function of one argument (cloudpickle: lambdas and notebook functions work).
        items: its arguments, one task each.
        workers, client, address: where to run (`dask_executor`); one worker runs in this process.
        threads: torch threads of each task (default `default_threads()`; None: leave the process's setting
            alone). ``$LANDSCAPE_WORKERS`` and ``$LANDSCAPE_THREADS``, when set, override `workers` and `threads`,
            so one rebuild can be run under other settings without editing the chapters' profiles.
        units: how much each task counts on the progress bar (e.g. runs per task; default 1 each).
        desc: the progress bar's label.
        progress: show the progress bar (None: the library default, `landscape.set_progress`).

    Returns:
        The results in the order of `items`. The first task that raises stops the loop and its exception is
        raised here (tasks already running finish; an embedded cluster is closed).
    """
    items = list(items)
    units = [1] * len(items) if units is None else list(units)
    if len(units) != len(items):
        raise ValueError(f"units must have one entry per item: {len(units)} for {len(items)} items")
    if threads == "default" or THREADS_VARIABLE in os.environ:
        threads = default_threads()
    if threads is not None and (not isinstance(threads, int) or threads < 1):
        raise ValueError(f"threads must be a positive integer or None, got {threads!r}")
    results: list = [None] * len(items)
    if not items:
        return results
    with (
        progress_bar(progress, total=sum(units), desc=desc, leave=True) as bar,
        dask_executor(workers=workers, client=client, address=address) as executor,
    ):
        if executor is None:
            for i, item in enumerate(items):
                results[i] = _with_threads(function, item, threads)
                bar.update(units[i])
            return results
        futures = {executor.submit(_with_threads, function, item, threads): i for i, item in enumerate(items)}
        try:
            for future in concurrent.futures.as_completed(futures):
                i = futures[future]
                results[i] = future.result()
                bar.update(units[i])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results
