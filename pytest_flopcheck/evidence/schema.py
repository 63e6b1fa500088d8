"""Reading ``evidence.json`` back (``flopcheck diff`` and any later reader): every field has the
type it needs, counts are integers (not floats, booleans or NaN), no field is unknown, and a
problem is one sentence naming the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pytest_flopcheck.evidence.record import (
    MODULE,
    OUTCOMES,
    READABLE_VERSIONS,
    RESULT_COLUMNS,
    RunRecord,
)
from pytest_flopcheck.files import FileProblem, describe
from pytest_flopcheck.verification.cases import KINDS

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
    "selection", "convention", "tests", "summary", "totals", "result_columns", "checks", "coverage", "errors",
    "skipped", "warnings", "timing",
)  # fmt: skip
_EXTRA = ("message", "cause", "gaps")
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
    _need(top, "", "result_columns", lambda v: v == list(RESULT_COLUMNS), f"[{', '.join(RESULT_COLUMNS)}]")
    for model, workloads in _object(top.get("checks"), "checks").items():
        for workload, stages in _object(workloads, f"checks.{model}").items():
            for stage, layers in _object(stages, f"checks.{model}.{workload}").items():
                for layer, kinds in _object(layers, f"checks.{model}.{workload}.{stage}").items():
                    at = f"checks.{model}.{workload}.{stage}.{layer or '(stage)'}"
                    if MODULE in _object(kinds, at) or top.get("schema_version") == 3:
                        _need(kinds, at, MODULE, _optional(_str), "text or null")
                    for kind, entry in kinds.items():
                        if kind != MODULE:
                            _check_entry(entry, f"{at}.{kind}", kind)
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


def _check_entry(entry: Any, where: str, kind: str) -> None:
    """``[outcome, [rows]]`` or ``[outcome, [rows], {message, cause, gaps}]``."""
    if kind not in KINDS:
        raise FileProblem(f"field {where} names no kind of check (allowed: {', '.join(KINDS)})")
    if not isinstance(entry, list) or len(entry) not in (2, 3):
        raise FileProblem(
            f"field {where} is {describe(entry)}; it must be [outcome, comparisons] or [.., .., details]"
        )
    if entry[0] not in OUTCOMES:
        raise FileProblem(
            f"field {where}[0] is {describe(entry[0])}; it must be one of {', '.join(OUTCOMES)}"
        )
    if not isinstance(entry[1], list):
        raise FileProblem(f"field {where}[1] is {describe(entry[1])}; it must be a list of comparisons")
    for i, row in enumerate(entry[1]):
        _check_row(row, f"{where}[1][{i}]")
    if len(entry) == 3:
        extra = _object(entry[2], f"{where}[2]")
        _only(extra, f"{where}[2]", _EXTRA)
        for key in ("message", "cause"):
            if key in extra:
                _need(extra, f"{where}[2]", key, _str, "text")
        for j, gap in enumerate(_list(extra, f"{where}[2]", "gaps") if "gaps" in extra else []):
            at = f"{where}[2].gaps[{j}]"
            _only(_object(gap, at), at, ("kind", "name", "detail"))
            _strings(gap, at, "kind", "name", "detail")


def _check_row(row: Any, where: str) -> None:
    """A comparison: ``[metric, analytic, reference, tolerance]`` and optionally ``{module, ops}``."""
    if not isinstance(row, list) or len(row) not in (4, 5):
        raise FileProblem(
            f"field {where} is {describe(row)}; "
            f"it must be [{', '.join(RESULT_COLUMNS)}] (and {{module, op or ops}})"
        )
    checks: tuple[tuple[Check, str], ...] = (
        (_str, "text"),
        (_int, "an integer"),
        (_int, "an integer"),
        (_number, "a finite number"),
    )
    for i, (check, what) in enumerate(checks):
        if not check(row[i]):
            raise FileProblem(
                f"field {where}[{i}] ({RESULT_COLUMNS[i]}) is {describe(row[i])}; it must be {what}"
            )
    if len(row) == 5:
        extra = _object(row[4], f"{where}[4]")
        _only(extra, f"{where}[4]", (MODULE, "op", "ops"))
        if MODULE in extra:
            _need(extra, f"{where}[4]", MODULE, _optional(_str), "text or null")
        if "op" in extra:
            _need(extra, f"{where}[4]", "op", _str, "text")
        ops = _object(extra.get("ops", {}), f"{where}[4].ops")
        for op in ops:
            _need(ops, f"{where}[4].ops", op, _int, "an integer")


def load_evidence(document: Any) -> RunRecord:
    """A run record read back from its ``evidence.json`` document: the kind and schema version
    checked, then every field (:func:`check_evidence`); FileProblem naming the first problem."""
    kind = document.get("kind") if isinstance(document, dict) else None
    if kind != "flopcheck.evidence":
        raise FileProblem("is neither a flopcheck report.json nor an evidence.json")
    version = document.get("schema_version")
    if version not in READABLE_VERSIONS:
        raise FileProblem(
            f"is evidence of schema version {describe(version)}; this flopcheck reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}"
        )
    check_evidence(document)
    return RunRecord.from_json(document)
