"""Static-analysis sizing reports built from a registration's analytic model alone.

The report schema is shared by every model: model metadata, workload, per-stage totals, the
node tree with metrics, the top layers and categories by FLOPs, memory, roofline time
estimates, warnings and what is not modeled. Nothing here imports torch.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from pytest_flopcheck.analytic.tree import ZERO, CostNode, live_peak
from pytest_flopcheck.evidence.render import md
from pytest_flopcheck.model.registration import RUNTIME_DTYPES, ModelRegistration, model_call
from pytest_flopcheck.sizing.hardware import GPUS, ZERO_TIME, Gpu, roofline

SCHEMA_VERSION = 1
DTYPE_BYTES = {"fp32": 4, "bf16": 2, "fp16": 2, "fp8": 1}
CONVENTION = (
    "FLOPs follow torch.utils.flop_counter: 2 per multiply-add for matmul, convolution and attention "
    "(QK^T and PV, no causal discount); bias adds, norms, activations, softmax, RoPE and other "
    "elementwise work count 0."
)
TIME_CAVEAT = (
    "First-order roofline estimates: each layer takes max(FLOPs / dense peak, bytes / bandwidth) at the "
    "datasheet peak, with no kernel launch, fusion, overlap, elementwise-kernel or communication cost; "
    "real runs are slower."
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
KV_LENGTHS_UP_TO = 32_768
"""Without a model's ``max_context``, the KV-cache table stops here."""


def workload_fields(workload: Any) -> dict[str, Any]:
    """The workload as plain data (its own ``describe()`` if it has one)."""
    describe = getattr(workload, "describe", None)
    if callable(describe):
        return dict(describe())
    if attrs.has(type(workload)):
        return attrs.asdict(workload)
    if dataclasses.is_dataclass(workload) and not isinstance(workload, type):
        return dataclasses.asdict(workload)
    return {"value": repr(workload)}


def runs_per_generation(reg: ModelRegistration, workload: Any) -> dict[str, int]:
    """Runs of each stage per generation, checked (ModelError if the registration's are unusable)."""
    return reg.checked_runs(workload)


def _node_json(node: CostNode) -> dict[str, Any]:
    entry: dict[str, Any] = {"id": node.id, "category": node.category, **node.metrics.as_dict()}
    if node.repeat != 1:
        entry["repeat"] = node.repeat
    if node.calls != 1:
        entry["calls"] = node.calls
        entry["largest_call"] = node.per_call.as_dict()
    if node.reference is not None:
        entry["reference"] = node.reference + (" (own work)" if node.reference_own else "")
    if node.note:
        entry["note"] = node.note
    if node.children:
        entry["children"] = [_node_json(child) for child in node.children]
    return entry


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


def _verified(reg: ModelRegistration) -> set[str]:
    """The stages whose live set test_memory checks (those declaring a memory tolerance)."""
    return {stage.name for stage in reg.stages if stage.memory_tolerance is not None}


def _share(part: int, whole: int) -> float:
    return part / whole if whole else 0.0


def build_report(
    reg: ModelRegistration,
    workload: Any,
    *,
    run_id: str,
    created_utc: str,
    gpus: Sequence[Gpu] | None = None,
    precision: str = "bf16",
    runtime: str | None = None,
) -> dict[str, Any]:
    """The report document for one workload (with ``runtime``, also that runtime's memory and
    times: per-stage weight dtypes, compute precisions, devices and residency)."""
    runs = runs_per_generation(reg, workload)
    trees = {stage.name: reg.tree(workload, stage.name) for stage in reg.stages}
    dtype = getattr(workload, "dtype", None)

    stages: dict[str, Any] = {}
    generation = ZERO
    loaded = loaded_weights(reg, runs)
    for name, tree in trees.items():
        per_generation = tree.total.repeated(runs[name])
        # A phase that runs another stage's weights adds its work, not those weights again; a
        # stage the workload never runs adds neither.
        generation = generation + (
            per_generation if name in loaded else attrs.evolve(per_generation, params=0, weight_bytes=0)
        )
        stages[name] = {
            "runs_per_generation": runs[name],
            "per_run": tree.total.as_dict(),
            "per_generation": per_generation.as_dict(),
        }
    for name in stages:
        stages[name]["flops_share"] = _share(stages[name]["per_generation"]["flops"], generation.flops)

    layers = []
    categories: dict[str, int] = {}
    for stage_index, (name, tree) in enumerate(trees.items()):
        for order, (node, times) in enumerate(tree.runs()):
            if node.children or node.metrics.flops == 0:
                continue
            flops = node.metrics.flops * times * runs[name]
            categories[node.category] = categories.get(node.category, 0) + flops
            layers.append((-flops, stage_index, order, name, node))
    layers.sort(key=lambda item: item[:3])
    top_layers = [
        {
            "stage": name,
            "id": node.id,
            "category": node.category,
            "reference": node.reference,
            "flops_per_generation": -neg,
            "share": _share(-neg, generation.flops),
        }
        for neg, _, _, name, node in layers[:10]
    ]
    top_categories = [
        {"category": category, "flops_per_generation": flops, "share": _share(flops, generation.flops)}
        for category, flops in sorted(categories.items(), key=lambda item: (-item[1], item[0]))[:5]
    ]

    memory = _memory(trees, dtype, loaded, runs, _verified(reg))
    time_estimates = _times(trees, runs, gpus if gpus is not None else list(GPUS.values()), precision)
    warnings = (
        [str(w) for w in model_call(reg.name, "warnings", reg.warnings, workload)] if reg.warnings else []
    )
    serving = _serving(reg, workload, time_estimates, warnings)
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "kind": "flopcheck.static_analysis",
        "run_id": run_id,
        "created_utc": created_utc,
        "model": {
            "name": reg.name,
            "description": reg.description,
            "stages": [
                {"name": s.name, "description": s.description, "weights_of": s.weights_of} for s in reg.stages
            ],
            "metadata": dict(model_call(reg.name, "metadata", reg.metadata, workload))
            if reg.metadata
            else {},
        },
        "workload": workload_fields(workload),
        "convention": CONVENTION,
        "stage_totals": stages,
        "totals": {"per_generation": generation.as_dict()},
        "memory": memory,
        "time_estimates": time_estimates,
        "top_layers": top_layers,
        "top_categories": top_categories,
        "tree": {name: _node_json(tree) for name, tree in trees.items()},
        "warnings": warnings,
        "not_modeled": list(reg.not_modeled),
    }
    if serving is not None:
        report["serving"] = serving
    if runtime is not None:
        gpu_list = list(gpus) if gpus is not None else list(GPUS.values())
        report["runtime"] = runtime_section(reg, workload, runtime, runs, gpu_list)
    return report


ACTIVATION_DTYPE = {"tf32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "bf16"}
RUNTIME_NOTE = (
    "Weights at the runtime's dtype; activations at its compute precision (fp8 matmuls keep bf16 "
    "activations); stages on the CPU take no GPU memory and their time is not estimated; stages the "
    "workload does not run are not loaded. The working set is the stage's live set beyond its weights, "
    "as in the memory section."
)


def _at_dtype(workload: Any, dtype: str) -> Any:
    """The workload with its ``dtype`` field set, when it has one that allows ``dtype``."""
    if attrs.has(type(workload)) and any(f.name == "dtype" for f in attrs.fields(type(workload))):
        try:
            return attrs.evolve(workload, dtype=dtype)
        except ValueError:
            return workload
    return workload


def runtime_section(
    reg: ModelRegistration,
    workload: Any,
    name: str,
    runs: Mapping[str, int],
    gpus: Sequence[Gpu],
) -> dict[str, Any]:
    """Per-stage GPU memory, the pipeline peak (and the stage setting it) and GPU times under the
    registration's runtime ``name``."""
    spec = reg.runtimes[name]
    owner = {s.name: s.weights_of or s.name for s in reg.stages}
    trees: dict[str, CostNode] = {}
    stages: dict[str, dict[str, Any]] = {}
    for stage in reg.stages:
        sr = spec.stages[stage.name]
        tree = reg.tree(_at_dtype(workload, ACTIVATION_DTYPE[sr.compute]), stage.name)
        trees[stage.name] = tree
        stages[stage.name] = {
            "weights": sr.weights,
            "compute": sr.compute,
            "device": sr.device,
            "weight_bytes": tree.total.params * RUNTIME_DTYPES[sr.weights],
            "working_bytes": working_bytes(tree, stage.memory_tolerance is not None),
            "runs_per_generation": runs[stage.name],
        }
    on_gpu = [n for n, s in stages.items() if s["device"] == "gpu" and runs[n]]
    for n in stages:
        weights = stages[owner[n]]["weight_bytes"] if stages[owner[n]]["device"] == "gpu" else 0
        stages[n]["gpu_bytes_while_running"] = weights + stages[n]["working_bytes"] if n in on_gpu else 0
    if (
        spec.resident == "all"
    ):  # the weights of every stage the generation runs (a stage run 0 times is not loaded)
        loaded = loaded_weights(reg, runs)
        resident = sum(s["weight_bytes"] for n, s in stages.items() if n in loaded and s["device"] == "gpu")
        working = {n: stages[n]["working_bytes"] for n in on_gpu}
        setter = max(working, key=working.__getitem__, default=None)
        peak = resident + (working[setter] if setter else 0)
    else:
        alone = {n: stages[n]["gpu_bytes_while_running"] for n in on_gpu}
        setter = max(alone, key=alone.__getitem__, default=None)
        peak = alone[setter] if setter else 0
    estimates, unsupported = [], []
    for gpu in gpus:
        needed = {stages[n]["compute"] for n in on_gpu}
        if not needed <= set(gpu.tflops):
            unsupported.append({"gpu": gpu.name, "missing": sorted(needed - set(gpu.tflops))})
            continue
        seconds = {
            n: roofline(trees[n], gpu, stages[n]["compute"], RUNTIME_DTYPES[stages[n]["weights"]])
            .times(runs[n])
            .seconds
            for n in on_gpu
        }
        estimates.append(
            {
                "gpu": gpu.name,
                "stages": seconds,
                "gpu_total_s": sum(seconds.values()),
                "fits": peak <= gpu.memory_gb * 1e9,
                "memory_gb": gpu.memory_gb,
            }
        )
    return {
        "name": name,
        "description": spec.description,
        "resident": spec.resident,
        "stages": stages,
        "pipeline": {"peak_bytes": peak, "set_by": setter},
        "estimates": estimates,
        "not_supported": unsupported,
        "note": RUNTIME_NOTE,
    }


def kv_lengths(context: int, final: int, max_context: int | None) -> list[int]:
    """Sequence lengths of the KV-cache table: after the first token, at the last step, and
    powers of two from 1,024 up to the model's longest context."""
    limit = max_context if max_context is not None else max(KV_LENGTHS_UP_TO, final)
    powers = [1 << k for k in range(10, 64) if (1 << k) <= limit]
    return sorted({context, final, *powers})


def serving_times(
    reg: ModelRegistration, workload: Any, stage_seconds: Mapping[str, float]
) -> dict[str, float]:
    """Time to first token, mean time per output token, generation time and throughput from
    per-generation stage seconds (a registration with ``serving``)."""
    spec = reg.serving
    assert spec is not None
    new, sequences = spec.new_tokens(workload), spec.sequences(workload)
    total = sum(stage_seconds.values())
    steps = new - 1
    return {
        "time_to_first_token_s": sum(stage_seconds[name] for name in spec.first_token),
        "time_per_output_token_s": stage_seconds[spec.per_token] / steps if steps else 0.0,
        "generation_s": total,
        "units_per_s": sequences / total if total else 0.0,
        "output_tokens_per_s": sequences * new / total if total else 0.0,
    }


def _serving(
    reg: ModelRegistration, workload: Any, times: Mapping[str, Any], warnings: list[str]
) -> dict[str, Any] | None:
    spec = reg.serving
    if spec is None:
        return None
    new, sequences, context = spec.new_tokens(workload), spec.sequences(workload), spec.context(workload)
    per_token = spec.cache_bytes_per_token(workload)
    final = context + new - 1
    if spec.max_context is not None and final > spec.max_context:
        warnings.append(
            f"the sequences reach {final:,} tokens, beyond the model's context of {spec.max_context:,}"
        )
    estimates = []
    for estimate in times["estimates"]:
        seconds_by_stage = {name: stage["per_generation_s"] for name, stage in estimate["stages"].items()}
        estimates.append({"gpu": estimate["gpu"], **serving_times(reg, workload, seconds_by_stage)})
    return {
        "unit": spec.unit,
        "sequences": sequences,
        "new_tokens": new,
        "context_after_first_token": context,
        "final_context": final,
        "max_context": spec.max_context,
        "first_token_stages": list(spec.first_token),
        "per_token_stage": spec.per_token,
        "kv_cache": {
            "bytes_per_token_per_sequence": per_token,
            "by_length": [
                {"tokens": n, "bytes": sequences * n * per_token}
                for n in kv_lengths(context, final, spec.max_context)
            ],
        },
        "estimates": estimates,
        "caveat": SERVING_CAVEAT,
    }


def loaded_weights(reg: ModelRegistration, runs: Mapping[str, int]) -> set[str]:
    """Stages whose own weights a generation loads: it runs them, or a phase that uses them."""
    owner = {s.name: s.weights_of or s.name for s in reg.stages}
    return {owner[name] for name, n in runs.items() if n}


def pipeline_memory(reg: ModelRegistration, workload: Any, trees: Mapping[str, CostNode]) -> dict[str, Any]:
    """The pipeline's estimated memory peaks for ``trees`` (one per stage), as in the report."""
    runs = runs_per_generation(reg, workload)
    memory = _memory(trees, getattr(workload, "dtype", None), loaded_weights(reg, runs), runs, _verified(reg))
    return dict(memory["pipeline"])


def _memory(
    trees: Mapping[str, CostNode],
    dtype: str | None,
    loaded: set[str],
    runs: Mapping[str, int],
    verified: set[str],
) -> dict[str, Any]:
    """Per-stage memory, and the pipeline's peaks over the stages the generation runs (with
    the weights it loads)."""
    stages: dict[str, dict[str, Any]] = {}
    for name, tree in trees.items():
        params = tree.total.params
        stages[name] = {
            "params": params,
            "weight_bytes": tree.total.weight_bytes,
            "weight_bytes_by_dtype": {d: params * b for d, b in DTYPE_BYTES.items()},
            "peak_activation_bytes": peak_activation_bytes(tree),
            "working_bytes": working_bytes(tree, name in verified),
            "working_bytes_verified": name in verified,
            "cache_bytes": tree.total.cache_bytes,
            "cache_note": tree.note,
        }
    weights = sum(s["weight_bytes"] for name, s in stages.items() if name in loaded)
    working = {name: s["working_bytes"] for name, s in stages.items() if runs[name]}
    alone = {name: stages[name]["weight_bytes"] + working[name] for name in working}
    return {
        "dtype": dtype,
        "stages": stages,
        "pipeline": {
            "weight_bytes": weights,
            "peak_bytes_all_weights_resident": weights + max(working.values(), default=0),
            "peak_stage_all_weights_resident": max(working, key=working.__getitem__, default=None),
            "peak_bytes_one_stage_resident": max(alone.values(), default=0),
            "peak_stage_one_stage_resident": max(alone, key=alone.__getitem__, default=None),
        },
        "note": MEMORY_CAVEAT,
    }


def _times(
    trees: Mapping[str, CostNode], runs: Mapping[str, int], gpus: Sequence[Gpu], precision: str
) -> dict[str, Any]:
    estimates = []
    skipped = []
    for gpu in gpus:
        if precision not in gpu.tflops:
            skipped.append(gpu.name)
            continue
        per_stage: dict[str, Any] = {}
        total = ZERO_TIME
        for name, tree in trees.items():
            one = roofline(tree, gpu, precision)
            generation = one.times(runs[name])
            total = total + generation
            per_stage[name] = {
                "per_run_s": one.seconds,
                "per_generation_s": generation.seconds,
                "compute_bound_fraction": _fraction(one.compute_bound_seconds, one.seconds),
            }
        estimates.append(
            {
                "gpu": gpu.name,
                "peak_tflops": gpu.tflops[precision],
                "bandwidth_gbs": gpu.bandwidth_gbs,
                "memory_gb": gpu.memory_gb,
                "source": gpu.source,
                "stages": per_stage,
                "total_s": total.seconds,
                "compute_bound_fraction": _fraction(total.compute_bound_seconds, total.seconds),
            }
        )
    result: dict[str, Any] = {"precision": precision, "estimates": estimates, "caveat": TIME_CAVEAT}
    if skipped:
        result["not_supported"] = {"gpus": skipped, "reason": f"no {precision} tensor cores"}
    return result


def _fraction(part: float, whole: float) -> float:
    return part / whole if whole else 0.0


# -- presentation -----------------------------------------------------------------------------


def human(value: float, unit: str = "") -> str:
    """1.23e15 -> '1.23 P' (SI prefixes; bytes use the same decimal prefixes)."""
    for threshold, prefix in ((1e18, "E"), (1e15, "P"), (1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= threshold:
            return f"{value / threshold:.2f} {prefix}{unit}"
    return f"{value:,.0f} {unit}".rstrip()


def percent(share: float) -> str:
    """A share that stays readable for small stages (0.02%, not 0.0%)."""
    if share == 0:
        return "0%"
    if share < 1e-4:
        return "<0.01%"
    return f"{share:.2%}" if share < 0.1 else f"{share:.1%}"


def seconds(value: float) -> str:
    if value >= 3600:
        return f"{value / 3600:.2f} h"
    if value >= 60:
        return f"{value / 60:.2f} min"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1e3:.1f} ms"


def _stage_rows(report: Mapping[str, Any]) -> list[list[str]]:
    rows = []
    memory = report["memory"]["stages"]
    for name, stage in report["stage_totals"].items():
        rows.append(
            [
                name,
                f"{stage['per_run']['flops']:,}",
                str(stage["runs_per_generation"]),
                f"{stage['per_generation']['flops']:,}",
                percent(stage["flops_share"]),
                human(memory[name]["params"]),
                human(memory[name]["weight_bytes"], "B"),
                human(memory[name]["working_bytes"], "B")
                + ("" if memory[name]["working_bytes_verified"] else " (unchecked)"),
                human(memory[name]["cache_bytes"], "B"),
            ]
        )
    total = report["totals"]["per_generation"]
    rows.append(
        [
            "**end to end**",
            "",
            "",
            f"{total['flops']:,}",
            "100%",
            human(total["params"]),
            human(total["weight_bytes"], "B"),
            "",
            "",
        ]
    )
    return rows


STAGE_HEADER = [
    "stage",
    "FLOPs per run",
    "runs",
    "FLOPs per generation",
    "share",
    "params",
    "weights",
    "live set",
    "cache",
]


def _time_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    times = report["time_estimates"]
    memory = report["memory"]["pipeline"]

    def fits(e: Mapping[str, Any]) -> str:
        capacity = e["memory_gb"] * 1e9
        if memory["peak_bytes_all_weights_resident"] <= capacity:
            return "all weights resident"
        if memory["peak_bytes_one_stage_resident"] <= capacity:
            return "one stage at a time"
        return "no"

    running = [n for n, s in report["stage_totals"].items() if s["runs_per_generation"]]
    header = ["GPU", *running, "total", "compute-bound", "fits in memory"]
    rows = [
        [
            e["gpu"],
            *(seconds(e["stages"][n]["per_generation_s"]) for n in running),
            seconds(e["total_s"]),
            f"{e['compute_bound_fraction']:.0%}",
            fits(e),
        ]
        for e in times["estimates"]
    ]
    return header, rows


def _serving_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    serving = report["serving"]
    unit = serving["unit"]
    header = ["GPU", "time to first token", "per output token", "generation", f"{unit}s/s", "tokens/s"]
    rows = [
        [
            e["gpu"],
            seconds(e["time_to_first_token_s"]),
            seconds(e["time_per_output_token_s"]),
            seconds(e["generation_s"]),
            f"{e['units_per_s']:,.2f}",
            f"{e['output_tokens_per_s']:,.0f}",
        ]
        for e in serving["estimates"]
    ]
    return header, rows


def _kv_rows(report: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    serving = report["serving"]
    marks = {
        serving["context_after_first_token"]: "after the first token",
        serving["final_context"]: "last step",
    }
    header = [
        f"tokens per {serving['unit']}",
        f"KV cache, {_count(serving['sequences'], serving['unit'])}",
        "",
    ]
    rows = [
        [f"{row['tokens']:,}", human(row["bytes"], "B"), marks.get(row["tokens"], "")]
        for row in serving["kv_cache"]["by_length"]
    ]
    return header, rows


def _runtime_tables(report: Mapping[str, Any]) -> tuple[tuple[list[str], list[list[str]]], ...]:
    rt = report["runtime"]
    stage_rows = [
        [
            name,
            s["weights"],
            s["compute"],
            s["device"],
            human(s["weight_bytes"], "B"),
            human(s["working_bytes"], "B"),
            human(s["gpu_bytes_while_running"], "B") if s["gpu_bytes_while_running"] else "–",
        ]
        for name, s in rt["stages"].items()
        if s["runs_per_generation"]
    ]
    stage_header = [
        "stage",
        "weights",
        "compute",
        "device",
        "weight memory",
        "working set",
        "GPU while running",
    ]
    on_gpu = [n for n, s in rt["stages"].items() if s["gpu_bytes_while_running"]]
    gpu_rows = [
        [
            e["gpu"],
            *(seconds(e["stages"][n]) for n in on_gpu),
            seconds(e["gpu_total_s"]),
            "yes" if e["fits"] else f"no ({e['memory_gb']:g} GB)",
        ]
        for e in rt["estimates"]
    ]
    return (stage_header, stage_rows), (["GPU", *on_gpu, "GPU total", "fits"], gpu_rows)


def _runtime_intro(report: Mapping[str, Any]) -> str:
    rt = report["runtime"]
    mode = "every stage's weights resident" if rt["resident"] == "all" else "one stage on the GPU at a time"
    peak = rt["pipeline"]
    text = f"{rt['description']} ({mode}). Pipeline GPU peak: {human(peak['peak_bytes'], 'B')}"
    text += f", set by {peak['set_by']}." if peak["set_by"] else "."
    if rt["not_supported"]:
        text += (
            " Not estimated: "
            + ", ".join(f"{u['gpu']} (no {'/'.join(u['missing'])} tensor cores)" for u in rt["not_supported"])
            + "."
        )
    return text


def _count(n: int, unit: str) -> str:
    return f"{n:,} {unit}" + ("" if n == 1 else "s")


def _serving_intro(report: Mapping[str, Any]) -> str:
    serving = report["serving"]
    return (
        f"{_count(serving['sequences'], serving['unit'])} per batch, "
        f"{serving['new_tokens']:,} new tokens each; "
        f"first token after {' + '.join(serving['first_token_stages'])}, then one "
        f"{serving['per_token_stage']} step per token. KV cache: "
        f"{serving['kv_cache']['bytes_per_token_per_sequence']:,} bytes per token per {serving['unit']} "
        f"({report['memory']['dtype']})."
    )


def _set_by(memory: Mapping[str, Any], mode: str) -> str:
    stage = memory.get(f"peak_stage_{mode}")
    return f", set by {stage}" if stage else ""


def _md_cell(text: str) -> str:
    """A table cell as literal Markdown (a plugin's names and notes carry no markup into it);
    ``**bold**`` cells stay bold."""
    if len(text) > 4 and text.startswith("**") and text.endswith("**"):
        return f"**{md(text[2:-2])}**"
    return md(text)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(map(_md_cell, header)) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(map(_md_cell, row)) + " |" for row in rows]
    return lines


def summary_markdown(report: Mapping[str, Any]) -> str:
    """The report as Markdown for people."""
    model, workload = report["model"], report["workload"]
    lines = [
        f"# {model['name']} sizing report",
        "",
        md(model["description"]),
        "",
        "Workload: " + md(", ".join(f"{k}={v}" for k, v in workload.items())),
        "",
    ]
    if report["warnings"]:
        lines += ["## Warnings", ""] + [f"- {md(w)}" for w in report["warnings"]] + [""]
    lines += ["## Stages", "", *_md_table(STAGE_HEADER, _stage_rows(report)), ""]
    times = report["time_estimates"]
    lines += [f"## Time per generation ({times['precision']})", ""]
    lines += _md_table(*_time_rows(report))
    lines += ["", times["caveat"], ""]
    if times.get("not_supported"):
        lines += [
            f"Not shown ({times['not_supported']['reason']}): {', '.join(times['not_supported']['gpus'])}.",
            "",
        ]
    if "serving" in report:
        lines += ["## Serving", "", md(_serving_intro(report)), ""]
        lines += _md_table(*_serving_rows(report))
        lines += ["", *_md_table(*_kv_rows(report)), "", report["serving"]["caveat"], ""]
    if "runtime" in report:
        (sh, sr), (gh, gr) = _runtime_tables(report)
        lines += [f"## Runtime: {md(report['runtime']['name'])}", "", md(_runtime_intro(report)), ""]
        lines += [*_md_table(sh, sr), "", *_md_table(gh, gr), "", report["runtime"]["note"], ""]
    memory = report["memory"]["pipeline"]
    lines += [
        "## Memory",
        "",
        f"- weights of the stages that run ({report['memory']['dtype']}): "
        f"{human(memory['weight_bytes'], 'B')}",
        f"- peak with all weights resident: {human(memory['peak_bytes_all_weights_resident'], 'B')}"
        f"{_set_by(memory, 'all_weights_resident')}",
        f"- peak with one stage resident at a time: {human(memory['peak_bytes_one_stage_resident'], 'B')}"
        f"{_set_by(memory, 'one_stage_resident')}",
        f"- {report['memory']['note']}",
        "",
        "## Top layers by FLOPs per generation",
        "",
    ]
    lines += _md_table(
        ["#", "stage", "layer", "category", "FLOPs", "share"],
        [
            [
                str(i),
                t["stage"],
                t["id"],
                t["category"],
                f"{t['flops_per_generation']:,}",
                percent(t["share"]),
            ]
            for i, t in enumerate(report["top_layers"], 1)
        ],
    )
    lines += ["", "## Top categories", ""]
    lines += _md_table(
        ["#", "category", "FLOPs", "share"],
        [
            [str(i), c["category"], f"{c['flops_per_generation']:,}", percent(c["share"])]
            for i, c in enumerate(report["top_categories"], 1)
        ],
    )
    lines += ["", "## Not modeled", ""] + [f"- {md(item)}" for item in report["not_modeled"]]
    lines += ["", "## Convention", "", report["convention"], ""]
    return "\n".join(lines)


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(cell).replace('**', '')}</td>" for cell in row) + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = (
    "body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:1100px;"
    "color:#1d2330;line-height:1.45;padding:0 1rem}"
    "h1{font-size:1.6rem;margin-bottom:.2rem}"
    "h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #dde;padding-bottom:.2rem}"
    "table{border-collapse:collapse;margin:.6rem 0;font-size:.9rem}"
    "th,td{border:1px solid #d5d9e2;padding:.3rem .55rem;text-align:right}"
    "th{background:#f1f3f8}td:first-child,th:first-child{text-align:left}"
    "tbody tr:last-child td{font-weight:600}"
    ".warn{background:#fff6e0;border-left:4px solid #e0a100;padding:.5rem .8rem;margin:.4rem 0}"
    ".note{color:#566;font-size:.85rem}"
    ".workload{display:flex;flex-wrap:wrap;gap:.35rem}"
    ".workload code{background:#f1f3f8;padding:.1rem .35rem;border-radius:3px;white-space:nowrap}"
    "td.text,th.text{text-align:left}"
    "img{max-width:100%;border:1px solid #eee;margin:.5rem 0}"
    ".top tbody tr:last-child td{font-weight:normal}"
)


def report_html(report: Mapping[str, Any], plots: Mapping[str, str]) -> str:
    """A self-contained page: tables, and plots embedded as base64 PNGs (``plots``: title -> data)."""
    esc = html.escape
    model, workload = report["model"], report["workload"]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(model['name'])} sizing report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(model['name'])} sizing report</h1><p>{esc(model['description'])}</p>",
        "<p class='workload'>"
        + "".join(f"<code>{esc(k)}={esc(str(v))}</code>" for k, v in workload.items())
        + "</p>",
    ]
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in report["warnings"]]
    parts += ["<h2>Stages</h2>", _html_table(STAGE_HEADER, _stage_rows(report))]
    times = report["time_estimates"]
    parts += [
        f"<h2>Time per generation ({esc(times['precision'])}, roofline)</h2>",
        "<div class='top'>" + _html_table(*_time_rows(report)) + "</div>",
        f"<p class='note'>{esc(times['caveat'])}</p>",
    ]
    for title, data in plots.items():
        parts.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
    if "runtime" in report:
        (sh, sr), (gh, gr) = _runtime_tables(report)
        parts += [
            f"<h2>Runtime: {esc(report['runtime']['name'])}</h2>",
            f"<p>{esc(_runtime_intro(report))}</p>",
            "<div class='top'>" + _html_table(sh, sr) + "</div>",
            "<div class='top'>" + _html_table(gh, gr) + "</div>",
            f"<p class='note'>{esc(report['runtime']['note'])}</p>",
        ]
    if "serving" in report:
        parts += [
            "<h2>Serving</h2>",
            f"<p>{esc(_serving_intro(report))}</p>",
            "<div class='top'>" + _html_table(*_serving_rows(report)) + "</div>",
            "<div class='top'>" + _html_table(*_kv_rows(report)) + "</div>",
            f"<p class='note'>{esc(report['serving']['caveat'])}</p>",
        ]
    memory = report["memory"]["pipeline"]
    parts += [
        "<h2>Memory</h2><ul>",
        f"<li>weights of the stages that run ({esc(str(report['memory']['dtype']))}): "
        f"{human(memory['weight_bytes'], 'B')}</li>",
        f"<li>peak with all weights resident: {human(memory['peak_bytes_all_weights_resident'], 'B')}"
        f"{esc(_set_by(memory, 'all_weights_resident'))}</li>",
        "<li>peak with one stage resident at a time: "
        f"{human(memory['peak_bytes_one_stage_resident'], 'B')}"
        f"{esc(_set_by(memory, 'one_stage_resident'))}</li>",
        f"</ul><p class='note'>{esc(report['memory']['note'])}</p>",
        "<h2>Top layers by FLOPs per generation</h2><div class='top'>",
        _html_table(
            ["#", "stage", "layer", "category", "FLOPs", "share"],
            [
                [
                    str(i),
                    t["stage"],
                    t["id"],
                    t["category"],
                    human(t["flops_per_generation"], "FLOP"),
                    percent(t["share"]),
                ]
                for i, t in enumerate(report["top_layers"], 1)
            ],
        ),
        "</div><h2>Top categories</h2><div class='top'>",
        _html_table(
            ["#", "category", "FLOPs", "share"],
            [
                [str(i), c["category"], human(c["flops_per_generation"], "FLOP"), percent(c["share"])]
                for i, c in enumerate(report["top_categories"], 1)
            ],
        ),
        "</div><h2>Not modeled</h2><ul>",
        *(f"<li>{esc(item)}</li>" for item in report["not_modeled"]),
        f"</ul><h2>Convention</h2><p class='note'>{esc(report['convention'])}</p>",
        f"<p class='note'>run {esc(report['run_id'])} · {esc(report['created_utc'])}</p></body></html>",
    ]
    return "".join(parts)
