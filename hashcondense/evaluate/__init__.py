"""Evaluation: train a hashing network on a training set, encode, measure retrieval, write a run dir."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashcondense.utils.lazy import lazy_exports

# public name -> module (imported on first use: the config loads without torch)
_EXPORTS = {
    "EvalConfig": "config",
    "evaluate_network": "pipeline",
    "load_run_network": "pipeline",
    "run_evaluation": "pipeline",
    "random_indices": "training_sets",
    "resolve_train_set": "training_sets",
    "TrainConfig": "config",  # part of an evaluation's config (and of the README's API)
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = [
    "EvalConfig",
    "TrainConfig",
    "evaluate_network",
    "load_run_network",
    "random_indices",
    "resolve_train_set",
    "run_evaluation",
]

if TYPE_CHECKING:
    from hashcondense.evaluate.config import EvalConfig, TrainConfig
    from hashcondense.evaluate.pipeline import evaluate_network, load_run_network, run_evaluation
    from hashcondense.evaluate.training_sets import random_indices, resolve_train_set
