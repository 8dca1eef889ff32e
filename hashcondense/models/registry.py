"""Network registry: `create_model('convnet3', in_channels=3, image_size=32)` returns a backbone."""

from __future__ import annotations

from typing import Any

from torch import nn

from hashcondense.registries import MODELS

register_model = MODELS.register


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build a backbone by name. kwargs: in_channels, image_size, norm, ... (see each builder)."""
    return MODELS.create(name, **kwargs)


def list_models(pattern: str = "*") -> list[str]:
    return MODELS.names(pattern)
