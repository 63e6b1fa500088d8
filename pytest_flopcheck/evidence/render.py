"""Evidence of a verification run for people, rendered from its
:class:`~pytest_flopcheck.evidence.record.RunRecord`: ``summary.md``, the flopcheck section of
the pytest-html report, and the lines of pytest's terminal summary."""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from pytest_flopcheck.evidence.record import RunRecord, StageSummary
from pytest_flopcheck.text import md, one_line

MAX_LISTED = 20
"""Failures and errors listed by name in the summaries (all of them are in evidence.json)."""


# -- formatting -------------------------------------------------------------------------------


def fmt_error(error: float | None) -> str:
    return "∞" if error is None else f"{error:.2e}"


def fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def _git(env: Mapping[str, Any]) -> str:
    sha = env.get("git_sha") or "unknown"
    return f"{sha[:12]}" + (" (dirty)" if env.get("git_dirty") else "")


def _outcome_cells(outcomes: Mapping[str, int]) -> str:
    return (
        ", ".join(f"{n:,} {'errors' if o == 'error' and n != 1 else o}" for o, n in outcomes.items() if n)
        or "–"
    )


def _worst(row: StageSummary) -> str:
    """The stage's largest relative error of FLOPs, parameters and layer I/O (its memory apart),
    or a dash when it compared nothing."""
    return fmt_error(row.max_rel_error) if row.comparisons else "–"


def _memory(row: StageSummary) -> str:
    """The error of the live peak beyond the weights against its tolerance, or a dash when it
    was not compared."""
    if row.memory_tolerance is None:
        return "–"
    return f"{fmt_error(row.memory_rel_error)} (≤ {row.memory_tolerance:.0%})"


def _traffic(row: StageSummary) -> str:
    """Layers whose elementwise traffic was compared, and the stage's error against its
    tolerance; a dash when the stage predicts none."""
    if row.traffic_tolerance is None and not row.traffic_compared:
        return "–"
    layers = f"{row.traffic_compared:,} layers"
    if row.traffic_tolerance is None:
        return layers
    return f"{layers}, stage {fmt_error(row.traffic_rel_error)} (≤ {row.traffic_tolerance:.0%})"


# -- Markdown ---------------------------------------------------------------------------------


def summary_markdown(record: RunRecord, run_dir: Path | None = None) -> str:
    """A Markdown summary for a pull request or a CI job summary."""
    env = record.environment
    counts = record.counts
    lines = [
        f"## flopcheck — {md(record.headline)}",
        "",
        f"Run `{record.run_id}` · status **{record.status}** · {record.selected:,} checks selected: "
        + md(", ".join(f"{n:,} {k.replace('_', ' ')}" for k, n in counts.items() if n) or "none finished")
        + f" · device `{md(env.get('device'))}` · torch {md(env.get('torch'))} · git {md(_git(env))}",
    ]
    summaries = record.stage_summaries()
    if summaries:
        lines += [
            "",
            "| model | workload | stage | checks | layers | params | layer I/O | max rel. error "
            "| live peak beyond weights error | elementwise traffic | result |",
            "|---|---|---|---|---:|---:|---:|---:|---:|---:|---|",
        ]
        for row in summaries:
            result = "pass" if row.status == "pass" else f"**{row.status}**"
            cells = [
                md(row.model),
                md(row.workload),
                md(row.stage),
                md(_outcome_cells(row.outcomes)),
                f"{row.layers_compared:,}",
                f"{row.params_compared:,}",
                f"{row.io_compared:,}",
                _worst(row),
                _memory(row),
                _traffic(row),
                result,
            ]
            lines.append("| " + " | ".join(cells) + " |")
    if record.warnings:
        lines += ["", "### Warnings", ""] + [f"- {md(w)}" for w in record.warnings]
    if record.errors:
        lines += ["", f"### Errors ({len(record.errors)} cause{'s' if len(record.errors) != 1 else ''})", ""]
        lines += [f"- {md(e.message)} ({e.tests:,} dependent checks)" for e in record.errors[:MAX_LISTED]]
    failed = [c for c in record.failures() if c.outcome == "failed"]
    if failed:
        lines += ["", f"### Failures (first {min(MAX_LISTED, len(failed))} of {len(failed):,})", ""]
        for check in failed[:MAX_LISTED]:
            detail = "; ".join(
                f"{c.metric}: analytic {c.analytic:,} vs reference {c.reference:,} "
                f"(rel. error {fmt_error(c.rel_error)}, tolerance {c.tolerance:.1e})"
                for c in check.comparisons
                if not c.passed
            )
            if check.gaps:
                detail = "; ".join(filter(None, [detail, f"{len(check.gaps)} coverage gap(s)"]))
            lines.append(f"- `{check.test}` {md(detail or one_line(check.message))}")
    coverage = record.coverage()
    if coverage:
        gaps = [(c, g) for c, found in coverage for g in found]
        lines += ["", "### Coverage", ""]
        if gaps:
            lines += [f"- {md(f'{c.model}/{c.workload}/{c.stage}: {g.name}: {g.detail}')}" for c, g in gaps]
        else:
            stages = ", ".join(f"{c.model}/{c.workload}/{c.stage}" for c, _ in coverage)
            lines.append(
                f"In the {len(coverage)} counted stage(s) ({md(stages)}) every counted FLOP is claimed by "
                "an analytic node and no compute op ran uncounted."
            )
    reasons = record.skip_reasons()
    if reasons:
        lines += ["", f"### Skipped or xfailed ({sum(reasons.values()):,})", ""]
        lines += [f"- {n:,} × {md(reason)}" for reason, n in reasons.items()]
    if record.totals:
        lines += [
            "",
            "### Totals (FLOPs per run; pipeline per generation)",
            "",
            "| model | workload | stage | runs | analytic | reference |",
            "|---|---|---|---:|---:|---:|",
        ]
        for t in record.totals:
            lines.append(
                f"| {md(t.model)} | {md(t.workload)} | {md(t.stage)} | {fmt_int(t.runs_per_generation)} | "
                f"{fmt_int(t.analytic_flops)} | {fmt_int(t.reference_flops)} |"
            )
    if run_dir is not None:
        lines += ["", f"Evidence: `{run_dir}`"]
    return "\n".join(lines) + "\n"


# -- HTML ---------------------------------------------------------------------------------------

_STATUS_COLOURS = {"pass": "#2a7a2a", "FAIL": "#b00020", "skipped": "#8a6d00", "incomplete": "#8a6d00"}


def summary_html(record: RunRecord) -> str:
    """The flopcheck section of the pytest-html report (every value escaped)."""
    esc = html.escape
    rows = "".join(
        "<tr>"
        f"<td>{esc(r.model)}</td><td>{esc(r.workload)}</td><td>{esc(r.stage)}</td>"
        f"<td>{esc(_outcome_cells(r.outcomes))}</td>"
        f"<td style='text-align:right'>{r.layers_compared:,}</td>"
        f"<td style='text-align:right'>{r.params_compared:,}</td>"
        f"<td style='text-align:right'>{r.io_compared:,}</td>"
        f"<td style='text-align:right'>{_worst(r)}</td>"
        f"<td style='text-align:right'>{esc(_memory(r))}</td>"
        f"<td style='text-align:right'>{esc(_traffic(r))}</td>"
        f"<td style='color:{_STATUS_COLOURS.get(r.status, '#000')};font-weight:bold'>"
        f"{esc(r.status)}</td></tr>"
        for r in record.stage_summaries()
    )
    parts = [
        f"<h2>flopcheck: {esc(record.headline)}</h2>",
        f"<p>Run <code>{esc(record.run_id)}</code> on device "
        f"<code>{esc(str(record.environment.get('device')))}</code>, status <b>{esc(record.status)}</b>, "
        f"{record.selected:,} checks selected.</p>",
    ]
    if rows:
        parts.append(
            "<table style='border-collapse:collapse' border='1' cellpadding='4'>"
            "<tr><th>model</th><th>workload</th><th>stage</th><th>checks</th><th>layers</th><th>params</th>"
            "<th>layer I/O</th><th>max rel. error</th><th>live peak error (beyond weights)</th>"
            "<th>elementwise traffic</th><th>result</th></tr>"
            f"{rows}</table>"
        )
    if record.warnings:
        parts.append("<h3>Warnings</h3><ul>")
        parts += [f"<li>{esc(w)}</li>" for w in record.warnings]
        parts.append("</ul>")
    if record.errors:
        parts.append("<h3>Errors</h3><ul>")
        parts += [f"<li>{esc(e.message)} ({e.tests:,} dependent checks)</li>" for e in record.errors]
        parts.append("</ul>")
    reasons = record.skip_reasons()
    if reasons:
        parts.append("<h3>Skipped or xfailed</h3><ul>")
        parts += [f"<li>{n:,} × {esc(reason)}</li>" for reason, n in reasons.items()]
        parts.append("</ul>")
    counts = record.counts
    omitted = counts["passed"] + counts["skipped"]
    if omitted:
        parts.append(
            f"<p>The results table below leaves out the rows of the {counts['passed']:,} passed and "
            f"{counts['skipped']:,} skipped generated checks (pytest-html's counters there count listed "
            "rows only); the numbers above count every check, and evidence.json holds every comparison. "
            "Failed checks, errors and expected failures are listed with their details.</p>"
        )
    return "".join(parts)


def comparison_html(comparisons: Iterable[Mapping[str, Any]]) -> str:
    """Per-test extra for the pytest-html report."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c['metric'])}</td><td>{esc(str(c['reference_module']))}</td>"
        f"<td style='text-align:right'>{c['analytic']:,}</td>"
        f"<td style='text-align:right'>{c['reference']:,}</td>"
        f"<td style='text-align:right'>{fmt_error(c['rel_error'])}</td><td>{c['tolerance']:.1e}</td></tr>"
        for c in comparisons
    )
    return (
        "<table border='1' cellpadding='3' style='border-collapse:collapse'><tr><th>metric</th>"
        "<th>reference module</th><th>analytic</th><th>reference</th><th>rel. error</th><th>tolerance</th>"
        f"</tr>{rows}</table>"
    )


# -- terminal ---------------------------------------------------------------------------------


def terminal_lines(record: RunRecord) -> list[str]:
    """The flopcheck section of pytest's terminal summary."""
    lines = [record.headline]
    for row in record.stage_summaries():
        lines.append(
            f"{row.model}/{row.workload}/{row.stage}: {_outcome_cells(row.outcomes)}; "
            f"{row.layers_compared:,} layers, {row.params_compared:,} parameter counts, "
            f"{row.io_compared:,} layer I/O, max rel. error {_worst(row)}"
            + (f", live peak beyond weights {_memory(row)}" if row.memory_tolerance is not None else "")
            + (f", elementwise traffic {_traffic(row)}" if _traffic(row) != "–" else "")
            + f" — {row.status}"
        )
    for warning in record.warnings:
        lines.append(f"warning: {warning}")
    for error in record.errors:
        lines.append(f"error ({error.tests:,} dependent checks): {error.message}")
    for reason, n in record.skip_reasons().items():
        lines.append(f"skipped {n:,}: {one_line(reason)}")
    return lines
