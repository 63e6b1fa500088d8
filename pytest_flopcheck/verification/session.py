"""Run state of one verification session: the planned checks, the analytic trees and reference
counts they depend on, and their evaluation. Used by the pytest plugin on the controller and on
every xdist worker.

Every dependency (an analytic tree, a reference count, the pipeline's multiplicities) is
produced at most once per process. If it cannot be produced, the cause is remembered and every
check that depends on it gets the same one-line error or skip, raised afresh each time so that
a thousand dependent checks cost a thousand dictionary lookups, not a thousand tracebacks.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Iterator, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import attrs

from pytest_flopcheck.analytic.tree import CostNode, TreeError, check_tree, live_path, live_peak
from pytest_flopcheck.model.registration import Generation, ModelRegistration, Registry
from pytest_flopcheck.names import shorten
from pytest_flopcheck.reference.counting import (
    COUNTS_FORMAT,
    CoverageGap,
    ReferenceCounts,
    ReferenceSkipped,
    count_reference,
    coverage_gaps,
    run_reference,
    uncounted_gaps,
)
from pytest_flopcheck.reference.provenance import UnstableKey, canonical, code_key, framework_digest
from pytest_flopcheck.reference.store import COUNTED, CountFailed, ReferenceStore, cache_key
from pytest_flopcheck.verification.compare import Comparison, check_path

PIPELINE = "pipeline"

LAYER = "test_layer"
PARAMS = "test_params"
END_TO_END = "test_end_to_end"
GENERATION = "test_generation"
IO = "test_io"
MEMORY = "test_memory"
LIVE_PEAK = "live_peak_bytes"
"""The metric test_memory compares within the stage's memory tolerance: the live peak beyond the
weights."""
KINDS = (LAYER, PARAMS, IO, END_TO_END, MEMORY, GENERATION)

DTYPE_NAMES = {"fp32": "float32", "bf16": "bfloat16", "fp16": "float16", "fp8": "float8"}
"""Workload dtype names and the torch dtype a reference must be built in to measure them."""
GENERATION_STAGE = "generation"
"""The stage name under which a tiny end-to-end generation is recorded."""


class SelectionError(ValueError):
    """A selection names a model or workload that is not registered; ``field`` is "models" or
    "workloads", so that the front end can name its own option."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


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
        if self.kind == GENERATION:
            return f"{self.model}/{self.workload}"
        return check_path(self.model, self.workload, self.stage, self.layer)

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.id}]"

    @classmethod
    def parse(cls, name: str) -> Case | None:
        """The case a test name (``test_layer[m/w/s/layer]``) stands for, or None."""
        kind, bracket, rest = name.partition("[")
        if kind not in KINDS or not bracket or not rest.endswith("]"):
            return None
        parts = rest[:-1].split("/")
        if kind == GENERATION:
            return cls(kind, parts[0], parts[1], GENERATION_STAGE) if len(parts) == 2 else None
        if len(parts) not in (3, 4):
            return None
        return cls(kind, *parts)


@attrs.frozen
class Cause:
    """Why a dependency could not be produced: one per (model, workload, stage[, device]) and
    kind, shared by every check that depends on it."""

    key: str
    kind: str  # "analytic", "reference", "multiplicities"
    model: str
    workload: str
    stage: str
    plugin: str
    message: str
    traceback: str = ""


class CheckError(Exception):
    """A check cannot be evaluated because a dependency failed (reported as a test error)."""

    def __init__(self, cause: Cause) -> None:
        super().__init__(cause.message)
        self.cause = cause


class CheckSkipped(Exception):
    """A check cannot run here (reported as a skip, or a failure under ``--flopcheck-strict``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class Outcome:
    """What one case produced: its comparisons and any coverage gaps (end-to-end only)."""

    comparisons: tuple[Comparison, ...]
    gaps: tuple[CoverageGap, ...] = ()

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons) and not self.gaps


@attrs.frozen
class ReferenceRun:
    """Where one reference count used by this process came from."""

    model: str
    workload: str
    stage: str
    device: str
    source: str  # store.COUNTED, CACHED or SHARED
    seconds: float
    total_flops: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` as a list of non-empty names, each once, in order."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


T = TypeVar("T")


def _settled(result: T | ReferenceSkipped | Cause) -> T:
    """A remembered dependency: its value, or its skip or error raised afresh (O(1) per check)."""
    if isinstance(result, ReferenceSkipped):
        raise CheckSkipped(result.reason)
    if isinstance(result, Cause):
        raise CheckError(result)
    return result


def _short_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc, limit=-8))


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@attrs.define
class FlopcheckSession:
    """Plans checks for the selected models and workloads and evaluates them lazily."""

    registry: Registry
    models: list[str]
    workload_filter: list[str]
    device: str = "meta"
    store: ReferenceStore = attrs.field(factory=lambda: ReferenceStore(None, ""))
    _trees: dict[tuple[str, str, str], CostNode | Cause] = attrs.field(factory=dict, init=False)
    _nodes: dict[tuple[str, str, str], dict[str, CostNode]] = attrs.field(factory=dict, init=False)
    _references: dict[tuple[str, str, str], ReferenceCounts | ReferenceSkipped | Cause] = attrs.field(
        factory=dict, init=False
    )
    _runs: dict[tuple[str, str], dict[str, int] | Cause] = attrs.field(factory=dict, init=False)
    _generations: dict[tuple[str, str], tuple[Generation, ReferenceCounts] | ReferenceSkipped | Cause] = (
        attrs.field(factory=dict, init=False)
    )
    reference_runs: list[ReferenceRun] = attrs.field(factory=list, init=False)
    notes: list[str] = attrs.field(factory=list, init=False)
    """Why some counts were not cached (their keys would differ between runs)."""

    def __attrs_post_init__(self) -> None:
        unknown = [name for name in self.models if name not in self.registry.models]
        if unknown:
            raise SelectionError(
                "models",
                f"model {', '.join(map(shorten, unknown))} is not registered; "
                f"registered models: {self.registry.describe()}",
            )
        known = {
            w
            for name in self.models
            for w in [*self.registry.models[name].workloads, *self.registry.models[name].generations]
        }
        missing = [w for w in self.workload_filter if w not in known]
        if missing:
            raise SelectionError(
                "workloads",
                f"workload {', '.join(map(shorten, missing))} is not defined by {', '.join(self.models)}; "
                f"defined workloads: {', '.join(sorted(known)) or '(none)'}",
            )

    def registration(self, model: str) -> ModelRegistration:
        return self.registry.models[model]

    def workloads(self, model: str) -> list[str]:
        ids = list(self.registration(model).workloads)
        return [w for w in ids if w in self.workload_filter] if self.workload_filter else ids

    def _cause(self, kind: str, model: str, workload: str, stage: str, message: str, tb: str = "") -> Cause:
        key = f"{kind}:{model}/{workload}/{stage}" + (f"@{self.device}" if kind == "reference" else "")
        return Cause(key, kind, model, workload, stage, self.registry.origins.get(model, "?"), message, tb)

    # -- analytic trees ---------------------------------------------------------------------

    def tree_or_cause(self, model: str, workload: str, stage: str) -> CostNode | Cause:
        """The validated analytic tree of one run of ``stage``, or why there is none."""
        key = (model, workload, stage)
        if key not in self._trees:
            reg = self.registration(model)
            where = (
                f"the analytic model of {model}/{workload}/{stage} "
                f"(plugin {self.registry.origins.get(model, '?')!r})"
            )
            try:
                built = reg.analytic(reg.workloads[workload], stage)
                tree = check_tree(built)
            except TreeError as exc:
                self._trees[key] = self._cause("analytic", model, workload, stage, f"{where} {exc}")
            except Exception as exc:
                self._trees[key] = self._cause(
                    "analytic",
                    model,
                    workload,
                    stage,
                    f"{where} raised {type(exc).__name__}: {exc}",
                    _short_traceback(exc),
                )
            else:
                self._trees[key] = tree
                self._nodes[key] = {node.id: node for node in tree.walk()}
        return self._trees[key]

    def tree(self, model: str, workload: str, stage: str) -> CostNode:
        """The analytic tree; CheckError if the model's builder failed."""
        return _settled(self.tree_or_cause(model, workload, stage))

    def node(self, model: str, workload: str, stage: str, layer: str) -> CostNode:
        self.tree(model, workload, stage)
        return self._nodes[(model, workload, stage)][layer]

    def runs(self, model: str, workload: str) -> dict[str, int]:
        """Runs of each stage per generation; CheckError if the registration's are unusable."""
        key = (model, workload)
        if key not in self._runs:
            reg = self.registration(model)
            try:
                self._runs[key] = reg.runs(reg.workloads[workload])
            except Exception as exc:
                self._runs[key] = self._cause(
                    "multiplicities",
                    model,
                    workload,
                    PIPELINE,
                    f"the pipeline of {model}/{workload} (plugin {self.registry.origins.get(model, '?')!r}): "
                    f"{exc if isinstance(exc, ValueError) else f'{type(exc).__name__}: {exc}'}",
                )
        return _settled(self._runs[key])

    # -- the plan ---------------------------------------------------------------------------

    def plan(self) -> Iterator[Case]:
        """Every check, in a deterministic order (models, workloads, stages, tree pre-order).

        A stage whose analytic model cannot be built gets its end-to-end check only, which
        reports the error. A stage the workload runs 0 times (a denoising expert no step reaches,
        an image encoder a text-only task skips) gets no checks: there is nothing of it to verify."""
        for model in self.models:
            reg = self.registration(model)
            for workload in self.workloads(model):
                idle = self._idle_stages(model, workload)
                for stage in reg.stages:
                    if stage.name in idle:
                        continue
                    tree = self.tree_or_cause(model, workload, stage.name)
                    if isinstance(tree, CostNode):
                        for node in tree.walk():
                            if node.reference is None:
                                continue
                            if node.id:
                                yield Case(LAYER, model, workload, stage.name, node.id)
                            yield Case(PARAMS, model, workload, stage.name, node.id)
                            if (  # a leaf that states its ops' I/O (a model may leave it 0)
                                node.id
                                and not node.children
                                and node.total.flops
                                and node.total.io_bytes
                                and node.io_exact
                            ):
                                yield Case(IO, model, workload, stage.name, node.id)
                    yield Case(END_TO_END, model, workload, stage.name)
                    if stage.memory_tolerance is not None:
                        yield Case(MEMORY, model, workload, stage.name)
                if reg.multiplicities is not None:
                    yield Case(END_TO_END, model, workload, PIPELINE)
            for name in reg.generations:  # selected like workloads: all, or those named
                if not self.workload_filter or name in self.workload_filter:
                    yield Case(GENERATION, model, name, GENERATION_STAGE)

    def _idle_stages(self, model: str, workload: str) -> set[str]:
        """Stages the workload runs 0 times (none when the multiplicities are unusable: the
        pipeline check reports that)."""
        if self.registration(model).multiplicities is None:
            return set()
        try:
            runs = self.runs(model, workload)
        except CheckError:
            return set()
        return {name for name, n in runs.items() if n == 0}

    # -- references -------------------------------------------------------------------------

    def reference_key(self, model: str, workload: str, stage: str) -> str:
        """Everything a count depends on, digested (see :mod:`pytest_flopcheck.reference.provenance`);
        UnstableKey when some part differs between runs."""
        reg = self.registration(model)
        wl = reg.workloads[workload]
        return cache_key(
            {
                "model": model,
                "workload": canonical(wl),
                "stage": stage,
                "device": self.device,
                **self._shared_key(reg),
                "reference": code_key(reg.reference),
                "reference_config": canonical(reg.reference_config(wl, stage))
                if reg.reference_config
                else None,
            }
        )

    def _shared_key(self, reg: ModelRegistration) -> dict[str, Any]:
        """The parts of a key every count of a model shares: package versions, the counts'
        layout, the framework's counting code, and the model's op policy with its formulas."""
        packages = sorted({"torch", "pytest-flopcheck", *reg.reference_packages})
        return {
            "versions": {p: _version(p) for p in packages},
            "counts_format": COUNTS_FORMAT,
            "framework": framework_digest(),
            "op_policy": reg.op_policy.describe(),
            "formulas": code_key(*reg.op_policy.formulas.values()),
        }

    def _not_cached(self, what: str, why: UnstableKey) -> None:
        self.notes.append(f"{what} is not cached: its cache key would hold {why}")

    def reference(self, model: str, workload: str, stage: str) -> ReferenceCounts:
        """The counted reference run; CheckSkipped if it cannot run here, CheckError if its
        builder or its run failed."""
        key = (model, workload, stage)
        if key not in self._references:
            self._references[key] = self._count(model, workload, stage)
        return _settled(self._references[key])

    def _count(self, model: str, workload: str, stage: str) -> ReferenceCounts | ReferenceSkipped | Cause:
        reg = self.registration(model)
        if reg.reference is None:
            return ReferenceSkipped(f"model {model!r} registers no reference implementation")
        wl = reg.workloads[workload]
        build = reg.reference
        try:
            sized = reg.reference_bytes is not None and self.device != "meta"
            estimate = reg.reference_bytes(wl, stage) if reg.reference_bytes and sized else None
            try:
                key: str | None = self.reference_key(model, workload, stage)
            except UnstableKey as why:
                key = None
                self._not_cached(f"the reference count of {model}/{workload}/{stage}", why)
            except Exception as exc:  # the registration's reference_config raised
                raise CountFailed(f"{type(exc).__name__}: {exc}", _short_traceback(exc)) from exc
            start = time.perf_counter()
            counts, source = self.store.fetch(
                key,
                lambda: run_reference(
                    lambda: build(wl, stage, self.device), self.device, estimate, reg.op_policy
                ),
            )
        except ReferenceSkipped as skipped:
            return skipped
        except CountFailed as failed:
            return self._cause(
                "reference",
                model,
                workload,
                stage,
                f"the reference of {model}/{workload}/{stage} on {self.device} (plugin "
                f"{self.registry.origins.get(model, '?')!r}) could not be built or run: {failed.description}",
                failed.traceback,
            )
        seconds = counts.seconds if source == COUNTED else time.perf_counter() - start
        self.reference_runs.append(
            ReferenceRun(model, workload, stage, self.device, source, round(seconds, 4), counts.total_flops)
        )
        return counts

    # -- evaluation -------------------------------------------------------------------------

    def generation(self, model: str, name: str) -> tuple[Generation, ReferenceCounts]:
        """The registration's tiny generation and its counts (the whole run on CPU), made once;
        CheckSkipped without its packages, CheckError if building or running it failed."""
        key = (model, name)
        if key not in self._generations:
            self._generations[key] = self._run_generation(model, name)
        return _settled(self._generations[key])

    def _run_generation(
        self, model: str, name: str
    ) -> tuple[Generation, ReferenceCounts] | ReferenceSkipped | Cause:
        reg = self.registration(model)
        where = f"the generation {model}/{name} (plugin {self.registry.origins.get(model, '?')!r})"
        try:
            generation = reg.generations[name]()
            if not isinstance(generation, Generation):
                raise TypeError(f"it returned {type(generation).__name__}, not a Generation")
        except Exception as exc:
            message = f"{where} could not be built: {type(exc).__name__}: {exc}"
            return self._cause("generation", model, name, GENERATION_STAGE, message, _short_traceback(exc))
        try:
            key: str | None = cache_key(
                {
                    "model": model,
                    "generation": name,
                    "device": "cpu",
                    **self._shared_key(reg),
                    "build": code_key(generation.build),
                }
            )
        except UnstableKey as why:
            key = None
            self._not_cached(f"the count of generation {model}/{name}", why)
        start = time.perf_counter()
        try:
            counts, source = self.store.fetch(
                key, lambda: count_reference(generation.build(), "cpu", reg.op_policy)
            )
        except CountFailed as failed:
            if failed.description.startswith(("ModuleNotFoundError", "ImportError")):
                return ReferenceSkipped(
                    f"{where} needs a package that is not installed: {failed.description}"
                )
            message = f"{where} could not be built or run: {failed.description}"
            return self._cause("generation", model, name, GENERATION_STAGE, message, failed.traceback)
        seconds = counts.seconds if source == COUNTED else time.perf_counter() - start
        self.reference_runs.append(
            ReferenceRun(model, name, GENERATION_STAGE, "cpu", source, round(seconds, 4), counts.total_flops)
        )
        return generation, counts

    def prepare(self, case: Case) -> None:
        """Produce what ``case`` depends on (the item's setup): CheckError or CheckSkipped."""
        if case.kind == GENERATION:
            self.generation(case.model, case.workload)
            return
        if case.stage == PIPELINE:
            reg = self.registration(case.model)
            running = [stage.name for stage in reg.stages if self.runs(case.model, case.workload)[stage.name]]
            for name in running:
                self.tree(case.model, case.workload, name)
            for name in running:
                self.reference(case.model, case.workload, name)
            return
        self.tree(case.model, case.workload, case.stage)
        self.reference(case.model, case.workload, case.stage)

    def evaluate(self, case: Case) -> Outcome:
        """Compare the analytic and reference numbers for ``case`` (after :meth:`prepare`)."""
        if case.kind == GENERATION:
            return self._generation(case)
        if case.stage == PIPELINE:
            return self._pipeline(case)
        reg = self.registration(case.model)
        tolerance = reg.stage(case.stage).tolerance
        counts = self.reference(case.model, case.workload, case.stage)
        if case.kind == MEMORY:
            return self._memory(case, counts)
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
        metric = {LAYER: "flops", PARAMS: "params", IO: "io_bytes"}[case.kind]
        if metric == "io_bytes":
            tolerance = 0.0  # the bytes of the ops the layer claims: exact
        module = counts.module(node.reference)
        ops = node.reference_ops if metric != "params" else ()
        reference_value = counts.value(node.reference, node.reference_own, metric, ops)
        whole = (
            f"(stage scope: {', '.join(counts.scope)})"
            if counts.scope and metric == "params"
            else "(whole module)"
        )
        label = (node.reference or whole) + (" (own work)" if node.reference_own else "")
        label += f" [{', '.join(ops)}]" if ops else ""
        analytic_value = getattr(node.total, metric)
        shown = {"flops": module.ops, "io_bytes": module.io_ops}.get(metric, {})
        shown = dict(shown) if not node.reference_own else {}
        comparison = Comparison(
            case.model,
            case.workload,
            case.stage,
            case.layer,
            label,
            metric,
            analytic_value,
            reference_value,
            tolerance,
            shown,
        )
        return Outcome((comparison,))

    def _memory(self, case: Case, counts: ReferenceCounts) -> Outcome:
        """The stage's weights (exact) and its live peak beyond them (within the stage's memory
        tolerance) against the reference's parameters and live tensor bytes, measured in the sized
        dtype. The part beyond the weights is compared, not the whole peak: weights dominate
        many stages' peaks and would hide an activation model's error."""
        reg = self.registration(case.model)
        tolerance = reg.stage(case.stage).memory_tolerance
        assert tolerance is not None
        sized = DTYPE_NAMES.get(str(getattr(reg.workloads[case.workload], "dtype", "")))
        if sized is not None and counts.dtype != sized:
            raise CheckSkipped(
                f"the reference was built in {counts.dtype or 'an unknown dtype'} on {counts.device}, not in "
                f"the sized {sized}: its memory is not comparable (count on meta to measure it)"
            )
        tree = self.tree(case.model, case.workload, case.stage)
        live = live_peak(tree)
        path = live_path(tree)[-1].id or "(stage)"
        measured = counts.peak_bytes - counts.weight_bytes
        allocator = (
            ""
            if counts.allocator_peak_bytes is None
            else f"; the CUDA allocator's peak (its rounding, workspaces): {counts.allocator_peak_bytes:,}"
        )
        comparisons = (
            Comparison(
                case.model, case.workload, case.stage, "", "parameters of the stage", "weight_bytes",
                tree.total.weight_bytes, counts.weight_bytes, 0.0,
            ),
            Comparison(
                case.model, case.workload, case.stage, "",
                f"live tensor bytes beyond the weights; analytic peak at {path}; with the weights: "
                f"analytic {tree.total.weight_bytes + live:,}, measured {counts.peak_bytes:,}"
                + allocator,
                LIVE_PEAK, live, measured, tolerance,
            ),
        )  # fmt: skip
        return Outcome(comparisons)

    def _generation(self, case: Case) -> Outcome:
        """The whole tiny run, counted, against the analytic total: exact, and no uncounted op."""
        generation, counts = self.generation(case.model, case.workload)
        comparison = Comparison(
            case.model,
            case.workload,
            GENERATION_STAGE,
            "",
            generation.description or "whole generation",
            "flops",
            generation.analytic_flops,
            counts.total_flops,
            0.0,
            dict(counts.total_ops),
        )
        return Outcome((comparison,), tuple(uncounted_gaps(counts)))

    def _pipeline(self, case: Case) -> Outcome:
        reg = self.registration(case.model)
        times = self.runs(case.model, case.workload)
        analytic = 0
        reference = 0
        gaps: list[CoverageGap] = []
        for stage in reg.stages:
            n = times[stage.name]
            if n == 0:  # a stage this workload never runs adds nothing
                continue
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
