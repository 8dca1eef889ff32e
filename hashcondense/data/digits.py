"""scikit-learn's bundled 8x8 digits: the embedded demo dataset (no download; DESIGN Section 2).

1,797 grey images of 10 digit classes, values 0..16, scaled to uint8 0..255 (x * 255 / 16, rounded)
and upsampled to `image_size` (default 32) with bilinear interpolation (torch, align_corners=False),
stored as (N, H, W, 1). Split: per class, seeded, 30 query and 100 train images drawn from the
non-query ones; database = all non-query images (1,497). mAP over the whole database (topk = -1).
mean / std are computed from all 1,797 upsampled images (so they do not depend on the split seed).
"""

from __future__ import annotations

import numpy as np

from hashcondense.data.arrays import channel_stats
from hashcondense.data.base import RetrievalDataset
from hashcondense.data.registry import register_dataset
from hashcondense.data.splits import per_class_split
from hashcondense.errors import HashCondenseError

__all__ = ["load_digits"]

QUERY_PER_CLASS = 30
TRAIN_PER_CLASS = 100


def load_digits(
    split_seed: int = 0,
    image_size: int | None = None,
    query_per_class: int = QUERY_PER_CLASS,
    train_per_class: int = TRAIN_PER_CLASS,
) -> RetrievalDataset:
    """The digits dataset as a RetrievalDataset of 1-channel `image_size` images."""
    import torch
    import torch.nn.functional as F
    from sklearn.datasets import load_digits as sk_load_digits

    size = 32 if image_size is None else int(image_size)
    if size < 1:
        raise HashCondenseError(f"image size must be positive, got {size}")
    bunch = sk_load_digits()
    x = np.rint(bunch.images.astype(np.float64) * (255.0 / 16.0)).astype(np.float32)  # (N, 8, 8)
    t = torch.from_numpy(x)[:, None]
    if size != 8:
        t = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    images = t.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy()
    labels = bunch.target.astype(np.int64)
    class_names = [str(c) for c in range(10)]
    database, train, query = per_class_split(
        labels, query_per_class, train_per_class, split_seed, num_classes=10, class_names=class_names
    )
    mean, std = channel_stats(images)
    return RetrievalDataset(
        name="digits",
        images=images,
        labels=labels,
        class_names=class_names,
        database=database,
        train=train,
        query=query,
        mean=mean,
        std=std,
        topk=-1,
        split_seed=int(split_seed),
        info={
            "source": "sklearn.datasets.load_digits",
            "protocol": (
                f"per class {query_per_class} query, {train_per_class} train drawn from the non-query "
                "images; database = all non-query images"
            ),
            "resize": f"8x8 -> {size}x{size} bilinear (align_corners=False)",
            "mean_std": "computed from all 1,797 images",
            # Mirrored digits are other symbols: augmentation leaves out flips (as DSA does for MNIST).
            "flip": False,
        },
    )


@register_dataset("digits", "scikit-learn 8x8 digits upsampled to 32x32, 1 channel, demo / tests")
def _digits_spec(
    arg: str | None, root: str | None, download: bool, seed: int, size: int | None
) -> RetrievalDataset:
    return load_digits(split_seed=seed, image_size=size)
