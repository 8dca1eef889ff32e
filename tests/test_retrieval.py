"""Retrieval metrics and search against brute-force pure-Python references (many ties: few bits)."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch

import hashcondense.retrieval.codes as codes_mod
from hashcondense.errors import HashCondenseError
from hashcondense.retrieval import (
    HammingIndex,
    evaluate_retrieval,
    hamming_distances,
    hamming_topk,
    mean_average_precision,
    pack_codes,
    precision_at_topm,
    precision_recall_curve,
    to_codes,
    unpack_codes,
)

# ------------------------------------------------------------------------------ brute-force references


def ref_dist(q: np.ndarray, d: np.ndarray) -> list[list[int]]:
    return [[sum(int(a != b) for a, b in zip(qi, dj, strict=True)) for dj in d] for qi in q]


def ref_relevant(qlab, dlab) -> bool:
    if np.ndim(qlab) == 0:
        return int(qlab) == int(dlab)
    return any(bool(a) and bool(b) for a, b in zip(qlab, dlab, strict=True))


def ref_order(dist_row: list[int]) -> list[int]:
    return sorted(range(len(dist_row)), key=lambda j: (dist_row[j], j))


def ref_ap(rels: list[bool]) -> float:
    hits, total = 0, 0.0
    for rank, rel in enumerate(rels, start=1):
        if rel:
            hits += 1
            total += hits / rank
    return total / hits if hits else 0.0


def ref_aps(q, ql, d, dl, k) -> list[float]:
    n = len(d)
    k = n if k is None or k == -1 or k > n else k
    out = []
    for i, row in enumerate(ref_dist(q, d)):
        order = ref_order(row)[:k]
        out.append(ref_ap([ref_relevant(ql[i], dl[j]) for j in order]))
    return out


def ref_expected_aps(q, ql, d, dl, k) -> list[float]:
    """Average of AP over every order within groups of equal distance (exact enumeration)."""
    n = len(d)
    k = n if k is None or k == -1 or k > n else k
    out = []
    for i, row in enumerate(ref_dist(q, d)):
        groups = [[j for j in range(n) if row[j] == v] for v in sorted(set(row))]
        values = []
        for perms in itertools.product(*(itertools.permutations(g) for g in groups)):
            order = [j for g in perms for j in g][:k]
            values.append(ref_ap([ref_relevant(ql[i], dl[j]) for j in order]))
        out.append(sum(values) / len(values))
    return out


def random_problem(rng, nq=12, nd=40, bits=4, classes=3):
    q = rng.choice([-1, 1], size=(nq, bits)).astype(np.int8)
    d = rng.choice([-1, 1], size=(nd, bits)).astype(np.int8)
    return q, rng.integers(0, classes, nq), d, rng.integers(0, classes, nd)


@pytest.fixture
def problem():
    return random_problem(np.random.default_rng(0), nq=25, nd=150, bits=8, classes=4)


# ---------------------------------------------------------------------------------------------- codes


def test_to_codes_signs_with_zero_positive_and_reads_every_form():
    h = np.array([[0.3, -0.2, 0.0, -0.0], [-1.0, 1.0, -5.0, 2.0]], dtype=np.float32)
    expected = np.array([[1, -1, 1, 1], [-1, 1, -1, 1]], dtype=np.int8)
    for x in (
        h,
        h.astype(np.float64),
        torch.from_numpy(h),
        torch.from_numpy(h).bfloat16(),
        expected.astype(np.int64),
        torch.from_numpy(expected),
        expected > 0,
    ):
        out = to_codes(x)
        assert out.dtype == np.int8 and np.array_equal(out, expected)


@pytest.mark.parametrize(
    "bad, fragment",
    [
        (np.array([[0, 1, 1], [1, 0, 0]]), "0/1 bits"),
        (np.array([[np.nan, 1.0]]), "NaN"),
        (np.array([1.0, -1.0]), "2-D"),
        (np.zeros((3, 0)), "0 bits"),
        (np.array([["a", "b"]]), "dtype"),
    ],
)
def test_to_codes_refuses_ambiguous_or_broken_input(bad, fragment):
    with pytest.raises(HashCondenseError, match=fragment):
        to_codes(bad)


def test_pack_unpack_roundtrip_and_padding_keeps_distances():
    rng = np.random.default_rng(1)
    c = rng.choice([-1, 1], size=(9, 13)).astype(np.int8)
    packed = pack_codes(c)
    assert packed.dtype == np.uint8 and packed.shape == (9, 2)
    assert np.array_equal(unpack_codes(packed, 13), c)
    xor = np.unpackbits(packed[:, None, :] ^ packed[None, :, :], axis=-1).sum(-1)
    assert np.array_equal(xor, np.array(ref_dist(c, c)))
    with pytest.raises(HashCondenseError, match="uint8"):
        unpack_codes(packed, 20)


def test_hamming_distances_and_topk_match_brute_force(problem):
    q, _, d, _ = problem
    ref = np.array(ref_dist(q, d))
    for qq, dd in (
        (q, d),
        (torch.from_numpy(q).float(), torch.from_numpy(d)),
        (q * 0.7, d.astype(np.float64)),
    ):
        dist = hamming_distances(qq, dd)
        assert dist.dtype == np.int32 and np.array_equal(dist, ref)
    for k in (1, 10, 150, 400):
        dist, idx = hamming_topk(q, d, k)
        want = [ref_order(row)[: min(k, len(d))] for row in ref.tolist()]
        assert np.array_equal(idx, np.array(want))
        assert np.array_equal(dist, np.take_along_axis(ref, idx, axis=1))


# ------------------------------------------------------------------------------------------------ mAP


@pytest.mark.parametrize("topk", [1, 3, 17, 64, 149, 150, -1, None, 500])
def test_map_equals_brute_force_with_many_ties(problem, topk):
    q, ql, d, dl = problem
    ref = ref_aps(q, ql, d, dl, topk)
    got = mean_average_precision(q, ql, d, dl, topk, per_query=True)
    assert got.shape == (len(q),)
    assert np.max(np.abs(got - np.array(ref))) < 1e-12
    assert abs(mean_average_precision(q, ql, d, dl, topk) - sum(ref) / len(ref)) < 1e-12


def test_map_multi_hot_labels_torch_and_continuous_inputs():
    rng = np.random.default_rng(2)
    q, _, d, _ = random_problem(rng, nq=15, nd=90, bits=6)
    ql = rng.random((15, 5)) < 0.3
    dl = rng.random((90, 5)) < 0.3
    ref = np.array(ref_aps(q, ql, d, dl, 30))
    got = mean_average_precision(
        torch.from_numpy(q * 0.5).float(),
        torch.from_numpy(ql.astype(np.float32)),
        torch.from_numpy(d).to(torch.int32),
        dl.astype(np.int64),
        30,
        per_query=True,
    )
    assert np.max(np.abs(got - ref)) < 1e-12
    # mixed: class indices on one side are read as one-hot rows of the other side's classes
    ql_idx = rng.integers(0, 5, 15)
    ref_mixed = np.array(ref_aps(q, np.eye(5, dtype=bool)[ql_idx], d, dl, 30))
    got_mixed = mean_average_precision(q, ql_idx, d, dl, 30, per_query=True)
    assert np.max(np.abs(got_mixed - ref_mixed)) < 1e-12


def test_many_label_words_multi_hot():
    rng = np.random.default_rng(3)
    q, _, d, _ = random_problem(rng, nq=8, nd=50, bits=5)
    ql, dl = rng.random((8, 150)) < 0.02, rng.random((50, 150)) < 0.02  # 3 uint64 words
    got = mean_average_precision(q, ql, d, dl, 20, per_query=True)
    assert np.max(np.abs(got - np.array(ref_aps(q, ql, d, dl, 20)))) < 1e-12


def test_query_without_relevant_items_scores_zero_and_counts_in_mean():
    q = np.array([[1, 1, -1], [1, -1, -1]])
    d = np.array([[1, 1, -1], [-1, -1, -1], [1, -1, 1]])
    ql, dl = np.array([0, 7]), np.array([0, 1, 0])
    aps = mean_average_precision(q, ql, d, dl, 2, per_query=True)
    assert aps[1] == 0.0 and aps[0] == 1.0
    assert mean_average_precision(q, ql, d, dl, 2) == 0.5
    # relevant items exist but none within the top K
    assert mean_average_precision(-np.ones((1, 3)), np.array([0]), d, dl, 1) == 0.0


def test_chunks_threads_and_float64_keys_give_identical_results(problem, monkeypatch):
    q, ql, d, dl = problem
    ref = mean_average_precision(q, ql, d, dl, 40, per_query=True)
    ref_pm = precision_at_topm(q, ql, d, dl, [1, 7, 40])
    monkeypatch.setattr(codes_mod, "CHUNK_BYTES", 4 * 2 * 150 * 4)  # 4 queries per chunk, last one short
    assert np.array_equal(mean_average_precision(q, ql, d, dl, 40, per_query=True), ref)
    assert np.array_equal(precision_at_topm(q, ql, d, dl, [1, 7, 40]), ref_pm)
    monkeypatch.setattr(codes_mod, "MAX_THREADS", 1)  # the same chunks, one after another
    assert np.array_equal(mean_average_precision(q, ql, d, dl, 40, per_query=True), ref)
    monkeypatch.setattr(codes_mod, "_F32_EXACT", 16)  # force the float64 product
    assert codes_mod.KeyMatrix(d).dtype == np.float64
    assert np.array_equal(mean_average_precision(q, ql, d, dl, 40, per_query=True), ref)


# ---------------------------------------------------------------------------------- tie-aware expected AP


@pytest.mark.parametrize("topk", [1, 2, 4, 5, 7, -1])
def test_expected_ap_equals_enumeration_of_all_tie_orders(topk):
    rng = np.random.default_rng(4)
    q, ql, d, dl = random_problem(rng, nq=6, nd=8, bits=3, classes=2)
    ref = np.array(ref_expected_aps(q, ql, d, dl, topk))
    got = mean_average_precision(q, ql, d, dl, topk, ties="expected", per_query=True)
    assert np.max(np.abs(got - ref)) < 1e-12


def test_expected_ap_matches_random_permutations_on_large_groups():
    rng = np.random.default_rng(5)
    nd, bits, topk = 60, 3, 25
    q, ql, d, dl = random_problem(rng, nq=2, nd=nd, bits=bits, classes=2)
    got = mean_average_precision(q, ql, d, dl, topk, ties="expected", per_query=True)
    dist = np.array(ref_dist(q, d))
    for i in range(2):
        rel = dl == ql[i]
        samples = []
        for _ in range(4000):
            order = np.lexsort((rng.random(nd), dist[i]))[:topk]  # random order within each distance
            samples.append(ref_ap(rel[order].tolist()))
        stderr = np.std(samples) / math.sqrt(len(samples))
        assert abs(got[i] - np.mean(samples)) < 5 * stderr + 1e-9


def test_expected_equals_index_order_without_ties():
    bits = 10
    d = np.ones((bits + 1, bits), dtype=np.int8)
    for j in range(bits + 1):
        d[j, :j] = -1  # item j at distance j from the all-ones query
    perm = np.random.default_rng(6).permutation(bits + 1)
    d, dl = d[perm], np.random.default_rng(7).integers(0, 2, bits + 1)
    q, ql = np.ones((1, bits)), np.array([1])
    for topk in (1, 4, -1):
        a = mean_average_precision(q, ql, d, dl, topk, ties="expected")
        b = mean_average_precision(q, ql, d, dl, topk)
        assert abs(a - b) < 1e-12


# ------------------------------------------------------------------------------------- P@M and PR curve


def test_precision_at_topm_matches_brute_force(problem):
    q, ql, d, dl = problem
    ms = [1, 5, 33, 150, 1000]
    ref = []
    for m in ms:
        mm = min(m, len(d))
        vals = []
        for i, row in enumerate(ref_dist(q, d)):
            order = ref_order(row)[:mm]
            vals.append(sum(ref_relevant(ql[i], dl[j]) for j in order) / mm)
        ref.append(sum(vals) / len(vals))
    got = precision_at_topm(q, ql, d, dl, ms)
    assert np.max(np.abs(got - np.array(ref))) < 1e-12


def test_expected_precision_at_topm_equals_enumeration():
    rng = np.random.default_rng(8)
    q, ql, d, dl = random_problem(rng, nq=5, nd=7, bits=3, classes=2)
    ms = [1, 3, 6, 7]
    ref = []
    for m in ms:
        vals = []
        for i, row in enumerate(ref_dist(q, d)):
            groups = [[j for j in range(7) if row[j] == v] for v in sorted(set(row))]
            per = [
                sum(ref_relevant(ql[i], dl[j]) for j in [j for g in perms for j in g][:m]) / m
                for perms in itertools.product(*(itertools.permutations(g) for g in groups))
            ]
            vals.append(sum(per) / len(per))
        ref.append(sum(vals) / len(vals))
    got = precision_at_topm(q, ql, d, dl, ms, ties="expected")
    assert np.max(np.abs(got - np.array(ref))) < 1e-12


def ref_pr(q, ql, d, dl):
    dist = ref_dist(q, d)
    bits = q.shape[1]
    precision, recall = [], []
    for r in range(bits + 1):
        ps, rs = [], []
        for i, row in enumerate(dist):
            got = [j for j in range(len(d)) if row[j] <= r]
            rel_all = sum(ref_relevant(ql[i], dl[j]) for j in range(len(d)))
            hits = sum(ref_relevant(ql[i], dl[j]) for j in got)
            if got:
                ps.append(hits / len(got))
            if rel_all:
                rs.append(hits / rel_all)
        precision.append(sum(ps) / len(ps) if ps else math.nan)
        recall.append(sum(rs) / len(rs) if rs else math.nan)
    return np.array(precision), np.array(recall)


def test_precision_recall_curve_matches_brute_force(problem):
    q, ql, d, dl = problem
    ql = ql.copy()
    ql[0] = 9  # a query with no relevant item: excluded from recall, included in precision
    p, r = precision_recall_curve(q, ql, d, dl)
    rp, rr = ref_pr(q, ql, d, dl)
    assert p.shape == r.shape == (9,)
    assert np.max(np.abs(p - rp)) < 1e-12 and np.max(np.abs(r - rr)) < 1e-12
    assert r[-1] == 1.0


def test_precision_recall_nothing_retrieved_is_nan_and_json_none():
    q = np.ones((1, 4))
    d = -np.ones((3, 4))
    p, r = precision_recall_curve(q, [0], d, [0, 1, 0])
    assert np.isnan(p[:4]).all() and p[4] == 2 / 3
    assert np.array_equal(r, [0, 0, 0, 0, 1.0])
    out = evaluate_retrieval(q, [0], d, [0, 1, 0], topk=2, m_values=[1, 3])
    assert out["pr"]["precision"][:4] == [None] * 4


def test_evaluate_retrieval_is_plain_json_and_consistent(problem):
    q, ql, d, dl = problem
    for ties in ("index", "expected"):
        out = evaluate_retrieval(q, ql, d, dl, 50, m_values=[1, 10, 50], ties=ties)
        assert json.loads(json.dumps(out, allow_nan=False)) == out
        assert set(out) >= {"map", "topk", "bits", "precision_at_m", "pr"}
        assert out["topk"] == 50 and out["bits"] == 8 and list(out["precision_at_m"]) == ["1", "10", "50"]
        assert out["map"] == pytest.approx(mean_average_precision(q, ql, d, dl, 50, ties=ties), abs=1e-12)
        pm = precision_at_topm(q, ql, d, dl, [1, 10, 50], ties=ties)
        assert list(out["precision_at_m"].values()) == pytest.approx(pm.tolist(), abs=1e-12)
        assert out["pr"]["radius"] == list(range(9))
    default = evaluate_retrieval(q, ql, d, dl, -1)
    assert default["topk"] == 150 and "150" in default["precision_at_m"]


# --------------------------------------------------------------------------------------------- index


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
@pytest.mark.parametrize("bits", [8, 12])
def test_hamming_index_matches_stable_brute_force(backend, bits):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(9)
    q, _, d, _ = random_problem(rng, nq=30, nd=400, bits=bits)
    index = HammingIndex(bits, backend=backend)
    assert index.backend == backend
    index.add(d[:150])
    index.add(torch.from_numpy(d[150:]).float())
    assert index.ntotal == 400
    ref = np.array(ref_dist(q, d))
    for k in (1, 7, 64, 400, 1000):
        dist, idx = index.search(q, k)
        want = np.array([ref_order(row)[: min(k, 400)] for row in ref.tolist()])
        assert np.array_equal(idx, want)
        assert np.array_equal(dist, np.take_along_axis(ref, want, axis=1))


@pytest.mark.parametrize("backend", ["numpy", "faiss"])
def test_hamming_index_add_packed_equals_add_and_clears_padding(backend):
    if backend == "faiss":
        pytest.importorskip("faiss")
    rng = np.random.default_rng(3)
    q, _, d, _ = random_problem(rng, nq=20, nd=300, bits=12)
    packed = pack_codes(d)
    packed[:, -1] |= 0x0F  # set the 4 padding bits: they must not count
    a, b = HammingIndex(12, backend=backend), HammingIndex(12, backend=backend)
    a.add(d)
    b.add_packed(packed)
    assert b.ntotal == 300
    for x, y in zip(a.search(q, 50), b.search(q, 50), strict=True):
        assert np.array_equal(x, y)
    with pytest.raises(HashCondenseError, match="uint8"):
        b.add_packed(packed[:, :1])


def test_hamming_index_errors():
    index = HammingIndex(8, backend="numpy")
    with pytest.raises(HashCondenseError, match="empty"):
        index.search(np.ones((1, 8)), 3)
    with pytest.raises(HashCondenseError, match="bits"):
        index.add(np.ones((2, 6)))
    index.add(np.ones((2, 8)))
    with pytest.raises(HashCondenseError, match="k="):
        index.search(np.ones((1, 8)), 0)
    with pytest.raises(HashCondenseError, match="backend"):
        HammingIndex(8, backend="gpu")  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------------ bad inputs


def _one_line(excinfo) -> None:
    assert "\n" not in str(excinfo.value) and str(excinfo.value)


@pytest.mark.parametrize(
    "mutate, fragment",
    [
        (lambda q, ql, d, dl: (q[:, :5], ql, d, dl, 5), "bits"),
        (lambda q, ql, d, dl: (q, ql[:-1], d, dl, 5), "rows"),
        (lambda q, ql, d, dl: (q, ql, d, dl[:-2], 5), "rows"),
        (lambda q, ql, d, dl: (q[:0], ql[:0], d, dl, 5), "empty"),
        (lambda q, ql, d, dl: (q, ql, d[:0], dl[:0], 5), "empty"),
        (lambda q, ql, d, dl: (q, ql, d, dl, 0), "topk"),
        (lambda q, ql, d, dl: (q, ql, d, dl, -2), "topk"),
        (lambda q, ql, d, dl: (q, ql, d, dl, 2.5), "topk"),
        (lambda q, ql, d, dl: (q, ql, d, dl, True), "topk"),
        (lambda q, ql, d, dl: (q, ql + 0.5, d, dl, 5), "whole numbers"),
        (lambda q, ql, d, dl: (q, np.eye(3)[ql % 3] * 2, d, dl, 5), "0/1"),
        (lambda q, ql, d, dl: (q, np.eye(3)[ql % 3], d, np.eye(4)[dl % 4], 5), "classes"),
        (lambda q, ql, d, dl: (q, ql + 10, d, np.eye(4)[dl % 4], 5), r"\[0, 4\)"),
    ],
)
def test_invalid_inputs_raise_one_line_errors(problem, mutate, fragment):
    args = mutate(*problem)
    for fn in (mean_average_precision, evaluate_retrieval):
        with pytest.raises(HashCondenseError, match=fragment) as excinfo:
            fn(*args)
        _one_line(excinfo)


def test_invalid_options_raise(problem):
    q, ql, d, dl = problem
    with pytest.raises(HashCondenseError, match="ties"):
        mean_average_precision(q, ql, d, dl, 5, ties="random")  # type: ignore[call-overload]
    for bad in ([], [0, 5], [1.5], "abc"):
        with pytest.raises(HashCondenseError, match="m_values") as excinfo:
            precision_at_topm(q, ql, d, dl, bad)  # type: ignore[arg-type]
        _one_line(excinfo)
