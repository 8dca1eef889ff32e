"""Condensation in one process of T threads against N processes of one thread (`condense --nproc N`),
in distillation steps per minute of wall-clock time: issue 28's "1 x 2 threads against 2 x 1 thread".

Each arm is the same IEM run (the cpu preset, `--ipc`, seed 0) stopped by a wall-clock `--time-budget`;
steps per minute = the set card's `steps_done` / `distillation_seconds` x 60 (the loop only: data
loading and the pool, read from `--pool-dir`'s cache, are not counted). Arms alternate `--repeats`
times; the medians are printed, and the ratio of the medians.

    PYTHONPATH=. .venv/bin/python bench/bench_nproc.py --root ../shared/data/cifar10 \
        --pool-dir bench/out/results/sets/.pool_cache [--budget 90] [--repeats 2]

Run it on an otherwise idle machine: both arms use every core.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path


def one_run(args: argparse.Namespace, nproc: int, threads: int, out: Path) -> float:
    command = [
        sys.executable, "-m", "hashcondense", "condense", "--dataset", args.dataset, "--method", "iem",
        "--preset", "cpu", "--ipc", str(args.ipc), "--time-budget", str(args.budget), "--threads",
        str(threads), "--out", str(out), "--quiet", "--no-images", "--overwrite",
    ]  # fmt: skip
    if args.root:
        command += ["--root", args.root]
    if args.pool_dir:
        command += ["--pool-dir", args.pool_dir]
    if nproc > 1:
        command += ["--nproc", str(nproc)]
    subprocess.run(command, check=True, env={**os.environ, "HASHCONDENSE_PROGRESS": "0"})
    card = json.loads((out / "card.json").read_text())
    return 60.0 * card["steps_done"] / card["run"]["distillation_seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--root", default=None)
    parser.add_argument("--pool-dir", default=None)
    parser.add_argument("--ipc", type=int, default=10)
    parser.add_argument("--budget", type=float, default=90.0, help="wall-clock seconds of each run's loop")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    arms = {
        f"1 process x {args.cores} threads": (1, args.cores),
        f"{args.cores} processes x 1 thread": (args.cores, 1),
    }
    rates: dict[str, list[float]] = {name: [] for name in arms}
    with tempfile.TemporaryDirectory() as tmp:
        for repeat in range(args.repeats):
            for name, (nproc, threads) in arms.items():
                rate = one_run(args, nproc, threads, Path(tmp) / f"{nproc}x{threads}-{repeat}")
                rates[name].append(rate)
                print(f"{name}: {rate:.1f} steps/min", flush=True)
    medians = {name: statistics.median(values) for name, values in rates.items()}
    for name, value in medians.items():
        print(f"median {name}: {value:.1f} steps/min over {len(rates[name])} runs")
    first, second = medians.values()
    print(f"ratio (processes / threads): {second / first:.2f}")
    print(json.dumps({"rates": rates, "medians": medians, "ipc": args.ipc, "budget_s": args.budget}))


if __name__ == "__main__":
    main()
