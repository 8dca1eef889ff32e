"""Resumable training: the state at the end of an epoch (network, hashing method, optimiser, both
random generators, step, history) in one safetensors file, written atomically.

A resumed run gives the same numbers as an uninterrupted one because every random draw after
initialisation comes from the two saved generators.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.hashing import HashingMethod
from hashcondense.io.tensors import load_tensors, save_tensors
from hashcondense.train.network import load_network_state, network_state

__all__ = ["CHECKPOINT_FORMAT", "TrainCheckpoint"]

CHECKPOINT_FORMAT = "hashcondense-train-checkpoint/1"
_FIX = "delete it to start again, or choose another --out"


@dataclass
class TrainCheckpoint:
    """Where and how often `train_hashing_network` saves its state, and whether to start from it.

    `key` identifies the run's settings (the pipeline passes a digest of its resolved config); a
    checkpoint whose key differs is refused instead of silently mixing two recipes.
    """

    path: str | os.PathLike[str]
    resume: bool = False
    every_seconds: float = 60.0
    key: str = ""

    def save(
        self,
        net: nn.Module,
        method: HashingMethod,
        optimiser: torch.optim.Optimizer,
        generators: dict[str, torch.Generator],
        meta: dict[str, Any],
    ) -> None:
        tensors = network_state(net, method)
        opt = optimiser.state_dict()
        for index, state in opt["state"].items():
            for name, value in state.items():
                tensors[f"optim.{index}.{name}"] = torch.as_tensor(value)
        tensors.update({f"rng.{name}": g.get_state() for name, g in generators.items()})
        meta = {**meta, "format": CHECKPOINT_FORMAT, "key": self.key, "param_groups": opt["param_groups"]}
        save_tensors(self.path, tensors, meta)

    def load(
        self,
        net: nn.Module,
        method: HashingMethod,
        optimiser: torch.optim.Optimizer,
        generators: dict[str, torch.Generator],
    ) -> dict[str, Any]:
        """Restore the saved state in place; returns the metadata (epoch, step, history, ...)."""
        tensors, meta = self.read()
        return self.restore(tensors, meta, net, method, optimiser, generators)

    def read(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """The file's tensors and metadata, checked to be a training checkpoint of these settings."""
        path = Path(self.path)
        try:
            tensors, meta = load_tensors(path, what="training checkpoint")
        except HashCondenseError as exc:
            raise HashCondenseError(f"{exc}; {_FIX}") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise HashCondenseError(f"{path} is not a hashcondense training checkpoint; {_FIX}")
        if meta.get("key") != self.key:
            raise HashCondenseError(
                f"training checkpoint {path} was made with other settings; resume with the same "
                f"settings (only --device, --threads, --quiet, --eval-epochs and the number of processes "
                f"may change), or {_FIX}"
            )
        return tensors, meta

    def restore(
        self,
        tensors: dict[str, torch.Tensor],
        meta: dict[str, Any],
        net: nn.Module,
        method: HashingMethod,
        optimiser: torch.optim.Optimizer,
        generators: dict[str, torch.Generator],
    ) -> dict[str, Any]:
        """Put what `read` returned into the network, method, optimiser and generators; returns `meta`."""
        path, fix = Path(self.path), _FIX
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                opt_state.setdefault(int(index), {})[key] = value
        try:
            load_network_state(net, method, tensors)
            optimiser.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
            for name, g in generators.items():
                g.set_state(tensors[f"rng.{name}"])
        except (RuntimeError, KeyError, ValueError) as exc:
            reason = str(exc).splitlines()[0][:80]
            raise HashCondenseError(
                f"training checkpoint {path} does not fit this network ({reason}); {fix}"
            ) from None
        return meta
