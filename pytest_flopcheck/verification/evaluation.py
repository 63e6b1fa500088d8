"""Evaluating a check: its analytic numbers against the reference's, as comparisons with their
tolerances (and coverage gaps for totals), once its dependencies are produced; and the plan of
every check of a selection, in a deterministic order."""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from pytest_flopcheck.analytic.tree import CostNode, Metrics, live_path, live_peak
from pytest_flopcheck.model.generation import per_generation
from pytest_flopcheck.model.parallel import FSDP2_PADDING, FSDP_GATHER, fsdp2_live_peak
from pytest_flopcheck.model.workload import DTYPES, sized_dtype
from pytest_flopcheck.reference.counting import CoverageGap, ReferenceCounts, coverage_gaps, uncounted_gaps
from pytest_flopcheck.verification.cases import (
    END_TO_END,
    GENERATION,
    GENERATION_STAGE,
    IO,
    LAYER,
    LIVE_PEAK,
    MEMORY,
    PARALLEL,
    PARALLEL_METRICS,
    PARAMS,
    PIPELINE,
    TRAFFIC,
    TRAFFIC_METRICS,
    Case,
)
from pytest_flopcheck.verification.compare import OTHER_OPS, Comparison
from pytest_flopcheck.verification.dependencies import CheckError, CheckSkipped, Dependencies


@attrs.frozen
class Outcome:
    """What one case produced: its comparisons, any coverage gaps (end-to-end only), and what a
    failure should explain beyond the numbers (``detail``: where a memory peak was set)."""

    comparisons: tuple[Comparison, ...]
    gaps: tuple[CoverageGap, ...] = ()
    detail: str = ""

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.comparisons) and not self.gaps


def plan(deps: Dependencies) -> Iterator[Case]:
    """Every check, in a deterministic order (models, workloads, stages, tree pre-order).

    A stage whose analytic model cannot be built gets its end-to-end check only, which
    reports the error. A stage the workload runs 0 times (a denoising expert no step reaches,
    an image encoder a text-only task skips) gets no checks: there is nothing of it to verify."""
    for model in deps.selection.models:
        reg = deps.registration(model)
        for workload in deps.selection.workloads(model):
            idle = _idle_stages(deps, model, workload)
            for stage in reg.stages:
                if stage.name in idle:
                    continue
                tree = deps.tree_or_cause(model, workload, stage.name)
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
                        if node.id and not node.children and node.metrics.elementwise_ops:
                            yield Case(TRAFFIC, model, workload, stage.name, node.id)
                yield Case(END_TO_END, model, workload, stage.name)
                if stage.traffic_tolerance is not None:
                    yield Case(TRAFFIC, model, workload, stage.name)
                if stage.memory_tolerance is not None:
                    yield Case(MEMORY, model, workload, stage.name)
            if reg.multiplicities is not None:
                yield Case(END_TO_END, model, workload, PIPELINE)
            yield from _parallel_cases(deps, model, workload, idle)
        for name in reg.generations:  # selected like workloads: all, or those named
            if not deps.selection.workload_filter or name in deps.selection.workload_filter:
                yield Case(GENERATION, model, name, GENERATION_STAGE)


def _parallel_cases(deps: Dependencies, model: str, workload: str, idle: set[str]) -> Iterator[Case]:
    """test_parallel: every node that names a reference module, on rank 0 of each layout the
    registration verifies for this workload."""
    parallel = deps.registration(model).parallel
    if parallel is None or parallel.reference is None:
        return
    for checked, stage, layout in parallel.checks:
        if checked != workload or stage in idle:
            continue
        key = deps.layout_stage(stage, layout)
        tree = deps.tree_or_cause(model, workload, key)
        if not isinstance(tree, CostNode):
            yield Case(PARALLEL, model, workload, key)
            continue
        for node in tree.walk():
            if node.reference is not None or node is tree:  # the stage whole, whatever its root claims
                yield Case(PARALLEL, model, workload, key, node.id)


def _idle_stages(deps: Dependencies, model: str, workload: str) -> set[str]:
    """Stages the workload runs 0 times (none when the multiplicities are unusable: the
    pipeline check reports that)."""
    if deps.registration(model).multiplicities is None:
        return set()
    try:
        runs = deps.runs(model, workload)
    except CheckError:
        return set()
    return {name for name, n in runs.items() if n == 0}


def evaluate(deps: Dependencies, case: Case) -> Outcome:
    """Compare the analytic and reference numbers for ``case`` (after :meth:`prepare`)."""
    if case.kind == GENERATION:
        return _generation(deps, case)
    if case.stage == PIPELINE:
        return _pipeline(deps, case)
    if case.kind == PARALLEL:
        return _parallel(deps, case)
    reg = deps.registration(case.model)
    tolerance = reg.stage(case.stage).tolerance
    counts = deps.reference(case.model, case.workload, case.stage)
    if case.kind == MEMORY:
        return _memory(deps, case, counts)
    if case.kind == TRAFFIC:
        return _traffic(deps, case, counts)
    if case.kind == END_TO_END:
        tree = deps.tree(case.model, case.workload, case.stage)
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
    node = deps.node(case.model, case.workload, case.stage, case.layer)
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


def _parallel(deps: Dependencies, case: Case) -> Outcome:
    """One rank of a layout: the node's FLOPs against the module's counted on rank 0 of the real
    parallel code, exactly; for a group claiming its module whole (and the stage), also the bytes
    handed to collectives and their number. A leaf claiming a module's own work compares FLOPs
    only: the collectives inside that module are claimed by the group around it."""
    counts = deps.reference(case.model, case.workload, case.stage)
    node = deps.node(case.model, case.workload, case.stage, case.layer)
    if not case.layer:  # the stage whole: the reference's whole scope
        node = attrs.evolve(node, reference="", reference_own=False)
    assert node.reference is not None
    metrics = ("flops",) if node.reference_own or not node.children else PARALLEL_METRICS
    label = (node.reference or "(whole module)") + (" (own work)" if node.reference_own else "")
    base, layout = deps.split_stage(case.model, case.stage)
    assert layout is not None
    sharded = base in layout.fsdp
    # FSDP2 pads each parameter, the model FSDP1's flat parameter: see FSDP2_PADDING
    padded = sharded and any(n.id.endswith(FSDP_GATHER) for n in node.walk())
    comparisons = tuple(
        Comparison(
            case.model,
            case.workload,
            case.stage,
            case.layer,
            label,
            metric,
            getattr(node.total, metric),
            counts.value(
                node.reference, node.reference_own, metric, node.reference_ops if metric == "flops" else ()
            ),
            FSDP2_PADDING if padded and metric == "collective_bytes" else 0.0,
        )
        for metric in metrics
    )
    stage = deps.registration(case.model).stage(base)
    # Elementwise traffic as test_traffic compares it, where the reference ran on meta (FSDP2's
    # runs on fake CPU tensors, whose kernels decompose some ops otherwise)
    if not sharded and not node.children and node.metrics.elementwise_ops:
        comparisons += _traffic_rows(case, node.reference, node.reference_own, node.total, counts, 0.0)
    if not sharded and not case.layer and stage.traffic_tolerance is not None:
        comparisons += _traffic_rows(case, "", False, node.total, counts, stage.traffic_tolerance)
    if not case.layer:  # the weights rank 0 holds
        if sharded:
            label, held, tolerance = (
                "weight shards of rank 0 (FSDP)",
                -(-node.total.weight_bytes // layout.gpus),
                FSDP2_PADDING,
            )
        else:
            what = (
                "its tensor-parallel shards and the weights every rank holds"
                if layout.tensor > 1
                else "every weight"
            )
            label, held, tolerance = f"weights of rank 0 ({what})", node.total.weight_bytes, 0.0
        comparisons += (
            Comparison(
                case.model, case.workload, case.stage, case.layer, label, "weight_bytes", held,
                counts.weight_bytes, tolerance,
            ),
        )  # fmt: skip
    detail = ""
    fsdp2 = None  # where the layout shards the stage: FSDP2's peak and the weights gathered at it
    if sharded and not case.layer:
        reg = deps.registration(case.model)
        assert reg.parallel is not None
        fsdp2 = fsdp2_live_peak(node, reg.parallel.fsdp_units.get(base, ""))
    live = _parallel_live(deps, case, node, counts, fsdp2, stage.memory_tolerance)
    if live is not None:
        comparisons += (live,)
        detail = memory_detail(node, counts, fsdp2)
    gaps = tuple(coverage_gaps(node, counts)) if not case.layer else ()
    return Outcome(comparisons, gaps, detail)


def _parallel_live(
    deps: Dependencies,
    case: Case,
    tree: CostNode,
    counts: ReferenceCounts,
    fsdp2: tuple[int, int] | None,
    tolerance: float | None,
) -> Comparison | None:
    """Rank 0's live peak beyond its weights against the tracker's, within the stage's memory
    tolerance, as test_memory compares it on one GPU: for the whole stage, where the stage has a
    memory model and the count ran in the sized dtype. ``fsdp2``: where FSDP shards the stage,
    the peak with the weights FSDP2 (which the reference runs) holds gathered, and those
    (:func:`~pytest_flopcheck.model.parallel.fsdp2_live_peak`; reports size FSDP1's)."""
    if case.layer or tolerance is None:
        return None
    if unmeasured_dtype(deps.registration(case.model).workloads[case.workload], counts) is not None:
        return None
    path = live_path(tree)[-1].id or "(stage)"
    label = f"live tensor bytes beyond the weights on rank 0; analytic peak at {path}"
    analytic = live_peak(tree)
    if fsdp2 is not None:
        analytic, gathered = fsdp2
        label = (
            f"live tensor bytes beyond the weight shards on rank 0, with {gathered:,} bytes of weights "
            "FSDP2 holds gathered then (fsdp2_live_peak)"
        )
    return Comparison(
        case.model, case.workload, case.stage, "", label,
        LIVE_PEAK, analytic, counts.peak_bytes - counts.weight_bytes, tolerance,
    )  # fmt: skip


def _traffic_rows(
    case: Case, reference: str, own: bool, metrics: Metrics, counts: ReferenceCounts, tolerance: float
) -> tuple[Comparison, ...]:
    """The elementwise work of a leaf (its module's other ops) or of the stage (``reference``
    ``""``: every op without counted FLOPs) against the reference's."""
    label = (
        (reference or "(whole module)") + (" (own work)" if own else "") + OTHER_OPS
        if case.layer
        else "every op of the stage without counted FLOPs"
    )
    return tuple(
        Comparison(
            case.model,
            case.workload,
            case.stage,
            case.layer,
            label,
            metric,
            getattr(metrics, metric),
            counts.value(reference, own, metric),
            tolerance,
        )
        for metric in TRAFFIC_METRICS
    )


def _traffic(deps: Dependencies, case: Case, counts: ReferenceCounts) -> Outcome:
    """A leaf's predicted elementwise work against the other ops of its module (its own ops with
    ``reference_own``), exactly; or, for the stage (no layer), the tree's total against every
    other op the reference ran, within the stage's traffic tolerance."""
    if case.layer:
        node = deps.node(case.model, case.workload, case.stage, case.layer)
        assert node.reference is not None
        return Outcome(_traffic_rows(case, node.reference, node.reference_own, node.total, counts, 0.0))
    tolerance = deps.registration(case.model).stage(case.stage).traffic_tolerance
    assert tolerance is not None
    total = deps.tree(case.model, case.workload, case.stage).total
    return Outcome(_traffic_rows(case, "", False, total, counts, tolerance))


def unmeasured_dtype(workload: object, counts: ReferenceCounts) -> str | None:
    """The dtype the model sizes ``workload`` in when the count ran in another one (its live
    bytes then say nothing of the model's), else None."""
    dtype = sized_dtype(workload)
    sized = DTYPES[dtype].torch if dtype is not None else None
    return sized if sized is not None and counts.dtype != sized else None


def _memory(deps: Dependencies, case: Case, counts: ReferenceCounts) -> Outcome:
    """The stage's weights (exact) and its live peak beyond them (within the stage's memory
    tolerance) against the reference's parameters and live tensor bytes, measured in the sized
    dtype. The part beyond the weights is compared, not the whole peak: weights dominate
    many stages' peaks and would hide an activation model's error."""
    reg = deps.registration(case.model)
    tolerance = reg.stage(case.stage).memory_tolerance
    assert tolerance is not None
    sized = unmeasured_dtype(reg.workloads[case.workload], counts)
    if sized is not None:
        raise CheckSkipped(
            f"the reference was built in {counts.dtype or 'an unknown dtype'} on {counts.device}, not in "
            f"the sized {sized}: its memory is not comparable (count on meta to measure it)"
        )
    tree = deps.tree(case.model, case.workload, case.stage)
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
    return Outcome(comparisons, detail=memory_detail(tree, counts))


SHOWN_TENSORS = 8
"""Live tensors a failing memory check lists (every one is in ``flopcheck inspect``)."""


def memory_detail(tree: CostNode, counts: ReferenceCounts, fsdp2: tuple[int, int] | None = None) -> str:
    """Where each side puts the peak: the measured peak's op and module and the largest tensors
    the call created that were live then, beside the analytic peak's path with what each node
    holds and the leaf's own call (its inputs and outputs, its scratch)."""
    where = f"{counts.peak_op or '(start)'} in {counts.peak_module or '(the reference module)'}"
    lines = [
        f"measured peak: {counts.peak_bytes - counts.weight_bytes:,} bytes beyond the weights, set by "
        f"{where}; live then, beyond the weights and inputs ({len(counts.peak_tensors)} tensors the call "
        "created, largest first):"
    ]
    for t in counts.peak_tensors[:SHOWN_TENSORS]:
        lines.append(f"  {t.bytes:>16,}  {t.dtype} {list(t.shape)}  {t.op} in {t.module or '(root)'}")
    if len(counts.peak_tensors) > SHOWN_TENSORS:
        rest = sum(t.bytes for t in counts.peak_tensors[SHOWN_TENSORS:])
        lines.append(
            f"  {rest:>16,}  in {len(counts.peak_tensors) - SHOWN_TENSORS} more "
            "(flopcheck inspect lists them)"
        )
    if fsdp2 is not None and fsdp2[0] - fsdp2[1] != live_peak(tree):  # FSDP2's copy-out moment
        peak, gathered = fsdp2
        lines.append(f"analytic peak: {peak:,} bytes beyond the weight shards, at an FSDP2 unit's copy-out:")
        lines.append(f"  {peak - gathered:>16,}  held by (stage)")
        lines.append(f"  {gathered:>16,}  weights FSDP2 holds gathered (fsdp2_live_peak)")
        return "\n".join(lines)
    path = live_path(tree)
    total = live_peak(tree) if fsdp2 is None else fsdp2[0]
    lines.append(f"analytic peak: {total:,} bytes beyond the weights, at {path[-1].id or '(stage)'}:")
    if fsdp2 is not None:
        lines.append(f"  {fsdp2[1]:>16,}  weights FSDP2 holds gathered (fsdp2_live_peak)")
    for node in path[:-1]:
        if node.held_bytes:
            lines.append(f"  {node.held_bytes:>16,}  held by {node.id or '(stage)'} while its children run")
    leaf = path[-1]
    call = max(leaf.per_call.io_bytes - leaf.per_call.weight_bytes, 0)
    lines.append(f"  {call:>16,}  the inputs and outputs of one call of {leaf.id or '(stage)'}")
    if leaf.scratch_bytes:
        lines.append(f"  {leaf.scratch_bytes:>16,}  its scratch (temporaries beside its call)")
    if leaf.held_bytes:
        lines.append(f"  {leaf.held_bytes:>16,}  held by it")
    return "\n".join(lines)


def _generation(deps: Dependencies, case: Case) -> Outcome:
    """The whole tiny run, counted, against the analytic total: exact, and no uncounted op."""
    generation, counts = deps.generation(case.model, case.workload)
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


def _pipeline(deps: Dependencies, case: Case) -> Outcome:
    """The generation's FLOPs, analytic and counted: every stage it runs, times its runs."""
    reg = deps.registration(case.model)
    runs = deps.runs(case.model, case.workload)
    running = [stage.name for stage in reg.stages if runs[stage.name]]  # a stage run 0 times adds nothing
    trees = {name: deps.tree(case.model, case.workload, name) for name in running}
    counts = {name: deps.reference(case.model, case.workload, name) for name in running}
    gaps = [
        CoverageGap(gap.kind, f"{name}: {gap.name}", gap.detail)
        for name in running
        for gap in coverage_gaps(trees[name], counts[name])
    ]
    comparison = Comparison(
        case.model,
        case.workload,
        PIPELINE,
        "",
        "sum of stage totals × runs per generation",
        "flops",
        per_generation(runs, {name: tree.total.flops for name, tree in trees.items()}),
        per_generation(runs, {name: c.total_flops for name, c in counts.items()}),
        reg.pipeline_tolerance,
    )
    return Outcome((comparison,), tuple(gaps))
