"""The `condense` sub-command: argument wiring, files written, one-line summary, one-line errors."""

import argparse
import json

import pytest
import torch

from hashcondense.cli.condense import add_condense_parser, build_condense_config, run_condense_command
from hashcondense.errors import HashCondenseError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny tensors run on one thread


def parse(*argv):
    parser = argparse.ArgumentParser(prog="hashcondense")
    add_condense_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["condense", *argv])


def test_condense_command_writes_the_set(tmp_path, capsys):
    out = tmp_path / "dm"
    args = parse(
        "--dataset",
        "digits",
        "--method",
        "dm",
        "--ipc",
        "1",
        "--outer-loops",
        "2",
        "--bits",
        "16",
        "--batch-real",
        "8",
        "--lr-img",
        "0.5",
        "--seed",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--no-images",
        "--out",
        str(out),
    )
    assert args.handler is run_condense_command
    assert run_condense_command(args) == 0
    line = capsys.readouterr().out.strip()
    assert (
        "\n" not in line and "condensed digits with dm" in line and str(out / "synthetic.safetensors") in line
    )
    card = json.loads((out / "card.json").read_text())
    assert card["seed"] == 3 and card["config"]["lr_img"] == 0.5 and card["steps_done"] == 2
    assert (out / "synthetic.safetensors").exists()


def test_pool_flags_and_options_reach_the_config(tmp_path):
    args = parse(
        "--dataset",
        "cifar10",
        "--root",
        "/data",
        "--method",
        "iem",
        "--ipc",
        "10",
        "--factor",
        "2",
        "--inner-loops",
        "50",
        "--pool-size",
        "3",
        "--pool-epochs",
        "4",
        "--no-pool",
        "--option",
        "perturb_max=0.05",
        "--time-budget",
        "60",
        "--resume",
        "--out",
        str(tmp_path),
    )
    cfg = build_condense_config(args)
    assert cfg.options == {"pool_size": 3, "pool_epochs": 4, "use_pool": False, "perturb_max": 0.05}
    assert cfg.root == "/data" and cfg.factor == 2 and cfg.inner_loops == 50 and cfg.outer_loops is None
    assert cfg.time_budget == 60.0 and cfg.resume and cfg.hashing == "dhd" and cfg.bits == 64


def test_bad_input_is_one_line_error(tmp_path):
    args = parse(
        "--dataset", "digits", "--method", "dm", "--ipc", "0", "--quiet", "--out", str(tmp_path / "x")
    )
    with pytest.raises(HashCondenseError) as info:
        run_condense_command(args)
    assert "\n" not in str(info.value) and "--ipc" in str(info.value)
    with pytest.raises(HashCondenseError):
        build_condense_config(
            parse(
                "--dataset",
                "digits",
                "--method",
                "dm",
                "--ipc",
                "1",
                "--option",
                "novalue",
                "--out",
                str(tmp_path),
            )
        )


def test_config_file_reruns_a_run_and_flags_override_it(tmp_path, capsys):
    first = tmp_path / "first"
    common = ["--outer-loops", "2", "--bits", "16", "--batch-real", "8", "--lr-img", "0.5", "--quiet"]
    args = parse(
        "--dataset",
        "digits",
        "--method",
        "dm",
        "--ipc",
        "1",
        "--seed",
        "3",
        "--no-images",
        *common,
        "--out",
        str(first),
    )
    assert run_condense_command(args) == 0
    saved = first / "config.json"

    again = build_condense_config(parse("--config", str(saved), "--out", str(tmp_path / "again")))
    original = build_condense_config(args)
    assert again.out == str(tmp_path / "again")
    for key, value in original.as_dict().items():  # the file holds the resolved settings too
        if key != "out" and value is not None:
            assert getattr(again, key) == value, key
    assert again.factor == 1 and again.inner_loops == 1  # resolved from DM's defaults
    assert run_condense_command(parse("--config", str(saved), "--out", str(tmp_path / "again"))) == 0
    from hashcondense.io.tensors import load_tensors

    a, _ = load_tensors(first / "synthetic.safetensors")
    b, _ = load_tensors(tmp_path / "again" / "synthetic.safetensors")
    assert torch.equal(a["images"], b["images"])  # the same seed and settings: the same set

    changed = build_condense_config(parse("--config", str(saved), "--seed", "4", "--ipc", "2", "--out", "x"))
    assert changed.seed == 4 and changed.ipc == 2 and changed.bits == 16 and changed.method == "dm"


def test_config_errors_are_one_line(tmp_path):
    with pytest.raises(HashCondenseError, match="--dataset, --method, --ipc, --out required"):
        build_condense_config(parse())
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(HashCondenseError, match="cannot read config"):
        build_condense_config(parse("--config", str(bad)))
    bad.write_text('{"config": {"dataset": "digits", "ipc": 1, "method": "dm", "out": "x", "colour": 1}}')
    with pytest.raises(HashCondenseError, match="unknown condense config keys"):
        build_condense_config(parse("--config", str(bad)))


def test_overlay_sets_the_fields_named_by_given_flags():
    from dataclasses import dataclass, field

    from hashcondense.cli.overlay import overlay

    @dataclass
    class Inner:
        lr: float = 1.0
        eval_epochs: list = field(default_factory=list)

    @dataclass
    class Outer:
        seed: int = 0
        out: str = "runs"
        inner: Inner = field(default_factory=Inner)

    args = argparse.Namespace(seed=None, out="o", lr=0.5, eval_epochs="1,2", threads=2)
    base = {"seed": 3, "inner": {"lr": 2.0, "eval_epochs": [4]}}
    merged = overlay(base, args, Outer, skip=("eval_epochs",))
    assert merged == {"seed": 3, "out": "o", "inner": {"lr": 0.5, "eval_epochs": [4]}}
    assert base == {"seed": 3, "inner": {"lr": 2.0, "eval_epochs": [4]}}  # the caller's dict is kept
    with pytest.raises(HashCondenseError, match="config key inner = 3 should be an object"):
        overlay({"inner": 3}, args, Outer)


@pytest.mark.parametrize(("flags", "expected"), [([], None), (["--pool"], True), (["--no-pool"], False)])
def test_pool_on_or_off_or_the_presets_choice(tmp_path, flags, expected):
    args = parse(
        "--dataset",
        "digits",
        "--ipc",
        "1",
        "--method",
        "iem",
        "--preset",
        "cpu",
        *flags,
        "--out",
        str(tmp_path),
    )
    assert build_condense_config(args).options.get("use_pool") is expected


def test_pool_and_no_pool_together_is_a_mistake(capsys):
    with pytest.raises(SystemExit):
        parse("--method", "iem", "--pool", "--no-pool")
    assert "not allowed with argument" in capsys.readouterr().err
