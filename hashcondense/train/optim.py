"""The evaluation optimiser, its parameter groups and the learning-rate schedule."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from hashcondense.hashing import HashingMethod
from hashcondense.models import HashingNetwork
from hashcondense.train.config import TrainConfig

__all__ = ["lr_factor", "make_optimizer", "parameter_groups", "set_learning_rate"]


def make_optimizer(
    params: list[nn.Parameter] | list[dict[str, Any]], config: TrainConfig
) -> torch.optim.Optimizer:
    """The evaluation optimiser named by `config.optimizer`, with its learning rate and weight decay.

    `params` is a list of parameters or of parameter groups (see `parameter_groups`); a group's
    `lr_scale` multiplies the scheduled learning rate of that group.
    """
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
        )
    cls = torch.optim.AdamW if config.optimizer == "adamw" else torch.optim.Adam
    return cls(params, lr=config.lr, weight_decay=config.weight_decay)


def parameter_groups(net: HashingNetwork, method: HashingMethod, config: TrainConfig) -> list[dict[str, Any]]:
    """One group for every trainable parameter, or, with `config.backbone_lr_scale != 1`, the backbone
    apart (`lr_scale` = that factor) from the hash head and the method's own parameters (lr_scale 1).

    One group at scale 1 keeps the optimiser state's layout that of a single-rate run, so checkpoints
    made either way load.
    """
    backbone = [p for p in net.backbone.parameters() if p.requires_grad]
    rest = [p for p in list(net.head.parameters()) + list(method.parameters()) if p.requires_grad]
    if config.backbone_lr_scale == 1.0:
        return [{"params": backbone + rest, "lr_scale": 1.0}]
    return [
        {"params": backbone, "lr_scale": float(config.backbone_lr_scale)},
        {"params": rest, "lr_scale": 1.0},
    ]


def lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    """Multiplier of the base learning rate at `step` of `total` (linear warm-up first)."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))
    if schedule == "step":
        return 1.0 if step < total * 2 / 3 else (0.2 if step < total * 5 / 6 else 0.04)
    return 1.0


def set_learning_rate(optimiser: torch.optim.Optimizer, config: TrainConfig, step: int, total: int) -> None:
    """The scheduled rate of `step` for every group (times the group's `lr_scale`; 1 where a loaded
    optimiser state has none)."""
    factor = lr_factor(config.schedule, step, total, config.warmup_steps)
    for group in optimiser.param_groups:
        group["lr"] = config.lr * group.get("lr_scale", 1.0) * factor
