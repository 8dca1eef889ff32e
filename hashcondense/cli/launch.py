"""`--nproc N`: run a command in N processes on this machine, as `torchrun --standalone
--nproc-per-node N -m hashcondense ...` would, through torchrun's own elastic agent (a c10d rendezvous
on a free 127.0.0.1 port, no restarts).

The workers are `python -m hashcondense <the same arguments without --nproc>`. A worker that fails
stops the others (the agent sends them SIGTERM); this module then says in one line which rank failed
and how, unless a worker already printed a one-line error (exit status 2, a user mistake every rank
agreed on). Each worker gets one thread unless OMP_NUM_THREADS or --threads says otherwise (as
torchrun does).
"""

from __future__ import annotations

import logging
import os
import sys
import uuid
from pathlib import Path

from hashcondense.errors import HashCondenseError
from hashcondense.utils.distributed import LAUNCHER_ENV, LostPeer

__all__ = ["describe_failure", "run_workers", "without_nproc"]

# exit status of a worker that lost a peer (LostPeer) or was stopped by the agent (SIGTERM): not causes
_CONSEQUENCES = {LostPeer.exit_code, 143, -15}


def without_nproc(argv: list[str]) -> list[str]:
    """`argv` with `--nproc N` / `--nproc=N` taken out (the workers must not launch again)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == "--nproc":
            skip = True
        elif not arg.startswith("--nproc="):
            out.append(arg)
    return out


def describe_failure(failures: dict[int, object], out: str | None) -> str | None:
    """One line naming the rank that failed first (ignoring those that only stopped because of it), or
    None when a worker already printed its own one-line error (exit status 2)."""
    if any(getattr(f, "exitcode", None) == HashCondenseError.exit_code for f in failures.values()):
        return None
    causes = {r: f for r, f in failures.items() if getattr(f, "exitcode", None) not in _CONSEQUENCES}
    pool = causes or failures
    rank = min(pool, key=lambda r: getattr(pool[r], "timestamp", 0))
    failure = pool[rank]
    code = int(getattr(failure, "exitcode", 1))
    how = f"was killed by {failure.signal_name()}" if code < 0 else f"exited with status {code}"  # type: ignore[attr-defined]
    pid = getattr(failure, "pid", None)
    return f"rank {rank}{f' (pid {pid})' if pid else ''} {how}; the run stopped; {_where(out)}"


def _where(out: str | None) -> str:
    """Where a resumed run will continue from: the last complete checkpoint in `out`."""
    if not out:
        return "run the same command again"
    path = Path(out) / "checkpoint.safetensors"
    try:
        from hashcondense.io.tensors import load_tensors

        _, meta = load_tensors(path, what="checkpoint")
        if "epoch" in meta:  # hashcondense train's
            at = f"its last complete checkpoint is after epoch {meta.get('epoch')}"
        else:
            at = f"its last complete checkpoint is outer loop {meta.get('outer')}, step {meta.get('inner')}"
    except (HashCondenseError, OSError):
        at = "no checkpoint was written yet"
    return f"{out}: {at}; run the same command with --resume to continue"


def run_workers(nproc: int, argv: list[str], out: str | None = None, threads: int | None = None) -> int:
    """Run `python -m hashcondense argv` in `nproc` processes on 127.0.0.1; returns the exit status."""
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    saved = {name: os.environ.get(name) for name in (LAUNCHER_ENV, "OMP_NUM_THREADS")}
    os.environ[LAUNCHER_ENV] = "1"  # inherited by the workers: they leave failure reports to us
    if threads is None:
        os.environ.setdefault("OMP_NUM_THREADS", "1")
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=int(nproc),
        run_id=f"hashcondense-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",
        rdzv_endpoint="127.0.0.1:0",  # a free port
        max_restarts=0,
        monitor_interval=0.1,
        local_addr="127.0.0.1",
    )
    # the agent's own log lines (rendezvous, "sending SIGTERM", its failure table) would repeat what the
    # workers and the line below say
    elastic = logging.getLogger("torch.distributed.elastic")
    level = elastic.level
    elastic.setLevel(logging.CRITICAL)
    try:
        elastic_launch(config, sys.executable)("-u", "-m", "hashcondense", *without_nproc(argv))
    except ChildFailedError as exc:
        line = describe_failure(dict(exc.failures), out)
        if line is None:
            return HashCondenseError.exit_code
        print(f"hashcondense: error: {line}", file=sys.stderr)
        return 1
    except SignalException as exc:  # Ctrl-C or a kill of this process: the agent stopped the workers
        print(f"hashcondense: interrupted ({exc.sigval.name}); {_where(out)}", file=sys.stderr)
        return 130
    finally:
        elastic.setLevel(level)
        for name, value in saved.items():  # this process's environment as it was (tests call main)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    return 0
