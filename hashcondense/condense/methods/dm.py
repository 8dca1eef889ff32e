"""DM: Dataset Condensation with Distribution Matching (Zhao & Bilen, WACV 2023).

Each iteration draws a fresh randomly initialised network (frozen) and matches the mean embedding of
a real batch and of the synthetic images of every class (`embedding_matching.EmbeddingMatching`); the class
losses are summed and the images take one SGD step. Settings of DM's code (VICO-UoE/
DatasetCondensation `main_DM.py`): lr_img 1.0 on normalised images, momentum 0.5, batch_real 256,
20,000 iterations, real-image initialisation, DSA strategy color_crop_cutout_flip_scale_rotate with
one random group per call ("single" mode), no multi-formation. Here an iteration is an outer loop with
M = 1 inner step, and the network of outer loop r is initialised from (seed, NETWORK, r).
Preset "cpu" (`--preset cpu`): 1,000 iterations instead of 20,000.
"""

from __future__ import annotations

from typing import Any

from hashcondense.condense.config import DatasetInfo
from hashcondense.condense.context import Streams
from hashcondense.condense.embedding_matching import EmbeddingMatching
from hashcondense.condense.method import register_method

__all__ = ["DistributionMatching"]


@register_method("dm")
class DistributionMatching(EmbeddingMatching):
    presets = {"cpu": {"outer_loops": 1000, "checkpoint_every": 50}}

    @classmethod
    def default_settings(cls, info: DatasetInfo) -> dict[str, Any]:
        return {
            "factor": 1,
            "outer_loops": 20000,
            "inner_loops": 1,
            "lr_img": 1.0,
            "momentum": 0.5,
            "batch_real": 256,
            "lr_space": "normalized",
            "lr_scale_ipc": False,
            "clamp": False,
            "aug_strategy": "color_crop_cutout_flip_scale_rotate",
            "aug_mode": "single",
            "checkpoint_every": 200,
        }

    @classmethod
    def unread_settings(cls, resolved: dict[str, Any]) -> set[str]:
        # matches backbone embeddings of random networks: no hash head, no hashing loss
        return {"hashing", "bits"}

    def begin_outer(self, outer: int) -> None:
        self.net = self.context.new_network(Streams.NETWORK, outer)
