"""2-D loss surfaces against loss-landscapes' `random_plane`: grid points per second on P1 (MLP) and P2 (CNN).

For each problem and grid (21×21, 51×51) both tools evaluate the same number of grid points on the same data
with two filter-normalised random directions (drawn inside the timed call, as `random_plane` does), losses only
(`accuracy=False`). Times are medians over repeats; the ratio is ours / theirs in points per second, both
measured in this run. A forward pass of the CNN on a CPU costs about a second, so the CNN cases time the first
`--cnn-points` grid points of the surface (whole rows for `slice_2d`; `random_plane` is stopped after that many
evaluations) with fewer repeats: the per-point cost does not depend on the grid size. The table says how many
points each timing covered.

Also checked: that our surface contains θ exactly (the value at (0, 0) is the model's own loss) and how far
loss-landscapes' grid is from θ (its grid starts at θ − d₁ − d₂ and steps by 2/steps, so it never contains θ).

loss-landscapes is imported from the path (`nox -s bench` installs it into .nox/bench-peers); if it is missing
only our own timings are reported. Results: benchmarks/results/slices.{json,md}.

    python benchmarks/bench_slices.py [--quick] [--threads N] [--repeats R] [--cnn-points K]
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import json
import math
import statistics
import time
from pathlib import Path

import torch
from problems import p1_mlp, p2_resnet
from reporting import markdown_table

from landscape.directions import random_direction
from landscape.slices import slice_2d, symmetric_grid

RESULTS = Path(__file__).resolve().parent / "results"


class _Stop(Exception):
    """Raised by the counting metric to stop loss-landscapes after a fixed number of evaluations."""


def try_loss_landscapes():
    try:
        import loss_landscapes
        from loss_landscapes.metrics import Loss
    except (ImportError, AttributeError, RuntimeError, TypeError) as err:  # reported, not fatal
        print(f"  (peer loss_landscapes unavailable: {type(err).__name__}: {err})")
        return None
    return loss_landscapes, Loss


def ours(problem, steps: int, rows: int) -> tuple[float, int, float]:
    """Seconds for `rows` rows of a steps × steps surface; also the points and the value at θ (if computed)."""
    start = time.perf_counter()
    d1 = random_direction(problem.model, "filter", seed=1)
    d2 = random_direction(problem.model, "filter", seed=2)
    grid = symmetric_grid(1.0, steps)
    centre = steps // 2
    xs = grid[centre - rows // 2 : centre - rows // 2 + rows] if rows < steps else grid
    out = slice_2d(problem.model, problem.loss_fn, problem.data, d1, d2, xs, grid, accuracy=False)
    seconds = time.perf_counter() - start
    at_theta = float("nan")
    hits = (xs == 0).nonzero()
    if len(hits):
        at_theta = float(out.losses[int(hits[0]), centre])
    return seconds, xs.numel() * steps, at_theta


def theirs(peer, problem, steps: int, max_points: int) -> tuple[float, int, str]:
    """Seconds for `random_plane` to evaluate min(steps², max_points) grid points, that number of points, and
    the normalisation used.

    Workaround: loss-landscapes 3.0.6's filter normalisation divides by the norm of every single entry of a
    1-D parameter, and so raises ZeroDivisionError on any model with a zero bias vector (BatchNorm biases at
    initialisation, as in P2). There it is run with `normalization="layer"`, which only changes the one-off
    direction set-up, not the cost of a grid point.
    """
    loss_landscapes, Loss = peer
    metric = Loss(problem.loss_fn, problem.inputs, problem.targets)
    for normalization in ("filter", "layer"):
        calls = 0

        def counted(wrapper):
            nonlocal calls
            if calls == max_points:
                raise _Stop
            calls += 1
            return metric(wrapper)

        start = time.perf_counter()
        try:
            loss_landscapes.random_plane(
                problem.model,
                counted,
                distance=1,
                steps=steps,
                normalization=normalization,
                deepcopy_model=True,
            )
        except _Stop:
            pass
        except ZeroDivisionError:
            if calls:
                raise
            continue
        return time.perf_counter() - start, calls, normalization
    raise RuntimeError("loss-landscapes failed with both filter and layer normalisation")


def bench_case(peer, problem, steps: int, repeats: int, max_points: int) -> dict:
    total = steps * steps
    rows = steps if total <= max_points else max(1, math.ceil(max_points / steps))
    ours(problem, steps, 1)  # warm-up (and vmap tracing)
    mine, mine_points, at_theta = [], 0, float("nan")
    peer_times, peer_points, peer_norm = [], 0, ""
    for _ in range(repeats):  # interleaved, so that both tools see the same machine load
        seconds, mine_points, value = ours(problem, steps, rows)
        mine.append(seconds)
        if not math.isnan(value):
            at_theta = value
        if peer is not None:
            seconds, peer_points, peer_norm = theirs(peer, problem, steps, min(total, max_points))
            peer_times.append(seconds)
    with torch.no_grad():
        own_loss = float(
            problem.loss_fn(copy.deepcopy(problem.model).eval()(problem.inputs), problem.targets)
        )
    row = {
        "problem": problem.name.split(",")[0],
        "grid": f"{steps}x{steps}",
        "ours pts timed": mine_points,
        "ours pts/s": mine_points / statistics.median(mine),
        "theta on grid": (not math.isnan(at_theta)) and abs(at_theta - own_loss) <= 1e-6 * abs(own_loss),
    }
    if peer is not None:
        row["loss-landscapes normalization"] = peer_norm
        row["loss-landscapes pts timed"] = peer_points
        row["loss-landscapes pts/s"] = peer_points / statistics.median(peer_times)
        row["ratio"] = row["ours pts/s"] / row["loss-landscapes pts/s"]
    row["repeats"] = repeats
    print("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.items()))
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, a few CNN points (a smoke run)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="repeats of the MLP cases (default 5)")
    parser.add_argument("--cnn-points", type=int, default=None, help="grid points timed per CNN case")
    parser.add_argument("--problems", default="p1,p2", help="comma-separated subset of p1 (MLP), p2 (CNN)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    repeats = args.repeats or (1 if args.quick else 5)
    cnn_points = args.cnn_points or (4 if args.quick else 42)
    peer = try_loss_landscapes()
    wanted = {name.strip() for name in args.problems.split(",")}
    if not wanted <= {"p1", "p2"}:
        raise SystemExit(f"unknown problems {sorted(wanted - {'p1', 'p2'})}; expected p1, p2")
    plan = []
    if "p1" in wanted:
        plan.append((p1_mlp(), [(21, repeats, 10**9), (51, repeats, 10**9)]))
    if "p2" in wanted:
        plan.append((p2_resnet(), [(21, max(1, repeats // 3), cnn_points), (51, 1, cnn_points)]))

    rows = []
    for problem, cases in plan:
        for steps, reps, max_points in cases:
            print(f"{problem.name}: {steps}x{steps}", flush=True)
            rows.append(bench_case(peer, problem, steps, reps, max_points))

    report = {"torch": torch.__version__, "threads": args.threads, "cnn_points": cnn_points, "rows": rows}
    RESULTS.mkdir(exist_ok=True)
    title = f"### 2-D loss surface: grid points per second (median; {args.threads} threads; torch {torch.__version__})"
    text = f"{title}\n\n{markdown_table(rows)}"
    (RESULTS / "slices.md").write_text(text + "\n")
    (RESULTS / "slices.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(text)


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
