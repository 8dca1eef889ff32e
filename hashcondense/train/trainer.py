"""Train a hashing network on any training set (whole split, random subset, decoded synthetic set).

One loop for every hashing method: each step draws `method.num_views` augmented views of the batch
(DHD: teacher = weak view, student = strong view; the others: one strong view) and takes one
`step.train_step` on them. Adam with weight decay (IEM appendix B.2) by default, or SGD with momentum
(IDC's evaluation optimiser), under a cosine or step schedule over the total number of steps. With
`cutmix_prob > 0` the batch is CutMixed before its views are drawn (so both DHD views show the same
mixed image) and every loss term is weighted between the two labels by the pasted area, as IDC's
evaluation training does. A non-finite loss stops training with a clear error instead of silently
producing NaN codes.

Long runs (the whole CIFAR-10 train split for hundreds of epochs is hours on a CPU) resume from a
`TrainCheckpoint` written at most every `every_seconds` and after the last epoch.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from hashcondense.augment import cutmix
from hashcondense.errors import HashCondenseError
from hashcondense.hashing import HashingMethod, create_hashing
from hashcondense.models import HashingNetwork
from hashcondense.models.fused import accelerated
from hashcondense.runtime import generator
from hashcondense.train.checkpoint import TrainCheckpoint
from hashcondense.train.config import TrainConfig
from hashcondense.train.data_parallel import DataParallel, has_batch_norm
from hashcondense.train.network import build_network
from hashcondense.train.optim import make_optimizer, parameter_groups, set_learning_rate
from hashcondense.train.step import NonFiniteLoss, train_step
from hashcondense.train.views import View, training_views, view_rows
from hashcondense.utils import distributed
from hashcondense.utils.progress import progress

__all__ = ["EpochHook", "train_hashing_network"]

log = logging.getLogger("hashcondense")

EpochHook = Callable[[int, HashingNetwork, HashingMethod], "dict[str, float] | None"]


@dataclass
class _Run:
    """What one training run carries from epoch to epoch."""

    net: HashingNetwork
    method: HashingMethod
    optimiser: torch.optim.Optimizer
    config: TrainConfig
    images: torch.Tensor
    labels: torch.Tensor
    views: tuple[View, View]
    generators: dict[str, torch.Generator]  # "augment": views and CutMix, "order": batch order
    batch: int
    epochs: int
    step: int = 0
    parallel: DataParallel | None = None  # data-parallel over the run's processes
    # what the steps call: `net`, or `net` compiled (`models.fused.accelerated`)
    forward: nn.Module | None = None

    @property
    def steps_per_epoch(self) -> int:
        return math.ceil(self.images.shape[0] / self.batch)

    @property
    def total(self) -> int:
        return self.epochs * self.steps_per_epoch

    def epoch(self, epoch: int) -> dict[str, Any]:
        """Train one epoch; returns its history row (mean loss and mean of each term)."""
        self.net.train()
        self.method.train()
        order = torch.randperm(self.images.shape[0], generator=self.generators["order"])
        order = order.to(self.images.device)
        loss_sum, term_sums = 0.0, {}
        for i in range(self.steps_per_epoch):
            idx = order[i * self.batch : (i + 1) * self.batch]
            try:
                loss, terms = self._step(self.images[idx], self.labels[idx])
            except NonFiniteLoss as exc:
                error = HashCondenseError(
                    f"training diverged: the loss became {exc.value} at epoch {epoch}; lower --lr "
                    f"(now {self.config.lr}) or check the training images for NaN"
                )
                # data-parallel: every process saw the same global loss
                raise (error if self.parallel is None else distributed.replicated(error)) from None
            loss_sum += float(loss.detach())
            for k, v in terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + float(v.detach())
        n = self.steps_per_epoch
        return {"epoch": epoch, "loss": loss_sum / n, **{f"loss_{k}": v / n for k, v in term_sums.items()}}

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.parallel is not None:
            return self._parallel_step(x, y, self.parallel)
        c, g = self.config, self.generators["augment"]
        y_mixed, lam = y, 1.0
        if c.cutmix_prob > 0:
            x, y, y_mixed, lam = cutmix(x, y, g, beta=c.cutmix_beta, prob=c.cutmix_prob)
        weak, strong = self.views
        if self.method.num_views == 2:
            views = [weak(x, g), strong(x, g)] if c.augment else [x, x]
        else:
            views = [strong(x, g)] if c.augment else [x]
        set_learning_rate(self.optimiser, c, self.step, self.total)
        net = self.net if self.forward is None else self.forward
        result = train_step(net, self.method, views, y, self.optimiser, mixed_labels=y_mixed, lam=lam)
        self.step += 1
        return result

    def _parallel_step(
        self, x: torch.Tensor, y: torch.Tensor, parallel: DataParallel
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """`_step` over the run's processes: every process draws what one process draws for the whole
        global batch `x` (CutMix, the views' parameters), and trains on its share of the rows."""
        c, g = self.config, self.generators["augment"]
        y_mixed, lam = y, 1.0
        if c.cutmix_prob > 0:  # on the whole batch: a pasted box may come from another process's rows
            x, y, y_mixed, lam = cutmix(x, y, g, beta=c.cutmix_beta, prob=c.cutmix_prob)
        rows, count = parallel.rows(x.shape[0])
        weak, strong = self.views
        if self.method.num_views == 2:
            views = (
                [view_rows(weak, x, g, rows), view_rows(strong, x, g, rows)] if c.augment else [x[rows]] * 2
            )
        else:
            views = [view_rows(strong, x, g, rows)] if c.augment else [x[rows]]
        set_learning_rate(self.optimiser, c, self.step, self.total)
        result = parallel.step(
            views,
            y[rows],
            self.optimiser,
            count=count,
            size=x.shape[0],
            mixed_labels=y_mixed[rows],
            lam=lam,
        )
        self.step += 1
        return result


def _start(
    images: torch.Tensor,
    labels: torch.Tensor,
    method: HashingMethod,
    config: TrainConfig,
    seed: int,
    device: torch.device,
    arch: str,
    arch_kwargs: dict[str, Any],
    normalization: tuple[Sequence[float], Sequence[float]] | None,
) -> _Run:
    net = build_network(arch, method, images.shape[1], images.shape[-1], **arch_kwargs)
    net.to(device)
    method.to(device)
    optimiser = make_optimizer(parameter_groups(net, method, config), config)
    n = images.shape[0]
    return _Run(
        net=net,
        method=method,
        optimiser=optimiser,
        config=config,
        images=images.to(device),
        labels=labels.to(device),
        views=training_views(config.flip is not False, config.views, normalization),
        generators={"augment": generator(seed, 101), "order": generator(seed, 102)},
        batch=min(config.batch_size, n),
        epochs=config.resolved_epochs(n),
    )


def _resume(
    run: _Run, checkpoint: TrainCheckpoint | None, data_parallel: bool
) -> tuple[list[dict[str, Any]], int, float]:
    """(history, first epoch to train, seconds already spent): from the checkpoint when resuming.
    Data-parallel: rank 0 reads the file (the run folder may be on its machine only) and sends it to
    the others, which restore the same state."""
    if checkpoint is None or not checkpoint.resume:
        return [], 1, 0.0
    if data_parallel:
        tensors, meta = distributed.on_main(checkpoint.read, "reading the checkpoint")
        distributed.agree(
            lambda: checkpoint.restore(tensors, meta, run.net, run.method, run.optimiser, run.generators),
            "restoring the checkpoint",
        )
    else:
        meta = checkpoint.load(run.net, run.method, run.optimiser, run.generators)
    run.step = int(meta["step"])
    log.info("resumed from %s after epoch %d/%d", checkpoint.path, int(meta["epoch"]), run.epochs)
    return list(meta["history"]), int(meta["epoch"]) + 1, float(meta["seconds"])


def _save(checkpoint: TrainCheckpoint, run: _Run, meta: dict[str, Any]) -> None:
    checkpoint.save(run.net, run.method, run.optimiser, run.generators, meta)


def train_hashing_network(
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    arch: str,
    hashing: str | HashingMethod,
    hash_bits: int,
    num_classes: int,
    config: TrainConfig,
    seed: int = 0,
    device: torch.device | str = "cpu",
    arch_kwargs: dict[str, Any] | None = None,
    hashing_kwargs: dict[str, Any] | None = None,
    on_epoch: EpochHook | None = None,
    show_progress: bool = True,
    checkpoint: TrainCheckpoint | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
    data_parallel: bool = False,
    compile: bool = False,
) -> tuple[HashingNetwork, HashingMethod, list[dict[str, Any]]]:
    """Train a fresh network + hashing method on normalised `images` (N, C, H, W) and `labels` (N,).

    Returns the trained network (eval mode), the method (with e.g. DHD proxies) and a per-epoch history.
    `on_epoch(epoch, net, method)` runs (in eval mode) after the epochs listed in `config.eval_epochs`
    that are before the last one; what it returns is merged into that epoch's history row.
    With `checkpoint`, the state is saved as described in the module docstring, and with
    `checkpoint.resume` training continues from the saved epoch (all epochs done: no training step).
    `normalization` = the (mean, std) that normalised `images`; needed by `config.views == "jitter"`.
    `data_parallel`: every process of the run's process group calls this with the same arguments, and
    each trains on its share of every global batch (`train.data_parallel`); rank 0 alone writes the
    checkpoint, and `on_epoch` runs on every process. Without a process group of several processes
    it changes nothing.
    `compile`: the training steps run the network compiled (`models.fused.accelerated`: faster, float sums in
    another order); the returned network, the optimiser and the checkpoints are the uncompiled module's.
    """
    config.check()
    device = torch.device(device)
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise HashCondenseError("training set is empty or its images and labels differ in length")
    torch.manual_seed(seed)  # network initialisation draws from the global generator
    if not isinstance(hashing, HashingMethod):
        kwargs = dict(hashing_kwargs or {})
        hashing = create_hashing(hashing, num_classes=num_classes, hash_bits=hash_bits, **kwargs)
    run = _start(images, labels, hashing, config, seed, device, arch, dict(arch_kwargs or {}), normalization)
    data_parallel = data_parallel and distributed.is_active()
    history, first_epoch, seconds_before = _resume(run, checkpoint, data_parallel)
    run.forward = accelerated(run.net, compile)
    if data_parallel:
        if has_batch_norm(run.net) and distributed.is_main():
            log.warning(
                "%s has batch normalisation: each of the %d processes normalises its share of a batch "
                "with the share's statistics, so the result differs from one process by more than "
                "rounding (README 'Several processes')",
                arch,
                distributed.world_size(),
            )
        run.parallel = DataParallel(run.forward, run.method, device)
    try:
        _epochs(run, history, first_epoch, seconds_before, checkpoint, on_epoch, show_progress)
    finally:
        if run.parallel is not None:
            run.parallel.close()
            run.parallel = None
    run.net.eval()
    run.method.eval()
    return run.net, run.method, history


def _epochs(
    run: _Run,
    history: list[dict[str, Any]],
    first_epoch: int,
    seconds_before: float,
    checkpoint: TrainCheckpoint | None,
    on_epoch: EpochHook | None,
    show_progress: bool,
) -> None:
    """Train the epochs `first_epoch`..`run.epochs`, appending their rows to `history`."""
    config = run.config
    eval_epochs = {e for e in config.eval_epochs if 0 < e < run.epochs}
    quiet = not show_progress or not distributed.is_main()
    bar = progress(range(first_epoch, run.epochs + 1), desc="train", disable=quiet, unit="epoch")
    start, last_save = time.perf_counter() - seconds_before, time.perf_counter()
    for epoch in bar:
        row = run.epoch(epoch)
        if run.parallel is not None:
            run.parallel.sync_buffers()  # every process encodes with (and rank 0 saves) the same network
            # rank 0's clock: the history is the same on every process
            row["seconds"] = distributed.broadcast_float(time.perf_counter() - start, "agreeing on the time")
        else:
            row["seconds"] = time.perf_counter() - start
        if on_epoch is not None and epoch in eval_epochs:
            run.net.eval()
            run.method.eval()
            row.update(on_epoch(epoch, run.net, run.method) or {})
        history.append(row)
        log.info("epoch %d/%d loss %.4f (%.0f s)", epoch, run.epochs, row["loss"], row["seconds"])
        due = checkpoint is not None and (
            epoch == run.epochs or time.perf_counter() - last_save >= checkpoint.every_seconds
        )
        if run.parallel is not None and checkpoint is not None:
            due = distributed.broadcast_object(due, "deciding on a checkpoint")  # rank 0's clock decides
        if due:
            assert checkpoint is not None
            meta = {"epoch": epoch, "step": run.step, "history": history, "seconds": row["seconds"]}
            # rank 0 alone writes; a failure stops every process
            distributed.on_main(functools.partial(_save, checkpoint, run, meta), "writing the checkpoint")
            last_save = time.perf_counter()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{row['loss']:.4f}")
