"""safetensors files with a JSON metadata record: the only format for sets, checkpoints and networks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from hashcondense.errors import HashCondenseError
from hashcondense.io.atomic import write_bytes

__all__ = ["load_tensors", "save_tensors", "strip_prefix"]

_META_KEY = "hashcondense"


def strip_prefix(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The entries of `tensors` whose name starts with `prefix` ("net.", "method.", ...), without it:
    one state dict out of a file that holds several."""
    return {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}


def save_tensors(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], metadata: dict[str, Any]
) -> None:
    """Write tensors + metadata (stored as one JSON string in the safetensors header) atomically."""
    data = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    blob = st_save(data, metadata={_META_KEY: json.dumps(metadata, sort_keys=True, default=str)})
    write_bytes(path, blob)


def load_tensors(
    path: str | os.PathLike[str], what: str = "file", fix: str = "re-create it"
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a file written by `save_tensors`; a missing, truncated or foreign file is a one-line error
    (`fix` says how to make a truncated one again, e.g. the command that writes it)."""
    file = Path(path)
    if not file.is_file():
        raise HashCondenseError(f"{what} {file} does not exist; check the path")
    raw = file.read_bytes()
    try:
        tensors = st_load(raw)
        header_len = int.from_bytes(raw[:8], "little")
        header = json.loads(raw[8 : 8 + header_len])
        meta = json.loads(header.get("__metadata__", {}).get(_META_KEY, "null"))
    except (SafetensorError, ValueError, UnicodeDecodeError, json.JSONDecodeError, OverflowError) as exc:
        raise HashCondenseError(
            f"{what} {file} is truncated or corrupt ({str(exc).splitlines()[0][:80]}); {fix}"
        ) from None
    if not isinstance(meta, dict):
        raise HashCondenseError(
            f"{what} {file} has no hashcondense metadata; it was not written by hashcondense"
        )
    return tensors, meta
