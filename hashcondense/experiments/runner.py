"""Running an experiment: fill the cell store (`store.py`) cell by cell with the library's own
`condense` and `run_evaluation`, resuming what was interrupted and skipping what is finished or being
computed by another process.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import functools
import json
import logging
import shutil
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, NamedTuple

from hashcondense.condense import CondenseConfig, condense
from hashcondense.condense.checkpoint import CHECKPOINT
from hashcondense.condense.config import set_content_digest
from hashcondense.condense.setup import resolved_settings
from hashcondense.condense.synthetic import SET_FILE
from hashcondense.data import RetrievalDataset, load_dataset
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import EvalConfig, run_evaluation
from hashcondense.experiments.spec import Cell, Experiment
from hashcondense.experiments.store import SET_BUDGET, SET_ID, CellStore, Locked
from hashcondense.io.atomic import write_json
from hashcondense.train.config import TrainConfig
from hashcondense.utils.logs import stage

__all__ = ["CellStatus", "adopt_run", "adopt_set", "plan_cells", "run_experiment"]

log = logging.getLogger("hashcondense.experiments")
_TRAIN_FIELDS = {f.name for f in fields(TrainConfig)}


@dataclass
class CellStatus:
    cell: Cell
    status: str  # done | partial | todo | stale (its set was made with settings the code no longer gives)
    seeds_done: int
    cost: str  # what the cell will spend, from its settings (and priced on this machine if asked)
    minutes: float | None = None  # the estimated CPU-minutes of what is left; None: not priced
    shared: Path | None = None  # a finished set of the same resolved settings under another key
    shared_seeds_done: int = 0  # the evaluations already made on `shared`: they count once linked

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
    if cell.condense["method"] == "random":
        condensing = "random selection (no optimisation)"
    else:
        condensing = f"condense {cell.condense['method']}: " + (
            f"{budget / 60:g} CPU-min budget" if budget else "no time budget (the preset's steps)"
        )
    return f"{condensing}; {evaluation}"


def _priced(status: CellStatus, store: CellStore, model: Any, datasets: _Datasets) -> CellStatus:
    """`status` with the estimated CPU-minutes of what the cell has left (see experiments.cost)."""
    cell = status.cell
    try:
        data = datasets.get(cell.evaluate)
    except HashCondenseError:
        status.cost += "; not priced: its data does not load (check --root)"
        return status
    seconds, parts = 0.0, []
    condense_left = cell.condense is not None and (
        status.shared is None and (status.status == "stale" or not store.done(store.set_folder(cell)))
    )
    if condense_left and cell.condense["method"] != "random":
        budget = cell.condense.get("time_budget")
        pool = model.pool_seconds(cell.condense, data, pool_cached=False)
        seconds += (budget or 0.0) + pool
        parts.append(f"condense {budget / 60:.0f}" if budget else "condense ? (no budget)")
        if pool:
            parts.append(f"pool {pool / 60:.0f} unless cached")
    train_images = model.decoded_images(cell.condense, data) if cell.condense else len(data.indices("train"))
    seeds_left = len(cell.seeds) - max(status.seeds_done, status.shared_seeds_done)
    if seeds_left:
        per_seed = model.evaluation_seconds(cell.evaluate, data, train_images)
        seconds += seeds_left * per_seed
        parts.append(f"evaluation {seeds_left} x {per_seed / 60:.1f}")
    status.minutes = seconds / 60
    status.cost += f"; ~{status.minutes:.0f} CPU-min left ({' + '.join(parts) or 'nothing'})"
    return status


def plan_cells(
    experiment: Experiment,
    store: CellStore,
    preset: str,
    pattern: str = "*",
    root: str | None = None,
    price: Any = None,
) -> list[CellStatus]:
    """The cells whose key matches `pattern` (fnmatch, e.g. "iem/*"), with what the store holds and,
    given a `price` model (`experiments.cost.CostModel`), what is left of each in CPU-minutes."""
    datasets = _Datasets()
    out = []
    for cell in experiment.cells(preset, root=root):
        if not fnmatch.fnmatch(cell.key, pattern):
            continue
        done = len(store.metrics(cell))
        status = "done" if done == len(cell.seeds) else ("partial" if done else "todo")
        shared = None
        try:
            current = current_settings(cell, datasets) if cell.condense is not None else None
            if current is not None:
                stale = _set_outdated(cell, store, current.digest)
                if stale:
                    status, done = "stale", 0
                shared = store.equivalent_set(cell, *current, replacing=stale)
        except HashCondenseError:  # its data does not load here: what the store holds is all we know
            pass
        linked = len(store.metrics(cell, set_folder=shared)) if shared is not None else 0
        if shared is not None and status != "stale":  # its evaluations count once linked
            done, status = linked, "done" if linked == len(cell.seeds) else ("partial" if linked else "todo")
        line = CellStatus(cell, status, done, _cost(cell), shared=shared, shared_seeds_done=linked)
        if shared is not None:
            made = f", with {linked} of its evaluations" if status == "stale" and linked else ""
            line.cost += f"; its set is made (sets/{shared.name}, linked when run{made})"
        out.append(_priced(line, store, price, datasets) if price and status != "done" else line)
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


def _condense_cell(cell: Cell, folder: Path, datasets: _Datasets, quiet: bool, compile: bool) -> None:
    resume = (folder / "checkpoint.safetensors").is_file()
    values = {**cell.condense, "out": str(folder), "resume": resume, "overwrite": not resume}
    config = CondenseConfig.from_dict({**values, "show_progress": not quiet, "compile": compile})
    result = condense(config, dataset=datasets.get(cell.condense))
    facts = {"date": _today(), "stopped": result.stopped, "steps_done": result.steps_done}
    CellStore.mark_done(
        folder, {**facts, "steps_total": result.steps_total, "seconds": round(result.seconds, 1)}
    )


def _evaluate_seed(
    cell: Cell, seed: int, folder: Path, train_set: str, datasets: _Datasets, quiet: bool, compile: bool
) -> None:
    resume = (folder / "checkpoint.safetensors").is_file()
    values = {**cell.evaluate, "train_set": train_set, "seed": seed, "out": str(folder), "resume": resume}
    config = EvalConfig.from_dict({**values, "show_progress": not quiet, "compile": compile})
    metrics = run_evaluation(config, dataset=datasets.get(cell.evaluate))
    facts = {"date": _today(), "map": metrics["map"]}
    if cell.condense is not None:  # which set this measured (store.evaluated)
        facts["set_digest"] = CellStore.recorded_digest(Path(train_set).parent)
    CellStore.mark_done(folder, facts)


class SetSettings(NamedTuple):
    """What the cell's set would be if condensed now: its `config.set_content_digest` (resolved settings, less
    what the method does not read) and budget."""

    digest: str
    budget: dict[str, Any]


def current_settings(cell: Cell, datasets: _Datasets) -> SetSettings:
    config = CondenseConfig.from_dict({**cell.condense, "out": "-"})
    resolved = resolved_settings(config, dataset=datasets.get(cell.condense))
    return SetSettings(set_content_digest(resolved), {k: resolved.get(k) for k in SET_BUDGET})


def _set_outdated(cell: Cell, store: CellStore, current: str) -> bool:
    """The cell's stored set (finished or not) was made with other settings than `current`."""
    recorded = store.recorded_content_digest(store.set_folder(cell))
    return recorded is not None and recorded != current


def _stale_evaluation(store: CellStore, cell: Cell, seed: int) -> str | None:
    """The set digest a finished evaluation of another set than the cell's current one records."""
    folder = store.seed_folder(cell, seed)
    if not store.done(folder) or store.evaluated(cell, seed):
        return None
    return json.loads((folder / "done.json").read_text()).get("set_digest") or "unknown"


def _retire_outdated(store: CellStore, folder: Path, outdated: Callable[[], str | None], why: str) -> bool:
    """Rename `folder` aside when `outdated()` names the old digest (checked again under its lock)."""
    if outdated() is None:
        return False
    with store.locked(folder):
        old = outdated()
        if old is None:
            return False
        stage("%s; kept as %s, computing it again", why, store.retire(folder, old))
        return True


def _retire_stale_set(store: CellStore, cell: Cell, current: str) -> None:
    """Move the cell's set out of its key when it was made with other settings than `current`
    (`CellStore.move_set`: to a key that links to it, else aside). Its evaluations, finished or not,
    go with it (they are keyed on its id): the cell's new set is evaluated afresh."""
    folder = store.set_folder(cell)
    if folder is None:
        return

    def stale() -> str | None:  # the old set's config_digest, which names it when set aside
        recorded = store.recorded_content_digest(folder)
        return store.recorded_digest(folder) if recorded not in (None, current) else None

    if stale() is None:
        return
    if folder.is_symlink():  # a linked set stays with its owner: only this key's link goes
        owner = folder.resolve()
        stage("cell %s: the set it links to (%s) no longer has its settings; unlinked", cell.key, owner)
        folder.unlink(missing_ok=True)
        return
    with store.locked(folder):
        old = stale()
        if old is not None:
            stage(
                "cell %s: its set was made with other settings than the code resolves today; kept as %s, "
                "computing it again",
                cell.key,
                store.move_set(folder, old),
            )


def _run_cell(
    cell: Cell,
    store: CellStore,
    datasets: _Datasets,
    quiet: bool,
    compile: bool,
    current: SetSettings | None,
) -> str:
    """Condense (unless shared or done) and evaluate one cell; `current`: its set's resolved settings."""
    set_folder = store.set_folder(cell)
    if set_folder is not None and current is not None:
        _retire_stale_set(store, cell, current.digest)
        shared = store.share_set(cell, *current)
        if shared is not None:
            stage("cell %s: its set has the settings of %s; shared, not condensed again", cell.key, shared)
        if not store.done(set_folder):
            stage("cell %s: condensing -> %s", cell.key, set_folder)
            with store.locked(set_folder):
                if not store.done(set_folder):  # another process may have finished it meanwhile
                    if store.recorded_digest(set_folder) is None:  # a new set, not an interrupted one
                        store.new_set(set_folder, current.digest)
                    _condense_cell(cell, set_folder, datasets, quiet, compile)
    train_set = str(set_folder / "synthetic.safetensors") if set_folder else cell.evaluate["train_set"]
    for seed in cell.seeds:
        folder = store.seed_folder(cell, seed)

        why = f"cell {cell.key}: seed {seed} evaluated a set since replaced"
        _retire_outdated(store, folder, functools.partial(_stale_evaluation, store, cell, seed), why)
        if store.evaluated(cell, seed):
            continue
        stage("cell %s: evaluating seed %d -> %s", cell.key, seed, folder)
        with store.locked(folder):
            if not store.evaluated(cell, seed):
                _evaluate_seed(cell, seed, folder, train_set, datasets, quiet, compile)
    return "done"


def run_experiment(
    experiment: Experiment,
    store: CellStore,
    preset: str,
    pattern: str = "*",
    root: str | None = None,
    quiet: bool = False,
    compile: bool = False,
) -> list[tuple[str, str]]:
    """Compute every matching cell not yet in the store; returns (cell key, what happened) pairs.
    `compile`: the cells computed now torch.compile their networks (`runtime.compiled`); it is not part
    of a cell's key (each run's config.json records it), so cells made either way fill one table."""
    datasets = _Datasets()
    outcome = []
    for cell in experiment.cells(preset, root=root):
        if not fnmatch.fnmatch(cell.key, pattern):
            continue
        current = current_settings(cell, datasets) if cell.condense is not None else None
        if len(store.metrics(cell)) == len(cell.seeds) and not (
            current and _set_outdated(cell, store, current.digest)
        ):
            outcome.append((cell.key, "already done"))
            continue
        try:
            outcome.append((cell.key, _run_cell(cell, store, datasets, quiet, compile, current)))
        except Locked as busy:
            stage("cell %s: %s is being computed by another process; skipped", cell.key, busy)
            outcome.append((cell.key, "skipped: running elsewhere"))
    return outcome


def _deciding(values: dict[str, Any]) -> dict[str, Any]:
    """An evaluation config reduced to what decides its numbers: resolved, without the fields that say
    where files are or how it was driven, `eval_epochs` (measurements on the way) and `auto_steps` when
    `epochs` is set (it is then unused)."""
    from hashcondense.evaluate.pipeline import RESUME_FREE, RESUME_FREE_TRAIN

    resolved = EvalConfig.from_dict({**values, "out": "-"}).as_dict()
    kept = {k: v for k, v in resolved.items() if k not in RESUME_FREE and k != "train_set"}
    train = {k: v for k, v in kept.pop("train").items() if k not in RESUME_FREE_TRAIN}
    if train.get("epochs"):
        train.pop("auto_steps", None)
    return {**kept, "train": train}


def adopt_set(store: CellStore, cell: Cell, source: str | Path) -> Path:
    """Copy a finished condensation run made outside the store (a `hashcondense condense` folder) into
    `cell`'s set folder, when the settings it recorded (`config.set_content_digest`) are what the cell
    resolves today: a probe run with the cell's settings is not condensed again. Refuses anything else."""
    if cell.condense is None:
        raise HashCondenseError(f"cell {cell.key} trains on a named set; it has no condensed set to adopt")
    source = Path(source)
    recorded = store.recorded_content_digest(source)
    if recorded is None or not (source / SET_FILE).is_file():
        raise HashCondenseError(f"{source} holds no finished condensation run (config.json and {SET_FILE})")
    current, budget = current_settings(cell, _Datasets())
    if recorded != current:
        raise HashCondenseError(
            f"{source} was not condensed with cell {cell.key}'s settings (digests differ)"
        )
    recorded_budget = store.recorded_budget(source)
    if recorded_budget != budget:
        raise HashCondenseError(
            f"{source} was condensed under another budget than cell {cell.key}'s "
            f"({recorded_budget} against {budget})"
        )
    folder = store.set_folder(cell)
    _retire_stale_set(store, cell, current)
    if store.recorded_digest(folder) is not None:
        raise HashCondenseError(f"cell {cell.key} already has its set (or a run making it) in {folder}")
    card = json.loads((source / "card.json").read_text()) if (source / "card.json").is_file() else {}
    with store.locked(folder):
        store.new_set(folder, current)
        for path in source.iterdir():
            if path.is_dir():
                shutil.copytree(path, folder / path.name, dirs_exist_ok=True)
            elif path.name not in (CHECKPOINT, ".lock", "done.json", SET_ID):
                shutil.copy2(path, folder / path.name)
        facts = {key: card.get(key) for key in ("stopped", "steps_done", "steps_total")}
        CellStore.mark_done(folder, {"date": _today(), **facts, "adopted_from": str(source)})
    return folder


def adopt_run(
    store: CellStore,
    cell: Cell,
    seed: int,
    config: dict[str, Any],
    metrics: dict[str, Any],
    source: str,
    date: str | None = None,
    train_set: dict[str, Any] | None = None,
) -> Path:
    """Put a finished `hashcondense train` run measured outside the store (its config.json "config" and
    its metrics.json) into `cell`'s seed folder, when its settings are the cell's: a whole-split run
    of hours is then not repeated for the report. Refuses a run of other settings, naming them.
    A cell that condenses a set takes a run that trained on that very set: `train_set` is the
    description its config.json records, whose set digest must be the stored set's; the cell's
    evaluation length (`auto_steps`) then counts in the epochs it gives on that set.
    `date`: when the run was measured (default today)."""
    wanted = _deciding({**cell.evaluate, "seed": seed})
    found = _deciding(config)
    if wanted["train"].get("flip") is None:  # the dataset's default, which the run resolved and recorded
        wanted["train"]["flip"] = found["train"].get("flip")
    facts: dict[str, Any] = {}
    if cell.condense is not None:
        stored = store.recorded_digest(store.set_folder(cell))
        card = (train_set or {}).get("card") or {}
        if stored is None or not store.done(store.set_folder(cell)) or card.get("config_digest") != stored:
            raise HashCondenseError(f"{source} did not train on cell {cell.key}'s stored set")
        if not wanted["train"].get("epochs"):
            recipe = TrainConfig(**{k: v for k, v in wanted["train"].items() if k in _TRAIN_FIELDS})
            wanted["train"]["epochs"] = recipe.resolved_epochs(int(train_set["num_images"]))
            wanted["train"].pop("auto_steps", None)
        facts["set_digest"] = stored
    elif config.get("train_set") != cell.evaluate.get("train_set"):
        raise HashCondenseError(
            f"{source} was not run with cell {cell.key}'s settings (differ: ['train_set'])"
        )
    if wanted != found:
        differ = sorted(
            {k for k in wanted if wanted[k] != found.get(k)}
            | {f"train.{k}" for k in wanted["train"] if wanted["train"][k] != found["train"].get(k)}
        )
        raise HashCondenseError(f"{source} was not run with cell {cell.key}'s settings (differ: {differ})")
    folder = store.seed_folder(cell, seed)
    if cell.condense is not None:
        why = f"cell {cell.key}: seed {seed} evaluated a set since replaced"
        _retire_outdated(store, folder, functools.partial(_stale_evaluation, store, cell, seed), why)
    if store.evaluated(cell, seed):
        raise HashCondenseError(f"cell {cell.key} already has a finished seed {seed} in {folder}")
    with store.locked(folder):
        write_json(folder / "config.json", {"config": config, "adopted_from": source})
        write_json(folder / "metrics.json", metrics)
        facts = {"date": date or _today(), "map": metrics["map"], "adopted_from": source, **facts}
        CellStore.mark_done(folder, facts)
    return folder
