"""The `condense` sub-command: argparse wiring and handler (hooked into `hashcondense.cli`).

    hashcondense condense --dataset NAME [--root DIR] --method {random,dm,dsa,idc,iem} --ipc N
        [--factor F] [--outer-loops R] [--inner-loops M] [--hash NAME] [--arch NAME] [--bits B]
        [--lr-img X] [--batch-real N] [--time-budget SECONDS] [--resume] [--seed S] [--device D]
        [--pool-size K] [--pool-epochs E] [--no-pool] --out DIR

Writes DIR/synthetic.safetensors with its card (and card.json, stored.png, decoded.png, images/,
config.json, log.txt, history.json, checkpoint.safetensors) and prints a one-line summary. Unset
options take the method's defaults (see `hashcondense.condense.<method>`); the paper's IEM schedule
(R = M = 300) is GPU-sized, so on a CPU pass e.g. `--outer-loops 20 --inner-loops 50` or
`--time-budget 600`. Mistakes raise `HashCondenseError`, printed as one line by `cli.main`.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hashcondense.cli.overlay import load_config, overlay
from hashcondense.errors import HashCondenseError

if TYPE_CHECKING:
    from hashcondense.condense import CondenseConfig

__all__ = ["add_condense_parser", "build_condense_config", "run_condense_command"]

METHODS_HELP = "random | dm | dsa | idc | iem"


def add_condense_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add the `condense` sub-command to an argparse sub-parsers object and return its parser."""
    p = subparsers.add_parser(
        "condense",
        help="condense a dataset's train split into a synthetic set",
        description="Condense a dataset's train split into a synthetic set of --ipc stored images per class; "
        "writes OUT/synthetic.safetensors and its card. Unset options take the method's defaults.",
    )
    p.add_argument(
        "--config",
        default=None,
        help="a saved config: a run's config.json or a file of CondenseConfig fields (flags override it)",
    )
    d = p.add_argument_group("data")
    d.add_argument(
        "--dataset", default=None, help="digits | cifar10 | imagenet10 | imagenet20 | npz:PATH | folder:PATH"
    )
    d.add_argument("--root", default=None, help="dataset root folder")
    # default None, not False: an unset flag must leave a --config file's value alone
    d.add_argument(
        "--download", action="store_true", default=None, help="download the dataset if missing (cifar10)"
    )
    d.add_argument("--split-seed", type=int, default=None, help="seed of the retrieval split draw (0)")
    d.add_argument("--image-size", type=int, default=None, help="resolution for ImageNet / folder data")

    m = p.add_argument_group("method (unset = the method's default)")
    m.add_argument("--method", default=None, help=METHODS_HELP)
    m.add_argument("--ipc", type=int, default=None, help="stored images per class")
    m.add_argument(
        "--preset", default=None, help="loop settings of the method: paper (default) or cpu (CPU-sized)"
    )
    m.add_argument(
        "--factor", type=int, default=None, help="multi-formation factor (1 = off; iem: 2 at 32 px)"
    )
    m.add_argument("--outer-loops", type=int, default=None, help="R: outer loops (dm: iterations)")
    m.add_argument("--inner-loops", type=int, default=None, help="M: inner steps per outer loop")
    m.add_argument("--lr-img", type=float, default=None, help="learning rate of the stored images")
    m.add_argument("--batch-real", type=int, default=None, help="real images per class and step")
    m.add_argument(
        "--batch-syn-max",
        type=int,
        default=None,
        help="at most this many decoded synthetic images per class and step (0 = all)",
    )
    m.add_argument(
        "--aug-strategy", default=None, help="DSA groups joined by '_' (e.g. color_crop_cutout), or none"
    )
    m.add_argument(
        "--aug-mode", default=None, choices=["single", "all", "idc"], help="how DSA groups are applied"
    )
    m.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method-specific option (value parsed as JSON when possible); repeatable",
    )

    n = p.add_argument_group("networks")
    n.add_argument("--hash", dest="hashing", default=None, help="hashing method (default dhd)")
    n.add_argument("--arch", default=None, help="network (default convnet3)")
    n.add_argument("--bits", type=int, default=None, help="hash code length (default 64)")

    i = p.add_argument_group("iem model pool")
    i.add_argument("--pool-size", type=int, default=None, help="early-stage networks in the pool (default 5)")
    i.add_argument(
        "--pool-epochs", type=int, default=None, help="training epochs per member (default 2, ImageNet 10)"
    )
    i.add_argument("--pool-dir", default=None, help="pool cache folder (default OUT/../.pool_cache)")
    i.add_argument("--no-pool", action="store_true", help="a fresh random network per outer loop (ablation)")

    r = p.add_argument_group("run")
    r.add_argument("--seed", type=int, default=None, help="default 0")
    r.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")
    r.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    r.add_argument(
        "--time-budget", type=float, default=None, help="stop after this many seconds of distillation"
    )
    r.add_argument("--checkpoint-every", type=int, default=None, help="outer loops between checkpoints")
    r.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    r.add_argument("--overwrite", action="store_true", help="replace a set or checkpoint already in OUT")
    r.add_argument("--no-images", action="store_true", help="skip the OUT/images/<class>/<i>.png export")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument("--out", default=None, help="run directory to write (required unless in --config)")
    p.set_defaults(handler=run_condense_command)
    return p


def _parse_option(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise HashCondenseError(f"--option takes KEY=VALUE, got '{text}'")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.strip().replace("-", "_"), parsed


def _options(base: dict[str, Any] | None, args: argparse.Namespace) -> dict[str, Any]:
    """The method options: the file's, then each --option, then the pool flags (IEM option names)."""
    options = dict(base or {})
    options.update(dict(_parse_option(o) for o in args.option))
    pool = {"pool_size": args.pool_size, "pool_epochs": args.pool_epochs, "pool_dir": args.pool_dir}
    options.update({key: value for key, value in pool.items() if value is not None})
    if args.no_pool:
        options["use_pool"] = False
    return options


def build_condense_config(args: argparse.Namespace) -> CondenseConfig:
    """The `CondenseConfig` described by parsed `condense` arguments: the `--config` file (if any) with
    every flag given on the command line laid over it. A run's config.json re-runs that run."""
    from hashcondense.condense import CondenseConfig

    path = getattr(args, "config", None)
    base = load_config(path, "a condensation run's config.json") if path else {}
    config = overlay(base, args, CondenseConfig, skip=("resume", "overwrite"))
    config["options"] = _options(config.get("options"), args)
    # What decides where a re-run writes or whether it continues is the caller's, not the file's.
    config["resume"] = bool(args.resume)
    config["overwrite"] = bool(args.overwrite)
    if args.quiet:
        config["show_progress"] = False
    if args.no_images:
        config["export_images"] = False
    required = ("dataset", "method", "ipc", "out")
    missing = [f"--{k.replace('_', '-')}" for k in required if config.get(k) is None]
    if missing:
        raise HashCondenseError(f"{', '.join(missing)} required (or a --config that sets them)")
    return CondenseConfig.from_dict(config)


def run_condense_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense condense`: run it and print a one-line summary; returns 0."""
    from hashcondense.condense import condense

    if getattr(args, "threads", None):
        import torch

        torch.set_num_threads(int(args.threads))
    result = condense(build_condense_config(args))
    print(result.summary())
    return 0
