"""Serving speed: flat vs IVF faiss binary indexes through `hashcondense.serve`, as `hashcondense search`
runs them.

1,000 random 64-bit queries against 59,000 and against `--size` (default 1,000,000) database codes, for
two kinds of codes: `random` (uniform bits: no structure, the worst case for IVF's clustering) and
`clustered` (100 random centres, each bit flipped with probability 0.1: like trained hash codes, which
gather by class). For each: build time (flat: add; IVF: k-means training + add), bytes per code (the
faiss index alone, and the whole index file with ids and labels), query time of `search_index` for
k = 100 (flat: exact, with the (distance, index) re-sort; also faiss's raw heap search without it), and
for IVF at nprobe = nlist/32, nlist/8 (the default) and nlist/2: query time and recall@100 against
flat (ids in common / 100) and its tie-aware form (answers at distance <= flat's 100th / 100: a tied
code is as good an answer). One timed run per search after a warm-up.

faiss runs on `--threads` OpenMP threads (default 1) with OMP_WAIT_POLICY=PASSIVE, as the serving
commands set it: with the spinning default, 2 threads made faiss's searches and k-means 9-65x slower
whenever another job held the second core of our shared 2-core machine.

Peak memory: the process's peak resident size during each build or search (`peak`), beside the packed
codes' own size.

Run: .venv/bin/python bench/bench_serve.py [--size 1000000] [--threads 1]   (the last line is JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before faiss loads its OpenMP runtime

from hashcondense.retrieval import unpack_codes  # noqa: E402
from hashcondense.serve import CodesFile, build_index, load_index, save_index, search_index  # noqa: E402

BITS, K, QUERIES = 64, 100, 1_000


def make_codes(kind: str, n: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    """(n, 8) packed 64-bit codes: uniform bits, or noisy copies of the centres."""
    if kind == "random":
        return rng.integers(0, 256, (n, BITS // 8), dtype=np.uint8)
    out = np.empty((n, BITS // 8), dtype=np.uint8)
    for start in range(0, n, 100_000):  # chunks: 1,000,000 x 64 random floats would take 512 MB
        m = min(n, start + 100_000) - start
        flips = rng.random((m, BITS), dtype=np.float32) < 0.1
        out[start : start + m] = np.packbits(centres[rng.integers(0, centres.shape[0], m)] ^ flips, axis=1)
    return out


def _rss_mb(field: str) -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def peak(fn: Any) -> tuple[float, float, Any]:
    """(seconds, the process's peak resident MB during the call, result). The peak (VmHWM) is reset
    first through /proc/self/clear_refs (Linux), so each call is measured on its own; it counts faiss's
    C++ allocations, which tracemalloc does not see. It includes what the process already holds (the
    interpreter, numpy, faiss: about 100 MB, and the codes of the case)."""
    Path("/proc/self/clear_refs").write_text("5")
    seconds, out = timed(fn)
    return seconds, _rss_mb("VmHWM"), out


def build(codes: CodesFile, kind: str, folder: Path) -> dict[str, Any]:
    """Build, save and reload an index; its build seconds and bytes per code."""
    seconds, memory, served = peak(lambda: build_index(codes, kind))
    path = folder / f"{kind}.safetensors"
    blob = save_index(path, served)
    n = len(codes)
    return {
        "served": load_index(path),
        "build_s": round(seconds, 3),
        "build_peak_mb": round(memory, 1),
        "faiss_bytes_per_code": round(blob / n, 2),
        "file_bytes_per_code": round(path.stat().st_size / n, 2),
    }


def recall(answer: Any, exact: Any) -> tuple[float, float]:
    """(ids in common with flat / k, answers within flat's k-th distance / k), averaged over queries."""
    common = [np.intersect1d(a[a >= 0], b).size for a, b in zip(answer.ids, exact.ids, strict=True)]
    within = (answer.distances >= 0) & (answer.distances <= exact.distances[:, -1:])
    return float(np.mean(common) / K), float(within.mean())


def one_case(kind: str, n: int, rng: np.random.Generator, folder: Path) -> dict[str, Any]:
    centres = rng.integers(0, 2, (100, BITS), dtype=np.uint8)
    database = make_codes(kind, n, rng, centres)
    queries = unpack_codes(make_codes(kind, QUERIES, rng, centres), BITS)
    codes = CodesFile(database, np.arange(n, dtype=np.int64), np.full(n, -1, np.int64), BITS)
    flat, ivf = build(codes, "flat", folder), build(codes, "ivf", folder)
    search_index(flat["served"], queries[:10], K)  # warm-up (and the HammingIndex copy is made)
    flat["search_s"], flat["search_peak_mb"], exact = peak(lambda: search_index(flat["served"], queries, K))
    flat["raw_faiss_search_s"], _ = timed(lambda: flat["served"].index.search(np.packbits(queries > 0, 1), K))
    nlist = ivf["served"].meta["nlist"]
    ivf.update(nlist=nlist, default_nprobe=ivf["served"].meta["nprobe"], probes={})
    for nprobe in sorted({max(1, nlist // 32), max(1, nlist // 8), max(1, nlist // 2)}):
        seconds, memory, answer = peak(lambda p=nprobe: search_index(ivf["served"], queries, K, nprobe=p))
        ids_recall, tie_recall = recall(answer, exact)
        ivf["probes"][nprobe] = {
            "search_s": round(seconds, 3),
            "search_peak_mb": round(memory, 1),
            "recall_at_100": round(ids_recall, 4),
            "tie_aware_recall_at_100": round(tie_recall, 4),
        }
    for part in (flat, ivf):
        del part["served"]
    flat["search_s"], flat["raw_faiss_search_s"] = (
        round(flat["search_s"], 3),
        round(flat["raw_faiss_search_s"], 3),
    )
    flat["search_peak_mb"] = round(flat["search_peak_mb"], 1)
    flat["codes_mb"] = round(database.nbytes / 2**20, 1)
    return {"flat": flat, "ivf": ivf}


def report(kind: str, n: int, case: dict[str, Any]) -> None:
    flat, ivf = case["flat"], case["ivf"]
    print(
        f"{kind} codes, {n:,} x 64 bits ({flat['codes_mb']:.0f} MB packed): flat build "
        f"{flat['build_s']:.2f} s (peak RSS {flat['build_peak_mb']:.0f} MB), "
        f"{flat['faiss_bytes_per_code']:.2f} B/code ({flat['file_bytes_per_code']:.2f} in the file), "
        f"search {flat['search_s']:.3f} s (peak RSS {flat['search_peak_mb']:.0f} MB; "
        f"raw faiss heap {flat['raw_faiss_search_s']:.3f} s)"
    )
    print(
        f"  ivf nlist {ivf['nlist']}: build {ivf['build_s']:.2f} s (peak RSS {ivf['build_peak_mb']:.0f} MB), "
        f"{ivf['faiss_bytes_per_code']:.2f} B/code "
        f"({ivf['file_bytes_per_code']:.2f} in the file)"
    )
    for nprobe, row in ivf["probes"].items():
        mark = " (default)" if nprobe == ivf["default_nprobe"] else ""
        print(
            f"    nprobe {nprobe}{mark}: search {row['search_s']:.3f} s "
            f"(peak RSS {row['search_peak_mb']:.0f} MB), "
            f"recall@100 {row['recall_at_100']:.3f} (tie-aware {row['tie_aware_recall_at_100']:.3f})"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000, help="the large database (default 1,000,000)")
    parser.add_argument("--threads", type=int, default=1, help="faiss OpenMP threads (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    import faiss

    faiss.omp_set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    record: dict[str, Any] = {"threads": args.threads, "load_average_1min": round(os.getloadavg()[0], 2)}
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for n in (59_000, args.size):
            for kind in ("random", "clustered"):
                case = one_case(kind, n, rng, Path(tmp))
                report(kind, n, case)
                record[f"{kind}_{n}"] = case
    record["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(record))


if __name__ == "__main__":
    main()
