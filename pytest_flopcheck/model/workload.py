"""What the framework asks of a model's workload, and the one dtype table.

A workload is an instance of the model's own class (an attrs class or a dataclass, whose fields
``flopcheck report`` turns into options). The framework reads it only through this module:

- :class:`Describes`: an optional ``describe()`` giving the fields and the geometry derived from
  them, as reports show them (else the class's fields);
- :class:`Sized`: an optional ``dtype`` field naming one of :data:`DTYPES`, the dtype of its
  memory and I/O figures (the reference is built in it to measure them, and a runtime sizes a
  stage at another one through :func:`at_dtype`).

:data:`DTYPES` (what weights and activations are held in) and :data:`PRECISIONS` (what matmuls
compute in) are the framework's only dtype tables.

Validators raise :class:`WorkloadError`, which names the field so that ``flopcheck`` can name
its option.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Final, Protocol, cast, runtime_checkable

import attrs


@attrs.frozen
class Dtype:
    """An element type a workload or a runtime sizes memory in."""

    name: str
    bytes: int
    torch: str
    """The torch dtype a reference is built in to measure it (``torch.<name>``)."""


DTYPES: Final = {
    d.name: d
    for d in (
        Dtype("fp32", 4, "float32"),
        Dtype("bf16", 2, "bfloat16"),
        Dtype("fp16", 2, "float16"),
        Dtype("fp8", 1, "float8_e4m3fn"),
    )
}
"""The dtypes a workload or a runtime's weights may be sized in."""
DTYPE_BYTES: Final = {name: d.bytes for name, d in DTYPES.items()}


@attrs.frozen
class Precision:
    """A precision matmuls compute in, and the dtype it keeps activations in between layers."""

    name: str
    activations: str


PRECISIONS: Final = {
    p.name: p
    for p in (
        Precision("tf32", "fp32"),  # fp32 matmuls on TF32 tensor cores
        Precision("bf16", "bf16"),
        Precision("fp16", "fp16"),
        Precision("fp8", "bf16"),  # fp8 matmuls keep bf16 activations
    )
}
"""The compute precisions a GPU's tensor cores run (the GPU table's peaks are per precision)."""


class WorkloadError(ValueError):
    """A workload value that is not allowed; ``field`` names it for option-aware callers
    (``flopcheck report`` says ``--field VALUE is not allowed: ...``)."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"workload field {field!r} is {value!r}; {allowed}")


@runtime_checkable
class Describes(Protocol):
    """A workload that describes itself for reports (its fields and derived geometry)."""

    def describe(self) -> Mapping[str, Any]: ...


@runtime_checkable
class Sized(Protocol):
    """A workload whose memory and I/O figures are sized in one of :data:`DTYPES`."""

    dtype: str


def workload_fields(workload: object) -> dict[str, Any]:
    """The workload as plain data: its ``describe()``, else its fields."""
    if isinstance(workload, Describes):
        return dict(workload.describe())
    if attrs.has(type(workload)):
        return attrs.asdict(cast(attrs.AttrsInstance, workload))
    if dataclasses.is_dataclass(workload) and not isinstance(workload, type):
        return dataclasses.asdict(workload)
    return {"value": repr(workload)}


def sized_dtype(workload: object) -> str | None:
    """The dtype a workload sizes memory in, or None if it names none of :data:`DTYPES`."""
    if isinstance(workload, Sized) and isinstance(workload.dtype, str) and workload.dtype in DTYPES:
        return workload.dtype
    return None


def at_dtype(workload: Any, dtype: str) -> Any:
    """The workload sized in ``dtype`` (its ``dtype`` field replaced), or unchanged when it has
    no such field or does not allow that dtype."""
    if sized_dtype(workload) is None:
        return workload
    try:
        if attrs.has(type(workload)):
            return attrs.evolve(workload, dtype=dtype)
        if dataclasses.is_dataclass(workload) and not isinstance(workload, type):
            return dataclasses.replace(workload, dtype=dtype)
    except (ValueError, TypeError):
        return workload
    return workload
