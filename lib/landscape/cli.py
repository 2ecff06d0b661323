"""Command line (`landscape ...` or `python -m landscape ...`).

`landscape train RECIPE --seeds 0 1 2` trains (or loads, if stored) a paper recipe (`train.paper_recipe`) on
MNIST-1D for several seeds through the results store and prints test accuracy per seed and mean ± std.

`landscape probe CHECKPOINT` runs the standard curvature probes on a stored run and prints a table:

- λmax of the loss Hessian with its Lanczos residual (`landscape.eigen.top_eigenvalues`),
- tr(H) ± standard error (`landscape.trace.hessian_trace`, XTrace),
- scale-normalised sharpness λmax(diag|θ| H diag|θ|) with its residual (`landscape.sharpness.normalized_sharpness`).

The Hessian is that of the run's own training loss, in the run's dtype (or float64 with `--float64`), over the
first `--samples` samples of the chosen split.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "probe_run", "train_recipe"]


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
                f"(the one with {RESULT_FILE}) or a file inside it"
            )
    elif path.is_file() and path.name != RESULT_FILE:
        raise ValueError(f"{checkpoint}: not a run folder, {RESULT_FILE} or stored weights file")
    return load_run(path, root=root), step


def probe_run(
    checkpoint: str,
    *,
    root: str | None = None,
    data_root: str | None = None,
    split: str = "train",
    samples: int = 1000,
    float64: bool = False,
    tol: float = 1e-4,
    trace_matvecs: int = 60,
    sharpness: bool = True,
    seed: int = 0,
) -> dict:
    """Run the standard probes on a stored run; returns a dict of plain numbers (what `probe` prints)."""
    from .data import load_dataset
    from .eigen import top_eigenvalues
    from .operators import HessianOperator
    from .sharpness import normalized_sharpness
    from .trace import hessian_trace
    from .train import loss_function

    if split not in ("train", "test"):
        raise ValueError(f"unknown split {split!r}; expected 'train' or 'test'")
    if samples < 1:
        raise ValueError(f"samples must be positive, got {samples}")
    record, step = _resolve(checkpoint, root)
    model = record.model(step)
    if float64:
        model = model.double()
    data = load_dataset(record.config.dataset, data_root)
    x, y = data.train if split == "train" else data.test
    batch = (x[:samples], y[:samples])
    loss_fn = loss_function(record.config.loss)
    out: dict = {
        "run": record.key,
        "model": record.config.model,
        "status": record.status,
        "step": "final" if step is None else step,
        "samples": len(batch[1]),
        "split": split,
        "dtype": str(next(model.parameters()).dtype).removeprefix("torch."),
        "test_acc": record.final.get("test_acc"),
    }
    start = time.perf_counter()
    op = HessianOperator(model, loss_fn, batch)
    top = top_eigenvalues(op, 1, tol=tol, seed=seed)
    out["lambda_max"], out["lambda_max_residual"] = float(top.values[0]), float(top.residuals[0])
    tr = hessian_trace(op, trace_matvecs, seed=seed)
    out["trace"], out["trace_stderr"] = tr.estimate, tr.stderr
    if sharpness:
        ns = normalized_sharpness(model, loss_fn, batch, tol=tol, trace_matvecs=0, seed=seed)
        out["normalized_sharpness"], out["normalized_sharpness_residual"] = ns.lambda_max, ns.residual
    out["seconds"] = time.perf_counter() - start
    return out


def _table(result: dict) -> str:
    lines = [
        (
            f"run {result['run']}  model {result['model']}  status {result['status']}  "
            f"step {result['step']}  test acc {result['test_acc']}"
        ),
        f"Hessian of the training loss on {result['samples']} {result['split']} samples ({result['dtype']})",
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


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="landscape", description="Loss-surface probes for stored runs.")
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
        help="λmax, trace and normalised sharpness of a stored run",
        description="Run the standard curvature probes on a stored run and print a table.",
    )
    p.add_argument(
        "checkpoint", help="run folder, its result.json, a run key, or a weights file inside a run"
    )
    p.add_argument("--root", help="cache root holding runs/ (default: $LANDSCAPE_CACHE or ./results)")
    p.add_argument("--data-root", help="folder of the data set (image data sets) or of the MNIST-1D cache")
    p.add_argument("--split", choices=("train", "test"), default="train", help="data the loss is taken over")
    p.add_argument("--samples", type=int, default=1000, help="number of samples (default 1000)")
    p.add_argument("--float64", action="store_true", help="probe in float64")
    p.add_argument("--tol", type=float, default=1e-4, help="relative tolerance of Lanczos (default 1e-4)")
    p.add_argument("--trace-matvecs", type=int, default=60, help="products for the trace (default 60)")
    p.add_argument("--no-sharpness", action="store_true", help="skip the normalised sharpness")
    p.add_argument("--seed", type=int, default=0, help="seed of the random probes (default 0)")
    return parser


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
        if args.samples < 1:
            parser.error(f"--samples must be a positive integer, got {args.samples}")
        if args.trace_matvecs < 4:
            parser.error(f"--trace-matvecs must be at least 4, got {args.trace_matvecs}")
        try:
            result = probe_run(
                args.checkpoint,
                root=args.root,
                data_root=args.data_root,
                split=args.split,
                samples=args.samples,
                float64=args.float64,
                tol=args.tol,
                trace_matvecs=args.trace_matvecs,
                sharpness=not args.no_sharpness,
                seed=args.seed,
            )
        except (FileNotFoundError, ValueError) as err:
            print(f"landscape probe: error: {err}", file=sys.stderr)
            return 2
        print(_table(result))
    return 0
