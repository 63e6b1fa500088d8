"""Reading JSON that a user points at (reports, evidence, checkpoint configs) without trusting it.

Only regular files are read (a FIFO or a device would block or never end), up to a size limit;
NaN and Infinity, integers too long to hold, and nesting deeper than any real document are
rejected. Every problem is one sentence naming the file and, where there is one, the field.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from pytest_flopcheck.names import shorten

MAX_BYTES = 256 * 2**20
MAX_DEPTH = 200


class FileProblem(ValueError):
    """A file that cannot be used; the message names it (and the field)."""


def _reject_constant(name: str) -> Any:
    raise FileProblem(f"holds {name}, which is not a number JSON allows")


def _depth(value: Any) -> int:
    """Nesting depth, iteratively (a deep document must not exhaust the stack)."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if depth > MAX_DEPTH:
            return depth
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return deepest


def read_json(path: str | Path, *, max_bytes: int = MAX_BYTES) -> Any:
    """The JSON document in ``path``; FileProblem (one sentence naming the file) otherwise."""
    shown = shorten(str(path), 400)
    try:
        info = os.stat(path)
    except OSError as exc:
        raise FileProblem(f"{shown} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "not a regular file"
        raise FileProblem(f"{shown} is {kind}: give a JSON file")
    if info.st_size > max_bytes:
        raise FileProblem(f"{shown} is {info.st_size:,} bytes, more than the {max_bytes:,} allowed")
    try:
        with open(path, "rb") as handle:
            raw = handle.read(max_bytes + 1)
    except OSError as exc:
        raise FileProblem(f"{shown} cannot be read ({exc.strerror or exc})") from None
    try:
        document = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
    except FileProblem as exc:
        raise FileProblem(f"{shown} {exc}") from None
    except RecursionError:
        raise FileProblem(f"{shown} is nested too deeply (more than {MAX_DEPTH} levels)") from None
    except UnicodeDecodeError:
        raise FileProblem(f"{shown} is not UTF-8 text") from None
    except ValueError as exc:  # JSONDecodeError, and integers longer than Python converts
        raise FileProblem(f"{shown} is not valid JSON ({shorten(str(exc), 160)})") from None
    if _depth(document) > MAX_DEPTH:
        raise FileProblem(f"{shown} is nested too deeply (more than {MAX_DEPTH} levels)")
    return document


def describe(value: Any) -> str:
    """A value as a reader should see it in an error (short, with its type when it misleads)."""
    if isinstance(value, bool):
        return f"{value!r} (a boolean)"
    if isinstance(value, float):
        return f"{value!r} (a float)"
    return shorten(value)
