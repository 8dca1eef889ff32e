"""Logging of a run: its log file, records made before the file may exist, and stage lines.

- `run_log(out)`: INFO and above of every `hashcondense.*` logger, appended to `out/log.txt`.
- `collect_logs()`: keeps the records of a run's set-up, which comes before its folder is created (a
  mistake found there leaves nothing behind); `run_log(out, earlier=...)` writes them first.
- `stage(message)`: a line that says what a long run is doing ("training IEM model pool member 1/5");
  logged to the run's log, and shown on the console by the command line (logger `hashcondense.stage`).
- `FILE_ONLY`: `extra` for records that belong in log.txt but not on the console (an error the command
  line prints itself).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

__all__ = ["FILE_ONLY", "collect_logs", "run_log", "stage"]

FILE_ONLY = {"console": False}
_stage_log = logging.getLogger("hashcondense.stage")


def stage(message: str, *args: object) -> None:
    """Announce a stage of the run (see the module docstring)."""
    _stage_log.info(message, *args)


class _Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _attached(handler: logging.Handler) -> Iterator[None]:
    root = logging.getLogger("hashcondense")
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


@contextlib.contextmanager
def collect_logs() -> Iterator[list[logging.LogRecord]]:
    """The INFO-and-above records of `hashcondense.*` made inside the block."""
    keep = _Keep()
    with _attached(keep):
        yield keep.records


@contextlib.contextmanager
def run_log(out: Path, earlier: list[logging.LogRecord] | None = None) -> Iterator[None]:
    """Log INFO and above of `hashcondense.*` to out/log.txt for the duration of the run, after the
    `earlier` records (see `collect_logs`)."""
    handler = logging.FileHandler(out / "log.txt", mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    for record in earlier or []:
        handler.handle(record)
    try:
        with _attached(handler):
            yield
    finally:
        handler.close()
