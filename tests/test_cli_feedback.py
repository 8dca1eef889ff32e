"""What a person sees: a mistake is one line, answered before torch loads, and leaves no folder; a run
names its stages, says where its files go, what --resume found and how to continue after Ctrl-C."""

import argparse
import json
import subprocess
import sys

import pytest

from hashcondense import cli
from hashcondense.cli.main import build_parser

PROBE = (
    "import sys; from hashcondense.cli import main; code = main(sys.argv[1:]); "
    "print('torch loaded' if 'torch' in sys.modules else 'torch not loaded'); sys.exit(code)"
)

CONDENSE = ["condense", "--dataset", "digits", "--method", "iem", "--ipc", "1"]
# (digits' loader upsamples with torch: a mistake that needs the loaded data, like --ipc 101, is answered
# after torch loads; everything a flag alone decides is answered before)
TRAIN = ["train", "--dataset", "digits", "--train-set", "random:2"]


@pytest.mark.parametrize(
    "argv, needle",
    [
        ([*CONDENSE[:3], "--method", "iemm", "--ipc", "1"], "unknown condensation method"),
        (["condense", "--dataset", "digitz", "--method", "iem", "--ipc", "1"], "unknown dataset"),
        ([*CONDENSE, "--preset", "gpu"], "unknown preset 'gpu'"),
        (["condense", "--dataset", "cifar10", "--root", "/no/root", *CONDENSE[3:]], "CIFAR-10"),
        ([*CONDENSE, "--threads", "-1"], "--threads -1"),
        ([*CONDENSE, "--threads", "0"], "--threads 0"),
        ([*CONDENSE, "--lr-img", "-1"], "lr_img"),
        ([*CONDENSE, "--factor", "0"], "factor"),
        ([*CONDENSE, "--factor", "9", "--image-size", "32"], "smaller than 4 px"),
        ([*CONDENSE, "--ipc", "0"], "--ipc"),
        ([*CONDENSE, "--hash", "lsh"], "unknown hashing method"),
        ([*CONDENSE, "--arch", "vgg"], "unknown network"),
        ([*CONDENSE, "--bits", "1"], "hash_bits"),
        ([*TRAIN, "--threads", "0"], "--threads 0"),
        ([*TRAIN, "--arch", "vgg"], "unknown network"),
        (["train", "--dataset", "digits", "--train-set", "no/such/set.safetensors"], "check the path"),
        (["train", "--dataset", "cifar10", "--root", "/no/such/root"], "CIFAR-10"),
        ([*TRAIN, "--lr", "-1"], "--lr"),
    ],
)  # fmt: skip
def test_mistakes_are_answered_before_torch_loads_once_and_leave_nothing(tmp_path, argv, needle):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv, "--out", str(out)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hashcondense: error:") and needle in lines[0], done.stderr
    assert done.stdout.strip() == "torch not loaded"
    assert not out.exists()


def test_a_mistake_found_with_the_data_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    code = cli.main(["condense", "--dataset", "digits", "--method", "dm", "--ipc", "101", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--ipc 101" in err[0]
    assert not out.exists()


def _tiny(out, *extra):
    return [
        "condense", "--dataset", "digits", "--image-size", "16", "--method", "dm", "--ipc", "1",
        "--outer-loops", "3", "--bits", "16", "--batch-real", "8", "--threads", "1", "--no-images",
        "--out", str(out), *extra,
    ]  # fmt: skip


def test_resume_without_a_checkpoint_says_so_once(tmp_path, capsys):
    assert cli.main(_tiny(tmp_path / "run", "--resume", "--quiet")) == 0
    err = capsys.readouterr().err
    assert err.count("no checkpoint") == 1 and "starting a fresh run" in err


def test_stages_say_what_runs_and_where_outputs_go(tmp_path, capsys):
    out = tmp_path / "run"
    assert cli.main(_tiny(out, "--time-budget", "1e-9")) == 0
    err = capsys.readouterr().err.splitlines()
    stages = [line for line in err if line.startswith("hashcondense: ")]
    assert stages[0].startswith("hashcondense: condensing digits with dm") and str(out) in stages[0]
    assert any("time budget" in line and "spent" in line for line in stages)  # on the console
    assert any(line.startswith("hashcondense: wrote") for line in stages)
    assert "condensing digits with dm" in (out / "log.txt").read_text()


def test_evaluation_names_its_encoding_stage(tmp_path, capsys):
    argv = [*TRAIN, "--image-size", "16", "--bits", "16", "--epochs", "1", "--threads", "1"]
    assert cli.main([*argv, "--out", str(tmp_path / "t")]) == 0
    err = capsys.readouterr().err
    assert "hashcondense: training convnet3 on random:2" in err and "evaluating: encoding" in err


def test_interrupt_says_how_to_continue_and_is_logged(tmp_path, capsys, monkeypatch):
    from hashcondense.condense import engine

    def interrupted(self, outer, inner):
        raise KeyboardInterrupt

    monkeypatch.setattr(engine.CondenseEngine, "_step", interrupted)
    out = tmp_path / "run"
    assert cli.main(_tiny(out, "--quiet")) == 130
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    assert "interrupted" in (out / "log.txt").read_text()


@pytest.mark.parametrize("command", ["train", "condense", "demo"])
def test_every_flag_has_help(command):
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    parser = sub.choices[command]
    assert parser.description
    missing = [a.option_strings for a in parser._actions if a.option_strings and not a.help]
    assert not missing, missing


def test_image_size_help_covers_digits(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--image-size" in text and "digits" in text[text.index("--image-size") :]
    json.dumps(text)  # plain text
