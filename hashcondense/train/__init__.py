"""Training a hashing network: the one training loop and step that evaluation, the IEM model pool and
the gradient-matching baselines share, its recipe (`TrainConfig`), checkpoints and encoding."""

from hashcondense.train.trainer import (
    TrainCheckpoint,
    TrainConfig,
    build_network,
    encode,
    make_optimizer,
    parameter_groups,
    train_hashing_network,
)

__all__ = [
    "TrainCheckpoint",
    "TrainConfig",
    "build_network",
    "encode",
    "make_optimizer",
    "parameter_groups",
    "train_hashing_network",
]
