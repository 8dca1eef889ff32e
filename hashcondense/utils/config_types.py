"""Check a config dataclass built from a JSON file against its field annotations.

Why: `--config` files are user input. Without this, a key of the wrong kind ("lr": "1e-3",
"epochs": 1.5, "seed": null) either raises a TypeError deep inside training or, worse, runs with a
value nobody meant. JSON has one number type, so a float field accepts whole numbers too.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import types
import typing
from typing import Any

from hashcondense.errors import HashCondenseError

__all__ = ["check_config_types"]


def check_config_types(config: Any, where: str = "") -> None:
    """Raise a one-line HashCondenseError naming the first field whose value does not fit its type.

    Nested dataclass fields are checked too (their keys are named `outer.inner`).
    """
    hints = typing.get_type_hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        name = f"{where}{f.name}"
        if dataclasses.is_dataclass(value):
            check_config_types(value, f"{name}.")
            continue
        expected = hints[f.name]
        if not _fits(value, expected):
            raise HashCondenseError(
                f"config key {name} = {value!r} should be {_describe(expected)}; "
                "correct it in the config file"
            )


def _fits(value: Any, expected: Any) -> bool:
    origin = typing.get_origin(expected)
    if expected is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, arm) for arm in typing.get_args(expected))
    if expected is type(None):
        return value is None
    if expected is bool:
        return isinstance(value, bool)
    if expected is int:
        return isinstance(value, numbers.Integral) and not isinstance(value, bool)
    if expected is float:
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if expected is str:
        return isinstance(value, (str, os.PathLike))  # API callers may pass a Path for a folder
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        return isinstance(value, list) and all(_fits(v, item) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if isinstance(expected, type):
        return isinstance(value, expected)
    return True  # an annotation this checker does not know: leave it to the code that uses it


def _describe(expected: Any) -> str:
    origin = typing.get_origin(expected)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(arm) for arm in typing.get_args(expected))
    if expected is type(None):
        return "null"
    if origin is list:
        (item,) = typing.get_args(expected) or (Any,)
        plural = {bool: "true/false values", int: "whole numbers", float: "numbers", str: "strings"}
        return f"a list of {plural.get(item, 'values')}"
    if origin is dict:
        return "an object"
    names = {bool: "true or false", int: "a whole number", float: "a number", str: "a string"}
    return names.get(expected, getattr(expected, "__name__", str(expected)))
