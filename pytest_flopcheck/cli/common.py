"""What every ``flopcheck`` command shares: the usage error, safe printing, the staged output
directory, GPU choice and the float-overflow guard."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pytest_flopcheck import output
from pytest_flopcheck.model.workload import workload_fields
from pytest_flopcheck.sizing.hardware import GPUS, Gpu, HardwareError, check_precision, lookup
from pytest_flopcheck.text import printable, shorten

DEFAULT_OUTPUT = "tmp/profile-output"
RUN_DIR = re.compile(r"\d{8}T\d{6}(\.\d{3})?Z-[0-9a-f]{6}")
"""A run's directory: its id (to the millisecond; ids written before 2026-12-07 are to the second)."""
FLOAT_SAFE = 10**300
"""Counts above this cannot be plotted or turned into times and shares (floats end near 1.8e308)."""


class UsageError(Exception):
    """Bad input from the command line: printed as one sentence, exit status 2."""


def say(*parts: object, file: Any = None, flush: bool = False) -> None:
    """print(), with control characters a plugin or a file may carry shown, not obeyed."""
    print(printable(" ".join(str(p) for p in parts)), file=file, flush=flush)


def option_name(field: str) -> str:
    return "--" + field.replace("_", "-")


def gpus(name: str | None, precision: str) -> list[Gpu]:
    """``--gpu`` (every GPU when None) at ``--precision``, checked."""
    try:
        gpu = None if name is None else lookup(name)
        check_precision(gpu, precision)
        return list(GPUS.values()) if gpu is None else [gpu]
    except HardwareError as exc:
        raise UsageError(str(exc)) from None


def output_root(args: argparse.Namespace) -> Path:
    if not args.output.strip():
        raise UsageError("--output is empty: give a directory (default tmp/profile-output)")
    return Path(os.path.expanduser(args.output))


@contextlib.contextmanager
def staged(args: argparse.Namespace, run_id: str) -> Iterator[output.StagedRun]:
    """A run directory that is published whole when the block succeeds and leaves nothing
    behind when it fails (full disk, unwritable output, Ctrl-C)."""
    try:
        run = output.StagedRun(output_root(args), run_id, "--output", args.output)
    except output.OutputError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield run
        run.publish()
    except OSError as exc:
        run.discard()
        raise UsageError(
            f"the files could not be written under {shorten(args.output)} "
            f"({output.describe_os_error(exc)}); nothing was written"
        ) from None
    except BaseException:
        run.discard()
        raise


@contextlib.contextmanager
def estimating(workload: Any) -> Iterator[None]:
    """Turn a float overflow (a workload far beyond any real one) into one sentence."""
    try:
        yield
    except OverflowError:
        raise UsageError(
            f"the workload {shorten(workload_fields(workload), 120)} is too large: its counts "
            "exceed the range of a float (about 1.8e308), so no time, share or plot can be computed"
        ) from None
