"""Command-line interface: a thin layer over the library API.

    hashcondense train   --dataset D --train-set {whole,random:N,PATH} --hash H --arch A --bits B --out DIR
    hashcondense demo    [--out DIR]
    hashcondense list

A user mistake prints one line on stderr and exits with status 2 (no traceback).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from typing import NoReturn

from hashcondense import __version__
from hashcondense.cli.overlay import load_config, overlay
from hashcondense.errors import HashCondenseError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # one line, status 2
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _add_eval_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("evaluation training (defaults: see docs/evaluation.md)")
    g.add_argument("--epochs", type=int, default=None, help="training epochs (0 = auto from --auto-steps)")
    g.add_argument("--auto-steps", type=int, default=None, help="steps targeted when --epochs is 0 (auto)")
    g.add_argument("--batch-size", type=int, default=None)
    g.add_argument("--lr", type=float, default=None)
    g.add_argument(
        "--backbone-lr-scale",
        type=float,
        default=None,
        help="the backbone trains at lr x this, hash head and proxies at lr (default 1; DHD's code 0.05)",
    )
    g.add_argument("--weight-decay", type=float, default=None)
    g.add_argument("--schedule", choices=["cosine", "step", "constant"], default=None)
    g.add_argument(
        "--optimizer", choices=["adam", "adamw", "sgd"], default=None, help="default adam (IEM); sgd as IDC"
    )
    g.add_argument("--momentum", type=float, default=None, help="SGD momentum (default 0.9)")
    g.add_argument(
        "--cutmix-prob", type=float, default=None, help="CutMix probability per batch (default 0 = off)"
    )
    g.add_argument("--cutmix-beta", type=float, default=None, help="CutMix Beta(b, b) (default 1)")
    g.add_argument(
        "--views",
        choices=["dsa", "jitter"],
        default=None,
        help="DHD's two views: dsa (default; translation+flip / full DSA) or jitter (DHD's code: "
        "resized crop, flip, colour jitter, grayscale, blur)",
    )
    g.add_argument("--no-augment", action="store_true", default=None, help="train without augmentation")
    g.add_argument(
        "--eval-epochs",
        type=str,
        default=None,
        help="comma-separated epochs at which to also measure mAP (costly on big databases)",
    )


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dataset",
        default=None,
        help="digits | cifar10 | imagenet10 | imagenet20 | npz:PATH | folder:PATH (default digits)",
    )
    p.add_argument("--root", default=None, help="dataset root folder")
    p.add_argument("--download", action="store_true", default=None, help="download the dataset if missing")
    p.add_argument("--split-seed", type=int, default=None, help="seed of the retrieval split draw")
    p.add_argument("--image-size", type=int, default=None, help="resolution for ImageNet / folder data")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="hashcondense", description="Dataset condensation for deep hashing retrieval.")
    parser.add_argument("--version", action="version", version=f"hashcondense {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    train = sub.add_parser("train", help="train a hashing network on a training set and measure retrieval")
    train.add_argument("--config", default=None, help="a saved config.json to re-run (flags override it)")
    _add_data_options(train)
    train.add_argument("--train-set", default=None, help="whole | random:N | PATH (.safetensors set or .npz)")
    train.add_argument(
        "--hash", dest="hashing", default=None, help="dhd | dpn | orthohash | csq (default dhd)"
    )
    train.add_argument(
        "--arch", default=None, help="network name (default convnet3); see `hashcondense list`"
    )
    train.add_argument("--bits", type=int, default=None, help="hash code length (default 64)")
    train.add_argument("--topk", type=int, default=None, help="K of mAP@K (default: the dataset protocol)")
    train.add_argument("--seed", type=int, default=None)
    train.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default auto)")
    train.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    train.add_argument("--quiet", action="store_true", help="no progress bars")
    train.add_argument("--out", default=None, help="run directory to write (required unless in --config)")
    train.add_argument(
        "--resume",
        action="store_true",
        help="continue the unfinished run in --out from its checkpoint (same settings)",
    )
    train.add_argument(
        "--checkpoint-seconds",
        type=float,
        default=None,
        help="save a resumable checkpoint at most this often (default 60; 0 = every epoch)",
    )
    _add_eval_options(train)

    from hashcondense.cli.condense import add_condense_parser

    add_condense_parser(sub)

    demo = sub.add_parser("demo", help="the main job on the embedded digits dataset, in a few minutes")
    demo.add_argument("--out", default="runs/demo")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quick", action="store_true", help="a much shorter run (smoke test)")
    demo.add_argument("--quiet", action="store_true", help="no progress bars")
    demo.add_argument("--threads", type=int, default=None, help="CPU threads for torch")

    sub.add_parser("list", help="list datasets, networks, hashing and condensation methods")
    return parser


def _eval_config(args: argparse.Namespace):
    from hashcondense.evaluate import EvalConfig

    base = load_config(args.config, "a config.json from a run") if args.config else {}
    config = overlay(base, args, EvalConfig, skip=("eval_epochs", "resume"))
    if args.no_augment:
        config["train"]["augment"] = False
    if args.eval_epochs:
        try:
            config["train"]["eval_epochs"] = [int(e) for e in args.eval_epochs.split(",") if e.strip()]
        except ValueError:
            raise HashCondenseError(
                "--eval-epochs takes comma-separated whole numbers, e.g. 10,20,40"
            ) from None
    if args.quiet:
        config["show_progress"] = False
    # Whether a re-run continues is the caller's to say, not the file's.
    config["resume"] = bool(args.resume)
    if not config.get("out"):
        raise HashCondenseError("--out is required: the run directory to write")
    return EvalConfig.from_dict(config)


def _cmd_train(args: argparse.Namespace) -> int:
    from hashcondense.evaluate import run_evaluation

    config = _eval_config(args)
    metrics = run_evaluation(config)
    print(f"mAP@{metrics['topk']} = {100 * metrics['map']:.2f}% ({metrics['bits']} bits) -> {config.out}")
    return 0


def _cmd_list(_: argparse.Namespace) -> int:
    from hashcondense.data import list_datasets
    from hashcondense.hashing import list_hashing
    from hashcondense.models import list_models

    print("datasets:  ", ", ".join(list_datasets()))
    print("networks:  ", ", ".join(list_models()))
    print("hashing:   ", ", ".join(list_hashing()))
    try:
        from hashcondense.condense import list_methods

        print("condensers:", ", ".join(list_methods()))
    except ImportError:
        pass
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from hashcondense.experiments.demo import run_demo

    run_demo(out=args.out, seed=args.seed, quick=args.quick, show_progress=not args.quiet)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    # Run logs go to each run's log.txt; the console only gets warnings.
    for console in logging.getLogger().handlers:
        console.setLevel(logging.WARNING)
    threads = getattr(args, "threads", None)
    from hashcondense.runtime import tune_allocator

    tune_allocator()  # CPU training steps up to ~2x faster (see its docstring)
    try:
        if threads:
            import torch

            torch.set_num_threads(threads)
        from hashcondense.cli.condense import run_condense_command

        handler = {
            "train": _cmd_train,
            "list": _cmd_list,
            "demo": _cmd_demo,
            "condense": run_condense_command,
        }[args.command]
        return handler(args)
    except HashCondenseError as exc:
        print(f"hashcondense: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(
            "hashcondense: interrupted; completed files are kept, partial ones were not written",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
