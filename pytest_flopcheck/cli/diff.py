"""``flopcheck diff``: two sizing reports or two verification runs, compared layer by layer,
with ``--fail-on`` as a drift gate."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pytest_flopcheck.cli.common import UsageError, say
from pytest_flopcheck.evidence.diff import diff_runs, parse_threshold
from pytest_flopcheck.evidence.record import RunRecord
from pytest_flopcheck.evidence.schema import load_evidence
from pytest_flopcheck.files import FileProblem, read_json
from pytest_flopcheck.sizing.diff import diff_reports
from pytest_flopcheck.sizing.records import KIND as REPORT_KIND
from pytest_flopcheck.sizing.records import SizingReport
from pytest_flopcheck.text import shorten

Document = SizingReport | RunRecord


def load_document(path: str) -> Document:
    """A report or an evidence run from a file or a run folder, checked whole; UsageError naming
    the file (and the field) otherwise."""
    candidate = Path(path)
    shown = shorten(path, 400)
    if candidate.is_dir():
        found = sorted(
            p
            for name in ("report.json", "evidence.json")
            for p in candidate.rglob(name)
            if not any(part.startswith(".") for part in p.relative_to(candidate).parts)
        )
        if len(found) != 1:
            raise UsageError(
                f"{shown} is not allowed: the folder holds {len(found)} report.json or evidence.json "
                "files, not 1"
            )
        candidate = found[0]
    try:
        document = read_json(candidate)
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind == REPORT_KIND:
            return SizingReport.from_json(document)
        return load_evidence(document)
    except FileProblem as exc:
        text = str(exc)
        name = shorten(str(candidate), 400)
        where = "" if text.startswith(name) else f"{name} " if text.startswith("is ") else f"{name}: "
        raise UsageError(f"{where}{text}") from None


def cmd_diff(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise UsageError(f"--top {args.top} is not allowed: it must be 0 or more")
    threshold = None
    if args.fail_on is not None:
        try:
            threshold = parse_threshold(args.fail_on)
        except ValueError:
            raise UsageError(
                f"--fail-on {args.fail_on!r} is not allowed: give a relative change such as 0, 0.01 or 1%"
            ) from None
    before, after = load_document(args.before), load_document(args.after)
    if isinstance(before, SizingReport) and isinstance(after, SizingReport):
        reasons = _diff_reports(before, after, args.top, threshold)
    elif isinstance(before, RunRecord) and isinstance(after, RunRecord):
        reasons = _diff_evidence(before, after, args.top, threshold)
    else:
        kind_a, kind_b = ("report" if isinstance(d, SizingReport) else "evidence" for d in (before, after))
        raise UsageError(f"cannot compare a {kind_a} with a{'n' if kind_b == 'evidence' else ''} {kind_b}")
    if reasons:
        say(f"flopcheck: drift beyond --fail-on {args.fail_on}: " + "; ".join(reasons), file=sys.stderr)
        return 1
    return 0


def _diff_reports(before: SizingReport, after: SizingReport, top: int, threshold: float | None) -> list[str]:
    if before.model.name != after.model.name:
        raise UsageError(
            f"cannot compare reports of different models: {before.model.name!r} and {after.model.name!r}"
        )
    changes = diff_reports(before, after)
    say(
        "workload changes: "
        + (", ".join(f"{k} {old} -> {new}" for k, old, new in changes.workload) or "none")
    )
    for stage in changes.stages:
        old = stage.before or 0
        if stage.after is None:
            say(f"{stage.name:>16}: {old:>30,} -> {'(stage removed)':>30}")
            continue
        ratio = f"x{stage.after / old:.3f}" if old else "new"
        say(f"{stage.name:>16}: {old:>30,} -> {stage.after:>30,} ({ratio})")
    say("largest changes by layer (FLOPs per generation):")
    for layer in changes.largest_layer_changes[:top]:
        say(f"  {layer.delta:+,}  {layer.name}")
    return changes.drift(threshold) if threshold is not None else []


def _diff_evidence(before: RunRecord, after: RunRecord, top: int, threshold: float | None) -> list[str]:
    if before.selection["models"] != after.selection["models"]:
        raise UsageError(
            f"cannot compare evidence of different models: {', '.join(before.selection['models'])} and "
            f"{', '.join(after.selection['models'])}"
        )
    changes = diff_runs(before, after)
    say(f"before: {before.run_id} ({before.status}) {before.headline}")
    say(f"after:  {after.run_id} ({after.status}) {after.headline}")
    moved = [s for s in changes.stages if s.before != s.after]
    say(f"stages: {len(changes.stages)}, {len(moved)} changed result")
    for stage in moved:
        say(f"  {stage.stage}: {stage.before} -> {stage.after}")
    both = len(before.checks) - len(changes.disappeared)
    say(
        f"checks: {both:,} in both runs, {len(changes.appeared):,} appeared, {len(changes.disappeared):,} "
        f"disappeared; {len(changes.outcomes):,} changed outcome, {len(changes.values):,} values changed"
    )
    for change in changes.outcomes[:top]:
        say(f"  {change.test}: {change.before} -> {change.after}")
    if changes.values:
        say("largest value changes:")
    for value in changes.values[:top]:
        rel = "new non-zero" if value.rel_change is None else f"{value.rel_change:.3%}"
        say(f"  {value.test} {value.metric} {value.side}: {value.before:,} -> {value.after:,} ({rel})")
    for label, tests in (("appeared", changes.appeared), ("disappeared", changes.disappeared)):
        for test in tests[:top]:
            say(f"  {label}: {test}")
    return changes.drift(threshold) if threshold is not None else []
