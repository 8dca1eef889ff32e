"""The `experiment` and `report` sub-commands: a paper table as one command, and RESULTS.md from the
cell store (`hashcondense.experiments`)."""

from __future__ import annotations

import argparse
from typing import Any

from hashcondense.cli import common

__all__ = ["add_experiment_parsers", "run_experiment_command", "run_report_command"]

_SUMMARY = "run a table or figure of the IEM paper, cell by cell (cached, resumable)"
_DESCRIPTION = (
    "Compute the cells of an experiment file (a packaged table such as table1, or a .json path) that the "
    "cell store does not hold yet: finished cells are skipped, interrupted ones resumed, cells whose "
    "settings changed recomputed; several invocations can fill one store side by side."
)
_REPORT_SUMMARY = "write RESULTS.md from the cell store, beside the paper's numbers"


def add_experiment_parsers(subparsers: Any) -> None:
    p = common.add_command(subparsers, "experiment", run_experiment_command, _SUMMARY, _DESCRIPTION)
    p.add_argument("name", help="a packaged experiment (table1, ...) or the path of an experiment .json file")
    p.add_argument("--preset", default="cpu", help="the experiment's settings preset: cpu (default) or paper")
    p.add_argument("--root", help="dataset root folder")
    p.add_argument("--out", default="results", help="the cell store (default results/)")
    p.add_argument("--cells", default="*", help="only cells whose key matches, e.g. 'iem/10/*' (default all)")
    p.add_argument("--dry-run", action="store_true", help="list the cells, their state and cost; run none")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    p.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the networks of the cells computed now (faster; rounding-level differences)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars or stage lines")
    r = common.add_command(subparsers, "report", run_report_command, _REPORT_SUMMARY, _REPORT_SUMMARY + ".")
    r.add_argument("--store", default="results", help="the cell store to read (default results/)")
    r.add_argument("--out", default="RESULTS.md", help="the file to write (default RESULTS.md)")
    r.add_argument("--experiment", action="append", help="only this experiment (repeatable; default all)")
    r.add_argument(
        "--check",
        action="store_true",
        help="mark the cells whose sets the code would now make with other settings (loads the data)",
    )
    r.add_argument("--root", help="the datasets' folder, for --check")
    r.add_argument(
        "--no-carry",
        action="store_true",
        help="from the store alone: drop the rows and figures the report at --out shows measured and the "
        "store does not hold (kept by default, marked carried)",
    )


def run_experiment_command(args: argparse.Namespace) -> int:
    from hashcondense.experiments.spec import load_experiment
    from hashcondense.experiments.store import CellStore

    common.check_threads(args)
    experiment = load_experiment(args.name)
    experiment.cells(args.preset, root=args.root)  # every cell checked before anything runs
    store = CellStore(args.out)
    if args.dry_run:
        from hashcondense.experiments.cost import CostModel, machine_gflops
        from hashcondense.experiments.runner import plan_cells

        common.start_compute(args)  # the estimate times this machine at the run's thread count
        model = CostModel(machine_gflops())
        print(
            f"this machine: {model.throughput:.0f} GFLOP per CPU-second of convolution at "
            f"{torch_threads()} thread(s), measured now; prices are CPU-minutes"
        )
        plan = plan_cells(experiment, store, args.preset, args.cells, args.root, price=model)
        for status in plan:
            print(status.line())
        priced = [s.minutes for s in plan if s.minutes is not None]
        print(f"left: {sum(priced) / 60:.1f} CPU-hours estimated over {len(priced)} priced cell(s)")
        return 0
    common.start_compute(args)
    from hashcondense.experiments.runner import run_experiment

    outcomes = run_experiment(
        experiment, store, args.preset, args.cells, args.root, args.quiet, compile=args.compile
    )
    for key, outcome in outcomes:
        print(f"{key}: {outcome}")
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


def run_report_command(args: argparse.Namespace) -> int:
    from hashcondense.experiments.report import write_report
    from hashcondense.experiments.store import CellStore

    store = CellStore(args.store)
    write_report(store, args.out, args.experiment, check=args.check, root=args.root, carry=not args.no_carry)
    print(f"wrote {args.out}")
    return 0
