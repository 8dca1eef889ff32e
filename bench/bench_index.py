"""Speed of `HammingIndex.search`: faiss backend vs numpy backend, on the same codes as bench_map.py.

1,000 queries x 59,000 database codes, 64 and 32 bits, k in {10, 100, 1,000}. Both backends must return
identical (distance, index) arrays; the bench stops otherwise. Timings: median wall-clock of 5 runs
after a warm-up, 2 threads. `add` (packing the database) is timed once per backend and excluded.

Run: .venv/bin/python bench/bench_index.py   (about a minute; the last line is JSON)
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_map import Timing, make_codes  # noqa: E402

from hashcondense.retrieval import HammingIndex  # noqa: E402

KS = (10, 100, 1_000)


def main() -> None:
    torch.set_num_threads(2)
    record: dict[str, object] = {"load_average_1min": round(os.getloadavg()[0], 2), "threads": 2}
    for bits in (64, 32):
        q, _, d, _ = make_codes(bits)
        indexes = {}
        for backend in ("faiss", "numpy"):
            t0 = time.perf_counter()
            indexes[backend] = HammingIndex(bits, backend=backend)
            indexes[backend].add(d)
            record[f"bits{bits}_{backend}_add_s"] = round(time.perf_counter() - t0, 4)
        for k in KS:
            times = {}
            answers = {}
            for backend, index in indexes.items():
                timing = Timing(lambda index=index, k=k, q=q: index.search(q, k), 5)
                times[backend] = timing.wall
                answers[backend] = timing.result
            fd, fi = answers["faiss"]  # type: ignore[misc]
            nd, ni = answers["numpy"]  # type: ignore[misc]
            if not (np.array_equal(fd, nd) and np.array_equal(fi, ni)):
                raise SystemExit(f"backends disagree at {bits} bits, k={k}")
            ratio = times["numpy"] / times["faiss"]
            print(
                f"{bits} bits, k={k}: faiss {times['faiss'] * 1e3:.0f} ms, "
                f"numpy {times['numpy'] * 1e3:.0f} ms (numpy / faiss = {ratio:.2f})"
            )
            record[f"bits{bits}_k{k}"] = {
                "faiss_s": round(times["faiss"], 4),
                "numpy_s": round(times["numpy"], 4),
                "numpy_over_faiss": round(ratio, 2),
            }
    print(json.dumps(record))


if __name__ == "__main__":
    main()
