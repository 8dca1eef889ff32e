"""Retrieval metrics over Hamming ranking: mAP@K, P@top-M, precision-recall by radius (DESIGN Section 3).

Ranking: for each query the database is ordered by (Hamming distance, database index). Breaking ties by
index (a stable sort) makes every number reproducible; the public code bases sort unstably, so their
numbers move with the database order (OrthoHash's README: 1-2 % mAP). ``ties="expected"`` instead gives
the expectation over uniformly random orders inside every group of equal distance, computed exactly.

Relevance: labels are class indices, shape (n,), or multi-hot, shape (n, C) with 0/1 entries; a database
item is relevant to a query when they share at least one label. A 1-D and a 2-D label array can be
mixed (the indices are read as one-hot rows of the other's C columns).

AP@K of one query: over the top K items, the sum of precision@i at the ranks i holding a relevant item,
divided by the number of relevant items within the top K; 0 when there is none. mAP@K is the mean over
all queries. ``topk`` = -1, None or >= N means the whole database.

Speed: keys ``stride * distance + index`` come out of one float32 matrix product per chunk of queries;
an O(N) partial sort (`np.partition`) picks the K smallest keys, and only those K are sorted; chunks run
on parallel threads, about 16x faster than a full stable argsort per query (bench/bench_map.py;
figures in BENCHMARKS.md).

Example:
    >>> from hashcondense.retrieval import evaluate_retrieval, mean_average_precision
    >>> mean_average_precision(q_codes, q_labels, db_codes, db_labels, topk=5000)
    0.4585...
    >>> evaluate_retrieval(q_codes, q_labels, db_codes, db_labels, topk=5000)["precision_at_m"]
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal, overload

import numpy as np

from hashcondense.errors import HashCondenseError
from hashcondense.retrieval.codes import KeyMatrix, _to_numpy, check_pair, run_query_chunks

__all__ = ["evaluate_retrieval", "mean_average_precision", "precision_at_topm", "precision_recall_curve"]

Ties = Literal["index", "expected"]
_TIES = ("index", "expected")


# --------------------------------------------------------------------------------------------- labels
def _read_labels(x: Any, n: int, what: str) -> np.ndarray:
    a = _to_numpy(x, what)
    if a.ndim not in (1, 2):
        raise HashCondenseError(
            f"{what} must be class indices (n,) or multi-hot (n, C), got shape {tuple(a.shape)}"
        )
    if a.shape[0] != n:
        raise HashCondenseError(
            f"{what} has {a.shape[0]} rows but there are {n} codes; pass one label per code"
        )
    if a.ndim == 1:
        if a.dtype == np.bool_ or not (
            np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)
        ):
            raise HashCondenseError(f"{what} have dtype {a.dtype}; pass integer class indices")
        if np.issubdtype(a.dtype, np.floating) and not (np.isfinite(a).all() and (a == np.round(a)).all()):
            raise HashCondenseError(f"{what} are not whole numbers; pass integer class indices")
        return a.astype(np.int64)
    if a.dtype != np.bool_:
        if (
            not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))
            or not np.isin(a, (0, 1)).all()
        ):
            raise HashCondenseError(
                f"{what} is 2-D but not 0/1 multi-hot; pass class indices as a 1-D array or 0/1 rows"
            )
    return a.astype(bool)


class Labels:
    """Query and database labels in the fastest form for relevance tests.

    Class indices stay int64 and relevance is equality; multi-hot rows are packed into uint64 words and
    relevance is a non-zero AND.
    """

    def __init__(self, query_labels: Any, database_labels: Any, num_queries: int, num_database: int) -> None:
        ql = _read_labels(query_labels, num_queries, "query labels")
        dl = _read_labels(database_labels, num_database, "database labels")
        if ql.ndim == 1 and dl.ndim == 1:
            self.multi = False
            self.query, self.database = ql, dl
            return
        classes = dl.shape[1] if dl.ndim == 2 else ql.shape[1]
        ql, dl = (self._one_hot(x, classes, name) for x, name in ((ql, "query"), (dl, "database")))
        if ql.shape[1] != dl.shape[1]:
            raise HashCondenseError(
                f"query labels have {ql.shape[1]} classes but database labels have {dl.shape[1]}; "
                "use the same class list for both"
            )
        self.multi = True
        self.query, self.database = self._pack(ql), self._pack(dl)

    @staticmethod
    def _one_hot(x: np.ndarray, classes: int, name: str) -> np.ndarray:
        if x.ndim == 2:
            return x
        if x.size and (x.min() < 0 or x.max() >= classes):
            raise HashCondenseError(
                f"{name} class indices must lie in [0, {classes}) to match the other side's multi-hot labels"
            )
        out = np.zeros((x.shape[0], classes), dtype=bool)
        out[np.arange(x.shape[0]), x] = True
        return out

    @staticmethod
    def _pack(x: np.ndarray) -> np.ndarray:
        packed = np.packbits(x, axis=1)
        words = -(-packed.shape[1] // 8)
        buf = np.zeros((x.shape[0], 8 * words), dtype=np.uint8)
        buf[:, : packed.shape[1]] = packed
        return buf.view(np.uint64)

    def at(self, rows: slice, index: np.ndarray) -> np.ndarray:
        """bool (len(rows), k): relevance of database items `index` (one row per query of `rows`)."""
        if not self.multi:
            return self.database[index] == self.query[rows, None]
        hit = self.database[index] & self.query[rows, None, :]
        return hit.any(axis=-1)

    def matrix(self, rows: slice) -> np.ndarray:
        """bool (len(rows), N): relevance of every database item to the queries of `rows`."""
        if not self.multi:
            return self.query[rows, None] == self.database[None, :]
        q = self.query[rows]
        out = np.zeros((q.shape[0], self.database.shape[0]), dtype=bool)
        for w in range(q.shape[1]):
            out |= (q[:, w, None] & self.database[None, :, w]) != 0
        return out


class _Problem:
    """Validated inputs shared by every metric."""

    def __init__(
        self, query_codes: Any, query_labels: Any, database_codes: Any, database_labels: Any
    ) -> None:
        self.query, self.database = check_pair(query_codes, database_codes)
        self.num_queries, self.bits = self.query.shape
        self.num_database = self.database.shape[0]
        self.labels = Labels(query_labels, database_labels, self.num_queries, self.num_database)

    def resolve_topk(self, topk: int | None) -> int:
        if topk is None:
            return self.num_database
        if isinstance(topk, bool) or not isinstance(topk, (int, np.integer)) or (topk < 1 and topk != -1):
            raise HashCondenseError(
                f"topk={topk!r} is not valid; pass K >= 1, or -1 / None for the whole database"
            )
        return self.num_database if topk == -1 else min(int(topk), self.num_database)

    def resolve_m(self, m_values: Sequence[int]) -> np.ndarray:
        ms = np.asarray(list(m_values) if not isinstance(m_values, np.ndarray) else m_values)
        if ms.ndim != 1 or ms.size == 0 or ms.dtype == np.bool_ or not np.issubdtype(ms.dtype, np.integer):
            raise HashCondenseError(
                f"m_values={m_values!r} is not a list of whole numbers; pass e.g. [100, 500, 1000]"
            )
        if (ms < 1).any():
            raise HashCondenseError(f"m_values={ms.tolist()} has values below 1; every M must be >= 1")
        return np.minimum(ms.astype(np.int64), self.num_database)


def _check_ties(ties: str) -> None:
    if ties not in _TIES:
        raise HashCondenseError(f"unknown value '{ties}' for argument ties; valid values are {set(_TIES)}")


# ---------------------------------------------------------------------------------- index tie order
def _ranked_stats(p: _Problem, topk: int, ms: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
    """Per-query AP@topk and (if ms) precision@M under (distance, index) order; one pass over chunks."""
    depth = topk if ms is None else max(topk, int(ms.max()))
    km = KeyMatrix(p.database)
    ranks = np.arange(1, topk + 1, dtype=np.float64)
    ap = np.empty(p.num_queries)
    prec = None if ms is None else np.empty((p.num_queries, ms.size))

    def work(sl: slice, buf: np.ndarray | None) -> None:
        index = km.index(km.top(km.keys(p.query[sl], out=buf), depth))
        rel = p.labels.at(sl, index)
        hits = np.cumsum(rel, axis=1, dtype=np.int64)
        found = hits[:, topk - 1]
        total = ((hits[:, :topk] / ranks) * rel[:, :topk]).sum(axis=1)
        ap[sl] = np.where(found > 0, total / np.maximum(found, 1), 0.0)
        if prec is not None:
            prec[sl] = hits[:, ms - 1] / ms

    run_query_chunks(work, p.num_queries, p.num_database, bytes_per_item=km.itemsize, buffer=km.buffer)
    return ap, prec


# ------------------------------------------------------------------------------ distance histograms
def _histograms(p: _Problem) -> tuple[np.ndarray, np.ndarray]:
    """(all, relevant) item counts per query and Hamming distance: two (Q, bits + 1) int64 arrays.

    Per query row, ``2 * distance + relevant`` (= bits - q.d + relevant, a small integer) is counted by
    one `np.bincount`.
    """
    bins = 2 * (p.bits + 1)
    key_dtype = np.uint8 if bins <= 256 else np.uint16 if bins <= 2**16 else np.int64
    dbt = p.database.T.astype(np.float32)  # q.d is an integer of magnitude <= bits: exact in float32
    counts = np.empty((p.num_queries, bins), dtype=np.int64)

    def work(sl: slice, _: np.ndarray | None) -> None:
        prod = p.query[sl].astype(np.float32) @ dbt
        np.subtract(p.bits, prod, out=prod)
        key = prod.astype(key_dtype)
        key += p.labels.matrix(sl)
        for row, values in zip(range(sl.start, sl.stop), key, strict=True):
            counts[row] = np.bincount(values, minlength=bins)

    run_query_chunks(work, p.num_queries, p.num_database, bytes_per_item=6)
    counts = counts.reshape(p.num_queries, p.bits + 1, 2)
    return counts.sum(axis=2), counts[..., 1].copy()


def _exclusive_cumsum(x: np.ndarray) -> np.ndarray:
    out = np.zeros_like(x)
    np.cumsum(x[:, :-1], axis=1, out=out[:, 1:])
    return out


def _cut(n_all: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Per query: the distance bin holding rank k and how many of its items fall within the top k."""
    before = _exclusive_cumsum(n_all)
    cut = np.argmax(before + n_all >= k, axis=1)
    rows = np.arange(n_all.shape[0])
    return cut, k - before[rows, cut]


def _position_sums(before: np.ndarray, inside: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For every (query, bin): h = sum_p 1/(C+p) and g = sum_p (p-1)/(C+p) over p = 1..inside.

    C = `before` items precede the bin. Summed term by term (no harmonic-number differences, whose
    cancellation would cost ~1e-10 at C ~ 60,000), in blocks of queries to bound memory.
    """
    h = np.zeros(before.shape)
    g = np.zeros(before.shape)
    per_query = max(1, int(inside.sum(axis=1).max()))
    block = max(1, 2**22 // per_query)
    for start in range(0, before.shape[0], block):
        cnt = inside[start : start + block].ravel()
        seg = np.repeat(np.arange(cnt.size), cnt)
        offset = np.arange(seg.size) - np.repeat(np.cumsum(cnt) - cnt, cnt)  # p - 1
        rank = np.repeat(before[start : start + block].ravel(), cnt) + offset + 1.0  # C + p
        h[start : start + block] = np.bincount(seg, 1.0 / rank, cnt.size).reshape(-1, before.shape[1])
        g[start : start + block] = np.bincount(seg, offset / rank, cnt.size).reshape(-1, before.shape[1])
    return h, g


def _expected_sum(x: Any, m: Any, before_rel: Any, h: Any, g: Any) -> Any:
    """E[sum of precision@i over the relevant ranks] of m tied positions holding x relevant items.

    The group follows C items of which R are relevant. Each of its positions p = 1..m is relevant with
    probability x/m, and then holds R + 1 + (p-1)(x-1)/(m-1) relevant items up to it in expectation
    (the others are spread uniformly), so by linearity the sum is
    (x/m) * [(R+1) h + (x-1)/(m-1) g], with h = sum_p 1/(C+p) and g = sum_p (p-1)/(C+p).
    """
    shape = np.broadcast(x, m).shape
    slope = np.divide(np.subtract(x, 1), np.subtract(m, 1), out=np.zeros(shape), where=np.asarray(m) > 1)
    share = np.divide(x, m, out=np.zeros(shape), where=np.asarray(m) > 0)
    return share * (np.add(before_rel, 1) * h + slope * g)


def _hypergeometric(n: int, r: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Support and pmf of the number of relevant items among m drawn from n holding r relevant."""
    lo, hi = max(0, m - (n - r)), min(r, m)
    x = np.arange(lo, hi + 1)
    if x.size == 1:
        return x, np.ones(1)
    xs = x[:-1].astype(np.float64)
    step = np.log((r - xs) * (m - xs)) - np.log((xs + 1) * (n - r - m + xs + 1))  # log pmf(x+1)/pmf(x)
    logw = np.concatenate([[0.0], np.cumsum(step)])
    w = np.exp(logw - logw.max())
    return x, w / w.sum()


def _expected_ap(n_all: np.ndarray, n_rel: np.ndarray, topk: int) -> np.ndarray:
    """Per-query tie-aware expected AP@topk: exact expectation over random orders within ties.

    Bins (distances) wholly inside the top K contribute their expected sums independently of each
    other. Only the bin cut by rank K (m of its n items inside) makes the number of relevant items
    in the top K random: X is hypergeometric, and given X = x the relevant items are spread uniformly
    over the m positions, so E[AP] = sum_x P(X = x) (S_full + E[sum in cut bin | x]) / (R_full + x).
    """
    before_all, before_rel = _exclusive_cumsum(n_all), _exclusive_cumsum(n_rel)
    inside = np.clip(topk - before_all, 0, n_all)
    h, g = _position_sums(before_all, inside)
    bins = np.arange(n_all.shape[1])
    cut = n_all.shape[1] - 1 - np.argmax((inside > 0)[:, ::-1], axis=1)  # last bin reaching the top K
    full = bins[None, :] < cut[:, None]
    s_full = np.where(full, _expected_sum(n_rel, n_all, before_rel, h, g), 0.0).sum(axis=1)
    r_full = np.where(full, n_rel, 0).sum(axis=1)
    ap = np.empty(n_all.shape[0])
    for i, d in enumerate(cut.tolist()):
        m = int(inside[i, d])
        x, pmf = _hypergeometric(int(n_all[i, d]), int(n_rel[i, d]), m)
        y = _expected_sum(x, m, before_rel[i, d], h[i, d], g[i, d])
        found = r_full[i] + x
        ap[i] = float(np.sum(pmf * np.where(found > 0, (s_full[i] + y) / np.maximum(found, 1), 0.0)))
    return ap


def _expected_precision_at(n_all: np.ndarray, n_rel: np.ndarray, ms: np.ndarray) -> np.ndarray:
    """(Q, len(ms)) expected precision among the top M over random orders within ties."""
    before_rel = _exclusive_cumsum(n_rel)
    rows = np.arange(n_all.shape[0])
    out = np.empty((n_all.shape[0], ms.size))
    for j, m in enumerate(ms.tolist()):
        cut, inside = _cut(n_all, m)
        hits = before_rel[rows, cut] + inside * n_rel[rows, cut] / n_all[rows, cut]
        out[:, j] = hits / m
    return out


# ------------------------------------------------------------------------------------ public API
@overload
def mean_average_precision(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    topk: int | None,
    *,
    ties: Ties = ...,
    per_query: Literal[False] = ...,
) -> float: ...


@overload
def mean_average_precision(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    topk: int | None,
    *,
    ties: Ties = ...,
    per_query: Literal[True],
) -> np.ndarray: ...


def mean_average_precision(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    topk: int | None,
    *,
    ties: Ties = "index",
    per_query: bool = False,
) -> float | np.ndarray:
    """mAP@K of Hamming ranking (DESIGN Section 3), exact.

    Args:
        query_codes: (Q, bits) ±1 codes or continuous outputs (signed, sign(0) = +1), numpy or torch.
        query_labels: (Q,) class indices or (Q, C) 0/1 multi-hot.
        database_codes: (N, bits), same forms.
        database_labels: (N,) or (N, C).
        topk: K; -1, None or >= N rank the whole database.
        ties: "index" (default) breaks equal distances by database index; "expected" returns the exact
            expected AP over uniformly random orders within equal distances.
        per_query: return the (Q,) float64 array of APs instead of their mean.

    Returns:
        mAP in [0, 1] as a float, or the per-query APs.
    """
    _check_ties(ties)
    p = _Problem(query_codes, query_labels, database_codes, database_labels)
    k = p.resolve_topk(topk)
    if ties == "index":
        ap, _ = _ranked_stats(p, k, None)
    else:
        ap = _expected_ap(*_histograms(p), k)
    return ap if per_query else float(ap.mean())


def precision_at_topm(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    m_values: Sequence[int],
    *,
    ties: Ties = "index",
) -> np.ndarray:
    """Mean over queries of the precision among the top M returned items, for every M (IEM Figure 4).

    Ranking as in `mean_average_precision` (``ties`` likewise). An M above the database size N counts
    the N items there are (precision among all of them).

    Returns:
        float64 array aligned with `m_values`.
    """
    _check_ties(ties)
    p = _Problem(query_codes, query_labels, database_codes, database_labels)
    ms = p.resolve_m(m_values)
    if ties == "index":
        _, prec = _ranked_stats(p, int(ms.max()), ms)
        assert prec is not None
    else:
        prec = _expected_precision_at(*_histograms(p), ms)
    return prec.mean(axis=0)


def _mean_where(values: np.ndarray, defined: np.ndarray) -> np.ndarray:
    """Column means of `values` over the rows where `defined`; NaN for a column with no such row."""
    count = defined.sum(axis=0)
    total = np.where(defined, values, 0.0).sum(axis=0)
    out = np.full(values.shape[1], np.nan)
    np.divide(total, count, out=out, where=count > 0)
    return out


def _pr_from_histograms(n_all: np.ndarray, n_rel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    retrieved = np.cumsum(n_all, axis=1)
    hits = np.cumsum(n_rel, axis=1)
    relevant = hits[:, -1:]
    precision = _mean_where(hits / np.maximum(retrieved, 1), retrieved > 0)
    recall = _mean_where(hits / np.maximum(relevant, 1), np.broadcast_to(relevant > 0, hits.shape))
    return precision, recall


def precision_recall_curve(
    query_codes: Any, query_labels: Any, database_codes: Any, database_labels: Any
) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall of Hamming-ball retrieval at radius r = 0..bits (IEM Figure 5).

    At radius r a query retrieves every database item within Hamming distance <= r (no tie question).
    Per query: precision = relevant retrieved / retrieved, recall = relevant retrieved / relevant in the
    database. Each is averaged over the queries where it is defined: a query that retrieves nothing at
    radius r is left out of the precision mean at r (it is not counted as 0 or 1), a query with no
    relevant item in the database is left out of the recall mean; a mean over no query is NaN. (Radius
    PR code in the hashing literature instead averages over queries with precision > 0, which also drops
    queries that retrieve only irrelevant items; DeepHash-pytorch's `pr_curve` sweeps top-k cut-offs, not
    radii.)

    Returns:
        (precision, recall): two float64 arrays of length bits + 1, indexed by radius.
    """
    p = _Problem(query_codes, query_labels, database_codes, database_labels)
    return _pr_from_histograms(*_histograms(p))


def _default_m_values(topk: int) -> list[int]:
    grid = {1, 10, 50, 100, 200, 500} | {max(1, round(topk * i / 10)) for i in range(1, 11)}
    return sorted(m for m in grid if m <= topk)


def _plain(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def evaluate_retrieval(
    query_codes: Any,
    query_labels: Any,
    database_codes: Any,
    database_labels: Any,
    topk: int | None,
    m_values: Sequence[int] | None = None,
    *,
    ties: Ties = "index",
) -> dict[str, Any]:
    """All retrieval metrics in one JSON-serialisable dict (plain floats, ints, lists, str keys).

    Keys: ``map`` (mAP@topk), ``topk`` (the K used, N for the whole database), ``bits``, ``ties``,
    ``num_queries``, ``num_database``, ``precision_at_m`` ({str(M): precision}, str keys so the dict
    is equal to its JSON round trip; default grid: 1, 10, 50, 100, 200, 500 and tenths of K, up to K),
    ``pr`` ({"radius": [0..bits], "precision": [...], "recall": [...]}, NaN written as None, see
    `precision_recall_curve`).
    """
    _check_ties(ties)
    p = _Problem(query_codes, query_labels, database_codes, database_labels)
    k = p.resolve_topk(topk)
    ms = p.resolve_m(_default_m_values(k) if m_values is None else m_values)
    n_all, n_rel = _histograms(p)
    if ties == "index":
        ap, prec = _ranked_stats(p, k, ms)
        assert prec is not None
    else:
        ap, prec = _expected_ap(n_all, n_rel, k), _expected_precision_at(n_all, n_rel, ms)
    precision, recall = _pr_from_histograms(n_all, n_rel)
    requested = list(m_values) if m_values is not None else ms.tolist()
    return {
        "map": float(ap.mean()),
        "topk": int(k),
        "bits": int(p.bits),
        "ties": ties,
        "num_queries": int(p.num_queries),
        "num_database": int(p.num_database),
        "precision_at_m": {str(int(m)): float(v) for m, v in zip(requested, prec.mean(axis=0), strict=True)},
        "pr": {
            "radius": list(range(p.bits + 1)),
            "precision": [_plain(v) for v in precision.tolist()],
            "recall": [_plain(v) for v in recall.tolist()],
        },
    }
