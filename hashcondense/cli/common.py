"""What the sub-commands share: the parser that answers a mistake in one line, the help formatter that
names the registered datasets, networks and methods, and the data, network and run options.

Nothing here imports torch: building the parser must stay cheap, so that a mistyped flag is answered
at once. The registries (which import torch) are read only when help is printed.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any, NoReturn

from hashcondense.errors import HashCondenseError

__all__ = [
    "Parser",
    "RegistryHelpFormatter",
    "add_command",
    "add_data_options",
    "add_network_options",
    "add_run_options",
    "check_nproc",
    "check_threads",
    "start_compute",
]


def _declared(registry: str) -> Callable[[], list[str]]:
    """Names a registry's modules declare, read from their source (no torch import: help is fast)."""

    def names() -> list[str]:
        from hashcondense import registries

        return sorted(getattr(registries, registry).declared())

    return names


def _datasets() -> list[str]:
    from hashcondense.data import list_datasets  # torch-free: also says which take a :PATH

    return list_datasets()


# Placeholder in a help text -> the function whose names replace it.
_REGISTRIES: dict[str, Callable[[], list[str]]] = {
    "{datasets}": _datasets,
    "{models}": _declared("MODELS"),
    "{hashing}": _declared("HASHING"),
    "{methods}": _declared("METHODS"),
}


class RegistryHelpFormatter(argparse.HelpFormatter):
    """Fills `{datasets}`, `{models}`, `{hashing}` and `{methods}` in help texts with the registered
    names, as "a | b | c", at the time help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = super()._get_help_string(action)
        for placeholder, names in _REGISTRIES.items():
            if text and placeholder in text:
                text = text.replace(placeholder, " | ".join(names()))
        return text


class Parser(argparse.ArgumentParser):
    """An argument parser whose mistakes are one line on stderr, with exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def add_command(
    subparsers: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """Add sub-command `name` to an argparse sub-parsers object and return its parser; `handler` runs
    it (as `args.handler`). `summary` is its line in `hashcondense --help`."""
    parser = subparsers.add_parser(
        name, help=summary, description=description, formatter_class=RegistryHelpFormatter
    )
    parser.set_defaults(handler=handler)
    return parser


def add_data_options(parser: argparse.ArgumentParser, dataset_note: str) -> argparse._ArgumentGroup:
    """--dataset (its help ends with `dataset_note`), --root, --download, --split-seed, --image-size;
    returns the group for the command's own data flags."""
    g = parser.add_argument_group("data")
    g.add_argument("--dataset", help="{datasets} (" + dataset_note + ")")
    g.add_argument("--root", help="dataset root folder")
    # default None, not False: an unset flag must leave a --config file's value alone
    g.add_argument(
        "--download", action="store_true", default=None, help="download the dataset if missing (cifar10)"
    )
    g.add_argument("--split-seed", type=int, help="seed of the retrieval split draw (default 0)")
    g.add_argument(
        "--image-size",
        type=int,
        help="resize the images to this many pixels a side (default: the dataset's own; digits 32, "
        "cifar10 32, ImageNet 64, folder 32)",
    )
    return g


def add_network_options(parser: argparse.ArgumentParser) -> None:
    """--hash, --arch, --bits."""
    g = parser.add_argument_group("network")
    g.add_argument("--hash", dest="hashing", help="hashing method: {hashing} (default dhd)")
    g.add_argument("--arch", help="network: {models} (default convnet3)")
    g.add_argument("--bits", type=int, help="hash code length (default 64)")


def add_run_options(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """--seed, --device, --compile, --threads, --quiet, --out; returns the group for the command's own run
    flags."""
    g = parser.add_argument_group("run")
    g.add_argument(
        "--seed", type=int, help="random seed (default 0): the same seed and settings repeat a run"
    )
    g.add_argument("--device", help="auto | cpu | cuda | cuda:N (default auto)")
    g.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="torch.compile the network and, on a CPU, fuse its norm/ReLU/pool (IEM/DM steps 1.4-1.5x "
        "faster after ~20-40 s of compiling; results agree with an uncompiled run to rounding, not bit "
        "for bit; needs a C++ compiler and ninja)",
    )
    g.add_argument("--threads", type=int, help="CPU threads for torch")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--out", help="run directory to write (required unless in --config)")
    return g


def check_threads(args: argparse.Namespace) -> None:
    """--threads must be a whole number >= 1 (0 or less would be silently ignored or crash torch)."""
    threads = getattr(args, "threads", None)
    if threads is not None and threads < 1:
        raise HashCondenseError(f"--threads {threads} cannot work; use a whole number >= 1 (CPU threads)")


def start_compute(args: argparse.Namespace) -> None:
    """Load torch, tune the allocator and give torch the --threads asked for. Handlers call it after
    every check that can refuse the run, so that a mistake is answered before torch loads (seconds)."""
    from hashcondense.runtime import tune_allocator

    tune_allocator()  # CPU training steps up to ~2x faster (see its docstring)
    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))


def check_nproc(nproc: int | None) -> int:
    """--nproc: a whole number >= 1, and not inside processes a launcher already started."""
    from hashcondense.utils import distributed
    from hashcondense.utils.checks import is_count

    if nproc is None:
        return 1
    if not is_count(nproc, 1):
        raise HashCondenseError(f"--nproc {nproc} cannot work; use a whole number of processes >= 1")
    if nproc > 1 and distributed.launched_world_size() > 1:
        raise HashCondenseError(
            "--nproc starts its own processes; leave it out under torchrun (or run without torchrun)"
        )
    return nproc
