"""The generated checks as pytest items: one :class:`FlopcheckItem` per
:class:`~pytest_flopcheck.verification.cases.Case`, under one collector (they come from
registrations, not files). Setup produces what a check depends on; a failure there is an error
that points at its cause, a reference that cannot run here is a skip."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_flopcheck.reference.counting import CoverageGap
from pytest_flopcheck.verification.cases import Case
from pytest_flopcheck.verification.compare import Comparison

if TYPE_CHECKING:
    from pytest_flopcheck.plugin.run import FlopcheckRun

NODE_PREFIX = "flopcheck::"
"""Every generated check's node id starts so: ``flopcheck::test_layer[model/workload/stage/layer]``."""


class FlopcheckItem(pytest.Item):
    """One generated check."""

    def __init__(self, *, case: Case, run: FlopcheckRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.case = case
        self.run = run
        self.add_marker(pytest.mark.flopcheck)

    def setup(self) -> None:
        self.run.prepare(self)

    def runtest(self) -> None:
        self.run.run_case(self)

    def reportinfo(self) -> tuple[Path, None, str]:
        return self.path, None, f"flopcheck {self.name}"


class FlopcheckCollector(pytest.Collector):
    """The parent of every generated item."""

    def __init__(self, *, run: FlopcheckRun, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.run = run

    def collect(self) -> list[pytest.Item]:
        return [
            FlopcheckItem.from_parent(self, name=case.name, case=case, run=self.run)
            for case in self.run.session.plan()
        ]


def failure_message(
    comparisons: tuple[Comparison, ...], gaps: tuple[CoverageGap, ...], detail: str = ""
) -> str:
    """What a failed check says: each comparison outside its tolerance, any coverage gaps, and
    the detail that explains it (where a memory peak was set, on each side)."""
    parts = [c.describe() for c in comparisons if not c.passed]
    if detail:
        parts.append(detail)
    if gaps:
        parts.append(
            "coverage gaps (counted work the analytic model does not account for):\n"
            + "\n".join(f"  - {gap.name}: {gap.detail}" for gap in gaps)
        )
    return "\n\n".join(parts)
