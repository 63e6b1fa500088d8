"""xdist scheduling that keeps the checks of one reference on one worker.

With xdist's default ``load`` scheduling, the checks of one stage are spread over every worker,
so every worker needs (and, without the shared store, counts) nearly every reference. Grouping
the generated checks by (model, workload, stage) sends each reference's checks to one worker;
the largest groups go first. Other tests stay one unit each, as under ``load``. The pipeline
checks read their stages' counts from the shared store (see :mod:`pytest_flopcheck.store`).
"""

from __future__ import annotations

from typing import Any

from xdist.scheduler import LoadScopeScheduling

from pytest_flopcheck.session import Case

NODE_PREFIX = "flopcheck::"


def scope_of(nodeid: str) -> str:
    """The work unit of a test: its reference for a generated check, else the test itself."""
    if nodeid.startswith(NODE_PREFIX):
        case = Case.parse(nodeid[len(NODE_PREFIX) :])
        if case is not None:
            return f"{NODE_PREFIX}{case.model}/{case.workload}/{case.stage}"
    return nodeid


class ReferenceScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``loadscope`` with one scope per reference (xdist's own LoadGroup/LoadFile pattern)."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)


def make_scheduler(config: Any, log: Any) -> Any:
    return ReferenceScheduling(config, log)
