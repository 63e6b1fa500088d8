"""The record of one verification run: every generated check's real outcome (from pytest's own
reports), the errors by cause, the totals and where the reference counts came from.

One :class:`RunRecord` describes a run; ``evidence.json``, ``summary.md``, the HTML summary and
the terminal summary are all rendered from it, and ``flopcheck diff`` reads it back. Its
headline never claims more than what ran: "✅" needs at least one passed check and no failure
or error; a run where every check was skipped reads "nothing verified"; an interrupted run says
so whatever ran before.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Any, Final

import attrs

from pytest_flopcheck.reference.counting import CoverageGap
from pytest_flopcheck.verification.cases import (
    END_TO_END,
    GENERATION,
    IO,
    LAYER,
    LIVE_PEAK,
    PARALLEL,
    PARAMS,
    PIPELINE,
    TRAFFIC,
    TRAFFIC_METRICS,
    Case,
)
from pytest_flopcheck.verification.compare import OTHER_OPS, Comparison

SCHEMA_VERSION: Final = 4
READABLE_VERSIONS: Final = (3, 4)
"""Version 4 leaves out a layer's ``module`` where it is the layer's own name (in about a third
of the layers of the four models, 0.6 MB of their 9.8 MB); version 3 always wrote it."""
RESULT_COLUMNS: Final = ("metric", "analytic", "reference", "tolerance")
"""A comparison in ``evidence.json`` is a row of these, and a fifth item where it needs one: its
reference module where that is not its layer's ``module`` (for an elementwise-traffic row, not
``module: its other ops``), its counted FLOPs per operator
(``ops``; ``op`` when one operator did them all). The
check it belongs to gives its model, workload, stage and layer; its error and verdict follow
(:class:`~pytest_flopcheck.verification.compare.Comparison`)."""
MODULE: Final = "module"
"""The key of a layer's reference module in the nested checks (no kind of check is named so)."""

OUTCOMES: Final = ("passed", "failed", "error", "skipped", "xfailed", "xpassed")
COMPLETE, INTERRUPTED, NOTHING_RUN = "complete", "interrupted", "nothing run"
PASSED, FAILED, NOTHING_VERIFIED = "passed", "failed", "nothing verified"
"""Verdicts of a complete run (an incomplete one's verdict is its status)."""

CONVENTION: Final = (
    "torch.utils.flop_counter: 2 FLOPs per multiply-add for matmul, convolution and attention "
    "(QK^T and PV, no causal discount); elementwise work counts 0"
)
VOLATILE_FIELDS: Final = ("run_id", "created_utc", "timing", "headline")
"""Top-level evidence fields that differ between otherwise identical runs (timing and where
the reference counts came from, which the headline says)."""


def _row_module(metric: str, layer_module: str | None) -> str | None:
    """The module a row names when it names none: its layer's, or for elementwise traffic its
    layer's other ops (``module: its other ops``)."""
    if metric in TRAFFIC_METRICS and layer_module is not None:
        return layer_module + OTHER_OPS
    return layer_module


def _comparison_row(c: Comparison, layer_module: str | None) -> list[Any]:
    row: list[Any] = [c.metric, c.analytic, c.reference, c.tolerance]
    extra: dict[str, Any] = {}
    if c.reference_module != _row_module(c.metric, layer_module):
        extra[MODULE] = c.reference_module
    if len(c.ops) == 1 and next(iter(c.ops.values())) == c.reference:
        extra["op"] = next(iter(c.ops))  # every counted FLOP came from this operator
    elif c.ops:
        extra["ops"] = dict(c.ops)
    return [*row, extra] if extra else row


def _comparison_from_row(
    model: str, workload: str, stage: str, layer: str, layer_module: str | None, row: list[Any]
) -> Comparison:
    metric, analytic, reference, tolerance = row[:4]
    extra = row[4] if len(row) > 4 else {}
    ops = {extra["op"]: reference} if "op" in extra else dict(extra.get("ops", {}))
    module = extra.get(MODULE, _row_module(metric, layer_module))
    return Comparison(
        model, workload, stage, layer, module, metric, analytic, reference, tolerance, ops=ops,
    )  # fmt: skip


def expanded(document: Mapping[str, Any]) -> dict[str, Any]:
    """An ``evidence.json`` document (checked) with its checks and comparisons spelled out as
    flat lists of objects, as schema version 2 wrote them: ``checks`` (test, kind, model,
    workload, stage, layer, outcome, and message, cause, gaps where present) and ``results``
    (one object per comparison, with its error, verdict, test and outcome), for readers that
    prefer records to the nested layout."""
    record = RunRecord.from_json(document)
    flat = {k: v for k, v in document.items() if k not in ("checks", "result_columns")}
    flat["checks"] = [check.to_json() for check in record.checks]
    flat["results"] = [
        dict(comparison.as_dict(), test=check.test, outcome=check.outcome)
        for check, comparison in record.results()
    ]
    return flat


def comparison_from_json(data: Mapping[str, Any]) -> Comparison:
    """A :class:`Comparison` from its ``as_dict()`` form."""
    return Comparison(
        model=data["model"],
        workload=data["workload"],
        stage=data["stage"],
        layer=data["layer"],
        reference_module=data["reference_module"],
        metric=data["metric"],
        analytic=data["analytic"],
        reference=data["reference"],
        tolerance=data["tolerance"],
        ops=dict(data.get("ops", {})),
    )


@attrs.frozen
class CheckRecord:
    """One generated test and its real outcome.

    ``message`` is the skip reason, the failure summary or the error sentence; ``cause`` the
    key of the :class:`ErrorRecord` an error points to.
    """

    test: str
    kind: str
    model: str
    workload: str
    stage: str
    layer: str
    outcome: str
    message: str = ""
    cause: str | None = None
    comparisons: tuple[Comparison, ...] = ()
    gaps: tuple[CoverageGap, ...] = ()

    @property
    def ran(self) -> bool:
        """True if the check compared numbers (passed or failed on its merits)."""
        return bool(self.comparisons)

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "test": self.test,
            "kind": self.kind,
            "model": self.model,
            "workload": self.workload,
            "stage": self.stage,
            "layer": self.layer,
            "outcome": self.outcome,
        }
        if self.message:
            entry["message"] = self.message
        if self.cause:
            entry["cause"] = self.cause
        if self.gaps:
            entry["gaps"] = [g.as_dict() for g in self.gaps]
        return entry


@attrs.frozen
class ErrorRecord:
    """One cause of errors (an analytic model, a reference or a pipeline that failed), reported
    once with the number of checks that depend on it."""

    cause: str
    kind: str
    model: str
    workload: str
    stage: str
    plugin: str
    message: str
    tests: int
    traceback: str = ""


@attrs.frozen
class StageTotal:
    """Per-run FLOPs of one stage (or the pipeline per generation), analytic and counted."""

    model: str
    workload: str
    stage: str
    runs_per_generation: int | None
    analytic_flops: int | None
    reference_flops: int | None
    params: int | None


@attrs.frozen
class StageSummary:
    """The checks of one stage and what they add up to."""

    model: str
    workload: str
    stage: str
    outcomes: Mapping[str, int]
    layers_compared: int
    params_compared: int
    comparisons: int  # numbers compared; 0 when every check was skipped, errored or not run
    max_rel_error: float | None  # None: infinite (a reference of 0 against a non-zero analytic)
    coverage_gaps: int
    counted: bool  # its end-to-end check compared numbers, so coverage was judged
    status: str  # "pass", "FAIL", "skipped" or "incomplete"
    io_compared: int = 0
    memory_rel_error: float | None = None  # the live peak's error beyond the weights, when compared
    memory_tolerance: float | None = None
    traffic_compared: int = 0  # layers whose elementwise traffic was compared
    traffic_rel_error: float | None = None  # the stage's elementwise bytes, when compared
    traffic_tolerance: float | None = None


@attrs.frozen
class RunRecord:
    """Everything one run verified, and everything it did not."""

    run_id: str
    created_utc: str
    status: str
    selected: int
    environment: Mapping[str, Any]
    selection: Mapping[str, Any]
    checks: tuple[CheckRecord, ...]
    errors: tuple[ErrorRecord, ...] = ()
    totals: tuple[StageTotal, ...] = ()
    timing: Mapping[str, Any] = attrs.field(factory=dict)
    warnings: tuple[str, ...] = ()
    """What the run could not do as asked without failing a check: counts it could not cache or
    read back from the cache (each cost a recount)."""

    # -- counts and verdicts ----------------------------------------------------------------

    @property
    def counts(self) -> dict[str, int]:
        """Checks per outcome, plus ``not_run`` (selected but never finished)."""
        found = Counter(check.outcome for check in self.checks)
        counts = {outcome: found.get(outcome, 0) for outcome in OUTCOMES}
        counts["not_run"] = max(0, self.selected - len(self.checks))
        return counts

    @property
    def verified(self) -> int:
        """Checks whose comparison ran and held."""
        counts = self.counts
        return counts["passed"] + counts["xpassed"]

    @property
    def problems(self) -> int:
        counts = self.counts
        return counts["failed"] + counts["error"]

    @property
    def verdict(self) -> str:
        if self.status != COMPLETE:
            return self.status
        if self.problems:
            return FAILED
        return PASSED if self.verified else NOTHING_VERIFIED

    @property
    def headline(self) -> str:
        """One line that says what the run verified, and no more, and how many of the reference
        counts it used came from the cache."""
        cached = self.cache_phrase
        return self.verdict_line + (f" · {cached}" if cached else "")

    @property
    def verdict_line(self) -> str:
        counts = self.counts
        ran = len(self.checks)
        tail = _count_phrase(counts)
        if self.status == INTERRUPTED:
            done = f"⚠️ interrupted: {ran:,} of {self.selected:,} checks finished"
            return done + (f" ({tail})" if tail else "")
        if self.status == NOTHING_RUN:
            return f"⚪ nothing run: {self.selected:,} checks selected, none finished"
        if self.problems:
            return f"❌ {_problem_phrase(counts)} of {ran:,} checks" + (f" ({tail})" if tail else "")
        if not self.verified:
            if counts["skipped"] == ran:
                return f"⚠️ nothing verified: all {ran:,} checks were skipped"
            return f"⚠️ nothing verified: none of {ran:,} checks passed ({tail})"
        if self.verified == ran:
            return f"✅ all {ran:,} checks passed"
        return f"✅ {self.verified:,} of {ran:,} checks passed ({tail})"

    @property
    def cache_phrase(self) -> str:
        """ "3 of 4 reference counts from the cache", or "" when no reference was counted."""
        runs = self.timing.get("reference_runs", ())
        sources = (
            [run.get("source") for run in runs if isinstance(run, Mapping)] if isinstance(runs, list) else []
        )
        if not sources:
            return ""
        cached = sum(1 for source in sources if source == "cache")
        noun = "reference count" if len(sources) == 1 else "reference counts"
        return f"{cached:,} of {len(sources):,} {noun} from the cache"

    def skip_reasons(self) -> dict[str, int]:
        """Skip (and xfail) reasons with how many checks each one skipped, most first."""
        reasons = Counter(
            c.message or "(no reason given)" for c in self.checks if c.outcome in ("skipped", "xfailed")
        )
        return dict(sorted(reasons.items(), key=lambda item: (-item[1], item[0])))

    def failures(self) -> list[CheckRecord]:
        return [c for c in self.checks if c.outcome in ("failed", "error")]

    def results(self) -> Iterable[tuple[CheckRecord, Comparison]]:
        for check in self.checks:
            for comparison in check.comparisons:
                yield check, comparison

    def stage_summaries(self) -> list[StageSummary]:
        groups: dict[tuple[str, str, str], list[CheckRecord]] = {}
        for check in self.checks:
            groups.setdefault((check.model, check.workload, check.stage), []).append(check)
        rows = []
        for (model, workload, stage), checks in groups.items():
            outcomes = Counter(c.outcome for c in checks)
            end_to_end = [
                c
                for c in checks
                if c.kind in (END_TO_END, GENERATION) or (c.kind == PARALLEL and not c.layer)
            ]
            counted = any(c.ran for c in end_to_end)
            gaps = sum(len(c.gaps) for c in end_to_end)
            # traffic: test_traffic's, and test_parallel's rows of it (one rank of a layout)
            stage_traffic = [cmp for c in checks for cmp in c.comparisons if _stage_traffic(c, cmp)]
            errors = [
                cmp.rel_error
                for c in checks
                for cmp in c.comparisons
                if cmp.metric != LIVE_PEAK and not _stage_traffic(c, cmp)
            ]
            peaks = [cmp for c in checks for cmp in c.comparisons if cmp.metric == LIVE_PEAK]
            traffic = [cmp for cmp in stage_traffic if cmp.metric == "elementwise_bytes"]
            if outcomes["failed"] or outcomes["error"]:
                status = "FAIL"
            elif outcomes["skipped"] == len(checks):
                status = "skipped"
            elif counted and not gaps and outcomes["passed"] + outcomes["xpassed"] == len(checks):
                status = "pass"
            else:
                status = "incomplete"
            rows.append(
                StageSummary(
                    model=model,
                    workload=workload,
                    stage=stage,
                    outcomes={o: outcomes.get(o, 0) for o in OUTCOMES},
                    layers_compared=sum(1 for c in checks if c.kind in (LAYER, PARALLEL) and c.ran),
                    params_compared=sum(1 for c in checks if c.kind == PARAMS and c.ran),
                    io_compared=sum(1 for c in checks if c.kind == IO and c.ran),
                    memory_rel_error=peaks[0].rel_error if peaks else None,
                    memory_tolerance=peaks[0].tolerance if peaks else None,
                    traffic_compared=sum(
                        1 for c in checks if c.layer and c.ran and (c.kind == TRAFFIC or _compares_traffic(c))
                    ),
                    traffic_rel_error=traffic[0].rel_error if traffic else None,
                    traffic_tolerance=traffic[0].tolerance if traffic else None,
                    comparisons=len(errors),
                    max_rel_error=_max_error(errors) if errors else 0.0,
                    coverage_gaps=gaps,
                    counted=counted,
                    status=status,
                )
            )
        return rows

    def coverage(self) -> list[tuple[CheckRecord, list[CoverageGap]]]:
        """Coverage of every stage that was counted (its end-to-end check compared numbers)."""
        return [
            (c, list(c.gaps)) for c in self.checks if c.kind == END_TO_END and c.stage != PIPELINE and c.ran
        ]

    # -- JSON -------------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        """The ``evidence.json`` document (exact integers, no NaN)."""
        totals: dict[tuple[str, str], dict[str, Any]] = {}
        for total in self.totals:
            blank = {"model": total.model, "workload": total.workload, "stages": {}}
            entry = totals.setdefault((total.model, total.workload), blank)
            entry["stages"][total.stage] = {
                "runs_per_generation": total.runs_per_generation,
                "analytic_flops": total.analytic_flops,
                "reference_flops": total.reference_flops,
                "params": total.params,
            }
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "flopcheck.evidence",
            "run_id": self.run_id,
            "created_utc": self.created_utc,
            "status": self.status,
            "verdict": self.verdict,
            "headline": self.headline,
            "environment": dict(self.environment),
            "selection": dict(self.selection),
            "convention": CONVENTION,
            "tests": {"selected": self.selected, "finished": len(self.checks), **self.counts},
            "summary": [attrs.asdict(row) for row in self.stage_summaries()],
            "totals": list(totals.values()),
            "result_columns": list(RESULT_COLUMNS),
            "checks": self._checks_json(),
            "coverage": [
                {
                    "model": c.model,
                    "workload": c.workload,
                    "stage": c.stage,
                    "unclaimed_modules": [g.as_dict() for g in gaps if g.kind == "unclaimed_module"],
                    "uncounted_ops": [g.as_dict() for g in gaps if g.kind == "uncounted_op"],
                }
                for c, gaps in self.coverage()
            ],
            "errors": [attrs.asdict(error) for error in self.errors],
            "skipped": self.skip_reasons(),
            "warnings": list(self.warnings),
            "timing": dict(self.timing),
        }

    def _checks_json(self) -> dict[str, Any]:
        """Every check, nested model → workload → stage → layer → kind (so the ids are not
        repeated per check and comparison): ``[outcome, [comparison rows]]``, and a third item
        with the message, the cause and the coverage gaps where the check has any. A layer
        names its reference ``module`` once (its first comparison's), unless that is the layer's
        own name."""
        nested: dict[str, Any] = {}
        for check in self.checks:
            layers = (
                nested.setdefault(check.model, {}).setdefault(check.workload, {}).setdefault(check.stage, {})
            )
            layer = layers.get(check.layer)
            if layer is None:
                first = check.comparisons[0].reference_module if check.comparisons else None
                layer = layers[check.layer] = {} if first == check.layer else {MODULE: first}
            rows = [_comparison_row(c, layer.get(MODULE, check.layer)) for c in check.comparisons]
            extra = {k: v for k, v in check.to_json().items() if k in ("message", "cause", "gaps")}
            layer[check.kind] = [check.outcome, rows, extra] if extra else [check.outcome, rows]
        return nested

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunRecord:
        """Read an ``evidence.json`` document back (structure checked by the caller)."""
        checks = tuple(
            CheckRecord(
                test=Case(kind, model, workload, stage, layer).name,
                kind=kind,
                model=model,
                workload=workload,
                stage=stage,
                layer=layer,
                outcome=entry[0],
                message=entry[2].get("message", "") if len(entry) > 2 else "",
                cause=entry[2].get("cause") if len(entry) > 2 else None,
                comparisons=tuple(
                    _comparison_from_row(model, workload, stage, layer, kinds.get(MODULE, layer), row)
                    for row in entry[1]
                ),
                gaps=tuple(CoverageGap(**g) for g in entry[2].get("gaps", ())) if len(entry) > 2 else (),
            )
            for model, workloads in data["checks"].items()
            for workload, stages in workloads.items()
            for stage, layers in stages.items()
            for layer, kinds in layers.items()
            for kind, entry in kinds.items()
            if kind != MODULE
        )
        totals = tuple(
            StageTotal(entry["model"], entry["workload"], stage, **row)
            for entry in data["totals"]
            for stage, row in entry["stages"].items()
        )
        return cls(
            run_id=data["run_id"],
            created_utc=data["created_utc"],
            status=data["status"],
            selected=data["tests"]["selected"],
            environment=data["environment"],
            selection=data["selection"],
            checks=checks,
            errors=tuple(ErrorRecord(**e) for e in data["errors"]),
            totals=totals,
            timing=data.get("timing", {}),
            warnings=tuple(data.get("warnings", ())),
        )


def _max_error(errors: Iterable[float | None]) -> float | None:
    worst = 0.0
    for error in errors:
        if error is None:
            return None
        worst = max(worst, error)
    return worst


def _count_phrase(counts: Mapping[str, int]) -> str:
    """ "12 passed, 3 skipped" from the non-zero counts."""
    words = {
        "passed": "passed",
        "failed": "failed",
        "error": "errors" if counts.get("error") != 1 else "error",
        "skipped": "skipped",
        "xfailed": "xfailed",
        "xpassed": "xpassed",
        "not_run": "not run",
    }
    return ", ".join(f"{counts[key]:,} {word}" for key, word in words.items() if counts.get(key))


def _problem_phrase(counts: Mapping[str, int]) -> str:
    parts = []
    if counts["failed"]:
        parts.append(f"{counts['failed']:,} failed")
    if counts["error"]:
        parts.append(f"{counts['error']:,} {'error' if counts['error'] == 1 else 'errors'}")
    return " and ".join(parts)


def _compares_traffic(check: CheckRecord) -> bool:
    """A test_parallel check of a layer that also compared its elementwise traffic."""
    return check.kind == PARALLEL and any(cmp.metric in TRAFFIC_METRICS for cmp in check.comparisons)


def _stage_traffic(check: CheckRecord, comparison: Comparison) -> bool:
    """A stage's elementwise traffic against its tolerance (test_traffic's, or test_parallel's on
    one rank of a layout): summarised apart from the exact comparisons."""
    return check.kind in (TRAFFIC, PARALLEL) and not check.layer and comparison.metric in TRAFFIC_METRICS
