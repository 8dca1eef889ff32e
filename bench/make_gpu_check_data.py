"""Build the small CIFAR-10 file `bench/gpu_check.sh` carries to a GPU machine (under 60 MiB).

It holds the DHD protocol's train split of CIFAR-10 (5,000 images, the same split seed 0 as every run
here), plus 1,000 query and 1,000 database images so that it is a complete `npz:PATH` retrieval dataset
(`hashcondense.data.load_npz`, arrays images / labels / class_names / train_idx / query_idx /
database_idx). Sets condensed from it are evaluated back here on the real split.

    PYTHONPATH=. .venv/bin/python bench/make_gpu_check_data.py --root ../shared/data/cifar10 \\
        --out bench/out/gpu/cifar10_train.npz
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from hashcondense.data import load_dataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", default="../shared/data/cifar10")
    p.add_argument("--out", default="bench/out/gpu/cifar10_train.npz")
    a = p.parse_args()
    ds = load_dataset("cifar10", root=a.root)
    rng = np.random.default_rng(0)
    database = rng.choice(ds.database, size=1000, replace=False)
    parts = [ds.train, ds.query, np.sort(database)]
    images = np.concatenate([ds.images[i] for i in parts])
    labels = np.concatenate([ds.labels[i] for i in parts]).astype(np.int64)
    starts = np.cumsum([0] + [len(i) for i in parts])
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        images=images,
        labels=labels,
        class_names=np.asarray(ds.class_names),
        train_idx=np.arange(starts[0], starts[1]),
        query_idx=np.arange(starts[1], starts[2]),
        database_idx=np.arange(starts[2], starts[3]),
    )
    print(f"{out}: {len(images):,} images ({len(ds.train):,} train), {out.stat().st_size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
