"""Evaluation: train a hashing network on a training set, encode, measure retrieval, write a run dir."""

from hashcondense.evaluate.pipeline import EvalConfig, evaluate_network, load_run_network, run_evaluation
from hashcondense.evaluate.training_sets import random_indices, resolve_train_set
from hashcondense.train import TrainConfig  # part of an evaluation's config (and of the README's API)

__all__ = [
    "EvalConfig",
    "TrainConfig",
    "evaluate_network",
    "load_run_network",
    "random_indices",
    "resolve_train_set",
    "run_evaluation",
]
