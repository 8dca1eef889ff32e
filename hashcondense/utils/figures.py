"""Saving matplotlib figures atomically (Agg backend) and image grids as PNG."""

from __future__ import annotations

import io
import os
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hashcondense.io.atomic import write_bytes  # noqa: E402

__all__ = ["plt", "save_figure", "save_image_grid"]


def save_figure(fig, path: str | os.PathLike[str]) -> None:
    """Write `fig` as a PNG (atomically) and close it."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(fig)
    write_bytes(path, buffer.getvalue())


def save_image_grid(
    images: torch.Tensor, path: str | os.PathLike[str], nrow: int, titles: Sequence[str] | None = None
) -> None:
    """images in [0, 1], (N, C, H, W); one row per class when nrow = images per class."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = max(1, nrow)
    rows = (n + ncol - 1) // ncol
    pad = 1
    grid = torch.ones(c, rows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, ncol)
        grid[
            :, pad + r * (h + pad) : pad + r * (h + pad) + h, pad + k * (w + pad) : pad + k * (w + pad) + w
        ] = images[i]
    array = grid.permute(1, 2, 0).numpy()
    scale = max(1.0, 64 / h)
    fig = plt.figure(figsize=(max(2, array.shape[1] * scale / 100), max(2, array.shape[0] * scale / 100)))
    ax = fig.add_axes([0, 0, 1, 1])
    ax.imshow(
        array.squeeze(-1) if c == 1 else array, cmap="gray" if c == 1 else None, interpolation="nearest"
    )
    ax.axis("off")
    if titles:
        for r, t in enumerate(titles[:rows]):
            ax.text(-2, pad + r * (h + pad) + h / 2, t, ha="right", va="center", fontsize=7)
    save_figure(fig, path)
