"""The condensation checkpoint: stored images, momentum buffer, loop position, elapsed seconds, loss
history and the method's state, with the digest of the settings that decide the numbers.

Written atomically (`io.tensors.save_tensors`), so an interrupted write leaves the previous one; a
resume with other settings is refused with the settings that differ.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from hashcondense.errors import HashCondenseError
from hashcondense.io.tensors import load_tensors, save_tensors, strip_prefix

__all__ = ["CHECKPOINT", "CKPT_FORMAT", "LoopState", "load_checkpoint", "save_checkpoint"]

CHECKPOINT = "checkpoint.safetensors"
CKPT_FORMAT = "hashcondense.condense-checkpoint/1"
log = logging.getLogger("hashcondense.condense")


@dataclass
class LoopState:
    """Where a run stands: what a checkpoint holds besides the settings' digest."""

    images: torch.Tensor
    outer: int = 0
    inner: int = 0
    elapsed: float = 0.0
    history: list[dict[str, Any]] = field(default_factory=list)
    momentum: torch.Tensor | None = None
    method_state: dict[str, Any] = field(default_factory=dict)
    init_indices: list[list[int]] = field(default_factory=list)


def save_checkpoint(path: Path, state: LoopState, method_name: str, digest: str, hashed: dict) -> None:
    tensors: dict[str, torch.Tensor] = {"images": state.images.detach()}
    if state.momentum is not None:
        tensors["momentum"] = state.momentum
    plain: dict[str, Any] = {}
    for key, value in state.method_state.items():
        if isinstance(value, torch.Tensor):
            tensors[f"method.{key}"] = value
        else:
            plain[key] = value
    meta = {
        "format": CKPT_FORMAT,
        "method": method_name,
        "outer": state.outer,
        "inner": state.inner,
        "elapsed": state.elapsed,
        "history": state.history,
        "method_state": plain,
        "init_indices": state.init_indices,
        "config_digest": digest,
        "config": hashed,
    }
    save_tensors(path, tensors, meta)
    log.info(
        "checkpoint at outer loop %d, inner step %d (%.1f s) -> %s",
        state.outer,
        state.inner,
        state.elapsed,
        path,
    )


def load_checkpoint(path: Path, expect_shape: tuple[int, ...], digest: str, hashed: dict) -> LoopState | None:
    """The saved state, None when there is no checkpoint, or a one-line error naming what is wrong."""
    if not path.exists():  # said on the console: the user asked to continue something that is not there
        log.warning("--resume: no checkpoint in %s; starting a fresh run", path.parent)
        return None
    try:
        tensors, meta = load_tensors(path, what="checkpoint")
    except HashCondenseError as exc:
        raise HashCondenseError(f"{exc}; delete it (or pass --overwrite) to start again") from None
    images = tensors.get("images")
    ok = (
        meta.get("format") == CKPT_FORMAT
        and images is not None
        and tuple(images.shape) == expect_shape
        and isinstance(meta.get("history"), list)
        and isinstance(meta.get("outer"), int)
        and isinstance(meta.get("inner"), int)
    )
    if not ok:
        raise HashCondenseError(
            f"checkpoint {path} is not a valid condensation checkpoint for this run; "
            "delete it (or pass --overwrite) to start again"
        )
    if meta.get("config_digest") != digest:
        raise HashCondenseError(
            f"checkpoint {path} was made with other settings ({_diff(meta.get('config') or {}, hashed)}); "
            "resume with the same settings (only --outer-loops, --time-budget, --checkpoint-every, --device "
            "may change) or choose another --out"
        )
    if not torch.isfinite(images).all():
        raise HashCondenseError(f"checkpoint {path} holds NaN or inf pixels; delete it to start again")
    return LoopState(
        images=images,
        outer=int(meta["outer"]),
        inner=int(meta["inner"]),
        elapsed=float(meta["elapsed"]),
        history=list(meta["history"]),
        momentum=tensors.get("momentum"),
        method_state={**dict(meta.get("method_state") or {}), **strip_prefix(tensors, "method.")},
        init_indices=meta.get("init_indices") or [],
    )


def _diff(old: dict[str, Any], new: dict[str, Any], limit: int = 4) -> str:
    """The settings that differ, e.g. "lr_img 1.0 -> 0.5" (nested dicts as "options: ...")."""
    parts = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                parts.append(f"{k}: {_diff(a, b, limit)}")
            else:
                parts.append(f"{k} {a!r} -> {b!r}")
    if not parts:
        return "unknown difference"
    more = f", and {len(parts) - limit} more" if len(parts) > limit else ""
    return ", ".join(parts[:limit]) + more
