"""The `demo` sub-command: the README's main job on the embedded digits dataset, in a few minutes."""

from __future__ import annotations

import argparse
from typing import Any

from hashcondense.cli import common

__all__ = ["add_demo_parser", "run_demo_command"]


# Its line in `hashcondense --help`, and the head of `hashcondense demo --help`.
_SUMMARY = "the main job on the embedded digits dataset, in a few minutes"
_DESCRIPTION = (
    "Condense digits to 10 stored images per class with IEM, train hashing networks on "
    "that set, on Random sets and on the whole train split, and print the retrieval table; each "
    "run's directory and the table are written under --out."
)


def add_demo_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `demo` sub-command's parser, added to an argparse sub-parsers object."""
    p = common.add_command(subparsers, "demo", run_demo_command, _SUMMARY, _DESCRIPTION)
    p.add_argument("--out", default="runs/demo", help="folder for the runs and the table (default runs/demo)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--threads", type=int, help="CPU threads for torch")
    return p


def run_demo_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense demo`; returns 0."""
    from hashcondense.experiments.demo import run_demo

    common.check_threads(args)
    common.start_compute(args)
    run_demo(out=args.out, seed=args.seed, quick=args.quick, show_progress=not args.quiet)
    return 0
