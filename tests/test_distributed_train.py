"""`hashcondense train` in 2 processes on 127.0.0.1 (gloo): data-parallel training against one process
(within the tolerance README "Several processes" states), the query and database encoded in shards
(the same codes as one process, bit for bit), rank 0 alone writing the run folder, mistakes in one
line, and a rank killed mid-run -> one line naming it, then `--resume` (in 2 processes, and in 1)
continuing it. Tiny digits runs, one thread per process."""

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from hashcondense.data import load_dataset
from hashcondense.evaluate import EvalConfig, evaluate_network, load_run_network, run_evaluation
from hashcondense.train import encode

sys.path.insert(0, str(Path(__file__).parent))
from distributed_train_worker import ENCODE_CHUNK, RUNS, SETTINGS, config  # noqa: E402
from test_distributed import _env, kill_rank_1_at_first_checkpoint, torchrun_worker  # noqa: E402

pytestmark = [
    pytest.mark.usefixtures("one_thread"),
    pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed in this build"),
]
WORKER = Path(__file__).with_name("distributed_train_worker.py")
# README "Several processes": 2 processes against 1 on digits (ConvNet-3, instance norm, DHD, Adam). The
# measured difference is 0 (the same mAP to the last digit, losses within 1e-7 relative); the bound
# leaves room for other machines' kernels, since the float sums of two half batches are not those of
# one whole batch and Adam carries the last-bit differences forward.
MAP_TOLERANCE = 0.005
LOSS_TOLERANCE = 1e-5  # relative, per epoch


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory):
    """OUT of tests/distributed_train_worker.py, run by torchrun in 2 processes."""
    out = tmp_path_factory.mktemp("dist_train")
    torchrun_worker(WORKER, out)
    return out


@pytest.fixture(scope="module")
def one_process_runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("one_train")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    for run in RUNS:
        run_evaluation(config(out, run))
    torch.set_num_threads(before)
    return out


def _close(two: dict, one: dict) -> None:
    assert abs(two["map"] - one["map"]) <= MAP_TOLERANCE, (two["map"], one["map"])
    assert len(two["history"]) == len(one["history"])
    for a, b in zip(two["history"], one["history"], strict=True):
        assert abs(a["loss"] - b["loss"]) <= LOSS_TOLERANCE * abs(b["loss"]), (a, b)


def test_two_processes_train_as_one_within_the_tolerance(two_process_runs, one_process_runs):
    two = json.loads((two_process_runs / "dhd" / "metrics.json").read_text())
    one = json.loads((one_process_runs / "dhd" / "metrics.json").read_text())
    _close(two, one)
    assert [row["epoch"] for row in two["map_per_epoch"]] == [2, 4]  # evaluated in shards mid-training
    for a, b in zip(two["map_per_epoch"], one["map_per_epoch"], strict=True):
        assert abs(a["map"] - b["map"]) <= MAP_TOLERANCE
    assert two["world_size"] == 2 and "world_size" not in one  # one process: metrics.json as before
    record = json.loads((two_process_runs / "dhd" / "config.json").read_text())["distributed"]
    assert record == {"world_size": 2, "backend": "gloo", "batch_size": 64, "batch_rows_by_rank": [32, 32]}
    single = json.loads((one_process_runs / "dhd" / "config.json").read_text())["distributed"]
    assert single["world_size"] == 1 and single["batch_rows_by_rank"] == [64]


def test_gradients_are_those_of_the_whole_batch(two_process_runs, one_process_runs):
    """SGD (no Adam normalisation to hide a wrong scale), with an empty share on rank 1 in the last
    batch of every epoch: the weights agree to float rounding."""
    two = load_file(two_process_runs / "sgd" / "network.safetensors")
    one = load_file(one_process_runs / "sgd" / "network.safetensors")
    assert two.keys() == one.keys()
    for name in two:
        assert torch.allclose(two[name], one[name], rtol=0, atol=1e-5), name
    runs = (two_process_runs, one_process_runs)
    _close(*(json.loads((r / "sgd" / "metrics.json").read_text()) for r in runs))


def test_shards_encode_the_same_codes_as_one_process(two_process_runs):
    dataset = load_dataset("digits", image_size=16)
    net, _, _ = load_run_network(two_process_runs / "dhd")
    sharded = load_file(two_process_runs / "codes.safetensors")
    for split in ("query", "database"):
        idx = dataset.indices(split)
        images = dataset.normalize(dataset.images[idx])
        assert torch.equal(sharded[split], encode(net, images)), split  # one process, its own chunks
        assert torch.equal(sharded[split], encode(net, images, batch_size=ENCODE_CHUNK)), split
    # and the run's own metrics (encoded in shards, measured on rank 0) are one process's, exactly
    metrics = json.loads((two_process_runs / "dhd" / "metrics.json").read_text())
    again = evaluate_network(net, dataset, 16)
    assert again["map"] == metrics["map"] and again["pr"] == metrics["pr"]


def test_only_rank_0_writes_the_run_folder(two_process_runs):
    log = (two_process_runs / "dhd" / "log.txt").read_text()
    assert log.count("evaluation run ->") == 1  # rank 0's; the refused tries wrote nothing
    assert log.count("epoch 4/4") == 1
    assert not list(two_process_runs.glob("**/.*.tmp"))
    assert not (two_process_runs / "dhd" / "checkpoint.safetensors").exists()


def test_mistakes_after_the_start_are_one_line_every_rank_agrees_on(two_process_runs):
    summary = json.loads((two_process_runs / "summary.json").read_text())
    for name, words in (("train_set", "more than class"), ("unfinished", "holds an unfinished training run")):
        (message0, replicated0), (message1, replicated1) = (rank[name] for rank in summary["ranks"])
        assert message0 == message1 and words in message0 and "\n" not in message0
        assert replicated0 and replicated1  # cli.main prints it on rank 0 only


def _train_command(out: Path, *extra: str) -> list[str]:
    cfg = out.parent / "cfg.json"
    cfg.write_text(json.dumps({**SETTINGS, "train_set": "whole", "show_progress": False}))
    return [
        sys.executable, "-m", "hashcondense", "train", "--config", str(cfg), "--epochs", "8",
        "--batch-size", "64", "--checkpoint-seconds", "0", "--quiet", "--out", str(out), *extra,
    ]  # fmt: skip


def test_nproc_mistake_is_one_line_from_rank_0(tmp_path):
    command = _train_command(tmp_path / "run", "--nproc", "2", "--train-set", "random:500")
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "more than class" in done.stderr, done.stderr
    assert "rank" not in done.stderr
    assert not (tmp_path / "run").exists()


def test_other_commands_are_still_refused_under_a_launcher(tmp_path):
    env = _env(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="1")
    done = subprocess.run(
        [sys.executable, "-m", "hashcondense", "demo", "--out", str(tmp_path / "demo")],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "does not run in several processes yet" in done.stderr


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="finds the worker through /proc")
def test_killed_rank_stops_the_run_in_one_line_and_resume_continues(tmp_path):
    out = tmp_path / "run"
    command = _train_command(out)
    victim, code, err = kill_rank_1_at_first_checkpoint([*command, "--nproc", "2"], out)
    assert code == 1, err
    assert f"rank 1 (pid {victim}) was killed by SIGKILL" in err
    assert "its last complete checkpoint is after epoch" in err and "--resume" in err
    assert not (out / "metrics.json").exists() and not list(out.glob(".*.tmp"))
    shutil.copytree(out, tmp_path / "copy")
    # resume in 2 processes (rank 0 reads the checkpoint and sends it) to the end
    done = subprocess.run(
        [*command, "--nproc", "2", "--resume"], env=_env(), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    # the 2-process checkpoint resumed in one process
    saved = json.loads((tmp_path / "copy" / "config.json").read_text())["config"]
    saved.update(out=str(tmp_path / "copy"), resume=True)
    run_evaluation(EvalConfig.from_dict(saved))
    # one uninterrupted process
    straight = {**saved, "out": str(tmp_path / "one"), "resume": False}
    run_evaluation(EvalConfig.from_dict(straight))
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())
    for resumed in (out, tmp_path / "copy"):
        _close(json.loads((resumed / "metrics.json").read_text()), one)
        assert not (resumed / "checkpoint.safetensors").exists()


def test_peer_failures_are_told_from_the_work_s_own_errors():
    from hashcondense.utils.distributed import is_peer_failure

    gloo = (
        "[../third_party/gloo/gloo/transport/tcp/pair.cc:537] Read error [127.0.0.1]:43222: Connection reset"
    )
    assert is_peer_failure(RuntimeError(gloo))
    assert not is_peer_failure(RuntimeError("mat1 and mat2 shapes cannot be multiplied (4x8 and 16x16)"))
    assert not is_peer_failure(ValueError(gloo))


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_dead_peer_without_a_launcher_is_one_line_naming_the_survivor(tmp_path):
    """Processes started by hand (as on two machines whose agents do not stop each other): rank 1
    killed mid-training -> rank 0 stops with one line (status 3), its checkpoint kept."""
    out = tmp_path / "run"
    base = dict(WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    command = _train_command(out)
    ranks = [
        subprocess.Popen(
            command, env=_env(**base, RANK=str(r), LOCAL_RANK=str(r)), stderr=subprocess.PIPE, text=True
        )
        for r in (0, 1)
    ]
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (out / "checkpoint.safetensors").exists():
        time.sleep(0.05)
    assert (out / "checkpoint.safetensors").exists(), "the run wrote no checkpoint"
    ranks[1].kill()
    _, err = ranks[0].communicate(timeout=120)
    ranks[1].communicate(timeout=30)
    assert ranks[0].returncode == 3, err
    assert err.count("\n") == 1 and "rank 0 of 2 lost contact with another process" in err, err
    assert "--resume" in err and (out / "checkpoint.safetensors").exists()
