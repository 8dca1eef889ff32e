"""Retrieval datasets (DESIGN Section 2): `load_dataset(spec)` -> RetrievalDataset.

Specs: `digits` (scikit-learn's bundled digits, no download), `cifar10` (npz / official binary or
Python release, `download=True` fetches the binary release), `imagenet10` / `imagenet20` (a user's
ImageNet folder), `npz:PATH` and `folder:PATH` (bring your own data). Each loader registers itself
in its own module with `@register_dataset` (data/registry.py).

Without `root`, cifar10 lives in `$HASHCONDENSE_DATA/cifar10` (default `~/.cache/hashcondense/cifar10`).
"""

from __future__ import annotations

import os

from hashcondense.data.arrays import load_folder, load_npz
from hashcondense.data.base import SPLITS, RetrievalDataset
from hashcondense.data.cifar10 import CIFAR10, load_cifar10
from hashcondense.data.digits import load_digits
from hashcondense.data.download import (
    check_integrity,
    default_root,
    download_and_extract_archive,
    download_url,
    extract_archive,
)
from hashcondense.data.imagenet import IMAGENET10_CLASSES, IMAGENET20_CLASSES, load_imagenet_subset
from hashcondense.data.registry import DATASETS, dataset_entry
from hashcondense.data.splits import per_class_split, sample_per_class
from hashcondense.errors import HashCondenseError

__all__ = [
    "CIFAR10",
    "IMAGENET10_CLASSES",
    "IMAGENET20_CLASSES",
    "SPLITS",
    "RetrievalDataset",
    "check_integrity",
    "default_root",
    "describe_datasets",
    "download_and_extract_archive",
    "download_url",
    "extract_archive",
    "list_datasets",
    "load_cifar10",
    "load_dataset",
    "load_digits",
    "load_folder",
    "load_imagenet_subset",
    "load_npz",
    "per_class_split",
    "sample_per_class",
]


def list_datasets() -> list[str]:
    """Valid dataset specs, sorted (`npz:PATH` and `folder:PATH` take a path)."""
    return sorted(dataset_entry(name).spec(name) for name in DATASETS.names())


def describe_datasets() -> dict[str, str]:
    """Spec -> one-line description, in name order."""
    return {dataset_entry(n).spec(n): dataset_entry(n).description for n in DATASETS.names()}


def load_dataset(
    spec: str,
    root: str | os.PathLike[str] | None = None,
    download: bool = False,
    split_seed: int = 0,
    image_size: int | None = None,
) -> RetrievalDataset:
    """Load a dataset by spec (see `list_datasets()`) with its seeded retrieval split.

    `root` is the data folder (cifar10, imagenet10/20); `download` only applies to cifar10;
    `image_size` overrides the stored resolution (digits 32, cifar10 32, ImageNet 64, folder 32).
    """
    text = str(spec).strip()
    name, sep, arg = text.partition(":")
    key = name.lower()
    entry = dataset_entry(key) if key in DATASETS else None
    if entry is None or (sep and not entry.takes_path):
        raise HashCondenseError(f"unknown dataset '{spec}'; choose one of: {', '.join(list_datasets())}")
    if entry.takes_path and not arg.strip():
        raise HashCondenseError(f"dataset '{spec}' needs a path: use {key}:PATH")
    if image_size is not None and int(image_size) < 1:
        raise HashCondenseError(f"image size must be a positive number of pixels, got {image_size}")
    return entry(
        arg.strip() or None,
        None if root is None else os.fspath(root),
        bool(download),
        int(split_seed),
        None if image_size is None else int(image_size),
    )
