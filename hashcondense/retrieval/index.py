"""A Hamming-distance index over packed binary codes, ordered by (distance, index) like the metrics.

With faiss installed (``pip install faiss-cpu``) the search runs on ``faiss.IndexBinaryFlat``; otherwise on
the chunked matrix product of `hashcondense.retrieval.codes`. Both return the same neighbours.

faiss keeps the k best of a heap, so among items at the k-th distance it may return any of them. We make
its answer agree with our stable order: the first search gives each query's k-th distance d_k, then a
range search at radius d_k + 1 (faiss's radius is exclusive) returns every item within d_k, and those
are sorted by (distance, index) and cut at k. That re-sort makes faiss the faster backend for short lists
(about 2x at k = 10) and the slower one for long ones (about 2.5x at k = 1,000): BENCHMARKS.md.

Example:
    >>> index = HammingIndex(bits=64)
    >>> index.add(database_codes)
    >>> distances, indices = index.search(query_codes, k=10)
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np

from hashcondense.errors import HashCondenseError
from hashcondense.retrieval.codes import hamming_topk, pack_codes, to_codes, unpack_codes

__all__ = ["HammingIndex", "faiss_stable_search"]

Backend = Literal["auto", "faiss", "numpy"]
# Queries per faiss range search: bounds the size of its result lists.
_RANGE_BATCH = 64


def _import_faiss() -> Any | None:
    try:
        import faiss
    except ImportError:
        return None
    return faiss


class HammingIndex:
    """Exact k-nearest-neighbour search of ±1 codes by Hamming distance, ties broken by insertion index.

    Args:
        bits: code length b.
        backend: "auto" (faiss when importable, else numpy), "faiss" or "numpy".

    Codes are stored packed (b/8 bytes each); the index of an item is its position in the order of
    `add` calls, starting at 0.
    """

    def __init__(self, bits: int, backend: Backend = "auto") -> None:
        if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)) or bits < 1:
            raise HashCondenseError(f"bits={bits!r} is not valid; pass the code length, e.g. 64")
        if backend not in ("auto", "faiss", "numpy"):
            raise HashCondenseError(
                f"unknown value '{backend}' for argument backend; "
                "valid values are {'auto', 'faiss', 'numpy'}"
            )
        faiss = _import_faiss() if backend != "numpy" else None
        if backend == "faiss" and faiss is None:
            raise HashCondenseError("faiss is not installed; pip install faiss-cpu, or use backend='numpy'")
        self.bits = int(bits)
        self.backend: str = "faiss" if faiss is not None else "numpy"
        self._faiss = faiss
        self._packed: list[np.ndarray] = []
        self._unpacked: np.ndarray | None = None
        self._index = faiss.IndexBinaryFlat(8 * ((self.bits + 7) // 8)) if faiss is not None else None

    @property
    def ntotal(self) -> int:
        """Number of stored codes."""
        return sum(p.shape[0] for p in self._packed)

    def _check(self, codes: Any, what: str) -> np.ndarray:
        c = to_codes(codes, what)
        if c.shape[1] != self.bits:
            raise HashCondenseError(
                f"{what} have {c.shape[1]} bits but the index holds {self.bits}-bit codes; "
                "encode with the same network"
            )
        return c

    def add(self, codes: Any) -> None:
        """Append (n, bits) codes (any form `to_codes` accepts); they get the next indices."""
        packed = pack_codes(self._check(codes, "codes to add"))
        if packed.shape[0] == 0:
            return
        self._append(packed)

    def add_packed(self, packed: Any) -> None:
        """Append codes already packed by `pack_codes`, (n, ceil(bits / 8)) uint8: a stored index is
        loaded without unpacking and repacking its codes. Padding bits past `bits` are cleared (set
        ones would add to every distance)."""
        p = np.ascontiguousarray(np.asarray(packed))
        width = (self.bits + 7) // 8
        if p.ndim != 2 or p.dtype != np.uint8 or p.shape[1] != width:
            raise HashCondenseError(
                f"packed codes must be (n, {width}) uint8 for {self.bits} bits, got {p.dtype} {p.shape}; "
                "pack them with hashcondense.retrieval.pack_codes"
            )
        if self.bits % 8:
            p = p.copy()
            p[:, -1] &= np.uint8((0xFF << (8 - self.bits % 8)) & 0xFF)
        if p.shape[0]:
            self._append(p)

    def _append(self, packed: np.ndarray) -> None:
        self._packed.append(packed)
        self._unpacked = None
        if self._index is not None:
            self._index.add(packed)

    def search(self, query_codes: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The k nearest stored codes of every query by (Hamming distance, index).

        Returns:
            (distances, indices): two (Q, min(k, ntotal)) int64 arrays, rows ascending.
        """
        q = self._check(query_codes, "query codes")
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise HashCondenseError(f"k={k!r} is not a positive whole number; ask for k >= 1 neighbours")
        total = self.ntotal
        if total == 0:
            raise HashCondenseError("the index is empty; add database codes before searching")
        if q.shape[0] == 0:
            raise HashCondenseError("query codes are empty; pass at least one query code")
        k = min(int(k), total)
        if self._index is None:
            if self._unpacked is None:
                self._unpacked = unpack_codes(np.concatenate(self._packed), self.bits)
            return hamming_topk(q, self._unpacked, k)
        return self._search_faiss(pack_codes(q), k)

    def _search_faiss(self, qp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        assert self._index is not None
        return faiss_stable_search(self._index, qp, k, self.bits)


def faiss_stable_search(
    index: Any, qp: np.ndarray, k: int, bits: int, kth: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """faiss's k nearest of packed queries `qp`, re-ordered by (distance, index) (module docstring).

    Works for any faiss binary index with a range search (flat, IVF: then among the probed lists).
    Every query must have at least k stored codes in reach. `kth`: each query's k-th distance when
    the caller already searched; `bits`: the code length, which bounds every distance.
    """
    dist_k = index.search(qp, k)[0][:, -1] if kth is None else kth
    dist_k = np.asarray(dist_k).astype(np.int64)
    dist = np.empty((qp.shape[0], k), dtype=np.int64)
    idx = np.empty((qp.shape[0], k), dtype=np.int64)
    total = int(index.ntotal)
    for radius in np.unique(dist_k).tolist():
        group = np.flatnonzero(dist_k == radius)
        for start in range(0, group.size, _RANGE_BATCH):
            rows = group[start : start + _RANGE_BATCH]
            lims, d, i = index.range_search(qp[rows], int(radius) + 1)
            lims = lims.astype(np.int64)
            counts = np.diff(lims)
            owner = np.repeat(np.arange(rows.size, dtype=np.int64), counts)
            key = (owner * (bits + 1) + d.astype(np.int64)) * total + i.astype(np.int64)
            key.sort()
            take = key[lims[:-1, None] + np.arange(k)]
            dist[rows] = (take // total) % (bits + 1)
            idx[rows] = take % total
    return dist, idx
