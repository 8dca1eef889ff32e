"""How strong IEM's early-stage model pool is: for each member of a pool folder, its last training loss
and, for DHD, its proxy accuracy (the fraction of images whose output is closest, by cosine, to its own
class proxy) on the train split it learned from and on the query split it never saw (chance 1/classes).

Run: .venv/bin/python bench/pool_members.py POOL_FOLDER [POOL_FOLDER ...] --root DATA [--threads N]
     (one line per member, then one JSON line per folder)
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from hashcondense.data import load_dataset
from hashcondense.hashing import create_hashing
from hashcondense.io.tensors import load_tensors
from hashcondense.runtime import tune_allocator
from hashcondense.train import build_network
from hashcondense.train.network import load_network_state


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", nargs="+")
    parser.add_argument("--root", required=True, help="the dataset's folder (the pool's own dataset)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    tune_allocator()
    torch.set_num_threads(args.threads)
    datasets: dict[tuple, Any] = {}  # one load per dataset, not one per member
    for folder in map(Path, args.folders):
        rows = []
        for path in sorted(folder.glob("member_*.safetensors")):
            tensors, meta = load_tensors(path, what="pool member")
            key = meta["key"]
            data_key = (key["dataset"], key["split_seed"], key.get("image_size"))
            if data_key not in datasets:
                name, split_seed, image_size = data_key
                datasets[data_key] = load_dataset(
                    name, root=args.root, split_seed=split_seed, image_size=image_size
                )
            dataset = datasets[data_key]
            method = create_hashing(key["hashing"], num_classes=dataset.num_classes, hash_bits=key["bits"])
            net = build_network(
                key["arch"], method, dataset.in_channels, dataset.image_size, **(key.get("arch_kwargs") or {})
            )
            load_network_state(net, method, tensors)
            net.eval()
            row = {"member": meta["member"], "epochs": key["epochs"], "loss": meta["history"][-1]["loss"]}
            for split in ("train", "query"):
                idx = dataset.indices(split)
                with torch.inference_mode():
                    h = torch.cat(
                        [
                            net(dataset.normalize(dataset.images[idx[a : a + 500]]))
                            for a in range(0, len(idx), 500)
                        ]
                    )
                if hasattr(method, "proxies"):
                    cosine = F.normalize(h, dim=1) @ F.normalize(method.proxies.detach(), dim=1).t()
                    correct = cosine.argmax(1).numpy() == dataset.labels[idx]
                    row[f"proxy_accuracy_{split}"] = float(correct.mean())
            print(json.dumps(row))
            rows.append(row)
        summary = {"folder": str(folder), "members": len(rows)}
        for name in ("loss", "proxy_accuracy_train", "proxy_accuracy_query"):
            values = [r[name] for r in rows if name in r]
            if values:
                summary[name] = round(statistics.mean(values), 4)
        print(json.dumps(summary))


if __name__ == "__main__":
    main()
