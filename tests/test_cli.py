"""The CLI contract: `hashcondense train ... --out DIR` writes metrics.json; mistakes exit 2 with one line."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hashcondense.cli import main

FAST = ["--epochs", "2", "--batch-size", "128", "--quiet"]


def run_cli(capsys, *argv):
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_writes_run_directory(tmp_path, capsys):
    out = tmp_path / "run"
    code, stdout, err = run_cli(
        capsys,
        "train",
        "--dataset",
        "digits",
        "--train-set",
        "random:5",
        "--hash",
        "dhd",
        "--arch",
        "convnet3",
        "--bits",
        "16",
        "--seed",
        "1",
        "--out",
        str(out),
        *FAST,
    )
    assert code == 0, err
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 <= metrics["map"] <= 1.0
    assert metrics["bits"] == 16 and metrics["topk"] > 0
    assert set(metrics["pr"]) >= {"precision", "recall"}
    config = json.loads((out / "config.json").read_text())
    assert config["config"]["seed"] == 1 and config["dataset"]["split_seed"] == 0
    assert "torch" in config["versions"]
    for name in ("log.txt", "pr.png", "precision_at_m.png", "network.safetensors"):
        assert (out / name).stat().st_size > 0
    assert "mAP@" in stdout


def test_same_seed_same_numbers_and_config_rerun(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    args = ["train", "--dataset", "digits", "--train-set", "random:3", "--hash", "csq", "--bits", "16", *FAST]
    assert run_cli(capsys, *args, "--out", str(a))[0] == 0
    assert run_cli(capsys, "train", "--config", str(a / "config.json"), "--quiet", "--out", str(b))[0] == 0
    ma = json.loads((a / "metrics.json").read_text())
    mb = json.loads((b / "metrics.json").read_text())
    assert ma["map"] == mb["map"]
    assert ma["history"][-1]["loss"] == mb["history"][-1]["loss"]


def test_jitter_views_and_backbone_lr_from_the_command_line(tmp_path, capsys):
    out = tmp_path / "jitter"
    args = ["train", "--train-set", "random:3", "--bits", "16", "--views", "jitter", *FAST]
    args += ["--backbone-lr-scale", "0.05"]
    assert run_cli(capsys, *args, "--out", str(out))[0] == 0
    train = json.loads((out / "config.json").read_text())["config"]["train"]
    assert train["views"] == "jitter" and train["backbone_lr_scale"] == 0.05
    assert 0 <= json.loads((out / "metrics.json").read_text())["map"] <= 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--dataset", "nope"], "unknown dataset"),
        (["--arch", "vgg99"], "unknown network"),
        (["--hash", "lsh"], "unknown hashing method"),
        (["--bits", "1"], "hash_bits"),
        (["--train-set", "random:0"], "images per class"),
        (["--train-set", "random:100000"], "more than class"),
        (["--train-set", "does/not/exist.safetensors"], "check the path"),
        (["--dataset", "cifar10", "--root", "/nonexistent-root"], "CIFAR-10"),
    ],
)
def test_user_mistakes_are_one_line_and_status_2(tmp_path, capsys, argv, needle):
    base = {
        "--dataset": "digits",
        "--train-set": "random:2",
        "--hash": "dhd",
        "--arch": "convnet3",
        "--bits": "16",
    }
    for flag, value in zip(argv[::2], argv[1::2], strict=True):
        base[flag] = value
    flat = [x for kv in base.items() for x in kv]
    code, _, err = run_cli(capsys, "train", *flat, "--out", str(tmp_path / "o"), *FAST)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle.lower() in lines[0].lower(), err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_unwritable_output_folder(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_cli(capsys, "train", "--train-set", "random:2", "--out", str(blocker / "sub"), *FAST)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "output folder" in err


def test_corrupt_training_file_keeps_existing_results(tmp_path, capsys):
    out = tmp_path / "run"
    assert (
        run_cli(capsys, "train", "--train-set", "random:2", "--bits", "16", "--out", str(out), *FAST)[0] == 0
    )
    before = (out / "metrics.json").read_bytes()
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 20)
    code, _, err = run_cli(capsys, "train", "--train-set", str(bad), "--out", str(out), *FAST)
    assert code == 2 and "corrupt" in err
    assert (out / "metrics.json").read_bytes() == before


def test_argparse_errors_are_one_line():
    proc = subprocess.run(
        [sys.executable, "-m", "hashcondense", "train", "--bits", "x"], capture_output=True, text=True
    )
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
    assert "Traceback" not in proc.stderr


def test_list_names_everything(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0
    for name in ("digits", "cifar10", "convnet3", "resnetap10", "densenet121", "dhd", "orthohash", "csq"):
        assert name in out
    assert "experiments: evallength, lrimg, poollength, table1, table2, table3, table4, table5, table7" in out


def test_demo_quick_prints_table_and_writes_runs(tmp_path, capsys):
    """The README's main command, shortened: IEM vs Random (with and without multi-formation) vs whole."""
    out = tmp_path / "demo"
    code, stdout, err = run_cli(capsys, "demo", "--quick", "--quiet", "--out", str(out))
    assert code == 0, err
    summary = json.loads((out / "summary.json").read_text())
    labels = [row["training set"] for row in summary["rows"]]
    assert len(labels) == 4 and labels[0].startswith("IEM") and labels[-1].startswith("whole")
    for row in summary["rows"]:
        assert 0.0 <= row["map"] <= 1.0
        assert (Path(row["run"]) / "metrics.json").exists()
        assert f"{100 * row['map']:.2f}" in stdout
    stored = {row["training set"]: row["stored images"] for row in summary["rows"]}
    # IEM and Random-MF store 10 images per class (each decoding into 4), the whole split 100 per class
    assert stored[labels[0]] == stored[labels[1]] == 100
    assert stored[labels[-1]] == 1000
    assert (out / "condense_iem" / "synthetic.safetensors").exists()
    # fixed step counts, no time budget: the table does not depend on the machine's speed
    card = json.loads((out / "condense_iem" / "card.json").read_text())
    assert card["stopped"] == "finished" and card["steps_done"] == card["steps_total"] > 0
    assert card["config"]["time_budget"] is None


@pytest.mark.parametrize(
    "config, needle",
    [
        ({"train": {"lrr": 1e-3}}, "unknown config keys ['train.lrr']"),
        ({"train": {"optimizer": "sgd", "momentum": "high"}}, "train.momentum = 'high' should be a number"),
        ({"train": {"epochs": 1.5}}, "train.epochs = 1.5 should be a whole number"),
        ({"train": {"views": "strong"}}, "unknown views 'strong'"),
        ({"train": {"lr": -1.0}}, "learning rate -1.0 cannot work"),
        ({"train": {"backbone_lr_scale": -1}}, "backbone lr scale -1 cannot work"),
        ({"train": {"eval_epochs": [1, "2"]}}, "should be a list of whole numbers"),
        ({"train": 3}, "config key train = 3 should be an object"),
        ({"seed": None}, "config key seed = None should be a whole number"),
        ({"save_network": "yes"}, "should be true or false"),
        ([1, 2], "is not a JSON object"),
    ],
)
def test_config_file_mistakes_are_one_line_and_status_2(tmp_path, capsys, config, needle):
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    code, _, err = run_cli(capsys, "train", "--config", str(path), "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], err
    assert not (tmp_path / "o").exists()


def test_building_the_parser_does_not_import_torch():
    """A mistyped flag is answered at once: the registries (and torch) are read only to print help."""
    probe = "import importlib, sys; importlib.import_module('hashcondense.cli.main').build_parser(); "
    probe += "print('torch' in sys.modules)"
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert proc.stdout.split() == ["False"]


@pytest.mark.parametrize("command", ["train", "condense"])
def test_help_names_every_registered_method(capsys, command):
    from hashcondense.condense import list_methods
    from hashcondense.data import list_datasets
    from hashcondense.hashing import list_hashing
    from hashcondense.models import list_models

    with pytest.raises(SystemExit) as info:
        main([command, "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    expected = [*list_hashing(), *list_models(), *list_datasets()]
    expected += list_methods() if command == "condense" else []
    for name in expected:
        assert name in text, name
    assert not any(f"{{{registry}}}" in text for registry in ("datasets", "models", "hashing", "methods"))
    if command == "train":
        assert text.count("default ") > 10 and "Train a hashing network" in text
