"""Reading ``evidence.json`` back (``flopcheck diff`` and any later reader): every field has the
type it needs, counts are integers (not floats, booleans or NaN), no field is unknown, and a
problem is one sentence naming the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pytest_flopcheck.evidence.record import OUTCOMES, SCHEMA_VERSION, RunRecord
from pytest_flopcheck.files import FileProblem, describe

Check = Callable[[Any], bool]


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return (_int(value) or isinstance(value, float)) and math.isfinite(value)


def _str(value: Any) -> bool:
    return isinstance(value, str)


def _optional(check: Check) -> Check:
    return lambda value: value is None or check(value)


def _need(document: dict[str, Any], where: str, key: str, check: Check, what: str) -> Any:
    field = f"{where}.{key}" if where else key
    if key not in document:
        raise FileProblem(f"field {field} is missing")
    value = document[key]
    if not check(value):
        raise FileProblem(f"field {field} is {describe(value)}; it must be {what}")
    return value


def _object(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise FileProblem(f"field {where or '(top level)'} is {describe(value)}; it must be an object")
    return value


def _list(document: dict[str, Any], where: str, key: str) -> list[Any]:
    return _need(document, where, key, lambda v: isinstance(v, list), "a list")  # type: ignore[no-any-return]


def _strings(item: dict[str, Any], where: str, *keys: str) -> None:
    for key in keys:
        _need(item, where, key, _str, "text")


def _only(item: dict[str, Any], where: str, allowed: tuple[str, ...]) -> None:
    """Reject fields the schema does not have (a document of another version, or edited)."""
    extra = [key for key in item if key not in allowed]
    if extra:
        field = f"{where}.{extra[0]}" if where else extra[0]
        raise FileProblem(
            f"field {field} is not a field of this schema version (expected: {', '.join(allowed)})"
        )


_TOP = (
    "schema_version", "kind", "run_id", "created_utc", "status", "verdict", "headline", "environment",
    "selection", "convention", "tests", "summary", "totals", "results", "checks", "coverage", "errors",
    "skipped", "warnings", "timing",
)  # fmt: skip
_RESULT = (
    "model", "workload", "stage", "layer", "reference_module", "metric", "analytic", "reference", "abs_error",
    "rel_error", "tolerance", "passed", "ops", "test", "outcome",
)  # fmt: skip
_CHECK = ("test", "kind", "model", "workload", "stage", "layer", "outcome", "message", "cause", "gaps")
_ERROR = ("cause", "kind", "model", "workload", "stage", "plugin", "message", "tests", "traceback")
_TOTAL_ROW = ("runs_per_generation", "analytic_flops", "reference_flops", "params")


def check_evidence(document: Any) -> None:
    """Raise FileProblem unless ``document`` is evidence this version reads back whole: every
    field the loader reads has the type it needs, counts are integers (not floats, booleans or
    NaN), and no field is unknown; the problem is one sentence naming the field."""
    top = _object(document, "")
    _only(top, "", _TOP)
    _strings(top, "", "run_id", "created_utc")
    _need(top, "", "status", lambda v: v in ("complete", "interrupted", "nothing run"), "a run status")
    _need(_object(top.get("tests"), "tests"), "tests", "selected", _int, "an integer")
    _object(top.get("environment"), "environment")
    _object(top.get("timing", {}), "timing")
    warnings = top.get("warnings", [])
    if not isinstance(warnings, list) or not all(map(_str, warnings)):
        raise FileProblem(f"field warnings is {describe(warnings)}; it must be a list of text")
    selection = _object(top.get("selection"), "selection")
    names = lambda v: isinstance(v, list) and all(map(_str, v))  # noqa: E731
    _need(selection, "selection", "models", names, "a list of names")
    chosen = _object(selection.get("workloads", {}), "selection.workloads")
    for model in chosen:
        _need(chosen, "selection.workloads", model, names, "a list of names")
    for i, result in enumerate(_list(top, "", "results")):
        where = f"results[{i}]"
        item = _object(result, where)
        _only(item, where, _RESULT)
        _strings(item, where, "test", "model", "workload", "stage", "layer", "metric")
        _need(item, where, "reference_module", _optional(_str), "text or null")
        for key in ("analytic", "reference"):
            _need(item, where, key, _int, "an integer")
        _need(item, where, "tolerance", _number, "a finite number")
        ops = _object(item.get("ops", {}), f"{where}.ops")
        for op in ops:
            _need(ops, f"{where}.ops", op, _int, "an integer")
    for i, check in enumerate(_list(top, "", "checks")):
        where = f"checks[{i}]"
        item = _object(check, where)
        _only(item, where, _CHECK)
        _strings(item, where, "test", "kind", "model", "workload", "stage", "layer")
        _need(item, where, "outcome", lambda v: v in OUTCOMES, f"one of {', '.join(OUTCOMES)}")
        for key in ("message", "cause"):
            if key in item:
                _need(item, where, key, _str, "text")
        for j, gap in enumerate(_list(item, where, "gaps") if "gaps" in item else []):
            at = f"{where}.gaps[{j}]"
            _only(_object(gap, at), at, ("kind", "name", "detail"))
            _strings(gap, at, "kind", "name", "detail")
    for i, error in enumerate(_list(top, "", "errors")):
        where = f"errors[{i}]"
        item = _object(error, where)
        _only(item, where, _ERROR)
        _strings(item, where, "cause", "kind", "model", "workload", "stage", "plugin", "message", "traceback")
        _need(item, where, "tests", _int, "an integer")
    for i, total in enumerate(_list(top, "", "totals")):
        where = f"totals[{i}]"
        item = _object(total, where)
        _only(item, where, ("model", "workload", "stages"))
        _strings(item, where, "model", "workload")
        stages = _object(item.get("stages"), f"{where}.stages")
        for stage, row in stages.items():
            at = f"{where}.stages.{stage}"
            _only(_object(row, at), at, _TOTAL_ROW)
            for key in _TOTAL_ROW:
                _need(row, at, key, _optional(_int), "an integer or null")


def load_evidence(document: Any) -> RunRecord:
    """A run record read back from its ``evidence.json`` document: the kind and schema version
    checked, then every field (:func:`check_evidence`); FileProblem naming the first problem."""
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind != "flopcheck.evidence":
        raise FileProblem("is neither a flopcheck report.json nor an evidence.json")
    version = document.get("schema_version")
    if version != SCHEMA_VERSION:
        raise FileProblem(
            f"is evidence of schema version {describe(version)}; this flopcheck reads version "
            f"{SCHEMA_VERSION}"
        )
    check_evidence(document)
    return RunRecord.from_json(document)
