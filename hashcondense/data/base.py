"""The retrieval-dataset contract (DESIGN Section 2).

Every loader returns a `RetrievalDataset`: one pool of uint8 HWC images with int64 labels, and three
index arrays into that pool, `database`, `train` and `query`, drawn with a seeded generator and
stored with every result so that splits reproduce. Images stay uint8 in memory; `tensor()` converts a
split to normalised float (B, C, H, W) on demand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch loads when a split becomes tensors: finding and loading data needs numpy only
    import torch

__all__ = ["RetrievalDataset", "SPLITS"]

SPLITS = ("database", "train", "query")


@dataclass
class RetrievalDataset:
    name: str
    images: np.ndarray  # uint8 (N, H, W, C)
    labels: np.ndarray  # int64 (N,)
    class_names: list[str]
    database: np.ndarray  # int64 indices into images
    train: np.ndarray
    query: np.ndarray
    mean: tuple[float, ...]  # per-channel, on the [0, 1] scale
    std: tuple[float, ...]
    topk: int  # the protocol's K of mAP@K (-1 = the whole database)
    split_seed: int
    info: dict = field(default_factory=dict)  # provenance: source path, checksum, protocol notes

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def image_size(self) -> int:
        return int(self.images.shape[1])

    @property
    def in_channels(self) -> int:
        return int(self.images.shape[3])

    def indices(self, split: str) -> np.ndarray:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid: {SPLITS}")
        return getattr(self, split)

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        idx = self.indices(split)
        return self.images[idx], self.labels[idx]

    def class_counts(self, split: str) -> list[int]:
        """Images of each class in a split."""
        return np.bincount(self.labels[self.indices(split)], minlength=self.num_classes).tolist()

    def tensor(self, split: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised float32 images (B, C, H, W) and int64 labels of a split."""
        import torch

        images, labels = self.arrays(split)
        return self.normalize(images), torch.from_numpy(np.ascontiguousarray(labels)).long()

    def normalize(self, images_uint8: np.ndarray) -> torch.Tensor:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(images_uint8)).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean).view(1, -1, 1, 1)
        std = torch.tensor(self.std).view(1, -1, 1, 1)
        return x.sub_(mean).div_(std).contiguous()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised (B, C, H, W) -> [0, 1]."""
        import torch

        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x * std + mean).clamp(0, 1)

    def describe(self) -> dict:
        return {
            "name": self.name,
            "num_classes": self.num_classes,
            "class_names": list(self.class_names),
            "image_size": self.image_size,
            "in_channels": self.in_channels,
            "sizes": {s: int(len(self.indices(s))) for s in SPLITS},
            "topk": int(self.topk),
            "split_seed": int(self.split_seed),
            "mean": list(self.mean),
            "std": list(self.std),
            **({"info": self.info} if self.info else {}),
        }
