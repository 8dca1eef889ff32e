"""The evaluation pipeline: dataset -> training set -> hashing network -> codes -> metrics -> run dir.

`EvalConfig` is the full, serialisable description of one evaluation run; `run_evaluation(config)`
executes it and writes the run directory:

    config.json      resolved config, dataset description, training-set description
    metrics.json     map, topk, bits, precision_at_m, pr, map_per_epoch, history (per-epoch losses),
                     seed, versions: the same bytes for the same seed on the same device
    history.json     the per-epoch history with elapsed seconds, and the run's timings
    log.txt          the run's log
    network.safetensors  the trained hashing network and method state (+ JSON metadata)
    pr.png, precision_at_m.png, map_vs_epoch.png (only with a curve: --eval-epochs)
    checkpoint.safetensors  only while training is unfinished: `resume=True` (`--resume`) continues
                     from it; it is deleted once metrics.json is written

`load_run_network(run_dir)` rebuilds the trained network and hashing method of a finished run from
its config.json and network.safetensors (to encode new images, or to inspect a run).

A run directory holding an unfinished checkpoint is not overwritten by a fresh run: the user either
resumes it or removes it. The checkpoint carries a digest of the settings that decide the numbers
(`train_key`), so a resume with another recipe is refused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hashcondense.data import load_dataset
from hashcondense.data.base import RetrievalDataset
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate.config import EvalConfig
from hashcondense.evaluate.plots import plot_curves
from hashcondense.evaluate.training_sets import resolve_train_set
from hashcondense.hashing import HashingMethod, create_hashing
from hashcondense.io.atomic import ensure_writable_dir, write_json
from hashcondense.io.tensors import load_tensors, save_tensors
from hashcondense.models import HashingNetwork
from hashcondense.models.fused import accelerated
from hashcondense.retrieval import evaluate_retrieval
from hashcondense.runtime import check_compile, resolve_device, seed_everything, versions
from hashcondense.train import (
    TrainCheckpoint,
    build_network,
    encode,
    encode_in_shards,
    load_network_state,
    network_state,
    train_hashing_network,
)
from hashcondense.utils import distributed
from hashcondense.utils.logs import FILE_ONLY, collect_logs, run_log, stage

__all__ = [
    "EvalConfig",
    "run_evaluation",
    "evaluate_network",
    "load_run_network",
    "default_m_values",
    "train_key",
]

CHECKPOINT = "checkpoint.safetensors"
# Settings that decide where files go, what is shown or which extra epochs are measured, not the
# numbers: they may change between an interrupted run and its resume.
RESUME_FREE = frozenset(
    {
        "out",
        "root",
        "download",
        "device",
        "compile",
        "show_progress",
        "save_network",
        "resume",
        "checkpoint_seconds",
    }
)
RESUME_FREE_TRAIN = frozenset({"eval_epochs"})
# Training settings that change nothing at these values (one optimiser, no CutMix, the DSA views, one
# learning rate): left out of the digest while they hold them, so that a run's key names only the
# recipe it used, and a checkpoint keeps resuming when a new optional setting joins TrainConfig.
NEUTRAL_TRAIN_VALUES = {
    "optimizer": "adam",
    "momentum": 0.9,
    "cutmix_prob": 0.0,
    "cutmix_beta": 1.0,
    "views": "dsa",
    "backbone_lr_scale": 1.0,
}

log = logging.getLogger("hashcondense")


def train_key(resolved: dict[str, Any], train_set: dict[str, Any] | None = None) -> str:
    """Digest of the settings that decide a run's numbers (see RESUME_FREE) and of the training set's
    description (so a set file replaced at the same path is not resumed as if unchanged)."""
    kept = {k: v for k, v in resolved.items() if k not in RESUME_FREE}
    if not kept.get("arch_kwargs"):  # the default network: keys of checkpoints from before the field
        kept.pop("arch_kwargs", None)
    kept["train_set_description"] = train_set
    kept["train"] = {
        k: v
        for k, v in resolved.get("train", {}).items()
        if k not in RESUME_FREE_TRAIN and not (k in NEUTRAL_TRAIN_VALUES and v == NEUTRAL_TRAIN_VALUES[k])
    }
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


def default_m_values(topk: int) -> list[int]:
    grid = {1, 10, 50, 100, 200, 500} | {max(1, round(topk * i / 10)) for i in range(1, 11)}
    return sorted(m for m in grid if m <= topk)


def evaluate_network(
    net: torch.nn.Module,
    dataset: RetrievalDataset,
    hash_bits: int,
    *,
    topk: int | None = None,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
    shard: bool = False,
) -> dict[str, Any]:
    """Encode query and database of `dataset` with `net` and compute mAP@K, P@top-M and PR.

    `shard`: every process of the run's process group calls this with the same network; each encodes
    its share of the chunks (`train.encode_in_shards`: the same codes as one process, bit for bit) and
    rank 0 measures, sending the metrics to the others."""
    k = dataset.topk if topk is None else topk
    size = len(dataset.database)
    k = size if k is None or k < 0 or k > size else k
    encoder = encode_in_shards if shard else encode

    def chunks(split: str):
        idx = dataset.indices(split)
        return lambda a, b: dataset.normalize(dataset.images[idx[a:b]])

    query_codes = encoder(net, chunks("query"), len(dataset.query), device=device, desc="encode query")
    database_codes = encoder(
        net, chunks("database"), size, device=device, show_progress=show_progress, desc="encode database"
    )

    def measure() -> dict[str, Any]:
        metrics = evaluate_retrieval(
            query_codes.numpy(),
            dataset.labels[dataset.query],
            database_codes.numpy(),
            dataset.labels[dataset.database],
            topk=k,
            m_values=default_m_values(k),
        )
        metrics["bits"] = int(hash_bits)
        return metrics

    return distributed.on_main(measure, "measuring retrieval") if shard else measure()


@dataclass
class _Prepared:
    """An evaluation run after loading: its data, training set and resolved config."""

    out: Path
    device: torch.device
    dataset: RetrievalDataset
    images: torch.Tensor
    labels: torch.Tensor
    train_set: dict[str, Any]
    record: dict[str, Any]  # config.json


def _prepare(
    config: EvalConfig, out: Path, device: torch.device, dataset: RetrievalDataset | None
) -> _Prepared:
    """Load the dataset and training set and resolve the config (config.json's record)."""
    log.info("evaluation run -> %s (device %s)", out, device)
    if dataset is None:
        dataset = load_dataset(
            config.dataset,
            root=config.root,
            download=config.download,
            split_seed=config.split_seed,
            image_size=config.image_size,
        )
    images, labels, train_desc = resolve_train_set(dataset, config.train_set, seed=config.seed)
    log.info("dataset %s: %s; training set %s", dataset.name, dataset.describe()["sizes"], train_desc)
    stage("training %s on %s (%d images) -> %s", config.arch, config.train_set, images.shape[0], out)
    if config.train.flip is None:
        config.train.flip = bool(dataset.info.get("flip", True))
    resolved = config.as_dict()
    resolved["train"]["epochs"] = config.train.resolved_epochs(images.shape[0])
    record = {
        "config": resolved,
        "dataset": dataset.describe(),
        "train_set": train_desc,
        "versions": versions(),
        "device": str(device),
        "distributed": _distributed_record(config.train.batch_size, images.shape[0]),
    }
    return _Prepared(out, device, dataset, images, labels, train_desc, record)


def _distributed_record(batch_size: int, images: int) -> dict[str, Any]:
    """How the run is shared out over processes (config.json `distributed`, docs/formats.md): the world
    size, the backend, and the rows of a full global batch that each rank trains on."""
    size = distributed.world_size()
    batch = min(batch_size, images)
    return {
        "world_size": size,
        "backend": distributed.backend(),
        "batch_size": batch,
        "batch_rows_by_rank": [len(share) for share in distributed.contiguous_shares(batch, size)],
    }


def _checkpoint(config: EvalConfig, run: _Prepared) -> TrainCheckpoint | None:
    path = run.out / CHECKPOINT
    # rank 0 decides (the run folder may be on its machine only)
    resume = config.resume and distributed.on_main(path.exists, "looking for a checkpoint")
    if config.resume and not resume:  # said on the console: there is nothing to continue
        log.warning("--resume: no checkpoint in %s; starting a fresh run", run.out)
    if config.checkpoint_seconds is None:
        return None
    key = train_key(run.record["config"], run.train_set)
    return TrainCheckpoint(path, resume=resume, every_seconds=config.checkpoint_seconds, key=key)


def _train(config: EvalConfig, run: _Prepared) -> tuple[torch.nn.Module, HashingMethod, list[dict[str, Any]]]:
    """Train the network, measuring mAP at `config.train.eval_epochs` on the way."""

    shard = distributed.is_active()

    def on_epoch(epoch: int, net, method) -> dict[str, float]:
        encoder = accelerated(net, config.compile)
        m = evaluate_network(
            encoder, run.dataset, config.bits, topk=config.topk, device=run.device, shard=shard
        )
        log.info("epoch %d: mAP@%d = %.4f", epoch, m["topk"], m["map"])
        return {"map": m["map"]}

    return train_hashing_network(
        run.images,
        run.labels,
        arch=config.arch,
        arch_kwargs=config.arch_kwargs,
        hashing=config.hashing,
        hash_bits=config.bits,
        num_classes=run.dataset.num_classes,
        config=config.train,
        seed=config.seed,
        device=run.device,
        on_epoch=on_epoch,
        show_progress=config.show_progress,
        checkpoint=_checkpoint(config, run),
        normalization=(run.dataset.mean, run.dataset.std),
        data_parallel=shard,
        compile=config.compile,
    )


def run_evaluation(config: EvalConfig, dataset: RetrievalDataset | None = None) -> dict[str, Any]:
    """Run one evaluation and write its run directory; returns the metrics dict. `dataset`: the
    already loaded `config.dataset` (else it is loaded here).

    Everything that can refuse the run (the config, the data, the training set, an unfinished run in
    `out`) is checked before the run folder is created, so a refused run leaves nothing behind.

    Under a launcher (torchrun, `hashcondense train --nproc N`) every process calls this with the same
    config: it joins the run's process group, trains data-parallel (`train.data_parallel`) and encodes
    in shards; rank 0 alone reads and writes the run folder (README "Several processes")."""
    config.check()
    out = Path(config.out)
    device = distributed.local_device(resolve_device(config.device))  # under a launcher: this rank's GPU
    if config.compile:
        check_compile(device)
    distributed.init_from_env(device)  # first, so that every check below is agreed
    distributed.on_main(lambda: _check_out(config, out), "checking the run folder")
    seed_everything(config.seed)
    started = time.time()
    with collect_logs() as earlier:
        run = distributed.agree(lambda: _prepare(config, out, device, dataset), "loading the data")
    distributed.on_main(lambda: ensure_writable_dir(out), "creating the run folder")
    # rank 0 alone writes the run folder, its log included
    with run_log(out, earlier) if distributed.is_main() else contextlib.nullcontext():
        distributed.on_main(lambda: write_json(out / "config.json", run.record), "writing config.json")
        setup_seconds = time.time() - started  # this invocation's loading, before training starts
        try:
            net, method, history = _train(config, run)
        except (KeyboardInterrupt, distributed.Stopped) as exc:
            what = "interrupted" if isinstance(exc, KeyboardInterrupt) else "stopped by the launcher"
            log.warning("%s; rerun with --resume to continue from the last checkpoint", what, extra=FILE_ONLY)
            raise
        train_seconds = history[-1]["seconds"]  # summed over resumes, including per-epoch evaluations
        map_per_epoch = [{"epoch": row["epoch"], "map": row["map"]} for row in history if "map" in row]
        t0 = time.time()
        stage(
            "evaluating: encoding %s query and %s database images",
            f"{len(run.dataset.query):,}",
            f"{len(run.dataset.database):,}",
        )
        metrics = evaluate_network(
            accelerated(net, config.compile),
            run.dataset,
            config.bits,
            topk=config.topk,
            device=device,
            show_progress=config.show_progress,
            shard=distributed.is_active(),
        )
        encode_seconds = time.time() - t0
        map_per_epoch.append({"epoch": history[-1]["epoch"], "map": metrics["map"]})
        history[-1]["map"] = metrics["map"]
        metrics.update(
            {
                "map_per_epoch": map_per_epoch,
                "history": [{k: v for k, v in row.items() if k != "seconds"} for row in history],
                "seed": config.seed,
                "split_seed": config.split_seed,
                "dataset": run.dataset.name,
                "train_set": run.train_set,
                "hashing": config.hashing,
                "arch": config.arch,
                "versions": run.record["versions"],
            }
        )
        if distributed.world_size() > 1:  # absent in one process: its metrics.json stays as it was
            metrics["world_size"] = distributed.world_size()
        timings = {
            "epochs": history,
            "seconds": {
                "train": train_seconds,
                "evaluate": encode_seconds,
                # a resumed run: training summed over its invocations, setup of the last one
                "total": setup_seconds + train_seconds + encode_seconds,
            },
        }
        log.info(
            "mAP@%d = %.4f (%d bits, %s, %s)",
            metrics["topk"],
            metrics["map"],
            config.bits,
            config.hashing,
            config.arch,
        )
        distributed.on_main(
            lambda: _write_run(config, run, net, method, metrics, timings), "writing the run's files"
        )
    return metrics


def _check_out(config: EvalConfig, out: Path) -> None:
    if (out / CHECKPOINT).exists() and not config.resume:
        raise HashCondenseError(
            f"{out} holds an unfinished training run ({CHECKPOINT}); pass --resume to continue it, "
            "or delete that file (or choose another --out) to start again"
        )


def _write_run(
    config: EvalConfig,
    run: _Prepared,
    net: torch.nn.Module,
    method: HashingMethod,
    metrics: dict[str, Any],
    timings: dict[str, Any],
) -> None:
    """network.safetensors, the plots, metrics.json and history.json; then the checkpoint is no longer
    needed. Timings and the settings that only say where files are stay out of network.safetensors and
    metrics.json, so both are byte-identical for the same seed on the same device."""
    if config.save_network:
        settings = {k: v for k, v in run.record["config"].items() if k not in RESUME_FREE}
        meta = {"config": settings, "map": metrics["map"]}
        save_tensors(run.out / "network.safetensors", network_state(net, method), meta)
    plot_curves({f"{config.train_set} ({config.bits} bits)": metrics}, run.out)
    write_json(run.out / "history.json", timings)
    write_json(run.out / "metrics.json", metrics)
    (run.out / CHECKPOINT).unlink(missing_ok=True)


def load_run_network(
    run_dir: str | Path, device: torch.device | str = "cpu"
) -> tuple[HashingNetwork, HashingMethod, dict[str, Any]]:
    """The trained network (eval mode) and hashing method of a finished run, and its config.json record.

    The architecture, hashing method, bit length and input shape come from config.json; the weights
    (and e.g. DHD's proxies or DPN's codebook) from network.safetensors.
    """
    run = Path(run_dir)
    record_path, network_path = run / "config.json", run / "network.safetensors"
    if not record_path.is_file():
        raise HashCondenseError(
            f"{record_path} does not exist; pass the folder of a `hashcondense train` run"
        )
    try:
        record = json.loads(record_path.read_text())
        config, dataset = record["config"], record["dataset"]
        arch, hashing, bits = config["arch"], config["hashing"], int(config["bits"])
        num_classes, in_channels = int(dataset["num_classes"]), int(dataset["in_channels"])
        image_size = int(dataset["image_size"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise HashCondenseError(
            f"{record_path} is not a hashcondense run record ({type(exc).__name__}: {exc}); "
            "pass the folder of a `hashcondense train` run"
        ) from None
    tensors, _ = load_tensors(network_path, what="trained network")
    method = create_hashing(hashing, num_classes=num_classes, hash_bits=bits)
    net = build_network(arch, method, in_channels, image_size, **dict(config.get("arch_kwargs") or {}))
    try:
        load_network_state(net, method, tensors)
    except RuntimeError as exc:
        raise HashCondenseError(
            f"{network_path} does not fit the network its config.json describes "
            f"({str(exc).splitlines()[0][:80]}); it was not written by this run"
        ) from None
    device = torch.device(device)
    net.to(device).eval()
    method.to(device).eval()
    return net, method, record
