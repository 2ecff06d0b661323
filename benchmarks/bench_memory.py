"""Peak resident memory and wall time of curvature probes on torchvision ResNet-18, against PyHessian and curvlinops.

Model and data: `torchvision.models.resnet18(num_classes=10)` (D = 11.2M, weights seeded with
`torch.manual_seed(0)`, nothing downloaded) in eval mode, on 64 seeded random images 3x32x32 with seeded random
labels, float32, cross-entropy (mean). For each tool and quantity:

  - top-k eigenvalues (k = 5): ours `top_eigenvalues(HessianOperator(...), k, tol=1e-3)` (relative tolerance on
    each eigenvalue); PyHessian `hessian(...).eigenvalues(top_n=k)` (power iteration with deflation, its default
    tol 1e-3 between consecutive estimates, maxIter 100 per eigenvalue); curvlinops `HessianLinearOperator` with
    scipy `eigsh(k, which="LA", tol=1e-3)` (ARPACK, the scipy route curvlinops documents; it has no Lanczos of
    its own for extreme eigenvalues);
  - trace with 100 products for every tool: ours `hessian_trace(op, 100)` (XTrace), PyHessian `.trace(maxIter=100,
    tol=-inf)` (Hutchinson; tol=-inf so it never stops early), curvlinops `xtrace(op, 100)`;
  - the same two in their leanest settings: ours with `max_basis=k + 2` (a thick-restart basis of k + 2
    columns, about what power iteration with deflation stores), and ours `hessian_trace(op, 100,
    method="hutchinson", chunk_size=1)` (PyHessian's estimator with the same probe stream, so the same estimate:
    equal accuracy by construction);
  - normalised sharpness (ours only, no peer computes it): `normalized_sharpness(model, F.cross_entropy, (x, y))`
    with its defaults, as in the README snippet.

Each (tool, quantity) runs in a fresh subprocess (`--one TOOL QUANTITY`), so its peak resident memory
(`ru_maxrss`) belongs to that quantity alone. The baseline is the resident memory after importing the tool and
building model and data; the increment is peak minus baseline. Wall time covers the operator's construction
(each tool's gradient graph) and the quantity. The parent kills a child whose resident memory passes
`--max-rss-gb` (default 90% of the memory available at the start) and reports it as such.

Peers are imported when available (`nox -s bench` installs them); a missing peer is reported as such. Results:
benchmarks/results/memory.{json,md}. `--quick` (a smoke run) uses torchvision's shufflenet_v2_x0_5 (D = 0.35M,
BatchNorm) on 8 images, top-1 to 1e-2 and 10 products.

    python benchmarks/bench_memory.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torchvision
from reporting import markdown_table
from torch.nn import functional as F

from landscape import HessianOperator, hessian_trace, normalized_sharpness, top_eigenvalues

RESULTS = Path(__file__).resolve().parent / "results"
GB = 1e9
# (tool, quantity) pairs, each run in its own process.
JOBS = [
    ("landscape", "top_k"),
    ("landscape", "top_k_lean"),
    ("pyhessian", "top_k"),
    ("curvlinops", "top_k"),
    ("landscape", "trace"),
    ("landscape", "trace_hutchinson"),
    ("pyhessian", "trace"),
    ("curvlinops", "trace"),
    ("landscape", "normalized_sharpness"),
]
FULL = {"model": "resnet18", "images": 64, "size": 32, "k": 5, "tol": 1e-3, "matvecs": 100}
# A smoke run: a torchvision model with BatchNorm of D = 0.35M (the solvers' O(D) work on ResNet-18 alone takes
# minutes), top-1 to 1e-2, 10 products and a loose sharpness run.
QUICK = {"model": "shufflenet_v2_x0_5", "images": 8, "size": 32, "k": 1, "tol": 1e-2, "matvecs": 10}


def build(cfg: dict, images: int) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    """The seeded model (torchvision, no weights downloaded) in eval mode, and `images` seeded random images of
    3 x size x size with seeded labels."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, cfg["model"])(num_classes=10).eval()
    size = cfg["size"]
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(images, 3, size, size, generator=gen)
    y = torch.randint(0, 10, (images,), generator=gen)
    return model, x, y


def current_rss_bytes() -> int:
    with Path("/proc/self/statm").open() as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss_of(pid: int) -> int:
    """Resident memory of another process in bytes (0 once it has exited)."""
    try:
        with Path(f"/proc/{pid}/statm").open() as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (FileNotFoundError, ProcessLookupError):
        return 0


class CountColumns:
    """Counts the columns a curvlinops operator multiplies, by wrapping its `_matmat` (tensor-list format, the
    column axis last)."""

    def __init__(self, op) -> None:
        self.count = 0
        original = op._matmat

        def counted(M):
            self.count += M[0].shape[-1]
            return original(M)

        op._matmat = counted


class CountCalls:
    """Counts calls of a module-level function (PyHessian's `hessian_vector_product`)."""

    def __init__(self, module, name: str) -> None:
        self.count = 0
        original = getattr(module, name)

        def counted(*args, **kwargs):
            self.count += 1
            return original(*args, **kwargs)

        setattr(module, name, counted)


# ----------------------------------------------------------------------------------------------------------------
# One quantity of one tool (runs in a child process)


def run_landscape(quantity: str, model, x, y, cfg: dict, quick: bool) -> dict:
    if quantity == "normalized_sharpness":
        kwargs = {"tol": cfg["tol"], "trace_matvecs": cfg["matvecs"]} if quick else {}
        ns = normalized_sharpness(model, F.cross_entropy, (x, y), **kwargs)
        return {
            "value": {"lambda_max": ns.lambda_max, "residual": ns.residual, "trace": ns.trace},
            "products": ns.num_matvecs,
        }
    op = HessianOperator(model, F.cross_entropy, (x, y))
    setup = time.perf_counter()
    if quantity.startswith("top_k"):
        max_basis = cfg["k"] + 2 if quantity == "top_k_lean" else None
        res = top_eigenvalues(op, cfg["k"], tol=cfg["tol"], seed=0, max_basis=max_basis)
        return {
            "setup_end": setup,
            "value": res.values.tolist(),
            "residuals": res.residuals.tolist(),
            "converged": res.converged,
            "products": res.num_matvecs,
        }
    if quantity == "trace_hutchinson":  # PyHessian's estimator and probes, one product at a time
        tr = hessian_trace(op, cfg["matvecs"], method="hutchinson", chunk_size=1, seed=0)
    else:
        tr = hessian_trace(op, cfg["matvecs"], seed=0)
    return {"setup_end": setup, "value": tr.estimate, "stderr": tr.stderr, "products": tr.num_matvecs}


def run_pyhessian(quantity: str, model, x, y, cfg: dict, quick: bool) -> dict:
    ph = importlib.import_module("pyhessian.hessian")  # the package re-exports a class of that name
    hess = ph.hessian(model, F.cross_entropy, data=(x, y), cuda=False)
    setup = time.perf_counter()
    counter = CountCalls(ph, "hessian_vector_product")
    torch.manual_seed(0)  # PyHessian draws its vectors from the global generator
    if quantity == "top_k":
        values, _ = hess.eigenvalues(top_n=cfg["k"], tol=cfg["tol"])  # default maxIter=100; default tol 1e-3
        return {"setup_end": setup, "value": [float(v) for v in values], "products": counter.count}
    # tol=-inf: PyHessian's test |Δmean| / (mean + 1e-6) < tol also stops at a negative running mean for any
    # finite negative tol.
    samples = hess.trace(maxIter=cfg["matvecs"], tol=-math.inf)
    return {"setup_end": setup, "value": float(np.mean(samples)), "products": counter.count}


def run_curvlinops(quantity: str, model, x, y, cfg: dict, quick: bool) -> dict:
    import curvlinops
    from scipy.sparse.linalg import eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    op = curvlinops.HessianLinearOperator(
        model, torch.nn.CrossEntropyLoss(), params, [(x, y)], check_deterministic=False
    )
    setup = time.perf_counter()
    counter = CountColumns(op)
    if quantity == "top_k":
        v0 = np.random.default_rng(0).standard_normal(op.shape[0])
        values = eigsh(
            op.to_scipy(), k=cfg["k"], which="LA", tol=cfg["tol"], v0=v0, return_eigenvectors=False
        )
        return {"setup_end": setup, "value": sorted(values.tolist(), reverse=True), "products": counter.count}
    torch.manual_seed(0)  # curvlinops draws its probes from the global generator
    return {
        "setup_end": setup,
        "value": float(curvlinops.xtrace(op, cfg["matvecs"])),
        "products": counter.count,
    }


TOOLS = {"landscape": run_landscape, "pyhessian": run_pyhessian, "curvlinops": run_curvlinops}
# Imported before the baseline is taken, so that it holds each tool's libraries.
MODULES = {
    "landscape": [],
    "pyhessian": ["pyhessian.hessian"],
    "curvlinops": ["curvlinops", "scipy.sparse.linalg"],
}


def one(tool: str, quantity: str, cfg: dict, quick: bool, threads: int) -> dict:
    torch.set_num_threads(threads)
    for name in MODULES[tool]:
        try:
            importlib.import_module(name)
        except (ImportError, AttributeError, RuntimeError) as err:  # a broken peer is reported, not fatal
            return {"error": f"unavailable ({type(err).__name__}: {err})"}
    model, x, y = build(cfg, cfg["images"])
    baseline = current_rss_bytes()
    start = time.perf_counter()
    out = TOOLS[tool](quantity, model, x, y, cfg, quick)
    end = time.perf_counter()
    setup_end = out.pop("setup_end", None)
    return {
        "baseline_rss_GB": baseline / GB,
        "peak_rss_GB": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB,
        "seconds": end - start,
        "setup_seconds": None if setup_end is None else setup_end - start,
        **out,
    }


# ----------------------------------------------------------------------------------------------------------------
# The parent: one fresh process per (tool, quantity)


def spawn(tool: str, quantity: str, args, limit_bytes: float) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--one",
        tool,
        quantity,
        "--threads",
        str(args.threads),
    ]
    if args.quick:
        cmd.append("--quick")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    killed = False
    while proc.poll() is None:
        if rss_of(proc.pid) > limit_bytes:
            proc.kill()
            killed = True
        time.sleep(0.1)
    stdout = proc.stdout.read()
    if killed:
        return {"error": f"killed: resident memory passed {limit_bytes / GB:.1f} GB"}
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"exit status {proc.returncode}"}
    return json.loads(lines[-1])


def format_value(value) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v:.4g}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(f"{v:.4g}" for v in value)
    return f"{value:.4g}"


def settings(tool: str, quantity: str, cfg: dict, quick: bool) -> str:
    if quantity == "top_k_lean":
        return f"Lanczos, top-{cfg['k']}, tol {cfg['tol']:g}, max_basis k+2 = {cfg['k'] + 2}"
    if quantity == "trace_hutchinson":
        return f"Hutchinson, {cfg['matvecs']} products, chunk_size 1"
    if quantity == "top_k":
        return {
            "landscape": f"Lanczos, top-{cfg['k']}, tol {cfg['tol']:g}",
            "pyhessian": f"power iteration, top-{cfg['k']}, tol {cfg['tol']:g}, maxIter 100",
            "curvlinops": f"scipy eigsh, top-{cfg['k']}, tol {cfg['tol']:g}",
        }[tool]
    if quantity == "trace":
        method = {"landscape": "XTrace", "pyhessian": "Hutchinson", "curvlinops": "XTrace"}[tool]
        return f"{method}, {cfg['matvecs']} products"
    return (
        f"tol {cfg['tol']:g}, trace {cfg['matvecs']} products"
        if quick
        else "defaults (tol 1e-6, trace 60 products)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny images, top-1, 10 products (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--max-rss-gb", type=float, default=None, help="kill a child past this resident memory"
    )
    parser.add_argument("--one", nargs=2, metavar=("TOOL", "QUANTITY"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    if args.one:
        print(json.dumps(one(*args.one, cfg, args.quick, args.threads)), flush=True)
        return
    limit = (
        args.max_rss_gb * GB
        if args.max_rss_gb
        else 0.9 * os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    )
    model, *_ = build(cfg, 1)
    report = {
        "torch": torch.__version__,
        "threads": args.threads,
        "model": f"torchvision {cfg['model']}(num_classes=10), eval, float32",
        "D": sum(p.numel() for p in model.parameters()),
        "config": cfg,
        "max_rss_GB": limit / GB,
        "runs": [],
    }
    rows = []
    for tool, quantity in JOBS:
        print(f"{tool} {quantity}", flush=True)
        res = spawn(tool, quantity, args, limit)
        report["runs"].append({"tool": tool, "quantity": quantity, **res})
        row = {"tool": tool, "quantity": quantity, "settings": settings(tool, quantity, cfg, args.quick)}
        if "error" in res:
            row["peak_rss_GB"] = res["error"]
        else:
            row |= {
                "peak_rss_GB": res["peak_rss_GB"],
                "baseline_rss_GB": res["baseline_rss_GB"],
                "increment_GB": res["peak_rss_GB"] - res["baseline_rss_GB"],
                "seconds": res["seconds"],
                "products": res["products"],
                "value": format_value(res["value"]),
            }
        rows.append(row)

    title = (
        f"### Peak resident memory on {cfg['model']} (D = {report['D'] / 1e6:.2f}M, {cfg['images']} images "
        f"3x{cfg['size']}x{cfg['size']}, eval, float32, {args.threads} threads; one fresh process per row)"
    )
    note = (
        "Peak: `ru_maxrss` of the process; baseline: resident memory after importing the tool and building "
        "model and data; seconds: operator construction and the quantity."
    )
    text = f"{title}\n\n{note}\n\n{markdown_table(rows)}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "memory.md").write_text(text + "\n")
    (RESULTS / "memory.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
