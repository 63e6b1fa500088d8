"""``flopcheck sweep``: the report's figures over a grid of workloads, streamed into
``sweep.csv`` and ``sweep.json`` point by point, with one plot per varied field."""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pytest_flopcheck import output
from pytest_flopcheck.cli.common import FLOAT_SAFE, UsageError, estimating, gpus, option_name, say, staged
from pytest_flopcheck.cli.report import runtime_option
from pytest_flopcheck.cli.workloads import build_workload, workload_from_args, workload_options
from pytest_flopcheck.model.parallel import SINGLE, Layout, LayoutError, parse_slug
from pytest_flopcheck.model.registration import ModelRegistration
from pytest_flopcheck.model.workload import workload_fields
from pytest_flopcheck.sizing import plots
from pytest_flopcheck.sizing.build import CONVENTION, SERVING_CAVEAT, TIME_CAVEAT
from pytest_flopcheck.sizing.hardware import Gpu
from pytest_flopcheck.sizing.records import SCHEMA_VERSION
from pytest_flopcheck.sizing.sweep import GPUS_FIELD, LAYOUT_FIELD, NOT_WORKLOAD, sweep_columns, sweep_rows
from pytest_flopcheck.text import shorten

DEFAULT_MAX_POINTS = 100_000
"""Largest sweep grid without --max-points (a point takes about 10 µs and 100 bytes of output)."""
PROGRESS_FROM = 20_000


def parse_vary(
    reg: ModelRegistration, items: Sequence[str], args: argparse.Namespace
) -> dict[str, list[Any]]:
    """The grid ``--vary FIELD=V1,V2`` asks for, every value parsed."""
    options = {o.field: o for o in workload_options(reg.workload_type)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        field = name.strip().lstrip("-").replace("-", "_")
        if field == LAYOUT_FIELD and field not in options:
            if args.runtime is None:
                raise UsageError(
                    "--vary layout is not allowed without --runtime and --gpu: layouts run a runtime"
                )
            if LAYOUT_FIELD in grid:
                raise UsageError("--vary 'layout' is given twice: list all its values in one --vary")
            if reg.parallel is None:
                raise UsageError(f"--vary layout is not allowed: {reg.name} has no multi-GPU model")
            shardable = tuple(reg.parallel.fsdp_units)
            try:
                grid[LAYOUT_FIELD] = [parse_slug(text, shardable).slug for text in values.split(",")]
            except LayoutError as exc:
                raise UsageError(f"--vary {shorten(item)} is not allowed: {exc}") from None
            continue
        if field == GPUS_FIELD and field not in options:
            if args.runtime is None:
                raise UsageError("--vary gpus is not allowed without --runtime and --gpu: GPUs run a runtime")
            texts = values.split(",")
            if not all(t.strip().isdigit() and 0 < int(t) < 10_000 for t in texts):
                raise UsageError(
                    f"--vary {shorten(item)} is not allowed: the GPU counts must be positive integers"
                )
            if GPUS_FIELD in grid:
                raise UsageError("--vary 'gpus' is given twice: list all its values in one --vary")
            grid[GPUS_FIELD] = [int(t) for t in texts]
            continue
        if not sep or not values.strip():
            raise UsageError(
                f"--vary {shorten(item)} is not allowed: write FIELD=V1,V2,... (fields: {', '.join(options)})"
            )
        if field not in options:
            raise UsageError(
                f"--vary {shorten(name.strip())} is not allowed: choose a field of {', '.join(options)}"
            )
        if field in grid:
            raise UsageError(f"--vary {field!r} is given twice: list all its values in one --vary")
        if vars(args).get(field) is not None:
            raise UsageError(
                f"--vary {field!r} is not allowed together with {option_name(field)}: "
                "a field is either fixed or varied"
            )
        texts = values.split(",")
        if any(not text.strip() for text in texts):
            raise UsageError(
                f"--vary {shorten(item)} is not allowed: it has an empty value; write FIELD=V1,V2,..."
            )
        grid[field] = [options[field].parse(text) for text in texts]
    if not grid:
        raise UsageError("--vary is required: give at least one FIELD=V1,V2,...")
    return grid


def _layouts(
    reg: ModelRegistration, base: Any, runtime: str | None, grid: dict[str, list[Any]]
) -> Callable[[Any, dict[str, Any]], Layout] | None:
    """The layout a row runs in: its ``layout``, or the runtime's for its GPU count; every one
    checked against the base workload before anything is written (a varied workload's own
    constraints, say heads against Ulysses, are checked as its row is computed)."""
    if runtime is None:
        return None
    if GPUS_FIELD in grid and LAYOUT_FIELD in grid:
        raise UsageError(
            "--vary gpus and --vary layout are not allowed together: a layout sets its GPU count"
        )
    spec = reg.runtimes[runtime]

    def layout_for(workload: Any, values: dict[str, Any]) -> Layout:
        slug = values.get(LAYOUT_FIELD)
        given = (
            None if slug is None or reg.parallel is None else parse_slug(slug, tuple(reg.parallel.fsdp_units))
        )
        count = given.gpus if given is not None else values.get(GPUS_FIELD, 1)
        what = f"layout={given.slug}" if given is not None else f"gpus={count}"
        if count == 1:
            return SINGLE
        if reg.parallel is None or spec.layout is None:
            raise UsageError(f"--vary {what} is not allowed: runtime {runtime} runs on one GPU only")
        layout = given or spec.layout(count)
        try:
            reg.parallel.validate(workload, layout)
        except LayoutError as exc:
            raise UsageError(f"--vary {what} is not allowed for {shorten(str(workload))}: {exc}") from None
        return layout

    for layout in grid.get(LAYOUT_FIELD, []):
        layout_for(base, {LAYOUT_FIELD: layout})
    for count in grid.get(GPUS_FIELD, [1]):
        layout_for(base, {GPUS_FIELD: count})
    return layout_for


def _runtime_plots(
    folder: Path,
    knob: str,
    xs: list[Any],
    line: list[dict[str, Any]],
    fixed: dict[str, Any],
    gpu: Gpu,
    runtime: str,
) -> None:
    """Seconds, peak per GPU (against the GPU's memory), parallel efficiency and communication
    share, and (over GPU counts) the speedup beside the ideal one, along one knob."""
    counts = knob == GPUS_FIELD
    (folder / f"{knob}_seconds.png").write_bytes(
        plots.sweep_plot(
            knob, xs, {"end to end": [r["runtime_s"] for r in line]}, fixed,
            quantity=f"Seconds on {gpu.name} ({runtime})", unit="seconds per generation", counts=counts,
        )
    )  # fmt: skip
    (folder / f"{knob}_memory.png").write_bytes(
        plots.sweep_plot(
            knob, xs, {"peak per GPU": [r["peak_bytes_per_gpu"] / 1e9 for r in line]}, fixed,
            quantity="Peak memory per GPU (estimate)", unit="GB", log_y=False, counts=counts,
            limit=(gpu.memory_gb, f"{gpu.name}: {gpu.memory_gb:g} GB"),
        )
    )  # fmt: skip
    (folder / f"{knob}_efficiency.png").write_bytes(
        plots.sweep_plot(
            knob, xs,
            {
                "parallel efficiency": [100 * r["parallel_efficiency"] for r in line],
                "communication share": [100 * r["communication_share"] for r in line],
            },
            fixed, quantity="Parallel efficiency and communication share", unit="%", log_y=False,
            counts=counts,
        )
    )  # fmt: skip
    if counts:
        (folder / f"{knob}_scaling.png").write_bytes(
            plots.sweep_plot(
                knob, xs,
                {"speedup": [r["speedup"] for r in line], "ideal": [float(x) for x in xs]},
                fixed, quantity="Speedup over one GPU", unit="× one GPU", counts=True,
            )
        )  # fmt: skip


def cmd_sweep(reg: ModelRegistration, args: argparse.Namespace) -> int:
    if args.max_points < 1:
        raise UsageError(f"--max-points {args.max_points} is not allowed: it must be 1 or more")
    grid = parse_vary(reg, args.vary, args)
    points = math.prod(len(values) for values in grid.values())
    if points > args.max_points:
        raise UsageError(
            f"--vary gives {points:,} workloads, more than --max-points {args.max_points:,}: "
            "vary fewer values, or raise --max-points"
        )
    base = workload_from_args(reg, args)
    for field, values in grid.items():  # every value checked before anything is written
        for value in values if field not in NOT_WORKLOAD else ():
            build_workload(reg, base, {field: value})
    stages = [s.name for s in reg.stages]
    chosen = gpus(args.gpu, args.precision)  # checks the name and the precision
    gpu = None if args.gpu is None else chosen[0]
    if args.gpu is None and args.precision != "bf16":
        raise UsageError("--precision needs --gpu in a sweep: the precision only sets the GPU's peak")
    runtime = runtime_option(reg, args)
    if runtime is not None and gpu is None:
        raise UsageError(f"--runtime {runtime} needs --gpu in a sweep: its seconds are one GPU model's")
    layouts = _layouts(reg, base, runtime, grid)
    figures = sweep_columns(reg, gpu, runtime, LAYOUT_FIELD in grid)
    run_id = output.new_run_id()
    columns = [*grid, *figures]
    header = {
        "schema_version": SCHEMA_VERSION,
        "kind": "flopcheck.sweep",
        "run_id": run_id,
        "created_utc": output.utc_now(),
        "model": reg.name,
        "base_workload": workload_fields(base),
        "vary": grid,
        "convention": CONVENTION,
        "columns": figures,
    }
    if gpu is not None:
        header["gpu"] = {"name": gpu.name, "precision": args.precision, "caveat": TIME_CAVEAT}
        if reg.serving is not None:
            header["serving_caveat"] = SERVING_CAVEAT
    lines = {knob: {k: v[0] for k, v in grid.items() if k != knob} for knob in grid}
    on_line: dict[str, list[dict[str, Any]]] = {knob: [] for knob in grid}
    encode = json.JSONEncoder(allow_nan=False).encode
    base_dir = f"sweep/{reg.name}"
    with staged(args, run_id) as run:
        csv_path = run.staging / base_dir / "sweep.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            csv_path.open("w", encoding="utf-8", newline="") as csv_file,
            (run.staging / base_dir / "sweep.json").open("w", encoding="utf-8") as json_file,
        ):
            writer = csv.DictWriter(csv_file, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            json_file.write(encode(header)[:-1] + ', "rows": [\n')
            rows = sweep_rows(
                reg,
                grid,
                lambda values: build_workload(reg, base, values),
                gpu,
                args.precision,
                runtime,
                layouts,
            )
            for done, row in enumerate(rows, 1):
                writer.writerow(row)
                json_file.write(("" if done == 1 else ",\n") + encode(row))
                for knob, fixed in lines.items():
                    if all(row[k] == v for k, v in fixed.items()):
                        on_line[knob].append(row)
                if points >= PROGRESS_FROM and done % (points // 20) == 0:
                    say(f"swept {done:,} of {points:,} workloads", file=sys.stderr, flush=True)
            json_file.write("\n]}\n")
        if plots.available():
            with estimating(base):
                if any(row["total_flops"] > FLOAT_SAFE for line in on_line.values() for row in line):
                    raise OverflowError("too large to plot")
                for knob, xs in grid.items():
                    line = on_line[knob]
                    series = {s: [r[f"{s}_flops"] for r in line] for s in stages} | {
                        "total": [r["total_flops"] for r in line]
                    }
                    (run.staging / base_dir / f"{knob}.png").write_bytes(
                        plots.sweep_plot(knob, xs, series, lines[knob], counts=knob == GPUS_FIELD)
                    )
                    if gpu is None:
                        continue
                    if runtime is not None:
                        _runtime_plots(run.staging / base_dir, knob, xs, line, lines[knob], gpu, runtime)
                        continue
                    timing = {
                        s: [r[f"{s}_s"] for r in line] for s in stages if any(r[f"{s}_s"] for r in line)
                    }
                    (run.staging / base_dir / f"{knob}_seconds.png").write_bytes(
                        plots.sweep_plot(
                            knob, xs, timing | {"total": [r["total_s"] for r in line]}, lines[knob],
                            quantity=f"Seconds on {gpu.name}", unit="seconds per generation",
                        )
                    )  # fmt: skip
                    memory = {
                        "all weights resident": [r["peak_bytes_all_resident"] / 1e9 for r in line],
                        "one stage resident": [r["peak_bytes_one_stage"] / 1e9 for r in line],
                    }
                    (run.staging / base_dir / f"{knob}_memory.png").write_bytes(
                        plots.sweep_plot(
                            knob, xs, memory, lines[knob], quantity="Peak memory (estimate)", unit="GB",
                            log_y=False, limit=(gpu.memory_gb, f"{gpu.name}: {gpu.memory_gb:g} GB"),
                        )
                    )  # fmt: skip
        else:
            say("warning: matplotlib is not installed: no plots were written")
    unit = "rows" if set(grid) & set(NOT_WORKLOAD) else "workloads"  # a GPU count or layout is no workload
    say(f"{points:,} {unit}; sweep: {run.final / base_dir}")
    return 0
