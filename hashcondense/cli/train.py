"""The `train` sub-command: train a hashing network on a training set and measure retrieval.

    hashcondense train --dataset D --train-set {whole,random:N,PATH} --hash H --arch A --bits B --out DIR

Writes the run directory of `hashcondense.evaluate.run_evaluation` and prints a one-line summary.

Several processes: `torchrun --nproc-per-node N -m hashcondense train ...` or `--nproc N` (which starts
them on this machine, `cli.launch`): data-parallel training and sharded encoding (README "Several
processes").
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from hashcondense.cli import common
from hashcondense.cli.overlay import load_config, overlay
from hashcondense.errors import HashCondenseError

if TYPE_CHECKING:
    from hashcondense.evaluate import EvalConfig

__all__ = ["add_train_parser", "build_eval_config", "run_train_command"]


# Its line in `hashcondense --help`, and the head of `hashcondense train --help`.
_SUMMARY = "train a hashing network on a training set and measure retrieval"
_DESCRIPTION = (
    "Train a hashing network on a training set (the whole train split, a random subset "
    "or a condensed set) and measure retrieval on the dataset's query and database splits; writes "
    "OUT/metrics.json, config.json, network.safetensors, plots and log.txt. A run's config.json "
    "re-runs it with --config."
)


def add_train_parser(subparsers: Any) -> argparse.ArgumentParser:
    """The `train` sub-command's parser, added to an argparse sub-parsers object."""
    p = common.add_command(subparsers, "train", run_train_command, _SUMMARY, _DESCRIPTION)
    p.add_argument("--config", help="a saved config.json to re-run (flags override it)")
    data = common.add_data_options(p, "default digits")
    data.add_argument(
        "--train-set",
        help="what to train on: whole (the train split), random:N (N images per class) or PATH "
        "(a .safetensors set or .npz file) (default whole)",
    )
    common.add_network_options(p)
    p.add_argument("--topk", type=int, help="K of mAP@K (default: the dataset protocol)")
    _add_training_options(p)
    run = common.add_run_options(p)
    run.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --out from its checkpoint (same settings)",
    )
    run.add_argument(
        "--checkpoint-seconds",
        type=float,
        help="save a resumable checkpoint at most this often (default 60; 0 = every epoch)",
    )
    run.add_argument(
        "--nproc",
        type=int,
        help="run in N processes on this machine (as torchrun --standalone --nproc-per-node N): "
        "data-parallel training, each process a share of every batch of --batch-size images, and "
        "the query and database encoded in shares",
    )
    return p


def _add_training_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation training (defaults: see docs/evaluation.md)")
    g.add_argument("--epochs", type=int, help="training epochs (0 = auto from --auto-steps)")
    g.add_argument("--auto-steps", type=int, help="steps targeted when --epochs is 0 (default 2000)")
    g.add_argument("--batch-size", type=int, help="images per training step (default 256)")
    g.add_argument("--lr", type=float, help="learning rate (default 1e-3)")
    g.add_argument(
        "--backbone-lr-scale",
        type=float,
        help="the backbone trains at lr x this, hash head and proxies at lr (default 1; DHD's code 0.05)",
    )
    g.add_argument(
        "--weight-decay",
        type=float,
        help="weight decay (default 6e-6; L2 for adam and sgd, decoupled for adamw)",
    )
    g.add_argument(
        "--schedule",
        choices=["cosine", "step", "constant"],
        help="learning-rate schedule: cosine (default), step (x0.2 at 2/3 and 5/6 of training, as IDC) "
        "or constant",
    )
    g.add_argument("--optimizer", choices=["adam", "adamw", "sgd"], help="default adam (IEM); sgd as IDC")
    g.add_argument("--momentum", type=float, help="SGD momentum (default 0.9)")
    g.add_argument("--cutmix-prob", type=float, help="CutMix probability per batch (default 0 = off)")
    g.add_argument("--cutmix-beta", type=float, help="CutMix Beta(b, b) (default 1)")
    g.add_argument(
        "--views",
        choices=["dsa", "jitter"],
        help="DHD's two views: dsa (default; translation+flip / full DSA) or jitter (DHD's code: "
        "resized crop, flip, colour jitter, grayscale, blur)",
    )
    g.add_argument("--no-augment", action="store_true", default=None, help="train without augmentation")
    g.add_argument(
        "--eval-epochs",
        help="comma-separated epochs at which to also measure mAP (costly on big databases)",
    )


# Flags named after a config field that do not set it as given: see build_eval_config.
_SPECIAL = ("eval_epochs", "resume")


def _eval_epochs(text: str) -> list[int]:
    try:
        return [int(e) for e in text.split(",") if e.strip()]
    except ValueError:
        raise HashCondenseError("--eval-epochs takes comma-separated whole numbers, e.g. 10,20,40") from None


def build_eval_config(args: argparse.Namespace) -> EvalConfig:
    """The `EvalConfig` described by parsed `train` arguments: the `--config` file (if any) with every
    flag given on the command line laid over it. A run's config.json re-runs that run."""
    from hashcondense.evaluate import EvalConfig

    base = load_config(args.config, "a config.json from a run") if args.config else {}
    config = overlay(base, args, EvalConfig, skip=_SPECIAL)
    if args.no_augment:
        config["train"]["augment"] = False
    if args.eval_epochs:
        config["train"]["eval_epochs"] = _eval_epochs(args.eval_epochs)
    if args.quiet:
        config["show_progress"] = False
    # Whether a re-run continues is the caller's to say, not the file's.
    config["resume"] = bool(args.resume)
    if not config.get("out"):
        raise HashCondenseError("--out is required: the run directory to write")
    return EvalConfig.from_dict(config)


def run_train_command(args: argparse.Namespace) -> int:
    """Handler of `hashcondense train`: run it and print a one-line summary; returns 0."""
    from hashcondense.data import load_dataset

    common.check_threads(args)
    config = build_eval_config(args)
    config.check()
    dataset = load_dataset(  # no torch yet: a missing dataset is answered at once
        config.dataset, config.root, config.download, config.split_seed, config.image_size
    )
    nproc = common.check_nproc(args.nproc)
    if nproc > 1:
        from hashcondense.cli.launch import run_workers

        return run_workers(nproc, list(getattr(args, "argv", [])), out=config.out, threads=args.threads)
    common.start_compute(args)
    from hashcondense.evaluate import run_evaluation
    from hashcondense.utils import distributed

    try:
        metrics = run_evaluation(config, dataset=dataset)
        if distributed.is_main():
            summary = f"mAP@{metrics['topk']} = {100 * metrics['map']:.2f}% ({metrics['bits']} bits)"
            print(f"{summary} -> {config.out}")
    finally:
        distributed.shutdown()
    return 0
