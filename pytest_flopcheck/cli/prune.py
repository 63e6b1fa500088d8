"""``flopcheck prune``: keep the newest runs under the output directory, remove the rest."""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from pytest_flopcheck.cli.common import RUN_DIR, UsageError, output_root, say
from pytest_flopcheck.text import shorten


def cmd_prune(args: argparse.Namespace) -> int:
    """Keep the newest ``--keep`` runs under the output directory; remove older runs and staging
    directories that crashed runs left behind (older than a day). A symbolic link is never
    followed (its target is not this output's to remove); what cannot be removed is named and
    the exit status is 1."""
    if args.keep < 0:
        raise UsageError(f"--keep {args.keep} is not allowed: it must be 0 or more")
    root = output_root(args)
    if not root.is_dir():
        raise UsageError(f"--output {shorten(args.output)} is not allowed: it is not a directory")
    entries = sorted(root.iterdir(), key=lambda d: d.name)
    links = [
        d for d in entries if d.is_symlink() and RUN_DIR.fullmatch(d.name.strip(".").removesuffix(".partial"))
    ]
    runs = [d for d in entries if d.is_dir() and not d.is_symlink() and RUN_DIR.fullmatch(d.name)]
    old = runs[: max(0, len(runs) - args.keep)]
    day_ago = time.time() - 86_400
    stale = [
        d
        for d in entries
        if d.is_dir()
        and not d.is_symlink()
        and d.name.startswith(".")
        and d.name.endswith(".partial")
        and RUN_DIR.fullmatch(d.name[1 : -len(".partial")])
        and d.stat().st_mtime < day_ago
    ]
    freed = 0
    failed: list[str] = []
    removed: set[Path] = set()
    for directory in [*old, *stale]:
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and not f.is_symlink())
        if not args.dry_run:
            problems: list[str] = []

            def note(_function: Any, path: str, info: Any, found: list[str] = problems) -> None:
                found.append(f"{path} ({_why(info[1])})")

            shutil.rmtree(directory, onerror=note)
            if problems:
                failed.append(f"{directory.name}: {problems[0]}")
                continue
        removed.add(directory)
        freed += size
    verb = "would remove" if args.dry_run else "removed"
    say(
        f"{verb} {len(removed & set(old))} of {len(runs)} runs and {len(removed & set(stale))} unfinished "
        f"run directories ({freed / 1e6:,.1f} MB); kept the newest {min(args.keep, len(runs))}"
    )
    for link in links:
        say(f"left alone: {link.name} is a symbolic link (its target is not removed)")
    if failed:
        say(
            f"flopcheck: {len(failed)} run(s) could not be removed completely, first {failed[0]}",
            file=sys.stderr,
        )
        return 1
    return 0


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or f"{type(exc).__name__}: {exc}"
