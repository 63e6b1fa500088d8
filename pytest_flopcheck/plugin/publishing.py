"""The evidence of a run: its :class:`~pytest_flopcheck.evidence.record.RunRecord` assembled on
the controller, and its files (``evidence.json``, ``summary.md``, ``report.html``) published
whole, or nothing at all."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import pytest

from pytest_flopcheck import output
from pytest_flopcheck.analytic.tree import CostNode
from pytest_flopcheck.evidence import render
from pytest_flopcheck.evidence.record import (
    COMPLETE,
    INTERRUPTED,
    NOTHING_RUN,
    CheckRecord,
    ErrorRecord,
    RunRecord,
    StageTotal,
)
from pytest_flopcheck.model.generation import per_generation
from pytest_flopcheck.reference.store import CACHED, COUNTED
from pytest_flopcheck.verification.cases import END_TO_END, PIPELINE
from pytest_flopcheck.verification.dependencies import CheckError
from pytest_flopcheck.verification.session import FlopcheckSession

EVIDENCE_WRITE_FAILED = 3
"""Exit status when the evidence cannot be written (full disk, unwritable output)."""


def build_record(
    *,
    run_id: str,
    started: float,
    config: pytest.Config,
    session: FlopcheckSession,
    selected: list[str],
    checks: Mapping[str, CheckRecord],
    causes: Mapping[str, Mapping[str, Any]],
    count_sources: list[dict[str, Any]],
    warnings: Iterable[str],
    interrupted: bool,
) -> RunRecord:
    """The record of the run: every check's outcome in collection order, the causes of errors,
    the totals, the warnings and where each reference count came from."""
    order = {nodeid: i for i, nodeid in enumerate(selected)}
    ordered = [check for _, check in sorted(checks.items(), key=lambda item: order.get(item[0], len(order)))]
    if not selected:
        status = NOTHING_RUN
    elif len(ordered) < len(selected) or interrupted:
        status = INTERRUPTED
    else:
        status = COMPLETE
    packages = {p for model in session.models for p in session.registration(model).reference_packages}
    return RunRecord(
        run_id=run_id,
        created_utc=output.utc_now(),
        status=status,
        selected=len(selected),
        environment=output.environment(config.rootpath, session.device, packages),
        selection={
            "models": session.models,
            "workloads": {m: session.workloads(m) for m in session.models},
            "device": session.device,
        },
        checks=tuple(ordered),
        errors=tuple(
            ErrorRecord(**{k: v for k, v in cause.items() if k != "key"}, cause=key)
            for key, cause in causes.items()
        ),
        totals=tuple(stage_totals(session, ordered)),
        warnings=tuple(dict.fromkeys(warnings)),
        timing={
            "duration_s": round(time.time() - started, 3),
            "reference_runs": merge_sources(count_sources),
        },
    )


def stage_totals(session: FlopcheckSession, checks: list[CheckRecord]) -> list[StageTotal]:
    """Each stage's FLOPs per run, analytic and counted, and the pipeline's per generation."""
    counted = {
        (c.model, c.workload, c.stage): c.comparisons[0].reference
        for c in checks
        if c.kind == END_TO_END and c.comparisons
    }
    dependencies = session.dependencies
    totals = []
    for model in session.models:
        reg = session.registration(model)
        for workload in session.workloads(model):
            try:
                runs: dict[str, int] | None = dependencies.runs(model, workload)
            except CheckError:
                runs = None
            rows = []
            for stage in reg.stages:
                tree = dependencies.tree_or_cause(model, workload, stage.name)
                analytic = tree.total if isinstance(tree, CostNode) else None
                rows.append(
                    StageTotal(
                        model,
                        workload,
                        stage.name,
                        runs[stage.name] if runs else None,
                        analytic.flops if analytic is not None else None,
                        counted.get((model, workload, stage.name)),
                        analytic.params if analytic is not None else None,
                    )
                )
            totals += rows
            if reg.multiplicities is not None:
                analytic_flops = {r.stage: r.analytic_flops for r in rows}
                reference_flops = {r.stage: r.reference_flops for r in rows}
                totals.append(
                    StageTotal(
                        model,
                        workload,
                        PIPELINE,
                        1,
                        _generation(runs, analytic_flops),
                        _generation(runs, reference_flops),
                        None,
                    )
                )
    return totals


def _generation(runs: dict[str, int] | None, per_run: dict[str, int | None]) -> int | None:
    """A generation's total, when every stage's per-run count is known."""
    if runs is None or any(value is None for value in per_run.values()):
        return None
    return per_generation(runs, {stage: value or 0 for stage, value in per_run.items()})


def merge_sources(sources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per reference: counted in this run if any process counted it, else from the
    cache; entries another worker of this run wrote are that worker's count."""
    rank = {COUNTED: 0, CACHED: 1}
    best: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for source in sources:
        key = (source["model"], source["workload"], source["stage"], source["device"])
        if key not in best or rank.get(source["source"], 2) < rank.get(best[key]["source"], 2):
            best[key] = source
    return [best[key] for key in sorted(best)]


def html_complete(path: Path) -> bool:
    with path.open("rb") as handle:
        handle.seek(max(0, path.stat().st_size - 64))
        return handle.read().rstrip().endswith(b"</html>")


def publish(
    staged: output.StagedRun,
    record: RunRecord,
    config: pytest.Config,
    own_html: bool,
    html_error: BaseException | None = None,
) -> tuple[Path | None, str | None, int | None]:
    """Write the evidence into the staging directory and rename it into place; returns the
    published folder, or the one sentence saying why nothing was published and the exit status
    that says so."""
    try:
        if html_error is not None:  # pytest-html failed to write its page (full disk, Ctrl-C)
            raise html_error
        html = staged.staging / "flopcheck" / "report.html"
        user_html = config.getoption("htmlpath", None)
        if not own_html and user_html and Path(user_html).is_file():
            shutil.copyfile(user_html, html)
        if html.exists() and not html_complete(html):
            raise OSError(f"report.html was not written completely ({html.stat().st_size:,} bytes)")
        final = staged.final
        # one line per layer: model, workload, stage and layer opened, the layer's checks inline
        staged.write("flopcheck/evidence.json", output.dumps_nested(record.to_json(), {"checks": 4}))
        staged.write("flopcheck/summary.md", render.summary_markdown(record, final / "flopcheck"))
        shutil.rmtree(staged.staging / ".references", ignore_errors=True)
        return staged.publish() / "flopcheck", None, None
    except KeyboardInterrupt:
        staged.discard()
        return (
            None,
            "flopcheck: interrupted while writing the evidence; nothing was published",
            pytest.ExitCode.INTERRUPTED,
        )
    except OSError as exc:
        staged.discard()
        return (
            None,
            f"flopcheck: the evidence could not be written under {str(staged.output)!r} "
            f"({output.describe_os_error(exc) if exc.strerror else exc}); nothing was published",
            EVIDENCE_WRITE_FAILED,
        )
