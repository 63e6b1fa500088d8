"""The ``flopcheck`` command: sizing reports, sweeps and report diffs from the analytic models.

Workload options are generated from the model's workload class (an attrs class), so every
registered model gets its own ``--height``/``--frames``-style options. Bad input is one
sentence on stderr and exit status 2; files are written to a temporary directory that is
renamed into place only when everything succeeded.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import dataclasses
import importlib
import importlib.util
import itertools
import json
import math
import os
import re
import shutil
import sys
import time
import typing
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs

from pytest_flopcheck.evidence import render as evidence
from pytest_flopcheck.evidence.diff import diff_runs, parse_threshold
from pytest_flopcheck.evidence.record import SCHEMA_VERSION, RunRecord
from pytest_flopcheck.evidence.schema import check_evidence, check_report
from pytest_flopcheck.files import FileProblem, describe, read_json
from pytest_flopcheck.model.registration import (
    ModelError,
    ModelRegistration,
    RegistrationError,
    Registry,
    load_registry,
)
from pytest_flopcheck.names import printable, shorten
from pytest_flopcheck.sizing import plots, report
from pytest_flopcheck.sizing.hardware import (
    GPUS,
    PRECISIONS,
    Gpu,
    HardwareError,
    check_precision,
    lookup,
    roofline,
)
from pytest_flopcheck.verification.compare import relative_error

DEFAULT_OUTPUT = "tmp/profile-output"
MAX_DIGITS = 30
"""Longest integer a workload option takes: larger sizes only overflow the float estimates."""
DEFAULT_MAX_POINTS = 100_000
"""Largest sweep grid without --max-points (a point takes about 10 µs and 100 bytes of output)."""
PROGRESS_FROM = 20_000
RUN_DIR = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")


def _say(*parts: object, file: Any = None, flush: bool = False) -> None:
    """print(), with control characters a plugin or a file may carry shown, not obeyed."""
    print(printable(" ".join(str(p) for p in parts)), file=file, flush=flush)


class UsageError(Exception):
    """Bad input from the command line: printed as one sentence, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _option(field: str) -> str:
    return "--" + field.replace("_", "-")


@attrs.frozen
class WorkloadOption:
    """A command-line option generated from one field of a workload class."""

    field: str
    kind: type
    help: str

    def parse(self, text: str) -> Any:
        if self.kind is int:
            digits = text.strip().lstrip("+-")
            if len(digits) > MAX_DIGITS and digits.isdigit():
                raise UsageError(
                    f"{_option(self.field)} {shorten(text, 24)} is not allowed: it has {len(digits):,} "
                    f"digits, more than the {MAX_DIGITS} a workload size may have"
                )
            try:
                return int(text.strip(), 10)
            except ValueError:
                raise UsageError(
                    f"{_option(self.field)} {shorten(text)} is not allowed: it must be an integer"
                ) from None
        if self.kind is float:
            try:
                value = float(text.strip())
            except ValueError:
                raise UsageError(
                    f"{_option(self.field)} {shorten(text)} is not allowed: it must be a number"
                ) from None
            if not math.isfinite(value):
                raise UsageError(
                    f"{_option(self.field)} {shorten(text)} is not allowed: it must be a finite number"
                )
            return value
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise UsageError(
                f"{_option(self.field)} {shorten(text)} is not allowed: it must be true or false"
            )
        return text


def _field_kind(annotation: object) -> type:
    return annotation if annotation in (int, bool, float) else str


class WorkloadClassError(UsageError):
    """A registration's workload class cannot be turned into options."""


def workload_options(workload_type: type | None) -> list[WorkloadOption]:
    """One option per field of an attrs class or a dataclass (ints, numbers and flags typed, the
    rest text)."""
    if workload_type is None:
        return []
    if attrs.has(workload_type):
        resolved = attrs.resolve_types(workload_type)
        return [
            WorkloadOption(f.name, _field_kind(f.type), str(f.metadata.get("help", "")))
            for f in attrs.fields(resolved)
            if f.init and f.metadata.get("option", True)
        ]
    if dataclasses.is_dataclass(workload_type):
        hints = typing.get_type_hints(workload_type)
        return [
            WorkloadOption(f.name, _field_kind(hints.get(f.name)), str(f.metadata.get("help", "")))
            for f in dataclasses.fields(workload_type)
            if f.init and f.metadata.get("option", True)
        ]  # fmt: skip
    raise WorkloadClassError(
        f"the workload class {workload_type.__qualname__} is neither an attrs class nor a dataclass, so "
        "flopcheck cannot turn it into options: use --workload with a standard workload"
    )


def _import_plugin(spec: str) -> tuple[str, object]:
    """A model plugin named on the command line: a module name, or a path to a .py file."""
    path = Path(spec)
    try:
        if spec.endswith(".py") or path.is_file():
            if not path.is_file():
                raise UsageError(f"-p {shorten(spec)} is not allowed: there is no such file")
            module_spec = importlib.util.spec_from_file_location(f"flopcheck_plugin_{path.stem}", path)
            assert module_spec is not None
            assert module_spec.loader is not None
            module = importlib.util.module_from_spec(module_spec)
            module_spec.loader.exec_module(module)
            return str(path), module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())  # as pytest does for a project's own plugins
        return spec, importlib.import_module(spec)
    except UsageError:
        raise
    except SystemExit as exc:  # a plugin that exits on import would end flopcheck silently
        raise UsageError(
            f"-p {shorten(spec)} called sys.exit({shorten(exc.code)}) while being imported"
        ) from None
    except Exception as exc:
        raise UsageError(
            f"-p {shorten(spec)} could not be imported: {type(exc).__name__}: {shorten(str(exc), 200)}"
        ) from None


def _load_registry(plugins: Sequence[str] = ()) -> Registry:
    try:
        return load_registry([_import_plugin(spec) for spec in plugins])
    except RegistrationError as exc:
        raise UsageError(str(exc)) from None


def _registration(registry: Registry, name: str) -> ModelRegistration:
    if name not in registry.models:
        raise UsageError(f"model {name!r} is not registered: choose one of {registry.describe()}")
    return registry.models[name]


def _add_workload_arguments(parser: argparse.ArgumentParser, reg: ModelRegistration) -> None:
    group = parser.add_argument_group(
        f"{reg.name} workload (defaults: the --workload, else the class defaults)"
    )
    group.add_argument(
        "--workload", metavar="ID", help=f"start from a standard workload: {', '.join(reg.workloads)}"
    )
    try:
        options = workload_options(reg.workload_type)
    except WorkloadClassError:
        options = []  # only --workload; asking for a workload without it says why
    for option in options:
        if option.kind is bool:
            group.add_argument(
                _option(option.field),
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=option.help,
            )
        else:
            group.add_argument(_option(option.field), dest=option.field, metavar="VALUE", help=option.help)


def _workload(reg: ModelRegistration, args: argparse.Namespace, extra: dict[str, Any] | None = None) -> Any:
    if args.workload is not None:
        if args.workload not in reg.workloads:
            raise UsageError(
                f"--workload {shorten(args.workload)} is not allowed: "
                f"choose one of {', '.join(reg.workloads)}"
            )
        base = reg.workloads[args.workload]
    elif reg.workload_type is not None:
        base = None
    else:
        raise UsageError(
            f"model {reg.name!r} has no workload class: use --workload with one of {', '.join(reg.workloads)}"
        )
    values: dict[str, Any] = {}
    try:
        options = workload_options(reg.workload_type)
    except WorkloadClassError:
        if base is None:
            raise  # nothing to start from and no way to build one from options
        options = []
    for option in options:
        raw = getattr(args, option.field, None)
        if raw is not None:
            values[option.field] = raw if isinstance(raw, bool) else option.parse(raw)
    values.update(extra or {})
    workload = _build_workload(reg, base, values)
    if args.config is None:
        return workload
    if not args.config.strip():
        raise UsageError("--config is empty: give a checkpoint's config.json or the folder holding it")
    if reg.config_workload is None:
        raise UsageError(f"--config is not allowed: model {reg.name!r} does not read checkpoint configs")
    try:
        return reg.config_workload(workload, args.config)
    except ValueError as exc:
        raise UsageError(f"--config {shorten(args.config, 400)} is not allowed: {exc}") from None


def _build_workload(reg: ModelRegistration, base: Any, values: dict[str, Any]) -> Any:
    try:
        if base is None:
            assert reg.workload_type is not None
            return reg.workload_type(**values)
        if not values:
            return base
        return attrs.evolve(base, **values) if attrs.has(type(base)) else dataclasses.replace(base, **values)
    except (ValueError, TypeError) as exc:
        field = getattr(exc, "field", None)
        if field is not None:
            value, allowed = getattr(exc, "value", None), getattr(exc, "allowed", exc)
            raise UsageError(f"{_option(field)} {shorten(value)} is not allowed: {allowed}") from None
        raise UsageError(f"the workload is not allowed: {shorten(str(exc), 300)}") from None


def _gpus(name: str | None, precision: str) -> list[Any]:
    try:
        gpu = None if name is None else lookup(name)
        check_precision(gpu, precision)
        return list(GPUS.values()) if gpu is None else [gpu]
    except HardwareError as exc:
        raise UsageError(str(exc)) from None


def _output_root(args: argparse.Namespace) -> Path:
    if not args.output.strip():
        raise UsageError("--output is empty: give a directory (default tmp/profile-output)")
    return Path(os.path.expanduser(args.output))


@contextlib.contextmanager
def _staged(args: argparse.Namespace, run_id: str) -> Iterator[evidence.StagedRun]:
    """A run directory that is published whole when the block succeeds and leaves nothing
    behind when it fails (full disk, unwritable output, Ctrl-C)."""
    try:
        staged = evidence.StagedRun(_output_root(args), run_id, "--output", args.output)
    except evidence.OutputError as exc:
        raise UsageError(str(exc)) from None
    try:
        yield staged
        staged.publish()
    except OSError as exc:
        staged.discard()
        raise UsageError(
            f"the files could not be written under {shorten(args.output)} "
            f"({evidence.describe_os_error(exc)}); nothing was written"
        ) from None
    except BaseException:
        staged.discard()
        raise


def _estimating(workload: Any) -> contextlib.AbstractContextManager[None]:
    """Turn a float overflow (a workload far beyond any real one) into one sentence."""

    @contextlib.contextmanager
    def guard() -> Iterator[None]:
        try:
            yield
        except OverflowError:
            raise UsageError(
                f"the workload {shorten(report.workload_fields(workload), 120)} is too large: its counts "
                "exceed the range of a float (about 1.8e308), so no time, share or plot can be computed"
            ) from None

    return guard()


# -- report -----------------------------------------------------------------------------------


def _runtime(reg: ModelRegistration, args: argparse.Namespace) -> str | None:
    name: str | None = args.runtime
    if name is None:
        return None
    if not reg.runtimes:
        raise UsageError(f"--runtime {shorten(name)} is not allowed: model {reg.name!r} declares no runtimes")
    if name not in reg.runtimes:
        raise UsageError(f"--runtime {shorten(name)} is not allowed: choose one of {', '.join(reg.runtimes)}")
    if args.precision != "bf16":
        raise UsageError("--precision is not allowed with --runtime: the runtime sets each stage's precision")
    return name


def cmd_report(reg: ModelRegistration, args: argparse.Namespace) -> int:
    workload = _workload(reg, args)
    runtime = _runtime(reg, args)
    gpus = _gpus(args.gpu, args.precision)
    if runtime is not None and args.gpu is not None:
        runs = reg.checked_runs(workload)
        spec = reg.runtimes[runtime]
        needed = {
            sr.compute: stage for stage, sr in spec.stages.items() if sr.device == "gpu" and runs[stage]
        }
        missing = sorted(set(needed) - set(gpus[0].tflops))
        if missing:
            raise UsageError(
                f"--runtime {runtime} is not allowed with --gpu {gpus[0].name}: its stage "
                f"{needed[missing[0]]} computes in {missing[0]}, for which {gpus[0].name} has no tensor "
                f"cores (it has {', '.join(gpus[0].tflops)})"
            )
    run_id = evidence.new_run_id()
    with _estimating(workload):
        document = report.build_report(
            reg,
            workload,
            run_id=run_id,
            created_utc=evidence.utc_now(),
            gpus=gpus,
            precision=args.precision,
            runtime=runtime,
        )
        figures = report_figures(document)
        base = f"static_analysis/{reg.name}"
        files = {
            f"{base}/report.json": evidence.dumps(document),
            f"{base}/summary.md": report.summary_markdown(document),
            f"{base}/report.html": report.report_html(document, figures),
        }
    with _staged(args, run_id) as staged:
        for relative, text in files.items():
            staged.write(relative, text)
    _print_report_summary(document, staged.final / base)
    return 0


FLOAT_SAFE = 10**300
"""Counts above this cannot be plotted or turned into times and shares (floats end near 1.8e308)."""


def report_figures(document: dict[str, Any]) -> dict[str, str]:
    if document["totals"]["per_generation"]["flops"] > FLOAT_SAFE:
        raise OverflowError("too large to plot")
    if not plots.available():
        document["warnings"].append("matplotlib is not installed: report.html has no plots")
        return {}
    return plots.report_plots(document)


def _print_report_summary(document: dict[str, Any], where: Path) -> None:
    for warning in document["warnings"]:
        _say(f"warning: {warning}")
    width = max([16, *(len(name) for name in document["stage_totals"])])
    for name, stage in document["stage_totals"].items():
        runs = stage["runs_per_generation"]
        _say(
            f"{name:>{width}}: {stage['per_generation']['flops']:>30,} FLOPs per generation "
            f"({runs} run{'s' if runs != 1 else ''}, {report.percent(stage['flops_share'])})"
        )
    _say(f"{'end to end':>{width}}: {document['totals']['per_generation']['flops']:>30,} FLOPs")
    runtime = document.get("runtime")
    if runtime is None:
        for estimate in document["time_estimates"]["estimates"]:
            _say(
                f"{estimate['gpu']:>{width}}: {report.seconds(estimate['total_s'])} per generation "
                f"({document['time_estimates']['precision']}, roofline)"
            )
    else:
        for estimate in runtime["estimates"]:
            fits = "fits" if estimate["fits"] else f"does not fit in {estimate['memory_gb']:g} GB"
            _say(
                f"{estimate['gpu']:>{width}}: {report.seconds(estimate['gpu_total_s'])} per generation on "
                f"the GPU (runtime {runtime['name']}, roofline; {fits})"
            )
        for missing in runtime["not_supported"]:
            _say(f"{missing['gpu']:>{width}}: not estimated (no {'/'.join(missing['missing'])} tensor cores)")
    _say(f"report: {where}")


# -- sweep ------------------------------------------------------------------------------------


def _parse_vary(
    reg: ModelRegistration, items: Sequence[str], args: argparse.Namespace
) -> dict[str, list[Any]]:
    options = {o.field: o for o in workload_options(reg.workload_type)}
    grid: dict[str, list[Any]] = {}
    for item in items:
        name, sep, values = item.partition("=")
        field = name.strip().lstrip("-").replace("-", "_")
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
        if getattr(args, field, None) is not None:
            raise UsageError(
                f"--vary {field!r} is not allowed together with {_option(field)}: "
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


def sweep_columns(reg: ModelRegistration, gpu: Gpu | None) -> dict[str, str]:
    """The sweep's figure columns (after the varied fields) and what each holds."""
    stages = [s.name for s in reg.stages]
    columns = {f"{s}_flops": f"FLOPs of {s} per generation" for s in stages}
    columns["total_flops"] = "FLOPs end to end"
    if reg.serving is not None:
        columns["kv_cache_bytes"] = "KV cache of the batch at the last decode step"
    if gpu is None:
        return columns
    where = f"on {gpu.name}, roofline"
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
) -> Iterator[dict[str, Any]]:
    """Per-stage and total FLOPs per generation for every point of the grid (totals only), one
    row at a time; ``build`` turns one point's values into a workload. With ``gpu``, roofline
    seconds per stage and, for a registration with ``serving``, its serving figures."""
    names = list(grid)
    stages = [s.name for s in reg.stages]
    spec = reg.serving
    for point in itertools.product(*(grid[n] for n in names)):
        values = dict(zip(names, point, strict=True))
        workload = build(values)
        runs = report.runs_per_generation(reg, workload)
        row: dict[str, Any] = dict(values)
        total = 0
        for stage in stages:
            flops = reg.totals(workload, stage).flops * runs[stage]
            row[f"{stage}_flops"] = flops
            total += flops
        row["total_flops"] = total
        if spec is not None:
            final = spec.context(workload) + spec.new_tokens(workload) - 1
            row["kv_cache_bytes"] = spec.sequences(workload) * final * spec.cache_bytes_per_token(workload)
        if gpu is not None:
            trees = {s: reg.tree(workload, s) for s in stages}
            seconds = {s: roofline(trees[s], gpu, precision).seconds * runs[s] for s in stages}
            row |= {f"{s}_s": seconds[s] for s in stages}
            row["total_s"] = sum(seconds.values())
            memory = report.pipeline_memory(reg, workload, trees)
            row["peak_bytes_all_resident"] = memory["peak_bytes_all_weights_resident"]
            row["peak_bytes_one_stage"] = memory["peak_bytes_one_stage_resident"]
            if spec is not None:
                figures = report.serving_times(reg, workload, seconds)
                row["time_to_first_token_s"] = figures["time_to_first_token_s"]
                row["time_per_output_token_s"] = figures["time_per_output_token_s"]
                row[f"{spec.unit}s_per_s"] = figures["units_per_s"]
                row["output_tokens_per_s"] = figures["output_tokens_per_s"]
        yield row


def cmd_sweep(reg: ModelRegistration, args: argparse.Namespace) -> int:
    if args.max_points < 1:
        raise UsageError(f"--max-points {args.max_points} is not allowed: it must be 1 or more")
    grid = _parse_vary(reg, args.vary, args)
    points = math.prod(len(values) for values in grid.values())
    if points > args.max_points:
        raise UsageError(
            f"--vary gives {points:,} workloads, more than --max-points {args.max_points:,}: "
            "vary fewer values, or raise --max-points"
        )
    base = _workload(reg, args)
    for field, values in grid.items():  # every value checked before anything is written
        for value in values:
            _build_workload(reg, base, {field: value})
    stages = [s.name for s in reg.stages]
    chosen = _gpus(args.gpu, args.precision)  # checks the name and the precision
    gpu = None if args.gpu is None else chosen[0]
    if args.gpu is None and args.precision != "bf16":
        raise UsageError("--precision needs --gpu in a sweep: the precision only sets the GPU's peak")
    figures = sweep_columns(reg, gpu)
    run_id = evidence.new_run_id()
    columns = [*grid, *figures]
    header = {
        "schema_version": report.SCHEMA_VERSION,
        "kind": "flopcheck.sweep",
        "run_id": run_id,
        "created_utc": evidence.utc_now(),
        "model": reg.name,
        "base_workload": report.workload_fields(base),
        "vary": grid,
        "convention": report.CONVENTION,
        "columns": figures,
    }
    if gpu is not None:
        header["gpu"] = {"name": gpu.name, "precision": args.precision, "caveat": report.TIME_CAVEAT}
        if reg.serving is not None:
            header["serving_caveat"] = report.SERVING_CAVEAT
    lines = {knob: {k: v[0] for k, v in grid.items() if k != knob} for knob in grid}
    on_line: dict[str, list[dict[str, Any]]] = {knob: [] for knob in grid}
    encode = json.JSONEncoder(allow_nan=False).encode
    base_dir = f"sweep/{reg.name}"
    with _staged(args, run_id) as staged:
        csv_path = staged.staging / base_dir / "sweep.csv"
        csv_path.parent.mkdir(parents=True, exist_ok=True)
        with (
            csv_path.open("w", encoding="utf-8", newline="") as csv_file,
            (staged.staging / base_dir / "sweep.json").open("w", encoding="utf-8") as json_file,
        ):
            writer = csv.DictWriter(csv_file, fieldnames=columns, lineterminator="\n")
            writer.writeheader()
            json_file.write(encode(header)[:-1] + ', "rows": [\n')
            build = lambda values: _build_workload(reg, base, values)  # noqa: E731
            rows = sweep_rows(reg, grid, build, gpu, args.precision)
            for done, row in enumerate(rows, 1):
                writer.writerow(row)
                json_file.write(("" if done == 1 else ",\n") + encode(row))
                for knob, fixed in lines.items():
                    if all(row[k] == v for k, v in fixed.items()):
                        on_line[knob].append(row)
                if points >= PROGRESS_FROM and done % (points // 20) == 0:
                    _say(f"swept {done:,} of {points:,} workloads", file=sys.stderr, flush=True)
            json_file.write("\n]}\n")
        if plots.available():
            with _estimating(base):
                if any(row["total_flops"] > FLOAT_SAFE for line in on_line.values() for row in line):
                    raise OverflowError("too large to plot")
                for knob, xs in grid.items():
                    line = on_line[knob]
                    series = {s: [r[f"{s}_flops"] for r in line] for s in stages} | {
                        "total": [r["total_flops"] for r in line]
                    }
                    (staged.staging / base_dir / f"{knob}.png").write_bytes(
                        plots.sweep_plot(knob, xs, series, lines[knob])
                    )
                    if gpu is None:
                        continue
                    timing = {
                        s: [r[f"{s}_s"] for r in line] for s in stages if any(r[f"{s}_s"] for r in line)
                    }
                    (staged.staging / base_dir / f"{knob}_seconds.png").write_bytes(
                        plots.sweep_plot(
                            knob, xs, timing | {"total": [r["total_s"] for r in line]}, lines[knob],
                            quantity=f"Seconds on {gpu.name}", unit="seconds per generation",
                        )
                    )  # fmt: skip
                    memory = {
                        "all weights resident": [r["peak_bytes_all_resident"] for r in line],
                        "one stage resident": [r["peak_bytes_one_stage"] for r in line],
                    }
                    (staged.staging / base_dir / f"{knob}_memory.png").write_bytes(
                        plots.sweep_plot(
                            knob, xs, memory, lines[knob], quantity="Peak memory", unit="bytes (estimate)"
                        )
                    )
        else:
            _say("warning: matplotlib is not installed: no plots were written")
    _say(f"{points:,} workloads; sweep: {staged.final / base_dir}")
    return 0


# -- prune ------------------------------------------------------------------------------------


def cmd_prune(args: argparse.Namespace) -> int:
    """Keep the newest ``--keep`` runs under the output directory; remove older runs and staging
    directories that crashed runs left behind (older than a day). A symbolic link is never
    followed (its target is not this output's to remove); what cannot be removed is named and
    the exit status is 1."""
    if args.keep < 0:
        raise UsageError(f"--keep {args.keep} is not allowed: it must be 0 or more")
    root = _output_root(args)
    if not root.is_dir():
        raise UsageError(f"--output {shorten(args.output)} is not allowed: it is not a directory")
    entries = sorted(root.iterdir(), key=lambda d: d.name)
    links = [
        d for d in entries if d.is_symlink() and RUN_DIR.fullmatch(d.name.strip(".").removesuffix(".partial"))
    ]
    runs = [d for d in entries if d.is_dir() and not d.is_symlink() and RUN_DIR.fullmatch(d.name)]
    old = runs[: max(0, len(runs) - args.keep)]
    day_ago = time.time() - 86_400
    stale = [
        d
        for d in entries
        if d.is_dir()
        and not d.is_symlink()
        and d.name.startswith(".")
        and d.name.endswith(".partial")
        and RUN_DIR.fullmatch(d.name[1 : -len(".partial")])
        and d.stat().st_mtime < day_ago
    ]
    freed = 0
    failed: list[str] = []
    removed: set[Path] = set()
    for directory in [*old, *stale]:
        size = sum(f.stat().st_size for f in directory.rglob("*") if f.is_file() and not f.is_symlink())
        if not args.dry_run:
            problems: list[str] = []

            def note(_function: Any, path: str, info: Any, found: list[str] = problems) -> None:
                found.append(f"{path} ({_why(info[1])})")

            shutil.rmtree(directory, onerror=note)
            if problems:
                failed.append(f"{directory.name}: {problems[0]}")
                continue
        removed.add(directory)
        freed += size
    verb = "would remove" if args.dry_run else "removed"
    _say(
        f"{verb} {len(removed & set(old))} of {len(runs)} runs and {len(removed & set(stale))} unfinished "
        f"run directories ({freed / 1e6:,.1f} MB); kept the newest {min(args.keep, len(runs))}"
    )
    for link in links:
        _say(f"left alone: {link.name} is a symbolic link (its target is not removed)")
    if failed:
        _say(
            f"flopcheck: {len(failed)} run(s) could not be removed completely, first {failed[0]}",
            file=sys.stderr,
        )
        return 1
    return 0


def _why(exc: BaseException) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or f"{type(exc).__name__}: {exc}"


# -- diff and list ----------------------------------------------------------------------------


REPORT_KIND = "flopcheck.static_analysis"
EVIDENCE_KIND = "flopcheck.evidence"


def _load_document(path: str) -> tuple[str, Any]:
    """``("report", document)`` or ``("evidence", RunRecord)`` from a file or a run folder, its
    structure checked; UsageError naming the file (and the field) otherwise."""
    candidate = Path(path)
    shown = shorten(path, 400)
    if candidate.is_dir():
        found = sorted(
            p
            for name in ("report.json", "evidence.json")
            for p in candidate.rglob(name)
            if not any(part.startswith(".") for part in p.relative_to(candidate).parts)
        )
        if len(found) != 1:
            raise UsageError(
                f"{shown} is not allowed: the folder holds {len(found)} report.json or evidence.json "
                "files, not 1"
            )
        candidate = found[0]
    try:
        document = read_json(candidate)
        kind = document.get("kind") if isinstance(document, dict) else None
        if kind == REPORT_KIND:
            version = document.get("schema_version")
            if version != report.SCHEMA_VERSION:
                raise FileProblem(
                    f"is a report of schema version {describe(version)}; this flopcheck reads version "
                    f"{report.SCHEMA_VERSION}"
                )
            check_report(document)
            return "report", document
        if kind != EVIDENCE_KIND:
            raise FileProblem("is neither a flopcheck report.json nor an evidence.json")
        version = document.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FileProblem(
                f"is evidence of schema version {describe(version)}; this flopcheck reads version "
                f"{SCHEMA_VERSION}"
            )
        check_evidence(document)
        return "evidence", RunRecord.from_json(document)
    except FileProblem as exc:
        text = str(exc)
        name = shorten(str(candidate), 400)
        where = "" if text.startswith(name) else f"{name} " if text.startswith("is ") else f"{name}: "
        raise UsageError(f"{where}{text}") from None


def _leaf_flops(document: dict[str, Any]) -> dict[str, int]:
    flops: dict[str, int] = {}
    for stage, tree in document["tree"].items():
        runs = document["stage_totals"][stage]["runs_per_generation"]

        def walk(node: dict[str, Any], times: int, stage: str = stage, runs: int = runs) -> None:
            times *= node.get("repeat", 1)
            if "children" not in node:
                flops[f"{stage}/{node['id']}"] = node["flops"] * times * runs
            for child in node.get("children", []):
                walk(child, times)

        walk(tree, 1)
    return flops


def cmd_diff(args: argparse.Namespace) -> int:
    if args.top < 0:
        raise UsageError(f"--top {args.top} is not allowed: it must be 0 or more")
    threshold = None
    if args.fail_on is not None:
        try:
            threshold = parse_threshold(args.fail_on)
        except ValueError:
            raise UsageError(
                f"--fail-on {args.fail_on!r} is not allowed: give a relative change such as 0, 0.01 or 1%"
            ) from None
    (kind_a, before), (kind_b, after) = _load_document(args.before), _load_document(args.after)
    if kind_a != kind_b:
        raise UsageError(f"cannot compare a {kind_a} with a{'n' if kind_b == 'evidence' else ''} {kind_b}")
    if kind_a == "evidence" and before.selection["models"] != after.selection["models"]:
        raise UsageError(
            f"cannot compare evidence of different models: {', '.join(before.selection['models'])} and "
            f"{', '.join(after.selection['models'])}"
        )
    if kind_a == "evidence":
        reasons = _diff_evidence(before, after, args.top, threshold)
    else:
        reasons = _diff_reports(before, after, args.top, threshold)
    if reasons:
        _say(f"flopcheck: drift beyond --fail-on {args.fail_on}: " + "; ".join(reasons), file=sys.stderr)
        return 1
    return 0


def _diff_reports(
    before: dict[str, Any], after: dict[str, Any], top: int, threshold: float | None
) -> list[str]:
    if before["model"]["name"] != after["model"]["name"]:
        raise UsageError(
            f"cannot compare reports of different models: {before['model']['name']!r} and "
            f"{after['model']['name']!r}"
        )
    changed = {k: v for k, v in after["workload"].items() if before["workload"].get(k) != v}
    _say(
        "workload changes: "
        + (", ".join(f"{k} {before['workload'].get(k)} -> {v}" for k, v in changed.items()) or "none")
    )
    reasons = []
    for stage in before["stage_totals"]:
        if stage not in after["stage_totals"]:
            old = before["stage_totals"][stage]["per_generation"]["flops"]
            _say(f"{stage:>16}: {old:>30,} -> {'(stage removed)':>30}")
            if threshold is not None:
                reasons.append(f"stage {stage} disappeared")
    for stage, totals in after["stage_totals"].items():
        old = before["stage_totals"].get(stage, {}).get("per_generation", {}).get("flops", 0)
        new = totals["per_generation"]["flops"]
        ratio = f"x{new / old:.3f}" if old else "new"
        _say(f"{stage:>16}: {old:>30,} -> {new:>30,} ({ratio})")
        change = relative_error(new, old)
        if threshold is not None and (change is None or change > threshold):
            reasons.append(f"stage {stage} changed from {old:,} to {new:,} FLOPs per generation")
    old_layers, new_layers = _leaf_flops(before), _leaf_flops(after)
    deltas = sorted(
        ((new_layers.get(k, 0) - old_layers.get(k, 0), k) for k in set(old_layers) | set(new_layers)),
        key=lambda item: (-abs(item[0]), item[1]),
    )
    _say("largest changes by layer (FLOPs per generation):")
    for delta, layer in deltas[:top]:
        if delta:
            _say(f"  {delta:+,}  {layer}")
    if threshold is not None:
        gone = sorted(set(old_layers) - set(new_layers))
        drifted = [
            (layer, old_layers.get(layer, 0), new_layers[layer])
            for layer in new_layers
            if _beyond(relative_error(new_layers[layer], old_layers.get(layer, 0)), threshold)
        ]
        if drifted:
            layer, old, new = max(drifted, key=lambda item: abs(item[2] - item[1]))
            reasons.append(
                f"{len(drifted):,} layer(s) changed by more than {threshold:.3g} (largest: {layer} "
                f"{old:,} -> {new:,} FLOPs per generation)"
            )
        if gone:
            reasons.append(f"{len(gone):,} layer(s) disappeared (first: {gone[0]})")
    return reasons


def _beyond(change: float | None, threshold: float) -> bool:
    """A relative change beyond ``threshold`` (None: from 0 to something)."""
    return change is None or change > threshold


def _diff_evidence(before: RunRecord, after: RunRecord, top: int, threshold: float | None) -> list[str]:
    changes = diff_runs(before, after)
    _say(f"before: {before.run_id} ({before.status}) {before.headline}")
    _say(f"after:  {after.run_id} ({after.status}) {after.headline}")
    moved = [s for s in changes.stages if s.before != s.after]
    _say(f"stages: {len(changes.stages)}, {len(moved)} changed result")
    for stage in moved:
        _say(f"  {stage.stage}: {stage.before} -> {stage.after}")
    both = len(before.checks) - len(changes.disappeared)
    _say(
        f"checks: {both:,} in both runs, {len(changes.appeared):,} appeared, {len(changes.disappeared):,} "
        f"disappeared; {len(changes.outcomes):,} changed outcome, {len(changes.values):,} values changed"
    )
    for change in changes.outcomes[:top]:
        _say(f"  {change.test}: {change.before} -> {change.after}")
    if changes.values:
        _say("largest value changes:")
    for value in changes.values[:top]:
        rel = "new non-zero" if value.rel_change is None else f"{value.rel_change:.3%}"
        _say(f"  {value.test} {value.metric} {value.side}: {value.before:,} -> {value.after:,} ({rel})")
    for label, tests in (("appeared", changes.appeared), ("disappeared", changes.disappeared)):
        for test in tests[:top]:
            _say(f"  {label}: {test}")
    return changes.drift(threshold) if threshold is not None else []


def cmd_list(registry: Registry) -> int:
    for name, reg in sorted(registry.models.items()):
        _say(f"{name}: {reg.description}")
        _say(f"  stages: {', '.join(f'{s.name} (tolerance {s.tolerance:g})' for s in reg.stages)}")
        _say(f"  workloads: {', '.join(reg.workloads)}")
        if reg.runtimes:
            _say(f"  runtimes: {', '.join(reg.runtimes)}")
    _say("GPUs: " + ", ".join(f"{g.name} ({'/'.join(g.tflops)})" for g in GPUS.values()))
    return 0


# -- entry point ------------------------------------------------------------------------------


def _parser(registry: Registry | None, command: str | None, model: str | None) -> _Parser:
    parser = _Parser(prog="flopcheck", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "-p",
        dest="plugins",
        action="append",
        default=[],
        metavar="PLUGIN",
        help="also load this model plugin (a module name or a .py file such as a conftest.py), "
        "before the command; repeatable",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (
        ("report", "write a sizing report for one workload"),
        ("sweep", "FLOPs per stage over a grid of workloads (CSV, JSON, plots)"),
    ):
        sub = commands.add_parser(name, help=text, description=text)
        sub.add_argument("model", metavar="MODEL", help="a registered model (see 'flopcheck list')")
        sub.add_argument(
            "--config",
            metavar="PATH",
            help="read the architecture from a checkpoint's config.json (or its folder), for models that can",
        )
        sub.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR", help=f"default {DEFAULT_OUTPUT}")
        if name == "report":
            sub.add_argument("--gpu", metavar="NAME", help=f"one of {', '.join(GPUS)} (default: all)")
            sub.add_argument(
                "--runtime",
                metavar="NAME",
                help="also size one of the model's runtimes (per-stage dtypes, devices, offload; "
                "see 'flopcheck list')",
            )
        else:
            sub.add_argument(
                "--gpu",
                metavar="NAME",
                help=f"add roofline seconds (and serving figures) on one of {', '.join(GPUS)}",
            )
        sub.add_argument("--precision", default="bf16", metavar="P", help=f"one of {', '.join(PRECISIONS)}")
        if name == "sweep":
            sub.add_argument(
                "--vary", action="append", default=[], metavar="FIELD=V1,V2", help="a swept field"
            )
            sub.add_argument(
                "--max-points",
                type=int,
                default=DEFAULT_MAX_POINTS,
                metavar="N",
                help=f"refuse grids of more than N workloads (default {DEFAULT_MAX_POINTS:,})",
            )
        if registry is not None and command == name and model in registry.models:
            _add_workload_arguments(sub, registry.models[model])
    diff = commands.add_parser(
        "diff",
        help="compare two reports (report.json) or two verification runs (evidence.json), layer by layer",
    )
    diff.add_argument("before", help="a report.json, an evidence.json, or a run folder holding one")
    diff.add_argument("after")
    diff.add_argument("--top", type=int, default=10, help="how many changes of each kind to list")
    diff.add_argument(
        "--fail-on",
        metavar="CHANGE",
        help="exit 1 when a value changed by more than CHANGE (0, 0.01 or 1%%), a check newly "
        "fails or a check disappeared",
    )
    commands.add_parser("list", help="registered models, their workloads, and the GPU table")
    prune = commands.add_parser(
        "prune", help="keep the newest runs under the output directory, remove the rest"
    )
    prune.add_argument(
        "--keep", type=int, required=True, metavar="N", help="how many of the newest runs to keep"
    )
    prune.add_argument("--output", default=DEFAULT_OUTPUT, metavar="DIR", help=f"default {DEFAULT_OUTPUT}")
    prune.add_argument("--dry-run", action="store_true", help="say what would be removed, remove nothing")
    return parser


def run(argv: Sequence[str]) -> int:
    # First find the command and model (help deferred), then parse with the model's options.
    help_asked = any(a in ("-h", "--help") for a in argv)
    try:
        first = _parser(None, None, None).parse_known_args([a for a in argv if a not in ("-h", "--help")])[0]
    except UsageError:
        if help_asked:
            _parser(None, None, None).parse_args(argv)
        raise
    if first.command == "diff":
        return cmd_diff(_parser(None, None, None).parse_args(argv))
    if first.command == "prune":
        return cmd_prune(_parser(None, None, None).parse_args(argv))
    if first.command == "list":
        _parser(None, None, None).parse_args(argv)  # unknown options are errors here too
        return cmd_list(_load_registry(first.plugins))
    registry = _load_registry(first.plugins)
    reg = _registration(registry, first.model)
    args = _parser(registry, first.command, first.model).parse_args(argv)
    return cmd_report(reg, args) if args.command == "report" else cmd_sweep(reg, args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except UsageError as exc:
        _say(f"flopcheck: error: {exc}", file=sys.stderr)
        return 2
    except ModelError as exc:  # the model's own code: not the user's input, so not exit 2
        _say(f"flopcheck: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _say("flopcheck: interrupted; nothing was written", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into head & co.: the files are written, stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
