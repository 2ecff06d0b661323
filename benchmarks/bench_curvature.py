"""Curvature core against peer tools on the shared reference problems P1 and P2, in one run.

Measures (medians over repeats, ratios taken within this run):
  1. cost of one Hessian-vector product in gradients (P1, P2), single vectors and blocks;
  2. top-5 eigenvalues of P1 to 1e-6: products, wall time, error against the exact dense spectrum;
  3. λmax of P2: wall time, products, error against a tight reference;
  4. trace error at 10/50/100 products over 20 seeds on P1.

Peers (PyHessian, hessian-eigenthings, curvlinops) are imported when available (`nox -s bench` installs them);
a missing peer is reported as such. Results: benchmarks/results/curvature.{json,md}.

    python benchmarks/bench_curvature.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import math
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from problems import p1_mlp, p2_resnet
from reporting import markdown_table

from landscape import HessianOperator, hessian_trace, top_eigenvalues

RESULTS = Path(__file__).resolve().parent / "results"


def median_time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def gradient_time(problem, repeats: int) -> float:
    params = list(problem.model.parameters())

    def grad():
        loss = problem.loss_fn(problem.model(problem.inputs), problem.targets)
        torch.autograd.grad(loss, params)

    return median_time(grad, repeats)


class Counter:
    """Counts calls of a peer's HVP function by wrapping the attribute (of a module or an object) it is looked
    up through."""

    def __init__(self, module, name: str) -> None:
        self.module, self.name, self.count = module, name, 0
        self.original = getattr(module, name)

    def __enter__(self):
        def counted(*args, **kwargs):
            self.count += 1
            return self.original(*args, **kwargs)

        setattr(self.module, self.name, counted)
        return self

    def __exit__(self, *exc):
        setattr(self.module, self.name, self.original)


def try_import(name: str):
    try:
        return __import__(name, fromlist=["*"])
    except (ImportError, AttributeError, RuntimeError) as err:  # a broken peer is reported, not fatal
        print(f"  (peer {name} unavailable: {type(err).__name__}: {err})")
        return None


def pyhessian_object(problem):
    ph = try_import("pyhessian")
    if ph is None:
        return None, None
    ph_hessian = importlib.import_module("pyhessian.hessian")  # the package re-exports a class of that name

    model = problem.model
    for p in model.parameters():
        p.grad = None
    return ph_hessian.hessian(model, problem.loss_fn, data=problem.data, cuda=False), ph_hessian


def clear_grads(model) -> None:
    for p in model.parameters():  # PyHessian leaves its create_graph gradients in .grad
        p.grad = None


# ----------------------------------------------------------------------------------------------------------------


def bench_hvp_cost(problem, repeats: int, block: int) -> dict:
    out = {"problem": problem.name, "D": problem.num_params}
    t_grad = gradient_time(problem, repeats)
    out["gradient_s"] = t_grad
    gen = torch.Generator().manual_seed(0)
    dtype = next(problem.model.parameters()).dtype
    v = torch.randn(problem.num_params, generator=gen, dtype=torch.float64).to(dtype)
    V = torch.randn(problem.num_params, block, generator=gen, dtype=torch.float64).to(dtype)
    setup_start = time.perf_counter()
    op = HessianOperator(problem.model, problem.loss_fn, problem.data)
    out["ours_setup_in_gradients"] = (time.perf_counter() - setup_start) / t_grad
    out["ours_hvp_in_gradients"] = median_time(lambda: op @ v, repeats) / t_grad
    out[f"ours_block{block}_per_vector_in_gradients"] = median_time(lambda: op @ V, repeats) / block / t_grad
    fresh = HessianOperator(problem.model, problem.loss_fn, problem.data, cache_graph=False)
    out["ours_no_cache_hvp_in_gradients"] = median_time(lambda: fresh @ v, repeats) / t_grad
    hess, ph_hessian = pyhessian_object(problem)
    if hess is not None:
        vs = [
            c.reshape(p.shape)
            for c, p in zip(torch.split(v, [p.numel() for p in hess.params]), hess.params, strict=True)
        ]
        t = median_time(lambda: ph_hessian.hessian_vector_product(hess.gradsH, hess.params, vs), repeats)
        out["pyhessian_hvp_in_gradients"] = t / t_grad
        clear_grads(problem.model)
    cl = try_import("curvlinops")
    if cl is not None:
        params = [p for p in problem.model.parameters() if p.requires_grad]
        crit = torch.nn.CrossEntropyLoss()
        cl_op = cl.HessianLinearOperator(
            problem.model, crit, params, [problem.data], check_deterministic=False
        )
        out["curvlinops_hvp_in_gradients"] = median_time(lambda: cl_op @ v, repeats) / t_grad
        out[f"curvlinops_block{block}_per_vector_in_gradients"] = (
            median_time(lambda: cl_op @ V, repeats) / block / t_grad
        )
    return out


def bench_top5_p1(problem, exact: torch.Tensor, repeats: int) -> list[dict]:
    rows = []
    k = 5
    top = exact[:k]

    def error(values) -> float:
        values = torch.as_tensor(values, dtype=torch.float64).sort(descending=True).values
        return float(((values - top) / top).abs().max())

    def ours():
        op = HessianOperator(problem.model, problem.loss_fn, problem.data)
        return top_eigenvalues(op, k, tol=1e-6, seed=0)

    res = ours()
    rows.append(
        {
            "tool": "landscape (Lanczos, tol 1e-6)",
            "hvps": res.num_matvecs,
            "seconds": median_time(ours, repeats),
            "max_rel_error": error(res.values),
            "repeated_copies": False,
        }
    )
    hess, ph_hessian = pyhessian_object(problem)
    if hess is not None:
        with Counter(ph_hessian, "hessian_vector_product") as counter:
            torch.manual_seed(0)
            start = time.perf_counter()
            values, _ = hess.eigenvalues(top_n=k)
            seconds = time.perf_counter() - start
        rows.append(
            {
                "tool": "PyHessian (power iteration, default tol 1e-3)",
                "hvps": counter.count,
                "seconds": seconds,
                "max_rel_error": error(values),
            }
        )
        clear_grads(problem.model)
    he = try_import("hessian_eigenthings")
    if he is not None:
        op = he.HessianOperator(problem.model, [problem.data], he.supervised_loss(problem.loss_fn))
        with Counter(op, "matvec") as counter:
            start = time.perf_counter()
            result = he.lanczos(op, k=k, tol=1e-6, which="LA", seed=0, max_iter=200)
            seconds = time.perf_counter() - start
        rows.append(
            {
                "tool": "hessian-eigenthings (lanczos, tol 1e-6)",
                "hvps": counter.count,
                "seconds": seconds,
                "max_rel_error": error(result.eigenvalues),
            }
        )
    cl = try_import("curvlinops")
    if cl is not None:
        from scipy.sparse.linalg import eigsh

        params = list(problem.model.parameters())
        cl_op = cl.HessianLinearOperator(
            problem.model, torch.nn.CrossEntropyLoss(), params, [problem.data], check_deterministic=False
        )
        scipy_op = cl_op.to_scipy()
        with Counter(scipy_op, "matvec") as counter:
            start = time.perf_counter()
            values = eigsh(
                scipy_op, k=k, which="LA", tol=1e-6, v0=np.ones(problem.num_params), return_eigenvectors=False
            )
            seconds = time.perf_counter() - start
        rows.append(
            {
                "tool": "curvlinops + scipy eigsh (ARPACK, tol 1e-6)",
                "hvps": counter.count,
                "seconds": seconds,
                "max_rel_error": error(values),
            }
        )
    return rows


def bench_lambda_max_p2(problem, repeats: int) -> list[dict]:
    op = HessianOperator(problem.model, problem.loss_fn, problem.data)
    reference = top_eigenvalues(op, 1, tol=1e-11, seed=1, max_matvecs=300)
    ref = float(reference.values[0])
    rows = [
        {
            "tool": "reference (Lanczos, tol 1e-11)",
            "value": ref,
            "residual": float(reference.residuals[0]),
            "hvps": reference.num_matvecs,
        }
    ]

    def ours():
        o = HessianOperator(problem.model, problem.loss_fn, problem.data)
        return top_eigenvalues(o, 1, tol=1e-6, seed=0)

    res = ours()
    rows.append(
        {
            "tool": "landscape (Lanczos, tol 1e-6)",
            "hvps": res.num_matvecs,
            "seconds": median_time(ours, max(1, repeats // 2)),
            "rel_error": abs(float(res.values[0]) - ref) / abs(ref),
        }
    )
    hess, ph_hessian = pyhessian_object(problem)
    if hess is not None:
        with Counter(ph_hessian, "hessian_vector_product") as counter:
            torch.manual_seed(0)
            start = time.perf_counter()
            values, _ = hess.eigenvalues(top_n=1)
            seconds = time.perf_counter() - start
        # PyHessian builds its gradient graph in the constructor: add that time for a like-for-like run.
        start = time.perf_counter()
        pyhessian_object(problem)
        seconds += time.perf_counter() - start
        rows.append(
            {
                "tool": "PyHessian (power iteration, default tol 1e-3)",
                "hvps": counter.count,
                "seconds": seconds,
                "rel_error": abs(values[0] - ref) / abs(ref),
            }
        )
        clear_grads(problem.model)
    return rows


def bench_trace_p1(problem, exact_trace: float, seeds: int) -> list[dict]:
    """RMS relative error over seeds at each budget, with its standard error (delta method: sd(e²) / (2·RMS·√n)):
    at 20 seeds one RMS is uncertain by about ±20 %, so two tools are told apart only beyond their ± columns."""
    op = HessianOperator(problem.model, problem.loss_fn, problem.data)
    rows = []
    budgets = (10, 50, 100)

    def summary(tool, errors_by_budget):
        row = {"tool": tool}
        for b, errs in errors_by_budget.items():
            sq = torch.tensor(errs, dtype=torch.float64).div(abs(exact_trace)).square()
            rms = float(sq.mean().sqrt())
            row[f"rms_rel_error@{b}"] = rms
            row[f"±@{b}"] = float(sq.std() / (2 * rms * math.sqrt(len(errs)))) if rms > 0 else 0.0
        rows.append(row)

    ours = (  # (label, method, probes): the defaults, and XTrace's normalised variant
        ("hutchinson", "hutchinson", "rademacher"),
        ("hutch++", "hutch++", "rademacher"),
        ("xtrace", "xtrace", "rademacher"),
        ("xtrace (sphere probes, normalised)", "xtrace", "sphere"),
    )
    for label, method, distribution in ours:
        summary(
            f"landscape {label}",
            {
                b: [
                    hessian_trace(op, b, method=method, seed=s, distribution=distribution).estimate
                    - exact_trace
                    for s in range(seeds)
                ]
                for b in budgets
            },
        )
    hess, _ = pyhessian_object(problem)
    if hess is not None:
        errs = {}
        for b in budgets:
            errs[b] = []
            for s in range(seeds):
                torch.manual_seed(s)
                errs[b].append(float(sum(hess.trace(maxIter=b, tol=-1.0)) / b) - exact_trace)
        summary("PyHessian (Hutchinson)", errs)
        clear_grads(problem.model)
    cl = try_import("curvlinops")
    if cl is not None:
        params = list(problem.model.parameters())
        cl_op = cl.HessianLinearOperator(
            problem.model, torch.nn.CrossEntropyLoss(), params, [problem.data], check_deterministic=False
        )
        for name, fn in (
            ("hutchinson", cl.hutchinson_trace),
            ("hutch++", cl.hutchpp_trace),
            ("xtrace", cl.xtrace),
        ):
            errs = {}
            for b in budgets:
                errs[b] = []
                for s in range(seeds):
                    torch.manual_seed(s)
                    budget = b - b % 3 if name == "hutch++" else b
                    errs[b].append(float(fn(cl_op, budget)) - exact_trace)
            summary(f"curvlinops {name}", errs)
    return rows


def exact_p1(p1) -> tuple[torch.Tensor, float]:
    """Exact spectrum and trace of P1 from its dense float64 Hessian (cached: it takes minutes)."""
    cache = RESULTS / "p1_exact_spectrum.pt"
    if cache.exists():
        saved = torch.load(cache, weights_only=True)
        return saved["eigenvalues"], float(saved["trace"])
    print(f"exact spectrum of P1 (dense float64 Hessian, D = {p1.num_params})...", flush=True)
    op = HessianOperator(p1.model, p1.loss_fn, p1.data)
    eye = torch.eye(op.dim, dtype=torch.float64)
    dense = torch.cat([op @ eye[:, i : i + 512] for i in range(0, op.dim, 512)], 1)
    exact = torch.linalg.eigvalsh((dense + dense.T) / 2).flip(0)
    trace = float(dense.trace())
    RESULTS.mkdir(exist_ok=True)
    torch.save({"eigenvalues": exact, "trace": torch.tensor(trace)}, cache)
    return exact, trace


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and seeds (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = 3 if args.quick else 15
    seeds = 5 if args.quick else 20
    p1, p2 = p1_mlp(), p2_resnet()

    exact, exact_trace = exact_p1(p1)

    report = {"torch": torch.__version__, "threads": args.threads, "repeats": repeats, "seeds": seeds}
    sections = []
    print("1. HVP cost in gradients", flush=True)
    report["hvp_cost"] = [bench_hvp_cost(p1, repeats, 10), bench_hvp_cost(p2, max(3, repeats // 3), 4)]
    sections.append(("HVP cost in gradients (median time of one product / one gradient)", report["hvp_cost"]))
    print("2. top-5 of P1", flush=True)
    report["top5_p1"] = bench_top5_p1(p1, exact, max(1, repeats // 3))
    sections.append(
        ("Top-5 eigenvalues of P1 (error: max relative, against dense eigvalsh)", report["top5_p1"])
    )
    print("3. λmax of P2", flush=True)
    # float64: in float32 the products themselves carry ~1e-6 relative noise, so "to 1e-6" would be moot.
    report["lambda_max_p2"] = bench_lambda_max_p2(p2_resnet(dtype=torch.float64), 2 if args.quick else 3)
    sections.append(("λmax of P2 (float64)", report["lambda_max_p2"]))
    print("4. trace error on P1", flush=True)
    report["trace_p1"] = bench_trace_p1(p1, exact_trace, seeds)
    sections.append((f"Trace of P1: RMS relative error over {seeds} seeds", report["trace_p1"]))

    RESULTS.mkdir(exist_ok=True)
    text = "\n\n".join(f"### {title}\n\n{markdown_table(rows)}" for title, rows in sections)
    (RESULTS / "curvature.md").write_text(text + "\n")
    (RESULTS / "curvature.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
