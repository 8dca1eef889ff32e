"""The command line: a thin layer over the library API (`hashcondense --help`)."""

from hashcondense.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
