"""What every chapter's experiments share: running a population of cached tasks as one Dask sweep.

A chapter's expensive work is a list of tasks, each a module-level function of one settings dict (one network
trained and probed, one stored run measured, ...). `run_cached` runs them through `landscape.sweep.parallel_map`
(in-process, an embedded LocalCluster or any cluster) and caches each result with `cached_json` under its
settings and the code it declares (`depends_on`), so

- a rerun with nothing changed reads every result back;
- a task Dask reruns after its worker died finds its result stored, or computes and stores it once (atomic);
- a change to the declared code recomputes exactly the tasks that ran it.

Declare the modules the computation runs (the chapter's task module, the training code, the probes are always
included), not the chapter's plots or verdict rules: editing a figure must not retrain a population.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

__all__ = ["run_cached"]


def _cached_call(task: tuple[Callable, dict, str, tuple]) -> dict:
    """One task on a worker: read its cached result or compute and store it."""
    from ...results import cached_json

    compute, settings, cache, depends_on = task
    name = f"{compute.__module__}.{compute.__qualname__}"
    return cached_json(
        cache, {"task": name, **settings}, functools.partial(compute, settings), depends_on=depends_on
    )


def run_cached(
    compute: Callable[[Mapping], dict],
    settings: Sequence[Mapping],
    *,
    cache: str | Path,
    depends_on: Iterable = (),
    workers: int | None = None,
    threads: int | str | None = "default",
    desc: str = "tasks",
    progress: bool = False,
) -> list[dict]:
    """``[compute(s) for s in settings]``, each cached, run as one sweep on Dask.

    Args:
        compute: a module-level function (picklable by reference) of one JSON-serialisable settings dict,
            returning a JSON-serialisable dict.
        settings: one dict per task; with the function's qualified name, each is its cache key.
        cache: the folder of the cached results (made absolute, so workers elsewhere write to the same place).
        depends_on: the code `compute` runs beyond the probes (modules, module names or .py paths).
        workers, threads: where and how the tasks run (`landscape.sweep.parallel_map`).
        desc, progress: the progress bar (off by default: a chapter's output is the paper).

    Returns:
        The results, in the order of `settings`.
    """
    from ...sweep import parallel_map

    if not callable(compute) or "<locals>" in getattr(compute, "__qualname__", "<locals>"):
        raise TypeError(f"compute must be a module-level function, got {compute!r}")
    folder = str(Path(cache).resolve())
    declared = tuple(m if isinstance(m, str) else getattr(m, "__name__", str(m)) for m in depends_on)
    tasks = [(compute, dict(s), folder, declared) for s in settings]
    return parallel_map(_cached_call, tasks, workers=workers, threads=threads, desc=desc, progress=progress)
