"""Train a hashing network on any training set (whole split, random subset, decoded synthetic set).

One loop for every hashing method: each step draws `method.num_views` augmented views of the batch
(DHD: teacher = weak view, student = strong view; the others: one strong view), runs them through the
network in one forward pass, and minimises `method.loss`. Adam with weight decay (IEM appendix B.2) by
default, or SGD with momentum (IDC's evaluation optimiser), under a cosine or step schedule over the total
number of steps. With `cutmix_prob > 0` the batch is CutMixed before its views are drawn (so both DHD
views show the same mixed image) and every loss term is weighted between the two labels by the pasted
area, as IDC's evaluation training does. A non-finite loss stops training with a clear
error instead of silently producing NaN codes.

Long runs (the whole CIFAR-10 train split for hundreds of epochs is hours on a CPU) can be resumed:
with a `TrainCheckpoint`, the state at the end of an epoch (network, hashing method, optimiser,
both random generators, step, history) is written atomically to a safetensors file at most every
`every_seconds`, and after the last epoch. A resumed run continues from it and gives the same
numbers as an uninterrupted one, because every random draw after initialisation comes from the two
saved generators.
"""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashcondense.augment import (
    DSA,
    DSA_STRATEGY,
    JitterAugment,
    cutmix,
    cutmix_loss,
    strong_augment,
    weak_augment,
)
from hashcondense.errors import HashCondenseError
from hashcondense.hashing import HashingMethod, create_hashing
from hashcondense.io.tensors import load_tensors, save_tensors, strip_prefix
from hashcondense.models import HashingNetwork, create_model
from hashcondense.runtime import generator
from hashcondense.utils.progress import progress

__all__ = [
    "TrainConfig",
    "TrainCheckpoint",
    "build_network",
    "make_optimizer",
    "parameter_groups",
    "train_hashing_network",
    "encode",
]

log = logging.getLogger("hashcondense")


@dataclass
class TrainConfig:
    """Evaluation-training recipe. `epochs=0` means auto: enough epochs for `auto_steps` steps."""

    epochs: int = 0
    auto_steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-3
    # the backbone trains at lr x this, the hash head and the method's parameters (DHD's proxies) at lr;
    # DHD's code uses 0.05 for its pretrained encoders
    backbone_lr_scale: float = 1.0
    weight_decay: float = 6e-6
    optimizer: str = "adam"  # adam (L2 weight decay, IEM) | adamw (decoupled decay) | sgd (momentum, IDC)
    momentum: float = 0.9  # SGD only
    schedule: str = "cosine"  # cosine | step (x0.2 at 2/3 and 5/6, IDC) | constant
    warmup_steps: int = 0
    augment: bool = True
    # the two DHD views: "dsa" (weak = translation + flip, strong = the full DSA strategy) or "jitter"
    # (DHD's code: resized crop, flip, colour jitter, grayscale, blur; teacher at half strength)
    views: str = "dsa"
    # CutMix on the batch before its views (IDC's evaluation: beta 1, p 0.5); 0 = off
    cutmix_prob: float = 0.0
    cutmix_beta: float = 1.0
    flip: bool | None = None  # None: the dataset's default (False for digits, True otherwise)
    eval_epochs: list[int] = field(default_factory=list)

    def resolved_epochs(self, num_images: int) -> int:
        if self.epochs > 0:
            return int(self.epochs)
        steps_per_epoch = math.ceil(num_images / min(self.batch_size, num_images))
        return max(1, math.ceil(self.auto_steps / steps_per_epoch))

    def check(self) -> None:
        if self.batch_size < 1:
            raise HashCondenseError(f"batch size {self.batch_size} cannot work; use a positive --batch-size")
        if self.epochs < 0:
            raise HashCondenseError(f"--epochs {self.epochs} cannot work; use a positive number (0 = auto)")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise HashCondenseError(f"learning rate {self.lr} cannot work; use a positive --lr")
        if not (self.backbone_lr_scale > 0 and math.isfinite(self.backbone_lr_scale)):
            raise HashCondenseError(
                f"backbone lr scale {self.backbone_lr_scale} cannot work; use a positive --backbone-lr-scale"
            )
        if self.optimizer not in OPTIMIZERS:
            raise HashCondenseError(
                f"unknown optimizer '{self.optimizer}'; choose {', '.join(OPTIMIZERS)}"
            )
        if not (self.weight_decay >= 0 and math.isfinite(self.weight_decay)):
            raise HashCondenseError(
                f"weight decay {self.weight_decay} cannot work; use a --weight-decay >= 0"
            )
        if not (0 <= self.momentum < 1):
            raise HashCondenseError(f"momentum {self.momentum} cannot work; use a --momentum in [0, 1)")
        if not 0 <= self.cutmix_prob <= 1:
            raise HashCondenseError(
                f"CutMix probability {self.cutmix_prob} cannot work; use a --cutmix-prob in [0, 1]"
            )
        if not (self.cutmix_beta > 0 and math.isfinite(self.cutmix_beta)):
            raise HashCondenseError(
                f"CutMix beta {self.cutmix_beta} cannot work; use a positive --cutmix-beta"
            )
        if self.views not in VIEWS:
            raise HashCondenseError(f"unknown views '{self.views}'; choose {', '.join(VIEWS)}")
        if self.schedule not in ("cosine", "step", "constant"):
            raise HashCondenseError(f"unknown schedule '{self.schedule}'; choose cosine, step or constant")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


OPTIMIZERS = ("adam", "adamw", "sgd")
VIEWS = ("dsa", "jitter")


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


def parameter_groups(
    net: HashingNetwork, method: HashingMethod, config: TrainConfig
) -> list[dict[str, Any]]:
    """One group for every trainable parameter, or, with `config.backbone_lr_scale != 1`, the backbone
    apart (`lr_scale` = that factor) from the hash head and the method's own parameters (lr_scale 1).

    A single group when the scale is 1 keeps checkpoints of earlier runs loadable.
    """
    backbone = [p for p in net.backbone.parameters() if p.requires_grad]
    rest = [p for p in list(net.head.parameters()) + list(method.parameters()) if p.requires_grad]
    if config.backbone_lr_scale == 1.0:
        return [{"params": backbone + rest, "lr_scale": 1.0}]
    return [
        {"params": backbone, "lr_scale": float(config.backbone_lr_scale)},
        {"params": rest, "lr_scale": 1.0},
    ]


CHECKPOINT_FORMAT = "hashcondense-train-checkpoint/1"


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
        tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
        tensors.update({f"method.{k}": v for k, v in method.state_dict().items()})
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
        path = Path(self.path)
        fix = "delete it to start again, or choose another --out"
        try:
            tensors, meta = load_tensors(path, what="training checkpoint")
        except HashCondenseError as exc:
            raise HashCondenseError(f"{exc}; {fix}") from None
        if meta.get("format") != CHECKPOINT_FORMAT:
            raise HashCondenseError(f"{path} is not a hashcondense training checkpoint; {fix}")
        if meta.get("key") != self.key:
            raise HashCondenseError(
                f"training checkpoint {path} was made with other settings; resume with the same "
                f"settings (only --device, --threads, --quiet and --eval-epochs may change), or {fix}"
            )
        opt_state: dict[int, dict[str, torch.Tensor]] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, index, key = name.split(".", 2)
                opt_state.setdefault(int(index), {})[key] = value
        try:
            net.load_state_dict(strip_prefix(tensors, "net."))
            method.load_state_dict(strip_prefix(tensors, "method."))
            optimiser.load_state_dict({"state": opt_state, "param_groups": meta["param_groups"]})
            for name, g in generators.items():
                g.set_state(tensors[f"rng.{name}"])
        except (RuntimeError, KeyError, ValueError) as exc:
            reason = str(exc).splitlines()[0][:80]
            raise HashCondenseError(
                f"training checkpoint {path} does not fit this network ({reason}); {fix}"
            ) from None
        return meta


def build_network(
    arch: str, method: HashingMethod, in_channels: int, image_size: int, **arch_kwargs: Any
) -> HashingNetwork:
    backbone = create_model(arch, in_channels=in_channels, image_size=image_size, **arch_kwargs)
    return HashingNetwork(backbone, method.make_head(backbone.feature_dim))


View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def training_views(
    flip: bool = True,
    views: str = "dsa",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[View, View]:
    """The (weak, strong) views; without flips for data whose mirror image is another class.

    "dsa": teacher = translation + flip, student = the full DSA strategy (DESIGN Section 4).
    "jitter": DHD's own code, one chain at strength 0.5 (teacher) and 1 (student); it works on pixel
    values, so it needs the images' `normalization` (per-channel mean, std).
    """
    if views == "jitter":
        if normalization is None:
            raise HashCondenseError(
                "views 'jitter' needs the dataset's mean and std; pass normalization=(mean, std)"
            )
        mean, std = normalization
        return JitterAugment(mean, std, 0.5, flip=flip), JitterAugment(mean, std, 1.0, flip=flip)
    if flip:
        return weak_augment(), strong_augment()
    strategy = "_".join(g for g in DSA_STRATEGY.split("_") if g != "flip")
    return DSA("crop", mode="all"), DSA(strategy, mode="all")


def _lr_factor(schedule: str, step: int, total: int, warmup: int) -> float:
    if warmup and step < warmup:
        return (step + 1) / warmup
    if schedule == "cosine":
        progress_ = (step - warmup) / max(1, total - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress_)))
    if schedule == "step":
        return 1.0 if step < total * 2 / 3 else (0.2 if step < total * 5 / 6 else 0.04)
    return 1.0


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
    on_epoch: Callable[[int, HashingNetwork, HashingMethod], dict[str, float] | None] | None = None,
    show_progress: bool = True,
    checkpoint: TrainCheckpoint | None = None,
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[HashingNetwork, HashingMethod, list[dict[str, Any]]]:
    """Train a fresh network + hashing method on normalised `images` (N, C, H, W) and `labels` (N,).

    Returns the trained network (eval mode), the method (with e.g. DHD proxies) and a per-epoch history.
    `on_epoch(epoch, net, method)` runs (in eval mode) after the epochs listed in `config.eval_epochs`
    that are before the last one; what it returns is merged into that epoch's history row.
    With `checkpoint`, the state is saved as described in the module docstring, and with
    `checkpoint.resume` training continues from the saved epoch (all epochs done: no training step).
    `normalization` = the (mean, std) that normalised `images`; needed by `config.views == "jitter"`.
    """
    config.check()
    device = torch.device(device)
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise HashCondenseError("training set is empty or its images and labels differ in length")
    torch.manual_seed(seed)  # network initialisation draws from the global generator
    method = (
        hashing
        if isinstance(hashing, HashingMethod)
        else create_hashing(hashing, num_classes=num_classes, hash_bits=hash_bits, **(hashing_kwargs or {}))
    )
    net = build_network(arch, method, images.shape[1], images.shape[-1], **(arch_kwargs or {}))
    net.to(device)
    method.to(device)
    optimiser = make_optimizer(parameter_groups(net, method, config), config)

    n = images.shape[0]
    batch = min(config.batch_size, n)
    epochs = config.resolved_epochs(n)
    steps_per_epoch = math.ceil(n / batch)
    total = epochs * steps_per_epoch
    aug_gen = generator(seed, 101)
    order_gen = generator(seed, 102)
    weak, strong = training_views(config.flip is not False, config.views, normalization)
    images = images.to(device)
    labels = labels.to(device)
    eval_epochs = {e for e in config.eval_epochs if 0 < e < epochs}
    history: list[dict[str, Any]] = []
    step, first_epoch, seconds_before = 0, 1, 0.0
    generators = {"augment": aug_gen, "order": order_gen}
    if checkpoint is not None and checkpoint.resume:
        meta = checkpoint.load(net, method, optimiser, generators)
        step, history = int(meta["step"]), list(meta["history"])
        first_epoch, seconds_before = int(meta["epoch"]) + 1, float(meta["seconds"])
        log.info("resumed from %s after epoch %d/%d", checkpoint.path, first_epoch - 1, epochs)
    bar = progress(range(first_epoch, epochs + 1), desc="train", disable=not show_progress, unit="epoch")
    start = time.perf_counter() - seconds_before
    last_save = time.perf_counter()
    for epoch in bar:
        net.train()
        method.train()
        order = torch.randperm(n, generator=order_gen).to(device)
        loss_sum, term_sums = 0.0, {}
        for i in range(steps_per_epoch):
            idx = order[i * batch : (i + 1) * batch]
            x, y = images[idx], labels[idx]
            y_mixed, lam = y, 1.0
            if config.cutmix_prob > 0:
                x, y, y_mixed, lam = cutmix(
                    x, y, aug_gen, beta=config.cutmix_beta, prob=config.cutmix_prob
                )
            if method.num_views == 2:
                views = [weak(x, aug_gen), strong(x, aug_gen)] if config.augment else [x, x]
            else:
                views = [strong(x, aug_gen)] if config.augment else [x]
            codes = net(torch.cat(views)).split(x.shape[0])
            terms = method.loss_terms(list(codes), y)
            if lam < 1.0:  # every term against both labels; label-free terms are the same twice
                terms_mixed = method.loss_terms(list(codes), y_mixed)
                terms = {k: cutmix_loss(v, terms_mixed[k], lam) for k, v in terms.items()}
            loss = sum(method.loss_weights.get(k, 1.0) * v for k, v in terms.items())
            if not torch.isfinite(loss):
                raise HashCondenseError(
                    f"training diverged: the loss became {loss.item()} at epoch {epoch}; lower --lr "
                    f"(now {config.lr}) or check the training images for NaN"
                )
            factor = _lr_factor(config.schedule, step, total, config.warmup_steps)
            for group in optimiser.param_groups:  # checkpoints from before lr_scale have no such key
                group["lr"] = config.lr * group.get("lr_scale", 1.0) * factor
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            step += 1
            loss_sum += float(loss.detach())
            for k, v in terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + float(v.detach())
        row: dict[str, Any] = {
            "epoch": epoch,
            "loss": loss_sum / steps_per_epoch,
            **{f"loss_{k}": v / steps_per_epoch for k, v in term_sums.items()},
            "seconds": time.perf_counter() - start,
        }
        if on_epoch is not None and epoch in eval_epochs:
            net.eval()
            method.eval()
            row.update(on_epoch(epoch, net, method) or {})
        history.append(row)
        log.info("epoch %d/%d loss %.4f (%.0f s)", epoch, epochs, row["loss"], row["seconds"])
        if checkpoint is not None and (
            epoch == epochs or time.perf_counter() - last_save >= checkpoint.every_seconds
        ):
            meta = {"epoch": epoch, "step": step, "history": history, "seconds": row["seconds"]}
            checkpoint.save(net, method, optimiser, generators, meta)
            last_save = time.perf_counter()
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{row['loss']:.4f}")
    net.eval()
    method.eval()
    return net, method, history


def encode(
    net: nn.Module,
    images: torch.Tensor | Callable[[int, int], torch.Tensor],
    count: int | None = None,
    *,
    batch_size: int = 1000,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
    desc: str = "encode",
) -> torch.Tensor:
    """±1 int8 codes of images. `images` is a normalised tensor, or a function (start, stop) -> tensor
    so that a large uint8 split is normalised chunk by chunk instead of all at once."""
    if count is None:
        if callable(images):
            raise ValueError("count is needed when images is a function")
        count = images.shape[0]
    net.eval()
    out = []
    with torch.inference_mode():
        for start in progress(
            range(0, count, batch_size), desc=desc, disable=not show_progress, unit="batch"
        ):
            stop = min(start + batch_size, count)
            chunk = images(start, stop) if callable(images) else images[start:stop]
            h = net(chunk.to(device, non_blocking=True))
            out.append(torch.where(h >= 0, 1, -1).to(torch.int8).cpu())
    return torch.cat(out) if out else torch.empty(0, dtype=torch.int8)
