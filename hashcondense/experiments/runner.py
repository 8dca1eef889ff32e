"""Running an experiment: fill the cell store (`store.py`) cell by cell with the library's own
`condense` and `run_evaluation`, resuming what was interrupted and skipping what is finished or being
computed by another process.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hashcondense.condense import CondenseConfig, condense
from hashcondense.data import RetrievalDataset, load_dataset
from hashcondense.evaluate import EvalConfig, run_evaluation
from hashcondense.experiments.spec import Cell, Experiment
from hashcondense.experiments.store import CellStore, Locked
from hashcondense.utils.logs import stage

__all__ = ["CellStatus", "plan_cells", "run_experiment"]

log = logging.getLogger("hashcondense.experiments")


@dataclass
class CellStatus:
    cell: Cell
    status: str  # done | partial | todo
    seeds_done: int
    cost: str  # what the cell will spend, from its settings

    def line(self) -> str:
        seeds = f"{self.seeds_done}/{len(self.cell.seeds)} seeds"
        return f"{self.cell.key:<16} {self.status:<8} {seeds}  {self.cost}"


def _cost(cell: Cell) -> str:
    """The cell's distillation budget and evaluation length, as its settings state them."""
    train = cell.evaluate.get("train", {})
    length = f"{train['epochs']} epochs" if train.get("epochs") else f"{train.get('auto_steps', 2000)} steps"
    evaluation = f"evaluation {length} x {len(cell.seeds)} seed(s)"
    if cell.condense is None:
        return evaluation
    budget = cell.condense.get("time_budget")
    condensing = f"condense {cell.condense['method']}: " + (
        f"{budget / 60:g} CPU-min budget" if budget else "no time budget (the preset's steps)"
    )
    return f"{condensing}; {evaluation}"


def plan_cells(experiment: Experiment, store: CellStore, preset: str, pattern: str = "*") -> list[CellStatus]:
    """The cells whose key matches `pattern` (fnmatch, e.g. "iem/*"), with what the store holds."""
    out = []
    for cell in experiment.cells(preset):
        if not fnmatch.fnmatch(cell.key, pattern):
            continue
        done = len(store.metrics(cell))
        status = "done" if done == len(cell.seeds) else ("partial" if done else "todo")
        out.append(CellStatus(cell, status, done, _cost(cell)))
    return out


class _Datasets:
    """Each dataset loaded once per invocation."""

    def __init__(self) -> None:
        self.loaded: dict[tuple, RetrievalDataset] = {}

    def get(self, values: dict[str, Any]) -> RetrievalDataset:
        key = tuple(values.get(k) for k in ("dataset", "root", "download", "split_seed", "image_size"))
        if key not in self.loaded:
            self.loaded[key] = load_dataset(
                values.get("dataset", "digits"),
                root=values.get("root"),
                download=bool(values.get("download", False)),
                split_seed=int(values.get("split_seed", 0)),
                image_size=values.get("image_size"),
            )
        return self.loaded[key]


def _today() -> str:
    return dt.date.today().isoformat()


def _condense_cell(cell: Cell, folder: Path, datasets: _Datasets, quiet: bool) -> None:
    resume = (folder / "checkpoint.safetensors").is_file()
    values = {**cell.condense, "out": str(folder), "resume": resume, "overwrite": not resume}
    config = CondenseConfig.from_dict({**values, "show_progress": not quiet})
    result = condense(config, dataset=datasets.get(cell.condense))
    facts = {"date": _today(), "stopped": result.stopped, "steps_done": result.steps_done}
    CellStore.mark_done(
        folder, {**facts, "steps_total": result.steps_total, "seconds": round(result.seconds, 1)}
    )


def _evaluate_seed(
    cell: Cell, seed: int, folder: Path, train_set: str, datasets: _Datasets, quiet: bool
) -> None:
    resume = (folder / "checkpoint.safetensors").is_file()
    values = {**cell.evaluate, "train_set": train_set, "seed": seed, "out": str(folder), "resume": resume}
    config = EvalConfig.from_dict({**values, "show_progress": not quiet})
    metrics = run_evaluation(config, dataset=datasets.get(cell.evaluate))
    CellStore.mark_done(folder, {"date": _today(), "map": metrics["map"]})


def _run_cell(cell: Cell, store: CellStore, datasets: _Datasets, quiet: bool) -> str:
    set_folder = store.set_folder(cell)
    if set_folder is not None and not store.done(set_folder):
        stage("cell %s: condensing -> %s", cell.key, set_folder)
        with store.locked(set_folder):
            if not store.done(set_folder):  # another process may have finished it meanwhile
                _condense_cell(cell, set_folder, datasets, quiet)
    train_set = str(set_folder / "synthetic.safetensors") if set_folder else cell.evaluate["train_set"]
    for seed in cell.seeds:
        folder = store.seed_folder(cell, seed)
        if store.done(folder):
            continue
        stage("cell %s: evaluating seed %d -> %s", cell.key, seed, folder)
        with store.locked(folder):
            if not store.done(folder):
                _evaluate_seed(cell, seed, folder, train_set, datasets, quiet)
    return "done"


def run_experiment(
    experiment: Experiment,
    store: CellStore,
    preset: str,
    pattern: str = "*",
    root: str | None = None,
    quiet: bool = False,
) -> list[tuple[str, str]]:
    """Compute every matching cell not yet in the store; returns (cell key, what happened) pairs."""
    datasets = _Datasets()
    outcome = []
    for cell in experiment.cells(preset, root=root):
        if not fnmatch.fnmatch(cell.key, pattern):
            continue
        if len(store.metrics(cell)) == len(cell.seeds):
            outcome.append((cell.key, "already done"))
            continue
        try:
            outcome.append((cell.key, _run_cell(cell, store, datasets, quiet)))
        except Locked as busy:
            stage("cell %s: %s is being computed by another process; skipped", cell.key, busy)
            outcome.append((cell.key, "skipped: running elsewhere"))
    return outcome
