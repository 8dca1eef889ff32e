"""The `condense` sub-command: condense a dataset's train split into a synthetic set.

    hashcondense condense --dataset NAME [--root DIR] --method METHOD --ipc N
        [--factor F] [--outer-loops R] [--inner-loops M] [--hash NAME] [--arch NAME] [--bits B]
        [--lr-img X] [--batch-real N] [--time-budget SECONDS] [--resume] [--seed S] [--device D]
        [--pool-size K] [--pool-epochs E] [--pool | --no-pool] [--nproc N] --out DIR

Writes DIR/synthetic.safetensors with its card (and card.json, stored.png, decoded.png, images/,
config.json, log.txt, history.json, checkpoint.safetensors) and prints a one-line summary. Unset
options take the method's defaults (see `hashcondense.condense.<method>`); the paper's IEM schedule
(R = M = 300) is GPU-sized, so on a CPU pass e.g. `--outer-loops 20 --inner-loops 50` or
`--time-budget 600`. Mistakes raise `HashCondenseError`, printed as one line by `cli.main`.

Several processes: `torchrun --nproc-per-node N -m hashcondense condense ...` or `--nproc N` (which
starts them on this machine, `cli.launch`): every built-in method shards the classes, and dsa and idc
train their network data-parallel (README "Several processes"); a method that cannot is refused.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any

from hashcondense.cli import common
from hashcondense.cli.overlay import load_config, overlay
from hashcondense.errors import HashCondenseError

if TYPE_CHECKING:
    from hashcondense.condense import CondenseConfig

__all__ = ["add_condense_parser", "build_condense_config", "run_condense_command"]


# Its line in `hashcondense --help`, and the head of `hashcondense condense --help`.
_SUMMARY = "condense a dataset's train split into a synthetic set"
_DESCRIPTION = (
    "Condense a dataset's train split into a synthetic set of --ipc stored images per class; "
    "writes OUT/synthetic.safetensors and its card. Unset options take the method's defaults."
)


def add_condense_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `condense` sub-command's parser, added to an argparse sub-parsers object."""
    p = common.add_command(subparsers, "condense", run_condense_command, _SUMMARY, _DESCRIPTION)
    p.add_argument(
        "--config",
        help="a saved config: a run's config.json or a file of CondenseConfig fields (flags override it)",
    )
    common.add_data_options(p, "required unless in --config")
    _add_method_options(p)
    common.add_network_options(p)
    _add_pool_options(p)
    run = common.add_run_options(p)
    run.add_argument("--time-budget", type=float, help="stop after this many seconds of distillation")
    run.add_argument(
        "--budget-clock",
        choices=("wall", "cpu"),
        help="what --time-budget counts: wall (elapsed, default) or cpu (this process's CPU seconds)",
    )
    run.add_argument("--checkpoint-every", type=int, help="outer loops between checkpoints")
    run.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.safetensors")
    run.add_argument("--overwrite", action="store_true", help="replace a set or checkpoint already in OUT")
    run.add_argument("--no-images", action="store_true", help="skip the OUT/images/<class>/<i>.png export")
    run.add_argument(
        "--nproc",
        type=int,
        help="run in N processes on this machine (as torchrun --standalone --nproc-per-node N): the "
        "classes are shared out (dsa and idc also train their network data-parallel)",
    )
    return p


def _add_method_options(p: argparse.ArgumentParser) -> None:
    m = p.add_argument_group("method (unset = the method's default)")
    m.add_argument("--method", help="condensation method: {methods} (required unless in --config)")
    m.add_argument("--ipc", type=int, help="stored images per class (required unless in --config)")
    m.add_argument("--preset", help="loop settings of the method: paper (default) or cpu (CPU-sized)")
    m.add_argument("--factor", type=int, help="multi-formation factor (1 = off; iem: 2 at 32 px)")
    m.add_argument("--outer-loops", type=int, help="R: outer loops (dm: iterations)")
    m.add_argument("--inner-loops", type=int, help="M: inner steps per outer loop")
    m.add_argument("--lr-img", type=float, help="learning rate of the stored images")
    m.add_argument("--batch-real", type=int, help="real images per class and step")
    m.add_argument(
        "--batch-syn-max", type=int, help="most decoded synthetic images per class and step (0 = all)"
    )
    m.add_argument("--aug-strategy", help="DSA groups joined by '_' (e.g. color_crop_cutout), or none")
    m.add_argument("--aug-mode", choices=["single", "all", "idc"], help="how DSA groups are applied")
    m.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a method-specific option (value parsed as JSON when possible); repeatable",
    )


def _add_pool_options(p: argparse.ArgumentParser) -> None:
    i = p.add_argument_group("iem model pool")
    i.add_argument("--pool-size", type=int, help="early-stage networks in the pool (default 5)")
    i.add_argument(
        "--pool-epochs",
        type=int,
        help="training epochs per member (default: Acc-DD's 100,000 images seen, 20 epochs of CIFAR-10's "
        "split; 10 above 32 px; 2 under --preset cpu)",
    )
    i.add_argument("--pool-dir", help="pool cache folder (default OUT/../.pool_cache)")
    use = i.add_mutually_exclusive_group()
    use.add_argument(
        "--pool", dest="use_pool", action="store_true", default=None, help="use the pool (default; not cpu's)"
    )
    use.add_argument(
        "--no-pool",
        dest="use_pool",
        action="store_false",
        help="a fresh random network per outer loop (ablation; the cpu preset's default)",
    )


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
    if args.use_pool is not None:
        options["use_pool"] = args.use_pool
    return options


# Flags named after a config field that do not set it as given: see build_condense_config.
_SPECIAL = ("resume", "overwrite")


def build_condense_config(args: argparse.Namespace) -> CondenseConfig:
    """The `CondenseConfig` described by parsed `condense` arguments: the `--config` file (if any) with
    every flag given on the command line laid over it. A run's config.json re-runs that run."""
    from hashcondense.condense import CondenseConfig

    path = getattr(args, "config", None)
    base = load_config(path, "a condensation run's config.json") if path else {}
    config = overlay(base, args, CondenseConfig, skip=_SPECIAL)
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
    from hashcondense.condense.config import check_data_fit, check_names, check_run_settings, class_label
    from hashcondense.data import load_dataset

    common.check_threads(args)
    config = build_condense_config(args)
    check_run_settings(config)
    check_names(config)
    dataset = load_dataset(  # no torch yet: a missing dataset is answered at once
        config.dataset, config.root, config.download, config.split_seed, config.image_size
    )
    counts = dataset.class_counts("train")
    names = list(dataset.class_names)
    check_data_fit(config, dataset.image_size, {class_label(c, names): n for c, n in enumerate(counts)})
    nproc = common.check_nproc(args.nproc)
    if nproc > 1:
        from hashcondense.cli.launch import run_workers
        from hashcondense.condense.method import get_method
        from hashcondense.condense.setup import check_distributable

        check_distributable(get_method(config.method), nproc)  # refused here, before N processes start
        return run_workers(nproc, list(getattr(args, "argv", [])), out=config.out, threads=args.threads)
    common.start_compute(args)
    from hashcondense.condense import condense
    from hashcondense.utils import distributed

    try:
        result = condense(config, dataset=dataset)
        if distributed.is_main():
            print(result.summary())
    finally:
        distributed.shutdown()
    return 0
