"""Sweep engine: the same sweep in-process (one worker) and on an embedded Dask `LocalCluster` of single-threaded
worker processes, from an empty run store each time.

The sweep is `--configs` MNIST-1D MLP runs (the paper recipe, 2 × 100 ReLU, Adam, batch 100) that differ in
learning rate, `--steps` steps each, one seed each (so no vectorised grouping: one task per run). The in-process
arm runs with one torch thread per task, as the workers do, so the ratio measures what spreading tasks over
processes gives, including the cluster's start-up (about a second) and the transfer of the data to each task.
On this 2-core machine the cluster's fixed cost (start-up, each worker importing torch) is about 2-4 s, so a
sweep of a few seconds is faster in-process (8 runs x 1000 steps: 4.4 s in-process, 6.3 s on 2 workers) and the
cluster pays from sweeps of tens of seconds on. Each repeat times both arms back to back; times are medians over `--repeats`, the speed-up is in-process /
cluster (of the medians). Results: benchmarks/results/sweep.{json,md}.

    python benchmarks/bench_sweep.py [--quick] [--workers 2] [--repeats R] [--configs C] [--steps S]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from landscape.data import mnist1d
from landscape.results import run_sweep
from landscape.train import paper_recipe

RESULTS = Path(__file__).resolve().parent / "results"


def one_sweep(configs, data, workers: int) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        frame = run_sweep(configs, root=root, workers=workers, data={"mnist1d": data}, progress=False)
        seconds = time.perf_counter() - start
    if not frame["computed"].all() or len(frame) != len(configs):
        raise RuntimeError("the sweep did not train every run")
    return seconds


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help="a short check (2 repeats, 4 configs, 200 steps)"
    )
    parser.add_argument("--workers", type=int, default=2, help="processes of the cluster arm (default 2)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", type=int, default=8)
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.configs, args.steps = 2, 4, 200
    data = mnist1d()
    configs = [
        paper_recipe("mlp", lr=1e-3 * (1 + i), steps=args.steps, eval_every=args.steps)
        for i in range(args.configs)
    ]
    in_process, cluster, loads = [], [], []
    for _ in range(args.repeats):
        loads.append(os.getloadavg()[0])
        in_process.append(one_sweep(configs, data, workers=1))
        cluster.append(one_sweep(configs, data, workers=args.workers))
    row = {
        "configs": args.configs,
        "steps": args.steps,
        "workers": args.workers,
        "in_process_s": statistics.median(in_process),
        "cluster_s": statistics.median(cluster),
        "speedup": statistics.median(in_process) / statistics.median(cluster),
        "in_process_runs_s": in_process,
        "cluster_runs_s": cluster,
        "load_average": loads,
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sweep.json").write_text(json.dumps(row, indent=1) + "\n")
    table = (
        "| runs × steps | in-process (1 thread per task) | LocalCluster | speed-up | repeats |\n"
        "|---|---|---|---|---|\n"
        f"| {args.configs} × {args.steps} | {row['in_process_s']:.2f} s | {row['cluster_s']:.2f} s "
        f"({args.workers} workers) | {row['speedup']:.2f}× | {args.repeats} |\n"
    )
    (RESULTS / "sweep.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
