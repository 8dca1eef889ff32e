"""Dataset condensation (DESIGN Section 5): one engine, methods behind a registry.

    from hashcondense.condense import CondenseConfig, condense
    result = condense(CondenseConfig(dataset="digits", method="iem", ipc=2, outer_loops=2, inner_loops=5,
                                     out="runs/iem"))
    result.synthetic  # SyntheticSet; files in runs/iem (see condense.outputs)

Methods live in `methods/`, one file each (random, dm, dsa, idc, iem); the registry imports every
module there on first use, so adding a method is adding a file. See `method.py` for the interface,
`engine.py` for the loop, `embedding_matching.py` (DM, IEM) and `gradient_matching.py` (DSA, IDC) for
the two families of matching losses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashcondense.utils.lazy import lazy_exports

# public name -> module (imported on first use: the configs load without torch)
_EXPORTS = {
    "CondenseConfig": "config",
    "DatasetInfo": "config",
    "Settings": "config",
    "CondenseContext": "context",
    "MatchBatch": "context",
    "Streams": "context",
    "derive_seed": "context",
    "EmbeddingMatching": "embedding_matching",
    "CondenseEngine": "engine",
    "CondenseResult": "engine",
    "condense": "engine",
    "METHODS": "method",
    "CondenseMethod": "method",
    "get_method": "method",
    "list_methods": "method",
    "register_method": "method",
    "export_images": "outputs",
    "save_grids": "outputs",
    "write_outputs": "outputs",
    "ModelPool": "pool",
    "perturb_": "pool",
    "ClassSampler": "sampler",
    "SyntheticSet": "synthetic",
    "decode": "synthetic",
    "encode_tiles": "synthetic",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = [
    "ClassSampler",
    "CondenseConfig",
    "CondenseContext",
    "CondenseEngine",
    "CondenseMethod",
    "CondenseResult",
    "DatasetInfo",
    "EmbeddingMatching",
    "METHODS",
    "MatchBatch",
    "ModelPool",
    "Settings",
    "Streams",
    "SyntheticSet",
    "condense",
    "decode",
    "derive_seed",
    "encode_tiles",
    "export_images",
    "get_method",
    "list_methods",
    "perturb_",
    "register_method",
    "save_grids",
    "write_outputs",
]

if TYPE_CHECKING:
    from hashcondense.condense.config import CondenseConfig, DatasetInfo, Settings
    from hashcondense.condense.context import CondenseContext, MatchBatch, Streams, derive_seed
    from hashcondense.condense.embedding_matching import EmbeddingMatching
    from hashcondense.condense.engine import CondenseEngine, CondenseResult, condense
    from hashcondense.condense.method import (
        METHODS,
        CondenseMethod,
        get_method,
        list_methods,
        register_method,
    )
    from hashcondense.condense.outputs import export_images, save_grids, write_outputs
    from hashcondense.condense.pool import ModelPool, perturb_
    from hashcondense.condense.sampler import ClassSampler
    from hashcondense.condense.synthetic import SyntheticSet, decode, encode_tiles
