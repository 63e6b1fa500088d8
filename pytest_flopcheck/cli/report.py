"""``flopcheck report``: one workload's sizing report (``report.json``, ``summary.md``,
``report.html``) and its terminal lines."""

from __future__ import annotations

import argparse

import attrs

from pytest_flopcheck import output
from pytest_flopcheck.cli.common import FLOAT_SAFE, UsageError, estimating, gpus, say, staged
from pytest_flopcheck.cli.workloads import workload_from_args
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


def cmd_report(reg: ModelRegistration, args: argparse.Namespace) -> int:
    workload = workload_from_args(reg, args)
    runtime = runtime_option(reg, args)
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
