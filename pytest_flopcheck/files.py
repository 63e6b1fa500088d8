"""Reading JSON that a user points at (reports, evidence, checkpoint configs) without trusting it.

Only regular files are read (a FIFO or a device would block or never end), up to a size limit;
NaN and Infinity, integers too long to hold, and nesting deeper than any real document are
rejected. Every problem is one sentence naming the file and, where there is one, the field.
"""

from __future__ import annotations

import json
import math
import os
import stat
from pathlib import Path
from typing import Any

from pytest_flopcheck.text import shorten

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


class Fields:
    """A JSON object read field by field, each problem one :class:`FileProblem` sentence naming the
    field by its path (``memory.stages.vae_decode.cache_bytes``): the reading side of a typed
    record's ``from_json``."""

    def __init__(self, value: Any, where: str = "") -> None:
        if not isinstance(value, dict):
            raise FileProblem(f"field {where or '(top level)'} is {describe(value)}; it must be an object")
        self.value = value
        self.where = where
        self.read: set[str] = set()

    def _path(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(self, key: str) -> Any:
        if key not in self.value:
            raise FileProblem(f"field {self._path(key)} is missing")
        self.read.add(key)
        return self.value[key]

    def has(self, key: str) -> bool:
        return key in self.value

    def _check(self, key: str, ok: bool, what: str) -> None:
        if not ok:
            raise FileProblem(f"field {self._path(key)} is {describe(self.value[key])}; it must be {what}")

    def integer(self, key: str) -> int:
        value = self.get(key)
        self._check(key, isinstance(value, int) and not isinstance(value, bool), "an integer")
        return int(value)

    def optional_integer(self, key: str) -> int | None:
        return None if self.get(key) is None else self.integer(key)

    def number(self, key: str) -> float:
        """A finite number, kept as it is (an int stays an int, so the JSON comes back whole)."""
        value = self.get(key)
        ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
        self._check(key, ok, "a finite number")
        return value  # type: ignore[no-any-return]

    def text(self, key: str) -> str:
        value = self.get(key)
        self._check(key, isinstance(value, str), "text")
        return str(value)

    def optional_text(self, key: str) -> str | None:
        return None if self.get(key) is None else self.text(key)

    def flag(self, key: str) -> bool:
        value = self.get(key)
        self._check(key, isinstance(value, bool), "true or false")
        return bool(value)

    def object(self, key: str) -> Fields:
        return Fields(self.get(key), self._path(key))

    def items(self, key: str) -> list[tuple[str, Fields]]:
        """The fields of an object of objects, in order."""
        inner = self.object(key)
        return [(name, inner.object(name)) for name in inner.value]

    def array(self, key: str) -> list[Any]:
        value = self.get(key)
        self._check(key, isinstance(value, list), "a list")
        return value  # type: ignore[no-any-return]

    def objects(self, key: str) -> list[Fields]:
        return [Fields(item, f"{self._path(key)}[{i}]") for i, item in enumerate(self.array(key))]

    def texts(self, key: str) -> list[str]:
        values = self.array(key)
        self._check(key, all(isinstance(v, str) for v in values), "a list of text")
        return values

    def data(self, key: str) -> Any:
        """Free-form JSON data (a model's metadata, a workload's fields), taken as it is."""
        return self.get(key)

    def done(self) -> None:
        """Refuse a field this reader never asked for: another schema version, or an edit."""
        extra = [key for key in self.value if key not in self.read]
        if extra:
            raise FileProblem(f"field {self._path(extra[0])} is not a field of this schema version")
