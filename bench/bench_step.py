"""Cost of one distillation step (one inner loop over all classes) and peak memory of IEM, DM, DSA, IDC.

Each (method, images per class) runs in its own Python process so that peak memory is its own: the
process loads CIFAR-10 (DESIGN protocol), resets the kernel's peak-RSS counter (/proc/self/clear_refs),
runs `--steps` + 1 steps through the public `condense` API (outer loop 0, so IEM uses one pool member,
IDC/DSA one network), and reads each step's wall time from the run's history. The first step is a
warm-up and left out; the figure is the median of the rest. Peak memory = peak RSS during the run minus
the RSS before it (the loaded dataset is not counted).

Settings are each method's defaults (IEM: batch_real 64, factor 2, at most 128 decoded images per
class; DM: batch_real 256, no multi-formation; DSA: batch_real 256; IDC: batch_real 64, factor 2, with
its network update on real data after each step), ConvNet-3, DHD, 64 bits. IEM's pool must exist in
--pool-dir (it is trained on the first call otherwise; that time is not counted).

Run: .venv/bin/python bench/bench_step.py --root ../shared/data/cifar10 \
        [--methods iem,dm,dsa,idc] [--ipc 1,10,50] [--steps 3]
The last line is JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _rss_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def measure_one(method: str, ipc: int, steps: int, root: str, pool_dir: str, threads: int) -> dict:
    """Runs in a child process: one (method, ipc) measurement."""
    import gc

    import torch

    from hashcondense.condense import CondenseConfig, condense
    from hashcondense.data import load_dataset
    from hashcondense.runtime import tune_allocator

    tune_allocator()  # as the CLI does
    torch.set_num_threads(threads)
    ds = load_dataset("cifar10", root=root)
    options = {"pool_dir": pool_dir} if method == "iem" else {}
    loops = {"outer_loops": 1, "inner_loops": steps + 1}
    if method == "dm":  # DM's iteration is an outer loop of one step, each with a fresh network
        loops = {"outer_loops": steps + 1, "inner_loops": 1}
    with tempfile.TemporaryDirectory() as tmp:
        config = CondenseConfig(
            dataset="cifar10",
            root=root,
            method=method,
            ipc=ipc,
            options=options,
            out=tmp,
            show_progress=False,
            export_images=False,
            **loops,
        )
        if method == "iem":  # train or load the pool outside the measured window
            from hashcondense.condense.engine import CondenseEngine

            probe = CondenseEngine(CondenseConfig(**{**config.as_dict(), "out": tmp + "/pool-probe"}), ds)
            probe.setup()
            probe.method.prepare()
            del probe
        gc.collect()
        before = _rss_kib("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")  # reset VmHWM to the current RSS
        start = time.perf_counter()
        condense(config, dataset=ds)
        wall = time.perf_counter() - start
        peak = _rss_kib("VmHWM")
        history = json.loads((Path(tmp) / "history.json").read_text())["steps"]
    seconds = [h["seconds"] for h in history]
    per_step = [b - a for a, b in zip(seconds, seconds[1:], strict=False)]
    return {
        "method": method,
        "ipc": ipc,
        "step_seconds_median": statistics.median(per_step),
        "step_seconds": [round(s, 3) for s in per_step],
        "first_step_seconds": seconds[0],
        "peak_extra_mib": round((peak - before) / 1024, 1),
        "wall_seconds": round(wall, 2),
        "threads": threads,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default=str(HERE.parent.parent / "shared" / "data" / "cifar10"))
    p.add_argument("--methods", default="iem,dm,dsa,idc")
    p.add_argument("--ipc", default="1,10,50")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--pool-dir", default=str(HERE / "out" / ".pool_cache"))
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = p.parse_args()
    if a.child:
        method, ipc = a.child.split(":")
        print(json.dumps(measure_one(method, int(ipc), a.steps, a.root, a.pool_dir, a.threads)))
        return
    rows = []
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    for ipc in [int(x) for x in a.ipc.split(",")]:
        for method in a.methods.split(","):
            cmd = [
                sys.executable,
                __file__,
                "--child",
                f"{method}:{ipc}",
                "--root",
                a.root,
                "--steps",
                str(a.steps),
                "--threads",
                str(a.threads),
                "--pool-dir",
                a.pool_dir,
            ]
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                sys.exit(f"{method} ipc {ipc} failed:\n{done.stderr[-2000:]}")
            out = done.stdout
            row = json.loads(out.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method:>4} ipc {ipc:>2}: step {row['step_seconds_median']:.3f} s (median of "
                f"{len(row['step_seconds'])}), peak +{row['peak_extra_mib']:.0f} MiB",
                flush=True,
            )
    by = {(r["method"], r["ipc"]): r["step_seconds_median"] for r in rows}
    ratios = {
        f"{m}/iem@{ipc}": round(by[(m, ipc)] / by[("iem", ipc)], 2)
        for (m, ipc) in by
        if m != "iem" and ("iem", ipc) in by
    }
    for k, v in ratios.items():
        print(f"ratio {k}: {v}x")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")
    print(json.dumps({"rows": rows, "ratios": ratios}))


if __name__ == "__main__":
    main()
