"""A hashing network (backbone + the hashing method's head): building it, saving and loading it with
its method's state, and encoding images into ±1 codes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from hashcondense.hashing import HashingMethod
from hashcondense.io.tensors import strip_prefix
from hashcondense.models import HashingNetwork, create_model
from hashcondense.utils.progress import progress

__all__ = [
    "ENCODE_BATCH",
    "build_network",
    "encode",
    "encode_in_shards",
    "load_network_state",
    "network_state",
]

# images per forward pass when encoding (and the unit a split is shared out in over processes)
ENCODE_BATCH = 1000


def build_network(
    arch: str, method: HashingMethod, in_channels: int, image_size: int, **arch_kwargs: Any
) -> HashingNetwork:
    """A fresh backbone `arch` with `method`'s hash head (weights from the global generator)."""
    backbone = create_model(arch, in_channels=in_channels, image_size=image_size, **arch_kwargs)
    return HashingNetwork(backbone, method.make_head(backbone.feature_dim))


def network_state(net: nn.Module, method: nn.Module, method_prefix: str = "method.") -> dict[str, Any]:
    """The network's tensors under "net." and its hashing method's (DHD proxies, DPN codebook, ...)
    under `method_prefix`: what one safetensors file stores for a trained network."""
    tensors = {f"net.{k}": v for k, v in net.state_dict().items()}
    tensors.update({f"{method_prefix}{k}": v for k, v in method.state_dict().items()})
    return tensors


def load_network_state(
    net: nn.Module,
    method: nn.Module,
    tensors: dict[str, torch.Tensor],
    method_prefix: str = "method.",
    device: torch.device | None = None,
) -> None:
    """Inverse of `network_state`: load both state dicts in place (tensors moved to `device` if given).
    A file of another architecture raises torch's RuntimeError; callers say which file and the fix."""

    def part(prefix: str) -> dict[str, torch.Tensor]:
        state = strip_prefix(tensors, prefix)
        return state if device is None else {k: v.to(device) for k, v in state.items()}

    net.load_state_dict(part("net."))
    method.load_state_dict(part(method_prefix))


def encode(
    net: nn.Module,
    images: torch.Tensor | Callable[[int, int], torch.Tensor],
    count: int | None = None,
    *,
    batch_size: int = ENCODE_BATCH,
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


def encode_in_shards(
    net: nn.Module,
    images: Callable[[int, int], torch.Tensor],
    count: int,
    *,
    batch_size: int = ENCODE_BATCH,
    device: torch.device | str = "cpu",
    show_progress: bool = False,
    desc: str = "encode",
) -> torch.Tensor:
    """`encode(net, images, count)` shared out over the run's processes (every process calls it with the
    same network): process r encodes a consecutive run of the `batch_size`-image chunks, and every
    process gets all the codes, in order. The chunks are the ones one process encodes, batch for batch,
    so the codes are the same bits as one process's. Without a process group: `encode`."""
    from hashcondense.utils import distributed

    if not distributed.is_active() or count == 0:
        return encode(
            net, images, count, batch_size=batch_size, device=device, show_progress=show_progress, desc=desc
        )
    chunks = distributed.contiguous_shares(-(-count // batch_size), distributed.world_size())
    rows = [(c[0] * batch_size, min(count, (c[-1] + 1) * batch_size)) if c else (0, 0) for c in chunks]
    start, stop = rows[distributed.rank()]
    mine = encode(
        net,
        lambda a, b: images(start + a, start + b),
        stop - start,
        batch_size=batch_size,
        device=device,
        show_progress=show_progress and distributed.is_main(),
        desc=desc,
    )
    if mine.numel() == 0:  # no chunk for this process: a (0, bits) block of the right width
        bits = _code_width(net, images, device)
        mine = torch.empty(0, bits, dtype=torch.int8)
    return distributed.all_gather_rows(mine, f"gathering the {desc} codes", [b - a for a, b in rows])


def _code_width(
    net: nn.Module, images: Callable[[int, int], torch.Tensor], device: torch.device | str
) -> int:
    with torch.inference_mode():
        return int(net(images(0, 1).to(device)).shape[1])
