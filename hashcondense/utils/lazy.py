"""Package namespaces that import their modules on first use.

A package `__init__` lists its public names and the module each lives in; `from package import name`
then imports only that module. This keeps what the command line needs before it can refuse a mistake
(configs, registries, the dataset loaders) free of torch, whose import takes seconds.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(
    package: str, exports: dict[str, str], namespace: dict[str, Any]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(`__getattr__`, `__dir__`) for `package`, whose public `name` lives in module `exports[name]`
    (relative to the package). The first access imports the module and caches the name in `namespace`."""

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
