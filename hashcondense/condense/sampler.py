"""Per-class sampling of real training images with an explicit generator.

Every draw is stateless: `ClassSampler.sample(c, n, generator)` returns `n` distinct random indices of
class `c` (all of them, shuffled, when the class has fewer), using only the generator passed in. The
engine derives that generator from (seed, stream, outer loop, inner step, class), so a run that
shards classes over processes, or resumes in the middle, draws exactly the same batches. (IDC keeps a
per-class shuffled queue instead; a random subset per step has the same distribution and no state.)
"""

from __future__ import annotations

import torch

from hashcondense.condense.config import class_label
from hashcondense.errors import HashCondenseError

__all__ = ["ClassSampler"]


class ClassSampler:
    """Indices of each class of a label vector; random per-class subsets on demand.

    Shape: labels (N,) int64 with values in [0, num_classes).
    """

    def __init__(self, labels: torch.Tensor, num_classes: int, class_names: list[str] | None = None) -> None:
        labels = torch.as_tensor(labels).long().cpu()
        if labels.dim() != 1:
            raise HashCondenseError(f"labels must be 1-D class indices, got shape {tuple(labels.shape)}")
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise HashCondenseError(
                f"labels must lie in [0, {num_classes}); got {int(labels.min())}..{int(labels.max())}"
            )
        self.num_classes = int(num_classes)
        self.class_names = class_names
        self.index = [torch.nonzero(labels == c).flatten() for c in range(self.num_classes)]

    def count(self, class_index: int) -> int:
        return int(self.index[class_index].numel())

    def name(self, class_index: int) -> str:
        return class_label(class_index, self.class_names)

    def sample(self, class_index: int, count: int, generator: torch.Generator) -> torch.Tensor:
        """`count` distinct random indices of the class (fewer when the class is smaller), int64."""
        idx = self.index[class_index]
        if idx.numel() == 0:
            raise HashCondenseError(
                f"class {self.name(class_index)} has no training image; check the dataset split"
            )
        perm = torch.randperm(idx.numel(), generator=generator)
        return idx[perm[: min(int(count), idx.numel())]]
