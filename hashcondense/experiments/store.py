"""The cell store: every condensed set and evaluation run of the experiments, keyed by digests of their
resolved configs, so that a finished one is never recomputed and a changed config is.

    <store>/sets/<digest of the condensation config>/     a condensation run folder (shared by every
                                                          cell and experiment that asks for that set)
    <store>/cells/<digest of the cell>/seed<N>/           an evaluation run folder per seed
    .../done.json                                         written last: the folder is finished

A folder's key is a digest of the cell's config as written (method, preset *name*, budget, ...), which
does not change when the code's defaults or a method's preset values do. So each set also records the
digest of its fully resolved settings (`config_digest` in its config.json) and each evaluation of a
set records that digest in its done.json (`set_digest`): the runner recomputes a set whose recorded
settings are not what the code resolves today, and an evaluation counts only for the set it trained on.
Sets are compared on `config.set_content_digest`, recomputed from the settings config.json records: the
resolved settings less those the method does not read (DM's and IEM-without-pool's hash bits and
hashing method), so one DM set serves the 32- and 64-bit cells. A cell whose set key is new but whose
set settings and budget (`SET_BUDGET`: the digests leave the budget out, so that a run can be
extended) are those of a finished set links to it (`share_set`, a symlink).

Evaluations are keyed on the set's id (`set_id`), written into the set folder when it is created and
never changed, not on the folder's path: so a set that is outdated for its own key moves out of it
with its evaluations (`move_set`) and stays what the keys that link to it measure. It moves into the
first such key (their settings are unchanged), else aside as `<key>.stale-<old digest>`, never deleted;
a later key of the same settings and budget links to it there too. A key whose linked set no longer
has its settings drops the link (the runner) and gets a set of its own.

The digests leave out what only says where files are or how a run is driven (output folder, data root,
progress, resume), and an evaluation names its condensed set by the set's id (its key and resolved
digest: the same on any machine), not its path: the store can move and two machines fill the same
keys. Each folder is locked while a process works in it (`fcntl.flock`, released when the process
ends), so several invocations can fill one table side by side: a locked folder is skipped by the
others, an interrupted one (no done.json) is resumed.

A store is meant to be kept under version control (the repository's own is `results/`): the first run
writes a `.gitignore` (`STORE_GITIGNORE`) that keeps out only what a run re-creates or what is large
(locks, resume checkpoints, the model-pool cache, evaluation networks, image grids and exports). The
records the report reads and the condensed sets that later cells evaluate stay in: a store on a
machine that goes away loses nothing a report or a later cell needs.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hashcondense.condense.config import LOCATION_FIELDS, LOCATION_OPTIONS, set_content_digest
from hashcondense.experiments.spec import Cell
from hashcondense.io.atomic import ensure_writable_dir, write_json, write_text

__all__ = ["SET_BUDGET", "SET_ID", "STORE_GITIGNORE", "CellStore", "Locked"]

# what the resolved-settings digest leaves out (a finished run may be extended) but a shared set must
# match: a 1-minute set is not a 30-minute one
SET_BUDGET = ("time_budget", "outer_loops")

# the file in a set folder that holds the set's id (`CellStore.set_id`)
SET_ID = "set_id.json"

# the store's .gitignore: the files a run re-creates (locks, partial writes, resume checkpoints, the pool
# cache) or that are large and not read again (evaluation networks: a DenseNet-121 is 28 MB; grids)
STORE_GITIGNORE = """\
# written by hashcondense's cell store: what stays out of version control. Kept: the records
# (config.json, done.json, metrics.json, card.json, logs) and the condensed sets (synthetic.safetensors)
.lock
*.tmp
checkpoint.safetensors
network.safetensors
.pool_cache/
images/
*.png
"""

# what a set file's metadata leaves out (condense.config), and the device, the budget's clock and
# torch.compile: one key on any machine. A time-budgeted set depends on the machine's speed anyway (the
# steps it reached are in its card and in RESULTS.md), the clock only says how that budget was counted,
# and compiling changes speed and float rounding, not the recipe (each run's config.json records it).
_LOCATION = LOCATION_FIELDS | {"device", "budget_clock", "compile"}


class Locked(Exception):
    """Another process works in this folder."""


def _settings(values: dict[str, Any]) -> dict[str, Any]:
    """A run config without the fields that only say where files are or how the run is driven."""
    kept = {k: v for k, v in values.items() if k not in _LOCATION}
    if isinstance(kept.get("options"), dict):
        kept["options"] = {k: v for k, v in kept["options"].items() if k not in LOCATION_OPTIONS}
    return kept


def _digest(values: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(values, sort_keys=True, default=str).encode()).hexdigest()[:16]


class CellStore:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)

    def prepare(self) -> None:
        """Create the store's folder with its `.gitignore` (kept when one exists: its owner's)."""
        ensure_writable_dir(self.root)
        if not (self.root / ".gitignore").is_file():
            write_text(self.root / ".gitignore", STORE_GITIGNORE)

    def set_folder(self, cell: Cell) -> Path | None:
        return None if cell.condense is None else self.root / "sets" / _digest(_settings(cell.condense))

    def cell_folder(self, cell: Cell, set_folder: Path | None = None) -> Path:
        """The cell's evaluation folder; `set_folder` names the set it evaluates when that is not (yet)
        what the cell's set key holds (a finished set the cell would link, `equivalent_set`)."""
        evaluate = _settings(cell.evaluate)
        folder = set_folder or self.set_folder(cell)
        if folder is not None:  # named by the set's id: a set shared or moved keeps its evaluations
            evaluate["train_set"] = f"set:{self.set_id(folder) if folder.exists() else folder.name}"
        # no cell key in the digest: the same set evaluated the same way is one measurement, shared by
        # every experiment that asks for it (table1's iem/10/64 is also a point of the length curve)
        return self.root / "cells" / _digest({"evaluate": evaluate})

    @staticmethod
    def set_id(folder: Path) -> str:
        """The id a set's evaluations are keyed on: the one its folder records, else (a set made before
        ids were written) the folder's name."""
        real = folder.resolve()
        path = real / SET_ID
        return json.loads(path.read_text())["set_id"] if path.is_file() else real.name

    @staticmethod
    def new_set(folder: Path, digest: str) -> None:
        """Create a set folder with its id: its key and resolved digest, which no other set shares (a
        set replaced under its key had another digest)."""
        ensure_writable_dir(folder)
        if not (folder / SET_ID).is_file():
            write_json(folder / SET_ID, {"set_id": f"{folder.name}-{digest[:12]}"})

    def seed_folder(self, cell: Cell, seed: int, set_folder: Path | None = None) -> Path:
        return self.cell_folder(cell, set_folder) / f"seed{seed}"

    @staticmethod
    def done(folder: Path | None) -> bool:
        return folder is None or (folder / "done.json").is_file()

    @staticmethod
    def mark_done(folder: Path, facts: dict[str, Any]) -> None:
        write_json(folder / "done.json", facts)

    @contextlib.contextmanager
    def locked(self, folder: Path) -> Iterator[None]:
        """Hold the folder's lock for the block; `Locked` if another process holds it. Every write to
        the store happens under a lock, so this is where the store gets its `.gitignore` (`prepare`)."""
        self.prepare()
        ensure_writable_dir(folder)
        with open(folder / ".lock", "a+") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Locked(str(folder)) from None
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _recorded(folder: Path | None) -> dict[str, Any] | None:
        """A set folder's config.json (None: none written yet)."""
        path = None if folder is None else folder / "config.json"
        return json.loads(path.read_text()) if path is not None and path.is_file() else None

    @staticmethod
    def recorded_digest(folder: Path | None) -> str | None:
        """The resolved-settings digest a set folder's config.json records (None: none written yet)."""
        recorded = CellStore._recorded(folder)
        return None if recorded is None else recorded.get("config_digest")

    @staticmethod
    def recorded_content_digest(folder: Path | None) -> str | None:
        """The `config.set_content_digest` of the settings a set folder's config.json records (None:
        none written yet): what decides whether it is the set a cell asks for."""
        recorded = CellStore._recorded(folder)
        if recorded is None:
            return None
        # a config.json without its settings (not written by this library) matches nothing
        return (
            set_content_digest(recorded["config"]) if "config" in recorded else recorded.get("config_digest")
        )

    @staticmethod
    def recorded_budget(folder: Path) -> dict[str, Any]:
        """The `SET_BUDGET` values a set folder's config.json records."""
        config = json.loads((folder / "config.json").read_text()).get("config", {})
        return {k: config.get(k) for k in SET_BUDGET}

    def evaluated(self, cell: Cell, seed: int, set_folder: Path | None = None) -> bool:
        """A finished evaluation of the cell's set as the store holds it now (or of a named set;
        `set_folder`: of that set instead, as `cell_folder`)."""
        folder = self.seed_folder(cell, seed, set_folder)
        if not self.done(folder):
            return False
        if cell.condense is None:
            return True
        measured = json.loads((folder / "done.json").read_text()).get("set_digest")
        return measured is not None and measured == self.recorded_digest(set_folder or self.set_folder(cell))

    def metrics(self, cell: Cell, set_folder: Path | None = None) -> dict[int, dict[str, Any]]:
        """Seed -> metrics.json of the finished evaluations of a cell (of its current set, or of
        `set_folder`, as `cell_folder`)."""
        out = {}
        for seed in cell.seeds:
            folder = self.seed_folder(cell, seed, set_folder)
            if self.evaluated(cell, seed, set_folder) and (folder / "metrics.json").is_file():
                out[seed] = json.loads((folder / "metrics.json").read_text())
        return out

    def share_set(self, cell: Cell, digest: str, budget: dict[str, Any]) -> Path | None:
        """Link the cell's set folder, when it does not exist yet, to a finished set made under another
        key with the same set settings (`digest`, a `config.set_content_digest`) and budget (`SET_BUDGET`
        values): two experiments that write one set differently (table4's explicit `use_pool: true,
        factor: 2` against table1's defaults; table1's 32- and 64-bit DM cells) share it, and its
        evaluations. Returns the shared folder, or None."""
        folder, other = self.set_folder(cell), self.equivalent_set(cell, digest, budget)
        if folder is None or other is None:
            return None
        with contextlib.suppress(FileExistsError):  # another process linked it meanwhile
            folder.symlink_to(other.name)  # relative: the store can move
        return other

    def equivalent_set(
        self, cell: Cell, digest: str, budget: dict[str, Any], replacing: bool = False
    ) -> Path | None:
        """A finished set of resolved settings `digest` and budget `budget` under another key, when the
        cell has no set folder yet, or (`replacing`) has one that is outdated and will be moved out
        (what `share_set` would link; reads only)."""
        folder = self.set_folder(cell)
        if folder is None or (not replacing and (folder.exists() or folder.is_symlink())):
            return None
        for config in sorted((self.root / "sets").glob("*/config.json")):
            other = config.parent
            # a set moved aside is outdated for its own key only: another key of its settings may use it
            if other.is_symlink() or other == folder or not self.done(other):
                continue
            if self.recorded_content_digest(other) == digest and self.recorded_budget(other) == budget:
                return other
        return None

    def linkers(self, folder: Path) -> list[str]:
        """The set keys that link to `folder` (share_set); they name their evaluations after it."""
        return sorted(
            path.name
            for path in (self.root / "sets").iterdir()
            if path.is_symlink() and os.readlink(path) == folder.name
        )

    @staticmethod
    def retire(folder: Path, digest: str | None) -> Path:
        """Rename a folder of outdated settings aside (kept, no longer found by its key)."""
        stem = f"{folder.name}.stale-{(digest or 'unknown')[:12]}"
        target, n = folder.with_name(stem), 1
        while target.exists():
            n += 1
            target = folder.with_name(f"{stem}-{n}")
        folder.rename(target)
        return target

    def move_set(self, folder: Path, digest: str | None) -> Path:
        """Move a set that is outdated for its own key out of it, keeping its id (and so its
        evaluations): into the first key that links to it, whose settings it still has (the others are
        linked there), else aside (`retire`). Call it under the folder's lock."""
        if not (folder / SET_ID).is_file():
            write_json(folder / SET_ID, {"set_id": self.set_id(folder)})
        linkers = self.linkers(folder)
        if not linkers:
            return self.retire(folder, digest)
        home = folder.with_name(linkers[0])
        home.unlink()  # the symlink: a directory cannot be renamed over it
        folder.rename(home)
        for name in linkers[1:]:
            link, temporary = folder.with_name(name), folder.with_name(f".{name}.link")
            temporary.unlink(missing_ok=True)
            temporary.symlink_to(home.name)
            os.replace(temporary, link)  # atomic: a reader sees the old link or the new one
        return home

    def set_card(self, cell: Cell) -> dict[str, Any] | None:
        folder = self.set_folder(cell)
        if folder is None or not (folder / "card.json").is_file():
            return None
        return json.loads((folder / "card.json").read_text())
