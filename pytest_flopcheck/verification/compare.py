"""One comparison of an analytic number with a reference number."""

from __future__ import annotations

from typing import Any, Final

import attrs

OTHER_OPS: Final = ": its other ops"
"""Appended to a layer's module in the label of its elementwise-traffic comparisons: they count
the module's ops without counted FLOPs."""


def check_path(model: str, workload: str, stage: str, layer: str = "") -> str:
    """``model/workload/stage[/layer]``: how a check is named in test ids and messages."""
    return "/".join([model, workload, stage, layer] if layer else [model, workload, stage])


def relative_error(analytic: int, reference: int) -> float | None:
    """``|analytic - reference| / reference``; 0 when both are 0; None (infinite) when only
    the reference is 0 or the ratio is beyond a float."""
    if reference == 0:
        return 0.0 if analytic == 0 else None
    try:
        return abs(analytic - reference) / abs(reference)
    except OverflowError:  # beyond a float (counts of hundreds of digits): infinite
        return None


@attrs.frozen
class Comparison:
    """The outcome of checking one metric of one layer (or total) against the reference."""

    model: str
    workload: str
    stage: str
    layer: str
    reference_module: str | None
    metric: str
    analytic: int
    reference: int
    tolerance: float
    ops: dict[str, int] = attrs.field(factory=dict)

    @property
    def abs_error(self) -> int:
        return abs(self.analytic - self.reference)

    @property
    def rel_error(self) -> float | None:
        return relative_error(self.analytic, self.reference)

    @property
    def passed(self) -> bool:
        error = self.rel_error
        return error is not None and error <= self.tolerance

    @property
    def path(self) -> str:
        return check_path(self.model, self.workload, self.stage, self.layer)

    def as_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "workload": self.workload,
            "stage": self.stage,
            "layer": self.layer,
            "reference_module": self.reference_module,
            "metric": self.metric,
            "analytic": self.analytic,
            "reference": self.reference,
            "abs_error": self.abs_error,
            "rel_error": self.rel_error,
            "tolerance": self.tolerance,
            "passed": self.passed,
            "ops": dict(self.ops),
        }

    def describe(self) -> str:
        """A readable block for a failure message or a report."""
        error = self.rel_error
        rel = "infinite (the reference is 0)" if error is None else f"{error:.3e} ({error:.4%})"
        verdict = "within" if self.passed else "OUTSIDE"
        lines = [
            f"{self.path}  [{self.metric}]  {verdict} tolerance",
            f"  analytic   {self.analytic:>28,}",
            f"  reference  {self.reference:>28,}   {self.reference_module or ''}".rstrip(),
            f"  abs error  {self.abs_error:>28,}",
            f"  rel error  {rel:>28}",
            f"  tolerance  {self.tolerance:>28.3e}",
        ]
        if self.ops:
            lines.append("  reference ops: " + ", ".join(f"{op} {n:,}" for op, n in self.ops.items()))
        return "\n".join(lines)
