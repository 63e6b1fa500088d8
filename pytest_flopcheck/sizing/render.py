"""A :class:`~pytest_flopcheck.sizing.records.SizingReport` as people read it: Markdown
(``summary.md``), a self-contained HTML page with plots (``report.html``) and the terminal
lines of ``flopcheck report``. Everything a plugin wrote (names, descriptions, notes) is shown
literally: escaped in Markdown and HTML, control characters escaped on the terminal."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence

from pytest_flopcheck.sizing.records import (
    CollectiveUse,
    Constant,
    GpuTime,
    RuntimeFigures,
    RuntimeStage,
    SizingReport,
)
from pytest_flopcheck.sizing.timing import PARTS, TimeParts
from pytest_flopcheck.text import md

Table = tuple[list[str], list[list[str]]]


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


def _count(n: int, unit: str) -> str:
    return f"{n:,} {unit}" + ("" if n == 1 else "s")


# -- tables shared by the Markdown and the HTML ----------------------------------------------------

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


def _stage_rows(report: SizingReport) -> list[list[str]]:
    rows = []
    for stage in report.stages:
        memory = report.memory.stage(stage.name)
        rows.append(
            [
                stage.name,
                f"{stage.per_run.flops:,}",
                str(stage.runs_per_generation),
                f"{stage.per_generation.flops:,}",
                percent(stage.flops_share),
                human(memory.params),
                human(memory.weight_bytes, "B"),
                human(memory.working_bytes, "B") + ("" if memory.working_bytes_verified else " (unchecked)"),
                human(memory.cache_bytes, "B"),
            ]
        )
    total = report.totals
    rows.append(
        [
            "**end to end**",
            "",
            "",
            f"{total.flops:,}",
            "100%",
            human(total.params),
            human(total.weight_bytes, "B"),
            "",
            "",
        ]
    )
    return rows


def _parts_cells(parts: TimeParts) -> list[str]:
    return [seconds(getattr(parts, name)) for name in PARTS]


PART_HEADER = ["compute", "attention", "memory-bound", "communication", "launch", "transfer"]


def _time_rows(report: SizingReport) -> Table:
    pipeline = report.memory.pipeline

    def fits(e: GpuTime) -> str:
        capacity = e.memory_gb * 1e9
        if pipeline.peak_bytes_all_weights_resident <= capacity:
            return "all weights resident"
        if pipeline.peak_bytes_one_stage_resident <= capacity:
            return "one stage at a time"
        return "no"

    running = report.running
    header = ["GPU", *running, "total", *PART_HEADER[:-1], "fits in memory"]
    rows = [
        [
            e.gpu,
            *(seconds(e.stage(n).per_generation_s) for n in running),
            seconds(e.total_s),
            *_parts_cells(e.parts)[:-1],
            fits(e),
        ]
        for e in report.time.estimates
    ]
    return header, rows


def _constant_cell(constant: Constant) -> str:
    if constant.name.startswith("launch_s") or constant.name.endswith("_s"):
        text = f"{constant.value * 1e6:.2f} µs"
    elif constant.name.endswith("_gbs"):
        text = f"{constant.value:.1f} GB/s"
    else:
        text = f"{constant.value:.1%}"
    return text + (" (assumed)" if constant.assumed else "")


def _constant_label(name: str) -> str:
    """A column label for a constant's JSON name: ``gemm_efficiency_bf16`` is "matmul efficiency
    (bf16)", ``host_to_gpu_gbs`` "host → GPU"."""
    fixed = {
        "bandwidth_efficiency": "bandwidth efficiency",
        "host_to_gpu_gbs": "host → GPU",
        "gpu_to_host_gbs": "GPU → host",
        "link_efficiency": "GPU-to-GPU link efficiency",
        "collective_latency_s": "latency per collective",
    }
    if name in fixed:
        return fixed[name]
    for prefix, label in (
        ("gemm_efficiency_", "matmul efficiency"),
        ("attention_efficiency_", "attention"),
        ("launch_s_", "launch"),
    ):
        if name.startswith(prefix):
            return f"{label} ({name.removeprefix(prefix)})"
    return name.replace("_", " ")


def constants_table(estimates: Sequence[GpuTime]) -> tuple[Table, list[str]]:
    """The time model's constants per GPU, and their sources (each once, numbered)."""
    if not estimates:
        return ([], []), []
    names = [c.name for c in estimates[0].constants]
    sources: list[str] = []
    rows = []
    for e in estimates:
        row = [e.gpu]
        for c in e.constants:
            if c.source not in sources:
                sources.append(c.source)
            row.append(f"{_constant_cell(c)} [{sources.index(c.source) + 1}]")
        rows.append(row)
    header = ["GPU", *(_constant_label(n) for n in names)]
    return (header, rows), [f"[{i}] {source}" for i, source in enumerate(sources, 1)]


def _traffic_note(report: SizingReport) -> str:
    estimates = report.time.estimates
    if not estimates:
        return ""
    first_order = [s.name for s in estimates[0].stages if not s.traffic_modelled and s.name in report.running]
    if not first_order:
        return "Elementwise traffic of every stage is the model's prediction, verified by test_traffic."
    return (
        "Elementwise traffic is the model's verified prediction except in "
        + ", ".join(first_order)
        + " (a first-order estimate there: each layer without FLOPs reads and writes its tensors once; "
        "their elementwise ops inside layers with FLOPs are not counted)."
    )


def _serving_rows(report: SizingReport) -> Table:
    serving = report.serving
    assert serving is not None
    header = [
        "GPU",
        "time to first token",
        "per output token",
        "generation",
        f"{serving.unit}s/s",
        "tokens/s",
    ]
    rows = [
        [
            e.gpu,
            seconds(e.time_to_first_token_s),
            seconds(e.time_per_output_token_s),
            seconds(e.generation_s),
            f"{e.units_per_s:,.2f}",
            f"{e.output_tokens_per_s:,.0f}",
        ]
        for e in serving.estimates
    ]
    return header, rows


def _kv_rows(report: SizingReport) -> Table:
    serving = report.serving
    assert serving is not None
    marks = {serving.context_after_first_token: "after the first token", serving.final_context: "last step"}
    together = _all_gpus(report)
    header = [
        f"tokens per {serving.unit}",
        f"KV cache, {_count(serving.sequences, serving.unit)}{', ' + together if together else ''}",
        "",
    ]
    rows = [
        [f"{row.tokens:,}", human(row.bytes, "B"), marks.get(row.tokens, "")] for row in serving.kv_by_length
    ]
    return header, rows


def _runtime_tables(report: SizingReport) -> tuple[Table, Table]:
    runtime = report.runtime
    assert runtime is not None
    parallel = runtime.layout.gpus > 1
    stage_rows = [
        [
            s.name,
            s.weights + (" (autocast)" if s.autocast else ""),
            s.compute,
            s.device,
            (s.placement + (", FSDP shard" if s.sharded else "")) if s.device == "gpu" else "–",
            *(
                [
                    _split_cell(s),
                    str(s.runs_per_generation),
                    human(s.flops, "FLOP"),
                    human(s.collective_bytes, "B"),
                ]
                if parallel
                else []
            ),
            human(s.weight_bytes, "B"),
            human(s.working_bytes, "B"),
            human(s.gpu_bytes_while_running, "B") if s.gpu_bytes_while_running else "–",
        ]
        for s in runtime.stages
        if s.runs_per_generation
    ]
    stage_header = [
        "stage",
        "weights",
        "compute",
        "device",
        "placement",
        *(
            ["split (test_parallel)", "runs on this GPU", "FLOPs per run", "collectives per run"]
            if parallel
            else []
        ),
        "weight memory",
        "working set",
        "GPU holds while running",
    ]
    on_gpu = [s.name for s in runtime.stages if s.gpu_bytes_while_running]
    gpu_rows = [
        [
            e.gpu,
            *(seconds(e.stage(n).per_generation_s) for n in on_gpu),
            seconds(e.transfer_s),
            seconds(e.seconds),
            *_parts_cells(e.parts)[:-1],
            "yes" if e.fits else f"no ({e.memory_gb:g} GB)",
        ]
        for e in runtime.estimates
    ]
    gpu_header = ["GPU", *on_gpu, "host-GPU moves", "end to end", *PART_HEADER[:-1], "fits"]
    return (stage_header, stage_rows), (gpu_header, gpu_rows)


def _runtime_intro(report: SizingReport) -> str:
    runtime = report.runtime
    assert runtime is not None
    text = f"{runtime.description}. Attention: {runtime.attention}; launches: {runtime.launch}. "
    if runtime.layout.gpus > 1:
        text += (
            f"On {runtime.layout.gpus} GPUs, layout {runtime.layout.name}: every figure below is one GPU's "
            "(rank 0's). The most one GPU holds is "
        )
    else:
        text += "The GPU holds at most "
    text += human(runtime.peak_gpu_bytes, "B")
    text += f", while {runtime.set_by} runs." if runtime.set_by else "."
    if runtime.moves:
        moved = sum(m.bytes for m in runtime.moves)
        text += f" Host-GPU moves per generation: {len(runtime.moves)} ({human(moved, 'B')})."
    if runtime.not_timed:
        text += f" On the CPU, not timed: {', '.join(runtime.not_timed)}."
    if runtime.layout.gpus > 1:
        text += " Layout: " + _layout_checks(runtime)
        used = [s for s in runtime.stages if s.runs_per_generation and s.collectives]
        if used:
            text += (
                " Collectives per run on this GPU: "
                + "; ".join(f"{s.name} " + ", ".join(_collective(c) for c in s.collectives) for s in used)
                + "."
            )
    if runtime.not_supported:
        text += (
            " Not estimated: "
            + ", ".join(f"{u.gpu} (no {'/'.join(u.missing)} tensor cores)" for u in runtime.not_supported)
            + "."
        )
    return text


def _serving_intro(report: SizingReport) -> str:
    serving = report.serving
    assert serving is not None
    together = _all_gpus(report)
    return (
        f"{_count(serving.sequences, serving.unit)} per batch, "
        f"{serving.new_tokens:,} new tokens each; "
        f"first token after {' + '.join(serving.first_token_stages)}, then one "
        f"{serving.per_token_stage} step per token. KV cache: "
        f"{serving.kv_bytes_per_token_per_sequence:,} bytes per token per {serving.unit} "
        f"({report.memory.dtype})"
        + (f", {together}: the runtime section gives one GPU's memory." if together else ".")
    )


def _all_gpus(report: SizingReport) -> str:
    """How a multi-GPU report's serving figures are counted: the batch's KV cache is held by
    every GPU together, not by one."""
    gpus = report.runtime.layout.gpus if report.runtime is not None else 1
    return f"the {gpus} GPUs together" if gpus > 1 else ""


def _set_by(stage: str | None) -> str:
    return f", set by {stage}" if stage else ""


def _top_layer_rows(report: SizingReport, flops: bool) -> list[list[str]]:
    return [
        [
            str(i),
            t.stage,
            t.id,
            t.category,
            f"{t.flops_per_generation:,}" if flops else human(t.flops_per_generation, "FLOP"),
            percent(t.share),
        ]
        for i, t in enumerate(report.top_layers, 1)
    ]


def _top_category_rows(report: SizingReport, flops: bool) -> list[list[str]]:
    return [
        [
            str(i),
            c.category,
            f"{c.flops_per_generation:,}" if flops else human(c.flops_per_generation, "FLOP"),
            percent(c.share),
        ]
        for i, c in enumerate(report.top_categories, 1)
    ]


# -- Markdown ------------------------------------------------------------------------------------------


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


def report_markdown(report: SizingReport) -> str:
    """The report as Markdown for people."""
    model = report.model
    lines = [
        f"# {model.name} sizing report",
        "",
        md(model.description),
        "",
        "Workload: " + md(", ".join(f"{k}={v}" for k, v in report.workload.items())),
        "",
    ]
    if report.warnings:
        lines += ["## Warnings", ""] + [f"- {md(w)}" for w in report.warnings] + [""]
    lines += ["## Stages", "", *_md_table(STAGE_HEADER, _stage_rows(report)), ""]
    time = report.time
    lines += [f"## Time per generation ({time.precision}, {time.attention} attention, {time.launch})", ""]
    lines += _md_table(*_time_rows(report))
    lines += ["", time.caveat, "", _traffic_note(report), ""]
    if time.not_supported is not None:
        lines += [f"Not shown ({time.not_supported.reason}): {', '.join(time.not_supported.gpus)}.", ""]
    (ch, cr), sources = constants_table(time.estimates)
    if cr:
        lines += [
            "### Time model constants",
            "",
            *_md_table(ch, cr),
            "",
            *(f"- {md(x)}" for x in sources),
            "",
        ]
    if report.serving is not None:
        lines += ["## Serving", "", md(_serving_intro(report)), ""]
        lines += _md_table(*_serving_rows(report))
        lines += ["", *_md_table(*_kv_rows(report)), "", report.serving.caveat, ""]
    if report.runtime is not None:
        (sh, sr), (gh, gr) = _runtime_tables(report)
        lines += [f"## Runtime: {md(report.runtime.name)}", "", md(_runtime_intro(report)), ""]
        lines += [*_md_table(sh, sr), "", *_md_table(gh, gr), ""]
        lines += [f"- {md(note)}" for note in report.runtime.notes] + [f"- {report.runtime.note}", ""]
    memory = report.memory
    pipeline = memory.pipeline
    lines += [
        "## Memory",
        "",
        f"- weights of the stages that run ({memory.dtype}): {human(pipeline.weight_bytes, 'B')}",
        f"- peak with all weights resident: {human(pipeline.peak_bytes_all_weights_resident, 'B')}"
        f"{_set_by(pipeline.peak_stage_all_weights_resident)}",
        f"- peak with one stage resident at a time: {human(pipeline.peak_bytes_one_stage_resident, 'B')}"
        f"{_set_by(pipeline.peak_stage_one_stage_resident)}",
        f"- {memory.note}",
        "",
        "## Top layers by FLOPs per generation",
        "",
    ]
    lines += _md_table(["#", "stage", "layer", "category", "FLOPs", "share"], _top_layer_rows(report, True))
    lines += ["", "## Top categories", ""]
    lines += _md_table(["#", "category", "FLOPs", "share"], _top_category_rows(report, True))
    lines += ["", "## Not modeled", ""] + [f"- {md(item)}" for item in report.not_modeled]
    lines += ["", "## Convention", "", report.convention, ""]
    return "\n".join(lines)


# -- HTML ----------------------------------------------------------------------------------------------


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


def report_html(report: SizingReport, plots: Mapping[str, str]) -> str:
    """A self-contained page: tables, and plots embedded as base64 PNGs (``plots``: title -> data)."""
    esc = html.escape
    model = report.model
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(model.name)} sizing report</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{esc(model.name)} sizing report</h1><p>{esc(model.description)}</p>",
        "<p class='workload'>"
        + "".join(f"<code>{esc(k)}={esc(str(v))}</code>" for k, v in report.workload.items())
        + "</p>",
    ]
    parts += [f"<div class='warn'>{esc(w)}</div>" for w in report.warnings]
    parts += ["<h2>Stages</h2>", _html_table(STAGE_HEADER, _stage_rows(report))]
    time = report.time
    (ch, cr), sources = constants_table(time.estimates)
    parts += [
        f"<h2>Time per generation ({esc(time.precision)}, {esc(time.attention)} attention, "
        f"{esc(time.launch)})</h2>",
        "<div class='top'>" + _html_table(*_time_rows(report)) + "</div>",
        f"<p class='note'>{esc(time.caveat)} {esc(_traffic_note(report))}</p>",
    ]
    if cr:
        parts += [
            "<h3>Time model constants</h3><div class='top'>" + _html_table(ch, cr) + "</div>",
            "<ol class='note'>" + "".join(f"<li>{esc(x.split('] ', 1)[1])}</li>" for x in sources) + "</ol>",
        ]
    for title, data in plots.items():
        parts.append(f"<img alt='{esc(title)}' src='data:image/png;base64,{data}'>")
    if report.runtime is not None:
        (sh, sr), (gh, gr) = _runtime_tables(report)
        parts += [
            f"<h2>Runtime: {esc(report.runtime.name)}</h2>",
            f"<p>{esc(_runtime_intro(report))}</p>",
            "<div class='top'>" + _html_table(sh, sr) + "</div>",
            "<div class='top'>" + _html_table(gh, gr) + "</div>",
            "<ul class='note'>"
            + "".join(f"<li>{esc(n)}</li>" for n in (*report.runtime.notes, report.runtime.note))
            + "</ul>",
        ]
    if report.serving is not None:
        parts += [
            "<h2>Serving</h2>",
            f"<p>{esc(_serving_intro(report))}</p>",
            "<div class='top'>" + _html_table(*_serving_rows(report)) + "</div>",
            "<div class='top'>" + _html_table(*_kv_rows(report)) + "</div>",
            f"<p class='note'>{esc(report.serving.caveat)}</p>",
        ]
    memory = report.memory
    pipeline = memory.pipeline
    parts += [
        "<h2>Memory</h2><ul>",
        f"<li>weights of the stages that run ({esc(str(memory.dtype))}): "
        f"{human(pipeline.weight_bytes, 'B')}</li>",
        f"<li>peak with all weights resident: {human(pipeline.peak_bytes_all_weights_resident, 'B')}"
        f"{esc(_set_by(pipeline.peak_stage_all_weights_resident))}</li>",
        "<li>peak with one stage resident at a time: "
        f"{human(pipeline.peak_bytes_one_stage_resident, 'B')}"
        f"{esc(_set_by(pipeline.peak_stage_one_stage_resident))}</li>",
        f"</ul><p class='note'>{esc(memory.note)}</p>",
        "<h2>Top layers by FLOPs per generation</h2><div class='top'>",
        _html_table(["#", "stage", "layer", "category", "FLOPs", "share"], _top_layer_rows(report, False)),
        "</div><h2>Top categories</h2><div class='top'>",
        _html_table(["#", "category", "FLOPs", "share"], _top_category_rows(report, False)),
        "</div><h2>Not modeled</h2><ul>",
        *(f"<li>{esc(item)}</li>" for item in report.not_modeled),
        f"</ul><h2>Convention</h2><p class='note'>{esc(report.convention)}</p>",
        f"<p class='note'>run {esc(report.run_id)} · {esc(report.created_utc)}</p></body></html>",
    ]
    return "".join(parts)


# -- terminal ------------------------------------------------------------------------------------------


def terminal_lines(report: SizingReport) -> list[str]:
    """What ``flopcheck report`` prints: warnings, FLOPs per stage, and seconds per GPU (the
    runtime's, when one was asked for)."""
    lines = [f"warning: {warning}" for warning in report.warnings]
    width = max([16, *(len(s.name) for s in report.stages)])
    for stage in report.stages:
        runs = stage.runs_per_generation
        lines.append(
            f"{stage.name:>{width}}: {stage.per_generation.flops:>30,} FLOPs per generation "
            f"({runs} run{'s' if runs != 1 else ''}, {percent(stage.flops_share)})"
        )
    lines.append(f"{'end to end':>{width}}: {report.totals.flops:>30,} FLOPs")
    runtime = report.runtime
    if runtime is None:
        for estimate in report.time.estimates:
            lines.append(
                f"{estimate.gpu:>{width}}: {seconds(estimate.total_s)} per generation "
                f"({report.time.precision}; {_breakdown(estimate.parts)})"
            )
        return lines
    layout = runtime.layout
    where = "the GPU holds" if layout.gpus == 1 else f"on {layout.gpus} GPUs ({layout.name}) each holds"
    lines.append(
        f"{'runtime':>{width}}: {runtime.name}; {where} at most {human(runtime.peak_gpu_bytes, 'B')}"
        + (f" (while {runtime.set_by} runs)" if runtime.set_by else "")
    )
    for gpu in runtime.estimates:
        fits = "fits" if gpu.fits else f"does not fit in {gpu.memory_gb:g} GB"
        share = (
            f"; communication {gpu.parts.communication / gpu.seconds:.1%} of it"
            if layout.gpus > 1 and gpu.seconds
            else ""
        )
        lines.append(
            f"{gpu.gpu:>{width}}: {seconds(gpu.seconds)} per generation end to end "
            f"({_breakdown(gpu.parts)}; {fits}{share})"
        )
    for missing in runtime.not_supported:
        lines.append(f"{missing.gpu:>{width}}: not estimated (no {'/'.join(missing.missing)} tensor cores)")
    if runtime.not_timed:
        lines.append(f"{'not timed':>{width}}: {', '.join(runtime.not_timed)} (on the CPU)")
    if layout.gpus > 1:
        lines.append(f"{'layout':>{width}}: {_layout_checks(runtime)}")
    return lines


def _collective(use: CollectiveUse) -> str:
    """``160 all_to_all over 8 GPUs (3.10 GB)``."""
    return f"{use.calls:,} {use.kind} over {use.group} GPUs ({human(use.bytes, 'B')})"


def _verdict(stage: RuntimeStage) -> str:
    """Whether a check verifies how the layout splits ``stage``."""
    return f"checked as {stage.checked_as}" if stage.checked_as else "not checked"


def _split_cell(stage: RuntimeStage) -> str:
    return f"{stage.split} ({_verdict(stage)})" if stage.split else "–"


def _layout_checks(runtime: RuntimeFigures) -> str:
    """How the layout splits each stage and whether ``test_parallel`` verifies that split."""
    splits = [
        f"{s.name} by {s.split}, {_verdict(s)}" for s in runtime.stages if s.runs_per_generation and s.split
    ]
    if not splits:
        return "it splits no stage (each GPU runs the one-GPU model on its share)."
    fsdp = "; FSDP's as FSDP2 runs it" if any(s.sharded for s in runtime.stages) else ""
    return (
        "; ".join(splits) + " (test_parallel: per-GPU FLOPs, collectives and live set against the real "
        f"parallel code at its own workload{fsdp})."
    )


def _breakdown(parts: TimeParts) -> str:
    shown = [(label, getattr(parts, name)) for label, name in zip(PART_HEADER, PARTS, strict=True)]
    return ", ".join(f"{label} {seconds(value)}" for label, value in shown if value)
