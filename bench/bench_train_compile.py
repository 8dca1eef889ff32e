"""Evaluation training and encoding, uncompiled against compiled (`EvalConfig.compile`: torch.compile
and the fused norm/ReLU/pool kernel, `models.fused.accelerated`), in one process.

What `hashcondense train` spends on a condensed set at 10 images per class: training steps of the
decoded set (400 CIFAR-10 images at factor 2, batch 100, DHD's two views: 200 images forward and
backward per step) and the encoding of the query and database splits (59,000 + 1,000 images). Here:
- training: `train_hashing_network` for `--epochs` epochs (4 steps each), uncompiled and compiled in
  turn, `--repeats` times; per-epoch seconds from the trainer's history, median over the epochs after the
  first (the compiled run compiles in its first epoch, reported apart);
- encoding: `train.encode` of `--encode` CIFAR-10 images (batch 500, inference mode), median of 3
  after a warm-up, uncompiled and compiled.
Ratios are uncompiled / compiled from the same run. ConvNet-3, DHD, 64 bits.

    PYTHONPATH=. .venv/bin/python bench/bench_train_compile.py --root ../shared/data/cifar10 \
        [--threads 1] [--epochs 8] [--repeats 2] [--encode 5000]
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent


def train_epochs(images, labels, compile: bool, epochs: int) -> tuple[float, float]:
    """(median seconds of an epoch after the first, seconds of the first epoch)."""
    from hashcondense.train import train_hashing_network
    from hashcondense.train.config import TrainConfig

    config = TrainConfig(epochs=epochs, batch_size=100)
    _, _, history = train_hashing_network(
        images, labels, arch="convnet3", hashing="dhd", hash_bits=64, num_classes=10, config=config,
        seed=0, show_progress=False, compile=compile,
    )  # fmt: skip
    ends = [row["seconds"] for row in history]
    per_epoch = [b - a for a, b in zip(ends, ends[1:], strict=False)]
    return statistics.median(per_epoch), ends[0]


def encode_seconds(net, images, compile: bool) -> float:
    from hashcondense.models.fused import accelerated
    from hashcondense.train.network import encode

    encoder = accelerated(net, compile)  # what --compile runs: torch.compile and the fused kernel
    encode(encoder, images[:500])  # warm-up (compiles)
    times = []
    for _ in range(3):
        start = time.perf_counter()
        encode(encoder, images)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(HERE.parent.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--encode", type=int, default=5000)
    a = p.parse_args()

    from hashcondense.data import load_dataset
    from hashcondense.hashing import create_hashing
    from hashcondense.runtime import tune_allocator
    from hashcondense.train.network import build_network

    tune_allocator()
    torch.set_num_threads(a.threads)
    data = load_dataset("cifar10", root=a.root)
    g = torch.Generator().manual_seed(0)
    train = torch.as_tensor(data.train)
    picks = torch.cat([torch.nonzero(torch.as_tensor(data.labels[train]) == c)[:40, 0] for c in range(10)])
    idx = train[picks]
    images = data.normalize(data.images[idx.numpy()])
    labels = torch.as_tensor(data.labels[idx.numpy()])
    results: dict[str, list] = {"eager": [], "compiled": []}
    first: dict[str, float] = {}
    for _ in range(a.repeats):
        for mode in ("eager", "compiled"):
            epoch, start = train_epochs(images, labels, mode == "compiled", a.epochs)
            results[mode].append(epoch)
            first.setdefault(mode, start)
            print(
                f"train {mode:>8}: {epoch:.3f} s per epoch of 4 steps (first epoch {start:.1f} s)", flush=True
            )
    net = build_network("convnet3", create_hashing("dhd", num_classes=10, hash_bits=64), 3, 32).eval()
    database = data.normalize(data.images[torch.randperm(len(data.images), generator=g)[: a.encode].numpy()])
    enc = {mode: encode_seconds(net, database, mode == "compiled") for mode in ("eager", "compiled")}
    train_eager, train_compiled = statistics.median(results["eager"]), statistics.median(results["compiled"])
    summary = {
        "threads": a.threads,
        "train_epoch_seconds": {"eager": round(train_eager, 3), "compiled": round(train_compiled, 3)},
        "train_ratio": round(train_eager / train_compiled, 2),
        "first_epoch_seconds": {k: round(v, 1) for k, v in first.items()},
        "encode_images_per_second": {k: round(a.encode / v, 1) for k, v in enc.items()},
        "encode_ratio": round(enc["eager"] / enc["compiled"], 2),
    }
    print(
        f"training: {train_eager:.3f} s vs {train_compiled:.3f} s per epoch, {summary['train_ratio']}x; "
        f"encoding: {summary['encode_images_per_second']['eager']} vs "
        f"{summary['encode_images_per_second']['compiled']} images/s, {summary['encode_ratio']}x"
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
