"""Evidence of a verification run: ``evidence.json`` for machines, ``summary.md`` and an HTML
section for people. Everything is written atomically (temp file, then rename)."""

from __future__ import annotations

import datetime as _dt
import html
import json
import os
import platform
import secrets
import subprocess
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from pytest_flopcheck.session import END_TO_END, PIPELINE

SCHEMA_VERSION = 1
TIMING_FIELDS = ("run_id", "created_utc", "timing")
"""Top-level fields that differ between otherwise identical runs."""


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A sortable, collision-safe id: UTC time plus random hex."""
    moment = now or _dt.datetime.now(_dt.UTC)
    return f"{moment:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that readers see the old file or the whole new one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def make_run_dir(output: Path, run_id: str, *parts: str) -> Path:
    """Create ``output/run_id/parts...``; a run directory that exists is never reused."""
    run_dir = output / run_id
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    run_dir.mkdir(exist_ok=False)
    target = run_dir.joinpath(*parts)
    target.mkdir(parents=True, exist_ok=True)
    return target


def _package_version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def git_state(root: Path) -> dict[str, Any]:
    """The commit checked out at ``root`` and whether the tree has changes."""

    def git(*args: str) -> str | None:
        try:
            done = subprocess.run(
                ["git", *args], cwd=root, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    sha = git("rev-parse", "HEAD")
    status = git("status", "--porcelain", "--untracked-files=no") if sha else None
    return {"git_sha": sha, "git_dirty": bool(status) if status is not None else None}


def environment(root: Path, device: str, packages: Iterable[str]) -> dict[str, Any]:
    """Versions and machine facts; package versions are read without importing them."""
    env: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "pytest_flopcheck": _package_version("pytest-flopcheck"),
        "torch": _package_version("torch"),
    }
    for name in sorted(set(packages) - {"torch"}):
        env[name] = _package_version(name)
    env.update(git_state(root))
    env["device"] = device
    return env


def _max_error(errors: Iterable[float | None]) -> float | None:
    worst: float | None = 0.0
    for error in errors:
        if error is None:
            return None
        if worst is not None and error > worst:
            worst = error
    return worst


def stage_summary(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Per model, workload and stage: how many checks, the worst relative error, failures."""
    groups: dict[tuple[str, str, str], list[Mapping[str, Any]]] = {}
    for result in results:
        groups.setdefault((result["model"], result["workload"], result["stage"]), []).append(result)
    rows = []
    for (model, workload, stage), items in groups.items():
        rows.append(
            {
                "model": model,
                "workload": workload,
                "stage": stage,
                "layers_compared": sum(1 for r in items if r["layer"] and r["metric"] == "flops"),
                "params_compared": sum(1 for r in items if r["metric"] == "params"),
                "max_rel_error": _max_error(r["rel_error"] for r in items),
                "failed": sum(1 for r in items if not r["passed"]),
                "passed": all(r["passed"] for r in items),
            }
        )
    return rows


def build_evidence(
    *,
    run_id: str,
    created_utc: str,
    env: Mapping[str, Any],
    selection: Mapping[str, Any],
    records: Sequence[Mapping[str, Any]],
    totals: Sequence[Mapping[str, Any]],
    timing: Mapping[str, Any],
) -> dict[str, Any]:
    """The evidence document. ``records`` are per-test outcomes in plan order."""
    results = [dict(c, test=r["test"]) for r in records for c in r["comparisons"]]
    coverage = [
        {
            "model": r["case"]["model"],
            "workload": r["case"]["workload"],
            "stage": r["case"]["stage"],
            "unclaimed_modules": [g for g in r["gaps"] if g["kind"] == "unclaimed_module"],
            "uncounted_ops": [g for g in r["gaps"] if g["kind"] == "uncounted_op"],
        }
        for r in records
        if r["case"]["kind"] == END_TO_END and r["case"]["stage"] != PIPELINE and r["status"] != "skipped"
    ]
    skipped = [{"test": r["test"], "reason": r["reason"]} for r in records if r["status"] == "skipped"]
    return {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "created_utc": created_utc,
        "environment": dict(env),
        "selection": dict(selection),
        "convention": (
            "torch.utils.flop_counter: 2 FLOPs per multiply-add for matmul, convolution and attention "
            "(QK^T and PV, no causal discount); elementwise work counts 0"
        ),
        "tests": {
            "total": len(records),
            "passed": sum(1 for r in records if r["status"] == "passed"),
            "failed": sum(1 for r in records if r["status"] == "failed"),
            "skipped": len(skipped),
        },
        "summary": stage_summary(results),
        "totals": list(totals),
        "results": results,
        "coverage": coverage,
        "skipped": skipped,
        "timing": dict(timing),
    }


def dumps(document: Mapping[str, Any]) -> str:
    """JSON with exact integers and no NaN/Infinity."""
    return json.dumps(document, indent=1, allow_nan=False) + "\n"


def _fmt_error(error: float | None) -> str:
    return "∞" if error is None else f"{error:.2e}"


def _fmt_int(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def summary_markdown(evidence: Mapping[str, Any], run_dir: Path | None = None) -> str:
    """A Markdown summary for a pull request or a CI job summary."""
    tests = evidence["tests"]
    env = evidence["environment"]
    verdict = "✅ all checks passed" if tests["failed"] == 0 else f"❌ {tests['failed']} check(s) failed"
    lines = [
        f"## flopcheck — {verdict}",
        "",
        f"Run `{evidence['run_id']}` · {tests['total']} tests: {tests['passed']} passed, "
        f"{tests['failed']} failed, {tests['skipped']} skipped · device `{env.get('device')}` · "
        f"torch {env.get('torch')} · git {(env.get('git_sha') or 'unknown')[:12]}"
        + (" (dirty)" if env.get("git_dirty") else ""),
        "",
        "| model | workload | stage | layers | params | max rel. error | result |",
        "|---|---|---|---:|---:|---:|---|",
    ]
    for row in evidence["summary"]:
        lines.append(
            f"| {row['model']} | {row['workload']} | {row['stage']} | {row['layers_compared']} | "
            f"{row['params_compared']} | {_fmt_error(row['max_rel_error'])} | "
            f"{'pass' if row['passed'] else '**FAIL**'} |"
        )
    if evidence["totals"]:
        lines += ["", "### Totals (FLOPs)", "", "| model | workload | stage | runs | analytic | reference |"]
        lines.append("|---|---|---|---:|---:|---:|")
        for total in evidence["totals"]:
            for stage, row in total["stages"].items():
                lines.append(
                    f"| {total['model']} | {total['workload']} | {stage} | "
                    f"{_fmt_int(row['runs_per_generation'])} | {_fmt_int(row['analytic_flops'])} | "
                    f"{_fmt_int(row['reference_flops'])} |"
                )
    gaps = [(c, g) for c in evidence["coverage"] for g in c["unclaimed_modules"] + c["uncounted_ops"]]
    lines += ["", "### Coverage", ""]
    if gaps:
        lines += [
            f"- {c['model']}/{c['workload']}/{c['stage']}: `{g['name']}`: {g['detail']}" for c, g in gaps
        ]
    else:
        lines.append("Every counted FLOP is claimed by an analytic node; no compute op ran uncounted.")
    failures = [r for r in evidence["results"] if not r["passed"]]
    if failures:
        lines += ["", f"### Failures (first {min(20, len(failures))} of {len(failures)})", ""]
        for r in failures[:20]:
            lines.append(
                f"- `{r['test']}` {r['metric']}: analytic {r['analytic']:,} vs reference "
                f"{r['reference']:,} (rel. error {_fmt_error(r['rel_error'])}, "
                f"tolerance {r['tolerance']:.1e})"
            )
    if evidence["skipped"]:
        reasons = sorted({s["reason"] for s in evidence["skipped"]})
        lines += ["", f"### Skipped ({len(evidence['skipped'])})", ""] + [f"- {reason}" for reason in reasons]
    if run_dir is not None:
        lines += ["", f"Evidence: `{run_dir}`"]
    return "\n".join(lines) + "\n"


def summary_html(evidence: Mapping[str, Any]) -> str:
    """The flopcheck section of the pytest-html report."""
    esc = html.escape
    rows = "".join(
        "<tr>"
        f"<td>{esc(r['model'])}</td><td>{esc(r['workload'])}</td><td>{esc(r['stage'])}</td>"
        f"<td style='text-align:right'>{r['layers_compared']}</td>"
        f"<td style='text-align:right'>{r['params_compared']}</td>"
        f"<td style='text-align:right'>{_fmt_error(r['max_rel_error'])}</td>"
        f"<td style='color:{'#2a7a2a' if r['passed'] else '#b00020'};font-weight:bold'>"
        f"{'pass' if r['passed'] else 'FAIL'}</td></tr>"
        for r in evidence["summary"]
    )
    gaps = sum(len(c["unclaimed_modules"]) + len(c["uncounted_ops"]) for c in evidence["coverage"])
    return (
        "<h2>flopcheck</h2>"
        f"<p>Run <code>{esc(evidence['run_id'])}</code> on device "
        f"<code>{esc(str(evidence['environment']['device']))}"
        f"</code>; {evidence['tests']['total']} checks, {evidence['tests']['failed']} failed; "
        f"coverage gaps: {gaps}.</p>"
        "<table style='border-collapse:collapse' border='1' cellpadding='4'>"
        "<tr><th>model</th><th>workload</th><th>stage</th><th>layers</th><th>params</th>"
        "<th>max rel. error</th><th>result</th></tr>"
        f"{rows}</table>"
    )


def comparison_html(comparisons: Sequence[Mapping[str, Any]]) -> str:
    """Per-test extra for the pytest-html report."""
    esc = html.escape
    rows = "".join(
        f"<tr><td>{esc(c['metric'])}</td><td>{esc(str(c['reference_module']))}</td>"
        f"<td style='text-align:right'>{c['analytic']:,}</td>"
        f"<td style='text-align:right'>{c['reference']:,}</td>"
        f"<td style='text-align:right'>{_fmt_error(c['rel_error'])}</td><td>{c['tolerance']:.1e}</td></tr>"
        for c in comparisons
    )
    return (
        "<table border='1' cellpadding='3' style='border-collapse:collapse'><tr><th>metric</th>"
        "<th>reference module</th><th>analytic</th><th>reference</th><th>rel. error</th><th>tolerance</th>"
        f"</tr>{rows}</table>"
    )
