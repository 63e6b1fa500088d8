"""Building a :class:`~pytest_flopcheck.sizing.records.SizingReport` from a registration's
analytic model alone (no torch): per-stage totals, the node trees, the top layers and
categories, memory, time per GPU, serving figures and a runtime's view of the pipeline."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pytest_flopcheck.analytic.tree import COLLECTIVE_KINDS, CostNode, check_tree, live_peak, tree_dtype_bytes
from pytest_flopcheck.model.generation import GenerationTotals
from pytest_flopcheck.model.parallel import SINGLE, Layout, fsdp_gathered_params
from pytest_flopcheck.model.registration import ModelRegistration, model_call
from pytest_flopcheck.model.workload import DTYPE_BYTES, PRECISIONS, at_dtype, sized_dtype, workload_fields
from pytest_flopcheck.sizing.hardware import GPUS, Gpu
from pytest_flopcheck.sizing.records import (
    CollectiveUse,
    Constant,
    GpuTime,
    KvRow,
    MemoryFigures,
    MissingPrecision,
    ModelInfo,
    Move,
    NodeFigures,
    PipelineMemory,
    RuntimeFigures,
    RuntimeGpu,
    RuntimeStage,
    ServingFigures,
    ServingTimes,
    SizingReport,
    StageInfo,
    StageMemory,
    StageTime,
    StageTotals,
    TimeFigures,
    TopCategory,
    TopLayer,
    Unsupported,
)
from pytest_flopcheck.sizing.timing import (
    LAUNCH,
    Execution,
    TimeParts,
    attention_kernel,
    transfer_seconds,
    tree_time,
)

CONVENTION = (
    "FLOPs follow torch.utils.flop_counter: 2 per multiply-add for matmul, convolution and attention "
    "(QK^T and PV, no causal discount); bias adds, norms, activations, softmax, RoPE and other "
    "elementwise work count 0."
)
TIME_CAVEAT = (
    "Per-kernel estimates: matmuls and convolutions at the GPU's measured largest-shape matmul "
    "efficiency times their shape's tile and wave quantization, attention at its kernel's measured "
    "efficiency, elementwise traffic and bandwidth-bound kernels at the measured copy bandwidth, and "
    "the launches the GPU's work does not hide; every constant and its source is listed, borrowed "
    "ones marked assumed. Not modelled: kernel overlap across streams, allocator and synchronisation "
    "stalls, clock throttling, communication."
)
MEMORY_CAVEAT = (
    "A stage's peak is its weights plus its live set: what the model package declares its implementation "
    "holds (residual streams, caches, decoded frames) plus the largest layer call's inputs, outputs and "
    "temporaries, checked by test_memory against the live tensor bytes of the real module where the "
    "stage declares a memory tolerance (elsewhere marked unchecked, and at least the largest layer call "
    "plus every cache); allocator rounding, caching and kernel workspaces are not included."
)
SERVING_CAVEAT = (
    "Time per output token is the mean over the decode steps (later steps read a longer KV cache). One "
    "batch runs from its first stage to its last token: no continuous batching, no overlap of one batch's "
    "decode with another's prefill, no speculative decoding. Throughput is the batch over its whole "
    "generation time."
)
RUNTIME_NOTE = (
    "Weights at the runtime's dtype; activations at its compute precision (fp8 matmuls keep bf16 "
    "activations); stages on the CPU take no GPU memory and their time is not estimated; stages the "
    "workload does not run are not loaded. The GPU holds, while a stage runs, the weights resident then "
    "(placements: resident, moved in and out around the stage, or offloaded after its last run) and the "
    "stage's live set beyond its weights, as in the memory section; allocator caching and fragmentation "
    "are not included. Seconds are the stages' GPU time plus the weights' host-GPU copies at the link's "
    "measured rate."
)
KV_LENGTHS_UP_TO = 32_768
"""Without a model's ``max_context``, the KV-cache table stops here."""


def generation_totals(reg: ModelRegistration, workload: Any, per_run: Mapping[str, Any]) -> GenerationTotals:
    """The generation's totals for one run's metrics of each stage (``per_run``), with the
    registration's runs per generation (checked) and weight owners."""
    return GenerationTotals(
        reg.checked_runs(workload), dict(per_run), {s.name: s.weights_of or s.name for s in reg.stages}
    )


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def _fraction(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


def node_figures(node: CostNode) -> NodeFigures:
    """A node of an analytic tree as the report shows it."""
    return NodeFigures(
        id=node.id,
        category=node.category,
        metrics=node.metrics,
        repeat=node.repeat,
        calls=node.calls,
        largest_call=node.per_call if node.calls != 1 else None,
        reference=None
        if node.reference is None
        else node.reference + (" (own work)" if node.reference_own else ""),
        note=node.note,
        children=tuple(node_figures(child) for child in node.children),
    )


def build_report(
    reg: ModelRegistration,
    workload: Any,
    *,
    run_id: str,
    created_utc: str,
    gpus: Sequence[Gpu] | None = None,
    precision: str = "bf16",
    runtime: str | None = None,
    layout: Layout = SINGLE,
) -> SizingReport:
    """The report for one workload (with ``runtime``, also that runtime's memory and times:
    per-stage weight dtypes, compute precisions, devices and residency); ModelError if the
    registration's own code fails."""
    trees = {stage.name: reg.tree(workload, stage.name) for stage in reg.stages}
    generation = generation_totals(reg, workload, {name: tree.total for name, tree in trees.items()})
    runs = generation.runs
    total = generation.total
    stages = tuple(
        StageTotals(
            name, runs[name], tree.total, generation.of(name), _share(generation.of(name).flops, total.flops)
        )
        for name, tree in trees.items()
    )
    gpu_list = list(gpus) if gpus is not None else list(GPUS.values())
    time = time_figures(reg, trees, runs, gpu_list, precision)
    warnings = (
        [str(w) for w in model_call(reg.name, "warnings", reg.warnings, workload)] if reg.warnings else []
    )
    running = None if runtime is None else runtime_figures(reg, workload, runtime, runs, gpu_list, layout)
    per_gpu = (
        {e.gpu: {s.name: s.per_generation_s for s in e.stages} for e in time.estimates}
        if running is None
        else {e.gpu: {s.name: s.per_generation_s for s in e.stages} for e in running.estimates}
    )
    serving = serving_figures(reg, workload, per_gpu, warnings)
    metadata = dict(model_call(reg.name, "metadata", reg.metadata, workload)) if reg.metadata else {}
    return SizingReport(
        run_id=run_id,
        created_utc=created_utc,
        model=ModelInfo(
            reg.name,
            reg.description,
            tuple(StageInfo(s.name, s.description, s.weights_of) for s in reg.stages),
            metadata,
        ),
        workload=workload_fields(workload),
        convention=CONVENTION,
        stages=stages,
        totals=total,
        memory=memory_figures(reg, trees, sized_dtype(workload), generation),
        time=time,
        top_layers=_top_layers(trees, runs, total.flops),
        top_categories=_top_categories(trees, runs, total.flops),
        trees={name: node_figures(tree) for name, tree in trees.items()},
        warnings=tuple(warnings),
        not_modeled=tuple(reg.not_modeled),
        serving=serving,
        runtime=running,
    )


def _ranked_leaves(
    trees: Mapping[str, CostNode], runs: Mapping[str, int]
) -> list[tuple[int, int, int, str, CostNode]]:
    """Leaves with FLOPs, largest per generation first (ties in stage and tree order)."""
    layers = []
    for stage_index, (name, tree) in enumerate(trees.items()):
        for order, (node, times) in enumerate(tree.runs()):
            if node.children or node.metrics.flops == 0:
                continue
            layers.append((-node.metrics.flops * times * runs[name], stage_index, order, name, node))
    layers.sort(key=lambda item: item[:3])
    return layers


def _top_layers(trees: Mapping[str, CostNode], runs: Mapping[str, int], whole: int) -> tuple[TopLayer, ...]:
    return tuple(
        TopLayer(name, node.id, node.category, node.reference, -neg, _share(-neg, whole))
        for neg, _, _, name, node in _ranked_leaves(trees, runs)[:10]
    )


def _top_categories(
    trees: Mapping[str, CostNode], runs: Mapping[str, int], whole: int
) -> tuple[TopCategory, ...]:
    categories: dict[str, int] = {}
    for name, tree in trees.items():
        for node, times in tree.runs():
            if node.children or node.metrics.flops == 0:
                continue
            categories[node.category] = (
                categories.get(node.category, 0) + node.metrics.flops * times * runs[name]
            )
    ranked = sorted(categories.items(), key=lambda item: (-item[1], item[0]))[:5]
    return tuple(TopCategory(category, flops, _share(flops, whole)) for category, flops in ranked)


# -- memory ------------------------------------------------------------------------------------------


def peak_activation_bytes(tree: CostNode) -> int:
    """The largest single layer call's inputs plus outputs (a node of several calls counts its
    largest call, not their sum)."""
    return max(
        (max(leaf.per_call.io_bytes - leaf.per_call.weight_bytes, 0) for leaf in tree.leaves()), default=0
    )


def working_bytes(tree: CostNode, verified: bool) -> int:
    """What a stage holds beyond its weights at its peak: the model's live set
    (:func:`~pytest_flopcheck.analytic.tree.live_peak`), which ``test_memory`` checks where the stage
    declares a memory tolerance (``verified``); for a stage that does not, the largest layer call
    plus every cache where that is larger (a live set that may not model its caches)."""
    live = live_peak(tree)
    return live if verified else max(live, peak_activation_bytes(tree) + tree.total.cache_bytes)


def memory_figures(
    reg: ModelRegistration, trees: Mapping[str, CostNode], dtype: str | None, generation: GenerationTotals
) -> MemoryFigures:
    """Per-stage memory, and the pipeline's peaks over the stages the generation runs (with the
    weights it loads)."""
    verified = {stage.name for stage in reg.stages if stage.memory_tolerance is not None}
    stages = tuple(
        StageMemory(
            name=name,
            params=tree.total.params,
            weight_bytes=tree.total.weight_bytes,
            weight_bytes_by_dtype={d: tree.total.params * b for d, b in DTYPE_BYTES.items()},
            peak_activation_bytes=peak_activation_bytes(tree),
            working_bytes=working_bytes(tree, name in verified),
            working_bytes_verified=name in verified,
            cache_bytes=tree.total.cache_bytes,
            cache_note=tree.note,
        )
        for name, tree in trees.items()
    )
    loaded, runs = generation.loaded, generation.runs
    weights = sum(s.weight_bytes for s in stages if s.name in loaded)
    working = {s.name: s.working_bytes for s in stages if runs[s.name]}
    alone = {s.name: s.weight_bytes + working[s.name] for s in stages if s.name in working}
    pipeline = PipelineMemory(
        weight_bytes=weights,
        peak_bytes_all_weights_resident=weights + max(working.values(), default=0),
        peak_stage_all_weights_resident=max(working, key=working.__getitem__, default=None),
        peak_bytes_one_stage_resident=max(alone.values(), default=0),
        peak_stage_one_stage_resident=max(alone, key=alone.__getitem__, default=None),
    )
    return MemoryFigures(dtype, stages, pipeline, MEMORY_CAVEAT)


def pipeline_memory(reg: ModelRegistration, workload: Any, trees: Mapping[str, CostNode]) -> PipelineMemory:
    """The pipeline's estimated memory peaks for ``trees`` (one per stage), as in the report."""
    generation = generation_totals(reg, workload, {name: tree.total for name, tree in trees.items()})
    return memory_figures(reg, trees, sized_dtype(workload), generation).pipeline


# -- time --------------------------------------------------------------------------------------------


def gpu_constants(gpu: Gpu, execution: Execution) -> tuple[Constant, ...]:
    """The constants the time model used on ``gpu`` for ``execution``, with their sources."""
    kernel = attention_kernel(gpu, execution.attention)
    launch = LAUNCH[execution.launch]
    cited = {
        f"gemm_efficiency_{execution.precision}": gpu.gemm[execution.precision],
        f"attention_efficiency_{kernel}": gpu.attention[kernel],
        "bandwidth_efficiency": gpu.bandwidth_efficiency,
        f"launch_s_{execution.launch}": launch,
        "host_to_gpu_gbs": gpu.host_to_gpu_gbs,
        "gpu_to_host_gbs": gpu.gpu_to_host_gbs,
        "link_efficiency": gpu.link_efficiency,
        "collective_latency_s": gpu.collective_latency,
    }
    return tuple(Constant(name, c.value, c.source, c.assumed) for name, c in cited.items())


def stage_times(
    reg: ModelRegistration,
    trees: Mapping[str, CostNode],
    runs: Mapping[str, int],
    gpu: Gpu,
    executions: Mapping[str, Execution],
) -> tuple[StageTime, ...]:
    """Each stage's seconds on ``gpu`` (one run, one generation, its parts per generation)."""
    modelled = {stage.name for stage in reg.stages if stage.traffic_tolerance is not None}
    rows = []
    for name, execution in executions.items():
        one = tree_time(trees[name], gpu, execution, name in modelled)
        generation = one.times(runs[name])
        rows.append(StageTime(name, one.seconds, generation.seconds, generation, name in modelled))
    return tuple(rows)


def time_figures(
    reg: ModelRegistration,
    trees: Mapping[str, CostNode],
    runs: Mapping[str, int],
    gpus: Sequence[Gpu],
    precision: str,
) -> TimeFigures:
    """Seconds of every stage on each GPU that has ``precision`` tensor cores: every stage on the
    GPU in the trees' dtype, torch's SDPA for attention, eager launches."""
    estimates = []
    skipped = []
    for gpu in gpus:
        if precision not in gpu.tflops:
            skipped.append(gpu.name)
            continue
        execution = Execution(precision)
        per_stage = stage_times(reg, trees, runs, gpu, dict.fromkeys(trees, execution))
        total = sum((s.parts for s in per_stage), TimeParts())
        estimates.append(
            GpuTime(
                gpu=gpu.name,
                peak_tflops=gpu.tflops[precision],
                bandwidth_gbs=gpu.bandwidth_gbs,
                memory_gb=gpu.memory_gb,
                source=gpu.source,
                stages=per_stage,
                total_s=total.seconds,
                parts=total,
                constants=gpu_constants(gpu, execution),
            )
        )
    unsupported = Unsupported(tuple(skipped), f"no {precision} tensor cores") if skipped else None
    return TimeFigures(precision, "sdpa", "eager", tuple(estimates), TIME_CAVEAT, unsupported)


# -- serving -----------------------------------------------------------------------------------------


def runs_of(reg: ModelRegistration) -> list[str]:
    return [stage.name for stage in reg.stages]


def kv_lengths(context: int, final: int, max_context: int | None) -> list[int]:
    """Sequence lengths of the KV-cache table: after the first token, at the last step, and
    powers of two from 1,024 up to the model's longest context."""
    limit = max_context if max_context is not None else max(KV_LENGTHS_UP_TO, final)
    powers = [1 << k for k in range(10, 64) if (1 << k) <= limit]
    return sorted({context, final, *powers})


def serving_times(
    reg: ModelRegistration, workload: Any, gpu: str, stage_seconds: Mapping[str, float]
) -> ServingTimes:
    """Time to first token, mean time per output token, generation time and throughput from
    per-generation stage seconds (a registration with ``serving``)."""
    spec = reg.serving
    assert spec is not None
    new = model_call(reg.name, "serving.new_tokens", spec.new_tokens, workload)
    sequences = model_call(reg.name, "serving.sequences", spec.sequences, workload)
    total = sum(stage_seconds.values())
    steps = new - 1
    return ServingTimes(
        gpu=gpu,
        time_to_first_token_s=sum(stage_seconds[name] for name in spec.first_token),
        time_per_output_token_s=stage_seconds[spec.per_token] / steps if steps else 0.0,
        generation_s=total,
        units_per_s=sequences / total if total else 0.0,
        output_tokens_per_s=sequences * new / total if total else 0.0,
    )


def serving_figures(
    reg: ModelRegistration, workload: Any, per_gpu: Mapping[str, Mapping[str, float]], warnings: list[str]
) -> ServingFigures | None:
    """The serving figures of a registration that declares them, from each GPU's seconds per stage
    and generation (a runtime's when one was asked for; a warning when the sequences outgrow the
    model's context)."""
    spec = reg.serving
    if spec is None:
        return None
    new = model_call(reg.name, "serving.new_tokens", spec.new_tokens, workload)
    sequences = model_call(reg.name, "serving.sequences", spec.sequences, workload)
    context = model_call(reg.name, "serving.context", spec.context, workload)
    per_token = model_call(reg.name, "serving.cache_bytes_per_token", spec.cache_bytes_per_token, workload)
    final = context + new - 1
    if spec.max_context is not None and final > spec.max_context:
        warnings.append(
            f"the sequences reach {final:,} tokens, beyond the model's context of {spec.max_context:,}"
        )
    estimates = tuple(
        serving_times(reg, workload, gpu, {name: stage_seconds.get(name, 0.0) for name in runs_of(reg)})
        for gpu, stage_seconds in per_gpu.items()
    )
    return ServingFigures(
        unit=spec.unit,
        sequences=sequences,
        new_tokens=new,
        context_after_first_token=context,
        final_context=final,
        max_context=spec.max_context,
        first_token_stages=tuple(spec.first_token),
        per_token_stage=spec.per_token,
        kv_bytes_per_token_per_sequence=per_token,
        kv_by_length=tuple(
            KvRow(n, sequences * n * per_token) for n in kv_lengths(context, final, spec.max_context)
        ),
        estimates=estimates,
        caveat=SERVING_CAVEAT,
    )


# -- runtimes ----------------------------------------------------------------------------------------


def runtime_figures(
    reg: ModelRegistration,
    workload: Any,
    name: str,
    runs: Mapping[str, int],
    gpus: Sequence[Gpu],
    layout: Layout = SINGLE,
) -> RuntimeFigures:
    """A generation under the registration's runtime ``name``: per stage its dtypes, device and
    placement; the GPU's contents stage by stage (weights resident, moved in and out) and the most
    it holds; the host↔GPU moves; and per GPU the stages' seconds, the moves' and the total.

    On several GPUs (``layout``), everything is rank 0's: each stage's tree from the model's
    parallel analytic model, its runs, every model resident (the scripts offload on one GPU
    only), FSDP-sharded weights as one shard plus the root unit and the running layer's unit
    gathered, and the FSDP all-gathers of every unit at each run over the GPU-to-GPU link."""
    spec = reg.runtimes[name]
    parallel = layout.gpus > 1
    if parallel:
        assert reg.parallel is not None  # checked by the caller (resolve_layout)
        runs = dict(reg.parallel.runs(workload, layout)) if reg.parallel.runs else dict(runs)
    owner = {s.name: s.weights_of or s.name for s in reg.stages}
    trees: dict[str, CostNode] = {}
    partial: dict[str, RuntimeStage] = {}
    casts: set[str] = set()  # FSDP-sharded stages: the local fp32 shard cast for each run's gathers
    for stage in reg.stages:
        sr = spec.stages[stage.name]
        at = at_dtype(workload, PRECISIONS[sr.compute].activations)
        sharded = owner[stage.name] in layout.fsdp
        compute_bytes = DTYPE_BYTES[PRECISIONS[sr.compute].activations]
        split = checked_as = ""
        if parallel:  # FSDP gathers every unit at each run, at the compute dtype
            assert reg.parallel is not None
            rank = reg.parallel.analytic(at, stage.name, layout)
            tree = check_tree(reg.parallel.shard(rank, stage.name, layout, compute_bytes, owner[stage.name]))
            changed = rank.total != reg.tree(at, stage.name).total
            split, checked_as = reg.parallel.split_check(stage.name, layout, changed, owner[stage.name])
        else:
            tree = reg.tree(at, stage.name)
        trees[stage.name] = tree
        working = working_bytes(tree, stage.memory_tolerance is not None)
        if sharded:  # the gathered weights live beside the running layer
            assert reg.parallel is not None
            working += (
                fsdp_gathered_params(tree, reg.parallel.fsdp_units.get(owner[stage.name], "")) * compute_bytes
            )
        weight_bytes = tree.total.params * DTYPE_BYTES[sr.weights]
        autocast = sr.autocast
        if sharded:
            weight_bytes = -(-weight_bytes // layout.gpus)
            casts.add(stage.name)
            autocast = False  # FSDP's mixed precision gathers the weights at the compute dtype
        elif sr.autocast and sr.device == "gpu":  # the cast copy of the largest weight beside its matmul
            largest = max((leaf.metrics.params for leaf in tree.leaves()), default=0)
            working += largest * tree_dtype_bytes(tree)
        partial[stage.name] = RuntimeStage(
            name=stage.name,
            weights=sr.weights,
            compute=sr.compute,
            device=sr.device,
            placement="resident" if parallel else spec.stages[owner[stage.name]].placement,
            autocast=autocast,
            weight_bytes=weight_bytes,
            working_bytes=working,
            runs_per_generation=runs[stage.name],
            gpu_bytes_while_running=0,
            sharded=sharded,
            flops=tree.total.flops,
            collective_bytes=tree.total.collective_bytes,
            split=split,
            checked_as=checked_as,
            collectives=collective_uses(tree),
        )
    order = [s.name for s in reg.stages if runs[s.name]]
    on_gpu_stages = [n for n in order if partial[n].device == "gpu"]
    weights = {o: partial[o].weight_bytes for o in set(owner.values())}
    last_use = {owner[n]: n for n in on_gpu_stages}
    held = {
        owner[n]
        for n in on_gpu_stages
        if partial[owner[n]].device == "gpu" and partial[owner[n]].placement != "moved"
    }
    moves: list[Move] = []
    while_running: dict[str, int] = {}
    for n in on_gpu_stages:
        o = owner[n]
        if o not in held:
            held.add(o)
            moves.append(Move(o, "gpu", weights[o]))
        while_running[n] = sum(weights[x] for x in held) + partial[n].working_bytes
        placement = partial[o].placement
        if placement == "moved" or (placement == "offloaded_after" and last_use[o] == n):
            held.discard(o)
            moves.append(Move(o, "host", weights[o]))
    stages = {n: attrs.evolve(s, gpu_bytes_while_running=while_running.get(n, 0)) for n, s in partial.items()}
    setter = max(while_running, key=while_running.__getitem__, default=None)
    peak = while_running[setter] if setter else 0
    to_gpu = sum(m.bytes for m in moves if m.to == "gpu")
    to_host = sum(m.bytes for m in moves if m.to == "host")
    estimates, unsupported = [], []
    for gpu in gpus:
        needed = {stages[n].compute for n in on_gpu_stages}
        if not needed <= set(gpu.tflops):
            unsupported.append(MissingPrecision(gpu.name, tuple(sorted(needed - set(gpu.tflops)))))
            continue
        executions = {n: _execution(stages[n], trees[n], spec.attention, spec.launch) for n in on_gpu_stages}
        per_stage = stage_times(reg, trees, runs, gpu, executions)
        if casts:  # FSDP: the local shard cast to the compute dtype for each run's gathers
            per_stage = tuple(_with_cast(s, gpu, stages[s.name]) if s.name in casts else s for s in per_stage)
        moving = transfer_seconds(gpu, to_gpu, to_host)
        seconds = sum(s.per_generation_s for s in per_stage) + moving
        estimates.append(
            RuntimeGpu(gpu.name, per_stage, moving, seconds, peak <= gpu.memory_gb * 1e9, gpu.memory_gb)
        )
    return RuntimeFigures(
        name=name,
        description=spec.description,
        attention=spec.attention,
        launch=spec.launch,
        notes=spec.notes,
        stages=tuple(stages.values()),
        peak_gpu_bytes=peak,
        set_by=setter,
        moves=tuple(moves),
        estimates=tuple(estimates),
        seconds=estimates[0].seconds if len(gpus) == 1 and estimates else None,
        not_supported=tuple(unsupported),
        not_timed=tuple(n for n in order if partial[n].device == "cpu"),
        note=RUNTIME_NOTE if not parallel else RUNTIME_NOTE + " " + PARALLEL_NOTE,
        layout=layout,
    )


PARALLEL_NOTE = (
    "On several GPUs every figure is rank 0's (it also runs the work only rank 0 does, such as a "
    "decode the others wait for): FLOPs and collectives from the model's parallel analytic model, "
    "collectives over the GPU-to-GPU link at its measured bus bandwidth with nccl-tests' factors, "
    "each also taking a few-byte all-reduce's latency (the time model constants), "
    "FSDP all-gathers of every unit at each run added after the compute (no overlap modelled), "
    "FSDP-sharded weights as one shard plus the root unit and the running layer's unit, gathered."
)


def collective_uses(tree: CostNode) -> tuple[CollectiveUse, ...]:
    """The collectives one run of ``tree`` issues, by kind and group size."""
    found: dict[tuple[str, int], tuple[int, int]] = {}
    for node, times in tree.runs():
        kernel = node.kernel
        if node.children or kernel is None or kernel.kind not in COLLECTIVE_KINDS:
            continue
        calls, moved = found.get((kernel.kind, kernel.group), (0, 0))
        found[kernel.kind, kernel.group] = (
            calls + node.metrics.collectives * times,
            moved + node.metrics.collective_bytes * times,
        )
    return tuple(CollectiveUse(kind, group, *use) for (kind, group), use in sorted(found.items()))


def _with_cast(time: StageTime, gpu: Gpu, stage: RuntimeStage) -> StageTime:
    """An FSDP-sharded stage's time with the cast of its local shard to the compute dtype at each
    run, before the gathers (its all-gathers are in its tree)."""
    wide = DTYPE_BYTES[stage.weights]
    narrow = DTYPE_BYTES[PRECISIONS[stage.compute].activations]
    if wide == narrow:
        return time
    cast = stage.weight_bytes * (wide + narrow) / wide / gpu.achievable_bandwidth
    parts = time.parts + TimeParts(memory=cast).times(stage.runs_per_generation)
    return attrs.evolve(time, per_run_s=time.per_run_s + cast, per_generation_s=parts.seconds, parts=parts)


def _execution(stage: RuntimeStage, tree: CostNode, attention: str, launch: str) -> Execution:
    """How a stage of a runtime runs: its weights named where they are stored at another dtype
    than the tree's (fp32 under autocast, fp8)."""
    same = DTYPE_BYTES[stage.weights] == tree_dtype_bytes(tree)
    return Execution(
        stage.compute, attention, launch, weights=None if same else stage.weights, autocast=stage.autocast
    )
