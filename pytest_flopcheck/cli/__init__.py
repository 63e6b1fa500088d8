"""The ``flopcheck`` command (console script ``flopcheck = pytest_flopcheck.cli.app``)."""

from pytest_flopcheck.cli.app import main

__all__ = ["main"]
