"""xdist scheduling that keeps the checks of one reference on one worker.

With xdist's default ``load`` scheduling, the checks of one stage are spread over every worker,
so every worker needs (and, without the shared store, counts) nearly every reference. Grouping
the generated checks by (model, workload, stage) sends each reference's checks to one worker;
the largest groups go first. Other tests stay one unit each, as under ``load``. The pipeline
checks read their stages' counts from the shared store (see :mod:`pytest_flopcheck.reference.store`).

xdist's ``loadscope`` (3.8) mishandles a worker that dies: it keeps the dead worker's collection,
so a replacement still collecting is taken for ready (KeyError, pytest-xdist issues 1189 and
1362); it puts the crashed test back in the queue, so a check that kills its worker kills every
replacement until the restarts run out (PR 1371); and it requeues finished tests, which can hang a
replacement with an empty batch (issue 1323). :class:`ReferenceScheduling` removes a dead worker
whole, marks the test it died on as done (xdist has already reported it as failed) and requeues
only the tests that did not run.

``loadscope`` also costs time quadratic in a unit's size, which is nothing for a test module and
most of the controller's time for a stage's thousands of checks: after each test it counts the
unfinished tests of every unit the worker holds, and it finds each test's position in the
collection by a linear search. :class:`ReferenceScheduling` keeps both: a unit counts its
unfinished tests as they finish, and each worker's positions are looked up in a table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from xdist.scheduler import LoadScopeScheduling

from pytest_flopcheck.plugin.items import NODE_PREFIX
from pytest_flopcheck.verification.cases import Case

CaseOf = Callable[[str], Case | None]


class Unit(dict[str, bool]):
    """A work unit (test id: finished) that keeps count of its unfinished tests."""

    def __init__(self, tests: dict[str, bool]) -> None:
        super().__init__(tests)
        self.pending = sum(not done for done in tests.values())

    def __setitem__(self, nodeid: str, done: bool) -> None:
        self.pending += int(not done) - int(not self.get(nodeid, True))
        super().__setitem__(nodeid, done)


class ReferenceScheduling(LoadScopeScheduling):  # type: ignore[misc]
    """``loadscope`` with one scope per reference (xdist's own LoadGroup/LoadFile pattern), safe
    when a worker dies."""

    def __init__(self, config: Any, log: Any, case_of: CaseOf) -> None:
        super().__init__(config, log)
        self.case_of = case_of
        self._positions: dict[Any, dict[str, int]] = {}

    def _split_scope(self, nodeid: str) -> str:
        """The work unit of a test: its reference for a generated check, else the test itself."""
        case = self.case_of(nodeid)
        return nodeid if case is None else f"{NODE_PREFIX}{case.model}/{case.workload}/{case.stage}"

    @property
    def collection_is_completed(self) -> bool:
        """Every first worker collected (as xdist); once scheduling began, every live worker
        did (a replacement for a dead one must finish collecting before it gets work)."""
        if self.collection is None:
            return bool(len(self.registered_collections) >= self.numnodes)
        return all(node in self.registered_collections for node in self.assigned_work)

    def _pending_of(self, workload: dict[str, dict[str, bool]]) -> int:
        return sum(
            unit.pending if isinstance(unit, Unit) else sum(not done for done in unit.values())
            for unit in workload.values()
        )

    def _assign_work_unit(self, node: Any) -> None:
        scope, tests = self.workqueue.popitem(last=False)
        unit = Unit(tests)
        self.assigned_work.setdefault(node, {})[scope] = unit
        positions = self._positions.get(node)
        if positions is None:
            positions = self._positions[node] = {}
            for i, nodeid in enumerate(self.registered_collections[node]):
                positions.setdefault(nodeid, i)  # the first, as list.index finds it
        node.send_runtest_some([positions[nodeid] for nodeid, done in unit.items() if not done])

    def remove_node(self, node: Any) -> str | None:
        workload: dict[str, dict[str, bool]] = self.assigned_work.pop(node, {})
        self.registered_collections.pop(node, None)
        self._positions.pop(node, None)
        pending = [
            (scope, nodeid) for scope, unit in workload.items() for nodeid, done in unit.items() if not done
        ]
        if not pending:
            return None
        crashed_scope, crashed = pending[0]  # the worker runs its tests in order: it died on the first
        workload[crashed_scope][crashed] = True
        for scope, unit in workload.items():
            left = {nodeid: False for nodeid, done in unit.items() if not done}
            if left:
                self.workqueue[scope] = left
        for other in list(self.assigned_work):
            if other in self.registered_collections:
                self._reschedule(other)
        return crashed

    def _reschedule(self, node: Any) -> None:
        if node not in self.registered_collections:  # a replacement still collecting
            return
        super()._reschedule(node)


def make_scheduler(config: Any, log: Any, case_of: CaseOf) -> Any:
    return ReferenceScheduling(config, log, case_of)
