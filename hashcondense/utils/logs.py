"""A run's log file: INFO and above of every `hashcondense.*` logger, appended to `out/log.txt`."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

__all__ = ["run_log"]


@contextlib.contextmanager
def run_log(out: Path) -> Iterator[None]:
    """Log INFO and above of `hashcondense.*` to out/log.txt for the duration of the run."""
    root = logging.getLogger("hashcondense")
    handler = logging.FileHandler(out / "log.txt", mode="a", encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    old_level = root.level
    root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:
        root.setLevel(logging.INFO)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)
        handler.close()
