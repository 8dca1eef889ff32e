"""The codes file (`hashcondense encode`): packed hash codes with their ids, labels and provenance.

One safetensors file (format in docs/formats.md): `codes` (n, ceil(bits / 8)) uint8 as
`hashcondense.retrieval.pack_codes` packs them, `ids` and `labels` (n,) int64, and metadata naming the
run that encoded them and the images they came from. safetensors has no checksum, so the metadata
carries a SHA-256 of the three arrays: a file damaged in the middle is refused instead of serving
wrong neighbours.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashcondense.errors import HashCondenseError

__all__ = ["FORMAT", "CodesFile", "check_rows", "content_digest", "load_codes", "save_codes"]

FORMAT = "hashcondense.codes/1"


def content_digest(*arrays: np.ndarray) -> str:
    """SHA-256 (hex) of the arrays' bytes in order, with their shapes: detects a damaged file."""
    h = hashlib.sha256()
    for a in arrays:
        h.update(str(tuple(a.shape)).encode())
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


def check_rows(ids: np.ndarray, labels: np.ndarray, n: int, what: str) -> None:
    """`ids` and `labels` must be (n,) int64: one of each per code."""
    for name, a in (("ids", ids), ("labels", labels)):
        if a.ndim != 1 or a.dtype != np.int64 or a.shape[0] != n:
            raise HashCondenseError(
                f"{what}: {name} must be ({n},) int64, one per code, got {a.dtype} {tuple(a.shape)}; "
                "re-create the file"
            )


@dataclass
class CodesFile:
    """Packed codes of n images: the database of an index, or a set of queries.

    `ids` name the images (their index in a dataset split, or their position in a folder's sorted
    file list); `labels` are class indices, -1 where unknown; `meta` says where they came from.
    """

    packed: np.ndarray  # (n, ceil(bits / 8)) uint8
    ids: np.ndarray  # (n,) int64
    labels: np.ndarray  # (n,) int64
    bits: int
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        width = (self.bits + 7) // 8
        if self.packed.ndim != 2 or self.packed.dtype != np.uint8 or self.packed.shape[1] != width:
            raise HashCondenseError(
                f"packed codes must be (n, {width}) uint8 for {self.bits} bits, "
                f"got {self.packed.dtype} {tuple(self.packed.shape)}"
            )
        check_rows(self.ids, self.labels, self.packed.shape[0], "codes")

    def __len__(self) -> int:
        return int(self.packed.shape[0])


def save_codes(path: str | os.PathLike[str], codes: CodesFile) -> None:
    """Write `codes` atomically, with the format name, bit length, count and content digest."""
    import torch

    from hashcondense.io.tensors import save_tensors

    meta = {
        **codes.meta,
        "format": FORMAT,
        "bits": codes.bits,
        "count": len(codes),
        "sha256": content_digest(codes.packed, codes.ids, codes.labels),
    }
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in _arrays(codes).items()}
    save_tensors(path, tensors, meta)


def _arrays(codes: CodesFile) -> dict[str, np.ndarray]:
    return {"codes": codes.packed, "ids": codes.ids, "labels": codes.labels}


def load_codes(path: str | os.PathLike[str]) -> CodesFile:
    """Read a codes file; a missing, truncated, damaged or foreign file is a one-line error."""
    from hashcondense.io.tensors import load_tensors

    tensors, meta = load_tensors(path, "codes file", "re-create it with `hashcondense encode`")
    if meta.get("format") != FORMAT:
        raise HashCondenseError(
            f"{path} is not a codes file (format {meta.get('format')!r}, expected {FORMAT!r}); "
            "create one with `hashcondense encode`"
        )
    try:
        arrays = {k: tensors[k].numpy() for k in ("codes", "ids", "labels")}
        bits = int(meta["bits"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HashCondenseError(
            f"codes file {path} lacks {exc}; it is truncated or corrupt, "
            "re-create it with `hashcondense encode`"
        ) from None
    if content_digest(arrays["codes"], arrays["ids"], arrays["labels"]) != meta.get("sha256"):
        raise HashCondenseError(
            f"codes file {path} is corrupt (its content does not match its checksum); "
            "re-create it with `hashcondense encode`"
        )
    return CodesFile(arrays["codes"], arrays["ids"], arrays["labels"], bits, meta)
