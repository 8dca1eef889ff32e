"""Training a hashing network: the recipe (`TrainConfig`), the one training step that evaluation, the
IEM model pool and the gradient-matching baselines share (`step.train_step`), the training loop,
resumable checkpoints, and building, saving and encoding networks."""

from hashcondense.train.checkpoint import TrainCheckpoint
from hashcondense.train.config import OPTIMIZERS, SCHEDULES, VIEWS, TrainConfig
from hashcondense.train.network import build_network, encode, load_network_state, network_state
from hashcondense.train.optim import lr_factor, make_optimizer, parameter_groups
from hashcondense.train.step import NonFiniteLoss, shuffled_batches, train_step
from hashcondense.train.trainer import train_hashing_network
from hashcondense.train.views import training_views

__all__ = [
    "OPTIMIZERS",
    "SCHEDULES",
    "VIEWS",
    "NonFiniteLoss",
    "TrainCheckpoint",
    "TrainConfig",
    "build_network",
    "encode",
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
