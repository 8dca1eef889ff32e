"""The four registries, in one place that imports nothing heavy: networks, hashing methods,
condensation methods and datasets. Each family registers into its own with a decorator
(`register_model`, `register_hashing`, `register_method`, `register_dataset`); the command line reads
their declared names from here before it loads torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hashcondense.registry import Registry

if TYPE_CHECKING:
    from torch import nn

    from hashcondense.condense.method import CondenseMethod

__all__ = ["DATASETS", "HASHING", "METHODS", "MODELS"]

MODELS: Registry[nn.Module] = Registry("network", package="hashcondense.models")
HASHING: Registry[Any] = Registry("hashing method", package="hashcondense.hashing")
METHODS: Registry[type[CondenseMethod]] = Registry(
    "condensation method", package="hashcondense.condense.methods"
)
DATASETS: Registry[Any] = Registry("dataset", package="hashcondense.data")
