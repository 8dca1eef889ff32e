"""A small name -> builder registry, shared by models, hashing methods and condensation methods.

Modelled on timm's `register_model` / `create_model` / `list_models`: importing a family module
registers its builders; an unknown name fails with a message listing the valid names. A registry given
a `package` imports every module of that package the first time it is asked for a name, so adding a
network, hashing method, condensation method or dataset is adding a file: no list to keep by hand.
"""

from __future__ import annotations

import fnmatch
import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from hashcondense.errors import HashCondenseError

T = TypeVar("T")

__all__ = ["Registry"]


class Registry(Generic[T]):
    """Maps lower-case names to builders (classes or functions)."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Callable[..., T]] = {}
        self._discovered = package is None

    def _discover(self) -> None:
        """Import every module of `package` once (their decorators register the entries)."""
        if self._discovered:
            return
        self._discovered = True  # before importing: a module may look names up while it loads
        package = importlib.import_module(str(self.package))
        for module in pkgutil.iter_modules(package.__path__):
            importlib.import_module(f"{self.package}.{module.name}")

    def register(self, name: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
        key = name.lower()

        def decorator(builder: Callable[..., T]) -> Callable[..., T]:
            if key in self._entries:
                raise ValueError(f"{self.kind} '{key}' is registered twice")
            self._entries[key] = builder
            return builder

        return decorator

    def get(self, name: str) -> Callable[..., T]:
        self._discover()
        key = str(name).lower()
        if key not in self._entries:
            valid = ", ".join(sorted(self._entries))
            raise HashCondenseError(f"unknown {self.kind} '{name}'; choose one of: {valid}")
        return self._entries[key]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        self._discover()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return isinstance(name, str) and name.lower() in self._entries
