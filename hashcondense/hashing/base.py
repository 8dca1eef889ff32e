"""The hashing-method contract (DESIGN Section 4).

A hashing method is an `nn.Module` (it may own trainable parameters, e.g. DHD's proxies, and buffers,
e.g. fixed per-class target codes; move it with `.to(device)` and give its parameters to the optimiser) that
- builds the hash head for a backbone: `make_head(feature_dim) -> nn.Module` mapping features to
  continuous codes of shape (B, hash_bits);
- says how many augmented views of each image its loss wants: `num_views` (DHD: 2, teacher = weak view
  first, student = strong view second; the others: 1);
- returns its loss terms separately: `loss_terms(codes, labels) -> {name: scalar tensor}`, where
  `codes` is a list with one (B, hash_bits) tensor per view and `labels` are int64 class indices (B,)
  or a float multi-hot matrix (B, num_classes);
- weights them: `loss(codes, labels) = sum(loss_weights[k] * terms[k])`; `loss_weights` names exactly
  the terms that `loss_terms` returns;
- takes each term as a mean over the batch of per-image values (every shipped method does): training
  over several processes adds up the processes' shares of a batch weighted by their sizes
  (`train.data_parallel`), which is the whole batch's loss only then.
Gradient-matching condensation (DSA, IDC) groups terms via `loss_groups()` and takes each group's
gradients with respect to the parameters `group_parameters(network)` returns for it (same order).
Retrieval codes are sign(h) of the head's output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.utils.checks import check_hash_bits, check_number, is_count

__all__ = ["HashingMethod", "check_feature_dim", "check_seed", "check_setting"]


class HashingMethod(nn.Module):
    name: str = "base"
    num_views: int = 1
    loss_weights: dict[str, float] = {}

    def __init__(self, num_classes: int, hash_bits: int) -> None:
        super().__init__()
        check_hash_bits(hash_bits)
        if not is_count(num_classes, 2):
            raise HashCondenseError(
                f"num_classes={num_classes!r} cannot work; retrieval needs a whole number >= 2 of classes"
            )
        self.num_classes = int(num_classes)
        self.hash_bits = int(hash_bits)

    def make_head(self, feature_dim: int) -> nn.Module:
        raise NotImplementedError

    def loss_terms(self, codes: list[torch.Tensor], labels: torch.Tensor) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, codes: list[torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
        return self.combine(self.loss_terms(codes, labels))

    def combine(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        """The weighted sum of loss terms: sum(loss_weights[k] * terms[k])."""
        return sum(self.loss_weights.get(k, 1.0) * v for k, v in terms.items())

    def loss_groups(self) -> list[list[str]]:
        """Groups of loss terms whose gradients gradient-matching methods match separately."""
        return [list(self.loss_weights) or ["loss"]]

    def group_parameters(self, network: nn.Module) -> list[list[nn.Parameter]]:
        """For each group of `loss_groups()`, the parameters its gradients are matched on.

        Default: every group on all parameters of `network` (backbone + hash head); the caller may
        filter further (IDC matches conv weights only). DHD overrides it: its proxy group is matched
        on the proxies.
        """
        return [list(network.parameters()) for _ in self.loss_groups()]

    # ---- input handling shared by the methods -------------------------------------------------------

    def _views(
        self, codes: list[torch.Tensor] | tuple[torch.Tensor, ...] | torch.Tensor, max_views: int
    ) -> list[torch.Tensor]:
        """Check `codes` (a list of (B, hash_bits) tensors, or one tensor) and return float32+ views."""
        if isinstance(codes, torch.Tensor):
            codes = [codes]
        views = list(codes)
        if not 1 <= len(views) <= max_views:
            raise HashCondenseError(
                f"{self.name} takes 1 to {max_views} views of codes but got {len(views)}; "
                f"pass a list of num_views={self.num_views} tensors of shape (batch, hash_bits)"
            )
        shape = views[0].shape
        for v in views:
            if v.dim() != 2 or v.shape[1] != self.hash_bits or v.shape != shape or v.shape[0] == 0:
                raise HashCondenseError(
                    f"{self.name} expects codes of shape (batch, {self.hash_bits}) for every view; got "
                    f"{[tuple(x.shape) for x in views]}: check hash_bits and the network's head"
                )
        return [
            v.float() if v.dtype in (torch.float16, torch.bfloat16) or not v.is_floating_point() else v
            for v in views
        ]

    def _targets(self, labels: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """Labels (B,) class indices or (B, C) multi-hot -> float (B, C) targets on `like`'s device/dtype."""
        batch = like.shape[0]
        labels = torch.as_tensor(labels, device=like.device)
        if labels.dim() == 1 and labels.shape[0] == batch and not labels.is_floating_point():
            return F.one_hot(labels.long(), self.num_classes).to(like.dtype)
        if labels.dim() == 2 and labels.shape == (batch, self.num_classes):
            return labels.to(like.dtype)
        raise HashCondenseError(
            f"labels of shape {tuple(labels.shape)} do not fit codes of batch {batch}; pass int64 class "
            f"indices (batch,) or a multi-hot matrix (batch, {self.num_classes})"
        )

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, hash_bits={self.hash_bits}"


def check_setting(
    method: str, name: str, value: float, hint: str, *, allow_zero: bool = False, maximum: float | None = None
) -> float:
    """Validate a numeric setting of a hashing method and return it as float.

    Raises `HashCondenseError` naming the setting and the fix unless `value` is a finite real number,
    > 0 (or >= 0 with `allow_zero`) and, when `maximum` is given, < maximum.
    """
    return check_number(f"{method} {name}", value, hint, allow_zero=allow_zero, maximum=maximum)


def check_feature_dim(feature_dim: int) -> int:
    """The backbone feature size handed to `make_head`, as a positive int."""
    if not is_count(feature_dim, 1):
        raise HashCondenseError(f"feature_dim={feature_dim!r} cannot work; pass the backbone's feature size")
    return int(feature_dim)


def check_seed(method: str, seed: int) -> int:
    """A codebook seed: a whole number >= 0."""
    if not is_count(seed, 0):
        raise HashCondenseError(f"{method} codebook_seed={seed!r} cannot work; use a whole number >= 0")
    return int(seed)
