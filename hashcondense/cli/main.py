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

Under a launcher (torchrun, or `condense` / `train --nproc N`, `cli.launch`) only `condense` and
`train` run; rank 0 alone
shows stage lines and prints an error every process raised alike; another rank prints only what
happened to it alone ("rank 1: ..."), and a lost peer is left to the launcher's report when `--nproc`
started the processes. SIGTERM (the launcher stopping the others after a failure) ends a worker
cleanly: its atomic writes are abandoned, not left half-written.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
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
from hashcondense.utils import distributed

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


def _console(quiet: bool, prefix: str = "hashcondense: ") -> None:
    """Warnings of `hashcondense.*` on stderr, and the run's stage lines unless --quiet; the runs' full
    logs go to their log.txt. Records marked `FILE_ONLY` (an error `main` prints itself) stay off."""
    package, stages = logging.getLogger("hashcondense"), logging.getLogger("hashcondense.stage")
    for logger in (package, stages):  # from an earlier call of main in this process
        for handler in [h for h in logger.handlers if isinstance(h, _Stderr)]:
            logger.removeHandler(handler)
    warnings = _Stderr()
    warnings.setLevel(logging.WARNING)
    warnings.setFormatter(logging.Formatter(prefix + "%(message)s"))
    warnings.addFilter(lambda record: getattr(record, "console", True))
    package.addHandler(warnings)
    if not quiet:
        lines = _Stderr()
        lines.setFormatter(logging.Formatter("hashcondense: %(message)s"))
        stages.addHandler(lines)
        stages.setLevel(logging.INFO)
        stages.propagate = True  # also into the run's log.txt


# Commands that run in several processes (the others are refused under a launcher).
DISTRIBUTED_COMMANDS = ("condense", "train")


def _error_line(exc: HashCondenseError) -> str | None:
    """What this process prints for `exc` (None: another process or the launcher says it)."""
    if distributed.launched_world_size() <= 1:
        return str(exc)
    rank = distributed.launched_rank()
    if isinstance(exc, distributed.LostPeer):
        return None if distributed.launched_by_hashcondense() else str(exc)
    if distributed.is_replicated(exc):
        return str(exc) if rank == 0 else None
    return f"rank {rank}: {exc}"


def _stop_on_sigterm() -> None:
    def stop(signum: int, frame: object) -> None:
        raise distributed.Stopped()

    signal.signal(signal.SIGTERM, stop)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `hashcondense` with `argv` (default: sys.argv); returns the exit status."""
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    args.argv = argv  # `--nproc` starts workers with the same arguments
    launched = distributed.launched_world_size() > 1
    rank = distributed.launched_rank()
    prefix = f"hashcondense: rank {rank}: " if rank else "hashcondense: "
    _console(bool(getattr(args, "quiet", False)) or rank > 0, prefix)
    try:
        if launched:
            _stop_on_sigterm()
            if args.command not in DISTRIBUTED_COMMANDS:
                raise HashCondenseError(
                    f"hashcondense {args.command} does not run in several processes yet (WORLD_SIZE "
                    f"{distributed.launched_world_size()}); run it in one process, without torchrun"
                )
        return args.handler(args)
    except HashCondenseError as exc:
        line = _error_line(exc)
        if line is not None:
            print(f"hashcondense: error: {line}", file=sys.stderr)
        return exc.exit_code
    except distributed.Stopped:
        if distributed.launched_rank() == 0 and not distributed.launched_by_hashcondense():
            print(
                "hashcondense: stopped by the launcher because another process of the run failed; "
                "run the same command with --resume to continue from the last checkpoint",
                file=sys.stderr,
            )
        return 143
    except KeyboardInterrupt:
        if distributed.launched_rank() > 0 or distributed.launched_by_hashcondense():
            return 130  # rank 0 or --nproc's launcher says it
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
