"""The augmented views a hashing method trains on (DHD: teacher = weak view, student = strong view)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

from hashcondense.augment import DSA, DSA_STRATEGY, JitterAugment, strong_augment, weak_augment
from hashcondense.errors import HashCondenseError

__all__ = ["View", "training_views", "view_rows"]

View = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def training_views(
    flip: bool = True,
    views: str = "dsa",
    normalization: tuple[Sequence[float], Sequence[float]] | None = None,
) -> tuple[View, View]:
    """The (weak, strong) views; without flips for data whose mirror image is another class.

    "dsa": teacher = translation + flip, student = the full DSA strategy (DESIGN Section 4).
    "jitter": DHD's own code, one chain at strength 0.5 (teacher) and 1 (student); it works on pixel
    values, so it needs the images' `normalization` (per-channel mean, std).
    """
    if views == "jitter":
        if normalization is None:
            raise HashCondenseError(
                "views 'jitter' needs the dataset's mean and std; pass normalization=(mean, std)"
            )
        mean, std = normalization
        return JitterAugment(mean, std, 0.5, flip=flip), JitterAugment(mean, std, 1.0, flip=flip)
    if flip:
        return weak_augment(), strong_augment()
    strategy = "_".join(g for g in DSA_STRATEGY.split("_") if g != "flip")
    return DSA("crop", mode="all"), DSA(strategy, mode="all")


def view_rows(view: View, x: torch.Tensor, generator: torch.Generator, rows: slice) -> torch.Tensor:
    """`view(x, generator)[rows]`, with the same random draws from `generator` (one process's share of
    a batch in data-parallel training: the draws stay tied to the batch and its images, not to the
    process). A DSA view transforms only `rows`, with their part of the whole batch's draw; another
    view transforms the whole batch and keeps `rows`."""
    if isinstance(view, DSA):
        if view.is_identity:
            return x[rows]
        draw = view.sample(x.shape[0], generator)
        return view.apply(x[rows], draw.rows(rows))
    return view(x, generator)[rows]
