"""Where served images come from: a dataset split or a folder of image files, read as the run saw them.

A network only ranks well on inputs shaped and normalised like its training images, so every image is
read at the run's resolution and number of channels (from its config.json) and normalised with the
run's dataset statistics, never with statistics of the new images. Nothing here imports torch at load
time: the CLI checks a split's name before torch loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hashcondense.data.base import SPLITS
from hashcondense.errors import HashCondenseError

__all__ = ["RunInput", "check_split", "folder_files", "read_files", "read_split", "source_images"]


def check_split(split: str) -> str:
    """`split` if it names a retrieval split, else a one-line error listing them."""
    if split not in SPLITS:
        raise HashCondenseError(f"unknown split '{split}'; choose one of: {', '.join(sorted(SPLITS))}")
    return split


@dataclass(frozen=True)
class RunInput:
    """What a run's network takes: its dataset (spec, root, split seed), image size, channels and the
    normalisation statistics of that dataset."""

    dataset: str
    root: str | None
    split_seed: int
    image_size: int
    in_channels: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> RunInput:
        """From a run's config.json record (as `load_run_network` returns it)."""
        config, data = record["config"], record["dataset"]
        return cls(
            dataset=str(config["dataset"]),
            root=config.get("root"),
            split_seed=int(config.get("split_seed", 0)),
            image_size=int(data["image_size"]),
            in_channels=int(data["in_channels"]),
            mean=tuple(float(v) for v in data["mean"]),
            std=tuple(float(v) for v in data["std"]),
        )

    @property
    def mode(self) -> str:
        """Pillow mode that gives the network's channels."""
        return "L" if self.in_channels == 1 else "RGB"

    def describe(self) -> dict[str, Any]:
        return {
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "mean": list(self.mean),
            "std": list(self.std),
        }

    def normalize(self, images: np.ndarray) -> Any:
        """uint8 (N, H, W, C) -> float32 (N, C, H, W) with the run's mean and std."""
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std).contiguous()


def folder_files(folder: str | os.PathLike[str]) -> list[str]:
    """Image files under `folder` (recursively, hidden ones skipped) as sorted POSIX relative paths:
    the order that gives a folder's images their ids."""
    from hashcondense.data.arrays import IMG_EXTENSIONS

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise HashCondenseError(f"image folder {root} does not exist; pass a folder of image files")
    names = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMG_EXTENSIONS):
                names.append((Path(dirpath) / f).relative_to(root).as_posix())
    if not names:
        raise HashCondenseError(
            f"image folder {root} holds no image files ({', '.join(IMG_EXTENSIONS)}); add images to it"
        )
    return sorted(names)


def read_files(paths: list[Path], run: RunInput) -> np.ndarray:
    """uint8 (N, size, size, C) images as the run's network takes them (shorter side resized, center
    crop); an unreadable file is a one-line error naming it."""
    from hashcondense.data.arrays import read_images

    for p in paths:
        if not p.is_file():
            raise HashCondenseError(f"image {p} does not exist; check the path")
    return read_images(paths, run.image_size, run.mode)


def read_split(
    run: RunInput, dataset: str | None, root: str | None, split: str
) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """(uint8 images, labels, source record) of a dataset split (default: the run's dataset and root),
    drawn with the run's split seed at the run's image size."""
    from hashcondense.data import load_dataset

    check_split(split)
    spec = dataset or run.dataset
    root = root if root is not None else (run.root if spec == run.dataset else None)
    data = load_dataset(spec, root=root, split_seed=run.split_seed, image_size=run.image_size)
    if data.in_channels != run.in_channels:
        raise HashCondenseError(
            f"dataset {spec} has {data.in_channels}-channel images but the run's network takes "
            f"{run.in_channels}; encode a dataset like the one it was trained on"
        )
    idx = data.indices(split)
    source = {"kind": "dataset", "dataset": spec, "root": root, "split": split, "split_seed": run.split_seed}
    return data.images[idx], data.labels[idx].astype(np.int64), source


def source_images(source: dict[str, Any], run: RunInput, ids: np.ndarray) -> np.ndarray:
    """The images of `ids` in a codes file's source (a dataset split or a folder), for pictures."""
    if source.get("kind") == "folder":
        files = source["files"]
        return read_files([Path(source["folder"]) / files[int(i)] for i in ids], run)
    images, _, _ = read_split(run, source["dataset"], source.get("root"), source["split"])
    return images[np.asarray(ids, dtype=np.int64)]
