"""The synthetic set: stored images, labels, and the multi-formation decode (IDC; DESIGN Section 5).

A stored image of size H is cut into factor x factor tiles of size ceil(H / factor) (padded right and
bottom with mid-grey when H is not a multiple), tiles taken in row-major order, each resized back to
H x H with bilinear interpolation; labels repeat factor**2 times. With factor 1 the decode is the
identity. Images are kept in the dataset's normalised space (what the networks see).

File format (`synthetic.safetensors`): tensors `images` (float32, N x C x H x W, stored, before decode,
normalised) and `labels` (int64, N); the JSON metadata (the "card") holds at least `format`, `factor`,
`mean`, `std`, `class_names`, `images_per_class`, `method`, `dataset`. See `SyntheticSet.card()`.
"""

from __future__ import annotations

import math
import os
from typing import Any

import torch
import torch.nn.functional as F

from hashcondense.errors import HashCondenseError
from hashcondense.io.tensors import load_tensors, save_tensors

__all__ = ["FORMAT", "SET_FILE", "SyntheticSet", "decode", "encode_tiles"]

SET_FILE = "synthetic.safetensors"  # the set's file name in a condensation run folder

FORMAT = "hashcondense.synthetic/1"


def _grey(mean: tuple[float, ...], std: tuple[float, ...], like: torch.Tensor) -> torch.Tensor:
    """Normalised value of 0.5 grey per channel, shaped (1, C, 1, 1)."""
    m = torch.tensor(mean, dtype=like.dtype, device=like.device)
    s = torch.tensor(std, dtype=like.dtype, device=like.device)
    return ((0.5 - m) / s).view(1, -1, 1, 1)


def decode(
    images: torch.Tensor,
    factor: int,
    mean: tuple[float, ...] = (0.5,),
    std: tuple[float, ...] = (0.5,),
) -> torch.Tensor:
    """Multi-formation decode: (N, C, H, W) -> (N * factor**2, C, H, W), differentiable.

    Output order: for each stored image, its tiles in row-major order (image-major).
    """
    if factor == 1:
        return images
    n, c, h, w = images.shape
    tile_h, tile_w = math.ceil(h / factor), math.ceil(w / factor)
    pad_h, pad_w = tile_h * factor - h, tile_w * factor - w
    if pad_h or pad_w:
        grey = _grey(mean, std, images) if len(mean) == c else images.new_full((1, c, 1, 1), 0.0)
        canvas = grey.expand(n, c, h + pad_h, w + pad_w).clone()
        canvas[:, :, :h, :w] = images
        images = canvas
    tiles = images.reshape(n, c, factor, tile_h, factor, tile_w).permute(0, 2, 4, 1, 3, 5)
    tiles = tiles.reshape(n * factor * factor, c, tile_h, tile_w)
    return F.interpolate(tiles, size=(h, w), mode="bilinear", align_corners=False)


def encode_tiles(images: torch.Tensor, factor: int) -> torch.Tensor:
    """Inverse layout for initialisation: every factor**2 consecutive images (N*f*f, C, H, W) are
    downscaled and tiled (row-major) into one stored image -> (N, C, H, W)."""
    if factor == 1:
        return images
    m, c, h, w = images.shape
    if m % (factor * factor):
        raise ValueError(f"{m} images cannot be tiled by factor {factor}")
    tile_h, tile_w = math.ceil(h / factor), math.ceil(w / factor)
    small = F.interpolate(images, size=(tile_h, tile_w), mode="bilinear", align_corners=False, antialias=True)
    n = m // (factor * factor)
    grid = small.reshape(n, factor, factor, c, tile_h, tile_w).permute(0, 3, 1, 4, 2, 5)
    grid = grid.reshape(n, c, factor * tile_h, factor * tile_w)
    return grid[:, :, :h, :w].contiguous()


class SyntheticSet:
    """Stored synthetic images + labels + multi-formation factor + a metadata card."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        factor: int = 1,
        mean: tuple[float, ...] = (0.5,),
        std: tuple[float, ...] = (0.5,),
        class_names: list[str] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        if images.ndim != 4 or labels.ndim != 1 or images.shape[0] != labels.shape[0]:
            raise HashCondenseError(
                f"synthetic set needs images (N, C, H, W) and labels (N,), got {tuple(images.shape)} and "
                f"{tuple(labels.shape)}; re-create the file"
            )
        if int(factor) < 1 or (int(factor) > 1 and min(images.shape[-2:]) // int(factor) < 4):
            raise HashCondenseError(
                f"multi-formation factor {factor} does not fit {images.shape[-1]} px images"
            )
        self.images = images
        self.labels = labels.long()
        self.factor = int(factor)
        self.mean = tuple(float(v) for v in mean)
        self.std = tuple(float(v) for v in std)
        self.class_names = list(class_names) if class_names is not None else None
        self.meta = dict(meta or {})

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def decoded(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The training set the stored images stand for: decoded images and repeated labels."""
        images = decode(self.images, self.factor, self.mean, self.std)
        labels = self.labels.repeat_interleave(self.factor * self.factor)
        return images, labels

    def card(self) -> dict[str, Any]:
        counts = torch.bincount(self.labels).tolist() if len(self) else []
        return {
            "format": FORMAT,
            "factor": self.factor,
            "mean": list(self.mean),
            "std": list(self.std),
            "class_names": self.class_names,
            "num_stored": len(self),
            "num_decoded": len(self) * self.factor**2,
            "image_shape": list(self.images.shape[1:]),
            "stored_per_class": counts,
            **self.meta,
        }

    def save(self, path: str | os.PathLike[str]) -> None:
        save_tensors(
            path,
            {"images": self.images.detach().float(), "labels": self.labels},
            self.card(),
        )

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SyntheticSet:
        tensors, card = load_tensors(path, what="synthetic set")
        if card.get("format") != FORMAT or "images" not in tensors or "labels" not in tensors:
            raise HashCondenseError(
                f"{path} is not a hashcondense synthetic set (format {card.get('format')!r})"
            )
        known = {
            "format",
            "factor",
            "mean",
            "std",
            "class_names",
            "num_stored",
            "num_decoded",
            "image_shape",
            "stored_per_class",
        }
        images = tensors["images"]
        if not torch.isfinite(images).all():
            raise HashCondenseError(f"synthetic set {path} holds NaN or inf pixels; re-create it")
        return cls(
            images,
            tensors["labels"],
            factor=int(card.get("factor", 1)),
            mean=tuple(card.get("mean", (0.5,))),
            std=tuple(card.get("std", (0.5,))),
            class_names=card.get("class_names"),
            meta={k: v for k, v in card.items() if k not in known},
        )
