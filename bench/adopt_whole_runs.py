"""Put the measured 300-epoch whole-split runs (BENCHMARKS.md "Evaluation recipe on real CIFAR-10",
2026-12-05; their config and metrics are kept in bench/results/) into a cell store as table1's
whole/64 and whole/32 cells, whose settings they are (`experiments.runner.adopt_run` checks that), so
the report shows them without 2 x 3 hours of training again.

    PYTHONPATH=. .venv/bin/python bench/adopt_whole_runs.py --store bench/out/results
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from hashcondense.experiments.runner import adopt_run
from hashcondense.experiments.spec import load_experiment
from hashcondense.experiments.store import CellStore

RUNS = {"whole/64": "cifar10_whole_64_b64_e300", "whole/32": "cifar10_whole_32_b64_e300"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="bench/out/results")
    args = parser.parse_args()
    results = Path(__file__).parent / "results"
    cells = {cell.key: cell for cell in load_experiment("table1").cells("cpu")}
    for key, name in RUNS.items():
        config = json.loads((results / f"{name}.config.json").read_text())["config"]
        metrics = json.loads((results / f"{name}.metrics.json").read_text())
        source = f"bench/results/{name} (hashcondense train, 2026-12-05)"
        folder = adopt_run(CellStore(args.store), cells[key], 0, config, metrics, source, date="2026-12-05")
        print(f"{key}: mAP {100 * metrics['map']:.2f} -> {folder}")


if __name__ == "__main__":
    main()
