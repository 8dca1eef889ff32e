"""How fast the command line answers a user mistake, from a cold start (a new Python process each time).

Target (issue 25): under 1 s, one line on stderr, exit status 2, no --out folder created. For scale it
also times a cold `import torch`, which every mistake used to wait for.

    PYTHONPATH=. .venv/bin/python bench/bench_cli_errors.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

IEM = ["--method", "iem", "--ipc", "1"]
CASES = {
    "unknown method (--method iemm)": ["condense", "--dataset", "digits", "--method", "iemm", "--ipc", "1"],
    "unknown dataset (--dataset digitz)": ["condense", "--dataset", "digitz", *IEM],
    "unknown preset (--preset gpu)": ["condense", "--dataset", "digits", *IEM, "--preset", "gpu"],
    "missing CIFAR-10 root": ["condense", "--dataset", "cifar10", "--root", "/no/such/root", *IEM],
    "--threads -1": ["condense", "--dataset", "digits", *IEM, "--threads", "-1"],
    "train: unknown network": ["train", "--dataset", "digits", "--arch", "vgg"],
    "train: missing --train-set file": ["train", "--dataset", "digits", "--train-set", "no/such.safetensors"],
}  # fmt: skip


def _time(argv: list[str], runs: int, env: dict[str, str]) -> tuple[list[float], str, bool]:
    seconds, last_err, clean = [], "", True
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "run"
            start = time.perf_counter()
            done = subprocess.run(argv + ["--out", str(out)], capture_output=True, text=True, env=env)
            seconds.append(time.perf_counter() - start)
            last_err = done.stderr.strip()
            clean &= done.returncode == 2 and len(last_err.splitlines()) == 1 and not out.exists()
    return seconds, last_err, clean


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    a = p.parse_args()
    env = {**os.environ, "HASHCONDENSE_PROGRESS": "0"}
    print(f"load average at start: {os.getloadavg()[0]:.2f}; median of {a.runs} cold starts each")
    torch_runs = []
    for _ in range(a.runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import torch"], check=True, env=env)
        torch_runs.append(time.perf_counter() - start)
    scale = "python -c 'import torch' (for scale)"
    print(f"{scale:<40} {statistics.median(torch_runs):6.2f} s")
    for name, argv in CASES.items():
        seconds, err, clean = _time([sys.executable, "-m", "hashcondense", *argv], a.runs, env)
        verdict = "one line, exit 2, nothing written" if clean else f"NOT CLEAN: {err[:80]}"
        print(f"{name:<40} {statistics.median(seconds):6.2f} s (max {max(seconds):.2f})  {verdict}")
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
