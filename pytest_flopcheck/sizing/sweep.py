"""Sweeps: the report's figures over a grid of workloads, one row per workload, computed by the
same owners as the report (:func:`~pytest_flopcheck.sizing.build.generation_totals`, the time
model, :func:`~pytest_flopcheck.sizing.build.pipeline_memory`,
:func:`~pytest_flopcheck.sizing.build.serving_times`) but through each stage's totals fast path,
so that a hundred thousand points stream in flat memory."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

from pytest_flopcheck.model.parallel import Layout
from pytest_flopcheck.model.registration import ModelRegistration, model_call
from pytest_flopcheck.sizing.build import generation_totals, pipeline_memory, runtime_figures, serving_times
from pytest_flopcheck.sizing.hardware import Gpu
from pytest_flopcheck.sizing.timing import Execution, tree_time

GPUS_FIELD = "gpus"
"""The sweep field that varies the number of GPUs (with a runtime): not a workload field."""
LAYOUT_FIELD = "layout"
"""The sweep field that varies the multi-GPU layout (with a runtime), as slugs (``u4c2``)."""
NOT_WORKLOAD = (GPUS_FIELD, LAYOUT_FIELD)


def sweep_columns(
    reg: ModelRegistration, gpu: Gpu | None, runtime: str | None = None, layouts: bool = False
) -> dict[str, str]:
    """The sweep's figure columns (after the varied fields) and what each holds (``layouts``:
    the rows vary the layout)."""
    stages = [s.name for s in reg.stages]
    columns = {f"{s}_flops": f"FLOPs of {s} per generation" for s in stages}
    columns["total_flops"] = "FLOPs end to end"
    if reg.serving is not None:
        columns["kv_cache_bytes"] = "KV cache of the batch at the last decode step"
    if gpu is None:
        return columns
    if runtime is not None:
        where = f"on {gpu.name} under runtime {runtime}, " + (
            "in the row's layout" if layouts else "in the layout its script uses on the row's GPUs"
        )
        if layouts:
            columns["gpus"] = "GPUs the row's layout runs on"
        return columns | {
            "runtime_s": f"seconds per generation end to end {where}",
            "speedup": "one GPU's seconds over the row's (the same workload)",
            "parallel_efficiency": "speedup over the number of GPUs",
            "peak_bytes_per_gpu": f"the most any one GPU holds {where}",
            "fits": f"whether that peak fits in the {gpu.name}'s {gpu.memory_gb:g} GB",
            "communication_share": "share of the seconds spent in collectives",
        }
    where = f"on {gpu.name}, per-kernel time model (torch SDPA, eager)"
    columns |= {f"{s}_s": f"seconds of {s} per generation {where}" for s in stages}
    columns["total_s"] = f"seconds per generation {where}"
    columns["peak_bytes_all_resident"] = "estimated pipeline peak memory, every stage's weights resident"
    columns["peak_bytes_one_stage"] = "estimated pipeline peak memory, one stage resident at a time"
    if reg.serving is not None:
        unit = reg.serving.unit
        columns |= {
            "time_to_first_token_s": f"seconds to the first token {where}",
            "time_per_output_token_s": f"mean seconds per further token {where}",
            f"{unit}s_per_s": f"{unit}s per second {where}",
            "output_tokens_per_s": f"generated tokens per second {where}",
        }
    return columns


def sweep_rows(
    reg: ModelRegistration,
    grid: dict[str, list[Any]],
    build: Callable[[dict[str, Any]], Any],
    gpu: Gpu | None = None,
    precision: str = "bf16",
    runtime: str | None = None,
    layout_for: Callable[[Any, dict[str, Any]], Layout] | None = None,
) -> Iterator[dict[str, Any]]:
    """Per-stage and total FLOPs per generation for every point of the grid (totals only), one
    row at a time; ``build`` turns one point's values into a workload. With ``gpu``, the time
    model's seconds per stage, the pipeline's memory peaks and, for a registration with ``serving``, its
    serving figures."""
    names = list(grid)
    stages = [s.name for s in reg.stages]
    spec = reg.serving
    alone: dict[Any, float] = {}  # one GPU's seconds per workload, the speedups' base
    for point in itertools.product(*(grid[n] for n in names)):
        values = dict(zip(names, point, strict=True))
        workload = build({k: v for k, v in values.items() if k not in NOT_WORKLOAD})
        generation = generation_totals(
            reg, workload, {stage: reg.totals(workload, stage) for stage in stages}
        )
        runs = generation.runs
        row: dict[str, Any] = dict(values)
        total = 0
        for stage in stages:
            flops = generation.of(stage).flops
            row[f"{stage}_flops"] = flops
            total += flops
        row["total_flops"] = total
        if spec is not None:
            context = model_call(reg.name, "serving.context", spec.context, workload)
            new = model_call(reg.name, "serving.new_tokens", spec.new_tokens, workload)
            sequences = model_call(reg.name, "serving.sequences", spec.sequences, workload)
            per_token = model_call(
                reg.name, "serving.cache_bytes_per_token", spec.cache_bytes_per_token, workload
            )
            row["kv_cache_bytes"] = sequences * (context + new - 1) * per_token
        if gpu is not None and runtime is not None:
            assert layout_for is not None
            layout = layout_for(workload, values)
            count = layout.gpus
            if LAYOUT_FIELD in values:
                row["gpus"] = count
            running = runtime_figures(reg, workload, runtime, runs, [gpu], layout)
            seconds_now = running.seconds or 0.0
            if workload not in alone:
                alone[workload] = (
                    seconds_now
                    if count == 1
                    else runtime_figures(reg, workload, runtime, runs, [gpu]).seconds or 0.0
                )
            speedup = alone[workload] / seconds_now if seconds_now else 0.0
            (estimate,) = running.estimates or (None,)
            communication = estimate.parts.communication if estimate is not None else 0.0
            row |= {
                "runtime_s": seconds_now,
                "speedup": speedup,
                "parallel_efficiency": speedup / count,
                "peak_bytes_per_gpu": running.peak_gpu_bytes,
                "fits": estimate.fits if estimate is not None else None,
                "communication_share": communication / seconds_now if seconds_now else 0.0,
            }
        elif gpu is not None:
            trees = {s: reg.tree(workload, s) for s in stages}
            execution = Execution(precision)
            modelled = {s.name for s in reg.stages if s.traffic_tolerance is not None}
            seconds = {
                s: tree_time(trees[s], gpu, execution, s in modelled).seconds * runs[s] for s in stages
            }
            row |= {f"{s}_s": seconds[s] for s in stages}
            row["total_s"] = sum(seconds.values())
            memory = pipeline_memory(reg, workload, trees)
            row["peak_bytes_all_resident"] = memory.peak_bytes_all_weights_resident
            row["peak_bytes_one_stage"] = memory.peak_bytes_one_stage_resident
            if spec is not None:
                figures = serving_times(reg, workload, gpu.name, seconds)
                row["time_to_first_token_s"] = figures.time_to_first_token_s
                row["time_per_output_token_s"] = figures.time_per_output_token_s
                row[f"{spec.unit}s_per_s"] = figures.units_per_s
                row["output_tokens_per_s"] = figures.output_tokens_per_s
        yield row
