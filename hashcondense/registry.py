"""A small name -> builder registry, shared by models, hashing methods and condensation methods.

Modelled on timm's `register_model` / `create_model` / `list_models`: importing a family module
registers its builders; an unknown name fails with a message listing the valid names. A registry given
a `package` imports every module of that package the first time it is asked for a name, so adding a
network, hashing method, condensation method or dataset is adding a file: no list to keep by hand.

`declared()` reads the names the package's modules register from their source, without importing
them: the command line checks a name that way before it loads torch (seconds), so that a mistyped name
is answered at once.
"""

from __future__ import annotations

import ast
import fnmatch
import importlib
import importlib.util
import pkgutil
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Generic, TypeVar

from hashcondense.errors import HashCondenseError

T = TypeVar("T")

__all__ = ["Registry", "declared_dict_keys"]


class Registry(Generic[T]):
    """Maps lower-case names to builders (classes or functions)."""

    def __init__(self, kind: str, package: str | None = None) -> None:
        self.kind = kind
        self.package = package
        self._entries: dict[str, Callable[..., T]] = {}
        self._discovered = package is None
        self._declared: dict[str, ast.AST] | None = None

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

    def declared(self) -> dict[str, ast.AST | None]:
        """Name -> the registered class or function's syntax node, read from the source of the package's
        modules (`@register_...("name")` decorators) without importing them; names registered at run
        time by other modules are included (node None)."""
        if self._declared is None:
            self._declared = _scan_decorators(self.package) if self.package else {}
        return {**self._declared, **{k: None for k in self._entries if k not in self._declared}}

    def check(self, name: str) -> str:
        """The registry key of `name`, or the same one-line error as `get`, without importing anything."""
        key = str(name).lower()
        names = self.declared()
        if key not in names:
            raise self._unknown(name, names)
        return key

    def _unknown(self, name: str, names: Iterable[str]) -> HashCondenseError:
        return HashCondenseError(f"unknown {self.kind} '{name}'; choose one of: {', '.join(sorted(names))}")

    def get(self, name: str) -> Callable[..., T]:
        self._discover()
        key = str(name).lower()
        if key not in self._entries:
            raise self._unknown(name, self._entries)
        return self._entries[key]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def names(self, pattern: str = "*") -> list[str]:
        self._discover()
        return sorted(n for n in self._entries if fnmatch.fnmatch(n, pattern))

    def __contains__(self, name: object) -> bool:
        self._discover()
        return isinstance(name, str) and name.lower() in self._entries


def _package_dirs(package: str) -> list[Path]:
    """The folders of a (sub)package, found without executing its `__init__` or its parents' but the top."""
    top, *rest = package.split(".")
    spec = importlib.util.find_spec(top)
    if spec is None or spec.submodule_search_locations is None:
        return []
    return [Path(location, *rest) for location in spec.submodule_search_locations]


def _registered_name(decorator: ast.expr) -> str | None:
    """ "name" of a `@register_xxx("name", ...)` decorator, else None."""
    if not (isinstance(decorator, ast.Call) and decorator.args):
        return None
    func = decorator.func
    called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
    first = decorator.args[0]
    if called.startswith("register") and isinstance(first, ast.Constant) and isinstance(first.value, str):
        return first.value.lower()
    return None


def _scan_decorators(package: str) -> dict[str, ast.AST]:
    found: dict[str, ast.AST] = {}
    for folder in _package_dirs(package):
        for path in sorted(folder.glob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                    for decorator in node.decorator_list:
                        name = _registered_name(decorator)
                        if name is not None:
                            found[name] = node
    return found


def declared_dict_keys(node: ast.AST | None, attribute: str) -> list[str] | None:
    """The string keys of a class-level `attribute = {...}` literal in a declared class, or None when
    the source does not say (no such literal: inherited or computed)."""
    if not isinstance(node, ast.ClassDef):
        return None
    for statement in node.body:
        targets = statement.targets if isinstance(statement, ast.Assign) else []
        if isinstance(statement, ast.AnnAssign):
            targets = [statement.target]
        value = getattr(statement, "value", None)
        if any(getattr(t, "id", None) == attribute for t in targets) and isinstance(value, ast.Dict):
            keys = [k.value for k in value.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]
            return keys if len(keys) == len(value.keys) else None
    return None
