"""``flopcheck inspect``: what the reference counter and the memory tracker see when they run a
stage's real module, before any analytic model exists, so that a model author starts from it:
the module tree with each module's counted FLOPs, parameters and I/O bytes, the compute ops that
ran without a FLOP formula, and the tensors live at the measured peak (the op and module that set
it; each tensor's shape, dtype, bytes and the op and module that made it)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from pytest_flopcheck import output
from pytest_flopcheck.analytic.tree import live_path, live_peak
from pytest_flopcheck.cli.common import UsageError, say, staged
from pytest_flopcheck.cli.workloads import workload_from_args
from pytest_flopcheck.model.parallel import Layout, LayoutError, fsdp2_live_peak, read_layout
from pytest_flopcheck.model.registration import ModelRegistration
from pytest_flopcheck.reference.counting import (
    DEVICES,
    ModuleCount,
    ReferenceCounts,
    ReferenceSkipped,
    count_reference,
)
from pytest_flopcheck.reference.parallel import fake_process_group
from pytest_flopcheck.text import md, shorten
from pytest_flopcheck.verification.evaluation import unmeasured_dtype


def cmd_inspect(reg: ModelRegistration, args: argparse.Namespace) -> int:
    names = [s.name for s in reg.stages]
    if args.stage not in names:
        raise UsageError(f"--stage {shorten(args.stage)} is not allowed: choose one of {', '.join(names)}")
    if args.device not in DEVICES:
        raise UsageError(
            f"--device {shorten(args.device)} is not allowed: choose one of {', '.join(DEVICES)}"
        )
    if args.depth is not None and args.depth < 0:
        raise UsageError(f"--depth {args.depth} is not allowed: it must be 0 or more")
    if reg.reference is None:
        raise UsageError(f"model {reg.name!r} registers no reference: there is nothing to inspect")
    workload = workload_from_args(reg, args)
    layout = _layout(reg, workload, args)
    stage = args.stage if layout is None else f"{args.stage}@{layout.slug}"
    try:
        if layout is None:
            call = reg.reference(workload, args.stage, args.device)
            counts = count_reference(call, args.device, reg.op_policy)
        else:
            assert reg.parallel is not None
            assert reg.parallel.reference is not None
            with fake_process_group(layout.gpus):
                call = reg.parallel.reference(workload, args.stage, layout, args.device)
                counts = count_reference(call, args.device, reg.op_policy)
    except ReferenceSkipped as skipped:
        raise UsageError(
            f"the reference of {reg.name}/{args.stage} cannot run here: {skipped.reason}"
        ) from None
    except ImportError as exc:
        raise UsageError(
            f"the reference of {reg.name}/{args.stage} needs a package that is not installed: {exc}"
        ) from None
    classes = {name: type(module).__name__ for name, module in call.module.named_modules()}
    text = inspect_text(reg.name, stage, counts, classes, args.depth)
    if layout is not None:
        root = counts.modules[""]
        text.insert(
            1,
            f"rank 0 of {layout.gpus} GPUs ({layout.name}) on a fake process group: {root.collectives:,} "
            f"collective{'' if root.collectives == 1 else 's'} handing over {root.collective_bytes:,} bytes; "
            "the weights are this rank's",
        )
    text.append(model_peak(reg, workload, args.stage, layout, counts))
    run_id = output.new_run_id()
    base = f"inspect/{reg.name}"
    with staged(args, run_id) as run:
        run.write(f"{base}/{stage}.md", inspect_markdown(reg.name, stage, counts, classes))
        run.write(f"{base}/{stage}.json", json.dumps(inspect_json(counts, classes), indent=1) + "\n")
    for line in text:
        say(line)
    say(f"inspect: {run.final / base}")
    return 0


def _layout(reg: ModelRegistration, workload: object, args: argparse.Namespace) -> Layout | None:
    """``--layout``: rank 0 of that layout, as the model's parallel reference runs it."""
    text: str | None = args.layout
    if text is None:
        return None
    if reg.parallel is None or reg.parallel.reference is None:
        raise UsageError(
            f"--layout is not allowed: model {reg.name!r} registers no parallel reference to run"
        )
    try:
        layout = read_layout(text, tuple(reg.parallel.fsdp_units))
        reg.parallel.validate(workload, layout)
    except LayoutError as exc:
        raise UsageError(f"--layout is not allowed: {exc}") from None
    if layout.gpus == 1:
        raise UsageError(f"--layout {shorten(text)} is not allowed: it runs on one GPU (leave it out)")
    return layout


def model_peak(
    reg: ModelRegistration, workload: object, stage: str, layout: Layout | None, counts: ReferenceCounts
) -> str:
    """The model's live peak beyond the weights beside the measured one, as ``test_memory``
    compares them, and whether a check holds it."""
    if reg.analytic is None:
        return "no analytic model yet: nothing to compare the live peak with"
    if layout is None:
        tree = reg.tree(workload, stage)
    else:
        assert reg.parallel is not None
        tree = reg.parallel.sharded_tree(workload, stage, layout)
    sized = unmeasured_dtype(workload, counts)
    if sized is not None:
        return (
            f"the model's live peak is not compared: the reference ran in {counts.dtype or 'another dtype'}, "
            f"the model sizes {sized}"
        )
    live, measured = live_peak(tree), counts.peak_bytes - counts.weight_bytes
    gathered, where = "", live_path(tree)[-1].id or "(stage)"
    if layout is not None and stage in layout.fsdp:  # as test_parallel compares it
        assert reg.parallel is not None
        peak, extra = fsdp2_live_peak(tree, reg.parallel.fsdp_units.get(stage, ""))
        if peak - extra != live:  # the moment a unit's gathered weights are copied out
            where = "an FSDP2 unit's copy-out"
        live, gathered = peak, f" (with {extra:,} bytes of weights FSDP2 holds gathered then)"
    error = f" ({(live - measured) / measured:+.1%})" if measured else ""
    tolerance = reg.stage(stage).memory_tolerance
    if tolerance is None:
        held = "not checked"
    elif layout is None:
        held = f"test_memory holds it within {tolerance:.0%}"
    else:
        held = _held_under(reg, stage, layout, tolerance)
    return (
        f"the model's live peak beyond the weights: {live:,} bytes at {where}"
        f"{gathered}, "
        f"measured {measured:,}{error}; {held}"
    )


def _depth(name: str) -> int:
    return 0 if not name else name.count(".") + 1


def _rows(
    counts: ReferenceCounts, classes: dict[str, str], depth: int | None
) -> list[tuple[str, str, ModuleCount, int]]:
    rows = []
    for name, count in counts.modules.items():
        if depth is not None and _depth(name) > depth:
            continue
        io = sum(count.io_ops.values())
        rows.append((name, classes.get(name, "?"), count, io))
    return rows


def inspect_text(
    model: str, stage: str, counts: ReferenceCounts, classes: dict[str, str], depth: int | None
) -> list[str]:
    """The terminal lines: the module tree, the uncounted ops, the live tensors at the peak."""
    lines = [
        f"{model}/{stage} on {counts.device} ({counts.dtype}): {counts.total_flops:,} FLOPs, "
        f"{counts.total_params:,} parameters ({counts.weight_bytes:,} bytes of weights)",
        f"{'FLOPs':>22} {'own FLOPs':>22} {'params':>15} {'counted-op I/O':>17} {'other I/O':>17}  module",
    ]
    for name, cls, count, io in _rows(counts, classes, depth):
        indent = "  " * _depth(name)
        label = f"{indent}{name.rpartition('.')[2] or '(root)'} ({cls})"
        figures = (
            f"{count.flops:>22,} {count.own_flops:>22,} {count.params:>15,} {io:>17,} {count.other_io:>17,}"
        )
        lines.append(f"{figures}  {label}")
    if counts.uncounted_ops:
        lines.append("compute ops that ran with no FLOP formula (counted as 0):")
        lines += [f"  {op}: {n:,} call(s)" for op, n in counts.uncounted_ops.items()]
    else:
        lines.append("every compute op that ran has a FLOP formula")
    lines += _peak_lines(counts)
    return lines


def _peak_lines(counts: ReferenceCounts) -> list[str]:
    beyond = counts.peak_bytes - counts.baseline_bytes
    lines = [
        f"live peak: {counts.peak_bytes:,} bytes ({counts.weight_bytes:,} weights, "
        f"{counts.baseline_bytes - counts.weight_bytes:,} buffers and inputs, {beyond:,} made by the call), "
        f"set by {counts.peak_op or '(start)'} in {counts.peak_module or '(root)'}",
        f"tensors the call made, live at the peak ({len(counts.peak_tensors)}, largest first):",
    ]
    for t in counts.peak_tensors:
        lines.append(f"  {t.bytes:>16,}  {t.dtype:<9} {list(t.shape)!s:<28} {t.op} in {t.module or '(root)'}")
    return lines


def inspect_markdown(model: str, stage: str, counts: ReferenceCounts, classes: dict[str, str]) -> str:
    """The same as Markdown (every name escaped)."""
    out = [
        f"# {md(model)}/{md(stage)} as the reference runs it",
        "",
        f"Device {md(counts.device)}, dtype {md(counts.dtype)}: {counts.total_flops:,} FLOPs, "
        f"{counts.total_params:,} parameters.",
        "",
        "| module | class | FLOPs | own FLOPs | params | counted-op I/O bytes | other I/O bytes |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, cls, count, io in _rows(counts, classes, None):
        out.append(
            f"| {md(name or '(root)')} | {md(cls)} | {count.flops:,} | {count.own_flops:,} | "
            f"{count.params:,} | {io:,} | {count.other_io:,} |"
        )
    out += ["", "## Uncounted compute ops", ""]
    out += [f"- {md(op)}: {n:,}" for op, n in counts.uncounted_ops.items()] or ["none"]
    out += ["", "## Live at the peak", ""] + [md(line.strip()) for line in _peak_lines(counts)[:1]]
    out += ["", "| bytes | dtype | shape | made by | in module |", "|---:|---|---|---|---|"]
    out += [
        f"| {t.bytes:,} | {md(t.dtype)} | {md(list(t.shape))} | {md(t.op)} | {md(t.module or '(root)')} |"
        for t in counts.peak_tensors
    ]
    return "\n".join(out) + "\n"


def inspect_json(counts: ReferenceCounts, classes: dict[str, str]) -> dict[str, Any]:
    document = counts.to_json()
    document["classes"] = classes
    return document


def _held_under(reg: ModelRegistration, stage: str, layout: Layout, tolerance: float) -> str:
    """Whether ``test_parallel`` holds the live peak under ``layout``: where it checks that
    layout (under FSDP with the weights FSDP2 holds gathered)."""
    assert reg.parallel is not None
    checked = [f"{by.slug} (at {workload})" for workload, st, by in reg.parallel.checks if st == stage]
    at = [workload for workload, st, by in reg.parallel.checks if st == stage and by.slug == layout.slug]
    if at:  # at the check's own workload, as every check holds the model's formulas
        return f"test_parallel holds it within {tolerance:.0%} under {layout.slug} (at {', '.join(at)})"
    if not checked:
        return "not checked under a layout"
    where = ", ".join(checked)
    return f"not checked under {layout.slug} (test_parallel holds it within {tolerance:.0%} under {where})"
