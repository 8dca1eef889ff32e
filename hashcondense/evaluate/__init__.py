"""Evaluation: train a hashing network on a training set, encode, measure retrieval, write a run dir."""

from hashcondense.evaluate.pipeline import EvalConfig, evaluate_network, load_run_network, run_evaluation
from hashcondense.evaluate.trainer import TrainConfig, build_network, encode, train_hashing_network
from hashcondense.evaluate.training_sets import random_indices, resolve_train_set

__all__ = [
    "EvalConfig",
    "TrainConfig",
    "build_network",
    "encode",
    "evaluate_network",
    "load_run_network",
    "random_indices",
    "resolve_train_set",
    "run_evaluation",
    "train_hashing_network",
]
