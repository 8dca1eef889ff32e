"""A picture of search results: one row per query, the query image first, then its answers in order.

Seeing the answers is the quickest check that an index serves what its mAP promises (and that the
queries were read like the database: the same size, channels and normalisation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

__all__ = ["save_search_grid"]


def save_search_grid(
    path: str | os.PathLike[str],
    queries: np.ndarray,
    answers: np.ndarray,
    found: np.ndarray,
    titles: Sequence[str],
    caption: str,
) -> None:
    """Write a PNG grid: `queries` uint8 (Q, H, W, C) beside `answers` uint8 (Q, k, H, W, C); cells
    where `found` (Q, k) is False (a short IVF answer) stay blank."""
    import torch

    from hashcondense.utils.figures import save_image_grid

    q, k = found.shape
    cells = np.full((q, k + 1, *queries.shape[1:]), 255, dtype=np.uint8)
    cells[:, 0] = queries
    cells[:, 1:][found] = answers[found]
    images = torch.from_numpy(cells.reshape(q * (k + 1), *queries.shape[1:])).permute(0, 3, 1, 2)
    save_image_grid(images.float() / 255.0, path, nrow=k + 1, titles=list(titles), caption=caption)
