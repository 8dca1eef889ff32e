"""The runtime helpers: allocator tuning (a CPU speed fix) and its opt-out."""

import platform
import subprocess
import sys

import pytest

from hashcondense.runtime import tune_allocator

glibc_linux = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="needs glibc on Linux"
)

PROBE = "from hashcondense.runtime import tune_allocator; print(tune_allocator(), tune_allocator())"


@glibc_linux
def test_tune_allocator_applies_once_and_is_idempotent():
    out = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
    assert tune_allocator() is True  # conftest already tuned this process


@glibc_linux
def test_tune_allocator_opt_out_by_environment():
    env = {"HASHCONDENSE_MALLOC_TUNE": "0", "PATH": ""}
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True, env=env
    ).stdout
    assert out.split() == ["False", "False"]


@glibc_linux
def test_cli_tunes_the_allocator_before_computing(monkeypatch, tmp_path):
    import hashcondense.runtime as runtime
    from hashcondense.cli import main

    monkeypatch.setattr(runtime, "_ALLOCATOR_TUNED", None)
    argv = ["condense", "--dataset", "digits", "--image-size", "8", "--method", "random", "--ipc", "1"]
    assert main([*argv, "--quiet", "--no-images", "--out", str(tmp_path / "r")]) == 0
    assert runtime._ALLOCATOR_TUNED is True
