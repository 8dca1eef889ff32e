"""Networks behind one registry (DESIGN Section 6)."""

from hashcondense.models.base import Backbone, HashingNetwork
from hashcondense.models.registry import create_model, list_models, register_model

__all__ = ["Backbone", "HashingNetwork", "create_model", "list_models", "register_model"]
