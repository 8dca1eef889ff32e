"""Feature-embedding matching, shared by DM and IEM.

Per class c: L_c = || mean psi(a_w(T_c)) - mean psi(a_w(f(S_c))) ||^2 (sum of squares over the
feature dimension, as DM's and IDC's 'mse' feature distance), psi = the network's `embed` (the
flattened input of the hash layer), on a frozen network that a subclass sets in `begin_outer`.

Speed: all classes of a group go through the network together, the real images in one no-grad pass
(in chunks of at most `max_forward` images) and the synthetic images in one forward + backward. This
equals the per-class computation because the networks act per sample (instance norm, or batch norm
in eval mode: the network is always in eval mode here) and each class loss depends only on its own
rows. With `compile` the embedding is compiled once per process (`models.fused.accelerated`) and serves every
network the methods draw (a function of the network, so a new DM network or pool member does not
recompile). (Deviation to note: DM and Acc-DD run batch-norm networks in train mode, i.e. with per-class
batch statistics; for the default instance-norm networks there is no difference.)
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from hashcondense.condense.context import MatchBatch
from hashcondense.condense.method import CondenseMethod
from hashcondense.models.fused import accelerated

__all__ = ["EmbeddingMatching", "class_means"]


def _embed(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    return net.embed(x)


def class_means(features: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    """Mean feature of each consecutive block of rows: (sum(sizes), D) -> (len(sizes), D)."""
    return torch.stack([block.mean(dim=0) for block in features.split(sizes)])


class EmbeddingMatching(CondenseMethod):
    """Base of embedding-matching methods: subclasses set `self.net` in `begin_outer`."""

    batch_classes = True
    distributed = True  # per-class losses on a network every process draws alike: classes can be sharded
    net: nn.Module | None = None
    _embed_fn: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        assert self.net is not None, "begin_outer must set the network"
        if self._embed_fn is None:
            self._embed_fn = accelerated(_embed, bool(self.context.config.compile))
        return self._embed_fn(self.net, x)

    def match_losses(self, batch: MatchBatch) -> torch.Tensor:
        chunk = max(1, int(self.context.config.max_forward))
        with torch.no_grad():
            real = torch.cat(batch.real)
            feats = torch.cat([self.embed(part) for part in real.split(chunk)])
            real_mean = class_means(feats, [t.shape[0] for t in batch.real])
        syn = torch.cat(batch.synthetic)
        syn_mean = class_means(self.embed(syn), [t.shape[0] for t in batch.synthetic])
        return (real_mean - syn_mean).square().sum(dim=1)
