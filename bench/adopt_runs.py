"""Put runs measured outside the cell store into it, when their settings are the cells' (the library's
`adopt_set` / `adopt_run` check that and refuse anything else), so the report shows them without
computing them again:
- by default the 300-epoch whole-split runs (BENCHMARKS.md "Evaluation recipe on real CIFAR-10",
  2026-12-05; their config and metrics are kept in bench/results/) as table1's whole/64 and whole/32;
- `--set KEY=FOLDER`: a finished `hashcondense condense` folder as the set of table1 cell KEY;
- `--run KEY:SEED=FOLDER`: a finished `hashcondense train` folder as that cell's evaluation seed (of
  the cell's stored set, for a cell that condenses one).

    PYTHONPATH=. .venv/bin/python bench/adopt_runs.py --store bench/out/results
    PYTHONPATH=. .venv/bin/python bench/adopt_runs.py --store bench/out/results --no-whole \\
        --set dsa/10/64=bench/out/dsa_lr/lr0.01 --run dsa/10/64:0=bench/out/dsa_lr/eval_lr0.01_seed0
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

from hashcondense.experiments.runner import adopt_run, adopt_set
from hashcondense.experiments.spec import load_experiment
from hashcondense.experiments.store import CellStore

WHOLE = {"whole/64": "cifar10_whole_64_b64_e300", "whole/32": "cifar10_whole_32_b64_e300"}


def _measured(folder: Path) -> str:
    """The day a run finished (its metrics.json)."""
    return dt.date.fromtimestamp((folder / "metrics.json").stat().st_mtime).isoformat()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", default="bench/out/results")
    parser.add_argument(
        "--root", default="../shared/data/cifar10", help="CIFAR-10 (to resolve a set's settings)"
    )
    parser.add_argument("--no-whole", action="store_true", help="leave out the whole-split runs")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=FOLDER")
    parser.add_argument("--run", action="append", default=[], metavar="KEY:SEED=FOLDER")
    args = parser.parse_args()
    store = CellStore(args.store)
    cells = {cell.key: cell for cell in load_experiment("table1").cells("cpu", root=args.root)}
    results = Path(__file__).parent / "results"
    for key, name in {} if args.no_whole else WHOLE.items():
        config = json.loads((results / f"{name}.config.json").read_text())["config"]
        metrics = json.loads((results / f"{name}.metrics.json").read_text())
        source = f"bench/results/{name} (hashcondense train, 2026-12-05)"
        folder = adopt_run(store, cells[key], 0, config, metrics, source, date="2026-12-05")
        print(f"{key}: mAP {100 * metrics['map']:.2f} -> {folder}")
    for item in args.set:
        key, source = item.split("=", 1)
        print(f"{key}: set {source} -> {adopt_set(store, cells[key], source)}")
    for item in args.run:
        target, source = item.split("=", 1)
        key, seed = target.rsplit(":", 1)
        record = json.loads((Path(source) / "config.json").read_text())
        metrics = json.loads((Path(source) / "metrics.json").read_text())
        folder = adopt_run(
            store, cells[key], int(seed), record["config"], metrics, source,
            date=_measured(Path(source)), train_set=record.get("train_set"),
        )  # fmt: skip
        print(f"{key} seed {seed}: mAP {100 * metrics['map']:.2f} -> {folder}")


if __name__ == "__main__":
    main()
