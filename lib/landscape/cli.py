"""Command line (`landscape ...` or `python -m landscape ...`).

`landscape train RECIPE --seeds 0 1 2` trains (or loads, if stored) a paper recipe (`train.paper_recipe`) on
MNIST-1D for several seeds through the results store and prints test accuracy per seed and mean ± std.

`landscape probe RUN` (a stored run) or `landscape probe --model package.module:function --weights FILE --data FILE`
(any model) runs the standard curvature probes and prints a table:

- λmax of the loss Hessian with its Lanczos residual r = ‖Hv − λv‖, which bounds the error of λ
  (`landscape.eigen.top_eigenvalues`),
- tr(H) ± the XTrace standard error (`landscape.trace.hessian_trace`; a heuristic error bar, see there),
- scale-normalised sharpness λmax(diag|θ| H diag|θ|) with its residual (as `landscape.sharpness.normalized_sharpness`).

The Hessian is that of the mean loss over the first `--samples` samples (in batches of `--batch-size`), in the
model's dtype (or float64 with `--float64`), in eval mode unless `--mode train`. All three probes share one
`HessianOperator`, so the gradient graphs of the data are built once; memory is that of the operator (the graphs of
all batches) plus Lanczos' basis and the trace's probes, O(D · trace_matvecs).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import pickle
import re
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = [
    "LOSSES",
    "load_data_file",
    "load_model",
    "main",
    "probe_factory",
    "probe_model",
    "probe_run",
    "train_recipe",
]

LOSSES = ("cross_entropy", "mse")
_DEFAULT_SAMPLES = 1000


def _resolve(checkpoint: str, root: str | None):
    """(RunRecord, step or None) from a run folder, its result.json, a run key, or a weights file inside a run."""
    from .results import RESULT_FILE, load_run

    path = Path(checkpoint)
    step = None
    if path.is_file() and path.suffix == ".safetensors":
        match = re.fullmatch(r"step_(\d+)\.safetensors", path.name)
        if match and path.parent.name == "checkpoints":
            step, path = int(match.group(1)), path.parent.parent
        elif path.name == "weights.safetensors":
            path = path.parent
        else:
            raise ValueError(
                f"{checkpoint}: a weights file alone does not say which model it belongs to; pass the run folder "
                f"(the one with {RESULT_FILE}) or a file inside it, or name the model with --model"
            )
    elif path.is_file() and path.name != RESULT_FILE:
        raise ValueError(f"{checkpoint}: not a run folder, {RESULT_FILE} or stored weights file")
    return load_run(path, root=root), step


def _batches(inputs, targets, samples: int, batch_size: int | None) -> list[tuple]:
    """The first `samples` samples as a list of batches of `batch_size` (None: one batch)."""
    inputs, targets = inputs[:samples], targets[:samples]
    size = len(targets) if batch_size is None else batch_size
    return [(inputs[i : i + size], targets[i : i + size]) for i in range(0, len(targets), max(size, 1))]


def probe_model(
    model,
    loss_fn,
    data,
    *,
    tol: float = 1e-4,
    trace_matvecs: int = 60,
    sharpness: bool = True,
    seed: int = 0,
    mode: str = "eval",
    progress: bool | None = None,
) -> dict:
    """λmax ± residual, tr(H) ± stderr and (optionally) the normalised sharpness of the Hessian of the mean loss.

    One `HessianOperator(model, loss_fn, data, mode=mode)` serves all three probes. λmax is
    `top_eigenvalues(op, 1, tol=tol, seed=seed)`; the trace `hessian_trace(op, trace_matvecs, seed=seed)` (XTrace);
    the normalised sharpness is `top_eigenvalues` of `ScaledOperator(op, |θ|)` = diag|θ| H diag|θ|, the same
    computation as `normalized_sharpness(model, loss_fn, data, tol=tol, trace_matvecs=0, seed=seed)` without
    building the operator a second time (and in the chosen `mode`).

    Returns a dict of plain numbers: `lambda_max`, `lambda_max_residual`, `trace`, `trace_stderr`,
    `normalized_sharpness`, `normalized_sharpness_residual` (if `sharpness`), `parameters` (D), `samples`,
    `dtype`, `mode`, `seconds`.
    """
    from .eigen import top_eigenvalues
    from .operators import HessianOperator, ScaledOperator
    from .trace import hessian_trace

    start = time.perf_counter()
    op = HessianOperator(model, loss_fn, data, mode=mode, progress=progress)
    top = top_eigenvalues(op, 1, tol=tol, seed=seed, progress=progress)
    tr = hessian_trace(op, trace_matvecs, seed=seed, progress=progress)
    out: dict = {
        "parameters": op.dim,
        "samples": op.num_samples,
        "dtype": str(op.dtype).removeprefix("torch."),
        "mode": op.mode,
        "lambda_max": float(top.values[0]),
        "lambda_max_residual": float(top.residuals[0]),
        "trace": tr.estimate,
        "trace_stderr": tr.stderr,
    }
    if sharpness:
        scaled = ScaledOperator(op, op.parameters_vector().abs())
        ns = top_eigenvalues(scaled, 1, tol=tol, seed=seed, progress=progress)
        out["normalized_sharpness"] = float(ns.values[0])
        out["normalized_sharpness_residual"] = float(ns.residuals[0])
    out["seconds"] = time.perf_counter() - start
    return out


def probe_run(
    checkpoint: str,
    *,
    root: str | None = None,
    data_root: str | None = None,
    split: str = "train",
    samples: int = _DEFAULT_SAMPLES,
    batch_size: int | None = None,
    float64: bool = False,
    tol: float = 1e-4,
    trace_matvecs: int = 60,
    sharpness: bool = True,
    seed: int = 0,
    mode: str = "eval",
    progress: bool | None = None,
) -> dict:
    """`probe_model` on a stored run, over the first `samples` samples of its data set's `split`, with its own
    training loss; returns the probes' numbers and the run's key, model, status, step and test accuracy."""
    from .data import load_dataset
    from .train import loss_function

    _check_split(split)
    _check_sizes(samples, batch_size)
    record, step = _resolve(checkpoint, root)
    model = record.model(step)
    if float64:
        model = model.double()
    data = load_dataset(record.config.dataset, data_root)
    batches = _batches(*(data.train if split == "train" else data.test), samples, batch_size)
    out: dict = {
        "run": record.key,
        "model": record.config.model,
        "status": record.status,
        "step": "final" if step is None else step,
        "split": split,
        "test_acc": record.final.get("test_acc"),
    }
    probes = probe_model(
        model,
        loss_function(record.config.loss),
        batches,
        tol=tol,
        trace_matvecs=trace_matvecs,
        sharpness=sharpness,
        seed=seed,
        mode=mode,
        progress=progress,
    )
    return {**out, **probes}


@contextlib.contextmanager
def _current_directory_importable():
    """The current directory at the front of `sys.path` while the model is imported, as `python -m` does."""
    cwd = str(Path.cwd())
    added = cwd not in sys.path and "" not in sys.path
    if added:
        sys.path.insert(0, cwd)
    importlib.invalidate_caches()  # a module written since the last import must be found
    try:
        yield
    finally:
        if added:
            sys.path.remove(cwd)


def load_model(spec: str, kwargs: Mapping | None = None, weights: str | os.PathLike | None = None):
    """The model `package.module:function(**kwargs)`, with the state dict of `weights` loaded strictly.

    The module is imported with the current directory on `sys.path` (as `python -m` does); `function` may be a
    dotted path inside it (`module:Class.build`) and must return a `torch.nn.Module`. `weights` is a safetensors
    file (`.safetensors`) or a file for `torch.load(weights_only=True)` holding a state dict, or a dict with a
    state dict under "state_dict" or "model"; every key must match the model's (no missing, no unexpected, equal
    shapes). Without `weights` the model is used as the factory returns it.

    Raises:
        ValueError: a malformed spec, a module or attribute not found, weights that are not a state dict or do not
            fit the model.
        TypeError: a factory that is not callable or does not return an `nn.Module`.
        FileNotFoundError: `weights` does not exist.
    """
    from torch import nn

    module_name, colon, attr = spec.partition(":")
    if not colon or not module_name or not attr:
        raise ValueError(
            f"--model {spec!r}: expected package.module:function (no colon between the module and the factory)"
            if not colon
            else f"--model {spec!r}: expected package.module:function (empty module or function name)"
        )
    with _current_directory_importable():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Only a missing module named in the spec is the spec's fault; a missing dependency inside it is not.
            if err.name is None or not (module_name == err.name or module_name.startswith(err.name + ".")):
                raise
            raise ValueError(
                f"--model {spec!r}: module {module_name!r} not found (looked in the current directory {Path.cwd()} "
                "and on sys.path)"
            ) from err
        factory = module
        for part in attr.split("."):
            if not hasattr(factory, part):
                raise ValueError(f"--model {spec!r}: attribute {attr!r} not found in module {module_name!r}")
            factory = getattr(factory, part)
        if not callable(factory):
            raise TypeError(
                f"--model {spec!r}: {attr!r} is not callable (a {type(factory).__name__}); name a function or class "
                "that returns the model"
            )
        model = factory(**dict(kwargs or {}))
    if not isinstance(model, nn.Module):
        raise TypeError(
            f"--model {spec!r}: {attr}(...) did not return an nn.Module (got {type(model).__name__})"
        )
    if weights is not None:
        _load_weights(model, Path(weights))
    return model


def _torch_load(path: Path, what: str):
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError) as err:
        raise ValueError(f"{what} {path}: not readable by torch.load(weights_only=True): {err}") from err


def _names(keys: Sequence[str], limit: int = 6) -> str:
    shown = ", ".join(repr(k) for k in keys[:limit])
    return f"[{shown}{f', ... ({len(keys)} in all)' if len(keys) > limit else ''}]"


def _is_state_dict(obj) -> bool:
    import torch

    return isinstance(obj, Mapping) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items()
    )


def _load_weights(model, path: Path) -> None:
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path}: no such file")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(path)
        except SafetensorError as err:
            raise ValueError(f"weights file {path}: not a valid safetensors file: {err}") from err
    else:
        obj = _torch_load(path, "weights file")
        if _is_state_dict(obj):
            state = obj
        else:
            keys = ("state_dict", "model")
            state = next(
                (obj[k] for k in keys if isinstance(obj, Mapping) and _is_state_dict(obj.get(k))), None
            )
            if state is None:
                found = (
                    f"a dict with keys {_names(list(map(str, obj)))}"
                    if isinstance(obj, Mapping)
                    else type(obj).__name__
                )
                raise ValueError(
                    f"weights file {path}: no state dict (a dict of name -> tensor) found; tried the whole file and "
                    f"its keys 'state_dict' and 'model', found {found}"
                )
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        hint = (
            " (the file's keys start with 'module.': saved from DataParallel/DDP; save model.module.state_dict())"
            if unexpected and all(k.startswith("module.") for k in state)
            else ""
        )
        raise ValueError(
            f"weights file {path} does not fit the model: missing keys {_names(missing)}, unexpected keys "
            f"{_names(unexpected)}{hint}"
        )
    shapes = [
        f"{k}: file {tuple(v.shape)} vs model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if v.shape != expected[k].shape
    ]
    if shapes:
        raise ValueError(
            f"weights file {path} does not fit the model: shapes differ for {'; '.join(shapes[:6])}"
        )
    model.load_state_dict(state, strict=True)


def load_data_file(path: str | os.PathLike):
    """`(inputs, targets)` tensors from a `.npz` file or a file for `torch.load(weights_only=True)`.

    The file holds a dict with keys "inputs" and "targets" (or "x" and "y"), or (torch) an `(inputs, targets)`
    pair; both must have the same leading (sample) dimension.
    """
    import numpy as np
    import torch

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {path}: no such file")
    if path.suffix == ".npz":
        try:
            with np.load(path, allow_pickle=False) as npz:
                obj = {k: torch.from_numpy(npz[k]) for k in npz.files}
        except (OSError, ValueError) as err:
            raise ValueError(f"data file {path}: not a readable .npz file of plain arrays: {err}") from err
    else:
        obj = _torch_load(path, "data file")
    if isinstance(obj, Mapping):
        names = next((p for p in (("inputs", "targets"), ("x", "y")) if all(k in obj for k in p)), None)
        if names is None:
            raise ValueError(
                f"data file {path}: expected keys 'inputs' and 'targets' (or 'x' and 'y'), found "
                f"{_names(sorted(map(str, obj)))}"
            )
        pair = (obj[names[0]], obj[names[1]])
    elif isinstance(obj, (tuple, list)) and len(obj) == 2:
        pair = tuple(obj)
    else:
        raise ValueError(
            f"data file {path}: expected a dict with 'inputs' and 'targets' (or 'x' and 'y') or an (inputs, targets) "
            f"pair, found {type(obj).__name__}"
        )
    if not all(isinstance(t, torch.Tensor) and t.ndim >= 1 for t in pair):
        raise ValueError(f"data file {path}: inputs and targets must be arrays with a sample dimension")
    if len(pair[0]) != len(pair[1]):
        raise ValueError(f"data file {path}: {len(pair[0])} inputs but {len(pair[1])} targets")
    return pair


def _mse(outputs, targets):
    """Mean squared error over every element, `torch.nn.functional.mse_loss`, for targets shaped as the outputs."""
    from torch.nn import functional as F

    if not targets.is_floating_point():
        raise ValueError(
            f"--loss mse needs floating targets shaped like the outputs, got {targets.dtype} targets (class labels?); "
            "store one-hot targets in the data file, or use --loss cross_entropy"
        )
    if outputs.shape != targets.shape:
        raise ValueError(
            f"--loss mse: outputs of shape {tuple(outputs.shape)} but targets of shape {tuple(targets.shape)}"
        )
    return F.mse_loss(outputs, targets)


def _loss(name: str):
    from torch.nn import functional as F

    if name == "cross_entropy":
        return F.cross_entropy
    if name == "mse":
        return _mse
    raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")


def probe_factory(
    spec: str,
    *,
    model_kwargs: Mapping | None = None,
    weights: str | None = None,
    data: str | None = None,
    dataset: str | None = None,
    data_root: str | None = None,
    split: str = "train",
    samples: int = _DEFAULT_SAMPLES,
    batch_size: int | None = None,
    loss: str = "cross_entropy",
    float64: bool = False,
    tol: float = 1e-4,
    trace_matvecs: int = 60,
    sharpness: bool = True,
    seed: int = 0,
    mode: str = "eval",
    progress: bool | None = None,
) -> dict:
    """`probe_model` on a user's model (`load_model(spec, model_kwargs, weights)`) over the first `samples` of a
    data file (`load_data_file`) or of this project's data set `dataset` (`landscape.data.load_dataset`, its
    `split`), with `loss` ("cross_entropy" or "mse"); returns the probes' numbers and where they came from."""
    if (data is None) == (dataset is None):
        raise ValueError("pass exactly one of --data FILE and --dataset NAME")
    _check_split(split)
    _check_sizes(samples, batch_size)
    loss_fn = _loss(loss)
    model = load_model(spec, model_kwargs, weights)
    if float64:
        model = model.double()
    if data is not None:
        inputs, targets = load_data_file(data)
        source = str(data)
    else:
        from .data import load_dataset

        ds = load_dataset(dataset, data_root)
        inputs, targets = ds.train if split == "train" else ds.test
        source = f"{dataset} {split}"
    out = {
        "model": spec,
        "weights": "as the factory returns it" if weights is None else str(weights),
        "data": source,
        "loss": loss,
    }
    probes = probe_model(
        model,
        loss_fn,
        _batches(inputs, targets, samples, batch_size),
        tol=tol,
        trace_matvecs=trace_matvecs,
        sharpness=sharpness,
        seed=seed,
        mode=mode,
        progress=progress,
    )
    return {**out, **probes}


def _check_split(split: str) -> None:
    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")


def _check_sizes(samples: int, batch_size: int | None) -> None:
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size must be positive or None, got {batch_size}")


def _table(result: dict) -> str:
    """The probes' table, under a header saying what was probed (a stored run or a user's model)."""
    data = f"({result['dtype']}, {result['mode']} mode, {result['parameters']} parameters)"
    if "run" in result:
        header = [
            (
                f"run {result['run']}  model {result['model']}  status {result['status']}  "
                f"step {result['step']}  test acc {result['test_acc']}"
            ),
            f"Hessian of the training loss on {result['samples']} {result['split']} samples {data}",
        ]
    else:
        header = [
            f"model {result['model']}  weights {result['weights']}",
            f"Hessian of the {result['loss']} loss on {result['samples']} samples of {result['data']} {data}",
        ]
    lines = [
        *header,
        "",
        f"{'quantity':<26}{'value':>14}   {'error':>12}",
        "-" * 56,
        f"{'lambda_max':<26}{result['lambda_max']:>14.6g} ± {result['lambda_max_residual']:>10.2g} (residual)",
        f"{'trace':<26}{result['trace']:>14.6g} ± {result['trace_stderr']:>10.2g} (stderr)",
    ]
    if "normalized_sharpness" in result:
        lines.append(
            f"{'normalized sharpness':<26}{result['normalized_sharpness']:>14.6g} ± "
            f"{result['normalized_sharpness_residual']:>10.2g} (residual)"
        )
    lines.append(f"\n{result['seconds']:.1f} s")
    return "\n".join(lines)


def train_recipe(
    name: str, seeds: Sequence[int], *, root: str | None = None, vmap: bool = True, workers: int = 1
):
    """Train (or load) `paper_recipe(name, seed=s)` for each seed; returns the sweep's DataFrame."""
    from .results import run_sweep
    from .train import paper_recipe

    configs = [paper_recipe(name, seed=s) for s in seeds]
    return run_sweep(configs, root=root, workers=workers, group_seeds=vmap, progress=True)


def _train_table(name: str, frame) -> str:
    lines = [f"{'seed':>6} {'status':>9} {'train acc':>10} {'test acc':>9} {'wall s':>8} {'stored':>7}"]
    for _, r in frame.iterrows():
        lines.append(
            f"{r['seed']:>6} {r['status']:>9} {r['train_acc']:>10.4f} {r['test_acc']:>9.4f} "
            f"{r['wall_time']:>8.1f} {'new' if r['computed'] else 'cached':>7}"
        )
    acc = frame["test_acc"]
    std = acc.std(ddof=1) if len(acc) > 1 else float("nan")
    lines.append(
        f"{name}: test accuracy {acc.mean():.4f} ± {std:.4f} (mean ± std over {len(acc)} seeds), "
        f"{int(frame['num_parameters'].iloc[0])} parameters"
    )
    return "\n".join(lines)


def _version() -> str:
    import platform

    import torch

    from . import __version__

    return f"landscape {__version__} (torch {torch.__version__}, Python {platform.python_version()})"


# Options of `probe` that belong to one kind of target: (attribute, flag).
_RUN_ONLY = (("root", "--root"),)
_MODEL_ONLY = (
    ("model_kwargs", "--model-kwargs"),
    ("weights", "--weights"),
    ("data", "--data"),
    ("dataset", "--dataset"),
    ("loss", "--loss"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="landscape", description="Loss-surface probes for stored runs and for your own models."
    )
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    t = sub.add_parser(
        "train",
        help="train (or load) a paper recipe for several seeds",
        description="Train a paper recipe on MNIST-1D for several seeds (stored, never recomputed).",
    )
    t.add_argument("recipe", choices=("mlp", "resnet18", "transformer"), help="which reference model")
    t.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds (default 0 1 2)")
    t.add_argument("--root", help="cache root (default: $LANDSCAPE_CACHE or ./results)")
    t.add_argument("--no-vmap", action="store_true", help="train seeds one by one instead of vectorised")
    t.add_argument("--workers", type=int, default=1,
                   help="Dask workers: 1 trains in this process (default), N starts a local cluster of N "
                        "processes; $DASK_SCHEDULER_ADDRESS uses that cluster instead")  # fmt: skip
    p = sub.add_parser(
        "probe",
        help="λmax, trace and normalised sharpness of a stored run or of your own model",
        description="Run the standard curvature probes on a stored run (RUN) or on a model of yours (--model) "
        "and print a table.",
    )
    p.add_argument(
        "checkpoint",
        nargs="?",
        metavar="RUN",
        help="a stored run: its folder, its result.json, a run key, or a weights file inside it",
    )
    p.add_argument("--root", help="cache root holding runs/ (default: $LANDSCAPE_CACHE or ./results)")
    own = p.add_argument_group("your own model (instead of RUN)")
    own.add_argument("--model", metavar="MODULE:FUNCTION",
                     help="factory returning an nn.Module, e.g. mypkg.models:build (imported from the current "
                          "directory or sys.path)")  # fmt: skip
    own.add_argument(
        "--model-kwargs", metavar="JSON", help="keyword arguments of the factory, e.g. '{\"width\": 64}'"
    )
    own.add_argument("--weights", metavar="FILE",
                     help="state dict: .safetensors, or a torch.load(weights_only=True) file (a state dict or a "
                          "dict with it under 'state_dict' or 'model'); default: the model as the factory returns it")  # fmt: skip
    source = own.add_mutually_exclusive_group()
    source.add_argument("--data", metavar="FILE",
                        help=".npz or torch file with 'inputs' and 'targets' (or 'x' and 'y')")  # fmt: skip
    source.add_argument("--dataset", choices=_datasets(), help="one of this project's data sets")
    own.add_argument("--loss", choices=LOSSES, help="loss of your model (default cross_entropy; mse: mean over "
                     "every element, targets shaped like the outputs)")  # fmt: skip
    p.add_argument("--data-root", help="folder of the data set (image data sets) or of the MNIST-1D cache")
    p.add_argument("--split", choices=("train", "test"),
                   help="split of a stored run's data set or of --dataset (default train)")  # fmt: skip
    p.add_argument("--samples", type=int, default=_DEFAULT_SAMPLES, metavar="N",
                   help=f"the first N samples (default {_DEFAULT_SAMPLES})")  # fmt: skip
    p.add_argument(
        "--batch-size", type=int, metavar="B", help="samples per batch (default: all in one batch)"
    )
    p.add_argument("--mode", choices=("eval", "train"), default="eval",
                   help="eval: BatchNorm running statistics, no dropout (default); train: BatchNorm batch "
                        "statistics (dropout must be off)")  # fmt: skip
    p.add_argument("--float64", action="store_true", help="probe in float64")
    p.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of Lanczos (default 1e-4)")
    p.add_argument("--trace-matvecs", type=int, default=60, help="products for the trace (default 60)")
    p.add_argument("--no-sharpness", action="store_true", help="skip the normalised sharpness")
    p.add_argument("--seed", type=int, default=0, help="seed of the random probes (default 0)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bars on stderr (default: on when stderr is a terminal, see set_progress)")  # fmt: skip
    return parser


def _datasets() -> tuple[str, ...]:
    from .data import DATASETS

    return DATASETS


def _model_kwargs(text: str | None, parser: argparse.ArgumentParser) -> dict:
    if text is None:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as err:
        parser.error(f"--model-kwargs {text!r}: not valid JSON ({err})")
    if not isinstance(kwargs, dict):
        parser.error(
            f"--model-kwargs {text!r}: expected a JSON object of keyword arguments, got {type(kwargs).__name__}"
        )
    return kwargs


def _probe(args, parser: argparse.ArgumentParser) -> dict:
    if args.samples < 1:
        parser.error(f"--samples must be a positive integer, got {args.samples}")
    if args.batch_size is not None and args.batch_size < 1:
        parser.error(f"--batch-size must be a positive integer, got {args.batch_size}")
    if args.trace_matvecs < 4:
        parser.error(f"--trace-matvecs must be at least 4, got {args.trace_matvecs}")
    if args.checkpoint is not None and args.model is not None:
        parser.error(f"probe takes a stored run ({args.checkpoint}) or --model ({args.model}), not both")
    if args.checkpoint is None and args.model is None:
        parser.error("probe needs a stored run (RUN) or a model of yours (--model MODULE:FUNCTION)")
    own = args.model is not None
    wrong = [flag for attr, flag in (_RUN_ONLY if own else _MODEL_ONLY) if getattr(args, attr) is not None]
    if wrong:
        parser.error(f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} not used with "
                     f"{'--model' if own else 'a stored run'}")  # fmt: skip
    if own and args.data is None and args.dataset is None:
        parser.error("--model needs data: --data FILE or --dataset NAME")
    if own and args.data is not None and args.split is not None:
        parser.error("--split is for --dataset and stored runs; a --data file is used as it is")
    common = {
        "data_root": args.data_root,
        "split": args.split or "train",
        "samples": args.samples,
        "batch_size": args.batch_size,
        "float64": args.float64,
        "tol": args.tol,
        "trace_matvecs": args.trace_matvecs,
        "sharpness": not args.no_sharpness,
        "seed": args.seed,
        "mode": args.mode,
        "progress": args.progress,
    }
    if not own:
        return probe_run(args.checkpoint, root=args.root, **common)
    return probe_factory(
        args.model,
        model_kwargs=_model_kwargs(args.model_kwargs, parser),
        weights=args.weights,
        data=args.data,
        dataset=args.dataset,
        loss=args.loss or "cross_entropy",
        **common,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `landscape` command; returns the exit status (2 for bad input)."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "train":
        if args.workers < 1:
            parser.error(f"--workers must be a positive integer, got {args.workers}")
        frame = train_recipe(
            args.recipe, args.seeds, root=args.root, vmap=not args.no_vmap, workers=args.workers
        )
        print(_train_table(args.recipe, frame))
    if args.command == "probe":
        try:
            result = _probe(args, parser)
        except (FileNotFoundError, ValueError, TypeError) as err:  # bad input: its message, no traceback
            print(f"landscape probe: error: {err}", file=sys.stderr)
            return 2
        print(_table(result))
    return 0
