"""One process of the 2-process runs of tests/test_distributed_train.py, started by torchrun:

    python -m torch.distributed.run --nnodes 1 --nproc-per-node 2 --rdzv-backend c10d \
        --rdzv-endpoint 127.0.0.1:0 tests/distributed_train_worker.py OUT

Trains and evaluates digits (16 px, ConvNet-3 of width 8) data-parallel into OUT/<run> for the runs of
RUNS, encodes the query and database with OUT/dhd's network in shards of ENCODE_CHUNK images
(OUT/codes.safetensors), and tries two mistakes found after the process group started; rank 0 writes
what every rank saw to OUT/summary.json. One torchrun start for all of them: starting processes is
most of the cost.
"""

import json
import sys
from pathlib import Path

import torch

from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import EvalConfig, TrainConfig, run_evaluation
from hashcondense.utils import distributed

# the single-process runs of the test use the same settings
SETTINGS = dict(
    dataset="digits", image_size=16, train_set="random:20", hashing="dhd", arch_kwargs={"width": 8},
    bits=16, seed=3, show_progress=False,
)  # fmt: skip
RUNS = {
    # Adam, two views, a per-epoch evaluation at epoch 2 (encoded in shards mid-training too)
    "dhd": {"train": {"epochs": 4, "batch_size": 64, "eval_epochs": [2]}},
    # SGD, and a last batch of 1 image (rank 1's share is empty: it runs one row at weight 0)
    "sgd": {"train": {"epochs": 3, "batch_size": 199, "optimizer": "sgd", "lr": 0.01}},
}
ENCODE_CHUNK = 200  # 300 query / 1,497 database images: 2 / 8 chunks, shared 1+1 / 4+4


def config(out: Path, run: str, **overrides) -> EvalConfig:
    settings = {**SETTINGS, **RUNS[run], **overrides}
    train = TrainConfig(**settings.pop("train"))
    return EvalConfig(out=str(out / run), train=train, **settings)


def main(out: Path) -> None:
    torch.set_num_threads(1)
    seen: dict[str, object] = {}
    for run in RUNS:
        seen[run] = run_evaluation(config(out, run))["map"]
    from hashcondense.data import load_dataset
    from hashcondense.evaluate import load_run_network
    from hashcondense.train import encode_in_shards

    dataset = load_dataset("digits", image_size=16)
    net, _, _ = load_run_network(out / "dhd")
    codes = {}
    for split in ("query", "database"):
        idx = dataset.indices(split)
        codes[split] = encode_in_shards(
            net,
            lambda a, b, idx=idx: dataset.normalize(dataset.images[idx[a:b]]),
            len(idx),
            batch_size=ENCODE_CHUNK,
        )
    if distributed.is_main():
        from safetensors.torch import save_file

        save_file(codes, str(out / "codes.safetensors"))
    mistakes = {
        "train_set": dict(train_set="random:500"),  # more than a class holds: found while loading the data
        "unfinished": {},  # OUT/dhd, made unfinished below (a checkpoint without --resume)
    }
    for name, overrides in mistakes.items():
        if name == "unfinished" and distributed.is_main():
            (out / "dhd" / "checkpoint.safetensors").write_bytes(b"left by an interrupted run")
        distributed.barrier()
        try:
            run_evaluation(config(out, "dhd", **overrides))
            seen[name] = "ran"
        except HashCondenseError as exc:
            seen[name] = [str(exc), distributed.is_replicated(exc)]
    everyone = distributed.all_gather_objects(seen, "collecting the test's results")
    if distributed.is_main():
        (out / "dhd" / "checkpoint.safetensors").unlink()
        summary = {"world_size": distributed.world_size(), "ranks": everyone}
        (out / "summary.json").write_text(json.dumps(summary))
    distributed.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
