"""What a verification run checks: the kinds of check, one :class:`Case` per generated test (its
test id built and read back here, in one place), the models and workloads selected, and the plan
of checks in a deterministic order."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from pytest_flopcheck.model.registration import NO_ANALYTIC, ModelRegistration
from pytest_flopcheck.model.registry import Registry
from pytest_flopcheck.text import shorten
from pytest_flopcheck.verification.compare import check_path

PIPELINE = "pipeline"

LAYER = "test_layer"
PARAMS = "test_params"
END_TO_END = "test_end_to_end"
GENERATION = "test_generation"
IO = "test_io"
MEMORY = "test_memory"
TRAFFIC = "test_traffic"
TRAFFIC_METRICS = ("elementwise_bytes", "elementwise_ops")
PARALLEL = "test_parallel"
PARALLEL_METRICS = ("flops", "collective_bytes", "collectives")
"""What test_parallel compares on one rank of a layout: FLOPs on every claiming node, and the
collectives' bytes and count on every module a group claims whole."""
LAYOUT_MARK = "@"
"""Joins a stage and a layout in a test id: ``diffusion_core@u2`` (one rank of Ulysses 2)."""
"""What test_traffic compares: the elementwise ops' bytes and their number."""
LIVE_PEAK = "live_peak_bytes"
"""The metric test_memory compares within the stage's memory tolerance: the live peak beyond the
weights."""
KINDS = (LAYER, PARAMS, IO, TRAFFIC, END_TO_END, MEMORY, PARALLEL, GENERATION)

GENERATION_STAGE = "generation"
"""The stage name under which a tiny end-to-end generation is recorded."""


class SelectionError(ValueError):
    """A selection names a model or workload that is not registered; ``field`` is "models" or
    "workloads", so that the front end can name its own option."""

    def __init__(self, field: str, detail: str) -> None:
        super().__init__(detail)
        self.field = field
        self.detail = detail


@attrs.frozen
class Case:
    """One generated check: a layer's FLOPs, a module's parameters, or a total."""

    kind: str
    model: str
    workload: str
    stage: str
    layer: str = ""

    @property
    def id(self) -> str:
        if self.kind == GENERATION:
            return f"{self.model}/{self.workload}"
        return check_path(self.model, self.workload, self.stage, self.layer)

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.id}]"

    @classmethod
    def parse(cls, name: str) -> Case | None:
        """The case a test name (``test_layer[m/w/s/layer]``) stands for, or None."""
        kind, bracket, rest = name.partition("[")
        if kind not in KINDS or not bracket or not rest.endswith("]"):
            return None
        parts = rest[:-1].split("/")
        if kind == GENERATION:
            return cls(kind, parts[0], parts[1], GENERATION_STAGE) if len(parts) == 2 else None
        if len(parts) not in (3, 4):
            return None
        return cls(kind, *parts)


def parse_list(value: str | Sequence[str] | None) -> list[str]:
    """``"a,b"`` or ``["a", "b,c"]`` as a list of non-empty names, each once, in order."""
    if value is None:
        return []
    items = [value] if isinstance(value, str) else list(value)
    names = [name.strip() for item in items for name in item.split(",") if name.strip()]
    return list(dict.fromkeys(names))


@attrs.define
class Selection:
    """The models and workloads a run verifies, checked against the registry."""

    registry: Registry
    models: list[str]
    workload_filter: list[str]

    def __attrs_post_init__(self) -> None:
        unknown = [name for name in self.models if name not in self.registry.models]
        if unknown:
            raise SelectionError(
                "models",
                f"model {', '.join(map(shorten, unknown))} is not registered; "
                f"registered models: {self.registry.describe()}",
            )
        bare = [name for name in self.models if self.registry.models[name].analytic is None]
        if bare:
            raise SelectionError(
                "models",
                f"model {bare[0]} registers no analytic model yet, so there is nothing to verify "
                f"({NO_ANALYTIC.replace('MODEL', bare[0])})",
            )
        known = {
            w
            for name in self.models
            for w in [*self.registry.models[name].workloads, *self.registry.models[name].generations]
        }
        missing = [w for w in self.workload_filter if w not in known]
        if missing:
            raise SelectionError(
                "workloads",
                f"workload {', '.join(map(shorten, missing))} is not defined by {', '.join(self.models)}; "
                f"defined workloads: {', '.join(sorted(known)) or '(none)'}",
            )

    def registration(self, model: str) -> ModelRegistration:
        return self.registry.models[model]

    def workloads(self, model: str) -> list[str]:
        ids = list(self.registration(model).workloads)
        return [w for w in ids if w in self.workload_filter] if self.workload_filter else ids
