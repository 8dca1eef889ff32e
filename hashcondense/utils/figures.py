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
    images: torch.Tensor,
    path: str | os.PathLike[str],
    nrow: int,
    titles: Sequence[str] | None = None,
    caption: str | None = None,
    tiles: int = 1,
) -> None:
    """images in [0, 1], (N, C, H, W), `nrow` per row (one row per class when nrow = images per class);
    `titles` label the rows, `caption` heads the picture, `tiles` > 1 draws the tile borders inside
    each cell (multi-formation: a stored image holds tiles x tiles smaller images).

    Cells are drawn at a fixed size on paper (about 0.6 inch), so labels stay readable whatever the
    image resolution and number of columns."""
    images = images.detach().float().clamp(0, 1).cpu()
    n, c, h, w = images.shape
    ncol = max(1, nrow)
    rows = (n + ncol - 1) // ncol
    pad = max(1, h // 16)
    grid = torch.ones(c, rows * (h + pad) + pad, ncol * (w + pad) + pad)
    for i in range(n):
        r, k = divmod(i, ncol)
        top, left = pad + r * (h + pad), pad + k * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    array = grid.permute(1, 2, 0).numpy()
    cell, label_width, head = 0.6, (1.2 if titles else 0.1), (0.5 if caption else 0.1)
    width, height = ncol * cell + label_width, rows * cell + head
    fig = plt.figure(figsize=(width, height))
    ax = fig.add_axes([label_width / width, 0, 1 - label_width / width, 1 - head / height])
    ax.imshow(
        array.squeeze(-1) if c == 1 else array, cmap="gray" if c == 1 else None, interpolation="nearest"
    )
    ax.axis("off")
    if tiles > 1:  # dashed tile borders inside every cell
        for i in range(n):
            r, k = divmod(i, ncol)
            top, left = pad + r * (h + pad) - 0.5, pad + k * (w + pad) - 0.5
            for t in range(1, tiles):
                ax.plot([left + t * w / tiles] * 2, [top, top + h], color="red", lw=0.6, ls="--")
                ax.plot([left, left + w], [top + t * h / tiles] * 2, color="red", lw=0.6, ls="--")
    if titles:
        for r, t in enumerate(titles[:rows]):
            ax.text(-pad * 2, pad + r * (h + pad) + h / 2, t, ha="right", va="center", fontsize=11)
    if caption:
        fig.suptitle(caption, fontsize=12, x=0.02, ha="left", y=1 - 0.12 / height, va="top")
    save_figure(fig, path)
