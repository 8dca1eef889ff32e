"""Which process owns which classes of a condensation run (several processes: README "Several processes").

The per-class methods (Random, DM, IEM) shard the classes: rank r owns a consecutive run of classes
(`utils.distributed.contiguous_shares`), draws only their real batches and updates only their stored
images; the set is gathered on rank 0 for checkpoints and the final files. Every random number comes
from a stream keyed by (seed, stream, outer loop, inner step, class) or by (seed, stream, outer loop),
never by rank, and the networks act on each image alone, so N processes compute the same numbers as
one (bit-identical on a CPU; see README for the tolerance on CUDA).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hashcondense.utils import distributed

__all__ = ["Sharding"]


@dataclass(frozen=True)
class Sharding:
    """This process's place in the run: `classes` are the classes it owns (all of them in one process)."""

    world_size: int
    rank: int
    backend: str | None
    classes_by_rank: tuple[tuple[int, ...], ...]

    @classmethod
    def single(cls, num_classes: int) -> Sharding:
        return cls(1, 0, None, (tuple(range(num_classes)),))

    @classmethod
    def current(cls, num_classes: int) -> Sharding:
        """The sharding of the process group this process belongs to (one process: all classes)."""
        size = distributed.world_size()
        shares = distributed.contiguous_shares(num_classes, size)
        return cls(size, distributed.rank(), distributed.backend(), tuple(tuple(s) for s in shares))

    @property
    def classes(self) -> list[int]:
        return list(self.classes_by_rank[self.rank])

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def rows(self, per_class: int) -> slice:
        """The rows of the class-major stored images that this process owns."""
        own = self.classes_by_rank[self.rank]
        if not own:
            return slice(0, 0)
        return slice(own[0] * per_class, (own[-1] + 1) * per_class)

    def record(self, extra: dict[str, list[list[int]]] | None = None) -> dict[str, Any]:
        """What config.json and card.json say about the processes (docs/formats.md)."""
        return {
            "world_size": self.world_size,
            "backend": self.backend,
            "classes_by_rank": [list(c) for c in self.classes_by_rank],
            **(extra or {}),
        }
