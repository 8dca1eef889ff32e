"""From a command line to a config dict: the `--config` file as the base, the flags given laid over it.

`overlay` matches flags to config fields by name: a flag whose argparse `dest` is a field name of the
config dataclass sets that field when it was given, i.e. its value is not None (argparse's default; a
store_true flag taken this way says default=None), and a field holding a nested dataclass
(`EvalConfig.train`) takes the flags named after its own fields. A new config field therefore needs
only a flag of the same name. Flags that map otherwise (--no-augment, --quiet, ...) are the
sub-command's to handle; it names them in `skip` where a field shares their name.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from collections.abc import Collection
from pathlib import Path
from typing import Any

from hashcondense.errors import HashCondenseError

__all__ = ["load_config", "overlay"]


def load_config(path_text: str, expected: str) -> dict[str, Any]:
    """The config in a JSON file: a run's config.json ({"config": {...}, ...}) or a bare object of
    config fields. `expected` ends the error messages ("pass <expected>")."""
    path = Path(path_text)
    try:
        loaded = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HashCondenseError(f"cannot read config {path}: {exc}; pass {expected}") from None
    base = loaded.get("config", loaded) if isinstance(loaded, dict) else None
    if not isinstance(base, dict):
        raise HashCondenseError(f"config {path} is not a JSON object; pass {expected}")
    return dict(base)


def overlay(
    base: dict[str, Any], args: argparse.Namespace, config_type: type, *, skip: Collection[str] = ()
) -> dict[str, Any]:
    """A copy of `base` with every given flag named after a field of `config_type` laid over it (see
    the module docstring); fields named in `skip` are left to the caller."""
    merged = dict(base)
    hints = typing.get_type_hints(config_type)
    for f in dataclasses.fields(config_type):
        if f.name in skip:
            continue
        if dataclasses.is_dataclass(hints[f.name]):
            inner = merged.get(f.name, {})
            if not isinstance(inner, dict):
                raise HashCondenseError(
                    f"config key {f.name} = {inner!r} should be an object; correct it in the config file"
                )
            merged[f.name] = overlay(inner, args, hints[f.name], skip=skip)
            continue
        value = getattr(args, f.name, None)
        if value is not None:
            merged[f.name] = value
    return merged
