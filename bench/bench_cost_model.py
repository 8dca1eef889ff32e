"""How well `experiment --dry-run` prices cells: the cost model's estimate of each finished evaluation
against the seconds its history.json measured (training + encoding), for every cell of a store.

    PYTHONPATH=. .venv/bin/python bench/bench_cost_model.py --store bench/out/results \
        --root ../shared/data/cifar10 [--threads 1]

Prints one row per finished evaluation run (estimated s, measured s, ratio) and the median ratio; the
throughput is measured once at the start on the CPU clock (`experiments.cost.machine_gflops`).
Measured seconds are wall-clock: on a busy machine they exceed CPU time, which the ratio then shows.
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch

from hashcondense.experiments.cost import EFFICIENCY, CostModel, machine_gflops
from hashcondense.experiments.runner import _Datasets
from hashcondense.experiments.spec import list_experiments, load_experiment
from hashcondense.experiments.store import CellStore


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="bench/out/results")
    parser.add_argument("--root", default=None)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    model, store, datasets = CostModel(machine_gflops()), CellStore(args.store), _Datasets()
    print(
        f"throughput {model.throughput:.1f} GFLOP per CPU-second at {args.threads} thread(s); "
        f"efficiency {EFFICIENCY}"
    )
    seen, ratios = set(), []
    print(f"{'cell':<24} {'seed':>4} {'estimated s':>12} {'measured s':>11} {'ratio':>6}")
    for name in list_experiments():
        experiment = load_experiment(name)
        for preset in experiment.presets():
            for cell in experiment.cells(preset, root=args.root):
                for seed in store.metrics(cell):
                    folder = store.seed_folder(cell, seed)
                    if folder in seen or not (folder / "history.json").is_file():
                        continue
                    seen.add(folder)
                    data = datasets.get(cell.evaluate)
                    images = (
                        model.decoded_images(cell.condense, data)
                        if cell.condense
                        else len(data.indices("train"))
                    )
                    estimate = model.evaluation_seconds(cell.evaluate, data, images)
                    seconds = json.loads((folder / "history.json").read_text())["seconds"]
                    measured = seconds["train"] + seconds["evaluate"]
                    ratios.append(estimate / measured)
                    print(f"{cell.key:<24} {seed:>4} {estimate:>12.0f} {measured:>11.0f} {ratios[-1]:>6.2f}")
    if ratios:
        print(f"median estimated/measured over {len(ratios)} runs: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
