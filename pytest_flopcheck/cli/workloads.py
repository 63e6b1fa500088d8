"""Workload options generated from a model's workload class (an attrs class or a dataclass):
every registered model gets its own ``--height``/``--frames``-style options, parsed with one
clear sentence per bad value."""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from typing import Any

import attrs

from pytest_flopcheck.cli.common import UsageError, option_name
from pytest_flopcheck.model.registration import ModelRegistration
from pytest_flopcheck.model.workload import WorkloadError
from pytest_flopcheck.text import shorten

MAX_DIGITS = 30
"""Longest integer a workload option takes: larger sizes only overflow the float estimates."""


@attrs.frozen
class WorkloadOption:
    """A command-line option generated from one field of a workload class."""

    field: str
    kind: type
    help: str

    def parse(self, text: str) -> Any:
        name = option_name(self.field)
        if self.kind is int:
            digits = text.strip().lstrip("+-")
            if len(digits) > MAX_DIGITS and digits.isdigit():
                raise UsageError(
                    f"{name} {shorten(text, 24)} is not allowed: it has {len(digits):,} "
                    f"digits, more than the {MAX_DIGITS} a workload size may have"
                )
            try:
                return int(text.strip(), 10)
            except ValueError:
                raise UsageError(f"{name} {shorten(text)} is not allowed: it must be an integer") from None
        if self.kind is float:
            try:
                value = float(text.strip())
            except ValueError:
                raise UsageError(f"{name} {shorten(text)} is not allowed: it must be a number") from None
            if not math.isfinite(value):
                raise UsageError(f"{name} {shorten(text)} is not allowed: it must be a finite number")
            return value
        if self.kind is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
            raise UsageError(f"{name} {shorten(text)} is not allowed: it must be true or false")
        return text


def _field_kind(annotation: object) -> type:
    return annotation if annotation in (int, bool, float) else str


class WorkloadClassError(UsageError):
    """A registration's workload class cannot be turned into options."""


def workload_options(workload_type: type | None) -> list[WorkloadOption]:
    """One option per field of an attrs class or a dataclass (ints, numbers and flags typed, the
    rest text)."""
    if workload_type is None:
        return []
    if attrs.has(workload_type):
        resolved = attrs.resolve_types(workload_type)
        return [
            WorkloadOption(f.name, _field_kind(f.type), str(f.metadata.get("help", "")))
            for f in attrs.fields(resolved)
            if f.init and f.metadata.get("option", True)
        ]
    if dataclasses.is_dataclass(workload_type):
        hints = typing.get_type_hints(workload_type)
        return [
            WorkloadOption(f.name, _field_kind(hints.get(f.name)), str(f.metadata.get("help", "")))
            for f in dataclasses.fields(workload_type)
            if f.init and f.metadata.get("option", True)
        ]  # fmt: skip
    raise WorkloadClassError(
        f"the workload class {workload_type.__qualname__} is neither an attrs class nor a dataclass, so "
        "flopcheck cannot turn it into options: use --workload with a standard workload"
    )


def add_workload_arguments(parser: argparse.ArgumentParser, reg: ModelRegistration) -> None:
    group = parser.add_argument_group(
        f"{reg.name} workload (defaults: the --workload, else the class defaults)"
    )
    group.add_argument(
        "--workload", metavar="ID", help=f"start from a standard workload: {', '.join(reg.workloads)}"
    )
    try:
        options = workload_options(reg.workload_type)
    except WorkloadClassError:
        options = []  # only --workload; asking for a workload without it says why
    for option in options:
        if option.kind is bool:
            group.add_argument(
                option_name(option.field),
                dest=option.field,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=option.help,
            )
        else:
            group.add_argument(
                option_name(option.field), dest=option.field, metavar="VALUE", help=option.help
            )


def workload_from_args(reg: ModelRegistration, args: argparse.Namespace) -> Any:
    """The workload the command line asks for: ``--workload`` or the class defaults, with every
    given field option, and the architecture of ``--config``."""
    if args.workload is not None:
        if args.workload not in reg.workloads:
            raise UsageError(
                f"--workload {shorten(args.workload)} is not allowed: "
                f"choose one of {', '.join(reg.workloads)}"
            )
        base = reg.workloads[args.workload]
    elif reg.workload_type is not None:
        base = None
    else:
        raise UsageError(
            f"model {reg.name!r} has no workload class: use --workload with one of {', '.join(reg.workloads)}"
        )
    values: dict[str, Any] = {}
    try:
        options = workload_options(reg.workload_type)
    except WorkloadClassError:
        if base is None:
            raise  # nothing to start from and no way to build one from options
        options = []
    for option in options:
        raw = vars(args).get(option.field)
        if raw is not None:
            values[option.field] = raw if isinstance(raw, bool) else option.parse(raw)
    workload = build_workload(reg, base, values)
    if args.config is None:
        return workload
    if not args.config.strip():
        raise UsageError("--config is empty: give a checkpoint's config.json or the folder holding it")
    if reg.config_workload is None:
        raise UsageError(f"--config is not allowed: model {reg.name!r} does not read checkpoint configs")
    try:
        return reg.config_workload(workload, args.config)
    except ValueError as exc:
        raise UsageError(f"--config {shorten(args.config, 400)} is not allowed: {exc}") from None


def build_workload(reg: ModelRegistration, base: Any, values: dict[str, Any]) -> Any:
    """``base`` (or the class defaults) with ``values``; a value the workload refuses is one
    sentence naming its option."""
    try:
        if base is None:
            assert reg.workload_type is not None
            return reg.workload_type(**values)
        if not values:
            return base
        return attrs.evolve(base, **values) if attrs.has(type(base)) else dataclasses.replace(base, **values)
    except WorkloadError as exc:
        raise UsageError(
            f"{option_name(exc.field)} {shorten(exc.value)} is not allowed: {exc.allowed}"
        ) from None
    except (ValueError, TypeError) as exc:
        raise UsageError(f"the workload is not allowed: {shorten(str(exc), 300)}") from None
