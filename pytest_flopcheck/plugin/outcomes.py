"""The real outcome of every generated check, recorded on the controller from pytest's own reports
(``pytest_runtest_logreport``), with and without xdist: passed, failed, error (with the cause it
points to), skipped with its reason, xfailed, xpassed, or failed because its xdist worker died."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from pytest_flopcheck.evidence.record import CheckRecord, comparison_from_json
from pytest_flopcheck.reference.counting import CoverageGap
from pytest_flopcheck.text import one_line
from pytest_flopcheck.verification.cases import Case

RESULT = "flopcheck"
"""The user property a check's comparisons travel in (JSON), from the worker to the controller."""
CAUSE = "flopcheck_cause"
"""The user property an errored check's cause travels in (JSON)."""


class _Pending:
    """The reports of one check seen so far (setup, call, teardown)."""

    __slots__ = ("cause", "message", "outcome", "payload")

    def __init__(self) -> None:
        self.outcome: str | None = None
        self.message = ""
        self.payload: dict[str, Any] | None = None
        self.cause: dict[str, Any] | None = None


def _reason(report: pytest.TestReport) -> str:
    wasxfail = getattr(report, "wasxfail", None)
    if wasxfail is not None and report.skipped:
        return str(wasxfail) or "expected to fail"
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2]).removeprefix("Skipped: ")
    return report.longreprtext


def _property(report: pytest.TestReport, name: str) -> dict[str, Any] | None:
    for key, value in report.user_properties:
        if key == name:
            return json.loads(str(value))  # type: ignore[no-any-return]
    return None


class OutcomeRecorder:
    """Builds a :class:`~pytest_flopcheck.evidence.record.CheckRecord` per finished check, and
    counts the checks that depend on each cause of errors. ``case_of`` gives the case of a
    generated check's node id (None for another test)."""

    def __init__(self, config: pytest.Config, case_of: Callable[[str], Case | None]) -> None:
        self.config = config
        self.case_of = case_of
        self.pending: dict[str, _Pending] = {}
        self.checks: dict[str, CheckRecord] = {}
        self.causes: dict[str, dict[str, Any]] = {}

    def on_report(self, report: pytest.TestReport) -> None:
        if report.when not in ("setup", "call", "teardown"):  # xdist: its worker died running it
            crashed = self.pending.pop(report.nodeid, _Pending())
            crashed.outcome, crashed.message, crashed.payload = "failed", report.longreprtext, None
            self._finish(report.nodeid, crashed)
            return
        if report.when == "setup" and report.passed:
            return  # nothing to record yet (the common case: keep it cheap on the controller)
        if report.when == "teardown" and report.passed:
            category = ""
        else:
            status = self.config.hook.pytest_report_teststatus(report=report, config=self.config)
            category = status[0] if status else ""
        pending = self.pending.setdefault(report.nodeid, _Pending())
        if report.when == "call":
            pending.outcome = category or pending.outcome
            pending.payload = _property(report, RESULT)
            if category in ("failed", "xfailed"):
                pending.message = _reason(report) if category == "xfailed" else report.longreprtext
        elif category in ("error", "skipped", "xfailed"):
            pending.outcome = category
            pending.message = _reason(report) if category != "error" else report.longreprtext
            pending.cause = pending.cause or _property(report, CAUSE)
        if report.when == "teardown":
            self._finish(report.nodeid, self.pending.pop(report.nodeid))

    def _finish(self, nodeid: str, pending: _Pending) -> None:
        case = self.case_of(nodeid)
        if case is None or pending.outcome is None:
            return
        payload = pending.payload or {}
        cause = pending.cause
        if cause is not None:
            known = self.causes.setdefault(cause["key"], dict(cause, tests=0))
            known["tests"] += 1
        self.checks[nodeid] = CheckRecord(
            test=case.name,
            kind=case.kind,
            model=case.model,
            workload=case.workload,
            stage=case.stage,
            layer=case.layer,
            outcome=pending.outcome,
            message=one_line(pending.message, 2000) if pending.outcome != "passed" else "",
            cause=cause["key"] if cause else None,
            comparisons=tuple(comparison_from_json(c) for c in payload.get("comparisons", ())),
            gaps=tuple(CoverageGap(**g) for g in payload.get("gaps", ())),
        )
