"""The same seed on the same device gives byte-identical files: synthetic.safetensors for every
condensation method (fresh against fresh, fresh against interrupted-and-resumed, fresh against a
process killed with SIGKILL and resumed), network.safetensors and metrics.json for evaluation runs.
Timings and paths live in card.json, history.json, config.json and log.txt only."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from hashcondense import cli
from hashcondense.condense import CondenseConfig, condense, get_method

pytestmark = pytest.mark.usefixtures("one_thread")

# Each method at a size that runs in about a second: 16 px digits, ConvNet-3 of width 8, 2 outer loops.
LOOPS = {
    "random": {},
    "dm": {"outer_loops": 3},
    "iem": {"outer_loops": 3, "inner_loops": 2},
    "dsa": {"outer_loops": 2, "inner_loops": 2, "options": {"net_images": 20}},
    "idc": {"outer_loops": 2, "inner_loops": 2, "options": {"net_images": 20}},
}


@pytest.fixture(scope="module")
def small(digits):
    keep = [digits.train[digits.labels[digits.train] == c][:20] for c in range(10)]
    return dataclasses.replace(digits, train=np.sort(np.concatenate(keep)))


def _config(folder: Path, method: str, **kw) -> CondenseConfig:
    settings = {k: v for k, v in LOOPS[method].items() if k != "options"}
    options = dict(LOOPS[method].get("options", {}))
    if method == "iem":
        options.update(pool_size=2, pool_epochs=1, pool_batch=64, pool_dir=str(folder.parent / "pool"))
    base = dict(
        dataset="digits", image_size=16, method=method, ipc=1, bits=16, arch_kwargs={"width": 8},
        batch_real=8, show_progress=False, export_images=False, out=str(folder), options=options,
        checkpoint_every=1, **settings,
    )  # fmt: skip
    base.update(kw)
    return CondenseConfig(**base)


def _bytes(folder: Path, name: str = "synthetic.safetensors") -> bytes:
    return (folder / name).read_bytes()


class _Killed(BaseException):
    """Stands for the process dying: nothing after the raise runs, only what was on disk stays."""


@pytest.mark.parametrize("method", sorted(LOOPS))
def test_same_seed_gives_the_same_set_file(tmp_path, small, method):
    first = condense(_config(tmp_path / "a", method), dataset=small)
    condense(_config(tmp_path / "b", method), dataset=small)  # IEM: the pool now comes from the cache
    assert _bytes(tmp_path / "a") == _bytes(tmp_path / "b")
    card = json.loads((tmp_path / "a" / "card.json").read_text())
    assert card["run"]["config"]["out"] == str(tmp_path / "a")  # the invocation's facts are kept here
    if first.steps_total:
        assert card["run"]["distillation_seconds"] > 0
        assert first.synthetic.meta["steps_done"] == first.steps_total


@pytest.mark.parametrize("method", ["dm", "dsa", "idc", "iem"])
def test_interrupted_and_resumed_run_gives_the_same_set_file(tmp_path, small, method):
    condense(_config(tmp_path / "fresh", method), dataset=small)
    cls = get_method(method)

    class DiesInSecondOuterLoop(cls):  # same name and settings: only the run is cut short
        def begin_outer(self, outer):
            if outer == 1:
                raise _Killed
            super().begin_outer(outer)

    with pytest.raises(_Killed):
        condense(_config(tmp_path / "cut", method), dataset=small, method_cls=DiesInSecondOuterLoop)
    assert (tmp_path / "cut" / "checkpoint.safetensors").exists()
    assert not (tmp_path / "cut" / "synthetic.safetensors").exists()
    condense(_config(tmp_path / "cut", method, resume=True), dataset=small)
    assert _bytes(tmp_path / "cut") == _bytes(tmp_path / "fresh")


def _condense_argv(out: Path) -> list[str]:
    return [
        "condense", "--dataset", "digits", "--image-size", "16", "--method", "dm", "--ipc", "1",
        "--outer-loops", "40", "--checkpoint-every", "1", "--bits", "16", "--batch-real", "8",
        "--threads", "1", "--quiet", "--no-images", "--out", str(out),
    ]  # fmt: skip


def test_killed_process_resumes_to_the_same_set_file(tmp_path):
    """A real SIGKILL in the middle of a run (CLI in a child process), then --resume."""
    assert cli.main(_condense_argv(tmp_path / "fresh")) == 0
    cut = tmp_path / "cut"
    env = {**os.environ, "HASHCONDENSE_PROGRESS": "0", "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen([sys.executable, "-m", "hashcondense", *_condense_argv(cut)], env=env)
    try:
        deadline = time.monotonic() + 120
        while not (cut / "checkpoint.safetensors").exists() and child.poll() is None:
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.02)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait()
    assert child.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (cut / "synthetic.safetensors").exists()
    assert cli.main([*_condense_argv(cut), "--resume"]) == 0
    assert _bytes(cut) == _bytes(tmp_path / "fresh")


def _train_argv(out: Path, *extra: str) -> list[str]:
    return [
        "train", "--dataset", "digits", "--image-size", "16", "--train-set", "random:5", "--bits", "16",
        "--epochs", "3", "--checkpoint-seconds", "0", "--threads", "1", "--quiet", "--out", str(out),
        *extra,
    ]  # fmt: skip


def test_evaluation_files_are_byte_identical_fresh_and_resumed(tmp_path, monkeypatch):
    assert cli.main(_train_argv(tmp_path / "a")) == 0
    assert cli.main(_train_argv(tmp_path / "b")) == 0
    for name in ("network.safetensors", "metrics.json"):
        assert _bytes(tmp_path / "a", name) == _bytes(tmp_path / "b", name), name
    timings = json.loads((tmp_path / "a" / "history.json").read_text())
    assert timings["seconds"]["train"] > 0 and len(timings["epochs"]) == 3
    assert "seconds" not in json.loads(_bytes(tmp_path / "a", "metrics.json"))

    from hashcondense.train import trainer

    epoch = trainer._Run.epoch

    def dies_in_epoch_3(self, number):
        if number == 3:
            raise KeyboardInterrupt
        return epoch(self, number)

    with monkeypatch.context() as patch:
        patch.setattr(trainer._Run, "epoch", dies_in_epoch_3)
        assert cli.main(_train_argv(tmp_path / "cut")) == 130
    assert cli.main(_train_argv(tmp_path / "cut", "--resume")) == 0
    for name in ("network.safetensors", "metrics.json"):
        assert _bytes(tmp_path / "cut", name) == _bytes(tmp_path / "a", name), name
