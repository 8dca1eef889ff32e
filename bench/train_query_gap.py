"""How much a finished evaluation run overfits: retrieval with its training images vs its queries.

For a `hashcondense train` run directory, encodes the database with the run's network and measures
mAP@K with the query split as queries (the run's own figure) and with the train split as queries
(the images a whole-split run trained on; they are also in the database, so each finds itself at
distance 0, which adds at most 1/K to its AP). For DHD, also the fraction of images whose code is
closest (cosine) to its own class proxy, i.e. the network's classification accuracy. A large
train/query gap means the recipe memorises the training images: regularisation, not more steps.

Run: .venv/bin/python bench/train_query_gap.py RUN_DIR [--root DATA] [--threads N]   (last line JSON)
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import torch
import torch.nn.functional as F

from hashcondense.data import load_dataset
from hashcondense.evaluate import load_run_network
from hashcondense.retrieval import mean_average_precision
from hashcondense.runtime import tune_allocator


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--root", default=None, help="dataset root (default: the run's own)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    net, method, record = load_run_network(args.run_dir)
    config = record["config"]
    root = args.root or config["root"]
    dataset = load_dataset(config["dataset"], root=root, split_seed=config["split_seed"])
    topk = config["topk"] or dataset.topk or len(dataset.database)  # None: the whole database

    def outputs(split: str) -> tuple[torch.Tensor, np.ndarray]:
        """The head's real-valued outputs (before the sign) for a split's images, and their labels."""
        idx = dataset.indices(split)
        with torch.inference_mode():
            h = torch.cat(
                [net(dataset.normalize(dataset.images[idx[a : a + 1000]])) for a in range(0, len(idx), 1000)]
            )
        return h, dataset.labels[idx]

    def signs(h: torch.Tensor) -> np.ndarray:
        return torch.where(h >= 0, 1, -1).to(torch.int8).numpy()

    database, database_labels = outputs("database")
    database = signs(database)
    result: dict[str, float | str] = {"run": args.run_dir}
    for split in ("query", "train"):
        h, labels = outputs(split)
        result[f"map_{split}"] = mean_average_precision(signs(h), labels, database, database_labels, topk)
        if hasattr(method, "proxies"):
            cosine = F.normalize(h, dim=1) @ F.normalize(method.proxies.detach(), dim=1).t()
            result[f"proxy_accuracy_{split}"] = float((cosine.argmax(1).numpy() == labels).mean())
    for key, value in result.items():
        print(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
