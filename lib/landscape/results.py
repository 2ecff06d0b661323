"""A store of training runs on disk, keyed by what determines them, and sweeps over many configurations.

Layout under the cache root (`data.cache_root`: argument, `$LANDSCAPE_CACHE`, or `results/`)::

    runs/<key>/result.json                      config, status, metrics history, final metrics, versions,
                                                wall time, and the SHA-256 of every weights file
    runs/<key>/weights.safetensors              final weights
    runs/<key>/checkpoints/step_<n>.safetensors weights after n steps (config.checkpoint_steps)

A writer killed mid-save can leave a ``runs/.tmp-*`` folder behind; it is never read (only folders holding a
``result.json`` are runs) and may be deleted at any time no sweep is running.

`key` hashes the full `TrainConfig`, the code version (a hash of the source of `data.py`, `models.py` and
`train.py`: any change to how runs are produced gives new keys) and a digest of the training data. A run folder is
written under a temporary name and renamed into place in one step, so a folder that exists is complete; a finished
run is never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import sys
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import cache, lru_cache
from pathlib import Path

import torch
from torch import Tensor, nn

from .data import Dataset, cache_root, load_dataset, tensor_digest
from .models import build_model
from .train import TrainConfig, TrainResult, train, train_seeds

__all__ = [
    "RunRecord",
    "cached_json",
    "code_version",
    "library_versions",
    "load_run",
    "load_sweep",
    "load_weights",
    "run",
    "run_key",
    "run_sweep",
    "save_result",
    "source_version",
]

RESULT_FILE = "result.json"
WEIGHTS_FILE = "weights.safetensors"
SCHEMA = 2  # 2: reached_step and TrainConfig.stop_loss


TRAINING_MODULES = ("data", "models", "train")


@lru_cache(maxsize=1)
def code_version() -> str:
    """A hash of the source files that determine how runs are produced (`data.py`, `models.py`, `train.py`)."""
    return source_version(TRAINING_MODULES)


def data_digest(data: Dataset) -> str:
    """Digest of a data set's tensors (part of every run key)."""
    return tensor_digest(data.x_train, data.y_train, data.x_test, data.y_test)


def run_key(config: TrainConfig, data: Dataset) -> str:
    """The key of a run: SHA-256 of the full config, the code version and the data digest (16 hex digits)."""
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    payload = json.dumps(
        {"config": config.to_dict(), "code": code_version(), "data": data_digest(data), "schema": SCHEMA},
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def library_versions() -> dict[str, str]:
    """Versions of Python, the platform and the libraries that produce the numbers."""
    import numpy

    from . import __version__

    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "landscape": __version__,
    }


# ----------------------------------------------------------------------------------------------------------------
# Weights files


def _sha256(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def _save_weights(path: Path, state: Mapping[str, Tensor]) -> str:
    from safetensors.torch import save

    payload = save({k: v.detach().cpu().contiguous().clone() for k, v in state.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(payload)
    return _sha256(payload)


def load_weights(path: str | os.PathLike, sha256: str | None = None) -> dict[str, Tensor]:
    """Load a state dict from a `.safetensors` file or a `.pt`/`.pth` file (`torch.load(weights_only=True)`).

    Args:
        path: the file.
        sha256: if given, the file's expected SHA-256 (as stored in `result.json`); a mismatch is an error.

    Raises:
        FileNotFoundError: no such file. ValueError: unknown extension, or a corrupt or truncated file.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    if path.suffix not in (".safetensors", ".pt", ".pth"):
        raise ValueError(
            f"checkpoint {path}: unknown format {path.suffix!r}; expected .safetensors, .pt or .pth"
        )
    payload = path.read_bytes()
    if sha256 is not None and _sha256(payload) != sha256:
        raise ValueError(
            f"checkpoint {path} is corrupt: its SHA-256 does not match the one recorded when it was written "
            f"(delete the run folder {path.parent} to recompute it)"
        )
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load

            state = load(payload)
        else:
            import io

            state = torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as err:  # safetensors, zip and unpickling errors all mean the same thing here
        raise ValueError(f"checkpoint {path} is corrupt or truncated and cannot be read: {err}") from err
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f"checkpoint {path} does not hold a state dict of tensors")
    return state


# ----------------------------------------------------------------------------------------------------------------
# Stored runs


@dataclass(frozen=True)
class RunRecord:
    """A stored run (read from its folder): everything in `result.json`, and the weights on demand.

    Attributes:
        key, path: the run's key and folder.
        config: its `TrainConfig`.
        status, diverged_step, reached_step, history, final, num_parameters, wall_time, trained_with: as in
            `TrainResult`.
        input_shape, num_classes: of the data it was trained on (to rebuild the model).
        checkpoint_steps: the steps whose weights are stored.
        versions: library versions that produced it; code_version: hash of the training code.
    """

    key: str
    path: Path
    config: TrainConfig
    status: str
    diverged_step: int | None
    reached_step: int | None
    history: tuple[dict, ...]
    final: dict
    num_parameters: int
    wall_time: float
    trained_with: str
    input_shape: tuple[int, ...]
    num_classes: int
    checkpoint_steps: tuple[int, ...]
    versions: dict
    code_version: str
    files: dict

    def weights(self, step: int | None = None) -> dict[str, Tensor]:
        """The final weights, or those after `step` steps (one of `checkpoint_steps`), checksum-verified."""
        rel = WEIGHTS_FILE if step is None else f"checkpoints/step_{step}.safetensors"
        if step is not None and step not in self.checkpoint_steps:
            raise ValueError(
                f"run {self.key} has no checkpoint at step {step}; it has {list(self.checkpoint_steps)}"
            )
        return load_weights(self.path / rel, sha256=self.files.get(rel))

    def model(self, step: int | None = None) -> nn.Module:
        """The trained model (final, or at checkpoint `step`), on the CPU in the run's dtype, in eval mode."""
        c = self.config
        model = build_model(
            c.model,
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            seed=c.seed,
            dtype=getattr(torch, c.dtype),
            **c.model_config,
        )
        model.load_state_dict(self.weights(step))
        return model.eval()

    def row(self) -> dict:
        """One flat dict: key, status, final metrics, run facts and every config field (model_config.* flattened)."""
        cfg = self.config.to_dict()
        options = cfg.pop("model_config")
        cfg["checkpoint_steps"] = tuple(cfg["checkpoint_steps"])
        return {
            "key": self.key,
            "status": self.status,
            "diverged_step": self.diverged_step,
            "reached_step": self.reached_step,
            **self.final,
            "num_parameters": self.num_parameters,
            "wall_time": self.wall_time,
            "trained_with": self.trained_with,
            **cfg,
            **{f"model_config.{k}": v for k, v in options.items()},
        }


def _runs_dir(root) -> Path:
    return cache_root(root) / "runs"


def save_result(result: TrainResult, data: Dataset, root: str | os.PathLike | None = None) -> RunRecord:
    """Store a `TrainResult` atomically (written to a temporary folder, then renamed into place).

    If the run is already stored (another process finished it first), the stored one is kept and returned.
    """
    if result.started_from != "initialisation":
        raise ValueError(
            "this run started from given weights (train(start=...)), not from its config's initialisation: its "
            "config does not determine it, so it cannot be stored under the config's key"
        )
    key = run_key(result.config, data)
    final_dir = _runs_dir(root) / key
    if (final_dir / RESULT_FILE).is_file():
        return load_run(final_dir)
    tmp = _runs_dir(root) / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(parents=True)
    try:
        files = {WEIGHTS_FILE: _save_weights(tmp / WEIGHTS_FILE, result.state_dict)}
        for step, state in sorted(result.checkpoints.items()):
            rel = f"checkpoints/step_{step}.safetensors"
            files[rel] = _save_weights(tmp / rel, state)
        record = {
            "schema": SCHEMA,
            "key": key,
            "config": result.config.to_dict(),
            "status": result.status,
            "diverged_step": result.diverged_step,
            "reached_step": result.reached_step,
            "history": list(result.history),
            "final": result.final,
            "num_parameters": result.num_parameters,
            "wall_time": result.wall_time,
            "trained_with": result.trained_with,
            "input_shape": list(data.input_shape),
            "num_classes": data.num_classes,
            "checkpoint_steps": sorted(result.checkpoints),
            "versions": library_versions(),
            "code_version": code_version(),
            "files": files,
        }
        (tmp / RESULT_FILE).write_text(json.dumps(record, indent=1, allow_nan=True))
        try:
            tmp.rename(final_dir)
        except OSError:
            if not (final_dir / RESULT_FILE).is_file():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_run(final_dir)


def load_run(where: str | os.PathLike, root: str | os.PathLike | None = None) -> RunRecord:
    """Read a stored run from its folder (or its `result.json`), or by key under the cache root.

    Raises:
        FileNotFoundError: no such run. ValueError: `result.json` is corrupt.
    """
    path = Path(where)
    if path.name == RESULT_FILE:
        path = path.parent
    if not (path / RESULT_FILE).is_file():
        by_key = _runs_dir(root) / str(where)
        if (by_key / RESULT_FILE).is_file():
            path = by_key
        else:
            raise FileNotFoundError(
                f"no stored run at {where!r}: expected a run folder containing {RESULT_FILE} "
                f"(or a run key under {_runs_dir(root)})"
            )
    try:
        d = json.loads((path / RESULT_FILE).read_text())
        return RunRecord(
            key=d["key"],
            path=path,
            config=TrainConfig.from_dict(d["config"]),
            status=d["status"],
            diverged_step=d["diverged_step"],
            reached_step=d.get("reached_step"),  # absent in schema-1 runs
            history=tuple(d["history"]),
            final=d["final"],
            num_parameters=d["num_parameters"],
            wall_time=d["wall_time"],
            trained_with=d["trained_with"],
            input_shape=tuple(d["input_shape"]),
            num_classes=d["num_classes"],
            checkpoint_steps=tuple(d["checkpoint_steps"]),
            versions=d["versions"],
            code_version=d["code_version"],
            files=d["files"],
        )
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"stored run {path} has a corrupt {RESULT_FILE} ({err}); delete the folder to recompute"
        ) from err


def _is_stored(key: str, root) -> bool:
    return (_runs_dir(root) / key / RESULT_FILE).is_file()


def run(
    config: TrainConfig,
    *,
    root: str | os.PathLike | None = None,
    data: Dataset | None = None,
    data_root=None,
    progress: bool | None = None,
) -> RunRecord:
    """The stored run of `config`: loaded if it exists, otherwise trained (`train.train`) and stored first."""
    data = data if data is not None else load_dataset(config.dataset, data_root)
    key = run_key(config, data)
    if _is_stored(key, root):
        return load_run(_runs_dir(root) / key)
    return save_result(train(config, data=data, progress=progress), data, root)


# ----------------------------------------------------------------------------------------------------------------
# Sweeps


def _run_group(task: tuple[list[dict], Dataset, str]) -> list[str]:
    """Train a group of configs that differ only in seed (one vectorised pass) and store the ones missing.

    The whole group is trained even when some of its runs are already stored (a rerun after a worker died
    mid-group), so a run's numbers never depend on which of its companions happened to be stored; a group that
    is stored completely is skipped."""
    configs, data, root = task
    configs = [TrainConfig.from_dict(c) for c in configs]
    keys = [run_key(c, data) for c in configs]
    if all(_is_stored(k, root) for k in keys):
        return keys
    if len(configs) == 1:
        results = [train(configs[0], data=data)]
    else:
        results = train_seeds(configs[0], [c.seed for c in configs], data=data)
    for key, result in zip(keys, results, strict=True):
        if not _is_stored(key, root):
            save_result(result, data, root)
    return keys


def _group_by_seed(configs: list[TrainConfig]) -> list[list[TrainConfig]]:
    groups: dict[str, list[TrainConfig]] = {}
    for c in configs:
        groups.setdefault(json.dumps(replace(c, seed=0).to_dict(), sort_keys=True), []).append(c)
    return list(groups.values())


def run_sweep(
    configs: Iterable[TrainConfig],
    *,
    root: str | os.PathLike | None = None,
    workers: int | None = None,
    client=None,
    address: str | None = None,
    threads: int | str | None = "default",
    group_seeds: bool = True,
    max_group: int | None = None,
    data: Mapping[str, Dataset] | None = None,
    data_root=None,
    progress: bool | None = None,
):
    """Make sure every config has a stored run, training only the missing ones, and return all as a DataFrame.

    Runs already stored (by an earlier, possibly interrupted, sweep) are loaded, never recomputed. Missing runs
    that differ only in their seed are trained together by `train_seeds` (one vectorised pass, one task) when
    `group_seeds` is true. Tasks run on Dask through `landscape.sweep.parallel_map`: in this process with one
    worker, on an embedded `LocalCluster` of `workers` single-threaded processes, or on an existing cluster
    (`client`, `address` or ``$DASK_SCHEDULER_ADDRESS``). A task checks the store before it trains and writes
    atomically, so a task rerun after its worker died stores nothing twice.

    Args:
        configs: the runs wanted (duplicates are stored once).
        root: the cache root (default `cache_root()`); it must be reachable from the workers.
        workers: processes of an embedded cluster (None: one per CPU core); 1 trains in this process.
        client, address: an existing Dask cluster to use instead (see `landscape.sweep.dask_executor`).
        threads: torch threads of each training task (`landscape.sweep.parallel_map`; default 1, or
            ``$LANDSCAPE_THREADS``); raise it for a few large models trained in this process.
        group_seeds: vectorise over seeds where possible.
        max_group: at most this many seeds per vectorised task (default: all seeds of a config in one task;
            smaller groups spread one configuration's seeds over several workers). Vectorised runs agree with
            separate ones up to the rounding of batched products, so keep one grouping for one store.
        data: {dataset name: Dataset} to use instead of loading by name (e.g. a subset).
        data_root: folder of image data sets (and of the MNIST-1D cache).
        progress: progress bar over runs (None: the library default, `landscape.set_progress`).

    Returns:
        A `pandas.DataFrame`, one row per distinct config in input order (see `RunRecord.row`), with a column
        `computed` that is True for runs this call found missing (and trained).
    """
    from .sweep import _check_workers, parallel_map

    configs = list(configs)
    _check_workers(workers)
    if not all(isinstance(c, TrainConfig) for c in configs):
        raise TypeError("configs must be TrainConfig instances")
    if max_group is not None and (not isinstance(max_group, int) or max_group < 1):
        raise ValueError(f"max_group must be a positive integer or None, got {max_group!r}")
    datasets = dict(data or {})
    for name in sorted({c.dataset for c in configs} - set(datasets)):
        datasets[name] = load_dataset(name, data_root)
    keys = [run_key(c, datasets[c.dataset]) for c in configs]  # each hashes its data set: once per config
    unique = dict(zip(keys, configs, strict=True))
    key_of = {c: k for k, c in unique.items()}
    missing = {k for k in unique if not _is_stored(k, root)}
    # groups are formed over every wanted run, stored or not, so a rerun trains a partly stored group exactly as
    # the first sweep did (its stored runs are not replaced); groups stored completely are skipped
    everything = list(unique.values())
    groups = _group_by_seed(everything) if group_seeds else [[c] for c in everything]
    if max_group is not None:
        groups = [g[i : i + max_group] for g in groups for i in range(0, len(g), max_group)]
    groups = [g for g in groups if any(key_of[c] in missing for c in g)]
    root_arg = str(cache_root(root).resolve())  # absolute: workers on other machines or folders see the same
    tasks = [([c.to_dict() for c in g], datasets[g[0].dataset], root_arg) for g in groups]
    done = parallel_map(
        _run_group,
        tasks,
        workers=workers,
        client=client,
        address=address,
        threads=threads,
        units=[sum(key_of[c] in missing for c in g) for g in groups],
        desc="sweep (runs)",
        progress=progress,
    )
    computed = {k for keys_of_task in done for k in keys_of_task} & missing
    frame = load_sweep(list(unique), root=root)
    frame["computed"] = frame["key"].isin(computed)
    return frame


def load_sweep(keys: Sequence[str] | None = None, *, root: str | os.PathLike | None = None):
    """Stored runs as one `pandas.DataFrame` (one row per run, see `RunRecord.row`).

    Args:
        keys: run keys to load, in this order (default: every run under the root, sorted by key).
        root: the cache root.
    """
    import pandas as pd

    runs_dir = _runs_dir(root)
    if keys is None:
        keys = (
            sorted(p.name for p in runs_dir.glob("*") if (p / RESULT_FILE).is_file())
            if runs_dir.is_dir()
            else []
        )
    frame = pd.DataFrame([load_run(runs_dir / k).row() for k in keys])
    for column in ("diverged_step", "reached_step"):
        if column in frame:
            frame[column] = frame[column].astype("Int64")
    return frame


# ----------------------------------------------------------------------------------------------------------------
# Cached measurements


# The modules a measurement depends on by default (probes, directions, models); training code is keyed separately.
PROBE_MODULES = (
    "alignment", "curvature", "density", "directions", "eigen", "flatness", "geometry", "hierarchy",
    "interpolation", "models", "operators", "ruggedness", "sharpness", "slices", "stability", "trace",
)  # fmt: skip


def source_version(modules: Iterable) -> str:
    """A hash of the source of `modules`: module objects, dotted names (``"landscape.dynamics"``), names of
    modules of this package (``"dynamics"``) or paths of source files. Any change to one gives a new value.

    A module's source is read once per process, when it is first hashed (right after it was imported, in
    practice), so the hash describes the code this process runs even if the file is edited later; a path is
    read at every call."""
    import importlib
    import types

    h = hashlib.sha256()
    for item in modules:
        if isinstance(item, types.ModuleType):
            name = item.__name__
        elif isinstance(item, (str, os.PathLike)) and Path(item).suffix == ".py":
            h.update(Path(item).name.encode())
            h.update(Path(item).read_bytes())
            continue
        elif isinstance(item, str):
            name = item if "." in item else f"{__package__}.{item}"
            importlib.import_module(name)
        else:
            raise TypeError(f"depends_on entries must be modules, module names or .py paths, got {item!r}")
        h.update(name.encode())
        h.update(_module_source(name))
    return h.hexdigest()[:12]


@cache
def _module_source(name: str) -> bytes:
    import sys

    module = sys.modules[name]
    if getattr(module, "__file__", None) is None:
        raise ValueError(f"module {name} has no source file to hash")
    return Path(module.__file__).read_bytes()


@lru_cache(maxsize=1)
def probe_version() -> str:
    """A hash of the source of the probe modules (`PROBE_MODULES`): any change to a probe gives a new value."""
    return source_version(PROBE_MODULES)


def cached_json(folder: str | os.PathLike, settings: Mapping, compute, *, depends_on: Iterable = ()) -> dict:
    """The JSON result of `compute()` for `settings`, computed once and then read back from `folder`.

    The file name hashes `settings` (which must identify the inputs, e.g. a run key and the probe budgets), the
    probe modules' source (`probe_version()`) and the source of every module in `depends_on` (modules, their
    names or `.py` paths, see `source_version`): a measurement declares the code it runs, and a change to that
    code recomputes it. The file is written to a temporary name and renamed, so an interrupted computation
    leaves nothing behind and is simply redone; two processes computing the same entry both write the same
    result and the last rename wins.

    Args:
        folder: where the results live (created if missing).
        settings: a JSON-serialisable mapping describing what is computed.
        compute: a function of no arguments returning a JSON-serialisable dict.
        depends_on: code beyond the probes that the result depends on (e.g. ``["dynamics", "train"]``).
    """
    depends_on = list(depends_on)
    code = {"probes": probe_version(), **({"depends_on": source_version(depends_on)} if depends_on else {})}
    try:
        payload = json.dumps({"settings": settings, **code}, sort_keys=True)
    except TypeError as err:
        raise TypeError(f"settings must be JSON-serialisable: {err}") from err
    folder = Path(folder)
    path = folder / f"{hashlib.sha256(payload.encode()).hexdigest()[:16]}.json"
    if path.is_file():
        return json.loads(path.read_text())["result"]
    result = compute()
    if not isinstance(result, Mapping):
        raise TypeError(f"compute() must return a dict, got {type(result).__name__}")
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.write_text(json.dumps({"settings": settings, "result": dict(result)}, allow_nan=True))
    tmp.replace(path)
    return dict(result)
