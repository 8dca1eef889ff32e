"""Deep hashing methods behind one registry (DESIGN Section 4)."""

from hashcondense.hashing.base import HashingMethod
from hashcondense.hashing.registry import create_hashing, list_hashing, register_hashing

__all__ = ["HashingMethod", "create_hashing", "list_hashing", "register_hashing"]
