"""Random selection: `ipc` real train images per class (seeded), no optimisation.

With multi-formation (factor > 1) each stored image tiles factor**2 downscaled real images of the
class ("random + multi-formation", the starting point of IDC and IEM). Default factor 1, the paper's
Random baseline. The images drawn are recorded in the set's card (`init_indices`, train-split
positions per class).
"""

from __future__ import annotations

from typing import Any

from hashcondense.condense.config import DatasetInfo
from hashcondense.condense.method import CondenseMethod, register_method

__all__ = ["RandomSelection"]


@register_method("random")
class RandomSelection(CondenseMethod):
    optimizes = False
    distributed = True  # each process draws its own classes' images
    # nothing to shorten on a CPU: the cpu preset is the paper's selection, so one experiment preset
    # can name it for every method of a table
    presets = {"cpu": {}}

    @classmethod
    def unread_settings(cls, resolved: dict[str, Any]) -> set[str]:
        return {"hashing", "bits", "arch", "arch_kwargs"}  # no network at all

    @classmethod
    def default_settings(cls, info: DatasetInfo) -> dict[str, Any]:
        return {"factor": 1, "outer_loops": 0}
