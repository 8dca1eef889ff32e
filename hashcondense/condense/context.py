"""What a condensation method works with: the run's context, its random streams and a matched batch.

`CondenseContext` holds the real train split (normalised tensors), the per-class sampler, the siamese
augmentation, the resolved config and settings; `context.rng(*streams)` is the only source of random
numbers a method uses. `MatchBatch` is one matching step of a group of classes (see `method.py`).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashcondense.augment import DSA, DSADraw
from hashcondense.condense.config import CondenseConfig, DatasetInfo, Settings
from hashcondense.condense.sampler import ClassSampler
from hashcondense.condense.sharding import Sharding
from hashcondense.condense.synthetic import encode_tiles
from hashcondense.errors import HashCondenseError
from hashcondense.hashing import HashingMethod, create_hashing
from hashcondense.runtime import generator
from hashcondense.train import build_network

__all__ = ["CondenseContext", "MatchBatch", "Streams", "derive_seed"]


class Streams:
    """Ids of the random streams: `context.rng(Streams.X, ...)`. Methods' own streams start at 100."""

    INIT = 1  # (INIT, class): which real images initialise the class
    REAL = 2  # (REAL, outer, inner, class): the real batch
    AUGMENT = 3  # (AUGMENT, outer, inner, class): the siamese DSA draw
    SYNTHETIC = 4  # (SYNTHETIC, outer, inner, class): subsample of decoded images (batch_syn_max)
    NETWORK = 5  # (NETWORK, outer): a fresh random network (DM, IEM without pool)
    POOL_PICK = 6  # (POOL_PICK, outer): which pool member
    PERTURB = 7  # (PERTURB, outer): the member's weight perturbation
    POOL_TRAIN = 8  # (POOL_TRAIN, member): the member's training seed
    METHOD = 100


def derive_seed(seed: int, *streams: int) -> int:
    """An int seed for code that only takes ints (e.g. `torch.manual_seed`), from (seed, *streams)."""
    return int(generator(seed, *streams).initial_seed())


@dataclass
class MatchBatch:
    """One matching step for a group of classes (see the module docstring). Lists are per class."""

    outer: int
    inner: int
    classes: list[int]
    real: list[torch.Tensor]
    synthetic: list[torch.Tensor]
    draws: list[DSADraw]
    real_images: list[torch.Tensor] = field(default_factory=list)
    synthetic_images: list[torch.Tensor] = field(default_factory=list)


@dataclass
class CondenseContext:
    """What a method may use. Built by the engine; tensors are normalised (the networks' input space).

    images / labels: the real train split (N, C, H, W) float32 on the CPU and (N,) int64.
    sampler: per-class random indices into `images`. augment: the siamese DSA of the run.
    config: the resolved run config; settings: the resolved loop settings; info: dataset facts.
    """

    config: CondenseConfig
    settings: Settings
    info: DatasetInfo
    images: torch.Tensor
    labels: torch.Tensor
    sampler: ClassSampler
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: list[str]
    device: torch.device
    out: Path
    augment: DSA
    log: logging.Logger
    data_key: dict[str, Any] = field(default_factory=dict)  # identifies the train split (pool cache)
    sharding: Sharding | None = None  # None: one process owning every class

    @property
    def shard(self) -> Sharding:
        """This process's classes (all of them in one process); see `sharding.py`."""
        return self.sharding if self.sharding is not None else Sharding.single(self.num_classes)

    @property
    def seed(self) -> int:
        return int(self.config.seed)

    @property
    def ipc(self) -> int:
        return int(self.config.ipc)

    @property
    def factor(self) -> int:
        return self.settings.factor

    @property
    def num_classes(self) -> int:
        return self.info.num_classes

    def rng(self, *streams: int) -> torch.Generator:
        """An independent CPU generator for the stream (seed, *streams)."""
        return generator(self.seed, *streams)

    def new_hashing(self) -> HashingMethod:
        """A fresh instance of the run's hashing method (e.g. for its head or its loss terms)."""
        return create_hashing(self.config.hashing, num_classes=self.num_classes, hash_bits=self.config.bits)

    def new_network(self, *streams: int) -> nn.Module:
        """A freshly initialised hashing network (backbone + the hashing method's head) whose weights
        depend only on (seed, *streams); on the run's device, eval mode, frozen."""
        method = self.new_hashing()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(derive_seed(self.seed, *streams))
            net = build_network(
                self.config.arch,
                method,
                self.info.in_channels,
                self.info.image_size,
                **self.config.arch_kwargs,
            )
        return net.to(self.device).eval().requires_grad_(False)

    def real_init(self) -> tuple[torch.Tensor, list[list[int]]]:
        """Stored images made of real ones: for each class (in order) `ipc` stored images, each tiling
        factor**2 distinct real images of the class (row-major, see `encode_tiles`), or the real images
        themselves when factor is 1. Returns (images (C*ipc, ch, H, W), per class the train-split
        positions used, in tile order). A class with fewer images than that is a one-line error (checked
        here, not at set-up: a method that does not start from real images needs none).

        In several processes only this process's classes (`shard`) are drawn: the other classes' rows
        are zeros and their positions empty lists (the engine gathers the owners' rows). Each class
        draws from its own stream, so the rows equal those of one process."""
        per = self.ipc * self.factor**2
        for c in range(self.num_classes):  # every class, so every process refuses the same set
            have = self.sampler.count(c)
            if have < per:
                raise HashCondenseError(
                    f"class {self.sampler.name(c)} has {have} training images but the set needs {self.ipc} x "
                    f"{self.factor}^2 = {per} real images per class; use a smaller --ipc or --factor"
                )
        own = set(self.shard.classes)
        stored: list[torch.Tensor | None] = []
        used: list[list[int]] = []
        for c in range(self.num_classes):
            if c not in own:
                stored.append(None)
                used.append([])
                continue
            idx = self.sampler.sample(c, per, self.rng(Streams.INIT, c))
            stored.append(encode_tiles(self.images[idx], self.factor))
            used.append([int(i) for i in idx])
        shape = (self.ipc, self.info.in_channels, self.info.image_size, self.info.image_size)
        blank = self.images.new_zeros(shape)
        return torch.cat([s if s is not None else blank for s in stored]).contiguous(), used
