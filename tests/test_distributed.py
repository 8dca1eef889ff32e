"""Condensation in 2 processes on 127.0.0.1 (gloo): the same set as one process, bit for bit, for
random, dm and iem, and within the stated tolerance for dsa and idc (networks trained data-parallel),
also after a resume mid outer loop; an undistributed method refused; a time budget that stops both
ranks together; a rank killed mid-run -> one line naming it, and `--resume` (in 2 processes, then in
1) continuing to the same set as one uninterrupted process. Tiny digits runs, one thread per process
(README "Several processes")."""

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hashcondense.condense import CondenseConfig, condense

sys.path.insert(0, str(Path(__file__).parent))
from distributed_worker import GRADIENT, LOOPS, SETTINGS, config  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed in this build"),
]
REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(OMP_NUM_THREADS="1", HASHCONDENSE_PROGRESS="0", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _same_set(a: Path, b: Path) -> None:
    x, y = load_file(a / "synthetic.safetensors"), load_file(b / "synthetic.safetensors")
    assert x.keys() == y.keys()
    for name in x:
        assert torch.equal(x[name], y[name]), name
    assert (a / "synthetic.safetensors").read_bytes() == (b / "synthetic.safetensors").read_bytes()


def torchrun_worker(worker: Path, out: Path) -> subprocess.CompletedProcess:
    """Run the test worker script `worker` OUT under torchrun in 2 processes on 127.0.0.1 (a free port
    through the c10d rendezvous, no restarts); it must succeed. Shared by the train tests."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc-per-node", "2",
        "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:0", "--rdzv-id", uuid.uuid4().hex,
        "--local-addr", "127.0.0.1", "--max-restarts", "0", str(worker), str(out),
    ]  # fmt: skip
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """OUT of tests/distributed_worker.py, run by torchrun in 2 processes."""
    out = tmp_path_factory.mktemp("dist")
    return out, torchrun_worker(WORKER, out)


@pytest.mark.parametrize("method", sorted(LOOPS))
def test_two_processes_give_the_same_set_as_one(tmp_path, two_process_runs, method):
    out, _ = two_process_runs
    condense(config(tmp_path, method))  # one process; iem trains its own pool
    _same_set(out / method, tmp_path / method)
    history = [s["loss"] for s in json.loads((out / method / "history.json").read_text())["steps"]]
    assert history == [
        s["loss"] for s in json.loads((tmp_path / method / "history.json").read_text())["steps"]
    ]
    record = json.loads((out / method / "card.json").read_text())["run"]["distributed"]
    assert record["world_size"] == 2 and record["backend"] == "gloo"
    assert record["classes_by_rank"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    if method == "iem":  # member k trained by rank k % 2
        assert record["pool_members_by_rank"] == [[0, 2], [1]]
    assert json.loads((out / method / "config.json").read_text())["distributed"] == record
    single = json.loads((tmp_path / method / "card.json").read_text())["run"]["distributed"]
    assert single["world_size"] == 1 and single["classes_by_rank"] == [list(range(10))]


def test_only_rank_0_writes_the_run_folder(two_process_runs):
    out, done = two_process_runs
    log = (out / "dm" / "log.txt").read_text()
    assert log.count("condense digits with dm") == 1  # rank 1 never appended to it
    assert not list(out.glob("**/.*.tmp"))


# README "Several processes": dsa and idc train their network data-parallel, so 2 processes give one
# process's set to float rounding of the network updates. Measured: images within 8e-6 (dsa) and 1.2e-7
# (idc), step losses within 5e-7 relative; the bounds leave room for other machines' kernels.
IMAGE_TOLERANCE = 1e-4
LOSS_TOLERANCE = 1e-5  # relative, per step


def _close_sets(a: Path, b: Path) -> None:
    x, y = load_file(a / "synthetic.safetensors"), load_file(b / "synthetic.safetensors")
    assert x.keys() == y.keys()
    for name in x:
        if x[name].is_floating_point():
            assert torch.allclose(x[name], y[name], rtol=0, atol=IMAGE_TOLERANCE), name
        else:
            assert torch.equal(x[name], y[name]), name
    losses = [[s["loss"] for s in json.loads((r / "history.json").read_text())["steps"]] for r in (a, b)]
    assert len(losses[0]) == len(losses[1])
    for p, q in zip(*losses, strict=True):
        assert abs(p - q) <= LOSS_TOLERANCE * abs(q), (p, q)


@pytest.mark.parametrize("method", sorted(GRADIENT))
def test_gradient_matching_in_two_processes_gives_one_process_set_within_tolerance(
    tmp_path, two_process_runs, method
):
    out, _ = two_process_runs
    condense(config(tmp_path, method))
    _close_sets(out / method, tmp_path / method)
    record = json.loads((out / method / "card.json").read_text())["run"]["distributed"]
    assert record["world_size"] == 2 and record["classes_by_rank"] == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]]
    if method == "idc":  # stopped after one step (network and momentum checkpointed), resumed in 2
        summary = json.loads((out / "summary.json").read_text())
        assert all(rank["idc_first"] == ["time_budget", 1] for rank in summary["ranks"])
        _close_sets(out / "idc_resumed", tmp_path / method)


def test_undistributed_method_is_refused_in_one_line():
    from hashcondense.condense.methods.random import RandomSelection
    from hashcondense.condense.setup import check_distributable
    from hashcondense.errors import HashCondenseError

    class Undistributed(RandomSelection):
        name = "undistributed"
        distributed = False

    check_distributable(Undistributed, 1)
    with pytest.raises(HashCondenseError, match="'undistributed' does not run in several processes yet"):
        check_distributable(Undistributed, 2)


def test_time_budget_stops_every_rank_at_the_same_step(two_process_runs):
    out, _ = two_process_runs
    summary = json.loads((out / "summary.json").read_text())
    (stopped0, steps0), (stopped1, steps1) = (rank["budget"] for rank in summary["ranks"])
    assert stopped0 == stopped1 == "time_budget" and steps0 == steps1 > 0
    card = json.loads((out / "budget" / "card.json").read_text())
    assert card["steps_done"] == steps0


def _rank_1_of(marker: str) -> int | None:
    """The pid of the worker with RANK=1 among the processes whose environment holds `marker`."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if marker.encode() in environ and b"RANK=1" in environ:
            return int(entry.name)
    return None


def kill_rank_1_at_first_checkpoint(command: list[str], out: Path) -> tuple[int, int, str]:
    """Run `command` (with --nproc 2), SIGKILL its rank 1 once `out` holds a checkpoint; returns
    (the killed pid, the launcher's exit status, its stderr). Shared by the train tests."""
    marker = f"HASHCONDENSE_TEST_RUN={uuid.uuid4().hex}"
    name, value = marker.split("=")
    run = subprocess.Popen(command, env=_env(**{name: value}), stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    victim = None
    while time.monotonic() < deadline and run.poll() is None:
        if (out / "checkpoint.safetensors").exists():
            victim = _rank_1_of(marker)
            if victim:
                break
        time.sleep(0.05)
    assert victim, "the run wrote no checkpoint"
    os.kill(victim, signal.SIGKILL)
    _, err = run.communicate(timeout=120)
    assert err.count("\n") == 1, err
    return victim, run.returncode, err


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_killed_rank_stops_the_run_in_one_line_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    (tmp_path / "cfg.json").write_text(
        json.dumps({k: v for k, v in SETTINGS.items() if k != "show_progress"})
    )
    command = [
        sys.executable, "-m", "hashcondense", "condense", "--config", str(tmp_path / "cfg.json"),
        "--method", "dm", "--checkpoint-every", "10", "--quiet", "--nproc", "2", "--out", str(out),
    ]  # fmt: skip
    victim, code, err = kill_rank_1_at_first_checkpoint([*command, "--outer-loops", "1000000"], out)
    assert code == 1
    assert f"rank 1 (pid {victim}) was killed by SIGKILL" in err and "--resume" in err
    assert not (out / "synthetic.safetensors").exists() and not list(out.glob(".*.tmp"))
    kept = json.loads(_meta(out / "checkpoint.safetensors"))
    assert kept["outer"] % 10 == 0 and kept["outer"] >= 10
    # resume in 2 processes up to 10 outer loops later; equals one process run straight there
    end = kept["outer"] + 10
    done = subprocess.run(
        [*command, "--resume", "--outer-loops", str(end)],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr
    single = CondenseConfig(
        method="dm", outer_loops=end, checkpoint_every=10, out=str(tmp_path / "one"), **SETTINGS
    )
    condense(single)
    _same_set(out, tmp_path / "one")
    # a 2-process checkpoint resumed in one process: the classes are shared out afresh, same numbers
    further = dict(outer_loops=end + 10, checkpoint_every=10, **SETTINGS)
    condense(CondenseConfig(method="dm", out=str(out), resume=True, **further))
    condense(CondenseConfig(method="dm", out=str(tmp_path / "two"), **further))
    _same_set(out, tmp_path / "two")


def _meta(path: Path) -> str:
    from hashcondense.io.tensors import load_tensors

    return json.dumps(load_tensors(path)[1])
