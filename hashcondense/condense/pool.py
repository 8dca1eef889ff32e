"""Early-stage model pool and weight perturbation (Acc-DD, "Accelerating Dataset Distillation via
Model Augmentation", Zhang et al. 2023; used by IEM, DESIGN Section 5).

Pool: `pool_size` hashing networks from different random initialisations, each trained for only
`epochs` epochs with the hashing method's own losses on the real train split
(`train.train_hashing_network`, constant learning rate: an early-stage snapshot of a
longer run, not an annealed short run). Member k is trained with seed derive_seed(seed, POOL_TRAIN, k),
so members do not depend on the pool size: a pool of 5 reuses the first 2 members of a pool of 2.

Several processes (torchrun, `--nproc`): member k is made (loaded or trained) by rank k % world size,
which alone writes its cache file; the members are then exchanged, so every process holds the whole
pool (`ensure`). A member's seed depends on k only, so the pool is the same as one process's.

Cache: each member is one safetensors file (network and hashing-method state, JSON metadata with the
key) under `<pool_dir>/<arch>-<hashing>-<bits>b-<key digest>/member_<k>.safetensors`, written
atomically. The key holds everything a member depends on: dataset name, split seed, image size,
a SHA-256 digest of the train images and labels, hashing method, arch (+ kwargs), bits, seed, epochs,
lr, batch size and the trainer's settings. A missing, corrupt or foreign member file is retrained
(and a warning logged); a matching one is loaded, never retrained.

Perturbation (Acc-DD `weight_perturbation.py`, `dir_type='weights'`, `norm='filter'`,
`ignore='biasbn'`): w' = w + alpha d1 + beta d2, where each direction d is Gaussian, rescaled per output
filter (each slice along dim 0) to the norm of that filter of w; parameters with ndim <= 1 (biases,
norm affine) get no perturbation; alpha, beta ~ U(perturb_min, perturb_max) (0.01, 0.09) with an
independent random sign each. Acc-DD draws from the global generator; here every number comes from
the generator passed in.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hashcondense.errors import HashCondenseError
from hashcondense.io.tensors import load_tensors, save_tensors, strip_prefix
from hashcondense.train import TrainConfig, network_state, train_hashing_network
from hashcondense.utils import distributed
from hashcondense.utils.logs import stage

__all__ = ["ModelPool", "POOL_FORMAT", "data_digest", "perturb_"]

POOL_FORMAT = "hashcondense.pool/1"
log = logging.getLogger("hashcondense")


def data_digest(images: torch.Tensor, labels: torch.Tensor) -> str:
    """SHA-256 of a training split (images as stored, labels), to key caches on the data itself."""
    h = hashlib.sha256()
    h.update(str(tuple(images.shape)).encode())
    h.update(images.detach().cpu().contiguous().numpy().tobytes())
    h.update(labels.detach().cpu().long().contiguous().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def perturb_(
    module: nn.Module, generator: torch.Generator, low: float = 0.01, high: float = 0.09
) -> tuple[float, float]:
    """Perturb `module`'s parameters in place: w += alpha d1 + beta d2 (see the module docstring).

    Returns (alpha, beta). Draw order: alpha's magnitude and sign, beta's, then d1 for every
    parameter with ndim >= 2 (in `parameters()` order), then d2. Deterministic for a given generator.
    """
    u = torch.rand(4, generator=generator, dtype=torch.float64)
    alpha = float(low + (high - low) * u[0]) * (1.0 if u[1] < 0.5 else -1.0)
    beta = float(low + (high - low) * u[2]) * (1.0 if u[3] < 0.5 else -1.0)
    params = [p for p in module.parameters() if p.dim() > 1]
    directions = []
    for _ in range(2):
        ds = []
        for p in params:
            d = torch.randn(p.shape, generator=generator, dtype=torch.float32)
            w = p.detach().float().cpu()
            w_norm = w.flatten(1).norm(dim=1)
            d_norm = d.flatten(1).norm(dim=1)
            scale = w_norm / (d_norm + 1e-10)
            ds.append(d * scale.view(-1, *([1] * (d.dim() - 1))))
        directions.append(ds)
    for p, d1, d2 in zip(params, *directions, strict=True):
        p.add_((alpha * d1 + beta * d2).to(device=p.device, dtype=p.dtype))
    return alpha, beta


class ModelPool:
    """Early-stage networks on disk and in memory. `ensure(n)` trains or loads members 0..n-1;
    `network(k)` returns a fresh module with member k's weights (eval mode, frozen)."""

    def __init__(
        self,
        *,
        directory: str | Path,
        key: dict[str, Any],
        images: torch.Tensor,
        labels: torch.Tensor,
        num_classes: int,
        device: torch.device,
        member_seed: Any,
        show_progress: bool = False,
        compile: bool = False,
    ) -> None:
        self.key = dict(key)
        self.compile = compile  # torch.compile the members' training (not in the key: rounding only)
        self.images = images
        self.labels = labels
        self.num_classes = int(num_classes)
        self.device = device
        self.member_seed = member_seed
        self.show_progress = show_progress
        text = json.dumps(_jsonable(self.key), sort_keys=True).encode()
        digest = hashlib.sha256(text).hexdigest()[:16]
        self.folder = Path(directory) / f"{key['arch']}-{key['hashing']}-{key['bits']}b-{digest}"
        self.states: list[dict[str, torch.Tensor]] = []
        self.digests: list[str] = []
        self.trained = 0  # members trained (not loaded from the cache) by this object, in all processes
        self.train_seconds = 0.0  # their training time, summed over the processes

    def member_path(self, k: int) -> Path:
        return self.folder / f"member_{k:03d}.safetensors"

    def ensure(self, count: int) -> None:
        """Make members 0..count-1 available, loading cached ones and training the rest; in several
        processes each makes its own members (`owners`) and then all exchange them."""
        todo = list(range(len(self.states), count))
        world, me = distributed.world_size(), distributed.rank()
        before = (self.trained, self.train_seconds)
        made = distributed.agree(
            lambda: {k: self._make(k, count) for k in todo if k % world == me},
            "making the model pool members",
        )
        if world > 1:  # every process gets every member, and the counts of all of them
            here = (self.trained - before[0], self.train_seconds - before[1])
            shared = distributed.all_gather_objects((made, *here), "exchanging the model pool members")
            made = {k: state for part, _, _ in shared for k, state in part.items()}
            self.trained = before[0] + sum(part[1] for part in shared)
            self.train_seconds = before[1] + sum(part[2] for part in shared)
        for k in todo:
            self.states.append(made[k])
            self.digests.append(_state_digest(made[k]))

    @staticmethod
    def owners(count: int, world_size: int) -> list[list[int]]:
        """Per rank, the members it makes (member k: rank k % world size)."""
        return [[k for k in range(count) if k % world_size == r] for r in range(world_size)]

    def _make(self, k: int, count: int) -> dict[str, torch.Tensor]:
        state = self._load(k)
        if state is None:
            stage("training model pool member %d/%d (%d epochs)", k + 1, count, int(self.key["epochs"]))
            return self._train(k)
        stage("model pool member %d/%d loaded from %s", k + 1, count, self.folder)
        return state

    def _load(self, k: int) -> dict[str, torch.Tensor] | None:
        path = self.member_path(k)
        if not path.is_file():
            return None
        try:
            tensors, meta = load_tensors(path, what="pool member")
        except HashCondenseError as exc:
            log.warning("pool member %s is unreadable (%s); training it again", path, exc)
            return None
        if (
            meta.get("format") != POOL_FORMAT
            or meta.get("key") != _jsonable(self.key)
            or meta.get("member") != k
        ):
            log.warning("pool member %s was made for other settings; training it again", path)
            return None
        log.info("pool member %d loaded from %s", k, path)
        return strip_prefix(tensors, "net.")

    def _train(self, k: int) -> dict[str, torch.Tensor]:
        key = self.key
        seed = int(self.member_seed(k))
        config = TrainConfig(
            epochs=int(key["epochs"]),
            batch_size=int(key["batch_size"]),
            lr=float(key["lr"]),
            schedule="constant",
            augment=True,
        )
        log.info(
            "training pool member %d (%s, %s, %d bits, %d epochs, seed %d)",
            k,
            key["arch"],
            key["hashing"],
            key["bits"],
            key["epochs"],
            seed,
        )
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            net, method, history = train_hashing_network(
                self.images,
                self.labels,
                arch=key["arch"],
                hashing=key["hashing"],
                hash_bits=int(key["bits"]),
                num_classes=self.num_classes,
                config=config,
                seed=seed,
                device=self.device,
                arch_kwargs=dict(key.get("arch_kwargs") or {}),
                show_progress=self.show_progress,
                compile=self.compile,
            )
        seconds = time.perf_counter() - start
        self.train_seconds += seconds
        self.trained += 1
        tensors = network_state(net, method)
        state = {n: t.detach().cpu().clone() for n, t in strip_prefix(tensors, "net.").items()}
        save_tensors(
            self.member_path(k),
            tensors,
            {
                "format": POOL_FORMAT,
                "key": _jsonable(self.key),
                "member": k,
                "seed": seed,
                # no timings: the same member trains into the same bytes (they are in log.txt and the
                # run's card.json, pool_train_seconds)
                "history": [{n: v for n, v in row.items() if n != "seconds"} for row in history],
            },
        )
        log.info(
            "pool member %d trained in %.1f s (last loss %.4f) -> %s",
            k,
            seconds,
            history[-1]["loss"] if history else float("nan"),
            self.member_path(k),
        )
        return state

    def load_into(self, net: nn.Module, k: int) -> nn.Module:
        """Copy member k's weights into `net` (same architecture) and return it, eval mode, frozen."""
        try:
            net.load_state_dict(self.states[k])
        except RuntimeError as exc:
            raise HashCondenseError(
                f"pool member {k} in {self.folder} does not fit the network "
                f"({str(exc).splitlines()[0][:80]}); "
                "delete that folder to retrain the pool"
            ) from None
        return net.eval().requires_grad_(False)


def _state_digest(state: dict[str, torch.Tensor]) -> str:
    h = hashlib.sha256()
    for name in sorted(state):
        h.update(name.encode())
        h.update(state[name].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _jsonable(obj: Any) -> Any:
    return json.loads(json.dumps(obj, sort_keys=True, default=str))
