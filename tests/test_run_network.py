"""A finished run's network can be reloaded and gives the run's own numbers."""

import json

import pytest
import torch

from hashcondense import cli
from hashcondense.data import load_dataset
from hashcondense.errors import HashCondenseError
from hashcondense.evaluate import evaluate_network, load_run_network


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "dpn"
    narrow = out.parent / "narrow.json"  # a network width comes from a config file, as in condense
    narrow.write_text(json.dumps({"arch_kwargs": {"width": 16}}))
    argv = [
        "train", "--config", str(narrow), "--dataset", "digits", "--train-set", "random:10",
        "--hash", "dpn", "--bits", "16", "--epochs", "2", "--batch-size", "50", "--quiet", "--out", str(out),
    ]  # fmt: skip
    assert cli.main(argv) == 0
    return out


def test_reloaded_network_reproduces_the_run_map(run_dir):
    net, method, record = load_run_network(run_dir)
    assert record["config"]["hashing"] == "dpn" and method.hash_bits == 16
    assert record["config"]["arch_kwargs"] == {"width": 16}
    first_conv = next(m for m in net.modules() if isinstance(m, torch.nn.Conv2d))
    assert first_conv.out_channels == 16  # the run's width, rebuilt from its config.json
    assert not net.training
    metrics = json.loads((run_dir / "metrics.json").read_text())
    dataset = load_dataset("digits", split_seed=record["config"]["split_seed"])
    assert evaluate_network(net, dataset, 16)["map"] == metrics["map"]


def test_missing_truncated_or_mismatched_run_files_are_one_line_errors(run_dir, tmp_path):
    with pytest.raises(HashCondenseError, match="does not exist; pass the folder"):
        load_run_network(tmp_path / "nothing")

    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((run_dir / "config.json").read_text())
    raw = (run_dir / "network.safetensors").read_bytes()
    (broken / "network.safetensors").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(HashCondenseError, match="trained network") as info:
        load_run_network(broken)
    assert "\n" not in str(info.value)

    (broken / "network.safetensors").write_bytes(raw)
    record = json.loads((run_dir / "config.json").read_text())
    record["config"]["bits"] = 32  # the file holds a 16-bit head
    (broken / "config.json").write_text(json.dumps(record))
    with pytest.raises(HashCondenseError, match="does not fit the network"):
        load_run_network(broken)

    (broken / "config.json").write_text("{}")
    with pytest.raises(HashCondenseError, match="not a hashcondense run record"):
        load_run_network(broken)
