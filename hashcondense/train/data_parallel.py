"""Data-parallel training of a hashing network over the processes of a run (torchrun, `--nproc`), with
PyTorch's DistributedDataParallel (DDP).

Every process holds the same network, hashing method and optimiser, and draws the same global batch
(order, CutMix and augmentation draws come from generators tied to the run's seed and step, never to
the rank). Process r takes a consecutive share of the batch's rows (`utils.distributed.contiguous_shares`:
64 images on 2 processes, rows 0-31 and 32-63), runs forward and backward on it, and DDP all-reduces
the gradients, so every process takes the same optimiser step. The global batch stays `batch_size`
images, whatever the number of processes.

Why the step equals one process's, up to float rounding: every shipped hashing method's loss terms are
means over the batch of per-image values (`step.batch_loss`), so the batch's loss is the sum over
processes of (share of the rows) x (the share's mean). Each process scales its loss by
share x N before backward, and DDP divides the summed gradients by N. What is not bit for bit: the
convolutions of a half batch and the sum of the shares' gradients round differently from one pass over
the whole batch, and the optimiser (Adam) carries those last-bit differences forward, so the trained
weights drift apart slowly and the mAP agrees to a tolerance (README "Several processes").

Batch normalisation (resnet*, densenet121 by default) normalises each share with its own statistics, as
DDP does without SyncBatchNorm (PyTorch runs that on GPUs only); the running statistics are rank 0's
(DDP broadcasts its buffers before every forward pass, and `sync_buffers` after training). Such
networks therefore train as with a per-process batch of batch_size / N, not to float rounding of one
process.

A share with no rows (the last batch of an epoch smaller than N) runs one row at weight 0, because DDP
needs every process in every backward pass.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from hashcondense.hashing import HashingMethod
from hashcondense.train.step import NonFiniteLoss, batch_loss
from hashcondense.utils import distributed

__all__ = ["DataParallel", "has_batch_norm"]

log = logging.getLogger("hashcondense")


class _NetworkLoss(nn.Module):
    """The network and its hashing method as one module whose forward pass returns the loss: DDP then
    sees every trainable parameter (DHD's proxies are the method's) inside the graph of its output."""

    def __init__(self, net: nn.Module, method: HashingMethod) -> None:
        super().__init__()
        self.net = net
        self.method = method

    def forward(
        self,
        views: list[torch.Tensor],
        labels: torch.Tensor,
        mixed_labels: torch.Tensor | None,
        lam: float,
        mix_terms: bool,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return batch_loss(
            self.net, self.method, views, labels, mixed_labels=mixed_labels, lam=lam, mix_terms=mix_terms
        )


def has_batch_norm(net: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in net.modules())


class DataParallel:
    """`net` + `method` wrapped in DDP on the run's process group (started by the caller)."""

    def __init__(self, net: nn.Module, method: HashingMethod, device: torch.device) -> None:
        from torch.nn.parallel import DistributedDataParallel

        self.module = _NetworkLoss(net, method)
        self.world = distributed.world_size()
        self.rank = distributed.rank()
        # DDP's constructor broadcasts rank 0's parameters and buffers: a resumed or freshly seeded
        # network is the same everywhere already, so this changes nothing but guards against a mistake
        self.ddp = distributed.guard_peers(
            "starting data-parallel training",
            lambda: DistributedDataParallel(
                self.module, device_ids=[device.index] if device.type == "cuda" else None
            ),
        )

    def rows(self, size: int) -> tuple[slice, int]:
        """This process's rows of a global batch of `size` images, and how many images they are (0: the
        slice holds one row that the step weighs 0)."""
        share = distributed.contiguous_shares(size, self.world)[self.rank]
        if not share:
            return slice(0, 1), 0
        return slice(share[0], share[-1] + 1), len(share)

    def step(
        self,
        views: list[torch.Tensor],
        labels: torch.Tensor,
        optimiser: torch.optim.Optimizer,
        *,
        count: int,
        size: int,
        mixed_labels: torch.Tensor | None = None,
        lam: float = 1.0,
        mix_terms: bool = True,
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One optimiser step on this process's `count` rows (`views`, `labels`) of a global batch of
        `size` images; returns the global batch's loss and terms (the same on every process).

        Raises `NonFiniteLoss` on every process alike (the global loss decides) before any parameter
        changes."""

        def forward() -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
            return self.ddp(views, labels, mixed_labels, lam, mix_terms)

        loss, terms = distributed.guard_peers("training (forward pass)", forward)
        share = count / size
        names = list(terms)
        local = torch.stack([loss.detach(), *(terms[k].detach() for k in names)]).float() * share
        total = distributed.all_reduce_sum(local, "adding up the batch's loss")
        global_loss = total[0]
        if not torch.isfinite(global_loss):
            raise NonFiniteLoss(float(global_loss))
        optimiser.zero_grad(set_to_none=True)
        # DDP averages the gradients over the N processes: scaling by share x N makes the average the
        # gradient of the global batch's mean loss (exactly 1 for equal shares)
        weight = count * self.world / size
        scaled = loss if weight == 1.0 else loss * weight
        distributed.guard_peers("training (backward pass)", scaled.backward)
        optimiser.step()
        return global_loss, {k: total[i + 1] for i, k in enumerate(names)}

    def close(self) -> None:
        """Release DDP (its reducer holds the process group): destroying the group while a reducer is
        alive sometimes aborts the process at exit ("terminate called without an active exception")."""
        import gc

        del self.ddp
        gc.collect()

    def sync_buffers(self) -> None:
        """Rank 0's buffers (batch-norm running statistics) on every process: the network that rank 0
        saves is then the one every process encodes with."""
        buffers = [b for b in self.module.buffers()]
        distributed.broadcast_tensors_(buffers, "sharing the network's buffers")
