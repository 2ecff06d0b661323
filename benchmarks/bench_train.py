"""Multi-seed training: 8 seeds of the MNIST-1D MLP vectorised (`train_seeds`, torch.func vmap) vs 8 separate
`train` runs, same config, same numbers (checked here to float32 rounding).

The config is the paper's MLP recipe (`paper_recipe("mlp")`: 2 × 100 ReLU, Adam 1e-2, batch 100) shortened to
`--steps` steps with one evaluation at the end. Times are medians over `--repeats` repeats of each arm; the
speed-up is sequential / vmapped. Target: ≥ 3×. Results: benchmarks/results/train.{json,md}.

    python benchmarks/bench_train.py [--quick] [--threads N] [--repeats R] [--steps S] [--seeds K]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from landscape.data import mnist1d
from landscape.train import paper_recipe, train, train_seeds

RESULTS = Path(__file__).resolve().parent / "results"


def timed(fn) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer steps and repeats")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per arm (default 3, quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="optimiser steps (default 500, quick 150)")
    parser.add_argument("--seeds", type=int, default=8, help="number of seeds (default 8)")
    args = parser.parse_args()
    repeats = args.repeats or (2 if args.quick else 3)
    steps = args.steps or (150 if args.quick else 500)
    torch.set_num_threads(args.threads)

    data = mnist1d()
    config = replace(paper_recipe("mlp"), steps=steps, eval_every=steps)
    seeds = list(range(args.seeds))
    train_seeds(replace(config, steps=5, eval_every=5), seeds[:2], data=data)  # warm-up (imports, allocator)
    train(replace(config, steps=5, eval_every=5), data=data)

    vmapped_times, sequential_times = [], []
    for _ in range(repeats):
        t, vmapped = timed(lambda: train_seeds(config, seeds, data=data))
        vmapped_times.append(t)
        t, sequential = timed(lambda: [train(replace(config, seed=s), data=data) for s in seeds])
        sequential_times.append(t)
    worst = max(
        float((v.state_dict[k] - s.state_dict[k]).abs().max())
        for v, s in zip(vmapped, sequential, strict=True)
        for k in s.state_dict
    )
    t_vmap, t_seq = statistics.median(vmapped_times), statistics.median(sequential_times)
    ratio = t_seq / t_vmap
    row = {
        "problem": f"MNIST-1D MLP 40-100-100-10, Adam, batch 100, {steps} steps",
        "seeds": len(seeds),
        "threads": args.threads,
        "repeats": repeats,
        "sequential_s": t_seq,
        "vmapped_s": t_vmap,
        "speedup": ratio,
        "target": 3.0,
        "meets_target": ratio >= 3.0,
        "max_abs_weight_difference": worst,
        "torch": torch.__version__,
        "machine": platform.platform(),
    }
    print(f"{'arm':<12}{'seconds (median)':>18}")
    print(f"{'sequential':<12}{t_seq:>18.2f}")
    print(f"{'vmapped':<12}{t_vmap:>18.2f}")
    print(
        f"speed-up {ratio:.2f}x (target >= 3x): {'met' if ratio >= 3 else 'NOT met'}; "
        f"max |Δweight| vmapped vs sequential {worst:.1e}"
    )
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "train.json").write_text(json.dumps(row, indent=1))
    (RESULTS / "train.md").write_text(
        "| problem | seeds | threads | sequential s | vmapped s | speed-up | max abs Δweight |\n"
        "|---|---|---|---|---|---|---|\n"
        f"| {row['problem']} | {len(seeds)} | {args.threads} | {t_seq:.2f} | {t_vmap:.2f} | {ratio:.2f}x "
        f"| {worst:.1e} |\n"
    )


if __name__ == "__main__":
    main()
