"""Training a hashing network: the recipe (`TrainConfig`), the one training step that evaluation, the
IEM model pool and the gradient-matching baselines share (`step.train_step`), the training loop,
resumable checkpoints, and building, saving and encoding networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashcondense.utils.lazy import lazy_exports

# public name -> module (imported on first use: TrainConfig loads without torch)
_EXPORTS = {
    "TrainCheckpoint": "checkpoint",
    "OPTIMIZERS": "config",
    "SCHEDULES": "config",
    "VIEWS": "config",
    "TrainConfig": "config",
    "build_network": "network",
    "ENCODE_BATCH": "network",
    "encode": "network",
    "encode_in_shards": "network",
    "load_network_state": "network",
    "network_state": "network",
    "lr_factor": "optim",
    "make_optimizer": "optim",
    "parameter_groups": "optim",
    "NonFiniteLoss": "step",
    "batch_loss": "step",
    "shuffled_batches": "step",
    "train_step": "step",
    "train_hashing_network": "trainer",
    "training_views": "views",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = [
    "ENCODE_BATCH",
    "NonFiniteLoss",
    "OPTIMIZERS",
    "SCHEDULES",
    "TrainCheckpoint",
    "TrainConfig",
    "VIEWS",
    "batch_loss",
    "build_network",
    "encode",
    "encode_in_shards",
    "load_network_state",
    "lr_factor",
    "make_optimizer",
    "network_state",
    "parameter_groups",
    "shuffled_batches",
    "train_hashing_network",
    "train_step",
    "training_views",
]

if TYPE_CHECKING:
    from hashcondense.train.checkpoint import TrainCheckpoint
    from hashcondense.train.config import OPTIMIZERS, SCHEDULES, VIEWS, TrainConfig
    from hashcondense.train.network import (
        ENCODE_BATCH,
        build_network,
        encode,
        encode_in_shards,
        load_network_state,
        network_state,
    )
    from hashcondense.train.optim import lr_factor, make_optimizer, parameter_groups
    from hashcondense.train.step import NonFiniteLoss, batch_loss, shuffled_batches, train_step
    from hashcondense.train.trainer import train_hashing_network
    from hashcondense.train.views import training_views
