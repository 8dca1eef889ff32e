"""What a cell will cost on this machine before it runs (`hashcondense experiment NAME --dry-run`).

The model counts floating-point work from the networks' own layer shapes and divides it by this
machine's measured convolution throughput per CPU-second (a ConvNet-3 middle convolution, timed here
on the process's CPU clock at the thread count of the run) times the fraction of it that evaluation
training reaches (`EFFICIENCY`, measured on the first table1 cell: see BENCHMARKS.md "Cost estimates
of experiment cells"):

    evaluation = seeds x (steps x batch x views x 3 + (database + query)) x forward GFLOP per image
    condensation = its time budget (the loop) + the IEM pool's training when its cache lacks it

A condensation without a time budget runs its preset's R x M steps, which this model does not price.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hashcondense.condense.config import CondenseConfig, DatasetInfo
from hashcondense.condense.methods.iem import default_pool_epochs
from hashcondense.data import RetrievalDataset
from hashcondense.evaluate import EvalConfig
from hashcondense.models import create_model
from hashcondense.registries import HASHING, METHODS

__all__ = ["EFFICIENCY", "CostModel", "forward_gflop", "machine_gflops"]

# achieved / convolution throughput of an evaluation run (table1 iem/10/64, 1 thread: see BENCHMARKS.md)
EFFICIENCY = 0.65


def forward_gflop(arch: str, image_size: int, in_channels: int, bits: int) -> float:
    """GFLOP of one image's forward pass: 2 x multiply-adds of every convolution and linear layer of
    the backbone, plus its hash head (a linear map of the features to `bits`)."""
    net = create_model(arch, in_channels=in_channels, image_size=image_size)
    total = 2.0 * net.feature_dim * bits

    def count(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, nn.Conv2d):
            per_output = module.in_channels // module.groups * math.prod(module.kernel_size)
            total += 2.0 * output.numel() * per_output
        elif isinstance(module, nn.Linear):
            total += 2.0 * output.numel() * module.in_features

    hooks = [m.register_forward_hook(count) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        net.eval()(torch.zeros(1, in_channels, image_size, image_size))
    for hook in hooks:
        hook.remove()
    return total / 1e9


def machine_gflops(repeats: int = 3) -> float:
    """This machine's fp32 convolution throughput in GFLOP per CPU-second at the current thread count:
    the median of `repeats` timings of a ConvNet-3 middle convolution (128 -> 128 channels, 3x3,
    16 x 16, batch 32) on this process's CPU clock, so a busy machine does not inflate the price (the
    cells' budgets count CPU-seconds too)."""
    conv = nn.Conv2d(128, 128, 3, padding=1)
    x = torch.randn(32, 128, 16, 16)
    flop = 2.0 * 32 * 128 * 16 * 16 * 128 * 9
    times = []
    with torch.inference_mode():
        conv(x)  # warm-up
        for _ in range(repeats):
            start = time.process_time()
            conv(x)
            conv(x)
            times.append((time.process_time() - start) / 2)
    return flop / sorted(times)[len(times) // 2] / 1e9


@dataclass
class CostModel:
    """Prices cells on this machine; `throughput` is `machine_gflops()` measured once per dry run."""

    throughput: float

    def evaluation_seconds(
        self, evaluate: dict[str, Any], data: RetrievalDataset, train_images: int
    ) -> float:
        config = EvalConfig.from_dict({**evaluate, "train_set": "whole", "out": "-"})
        gflop = forward_gflop(config.arch, data.image_size, data.in_channels, config.bits)
        batch = min(config.train.batch_size, train_images)
        steps = config.train.resolved_epochs(train_images) * math.ceil(train_images / batch)
        views = HASHING.get(config.hashing).num_views
        encoded = len(data.database) + len(data.query)
        work = (steps * batch * views * 3 + encoded) * gflop
        return work / (self.throughput * EFFICIENCY)

    def pool_seconds(self, condense: dict[str, Any], data: RetrievalDataset, pool_cached: bool) -> float:
        """The IEM pool's training, when the run will train it (0 for other methods or a cached pool)."""
        options = condense.get("options", {})
        if condense.get("method") != "iem" or pool_cached:
            return 0.0
        iem = METHODS.get("iem")
        if not iem.uses_pool(options.get("use_pool"), condense.get("preset")):
            return 0.0
        config = CondenseConfig.from_dict({**condense, "out": "-"})
        epochs = options.get("pool_epochs") or default_pool_epochs(_info(condense, data), config.preset)
        size = options.get("pool_size", iem.options["pool_size"])
        gflop = forward_gflop(config.arch, data.image_size, data.in_channels, config.bits)
        views = HASHING.get(config.hashing).num_views
        return size * epochs * len(data.indices("train")) * views * 3 * gflop / (self.throughput * EFFICIENCY)

    @staticmethod
    def decoded_images(condense: dict[str, Any], data: RetrievalDataset) -> int:
        """How many training images the condensed set decodes into (ipc x classes x factor**2)."""
        config = CondenseConfig.from_dict({**condense, "out": "-"})
        method = METHODS.get(config.method)
        info = _info(condense, data)
        settings = method.resolve(config, info)
        return config.ipc * data.num_classes * settings.factor**2


def _info(condense: dict[str, Any], data: RetrievalDataset) -> DatasetInfo:
    return DatasetInfo(
        name=str(condense.get("dataset")),
        num_classes=data.num_classes,
        in_channels=data.in_channels,
        image_size=data.image_size,
        num_train=len(data.indices("train")),
    )
