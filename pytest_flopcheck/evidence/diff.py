"""Comparing two evidence runs, check by check (``flopcheck diff``).

For every check present in both runs: did the analytic number, the reference number or the
outcome change, and by how much; which checks appeared or disappeared; and how each stage's
result moved. ``drift`` decides whether the change exceeds a threshold, so CI can gate on it
(the idea of pytest-benchmark's ``--benchmark-compare-fail``).
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pytest_flopcheck.evidence.record import CheckRecord, RunRecord
from pytest_flopcheck.verification.compare import relative_error

PROBLEMS = frozenset({"failed", "error"})
VERIFIED = frozenset({"passed", "xpassed"})


@attrs.frozen
class ValueChange:
    """One metric of one check whose analytic or reference value changed."""

    test: str
    metric: str
    side: str  # "analytic" or "reference"
    before: int
    after: int

    @property
    def rel_change(self) -> float | None:
        """``|after - before| / |before|``; None (infinite) when ``before`` is 0."""
        return relative_error(self.after, self.before)


@attrs.frozen
class OutcomeChange:
    test: str
    before: str
    after: str


@attrs.frozen
class StageChange:
    stage: str  # model/workload/stage
    before: str  # status, or "absent"
    after: str


@attrs.frozen
class RunDiff:
    """What changed from one run to the other."""

    values: tuple[ValueChange, ...]
    outcomes: tuple[OutcomeChange, ...]
    stages: tuple[StageChange, ...]
    appeared: tuple[str, ...]
    disappeared: tuple[str, ...]

    @property
    def newly_failing(self) -> list[OutcomeChange]:
        return [c for c in self.outcomes if c.after in PROBLEMS and c.before not in PROBLEMS]

    @property
    def no_longer_verified(self) -> list[OutcomeChange]:
        """Checks that passed before and now neither pass nor fail (skipped, xfailed)."""
        return [c for c in self.outcomes if c.before in VERIFIED and c.after not in VERIFIED | PROBLEMS]

    @property
    def stages_lost(self) -> list[StageChange]:
        """Stages that passed before and now do not pass, or are gone."""
        return [s for s in self.stages if s.before == "pass" and s.after != "pass"]

    def drift(self, threshold: float) -> list[str]:
        """Why this diff exceeds ``threshold`` (a relative change), one sentence per reason;
        empty when it does not."""
        reasons = []
        over = [v for v in self.values if v.rel_change is None or v.rel_change > threshold]
        if over:
            worst = max(over, key=lambda v: float("inf") if v.rel_change is None else v.rel_change)
            reasons.append(
                f"{len(over):,} value(s) changed by more than {threshold:.3g} "
                f"(largest: {worst.test} {worst.side} {worst.metric} {worst.before:,} -> {worst.after:,})"
            )
        if self.newly_failing:
            first = self.newly_failing[0]
            reasons.append(
                f"{len(self.newly_failing):,} check(s) newly failing (first: {first.test}, "
                f"{first.before} -> {first.after})"
            )
        if self.no_longer_verified:
            first = self.no_longer_verified[0]
            reasons.append(
                f"{len(self.no_longer_verified):,} check(s) no longer verified (first: {first.test}, "
                f"{first.before} -> {first.after})"
            )
        if self.disappeared:
            reasons.append(f"{len(self.disappeared):,} check(s) disappeared (first: {self.disappeared[0]})")
        if self.stages_lost:
            first_stage = self.stages_lost[0]
            reasons.append(
                f"{len(self.stages_lost):,} stage(s) no longer pass (first: {first_stage.stage}, "
                f"{first_stage.before} -> {first_stage.after})"
            )
        return reasons


def _by_test(checks: Iterable[CheckRecord]) -> dict[str, CheckRecord]:
    return {check.test: check for check in checks}


def diff_runs(before: RunRecord, after: RunRecord) -> RunDiff:
    old, new = _by_test(before.checks), _by_test(after.checks)
    values: list[ValueChange] = []
    outcomes: list[OutcomeChange] = []
    for test in old.keys() & new.keys():
        a, b = old[test], new[test]
        if a.outcome != b.outcome:
            outcomes.append(OutcomeChange(test, a.outcome, b.outcome))
        previous = {c.metric: c for c in a.comparisons}
        for comparison in b.comparisons:
            earlier = previous.get(comparison.metric)
            if earlier is None:
                continue
            for side in ("analytic", "reference"):
                x, y = getattr(earlier, side), getattr(comparison, side)
                if x != y:
                    values.append(ValueChange(test, comparison.metric, side, x, y))
    order = {test: i for i, test in enumerate([*new, *old])}
    values.sort(key=lambda v: (-(float("inf") if v.rel_change is None else v.rel_change), order[v.test]))
    outcomes.sort(key=lambda c: order[c.test])
    stages_before = {f"{s.model}/{s.workload}/{s.stage}": s.status for s in before.stage_summaries()}
    stages_after = {f"{s.model}/{s.workload}/{s.stage}": s.status for s in after.stage_summaries()}
    stages = [
        StageChange(name, stages_before.get(name, "absent"), stages_after.get(name, "absent"))
        for name in dict.fromkeys([*stages_after, *stages_before])
    ]
    return RunDiff(
        values=tuple(values),
        outcomes=tuple(outcomes),
        stages=tuple(stages),
        appeared=tuple(test for test in new if test not in old),
        disappeared=tuple(test for test in old if test not in new),
    )


def parse_threshold(text: str) -> float:
    """``"0"``, ``"0.01"`` or ``"1%"`` as a relative change; ValueError otherwise."""
    raw = text.strip()
    value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    if not value >= 0 or value == float("inf"):
        raise ValueError(text)
    return value
