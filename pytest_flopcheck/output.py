"""Run directories and JSON files: run ids, the staged directory a run's files are written into
and renamed into place whole, JSON with exact integers, and the environment a run records.

A run's files are written into a hidden staging directory next to the published runs and the
directory is renamed into place only when every file is whole, so a reader sees a complete run
or none, and an earlier run is never touched."""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A sortable, collision-safe id: UTC time to the millisecond (ISO 8601's basic format), so
    that runs started within one second still sort in the order they started, plus random hex."""
    moment = now or _dt.datetime.now(_dt.UTC)
    return f"{moment:%Y%m%dT%H%M%S}.{moment.microsecond // 1000:03d}Z-{secrets.token_hex(3)}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def dumps(document: Mapping[str, Any]) -> str:
    """JSON with exact integers and no NaN/Infinity, indented."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


_COMPACT = json.JSONEncoder(allow_nan=False, separators=(", ", ": "))


def dumps_lines(document: Mapping[str, Any]) -> str:
    """Like :func:`dumps`, but each top-level field on its own line and each item of a top-level
    list on its own line, so that ten thousand results stay readable and diffable while the
    fast C encoder does the work (``indent`` would force the pure-Python one)."""
    return dumps_nested(document, {})


_TIGHT = json.JSONEncoder(allow_nan=False, separators=(",", ":"))


def dumps_nested(document: Mapping[str, Any], nested: Mapping[str, int]) -> str:
    """Like :func:`dumps_lines`, with the objects of the top-level fields in ``nested`` opened
    that many levels deep, one key per line, and each innermost value on its line without
    spaces: a nested record of 100,000 comparisons stays line-diffable and small."""

    def opened(value: Any, levels: int) -> str:
        if levels == 0 or not isinstance(value, dict) or not value:
            return _TIGHT.encode(value)
        # one space of indent whatever the depth: the keys show the nesting
        lines = ",\n".join(f" {_TIGHT.encode(k)}:{opened(v, levels - 1)}" for k, v in value.items())
        return "{\n" + lines + "\n }"

    fields = []
    for key, value in document.items():
        name = _COMPACT.encode(key)
        if key in nested:
            fields.append(f" {name}: {opened(value, nested[key])}")
        elif isinstance(value, list) and value:
            items = ",\n  ".join(_COMPACT.encode(item) for item in value)
            fields.append(f" {name}: [\n  {items}\n ]")
        else:
            fields.append(f" {name}: {_COMPACT.encode(value)}")
    return "{\n" + ",\n".join(fields) + "\n}\n"


class OutputError(Exception):
    """The evidence cannot be written where it was asked for: one sentence for the user."""


def describe_os_error(exc: OSError) -> str:
    return exc.strerror or str(exc)


class StagedRun:
    """A run directory written under ``output/.<run_id>.partial`` and renamed to
    ``output/<run_id>`` once complete; :meth:`discard` removes it without a trace."""

    def __init__(self, output: Path, run_id: str, option: str, shown: str) -> None:
        """``option`` and ``shown`` name the setting and its value as the user gave them."""
        self.output = output
        self.run_id = run_id
        try:
            if output.exists() and not output.is_dir():
                raise OutputError(f"{option} {shown!r} is not allowed: it is a file, not a directory")
            output.mkdir(parents=True, exist_ok=True)
            self.staging = output / f".{run_id}.partial"
            self.staging.mkdir()
        except OSError as exc:
            raise OutputError(
                f"{option} {shown!r} is not allowed: it cannot hold a run directory "
                f"({describe_os_error(exc)})"
            ) from None

    @property
    def final(self) -> Path:
        return self.output / self.run_id

    def write(self, relative: str, text: str) -> Path:
        path = self.staging / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as handle:
            handle.write(text)
        return path

    def publish(self) -> Path:
        os.rename(self.staging, self.final)
        return self.final

    def discard(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_state(root: Path) -> dict[str, Any]:
    """The commit checked out at ``root`` and whether the tree has changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def environment(root: Path, device: str, packages: Iterable[str]) -> dict[str, Any]:
    """Versions and machine facts; package versions are read without importing them."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pytest_flopcheck": _package_version("pytest-flopcheck"),
        "torch": _package_version("torch"),
    }
    for name in sorted(set(packages) - {"torch"}):
        env[name] = _package_version(name)
    env.update(git_state(root))
    env["device"] = device
    return env
