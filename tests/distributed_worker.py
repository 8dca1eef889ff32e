"""One process of the 2-process runs of tests/test_distributed.py, started by torchrun:

    python -m torch.distributed.run --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d \
        --rdzv-endpoint 127.0.0.1:0 tests/distributed_worker.py OUT

Condenses digits (16 px, ConvNet-3 of width 8) with random, dm and iem into OUT/<method>, with dsa and
idc (their networks trained data-parallel) into OUT/<method>, an idc run stopped by a time budget after
its first step and resumed into OUT/idc_resumed, and a dm run under a time budget; rank 0 writes what
every rank saw to OUT/summary.json. One torchrun start for all of them: starting processes is most of
the cost.
"""

import json
import sys
from pathlib import Path

import torch

from hashcondense.condense import CondenseConfig, condense
from hashcondense.utils import distributed

# the single-process runs of the test use the same settings
SETTINGS = dict(
    dataset="digits", image_size=16, ipc=2, bits=16, arch_kwargs={"width": 8}, batch_real=16, seed=3,
    show_progress=False, export_images=False,
)  # fmt: skip
LOOPS = {
    "random": {},
    "dm": {"outer_loops": 4},
    "iem": {"outer_loops": 3, "inner_loops": 2},
}
POOL = {"pool_size": 3, "pool_epochs": 1, "pool_batch": 64}
# gradient matching: dsa trains its network on the (gathered) synthetic set, idc on real data with CutMix
GRADIENT = {
    "dsa": {"outer_loops": 2, "inner_loops": 3, "options": {"net_images": 40}},
    "idc": {"outer_loops": 2, "inner_loops": 3, "options": {"net_images": 64}},
}


def config(out: Path, method: str, **kw) -> CondenseConfig:
    if method in GRADIENT:
        folder = kw.pop("folder", method)
        return CondenseConfig(method=method, out=str(out / folder), **SETTINGS, **GRADIENT[method], **kw)
    options = {**POOL, "pool_dir": str(out / "pool")} if method == "iem" else {}
    return CondenseConfig(
        method=method, out=str(out / method), options=options, **SETTINGS, **LOOPS[method], **kw
    )


def main(out: Path) -> None:
    torch.set_num_threads(1)
    seen: dict[str, object] = {}
    for method in [*LOOPS, *GRADIENT]:
        condense(config(out, method))
    first = condense(config(out, "idc", folder="idc_resumed", time_budget=1e-6))
    seen["idc_first"] = [first.stopped, first.steps_done]  # stopped mid outer loop: the network is saved
    condense(config(out, "idc", folder="idc_resumed", resume=True))
    budget = CondenseConfig(
        method="dm", out=str(out / "budget"), outer_loops=100000, time_budget=1.0, checkpoint_every=50,
        **{k: v for k, v in SETTINGS.items()},
    )  # fmt: skip
    result = condense(budget)
    seen["budget"] = [result.stopped, result.steps_done]
    everyone = distributed.all_gather_objects(seen, "collecting the test's results")
    if distributed.is_main():
        (out / "summary.json").write_text(
            json.dumps({"world_size": distributed.world_size(), "ranks": everyone})
        )
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
