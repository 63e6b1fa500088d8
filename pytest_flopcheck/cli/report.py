"""``flopcheck report``: one workload's sizing report (``report.json``, ``summary.md``,
``report.html``) and its terminal lines."""

from __future__ import annotations

import argparse

import attrs

from pytest_flopcheck import output
from pytest_flopcheck.cli.common import FLOAT_SAFE, UsageError, estimating, gpus, say, staged
from pytest_flopcheck.cli.workloads import workload_from_args
from pytest_flopcheck.model.parallel import SINGLE, Layout, LayoutError, read_layout
from pytest_flopcheck.model.registration import ModelRegistration
from pytest_flopcheck.sizing import plots
from pytest_flopcheck.sizing.build import build_report
from pytest_flopcheck.sizing.records import SizingReport
from pytest_flopcheck.sizing.render import report_html, report_markdown, terminal_lines
from pytest_flopcheck.text import shorten


def runtime_option(reg: ModelRegistration, args: argparse.Namespace) -> str | None:
    """``--runtime``, checked against the model's runtimes and ``--precision``."""
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


def layout_option(
    reg: ModelRegistration, workload: object, runtime: str | None, args: argparse.Namespace
) -> Layout:
    """``--gpus`` and ``--layout``: the runtime's layout for N GPUs, or the one given, checked as
    the model's implementation checks it."""
    count: str | None = args.gpus
    text: str | None = args.layout
    if count is None and text is None:
        return SINGLE
    option = "--gpus" if count is not None else "--layout"
    if count is not None and (not count.isdigit() or int(count) < 1 or len(count) > 4):
        raise UsageError(f"--gpus {shorten(count)} is not allowed: give a positive whole number of GPUs")
    if text is None and count is not None and int(count) == 1:
        return SINGLE
    if runtime is None:
        raise UsageError(
            f"{option} is not allowed without --runtime: a layout is part of how a pipeline is run"
        )
    if reg.parallel is None:
        raise UsageError(f"{option} is not allowed: model {reg.name!r} declares no multi-GPU model")
    spec = reg.runtimes[runtime]
    try:
        if text is not None:
            layout = read_layout(text, tuple(reg.parallel.fsdp_units))
        elif spec.layout is None:
            raise UsageError(f"--gpus {count} is not allowed: runtime {runtime} runs on one GPU only")
        else:
            layout = spec.layout(int(count or 1))
        if count is not None and layout.gpus != int(count):
            raise UsageError(
                f"--gpus {count} is not allowed with --layout {shorten(text or '')}: its degrees multiply "
                f"to {layout.gpus} GPUs"
            )
        reg.parallel.validate(workload, layout)
    except LayoutError as exc:
        raise UsageError(
            f"--layout is not allowed: {exc}" if text is not None else f"--gpus {count} is not allowed: {exc}"
        ) from None
    return layout


def cmd_report(reg: ModelRegistration, args: argparse.Namespace) -> int:
    workload = workload_from_args(reg, args)
    runtime = runtime_option(reg, args)
    layout = layout_option(reg, workload, runtime, args)
    chosen = gpus(args.gpu, args.precision)
    if runtime is not None and args.gpu is not None:
        runs = reg.checked_runs(workload)
        spec = reg.runtimes[runtime]
        needed = {
            sr.compute: stage for stage, sr in spec.stages.items() if sr.device == "gpu" and runs[stage]
        }
        missing = sorted(set(needed) - set(chosen[0].tflops))
        if missing:
            raise UsageError(
                f"--runtime {runtime} is not allowed with --gpu {chosen[0].name}: its stage "
                f"{needed[missing[0]]} computes in {missing[0]}, for which {chosen[0].name} has no tensor "
                f"cores (it has {', '.join(chosen[0].tflops)})"
            )
    run_id = output.new_run_id()
    with estimating(workload):
        report = build_report(
            reg,
            workload,
            run_id=run_id,
            created_utc=output.utc_now(),
            gpus=chosen,
            precision=args.precision,
            runtime=runtime,
            layout=layout,
        )
        figures, report = report_figures(report)
        base = f"static_analysis/{reg.name}"
        files = {
            f"{base}/report.json": output.dumps(report.to_json()),
            f"{base}/summary.md": report_markdown(report),
            f"{base}/report.html": report_html(report, figures),
        }
    with staged(args, run_id) as run:
        for relative, text in files.items():
            run.write(relative, text)
    for line in terminal_lines(report):
        say(line)
    say(f"report: {run.final / base}")
    return 0


def report_figures(report: SizingReport) -> tuple[dict[str, str], SizingReport]:
    """The report's plots (title -> base64 PNG), and the report with a warning when matplotlib
    is missing."""
    if report.totals.flops > FLOAT_SAFE:
        raise OverflowError("too large to plot")
    if not plots.available():
        warned = attrs.evolve(
            report, warnings=(*report.warnings, "matplotlib is not installed: report.html has no plots")
        )
        return {}, warned
    return plots.report_plots(report), report
