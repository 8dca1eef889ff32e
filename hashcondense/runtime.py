"""Device selection, seeding, thread settings and version records."""

from __future__ import annotations

import os
import platform
import sys
from typing import Any

import numpy as np
import torch

from hashcondense.errors import HashCondenseError

__all__ = ["resolve_device", "seed_everything", "versions", "generator", "tune_allocator"]


_ALLOCATOR_TUNED: bool | None = None


def tune_allocator() -> bool:
    """Keep freed memory in the process instead of returning it to the OS (glibc on Linux).

    Why: a CPU training step allocates and frees activation buffers of 10-130 MB. glibc serves those
    with fresh mmap pages, so every step page-faults them in again (about 2x slower ConvNet-3 steps on
    a 2-core machine; figures in BENCHMARKS.md). Disabling mmap for large blocks and heap trimming
    (mallopt M_MMAP_MAX = 0, M_TRIM_THRESHOLD = max) reuses the memory instead; the cost is that the
    process keeps its peak heap until it exits. Same effect as running under jemalloc with
    MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1. Set HASHCONDENSE_MALLOC_TUNE=0 to opt out.
    Returns True when the allocator was tuned (idempotent; a no-op off glibc).
    """
    global _ALLOCATOR_TUNED
    if _ALLOCATOR_TUNED is not None:
        return _ALLOCATOR_TUNED
    _ALLOCATOR_TUNED = False
    if os.environ.get("HASHCONDENSE_MALLOC_TUNE", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    if platform.libc_ver()[0] != "glibc":
        return False
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        m_trim_threshold, m_mmap_max = -1, -4  # <malloc.h>
        ok = libc.mallopt(m_mmap_max, 0) == 1
        ok = libc.mallopt(m_trim_threshold, 2**31 - 1) == 1 and ok
    except (OSError, AttributeError):
        return False
    _ALLOCATOR_TUNED = ok
    return ok


def resolve_device(name: str | None = "auto") -> torch.device:
    """'auto' picks CUDA when present, then MPS, else CPU; an unavailable device is a user error."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise HashCondenseError(f"unknown device '{name}'; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise HashCondenseError(f"device '{name}' requested but CUDA is not available; use --device cpu")
    return device


def seed_everything(seed: int) -> None:
    """Seed the global generators too (for layers that draw from them, e.g. weight init)."""
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def generator(seed: int, *streams: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch.Generator for an independent random stream derived from (seed, *streams)."""
    ss = np.random.SeedSequence([int(seed), *[int(s) for s in streams]])
    g = torch.Generator(device=device)
    g.manual_seed(int(ss.generate_state(1, dtype=np.uint64)[0] & ((1 << 63) - 1)))
    return g


def versions() -> dict[str, Any]:
    from hashcondense import __version__

    return {
        "hashcondense": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }
