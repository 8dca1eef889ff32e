"""Searching a served index: the k nearest database codes of each query, in (distance, position) order.

A flat index answers exactly as `hashcondense.retrieval` ranks (ties broken by database position, via
`HammingIndex`), so a mAP computed from its answers equals `mean_average_precision` on the same codes.
An IVF index answers from the `nprobe` lists it visits, in the same order among the codes it saw; a
query whose lists hold fewer than k codes gets fewer answers (padded with id -1 and distance -1).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from hashcondense.errors import HashCondenseError
from hashcondense.serve.index_file import ServedIndex

__all__ = ["SearchResult", "search_index"]


@dataclass
class SearchResult:
    """(Q, k) arrays per query: Hamming distances, index positions, ids and labels; -1 pads a row."""

    distances: np.ndarray
    positions: np.ndarray
    ids: np.ndarray
    labels: np.ndarray

    def to_json(self, names: list[Any], query_labels: np.ndarray) -> list[dict[str, Any]]:
        """One record per query: its name and label, then ids, distances and labels of its answers."""
        out = []
        for row, (name, label) in enumerate(zip(names, query_labels.tolist(), strict=True)):
            keep = self.positions[row] >= 0
            out.append(
                {
                    "query": name,
                    "label": int(label),
                    "ids": self.ids[row][keep].tolist(),
                    "distances": self.distances[row][keep].tolist(),
                    "labels": self.labels[row][keep].tolist(),
                }
            )
        return out


def search_index(served: ServedIndex, query_codes: Any, k: int, nprobe: int | None = None) -> SearchResult:
    """The k nearest codes of each query (±1 codes, any form `to_codes` accepts) in `served`.

    `nprobe` (IVF only) overrides the number of lists visited that the index was built with.
    """
    from hashcondense.retrieval import pack_codes, to_codes

    q = to_codes(query_codes, "query codes")
    if q.shape[1] != served.bits:
        raise HashCondenseError(
            f"query codes have {q.shape[1]} bits but the index holds {served.bits}-bit codes; "
            "encode the queries with the network that encoded the database"
        )
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise HashCondenseError(f"--k {k!r} is not a positive whole number; ask for k >= 1 neighbours")
    k = min(int(k), len(served))
    if served.kind == "flat":
        if nprobe is not None:
            raise HashCondenseError("--nprobe applies to IVF indexes; drop it for a flat index")
        dist, pos = served.exact().search(q, k)
    else:
        dist, pos = _search_ivf(served, pack_codes(q), k, nprobe)
    found = pos >= 0
    ids = np.where(found, served.ids[np.maximum(pos, 0)], -1)
    labels = np.where(found, served.labels[np.maximum(pos, 0)], -1)
    return SearchResult(dist, pos, ids, labels)


def _search_ivf(
    served: ServedIndex, qp: np.ndarray, k: int, nprobe: int | None
) -> tuple[np.ndarray, np.ndarray]:
    """IVF answers in (distance, position) order: rows with k answers through the range-search re-sort
    of `faiss_stable_search`, shorter rows (their lists hold fewer than k codes) sorted as found."""
    from hashcondense.retrieval.index import faiss_stable_search

    index = served.index
    if nprobe is not None:
        if not 1 <= int(nprobe) <= index.nlist:
            raise HashCondenseError(
                f"--nprobe {nprobe} must be between 1 and the index's nlist ({index.nlist})"
            )
        index.nprobe = int(nprobe)
    d, i = index.search(qp, k)
    dist = np.full((qp.shape[0], k), -1, dtype=np.int64)
    pos = np.full((qp.shape[0], k), -1, dtype=np.int64)
    full = i[:, -1] >= 0
    if full.any():
        dist[full], pos[full] = faiss_stable_search(index, qp[full], k, served.bits, kth=d[full, -1])
    for row in np.flatnonzero(~full).tolist():
        valid = i[row] >= 0
        order = np.lexsort((i[row][valid], d[row][valid]))
        dist[row, : order.size] = d[row][valid][order]
        pos[row, : order.size] = i[row][valid][order]
    return dist, pos
