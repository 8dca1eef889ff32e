"""Resolving a condensation run before anything is optimised: the data, the settings (engine defaults
< method defaults < preset < user values), the method with its options, the config digest, and the
image optimiser's constants. Every user mistake that does not need the loop is found here, before the
run folder is created: a refused run leaves nothing behind.

In several processes (torchrun, `--nproc`) every process plans the run (the engine agrees on the
outcome, `utils.distributed.agree`), a method that cannot shard its classes is refused, and only rank 0
checks and creates the run folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from hashcondense.augment import DSA
from hashcondense.condense.checkpoint import CHECKPOINT
from hashcondense.condense.config import (
    CondenseConfig,
    DatasetInfo,
    Settings,
    check_data_fit,
    check_names,
    check_run_settings,
    config_digest,
)
from hashcondense.condense.context import CondenseContext
from hashcondense.condense.method import CondenseMethod, get_method
from hashcondense.condense.pool import data_digest
from hashcondense.condense.sampler import ClassSampler
from hashcondense.condense.sharding import Sharding
from hashcondense.condense.synthetic import SET_FILE
from hashcondense.data import RetrievalDataset, load_dataset
from hashcondense.errors import HashCondenseError
from hashcondense.io.atomic import ensure_writable_dir
from hashcondense.runtime import check_compile, resolve_device
from hashcondense.utils import distributed

__all__ = ["RunPlan", "check_distributable", "plan_run", "resolved_settings"]

log = logging.getLogger("hashcondense.condense")


@dataclass
class RunPlan:
    """Everything fixed before the loop starts. `resolved` is the config as run (config.json), `digest`
    and `hashed` the digest of the settings that decide the numbers and those settings."""

    config: CondenseConfig
    out: Path
    device: torch.device
    dataset: RetrievalDataset
    context: CondenseContext
    method: CondenseMethod
    settings: Settings
    resolved: dict[str, Any]
    digest: str
    hashed: dict[str, Any]
    lr: float  # lr_img after IDC's ipc scaling
    channel_scale: torch.Tensor  # per channel: 1, or 1 / std**2 for a pixel-space rate
    pixel_low: torch.Tensor  # the valid pixel range [0, 1] in normalised units (clamping)
    pixel_high: torch.Tensor


def _check_out(config: CondenseConfig, out: Path) -> None:
    ckpt, existing = out / CHECKPOINT, out / SET_FILE
    if config.overwrite:
        for path in (ckpt, existing):
            path.unlink(missing_ok=True)
    elif not config.resume and (ckpt.exists() or existing.exists()):
        raise HashCondenseError(
            f"{out} already holds a condensed set or checkpoint; pass --resume to continue it, "
            "--overwrite to replace it, or choose another --out"
        )


def check_distributable(cls: type[CondenseMethod], world_size: int | None = None) -> None:
    """Refuse a method that cannot shard its classes when the run has several processes (else each
    would run the whole job and write the same folder)."""
    size = distributed.world_size() if world_size is None else world_size
    if size > 1 and not cls.distributed:
        raise HashCondenseError(
            f"condensation method '{cls.name}' does not run in several processes yet (world size {size}); "
            "run it in one process, without torchrun or --nproc (the built-in methods run in several)"
        )


def _context(
    config: CondenseConfig, ds: RetrievalDataset, cls: type[CondenseMethod], out: Path, device: torch.device
) -> CondenseContext:
    images, labels = ds.tensor("train")
    info = DatasetInfo(
        name=str(ds.name),
        num_classes=len(ds.class_names),
        in_channels=int(images.shape[1]),
        image_size=int(images.shape[-1]),
        num_train=int(images.shape[0]),
    )
    settings = cls.resolve(config, info)
    sampler = ClassSampler(labels, info.num_classes, list(ds.class_names))
    counts = {sampler.name(c): sampler.count(c) for c in range(info.num_classes)}
    check_data_fit(config, info.image_size, counts)
    uint8_train, _ = ds.arrays("train")
    data_key = {
        "dataset": str(ds.name),
        "split_seed": int(ds.split_seed),
        "image_size": info.image_size,
        "in_channels": info.in_channels,
        "num_train": info.num_train,
        "data_sha256": data_digest(torch.from_numpy(uint8_train), labels),
    }
    return CondenseContext(
        config=replace(config, method=cls.name, **settings.as_dict()),
        settings=settings,
        info=info,
        images=images,
        labels=labels,
        sampler=sampler,
        mean=tuple(float(v) for v in ds.mean),
        std=tuple(float(v) for v in ds.std),
        class_names=[str(n) for n in ds.class_names],
        device=device,
        out=out,
        augment=DSA(settings.aug_strategy, None, settings.aug_mode),
        log=log,
        data_key=data_key,
        sharding=Sharding.current(info.num_classes),
    )


def _resolve(
    config: CondenseConfig,
    dataset: RetrievalDataset | None,
    method_cls: type[CondenseMethod] | None,
    device: torch.device,
) -> tuple[RetrievalDataset, CondenseContext, CondenseMethod]:
    """The dataset, context and method of `config`, its options resolved; touches no file."""
    c = config
    check_run_settings(c)
    if method_cls is None:  # a class handed in needs no registered name
        check_names(c)
    if dataset is None:
        dataset = load_dataset(
            c.dataset, root=c.root, download=c.download, split_seed=c.split_seed, image_size=c.image_size
        )
    cls = method_cls or get_method(c.method)
    check_distributable(cls)
    context = _context(c, dataset, cls, Path(c.out), device)
    method = cls(context, **dict(c.options))
    context.config = replace(context.config, options=method.resolved_options())
    return dataset, context, method


def resolved_settings(config: CondenseConfig, dataset: RetrievalDataset | None = None) -> dict[str, Any]:
    """The config a run of `config` would record in its config.json, from the code as it is now
    (method defaults and presets included), without creating or touching its folder."""
    _, context, _ = _resolve(config, dataset, None, torch.device("cpu"))
    return context.config.as_dict()


def plan_run(
    config: CondenseConfig,
    dataset: RetrievalDataset | None = None,
    method_cls: type[CondenseMethod] | None = None,
) -> RunPlan:
    """Validate and resolve `config` (loading its dataset unless `dataset` is given)."""
    c = config
    out = Path(c.out)
    device = distributed.local_device(resolve_device(c.device))  # under a launcher: this rank's GPU
    if c.compile:
        check_compile(device)
    dataset, context, method = _resolve(c, dataset, method_cls, device)
    settings = context.settings
    resolved = context.config.as_dict()
    digest, hashed = config_digest(resolved)
    std = torch.tensor(context.std).view(1, -1, 1, 1)
    mean = torch.tensor(context.mean).view(1, -1, 1, 1)
    if distributed.is_main():  # the other processes never touch the run folder
        _check_out(c, out)
        ensure_writable_dir(out)  # the first thing written: everything above could refuse the run
    return RunPlan(
        config=c,
        out=out,
        device=device,
        dataset=dataset,
        context=context,
        method=method,
        settings=settings,
        resolved=resolved,
        digest=digest,
        hashed=hashed,
        lr=settings.effective_lr(c.ipc),
        channel_scale=1.0 / std.square() if settings.lr_space == "pixel" else torch.ones_like(std),
        pixel_low=((0.0 - mean) / std).to(device),
        pixel_high=((1.0 - mean) / std).to(device),
    )
