"""Comparing two sizing reports (``flopcheck diff`` on two ``report.json``): how the workload,
each stage's FLOPs per generation and each layer's FLOPs per generation moved, and whether the
change exceeds a threshold (stages and layers that disappeared always do)."""

from __future__ import annotations

import attrs

from pytest_flopcheck.sizing.records import SizingReport
from pytest_flopcheck.verification.compare import relative_error


@attrs.frozen
class FlopsChange:
    """One stage's or layer's FLOPs per generation before and after (None: absent there)."""

    name: str
    before: int | None
    after: int | None

    @property
    def delta(self) -> int:
        return (self.after or 0) - (self.before or 0)

    @property
    def rel_change(self) -> float | None:
        """Relative change; None (infinite) from 0 or from absent."""
        return relative_error(self.after or 0, self.before or 0)

    def beyond(self, threshold: float) -> bool:
        change = self.rel_change
        return self.after is None or change is None or change > threshold


@attrs.frozen
class ReportDiff:
    """What changed from one report to the other."""

    workload: tuple[tuple[str, object, object], ...]
    stages: tuple[FlopsChange, ...]
    layers: tuple[FlopsChange, ...]

    @property
    def largest_layer_changes(self) -> list[FlopsChange]:
        """Layers whose FLOPs changed, largest absolute change first."""
        moved = [c for c in self.layers if c.delta]
        return sorted(moved, key=lambda c: (-abs(c.delta), c.name))

    def drift(self, threshold: float) -> list[str]:
        """Why this diff exceeds ``threshold`` (a relative change), one sentence per reason."""
        reasons = [f"stage {c.name} disappeared" for c in self.stages if c.after is None]
        reasons += [
            f"stage {c.name} changed from {c.before or 0:,} to {c.after:,} FLOPs per generation"
            for c in self.stages
            if c.after is not None and c.beyond(threshold)
        ]
        drifted = [c for c in self.layers if c.after is not None and c.beyond(threshold)]
        if drifted:
            worst = max(drifted, key=lambda c: abs(c.delta))
            reasons.append(
                f"{len(drifted):,} layer(s) changed by more than {threshold:.3g} (largest: {worst.name} "
                f"{worst.before or 0:,} -> {worst.after:,} FLOPs per generation)"
            )
        gone = sorted(c.name for c in self.layers if c.after is None)
        if gone:
            reasons.append(f"{len(gone):,} layer(s) disappeared (first: {gone[0]})")
        return reasons


def diff_reports(before: SizingReport, after: SizingReport) -> ReportDiff:
    """The changes from ``before`` to ``after`` (reports of the same model)."""
    workload = tuple(
        (key, before.workload.get(key), value)
        for key, value in after.workload.items()
        if before.workload.get(key) != value
    )
    old = {s.name: s.per_generation.flops for s in before.stages}
    new = {s.name: s.per_generation.flops for s in after.stages}
    stages = [FlopsChange(name, old[name], None) for name in old if name not in new]
    stages += [FlopsChange(name, old.get(name), flops) for name, flops in new.items()]
    old_layers, new_layers = before.layer_flops(), after.layer_flops()
    layers = [
        FlopsChange(k, old_layers.get(k), new_layers.get(k))
        for k in sorted(set(old_layers) | set(new_layers))
    ]
    return ReportDiff(workload, tuple(stages), tuple(layers))
