"""Files a user keeps: atomic writes, safetensors tensors + JSON metadata, run directories."""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashcondense.utils.lazy import lazy_exports

# public name -> module (imported on first use: atomic writes load without torch)
_EXPORTS = {
    "atomic_write": "atomic",
    "write_bytes": "atomic",
    "write_json": "atomic",
    "write_text": "atomic",
    "load_tensors": "tensors",
    "save_tensors": "tensors",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = ["atomic_write", "load_tensors", "save_tensors", "write_bytes", "write_json", "write_text"]

if TYPE_CHECKING:
    from hashcondense.io.atomic import atomic_write, write_bytes, write_json, write_text
    from hashcondense.io.tensors import load_tensors, save_tensors
