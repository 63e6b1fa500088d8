"""The xdist scheduler: one unit per reference, every test run once, pending counts kept."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from pytest_flopcheck.plugin.scheduling import ReferenceScheduling, Unit


class FakeNode:
    def __init__(self, name: str) -> None:
        self.gateway = SimpleNamespace(id=name)
        self.shutting_down = False
        self.sent: list[int] = []

    def send_runtest_some(self, indices: list[int]) -> None:
        self.sent += indices

    def shutdown(self) -> None:
        self.shutting_down = True


def case_of(nodeid: str) -> Any:
    if not nodeid.startswith("flopcheck::"):
        return None
    model, workload, stage = nodeid.split("[")[1].split("/")[:3]
    return SimpleNamespace(model=model, workload=workload, stage=stage)


def test_a_unit_counts_its_unfinished_tests() -> None:
    unit = Unit({"a": False, "b": True, "c": False})
    assert unit.pending == 2
    unit["a"] = True
    unit["a"] = True  # finishing twice counts once
    assert unit.pending == 1
    unit["d"] = False
    assert unit.pending == 2


def test_every_test_runs_once_and_a_reference_stays_on_one_worker(pytester: pytest.Pytester) -> None:
    references = [f"m/{w}/{s}" for w in ("a", "b") for s in ("x", "y")]
    collection = [f"test_plain.py::test_{i}" for i in range(5)] + [
        f"flopcheck::test_layer[{r}/layer{i}]" for r in references for i in range(40)
    ]
    config = pytester.parseconfig("--tx", "2*popen")
    scheduler = ReferenceScheduling(config, None, case_of)
    nodes = [FakeNode("gw0"), FakeNode("gw1")]
    for node in nodes:
        scheduler.add_node(node)
        scheduler.add_node_collection(node, collection)
    scheduler.schedule()
    ran: dict[str, str] = {}
    done = [0, 0]
    while not all(node.shutting_down and done[n] == len(node.sent) for n, node in enumerate(nodes)):
        for n, node in enumerate(nodes):  # each worker finishes the next test it was sent
            if done[n] < len(node.sent):
                index = node.sent[done[n]]
                done[n] += 1
                assert collection[index] not in ran
                ran[collection[index]] = node.gateway.id
                scheduler.mark_test_complete(node, index)
    assert sorted(ran) == sorted(collection)
    assert scheduler.tests_finished
    assert not scheduler.has_pending
    for reference in references:
        assert len({worker for nodeid, worker in ran.items() if f"[{reference}/" in nodeid}) == 1
