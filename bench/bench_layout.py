"""Eager training step of each backbone with its tensors in NCHW against channels_last (issue 26).

One step = forward of a batch of random 32 px images through the hashing network, a squared-code loss,
backward, SGD update: the shape of `hashcondense train`'s step without the data pipeline. The two
layouts run interleaved on copies of one seeded network; the script prints the median step time of
each, the ratio, and the largest difference of the codes (float rounding only).

    PYTHONPATH=. python bench/bench_layout.py --archs convnet3,resnet10,densenet121 --threads 1
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from hashcondense import runtime
from hashcondense.hashing import create_hashing
from hashcondense.train.network import build_network


def step(net: torch.nn.Module, optimiser: torch.optim.Optimizer, images: torch.Tensor) -> torch.Tensor:
    optimiser.zero_grad(set_to_none=True)
    codes = net(images)
    codes.pow(2).mean().backward()
    optimiser.step()
    return codes.detach()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--archs", default="convnet3,resnet10,resnetap10,resnet18,densenet121")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    args = parser.parse_args()
    runtime.tune_allocator()
    torch.set_num_threads(args.threads)
    settings = f"{args.threads} thread(s), batch {args.batch}, 32 px, median of {args.reps}"
    print(f"torch {torch.__version__}, {settings}")
    print("| arch | NCHW step | channels_last step | NCHW / channels_last | max code difference |")
    print("|---|---|---|---|---|")
    for arch in args.archs.split(","):
        torch.manual_seed(0)
        method = create_hashing("dhd", num_classes=10, hash_bits=64)
        base = build_network(arch, method, 3, 32)
        images = torch.randn(args.batch, 3, 32, 32, generator=torch.Generator().manual_seed(1))
        runs = {}
        for layout in (torch.contiguous_format, torch.channels_last):
            net = copy.deepcopy(base).to(memory_format=layout)
            runs[layout] = (net, torch.optim.SGD(net.parameters(), lr=1e-3))
        first = {layout: step(net, opt, images) for layout, (net, opt) in runs.items()}  # warm up
        difference = (first[torch.contiguous_format] - first[torch.channels_last]).abs().max().item()
        times: dict[torch.memory_format, list[float]] = {layout: [] for layout in runs}
        for _ in range(args.reps):
            for layout, (net, opt) in runs.items():
                start = time.perf_counter()
                step(net, opt, images)
                times[layout].append(time.perf_counter() - start)
        nchw, last = (statistics.median(times[k]) for k in (torch.contiguous_format, torch.channels_last))
        print(f"| {arch} | {nchw:.3f} s | {last:.3f} s | {nchw / last:.2f}x | {difference:.1e} |", flush=True)


if __name__ == "__main__":
    main()
