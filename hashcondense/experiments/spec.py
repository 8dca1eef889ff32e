"""An experiment is a declarative file: one table or figure of the paper as a grid of cells.

A file (JSON, `experiments/tables/<name>.json`, or any path) holds:

    name, title              what it reproduces
    dataset                  data fields shared by every run ({"dataset": "cifar10", ...})
    condense, evaluate       CondenseConfig / EvalConfig fields shared by every cell
    grid                     axis -> values, one cell per combination: "method", "ipc" (condensation),
                             "bits", "hashing", "dataset", "image_size" (both), or a dotted field:
                             "condense.factor",
                             "condense.options.use_pool", "evaluate.hashing", "evaluate.train.epochs";
                             or a list of such grids (a table with two halves), each of which may
                             hold "with": {"dataset": {...}, "condense": {...}, "evaluate": {...}},
                             settings of its cells only (table3's ImageNet half: another dataset
                             and network), and "label": a word put before its cells' keys
    extra                    cells beside the grid, e.g. {"name": "whole", "train_set": "whole",
                             "bits": [64], "evaluate": {...}} (own settings, laid over the preset's;
                             "dataset": {...} for another dataset than the shared one)
    seeds                    evaluation seeds of every cell
    presets                  name -> {"condense": {...}, "evaluate": {...}, "seeds": [...]}, laid over
                             the shared settings; its "cells" maps a cell-key pattern (fnmatch,
                             "*/1/*") to such a layer for the matching cells only, e.g. a smaller
                             budget or more seeds for one images-per-class
    paper                    cell key -> the paper's value (mAP %), for the report
    note                     a sentence for the report, e.g. what its data needs (ImageNet: a folder)
    figures                  the paper's figures drawn from these cells by `hashcondense report`:
                             [{"name", "title", "kind": line | bars | pr | precision_at_m,
                             "cells": key pattern, "series": axis (one curve or bar colour per
                             value), "x": axis (line: x values, bars: groups), "xlabel"}]

A cell is one condensation config (none for a training set named directly, such as `whole`), one
evaluation config and its seeds. Its key is its grid values joined by "/" in axis order ("iem/10/64"),
or an extra cell's name and bits ("whole/64"). Every
mistake in a file is a one-line error naming the file and the field.
"""

from __future__ import annotations

import fnmatch
import itertools
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from hashcondense.condense.config import CondenseConfig, check_names, check_run_settings
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate.config import EvalConfig

__all__ = ["Cell", "Experiment", "list_experiments", "load_experiment"]

_FIELDS = {
    "name", "title", "dataset", "condense", "evaluate", "grid", "extra", "seeds", "presets", "paper",
    "figures", "note",
}  # fmt: skip
FIGURE_KINDS = ("line", "bars", "pr", "precision_at_m")
# shorthand axes (condensation only, or both configs); any other is condense.FIELD or evaluate.FIELD
_GRID = ("method", "ipc", "bits", "hashing", "dataset", "image_size")
_SIDES = ("condense", "evaluate")
_WITH = {"dataset", *_SIDES}  # what a grid's own "with" settings may hold
_GRID_SETTINGS = ("with", "label")  # a grid's entries that are not axes


@dataclass(frozen=True)
class Cell:
    """One measured value: a set to condense (None: `evaluate.train_set` names the training set) and
    the evaluation of it, repeated for each seed."""

    key: str
    condense: dict[str, Any] | None
    evaluate: dict[str, Any]
    seeds: tuple[int, ...]
    values: dict[str, Any] = field(default_factory=dict, compare=False)  # axis -> value (figures)


@dataclass
class Experiment:
    name: str
    title: str
    source: Path
    raw: dict[str, Any] = field(repr=False)

    @property
    def paper(self) -> dict[str, float]:
        return dict(self.raw.get("paper", {}))

    @property
    def note(self) -> str:
        return str(self.raw.get("note", ""))

    @property
    def figures(self) -> list[dict[str, Any]]:
        return list(self.raw.get("figures", []))

    def presets(self) -> list[str]:
        return sorted(self.raw.get("presets", {}))

    def cells(self, preset: str = "cpu", root: str | None = None) -> list[Cell]:
        """Every cell, with `preset` laid over the shared settings, validated."""
        preset_layer = self._preset(preset)
        data = {**self.raw.get("dataset", {}), **({"root": root} if root is not None else {})}
        cells = []
        for own, values in self._grid():
            over = self._layer(preset_layer, _key(values))
            seeds = tuple(int(s) for s in over.get("seeds", self.raw.get("seeds", [0])))
            cells.append(self._grid_cell(values, {**data, **own.get("dataset", {})}, own, over, seeds))
        for extra in self.raw.get("extra", []):
            for bits in extra.get("bits", [64]):
                over = self._layer(preset_layer, f"{extra['name']}/{bits}")
                seeds = tuple(int(s) for s in over.get("seeds", self.raw.get("seeds", [0])))
                layers = (
                    {**data, **extra.get("dataset", {})},
                    self.raw.get("evaluate", {}),
                    over.get("evaluate", {}),
                    extra.get("evaluate", {}),
                )
                evaluate = _merge(*layers)
                evaluate.update(train_set=extra["train_set"], bits=bits)
                values = {"name": extra["name"], "bits": bits}
                key = f"{extra['name']}/{bits}"
                cells.append(Cell(key, None, self._evaluate(evaluate), seeds, values))
        return cells

    def _grid(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(the grid's own settings, axis values) of every combination of every grid."""
        out = []
        for grid in _grids(self.raw):
            axes = {k: v for k, v in grid.items() if k not in _GRID_SETTINGS}
            own = grid.get("with", {})
            label = {"label": grid["label"]} if "label" in grid else {}
            out += [
                (own, {**label, **dict(zip(axes, c, strict=True))}) for c in itertools.product(*axes.values())
            ]
        return out

    def _grid_cell(self, values: dict, data: dict, own: dict, over: dict, seeds: tuple[int, ...]) -> Cell:
        sides = {
            side: _merge(data, self.raw.get(side, {}), own.get(side, {}), over.get(side, {}))
            for side in _SIDES
        }
        condense, evaluate = sides["condense"], sides["evaluate"]
        for axis, value in values.items():
            _place(axis, value, condense, evaluate)
        return Cell(_key(values), self._condense(condense), self._evaluate(evaluate), seeds, values)

    def _layer(self, preset: dict[str, Any], key: str) -> dict[str, Any]:
        """The preset's settings for the cell `key`: its shared layer, then each matching pattern of
        its "cells" in file order."""
        patterns = preset.get("cells", {})
        if not isinstance(patterns, dict):
            raise HashCondenseError(
                f"experiment {self.source}: a preset's cells must map key patterns to settings"
            )
        out = {k: v for k, v in preset.items() if k != "cells"}
        for pattern, layer in patterns.items():
            if fnmatch.fnmatch(key, pattern):
                for side in _SIDES:
                    if side in layer:
                        out[side] = _merge(out.get(side, {}), layer[side])
                if "seeds" in layer:
                    out["seeds"] = layer["seeds"]
        return out

    def _preset(self, preset: str) -> dict[str, Any]:
        presets = self.raw.get("presets", {})
        if preset not in presets:
            valid = ", ".join(sorted(presets)) or "none"
            raise HashCondenseError(
                f"experiment {self.name} has no preset '{preset}'; choose one of: {valid}"
            )
        return presets[preset]

    def _condense(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            config = CondenseConfig.from_dict({**values, "out": "-", "show_progress": False})
        except (HashCondenseError, TypeError) as exc:
            raise HashCondenseError(f"experiment {self.source}: {exc}") from None
        check_run_settings(config)
        check_names(config)
        return {k: v for k, v in values.items() if k != "out"}

    def _evaluate(self, values: dict[str, Any]) -> dict[str, Any]:
        try:
            config = EvalConfig.from_dict(
                {"train_set": "whole", **values, "out": "-", "show_progress": False}
            )
        except (HashCondenseError, TypeError) as exc:
            raise HashCondenseError(f"experiment {self.source}: {exc}") from None
        config.train.check()
        return values


def _grids(raw: dict[str, Any]) -> list[dict[str, Any]]:
    grid = raw.get("grid", {})
    return grid if isinstance(grid, list) else [grid]


def _key(values: dict[str, Any]) -> str:
    return "/".join(str(v).lower() if isinstance(v, bool) else str(v) for v in values.values())


def _place(axis: str, value: Any, condense: dict[str, Any], evaluate: dict[str, Any]) -> None:
    """Set a grid axis (a grid's label only names its cells): `method` and `ipc` name condensation
    fields, `bits`, `hashing`, `dataset` and `image_size` both configs', and `condense.X`,
    `condense.options.X`, `evaluate.X`, `evaluate.train.X` one field of one config."""
    if axis == "label":
        return
    if axis in ("method", "ipc"):
        condense[axis] = value
    elif axis in ("bits", "hashing", "dataset", "image_size"):
        condense[axis] = evaluate[axis] = value
    else:
        side, *path = axis.split(".")
        target = {"condense": condense, "evaluate": evaluate}[side]
        for part in path[:-1]:
            target = target.setdefault(part, {})
        target[path[-1]] = value


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    """Later layers win; the nested `train` and `options` mappings merge key by key."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            if key in ("train", "options") and isinstance(value, dict):
                out[key] = {**out.get(key, {}), **value}
            else:
                out[key] = value
    return out


def _tables() -> Path:
    return Path(str(resources.files("hashcondense.experiments"))) / "tables"


def list_experiments() -> list[str]:
    """The experiment files that come with the package."""
    return sorted(p.stem for p in _tables().glob("*.json"))


def load_experiment(name_or_path: str) -> Experiment:
    """An experiment by name (`list_experiments()`) or by the path of a JSON file."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = _tables() / f"{name_or_path}.json"
        if not path.is_file():
            valid = ", ".join(list_experiments())
            raise HashCondenseError(
                f"unknown experiment '{name_or_path}'; choose one of: {valid}, or a .json file"
            )
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise HashCondenseError(
            f"cannot read experiment {path} ({exc}); pass a JSON experiment file"
        ) from None
    if not isinstance(raw, dict):
        raise HashCondenseError(f"experiment {path} is not a JSON object")
    unknown = set(raw) - _FIELDS
    if unknown:
        raise HashCondenseError(
            f"experiment {path} has unknown fields {sorted(unknown)}; valid: {sorted(_FIELDS)}"
        )
    grids = _grids(raw)
    shapes_ok = all(
        isinstance(g, dict) and isinstance(g.get("with", {}), dict) and set(g.get("with", {})) <= _WITH
        for g in grids
    )
    unknown_axes = (
        [
            a
            for g in grids
            for a in g
            if a not in _GRID_SETTINGS and a not in _GRID and a.split(".")[0] not in _SIDES
        ]
        if shapes_ok
        else []
    )
    if unknown_axes or not shapes_ok:
        raise HashCondenseError(
            f"experiment {path}: unknown grid axes {sorted(unknown_axes)}; use {', '.join(_GRID)}, "
            'condense.FIELD or evaluate.FIELD (and "with" for a grid\'s own dataset/condense/evaluate)'
        )
    for figure in raw.get("figures", []):
        if not isinstance(figure, dict) or figure.get("kind") not in FIGURE_KINDS or "name" not in figure:
            raise HashCondenseError(
                f"experiment {path}: a figure needs a name and a kind, one of {', '.join(FIGURE_KINDS)}"
            )
    return Experiment(str(raw.get("name", path.stem)), str(raw.get("title", "")), path, raw)
