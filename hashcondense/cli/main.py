"""The command line: a thin layer over the library API.

    hashcondense train     --dataset D --train-set {whole,random:N,PATH} --hash H --arch A --bits B --out DIR
    hashcondense condense  --dataset D --method M --ipc N --out DIR
    hashcondense demo      [--out DIR]
    hashcondense encode    --run RUN (--images FOLDER | --dataset D [--split S]) --out CODES
    hashcondense index build --codes CODES --out INDEX [--kind flat|ivf]
    hashcondense search    --index INDEX --run RUN (--image FILE | --images FOLDER | --queries SPLIT)
    hashcondense list

Each sub-command lives in its own module (`cli.train`, `cli.condense`, `cli.demo`; the serving
commands in `cli.serve`) and sets its handler on the parsed arguments. A user mistake prints one line
on stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from hashcondense import __version__
from hashcondense.cli.common import Parser
from hashcondense.cli.condense import add_condense_parser
from hashcondense.cli.demo import add_demo_parser
from hashcondense.cli.experiment import add_experiment_parsers
from hashcondense.cli.serve import add_encode_parser, add_index_parser, add_search_parser
from hashcondense.cli.train import add_train_parser
from hashcondense.errors import HashCondenseError

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    """The `hashcondense` parser; cheap (no torch import), so that a mistake is answered at once."""
    parser = Parser(prog="hashcondense", description="Dataset condensation for deep hashing retrieval.")
    parser.add_argument("--version", action="version", version=f"hashcondense {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=Parser)
    add_train_parser(sub)
    add_condense_parser(sub)
    add_demo_parser(sub)
    add_experiment_parsers(sub)
    add_encode_parser(sub)
    add_index_parser(sub)
    add_search_parser(sub)
    listing = sub.add_parser("list", help="list datasets, networks, hashing and condensation methods")
    listing.set_defaults(handler=_run_list)
    return parser


def _run_list(_: argparse.Namespace) -> int:
    from hashcondense.data import list_datasets
    from hashcondense.registries import HASHING, METHODS, MODELS

    print("datasets:  ", ", ".join(list_datasets()))
    for label, registry in (("networks:  ", MODELS), ("hashing:   ", HASHING), ("condensers:", METHODS)):
        print(label, ", ".join(sorted(registry.declared())))  # read from source: no torch import
    from hashcondense.experiments.spec import list_experiments

    print("experiments:", ", ".join(list_experiments()))
    return 0


class _Stderr(logging.Handler):
    """Writes to the `sys.stderr` of the moment (a caller may have replaced it since the last run),
    above a progress bar that is being drawn rather than through it."""

    def emit(self, record: logging.LogRecord) -> None:
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=sys.stderr)
        except Exception:  # noqa: BLE001 (logging's contract: report, never raise)
            self.handleError(record)


def _console(quiet: bool) -> None:
    """Warnings of `hashcondense.*` on stderr, and the run's stage lines unless --quiet; the runs' full
    logs go to their log.txt. Records marked `FILE_ONLY` (an error `main` prints itself) stay off."""
    package, stages = logging.getLogger("hashcondense"), logging.getLogger("hashcondense.stage")
    for logger in (package, stages):  # from an earlier call of main in this process
        for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
            logger.removeHandler(handler)
    warnings = _Stderr()
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter("hashcondense: %(message)s"))
    warnings.addFilter(lambda record: getattr(record, "console", True))
    package.addHandler(warnings)
    if not quiet:
        lines = _Stderr()
        lines.setFormatter(logging.Formatter("hashcondense: %(message)s"))
        stages.addHandler(lines)
        stages.setLevel(logging.INFO)
        stages.propagate = True  # also into the run's log.txt


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hashcondense` with `argv` (default: sys.argv); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    _console(bool(getattr(args, "quiet", False)))
    try:
        return args.handler(args)
    except HashCondenseError as exc:
        print(f"hashcondense: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        how = (
            " run the same command with --resume to continue;"
            if args.command in ("train", "condense")
            else ""
        )
        print(
            f"hashcondense: interrupted;{how} completed files are kept, partial ones were not written",
            file=sys.stderr,
        )
        return 130
    except BrokenPipeError:
        # the reader went away (`hashcondense experiment table1 --dry-run | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
