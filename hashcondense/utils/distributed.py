"""Several processes of one run: rank and world size from the launcher, the process group, and the
few collectives the library needs.

A run is distributed when a launcher started it: `torchrun` (or `hashcondense condense --nproc N`,
which starts torchrun's elastic agent itself) sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and
MASTER_PORT in every process. `launched_world_size()` reads them without importing torch (the command
line answers mistakes before torch loads); `init_from_env(device)` starts the process group: gloo for
a CPU run; for a CUDA run "cpu:gloo,cuda:nccl" (CUDA tensors over nccl) plus a gloo group, because
every collective here moves small CPU tensors or pickled objects, which nccl cannot carry.

Rules the callers follow (and why):
- Only rank 0 writes a run folder (`is_main()`); the others compute and take part in collectives.
- A decision that could differ between processes (a file exists, a time budget is spent) is taken on
  rank 0 and sent to all (`on_main`, `broadcast_object`), or agreed after every rank has tried
  (`agree`): a rank that raised while the others wait in a collective would hang them.
- A collective that fails because another process died raises `LostPeer`, a one-line error.

Without a launcher every function works as in one process of a world of one: `rank()` is 0,
`world_size()` 1, the collectives return their input.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from hashcondense.errors import HashCondenseError

if TYPE_CHECKING:
    import torch

__all__ = [
    "LostPeer",
    "Stopped",
    "agree",
    "all_gather_objects",
    "all_gather_rows",
    "all_reduce_sum",
    "backend",
    "barrier",
    "broadcast_float",
    "broadcast_object",
    "broadcast_tensors_",
    "collective",
    "contiguous_shares",
    "init_from_env",
    "is_active",
    "is_replicated",
    "is_main",
    "guard_peers",
    "is_peer_failure",
    "launched_by_hashcondense",
    "launched_rank",
    "launched_world_size",
    "local_device",
    "on_main",
    "rank",
    "replicated",
    "shutdown",
    "world_size",
]

T = TypeVar("T")

# Set by `hashcondense condense --nproc N` in the processes it starts: the launcher reports a failed
# process in one line itself, so the others need not.
LAUNCHER_ENV = "HASHCONDENSE_LAUNCHED"

_state: dict[str, Any] = {"backend": None, "cpu_group": None, "started_here": False}


class LostPeer(HashCondenseError):
    """A collective failed: another process of the run stopped (died, was killed, or raised). Its own
    exit status (3), so that a launcher tells it from the failure that caused it."""

    exit_code = 3


class Stopped(BaseException):
    """The launcher stopped this process (SIGTERM) because another process of the run failed.

    A BaseException, like KeyboardInterrupt: `finally` blocks and the atomic writers' clean-up run,
    nothing catches it by accident."""


# ---- the launcher's environment (no torch) ------------------------------------------------------------


def replicated(exc: HashCondenseError) -> HashCondenseError:
    """Mark an error every process raises alike (rank 0 alone needs to print it)."""
    exc.replicated = True  # type: ignore[attr-defined]
    return exc


def is_replicated(exc: BaseException) -> bool:
    """Whether every process raised `exc` alike: marked so, or raised before the process group started
    (then it depends only on the command line and the files, the same for every process)."""
    return bool(getattr(exc, "replicated", False)) or not _state["started_here"]


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        raise HashCondenseError(
            f"environment variable {name}={value!r} is not a whole number; start the processes with "
            "torchrun or --nproc"
        ) from None


def launched_world_size() -> int:
    """WORLD_SIZE as the launcher set it (1 without a launcher)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def launched_rank() -> int:
    """RANK as the launcher set it (0 without a launcher)."""
    return _env_int("RANK", 0)


def launched_by_hashcondense() -> bool:
    """Whether `--nproc` started this process (its launcher reports failures)."""
    return os.environ.get(LAUNCHER_ENV) == "1"


# ---- the process group ----------------------------------------------------------------------------------


def _dist() -> Any:
    import torch.distributed as dist

    return dist


def is_active() -> bool:
    """Whether this process belongs to a process group of more than one process."""
    dist = _dist()
    return bool(dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1)


def rank() -> int:
    return int(_dist().get_rank()) if is_active() else 0


def world_size() -> int:
    return int(_dist().get_world_size()) if is_active() else 1


def is_main() -> bool:
    """Rank 0: the process that writes files and takes the decisions."""
    return rank() == 0


def backend() -> str | None:
    """The process group's backend ("gloo" or "cpu:gloo,cuda:nccl"), None in one process."""
    return _state["backend"] if is_active() else None


def init_from_env(device: torch.device) -> int:
    """Start the process group when a launcher asked for more than one process (gloo on the CPU,
    nccl for CUDA tensors), once per process; returns the world size (1: nothing to start).

    A CUDA `device` without an index must already be this process's GPU: see `local_device`."""
    size = launched_world_size()
    dist = _dist()
    if not dist.is_available():
        if size > 1:
            raise HashCondenseError(
                "this PyTorch build has no torch.distributed; run in one process, without torchrun or --nproc"
            )
        return 1
    if dist.is_initialized():  # started here before, or by the caller's own code
        if _state["backend"] is None and dist.get_world_size() > 1:
            name = str(dist.get_backend())
            # the caller's group may lack gloo: the CPU collectives get their own (every rank is here)
            _state.update(backend=name, cpu_group=None if "gloo" in name else dist.new_group(backend="gloo"))
        return world_size()
    if size <= 1:
        return 1
    missing = [v for v in ("RANK", "MASTER_ADDR", "MASTER_PORT") if v not in os.environ]
    if missing:
        raise HashCondenseError(
            f"WORLD_SIZE={size} is set but {', '.join(missing)} is not; start the processes with torchrun "
            "or --nproc, or unset WORLD_SIZE"
        )
    cuda = device.type == "cuda"
    name = "cpu:gloo,cuda:nccl" if cuda else "gloo"
    if cuda:
        import torch

        torch.cuda.set_device(device)
    try:
        dist.init_process_group(backend=name)
    except (RuntimeError, ValueError) as exc:
        raise HashCondenseError(
            f"could not start the process group ({name}, rank {launched_rank()} of {size}): "
            f"{_first_line(exc)}; check the rendezvous flags (--master-addr/--rdzv-endpoint)"
        ) from None
    _state.update(backend=name, started_here=True)
    # Every collective here carries CPU tensors or pickles: give them a gloo group when the default
    # backend is not gloo.
    _state["cpu_group"] = dist.new_group(backend="gloo") if cuda else None
    return size


def local_device(device: torch.device) -> torch.device:
    """A CUDA device without an index -> this process's GPU (LOCAL_RANK) when launched; else as given."""
    import torch

    if device.type == "cuda" and device.index is None and launched_world_size() > 1:
        return torch.device("cuda", _env_int("LOCAL_RANK", 0) % max(1, torch.cuda.device_count()))
    return device


def shutdown() -> None:
    """End the process group this module started (nothing otherwise)."""
    dist = _dist()
    if _state["started_here"] and dist.is_initialized():
        import gc

        gc.collect()  # first the objects that still hold the group (a DDP reducer in a reference cycle)
        dist.destroy_process_group()
    _state.update(backend=None, cpu_group=None, started_here=False)


# ---- collectives ------------------------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return (text[0] if text else type(exc).__name__)[:160]


def _lost_peer(what: str, exc: BaseException) -> LostPeer:
    return LostPeer(
        f"rank {rank()} of {world_size()} lost contact with another process of the run while "
        f"{what} ({_first_line(exc)}); the run stopped; the launcher's report names the process that "
        "failed; run the same command with --resume to continue from the last checkpoint"
    )


def collective(what: str, call: Callable[[], T]) -> T:
    """Run a collective; a failure (a peer died or raised) becomes a one-line `LostPeer`."""
    try:
        return call()
    except RuntimeError as exc:  # torch.distributed.DistBackendError is a RuntimeError
        raise _lost_peer(what, exc) from None


# What the transports say when the other end of a connection is gone (gloo: "[.../gloo/transport/tcp/
# pair.cc:537] Read error ...: Connection reset by peer"; nccl: "NCCL communicator was aborted").
_PEER_FAILURE_MARKS = ("gloo", "nccl", "connection", "ProcessGroup", "closed by peer", "timed out")


def is_peer_failure(exc: BaseException) -> bool:
    """Whether `exc`, raised by work that contains collectives among other things (a
    DistributedDataParallel forward and backward), came from the process group rather than from the
    work itself: a `torch.distributed.DistError`, or a RuntimeError naming the transport."""
    dist = _dist()
    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(mark.lower() in text.lower() for mark in _PEER_FAILURE_MARKS)


def guard_peers(what: str, call: Callable[[], T]) -> T:
    """`call()`, whose collectives are inside it (DistributedDataParallel): a failure of the process
    group becomes a one-line `LostPeer`; any other error is raised as it is."""
    try:
        return call()
    except RuntimeError as exc:
        if is_active() and is_peer_failure(exc):
            raise _lost_peer(what, exc) from None
        raise


def barrier(what: str = "waiting for the other processes") -> None:
    if is_active():
        collective(what, lambda: _dist().barrier(group=_state["cpu_group"]))


def broadcast_object(obj: T, what: str, src: int = 0) -> T:
    """Rank `src`'s `obj` on every rank (pickled; CPU tensors inside are fine)."""
    if not is_active():
        return obj
    box = [obj]
    collective(what, lambda: _dist().broadcast_object_list(box, src=src, group=_state["cpu_group"]))
    return box[0]


def all_gather_objects(obj: T, what: str) -> list[T]:
    """Every rank's `obj`, in rank order (pickled)."""
    if not is_active():
        return [obj]
    out: list[Any] = [None] * world_size()
    collective(what, lambda: _dist().all_gather_object(out, obj, group=_state["cpu_group"]))
    return out


def all_gather_rows(block: torch.Tensor, what: str, counts: list[int] | None = None) -> torch.Tensor:
    """The concatenation (dim 0, rank order) of every rank's `block`; blocks may differ in their
    number of rows (`counts`, per rank, when the caller knows them), not in the rest of their shape or
    dtype. Exact: the values are copied, not summed."""
    if not is_active():
        return block
    import torch

    dist = _dist()
    local = block.detach().to("cpu").contiguous()
    if counts is None:
        counts = all_gather_objects(int(local.shape[0]), what)
    padded = local.new_zeros((max(counts), *local.shape[1:]))
    padded[: local.shape[0]] = local
    parts = [torch.empty_like(padded) for _ in counts]
    collective(what, lambda: dist.all_gather(parts, padded, group=_state["cpu_group"]))
    return torch.cat([part[:n] for part, n in zip(parts, counts, strict=True)]).to(block.device)


def all_reduce_sum(tensor: torch.Tensor, what: str) -> torch.Tensor:
    """The element-wise sum of every rank's `tensor` (same shape everywhere), on every rank; a new
    tensor on `tensor`'s device (the default group: gloo for CPU tensors, nccl for CUDA ones). Every
    rank gets the same bits."""
    if not is_active():
        return tensor
    total = tensor.detach().clone()
    collective(what, lambda: _dist().all_reduce(total))
    return total


def broadcast_tensors_(tensors: list[torch.Tensor], what: str, src: int = 0) -> None:
    """Overwrite every rank's `tensors` (in place, same shapes and order everywhere) with rank `src`'s,
    on their own device (the default group)."""
    if not is_active():
        return
    dist = _dist()
    for tensor in tensors:
        collective(what, lambda t=tensor: dist.broadcast(t, src=src))


def broadcast_float(value: float, what: str, src: int = 0) -> float:
    """Rank `src`'s number on every rank (e.g. the elapsed seconds that decide a time budget)."""
    if not is_active():
        return value
    import torch

    box = torch.tensor([value], dtype=torch.float64)
    collective(what, lambda: _dist().broadcast(box, src=src, group=_state["cpu_group"]))
    return float(box[0])


def on_main(call: Callable[[], T], what: str) -> T:
    """`call()` run on rank 0 only; its result (or its `HashCondenseError`, raised on every rank) is
    sent to all. Use it for what only rank 0 may do or decide (read the run folder, check a file)."""
    if not is_active():
        return call()
    outcome: tuple[str, Any] = ("ok", None)
    if is_main():
        try:
            outcome = ("ok", call())
        except HashCondenseError as exc:
            outcome = ("error", str(exc))
    kind, value = broadcast_object(outcome, what)
    if kind == "error":
        raise replicated(HashCondenseError(value))
    return value


def agree(call: Callable[[], T], what: str) -> T:
    """`call()` run on every rank; if any rank raised a `HashCondenseError`, every rank raises the
    first failing rank's message (so no rank is left waiting in a later collective)."""
    if not is_active():
        return call()
    result: Any = None
    error: str | None = None
    try:
        result = call()
    except HashCondenseError as exc:
        error = str(exc)
    errors = all_gather_objects(error, what)
    for source, message in enumerate(errors):
        if message is not None:
            raise replicated(HashCondenseError(message if source == 0 else f"rank {source}: {message}"))
    return result


def contiguous_shares(count: int, parts: int) -> list[list[int]]:
    """0..count-1 cut into `parts` consecutive runs whose lengths differ by at most one (the first
    runs take the extra items), e.g. (10, 3) -> [[0..3], [4..6], [7..9]]."""
    base, extra = divmod(count, parts)
    shares, start = [], 0
    for p in range(parts):
        size = base + (1 if p < extra else 0)
        shares.append(list(range(start, start + size)))
        start += size
    return shares
