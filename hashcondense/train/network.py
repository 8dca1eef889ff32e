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

__all__ = ["build_network", "encode", "load_network_state", "network_state"]


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
