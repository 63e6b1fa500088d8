"""Structure checks for the documents ``flopcheck diff`` reads back (``evidence.json`` and
``report.json``): every field it uses has the type it needs, counts are integers (not floats,
booleans or NaN), and a problem is one sentence naming the field."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from pytest_flopcheck.files import FileProblem, describe
from pytest_flopcheck.record import OUTCOMES

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


def check_evidence(document: Any) -> None:
    """Raise FileProblem unless ``document`` has every field ``flopcheck diff`` reads."""
    top = _object(document, "")
    _strings(top, "", "run_id", "created_utc")
    _need(top, "", "status", lambda v: v in ("complete", "interrupted", "nothing run"), "a run status")
    _need(_object(top.get("tests"), "tests"), "tests", "selected", _int, "an integer")
    _object(top.get("environment"), "environment")
    selection = _object(top.get("selection"), "selection")
    names = lambda v: isinstance(v, list) and all(map(_str, v))  # noqa: E731
    _need(selection, "selection", "models", names, "a list of names")
    for i, result in enumerate(_list(top, "", "results")):
        where = f"results[{i}]"
        item = _object(result, where)
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
        _strings(item, where, "test", "kind", "model", "workload", "stage", "layer")
        _need(item, where, "outcome", lambda v: v in OUTCOMES, f"one of {', '.join(OUTCOMES)}")
        for key in ("message", "cause"):
            if key in item:
                _need(item, where, key, _str, "text")
        for j, gap in enumerate(item.get("gaps", [])):
            _strings(_object(gap, f"{where}.gaps[{j}]"), f"{where}.gaps[{j}]", "kind", "name", "detail")
    for i, error in enumerate(_list(top, "", "errors")):
        where = f"errors[{i}]"
        item = _object(error, where)
        _strings(item, where, "cause", "kind", "model", "workload", "stage", "plugin", "message", "traceback")
        _need(item, where, "tests", _int, "an integer")
    for i, total in enumerate(_list(top, "", "totals")):
        where = f"totals[{i}]"
        item = _object(total, where)
        _strings(item, where, "model", "workload")
        stages = _object(item.get("stages"), f"{where}.stages")
        for stage, row in stages.items():
            at = f"{where}.stages.{stage}"
            for key in ("runs_per_generation", "analytic_flops", "reference_flops", "params"):
                _need(_object(row, at), at, key, _optional(_int), "an integer or null")


def check_report(document: Any) -> None:
    """Raise FileProblem unless ``document`` has every field ``flopcheck diff`` reads."""
    top = _object(document, "")
    _need(_object(top.get("model"), "model"), "model", "name", _str, "text")
    _object(top.get("workload"), "workload")
    stages = _object(top.get("stage_totals"), "stage_totals")
    for stage, totals in stages.items():
        where = f"stage_totals.{stage}"
        item = _object(totals, where)
        _need(item, where, "runs_per_generation", _int, "an integer")
        per_generation = _object(item.get("per_generation"), f"{where}.per_generation")
        _need(per_generation, f"{where}.per_generation", "flops", _int, "an integer")
    trees = _object(top.get("tree"), "tree")
    for stage, root in trees.items():
        if stage not in stages:
            raise FileProblem(f"field tree.{stage} has no stage_totals.{stage}")
        stack = [(root, f"tree.{stage}")]
        while stack:
            node, where = stack.pop()
            item = _object(node, where)
            _need(item, where, "id", _str, "text")
            _need(item, where, "flops", _int, "an integer")
            if "repeat" in item:
                _need(item, where, "repeat", lambda v: _int(v) and v >= 1, "an integer >= 1")
            children = item.get("children", [])
            if not isinstance(children, list):
                raise FileProblem(f"field {where}.children is {describe(children)}; it must be a list")
            stack.extend((child, f"{where}.children[{i}]") for i, child in enumerate(children))
