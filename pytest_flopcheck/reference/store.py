"""Counted references kept on disk, so that each is counted once per run and only when it can
have changed.

An entry is keyed by everything a count depends on (package versions, the model's reference
config and the source of its reference builder, the workload, the stage and the device). The
directory is pytest's cache directory (``.pytest_cache/d/flopcheck-references``), so a re-run
after editing an analytic model reuses the counts; ``--cache-clear`` or
``--flopcheck-recount`` accepts only entries written by the current run. xdist workers share
the directory: a per-entry file lock makes the first worker count and the others wait for its
result instead of counting again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs

from pytest_flopcheck.reference.counting import ReferenceCounts, ReferenceSkipped

try:
    import fcntl
except ImportError:  # Windows: no lock; workers may then count a reference twice
    fcntl = None  # type: ignore[assignment]

FORMAT = 2
COUNTED, CACHED, SHARED = "counted", "cache", "shared"
"""Where a count came from: counted by this process, read from an earlier run's entry, or read
from an entry another worker of this run wrote."""


class CountFailed(Exception):
    """Building or counting a reference raised; ``description`` is ``Type: message``. A failure
    is shared with the other workers of the same run (so the reference is attempted once), never
    with later runs."""

    def __init__(self, description: str, traceback: str) -> None:
        super().__init__(description)
        self.description = description
        self.traceback = traceback


def cache_key(data: Mapping[str, Any]) -> str:
    """A stable digest of ``data`` (JSON with sorted keys)."""
    text = json.dumps({"format": FORMAT, **data}, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


@attrs.define
class ReferenceStore:
    """Counts on disk under ``directory`` (None: nothing is stored, every count is made).

    The store is an optimisation: a directory that cannot be used, an entry that cannot be read
    or holds something that is not a count, and a write that fails each cost a recount and one
    line in :attr:`problems`, never a failed check."""

    directory: Path | None
    run_id: str
    reuse: bool = True
    problems: list[str] = attrs.field(factory=list)
    """Why counts could not be cached or read back, one sentence per cause (shown as warnings)."""

    @classmethod
    def first_usable(
        cls, candidates: list[tuple[Path | None, str]], run_id: str, *, reuse: bool = True
    ) -> ReferenceStore:
        """A store in the first candidate directory that can be created and written; each
        candidate that cannot is one problem (``candidates`` pairs a directory with how to name
        it). None of them: a store that keeps nothing."""
        problems: list[str] = []
        for directory, label in candidates:
            if directory is None:
                continue
            problem = _unusable(directory)
            if problem is None:
                return cls(directory, run_id, reuse, problems)
            problems.append(f"the reference cache {label} ({directory}) cannot be used ({problem})")
        return cls(None, run_id, reuse, problems)

    def fetch(self, key: str | None, count: Callable[[], ReferenceCounts]) -> tuple[ReferenceCounts, str]:
        """The counts stored under ``key``, else ``count()`` stored there; with their source.
        ``key`` None: counted and not stored (a key that would differ between runs).

        ReferenceSkipped passes through; any other exception of ``count`` becomes CountFailed."""
        if self.directory is None or key is None:
            return _attempt(count), COUNTED
        found = self._read(key)
        if found is not None:
            return found
        with self._lock(key):
            found = self._read(key)  # another worker may have counted it while we waited
            if found is not None:
                return found
            try:
                counts = _attempt(count)
            except CountFailed as failed:
                self._write(key, {"error": failed.description, "traceback": failed.traceback})
                raise
            self._write(key, {"counts": counts.to_json()})
            return counts, COUNTED

    def _path(self, key: str) -> Path:
        assert self.directory is not None
        return self.directory / f"{key}.json"

    def _problem(self, text: str) -> None:
        if text not in self.problems:
            self.problems.append(text)

    def _read(self, key: str) -> tuple[ReferenceCounts, str] | None:
        path = self._path(key)
        try:
            raw = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as exc:
            self._problem(f"the cached count {path} cannot be read ({_why(exc)}); it was counted again")
            return None
        try:
            entry = json.loads(raw, parse_constant=_no_constant)
            if not isinstance(entry, dict) or not isinstance(entry.get("run_id"), str):
                raise ValueError("it is not a flopcheck cache entry")
            same_run = entry["run_id"] == self.run_id
            if "error" in entry:
                if same_run:
                    raise CountFailed(str(entry["error"]), str(entry.get("traceback", "")))
                return None
            if not (self.reuse or same_run):
                return None
            return ReferenceCounts.from_json(entry["counts"]), SHARED if same_run else CACHED
        except CountFailed:
            raise
        except (ValueError, KeyError, TypeError, OverflowError) as exc:  # writes are atomic: a bad entry
            self._problem(f"the cached count {path} is unusable ({_why(exc)}); it was counted again")
            return None

    def _write(self, key: str, entry: dict[str, Any]) -> None:
        path = self._path(key)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps({"run_id": self.run_id, **entry}), encoding="utf-8")
            os.replace(tmp, path)
        except OSError as exc:  # the store is an optimisation: a failed write only costs a recount
            self._problem(f"a count could not be cached under {self.directory} ({_why(exc)})")
            with contextlib.suppress(OSError):
                tmp.unlink()

    @contextlib.contextmanager
    def _lock(self, key: str) -> Iterator[None]:
        if fcntl is None:
            yield
            return
        try:
            assert self.directory is not None
            self.directory.mkdir(parents=True, exist_ok=True)
            handle = open(self.directory / f"{key}.lock", "a")  # noqa: SIM115
        except OSError:
            yield
            return
        with handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def _no_constant(name: str) -> Any:
    raise ValueError(f"it holds {name}")


def _why(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}" if not isinstance(exc, ValueError) else str(exc)


def _unusable(directory: Path) -> str | None:
    """Why ``directory`` cannot hold cache entries, or None if it can (created if missing)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        probe = directory / f".probe.{os.getpid()}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


def _attempt(count: Callable[[], ReferenceCounts]) -> ReferenceCounts:
    try:
        return count()
    except ReferenceSkipped:
        raise
    except Exception as exc:
        tb = "".join(traceback.format_exception(exc, limit=-8))
        raise CountFailed(f"{type(exc).__name__}: {exc}", tb) from exc
