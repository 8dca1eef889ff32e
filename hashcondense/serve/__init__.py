"""Serving hash codes: encode images with a trained run, index the codes with faiss, search them.

    codes = encode_split(RunEncoder("runs/r10"), split="database")   # or encode_folder(encoder, DIR)
    save_codes("codes.safetensors", codes)
    served = build_index(load_codes("codes.safetensors"), kind="flat")  # or kind="ivf"
    save_index("index.safetensors", served)
    result = search_index(load_index("index.safetensors"), query_codes, k=10)

Sits between `evaluate` (it loads a run's network) and the command line. Names are imported on first
use, so that the CLI can check a command's flags before torch and faiss load. File formats:
docs/formats.md.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hashcondense.utils.lazy import lazy_exports

# public name -> module
_EXPORTS = {
    "CodesFile": "codes_file",
    "load_codes": "codes_file",
    "save_codes": "codes_file",
    "RunEncoder": "encode",
    "encode_folder": "encode",
    "encode_split": "encode",
    "ServedIndex": "index_file",
    "build_index": "index_file",
    "load_index": "index_file",
    "save_index": "index_file",
    "SearchResult": "search",
    "search_index": "search",
    "save_search_grid": "grid",
    "RunInput": "sources",
    "check_split": "sources",
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = [
    "CodesFile",
    "RunEncoder",
    "RunInput",
    "SearchResult",
    "ServedIndex",
    "build_index",
    "check_split",
    "encode_folder",
    "encode_split",
    "load_codes",
    "load_index",
    "save_codes",
    "save_index",
    "save_search_grid",
    "search_index",
]

if TYPE_CHECKING:
    from hashcondense.serve.codes_file import CodesFile, load_codes, save_codes
    from hashcondense.serve.encode import RunEncoder, encode_folder, encode_split
    from hashcondense.serve.grid import save_search_grid
    from hashcondense.serve.index_file import ServedIndex, build_index, load_index, save_index
    from hashcondense.serve.search import SearchResult, search_index
    from hashcondense.serve.sources import RunInput, check_split
