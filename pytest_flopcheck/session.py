"""Run state of one verification session: the planned checks, the cached analytic trees and
reference counts, and the recorded outcomes. Shared by the pytest plugin and the CLI."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import attrs

from pytest_flopcheck.compare import Comparison, check_path
from pytest_flopcheck.reference import (
    CoverageGap,
    ReferenceCounts,
    ReferenceSkipped,
    coverage_gaps,
    run_reference,
)
from pytest_flopcheck.registry import ModelRegistration, Registry
from pytest_flopcheck.tree import CostNode

PIPELINE = "pipeline"

LAYER = "test_layer"
PARAMS = "test_params"
END_TO_END = "test_end_to_end"


class SelectionError(ValueError):
    """An option names a model or workload that is not registered."""


@attrs.frozen
class Case:
    """One generated check: a layer's FLOPs, a module's parameters, or a total."""

    kind: str
    model: str
    workload: str
    stage: str
    layer: str = ""

    @property
    def id(self) -> str:
        return check_path(self.model, self.workload, self.stage, self.layer)

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.id}]"


@attrs.frozen
class Outcome:
    """What one case produced: its comparisons and any coverage gaps (end-to-end only)."""

    comparisons: tuple[Comparison, ...]
    gaps: tuple[CoverageGap, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons) and not self.gaps


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` as a list of non-empty names."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    return [name.strip() for item in items for name in item.split(",") if name.strip()]


@attrs.define
class FlopcheckSession:
    """Plans checks for the selected models and workloads and evaluates them lazily.

    Analytic trees are built once per (model, workload, stage); each reference runs at most
    once per (model, workload, stage, device) in this process, and its failure to run (a
    skip) is remembered too.
    """

    registry: Registry
    models: list[str]
    workload_filter: list[str]
    device: str = "meta"
    _trees: dict[tuple[str, str, str], CostNode] = attrs.field(factory=dict, init=False)
    _nodes: dict[tuple[str, str, str], dict[str, CostNode]] = attrs.field(factory=dict, init=False)
    _references: dict[tuple[str, str, str], ReferenceCounts | ReferenceSkipped] = attrs.field(
        factory=dict, init=False
    )

    def __attrs_post_init__(self) -> None:
        unknown = [name for name in self.models if name not in self.registry.models]
        if unknown:
            raise SelectionError(
                f"--flopcheck: model {', '.join(map(repr, unknown))} is not registered; "
                f"registered models: {self.registry.describe()}"
            )
        known = {w for name in self.models for w in self.registry.models[name].workloads}
        missing = [w for w in self.workload_filter if w not in known]
        if missing:
            raise SelectionError(
                f"--flopcheck-workloads: workload {', '.join(map(repr, missing))} is not defined by "
                f"{', '.join(self.models)}; defined workloads: {', '.join(sorted(known)) or '(none)'}"
            )

    def registration(self, model: str) -> ModelRegistration:
        return self.registry.models[model]

    def workloads(self, model: str) -> list[str]:
        ids = list(self.registration(model).workloads)
        return [w for w in ids if w in self.workload_filter] if self.workload_filter else ids

    def tree(self, model: str, workload: str, stage: str) -> CostNode:
        key = (model, workload, stage)
        if key not in self._trees:
            reg = self.registration(model)
            self._trees[key] = reg.analytic(reg.workloads[workload], stage)
            self._nodes[key] = {node.id: node for node in self._trees[key].walk()}
        return self._trees[key]

    def node(self, model: str, workload: str, stage: str, layer: str) -> CostNode:
        self.tree(model, workload, stage)
        return self._nodes[(model, workload, stage)][layer]

    def plan(self) -> Iterator[Case]:
        """Every check, in a deterministic order (models, workloads, stages, tree pre-order)."""
        for model in self.models:
            reg = self.registration(model)
            for workload in self.workloads(model):
                for stage in reg.stages:
                    for node in self.tree(model, workload, stage.name).walk():
                        if node.reference is None:
                            continue
                        if node.id:
                            yield Case(LAYER, model, workload, stage.name, node.id)
                        yield Case(PARAMS, model, workload, stage.name, node.id)
                    yield Case(END_TO_END, model, workload, stage.name)
                if reg.multiplicities is not None:
                    yield Case(END_TO_END, model, workload, PIPELINE)

    def reference(self, model: str, workload: str, stage: str) -> ReferenceCounts:
        """The counted reference run; raises ReferenceSkipped if it cannot run here."""
        key = (model, workload, stage)
        if key not in self._references:
            reg = self.registration(model)
            if reg.reference is None:
                self._references[key] = ReferenceSkipped(
                    f"model {model!r} registers no reference implementation"
                )
            else:
                wl = reg.workloads[workload]
                build = reg.reference
                estimate = (
                    reg.reference_bytes(wl, stage) if reg.reference_bytes and self.device != "meta" else None
                )
                try:
                    self._references[key] = run_reference(
                        lambda: build(wl, stage, self.device), self.device, estimate
                    )
                except ReferenceSkipped as skipped:
                    self._references[key] = skipped
        result = self._references[key]
        if isinstance(result, ReferenceSkipped):
            raise result
        return result

    def evaluate(self, case: Case) -> Outcome:
        """Compare the analytic and reference numbers for ``case``."""
        if case.stage == PIPELINE:
            return self._pipeline(case)
        reg = self.registration(case.model)
        tolerance = reg.stage(case.stage).tolerance
        counts = self.reference(case.model, case.workload, case.stage)
        if case.kind == END_TO_END:
            tree = self.tree(case.model, case.workload, case.stage)
            comparison = Comparison(
                case.model,
                case.workload,
                case.stage,
                "",
                "",
                "flops",
                tree.total.flops,
                counts.total_flops,
                tolerance,
                dict(counts.total_ops),
            )
            return Outcome((comparison,), tuple(coverage_gaps(tree, counts)))
        node = self.node(case.model, case.workload, case.stage, case.layer)
        assert node.reference is not None
        metric = "flops" if case.kind == LAYER else "params"
        module = counts.module(node.reference)
        reference_value = counts.value(node.reference, node.reference_own, metric)
        label = (node.reference or "(whole module)") + (" (own work)" if node.reference_own else "")
        analytic_value = node.total.flops if metric == "flops" else node.total.params
        ops = dict(module.ops) if metric == "flops" and not node.reference_own else {}
        return Outcome(
            (
                Comparison(
                    case.model,
                    case.workload,
                    case.stage,
                    case.layer,
                    label,
                    metric,
                    analytic_value,
                    reference_value,
                    tolerance,
                    ops,
                ),
            )
        )

    def _pipeline(self, case: Case) -> Outcome:
        reg = self.registration(case.model)
        assert reg.multiplicities is not None
        times = reg.multiplicities(reg.workloads[case.workload])
        analytic = 0
        reference = 0
        gaps: list[CoverageGap] = []
        for stage in reg.stages:
            n = times.get(stage.name, 0)
            counts = self.reference(case.model, case.workload, stage.name)
            tree = self.tree(case.model, case.workload, stage.name)
            analytic += n * tree.total.flops
            reference += n * counts.total_flops
            gaps += [
                CoverageGap(gap.kind, f"{stage.name}: {gap.name}", gap.detail)
                for gap in coverage_gaps(tree, counts)
            ]
        comparison = Comparison(
            case.model,
            case.workload,
            PIPELINE,
            "",
            "sum of stage totals × runs per generation",
            "flops",
            analytic,
            reference,
            reg.pipeline_tolerance,
        )
        return Outcome((comparison,), tuple(gaps))

    def totals(self, model: str, workload: str) -> dict[str, Any]:
        """Analytic and (where counted in this process) reference totals per stage."""
        reg = self.registration(model)
        times = reg.multiplicities(reg.workloads[workload]) if reg.multiplicities else {}
        stages: dict[str, Any] = {}
        for stage in reg.stages:
            tree = self.tree(model, workload, stage.name)
            cached = self._references.get((model, workload, stage.name))
            stages[stage.name] = {
                "analytic_flops": tree.total.flops,
                "reference_flops": cached.total_flops if isinstance(cached, ReferenceCounts) else None,
                "params": tree.total.params,
                "runs_per_generation": times.get(stage.name) if times else None,
            }
        return stages

    def reference_runs(self) -> list[dict[str, Any]]:
        """The reference runs this process made (timings vary between runs)."""
        runs = []
        for (model, workload, stage), result in sorted(self._references.items()):
            entry: dict[str, Any] = {
                "model": model,
                "workload": workload,
                "stage": stage,
                "device": self.device,
            }
            if isinstance(result, ReferenceCounts):
                entry.update(seconds=round(result.seconds, 4), total_flops=result.total_flops)
            else:
                entry["skipped"] = result.reason
            runs.append(entry)
        return runs
