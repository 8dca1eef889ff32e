"""Device selection, seeding, thread settings and version records."""

from __future__ import annotations

import os
import platform
import shutil
import sys
from typing import Any, TypeVar

import numpy as np
import torch

from hashcondense.errors import HashCondenseError

__all__ = [
    "check_compile",
    "compiled",
    "generator",
    "resolve_device",
    "seed_everything",
    "tune_allocator",
    "versions",
]


T = TypeVar("T")

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


def check_compile(device: torch.device) -> None:
    """Refuse `compile` where its kernels cannot be built: on a CPU, Inductor compiles C++ and needs a
    compiler (the CXX variable, else g++, c++ or clang++ on the PATH) and the fused norm/ReLU/pool
    kernel (models.fused) ninja; on CUDA, Triton."""
    if device.type == "cuda":
        try:
            import triton  # noqa: F401
        except ImportError:
            raise HashCondenseError(
                "--compile on CUDA needs Triton (pip install triton); or run without --compile"
            ) from None
        return
    if device.type != "cpu":
        raise HashCondenseError(f"--compile is supported on cpu and cuda, not {device.type}; drop --compile")
    names = [os.environ["CXX"]] if os.environ.get("CXX") else ["g++", "c++", "clang++"]
    if not any(shutil.which(name) for name in names):
        raise HashCondenseError(
            f"--compile needs a C++ compiler on a CPU (looked for {', '.join(names)}); "
            "install g++ or run without --compile"
        )
    if not ninja_on_path():  # the fused norm/ReLU/pool kernel is built with it (models.fused)
        raise HashCondenseError(
            "--compile needs ninja on a CPU (pip install ninja); or run without --compile"
        )


def ninja_on_path() -> bool:
    """Whether ninja is on the PATH, after putting the `ninja` Python package's copy there when only
    that is installed (a virtual environment that is not activated): PyTorch's extension builder
    calls ninja by name."""
    if shutil.which("ninja"):
        return True
    try:
        import ninja  # type: ignore[import-not-found]
    except ImportError:
        return False
    os.environ["PATH"] = os.pathsep.join([ninja.BIN_DIR, os.environ.get("PATH", "")])
    return shutil.which("ninja") is not None


def compiled(module: T, enabled: bool) -> T:
    """`module` (a network or a function of one) compiled with torch.compile (Inductor) when `enabled`,
    else `module` itself. `--compile` runs this through `models.fused.accelerated`, which adds the
    fused norm/ReLU/pool kernel on a CPU (IEM/DM steps 1.4-1.5x instead of the figures below).

    Why: on a CPU the compiled ConvNet-3 fuses instance norm, ReLU and pooling into one pass between
    the convolutions: IEM/DM steps 1.1-1.4x faster, evaluation training 1.2x, encoding 1.5x (measured
    on 2 cores, BENCHMARKS.md, issue 26).
    The wrapper shares the module's parameters (optimisers and checkpoints keep using `module`) and
    compiles on its first call (tens of seconds on a CPU); every further network of the same
    architecture reuses the compiled code. Floats are summed in another order than eager PyTorch's, so
    results agree with an uncompiled run to rounding, not bit for bit; the same run repeated on the
    same machine gives the same numbers."""
    if not enabled:
        return module
    return torch.compile(module)  # type: ignore[return-value]  # same call signature


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
