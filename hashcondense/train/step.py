"""One optimiser step of a hashing network on a batch: the step that evaluation training, the IEM
model pool and the gradient-matching baselines' network updates all take.

The caller draws the augmented views (their order of random draws is the caller's recipe); the step
runs them through the network in one forward pass, computes the hashing method's weighted loss (with
CutMix: each label pair weighted by the pasted area) and updates network and method parameters.
"""

from __future__ import annotations

import torch
from torch import nn

from hashcondense.augment import cutmix_loss
from hashcondense.hashing import HashingMethod

__all__ = ["NonFiniteLoss", "batch_loss", "shuffled_batches", "train_step"]


class NonFiniteLoss(Exception):
    """The loss of a step was NaN or infinite; callers turn it into a message naming their fix."""

    def __init__(self, value: float) -> None:
        super().__init__(value)
        self.value = value


def train_step(
    net: nn.Module,
    method: HashingMethod,
    views: list[torch.Tensor],
    labels: torch.Tensor,
    optimiser: torch.optim.Optimizer,
    *,
    mixed_labels: torch.Tensor | None = None,
    lam: float = 1.0,
    mix_terms: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Minimise `method`'s loss on `views` (each (B, C, H, W)) of one batch; returns (loss, terms).

    With CutMix (`lam` < 1) every term is taken against `labels` and `mixed_labels`: `mix_terms` mixes
    each term by `lam` (evaluation training, whose history records the mixed terms), else the two
    weighted totals are mixed (IDC's update: criterion(a) * lam + criterion(b) * (1 - lam)).
    Raises `NonFiniteLoss` before any parameter changes.
    """
    loss, terms = batch_loss(
        net, method, views, labels, mixed_labels=mixed_labels, lam=lam, mix_terms=mix_terms
    )
    if not torch.isfinite(loss):
        raise NonFiniteLoss(float(loss.detach()))
    optimiser.zero_grad(set_to_none=True)
    loss.backward()
    optimiser.step()
    return loss, terms


def batch_loss(
    net: nn.Module,
    method: HashingMethod,
    views: list[torch.Tensor],
    labels: torch.Tensor,
    *,
    mixed_labels: torch.Tensor | None = None,
    lam: float = 1.0,
    mix_terms: bool = True,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """`method`'s weighted loss and its terms on `views` of one batch, as `train_step` minimises them
    (one forward pass of every view; CutMix as there). Every shipped method's terms are means over the
    batch of per-image values, which data-parallel training relies on (`train.data_parallel`)."""
    codes = list(net(torch.cat(views)).split(views[0].shape[0]))
    terms = method.loss_terms(codes, labels)
    if lam < 1.0:
        assert mixed_labels is not None, "CutMix needs the pasted images' labels"
        other = method.loss_terms(codes, mixed_labels)
        if mix_terms:
            terms = {k: cutmix_loss(v, other[k], lam) for k, v in terms.items()}
            loss = method.combine(terms)
        else:
            loss = cutmix_loss(method.combine(terms), method.combine(other), lam)
    else:
        loss = method.combine(terms)
    return loss, terms


def shuffled_batches(count: int, batch: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch: a random permutation of range(count) cut into batches of `batch` (the last smaller)."""
    order = torch.randperm(count, generator=generator)
    return [order[start : start + batch] for start in range(0, count, batch)]
