"""Dataset registry: each loader registers itself in its own module with `@register_dataset`.

A loader takes (arg, root, download, seed, size): `arg` is the PATH of a `name:PATH` spec (None for the
others), the rest are `load_dataset`'s arguments, already normalised.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

from hashcondense.data.base import RetrievalDataset
from hashcondense.registries import DATASETS

__all__ = ["DATASETS", "DatasetEntry", "Loader", "dataset_entry", "register_dataset"]

Loader = Callable[[str | None, str | None, bool, int, int | None], RetrievalDataset]


@dataclass(frozen=True)
class DatasetEntry:
    """A registered loader with what `list_datasets` / `describe_datasets` say about it."""

    load: Loader
    takes_path: bool
    description: str

    def __call__(
        self, arg: str | None, root: str | None, download: bool, seed: int, size: int | None
    ) -> RetrievalDataset:
        return self.load(arg, root, download, seed, size)

    def spec(self, name: str) -> str:
        """How the dataset is named on the command line: `name`, or `name:PATH` when it takes a path."""
        return f"{name}:PATH" if self.takes_path else name


def register_dataset(name: str, description: str, takes_path: bool = False) -> Callable[[Loader], Loader]:
    """Function decorator: record `loader` as dataset `name` (spec `name:PATH` when `takes_path`)."""

    def decorator(loader: Loader) -> Loader:
        DATASETS.register(name)(DatasetEntry(loader, takes_path, description))
        return loader

    return decorator


def dataset_entry(name: str) -> DatasetEntry:
    """The entry registered under `name` (unknown names raise the registry's error)."""
    return cast(DatasetEntry, DATASETS.get(name))
