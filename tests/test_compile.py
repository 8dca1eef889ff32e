"""`compile`: torch.compile of the networks' passes in condensation, evaluation training and encoding.

A compiled run repeats itself bit for bit and agrees with an uncompiled one to float rounding; the
setting is recorded in config.json and kept out of resume digests and the experiment cell keys; a
machine without a C++ compiler gets a one-line refusal. Tiny problems (digits at 16 px, ConvNet-3 of
width 8): compiling takes most of this file's time (tens of seconds on the first call)."""

import json

import pytest
import torch
from safetensors.torch import load_file

from hashcondense.cli import main
from hashcondense.condense import CondenseConfig, condense
from hashcondense.errors import HashCondenseError
from hashcondense.runtime import check_compile

pytestmark = pytest.mark.usefixtures("one_thread")

DM = {
    "dataset": "digits",
    "image_size": 16,
    "method": "dm",
    "ipc": 2,
    "outer_loops": 3,  # three DM networks: each freshly drawn network reuses the compiled code
    "arch_kwargs": {"width": 8},
    "bits": 16,
    "batch_real": 16,
    "show_progress": False,
    "export_images": False,
}


def _images(out):
    return load_file(str(out / "synthetic.safetensors"))["images"]


def test_compiled_condensation_repeats_bit_for_bit_and_agrees_with_eager(tmp_path):
    runs = {}
    for name, compiled in (("compiled_a", True), ("compiled_b", True), ("eager", False)):
        condense(CondenseConfig(**DM, compile=compiled, out=str(tmp_path / name)))
        runs[name] = _images(tmp_path / name)
    assert torch.equal(runs["compiled_a"], runs["compiled_b"])
    gap = (runs["compiled_a"] - runs["eager"]).abs().max().item()
    assert 0 < gap < 1e-3  # another order of float sums: rounding, not a different set
    recorded = json.loads((tmp_path / "compiled_a" / "config.json").read_text())
    assert recorded["config"]["compile"] is True


def test_compiled_training_agrees_with_eager_and_is_recorded(tmp_path):
    metrics = {}
    for name, flag in (("compiled", "--compile"), ("eager", "--no-compile")):
        argv = ["train", "--dataset", "digits", "--image-size", "16", "--bits", "16", "--epochs", "3"]
        argv += ["--batch-size", "64", "--threads", "1", "--quiet", flag, "--out", str(tmp_path / name)]
        assert main(argv) == 0
        metrics[name] = json.loads((tmp_path / name / "metrics.json").read_text())
        config = json.loads((tmp_path / name / "config.json").read_text())["config"]
        assert config["compile"] is (name == "compiled")
    losses = [[row["loss"] for row in metrics[n]["history"]] for n in ("compiled", "eager")]
    assert losses[0] == pytest.approx(losses[1], rel=1e-3)
    assert metrics["compiled"]["map"] == pytest.approx(metrics["eager"]["map"], abs=0.02)


def test_compile_without_a_compiler_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("CXX", "no-such-compiler-hashcondense")
    with pytest.raises(HashCondenseError, match="C\\+\\+ compiler"):
        check_compile(torch.device("cpu"))
    argv = ["condense", "--dataset", "digits", "--method", "dm", "--ipc", "1", "--compile", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--compile" in err and "Traceback" not in err
    assert not (tmp_path / "run" / "synthetic.safetensors").exists()


def test_compile_is_not_part_of_digests_or_cell_keys():
    from hashcondense.condense.config import config_digest
    from hashcondense.evaluate.pipeline import RESUME_FREE
    from hashcondense.experiments.spec import Cell
    from hashcondense.experiments.store import CellStore

    assert "compile" in RESUME_FREE
    digests = [config_digest(CondenseConfig(**DM, compile=c).as_dict())[0] for c in (True, False)]
    assert digests[0] == digests[1]
    store = CellStore("results")
    cells = [
        Cell(
            key="dm/2",
            condense={**DM, "compile": c},
            evaluate={"dataset": "digits", "compile": c},
            seeds=(0,),
        )
        for c in (True, False)
    ]
    assert store.set_folder(cells[0]) == store.set_folder(cells[1])
    assert store.cell_folder(cells[0]) == store.cell_folder(cells[1])


def test_compiled_network_updates_of_gradient_matching_agree_with_eager(tmp_path):
    """IDC: the network trains (compiled) on real batches between two matching steps (eager double
    backward); the set agrees with the uncompiled run's to rounding."""
    idc = {**DM, "method": "idc", "outer_loops": 1, "inner_loops": 2, "options": {"net_images": 32}}
    runs = {}
    for name, compiled in (("compiled", True), ("eager", False)):
        condense(CondenseConfig(**idc, compile=compiled, out=str(tmp_path / name)))
        runs[name] = _images(tmp_path / name)
    gap = (runs["compiled"] - runs["eager"]).abs().max().item()
    assert 0 < gap < 1e-3  # not 0: the compiled update ran (its rounding reaches the second step)
