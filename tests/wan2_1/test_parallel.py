"""Layouts against diffusers' context parallelism beyond the registered checks: a batch of two
(every check runs one sample, where some of the parallel attention's permutes and the output's
join are views): FLOPs, collectives, elementwise traffic and rank 0's live peak, exactly."""

from __future__ import annotations

import attrs
import pytest

from pytest_flopcheck import Layout
from pytest_flopcheck.model.registry import load_registry

pytest.importorskip("torch")
pytest.importorskip("diffusers")


@pytest.mark.parametrize(
    "layout", [Layout(ulysses=2), Layout(ring=2), Layout(ulysses=2, ring=2)], ids=lambda x: x.slug
)
def test_a_batch_of_two_is_exact_on_one_rank(layout: Layout) -> None:
    from pytest_flopcheck.analytic.tree import live_peak
    from pytest_flopcheck.reference.counting import count_reference
    from pytest_flopcheck.reference.parallel import fake_process_group

    reg = load_registry().models["wan2_1"]
    assert reg.parallel is not None
    assert reg.parallel.reference is not None
    w = attrs.evolve(reg.workloads["W-001"], batch_size=2)
    with fake_process_group(layout.gpus):
        counts = count_reference(reg.parallel.reference(w, "diffusion_core", layout, "meta"), "meta")
    tree = reg.parallel.sharded_tree(w, "diffusion_core", layout)
    metrics = ("flops", "collective_bytes", "collectives", "elementwise_bytes", "elementwise_ops")
    assert [getattr(tree.total, m) for m in metrics] == [counts.value("", False, m) for m in metrics]
    assert live_peak(tree) == counts.peak_bytes - counts.weight_bytes
    for node in tree.leaves():
        if node.reference is not None and node.metrics.elementwise_ops:
            own = node.reference_own
            assert (node.total.elementwise_bytes, node.total.elementwise_ops) == (
                counts.value(node.reference, own, "elementwise_bytes"),
                counts.value(node.reference, own, "elementwise_ops"),
            ), node.id
