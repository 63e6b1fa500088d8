"""The cost tree: sums, repeats, ids, traversal."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from pytest_flopcheck import layers
from pytest_flopcheck.tree import METRICS, CostNode, Metrics, group, with_repeat


def leaf(node_id: str, flops: int, params: int = 0, cache: int = 0) -> CostNode:
    return CostNode(node_id, "x", Metrics(flops=flops, params=params, io_bytes=flops, cache_bytes=cache))


@given(st.lists(st.tuples(st.integers(0, 10**30), st.integers(0, 10**12), st.integers(1, 1000)), max_size=8))
def test_parent_is_the_sum_of_its_children(values: list[tuple[int, int, int]]) -> None:
    children = [with_repeat(leaf(f"c{i}", f, p), r) for i, (f, p, r) in enumerate(values)]
    parent = group("", "root", children)
    assert parent.metrics.flops == sum(f * r for f, _, r in values)
    assert parent.metrics.io_bytes == sum(f * r for f, _, r in values)
    assert parent.metrics.params == sum(p for _, p, _ in values)  # weights are not re-created by repeats


def test_repeat_scales_work_not_state() -> None:
    node = with_repeat(leaf("a", 10, params=3, cache=5), 4)
    assert node.total == Metrics(flops=40, params=3, io_bytes=40, cache_bytes=5)


def test_walk_is_preorder_and_find_works() -> None:
    tree = group("", "root", [group("a", "g", [leaf("a.x", 1), leaf("a.y", 2)]), leaf("b", 3)])
    assert [n.id for n in tree.walk()] == ["", "a", "a.x", "a.y", "b"]
    assert [n.id for n in tree.leaves()] == ["a.x", "a.y", "b"]
    assert tree.find("a.y").metrics.flops == 2
    assert tree.find("a.y").name == "y"


def test_metrics_are_exact_integers_for_huge_values() -> None:
    big = layers.linear(
        "l", "x", rows=10**12, in_features=10**6, out_features=10**6, bias=True, dtype_bytes=2, reference=None
    )
    assert big.metrics.flops == 2 * 10**24
    assert all(isinstance(v, int) for v in big.metrics.as_dict().values())
    assert list(big.metrics.as_dict()) == list(METRICS)


def test_renamer_copies_ids_and_references_and_shares_metrics() -> None:
    from pytest_flopcheck.tree import Renamer

    template = group(
        "blocks.0", "block", [leaf("blocks.0.a", 1), leaf("blocks.0.b", 2)], reference="enc.block.0"
    )
    template = CostNode(
        template.id,
        template.category,
        template.metrics,
        (CostNode("blocks.0.a", "x", Metrics(flops=1), reference="enc.block.0.q"), template.children[1]),
        reference="enc.block.0",
    )
    copy = Renamer(template, "blocks.0", "enc.block.0")("blocks.7", "enc.block.7")
    assert [n.id for n in copy.walk()] == ["blocks.7", "blocks.7.a", "blocks.7.b"]
    assert [n.reference for n in copy.walk()] == ["enc.block.7", "enc.block.7.q", None]
    assert copy.metrics is template.metrics


def test_renamer_rejects_a_template_outside_its_prefix() -> None:
    import pytest

    from pytest_flopcheck.tree import Renamer

    with pytest.raises(ValueError, match=r"node id 'other' does not start with 'blocks.0'"):
        Renamer(group("blocks.0", "b", [leaf("other", 1)]), "blocks.0", "x")
