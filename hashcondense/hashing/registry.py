"""Hashing-method registry: `create_hashing('dhd', num_classes=10, hash_bits=64)`."""

from __future__ import annotations

from typing import Any

from hashcondense.registries import HASHING

register_hashing = HASHING.register


def create_hashing(name: str, **kwargs: Any):  # -> HashingMethod
    return HASHING.create(name, **kwargs)


def list_hashing(pattern: str = "*") -> list[str]:
    return HASHING.names(pattern)
