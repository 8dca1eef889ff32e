"""The index file (`hashcondense index build`): a faiss binary index with its id/label map, one file.

The faiss index is serialised with `faiss.serialize_index_binary` into a uint8 tensor of a safetensors
file, beside `ids` and `labels` (format in docs/formats.md): no pickle, and the metadata carries the bit
length, the kind, the codes' provenance and a SHA-256 of the content, so a damaged file is refused
(faiss itself reads many damaged files without complaint).

Kinds: `flat` (`faiss.IndexBinaryFlat`) is exact and searched in the library's (distance, index)
order; `ivf` (`faiss.IndexBinaryIVF`) visits `nprobe` of `nlist` lists, faster on large databases and
approximate (recall against flat: BENCHMARKS.md).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hashcondense.errors import HashCondenseError
from hashcondense.serve.codes_file import CodesFile, check_rows, content_digest

__all__ = [
    "FORMAT",
    "KINDS",
    "ServedIndex",
    "build_index",
    "default_nlist",
    "default_nprobe",
    "import_faiss",
    "load_index",
    "save_index",
]

FORMAT = "hashcondense.index/1"
KINDS = ("flat", "ivf")


def import_faiss() -> Any:
    """The faiss module, or a one-line error saying how to install it."""
    try:
        import faiss
    except ImportError:
        raise HashCondenseError(
            "faiss is not installed; pip install faiss-cpu (or hashcondense[faiss]) "
            "to build and search indexes"
        ) from None
    return faiss


def default_nlist(n: int) -> int:
    """About sqrt(n) lists, with at least 39 training codes per list (faiss's k-means warns below
    that). Coarser than faiss's 4-16 sqrt(n) guideline for float vectors, to keep the build short: the
    k-means cost grows with nlist x training codes (up to 256 per list). Pass nlist for finer lists."""
    return max(1, min(round(math.sqrt(n)), n // 39))


def default_nprobe(nlist: int) -> int:
    """Lists visited per query by default: 1/8 of them. Recall@100 against flat is then near 1 on
    codes with class structure and 0.5-0.7 on uniformly random codes (BENCHMARKS.md)."""
    return max(1, nlist // 8)


@dataclass
class ServedIndex:
    """A faiss binary index of n codes and what its positions 0..n-1 stand for (`ids`, `labels`)."""

    index: Any  # faiss.IndexBinaryFlat or faiss.IndexBinaryIVF
    ids: np.ndarray  # (n,) int64
    labels: np.ndarray  # (n,) int64, -1 where unknown
    bits: int
    kind: str
    meta: dict[str, Any] = field(default_factory=dict)  # the codes file's metadata, nlist, nprobe
    _exact: Any = field(default=None, repr=False)

    def __len__(self) -> int:
        return int(self.index.ntotal)

    def exact(self) -> Any:
        """A flat index's codes in a `HammingIndex` (the (distance, index) order), made once."""
        if self._exact is None:
            from hashcondense.retrieval import HammingIndex

            faiss = import_faiss()
            width = (self.bits + 7) // 8
            packed = faiss.vector_to_array(self.index.xb).reshape(-1, width)
            self._exact = HammingIndex(self.bits, backend="faiss")
            self._exact.add_packed(packed)
        return self._exact


def build_index(
    codes: CodesFile, kind: str = "flat", nlist: int | None = None, nprobe: int | None = None
) -> ServedIndex:
    """A flat or IVF index of `codes` (IVF: k-means over the codes into `nlist` lists, default
    `default_nlist`; searches visit `nprobe` lists, default `default_nprobe`)."""
    faiss = import_faiss()
    n, d = len(codes), 8 * codes.packed.shape[1]
    if kind not in KINDS:
        raise HashCondenseError(f"unknown index kind '{kind}'; choose one of: {', '.join(KINDS)}")
    if n == 0:
        raise HashCondenseError("the codes file holds no codes; encode at least one image")
    meta: dict[str, Any] = {"codes": codes.meta}
    if kind == "flat":
        if nlist is not None or nprobe is not None:
            raise HashCondenseError("--nlist and --nprobe apply to --kind ivf; drop them for a flat index")
        index = faiss.IndexBinaryFlat(d)
    else:
        nlist = default_nlist(n) if nlist is None else int(nlist)
        if not 1 <= nlist <= n:
            raise HashCondenseError(
                f"--nlist {nlist} cannot work with {n:,} codes; use 1 to {n:,} (default {default_nlist(n)})"
            )
        nprobe = default_nprobe(nlist) if nprobe is None else int(nprobe)
        if not 1 <= nprobe <= nlist:
            raise HashCondenseError(f"--nprobe {nprobe} must be between 1 and --nlist ({nlist})")
        index = faiss.IndexBinaryIVF(faiss.IndexBinaryFlat(d), d, nlist)
        index.train(codes.packed)
        index.nprobe = nprobe
        meta.update(nlist=nlist, nprobe=nprobe)
    index.add(codes.packed)
    return ServedIndex(index, codes.ids, codes.labels, codes.bits, kind, meta)


def save_index(path: str | os.PathLike[str], served: ServedIndex) -> int:
    """Write the index atomically as one safetensors file; returns its faiss part's size in bytes."""
    import torch

    from hashcondense.io.tensors import save_tensors

    blob = import_faiss().serialize_index_binary(served.index)
    meta = {
        **served.meta,
        "format": FORMAT,
        "kind": served.kind,
        "bits": served.bits,
        "count": len(served),
        "sha256": content_digest(blob, served.ids, served.labels),
    }
    tensors = {"index": blob, "ids": served.ids, "labels": served.labels}
    save_tensors(path, {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}, meta)
    return int(blob.nbytes)


def load_index(path: str | os.PathLike[str]) -> ServedIndex:
    """Read an index file; a missing, truncated, damaged or foreign file is a one-line error."""
    from hashcondense.io.tensors import load_tensors

    fix = "rebuild it with `hashcondense index build`"
    tensors, meta = load_tensors(path, "index file", fix)
    if meta.get("format") != FORMAT:
        raise HashCondenseError(
            f"{path} is not an index file (format {meta.get('format')!r}, expected {FORMAT!r}); {fix}"
        )
    try:
        blob, ids, labels = (tensors[k].numpy() for k in ("index", "ids", "labels"))
        bits, kind = int(meta["bits"]), str(meta["kind"])
    except (KeyError, TypeError, ValueError) as exc:
        raise HashCondenseError(f"index file {path} lacks {exc}; it is truncated or corrupt, {fix}") from None
    if content_digest(blob, ids, labels) != meta.get("sha256"):
        raise HashCondenseError(
            f"index file {path} is corrupt (its content does not match its checksum); {fix}"
        )
    index = _deserialize(blob, kind, bits, path)
    check_rows(ids, labels, int(index.ntotal), f"index file {path}")
    return ServedIndex(index, ids, labels, bits, kind, meta)


def _deserialize(blob: np.ndarray, kind: str, bits: int, path: str | os.PathLike[str]) -> Any:
    """The faiss index of `blob`, checked against the kind and bit length the metadata states."""
    faiss = import_faiss()
    expected = {"flat": faiss.IndexBinaryFlat, "ivf": faiss.IndexBinaryIVF}.get(kind)
    try:
        index = faiss.deserialize_index_binary(blob)
    except RuntimeError as exc:
        raise HashCondenseError(
            f"index file {path} holds no readable faiss index ({str(exc).splitlines()[0][-80:]}); "
            "rebuild it with `hashcondense index build`"
        ) from None
    if expected is None or not isinstance(index, expected) or index.d != 8 * ((bits + 7) // 8):
        raise HashCondenseError(
            f"index file {path} does not hold the {kind} index of {bits}-bit codes its metadata states; "
            "rebuild it with `hashcondense index build`"
        )
    return index
