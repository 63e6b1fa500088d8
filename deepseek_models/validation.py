"""Workload validation shared by the DeepSeek model packages: one clear sentence per bad value."""

from __future__ import annotations

from typing import Any, Final

import attrs

DTYPE_BYTES: Final = {"fp32": 4, "bf16": 2, "fp16": 2}


class WorkloadError(ValueError):
    """A workload value that is not allowed; ``field`` names it for option-aware callers."""

    def __init__(self, field: str, value: object, allowed: str) -> None:
        self.field = field
        self.value = value
        self.allowed = allowed
        super().__init__(f"workload field {field!r} is {value!r}; {allowed}")


def at_least(minimum: int) -> Any:
    """An attrs validator: an integer (not a bool) of at least ``minimum``."""

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise WorkloadError(attribute.name, value, f"it must be an integer >= {minimum}")

    return check


def dtype(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    """An attrs validator: one of :data:`DTYPE_BYTES`."""
    if value not in DTYPE_BYTES:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(DTYPE_BYTES)}")


def helped(text: str) -> dict[str, str]:
    """Field metadata carrying the option help the CLI shows."""
    return {"help": text}
