"""The cost tree: sums, repeats, ids, traversal."""

from __future__ import annotations

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_flopcheck import layers
from pytest_flopcheck.analytic.tree import METRICS, CostNode, Metrics, group, with_repeat


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
    from pytest_flopcheck.analytic.tree import Renamer

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

    from pytest_flopcheck.analytic.tree import Renamer

    with pytest.raises(ValueError, match=r"node id 'other' does not start with 'blocks.0'"):
        Renamer(group("blocks.0", "b", [leaf("other", 1)]), "blocks.0", "x")


def test_closed_form_decode_steps_equal_their_sum_and_build_in_constant_time() -> None:
    import time

    from pytest_flopcheck import closed_form_calls, layers
    from pytest_flopcheck.analytic.tree import Metrics

    def step(kv_len: int) -> Metrics:
        return layers.attention_core(
            "attn", "attention", batch=1, heads=10, q_len=1, kv_len=kv_len, head_dim=128, cache_len=kv_len,
            dtype_bytes=2, reference=None,
        ).metrics  # fmt: skip

    prompt, steps = 1000, 256
    looped = [step(prompt + s + 1) for s in range(steps)]
    # closed form: attention FLOPs and bytes are linear in kv_len, so the steps sum to an arithmetic series
    first, last = step(prompt + 1), step(prompt + steps)
    total = Metrics(
        flops=(first.flops + last.flops) * steps // 2,
        io_bytes=(first.io_bytes + last.io_bytes) * steps // 2,
        activation_bytes=first.activation_bytes * steps,
        cache_bytes=last.cache_bytes,
    )
    node = closed_form_calls("decode.attn", "attention", total=total, calls=steps, largest=last)
    assert node.metrics.flops == sum(m.flops for m in looped)
    assert node.metrics.io_bytes == sum(m.io_bytes for m in looped)
    assert node.per_call == last
    start = time.perf_counter()
    for _ in range(1000):
        closed_form_calls("decode.attn", "attention", total=total, calls=10**9, largest=last)
    assert time.perf_counter() - start < 1.0  # no per-step work, however many steps


def test_calls_survive_renaming_and_are_validated() -> None:
    from pytest_flopcheck import closed_form_calls
    from pytest_flopcheck.analytic.tree import Metrics, Renamer, check_tree, group

    leaf = closed_form_calls(
        "blocks.0.attn", "attention", total=Metrics(flops=10), calls=5, largest=Metrics(flops=4)
    )
    copy = Renamer(group("blocks.0", "block", [leaf]), "blocks.0", "blocks.0")("blocks.1", "blocks.1")
    assert (copy.children[0].calls, copy.children[0].per_call) == (5, Metrics(flops=4))
    with pytest.raises(ValueError, match="calls 0 is not allowed"):
        closed_form_calls("x", "c", total=Metrics(), calls=0, largest=Metrics())
    with pytest.raises(ValueError, match="its largest call exceeds the total"):
        closed_form_calls("x", "c", total=Metrics(flops=1), calls=2, largest=Metrics(flops=2))
    check_tree(group("", "root", [leaf]))


def test_live_peak_adds_what_groups_hold_to_the_largest_call_and_its_scratch() -> None:
    from pytest_flopcheck.analytic.tree import live_path, live_peak

    a = CostNode("a", "x", Metrics(io_bytes=110, weight_bytes=10), scratch_bytes=5)  # 100 + 5
    b = CostNode("b", "x", Metrics(io_bytes=90))
    block = group("block", "x", [a, b], held_bytes=7)
    root = group("", "x", [block, CostNode("c", "x", Metrics(io_bytes=111))], held_bytes=3)
    assert live_peak(block) == 7 + 105
    assert live_peak(root) == 3 + 112
    assert [node.id for node in live_path(root)] == ["", "block", "a"]


def test_merged_calls_peak_at_the_call_with_the_most_live_bytes() -> None:
    """The call with the most I/O need not hold the most: a smaller call with a large scratch
    (a materialised mask, say) sets the merged node's peak, not a mix of the two."""
    from pytest_flopcheck.analytic.tree import live_peak, merge_call_trees, merge_calls

    wide = CostNode("a", "x", Metrics(io_bytes=1_000, weight_bytes=10), scratch_bytes=50)  # 1,040
    masked = CostNode("a", "x", Metrics(io_bytes=400, weight_bytes=10), scratch_bytes=900)  # 1,290
    assert live_peak(merge_calls("a", "x", [wide, masked])) == 1_290
    assert (
        live_peak(merge_calls("a", "x", [wide, CostNode("a", "x", masked.metrics, scratch_bytes=100)]))
        == 1_040
    )
    trees = [group("", "x", [leaf], held_bytes=7) for leaf in (wide, masked)]
    assert live_peak(merge_call_trees(trees)) == 7 + 1_290


@given(
    st.lists(st.integers(1, 10**10), min_size=0, max_size=6),
    st.integers(0, 10**9),
    st.integers(1, 64),
    st.sampled_from([1, 2, 4]),
)
def test_fsdp_gathers_each_units_padded_shard_once_per_run(
    units: list[int], rest: int, world: int, element_bytes: int
) -> None:
    """FSDP (the official code's FSDP1): every unit gathers its flat parameter once per run, each
    rank handing over ``ceil(params / world)`` elements; the rest of the stage is the root unit.
    The work and the weights are unchanged."""
    from pytest_flopcheck.model.parallel import FSDP_GATHER, fsdp_gathers

    blocks = [group(f"blocks.{i}", "block", [leaf(f"blocks.{i}.mm", 7, p)]) for i, p in enumerate(units)]
    tree = group("", "stage", [leaf("embed", 3, rest), *blocks])
    sharded = fsdp_gathers(tree, "blocks.", world, element_bytes)
    shard = [-(-p // world) * element_bytes for p in [*units, rest]]
    for i in range(len(units)):
        gather = sharded.find(f"blocks.{i}.{FSDP_GATHER}")
        assert (gather.total.collective_bytes, gather.total.collectives) == (shard[i], 1)
        assert sharded.find(f"blocks.{i}").total.collective_bytes == shard[i]
    assert sharded.find(FSDP_GATHER).total.collective_bytes == shard[-1]
    assert sharded.total.collectives == len(units) + 1
    total = (sum(units) + rest) * element_bytes
    assert total <= world * sharded.total.collective_bytes < total + world * (len(units) + 1) * element_bytes
    assert (sharded.total.flops, sharded.total.params) == (tree.total.flops, tree.total.params)


@given(
    st.lists(st.integers(1, 10**9), min_size=0, max_size=6),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
    st.integers(0, 10**9),
)
def test_fsdp_holds_the_root_and_the_largest_unit_gathered(
    units: list[int], rest: int, scratch: int, held: int
) -> None:
    """While a stage runs, FSDP1 holds its root unit and one other unit, the largest, gathered.
    FSDP2 keeps a unit's all-gather output beside its parameters until the next unit's copy-out:
    in a unit's forward the root and the unit twice beside the live set's peak; at a unit's
    copy-out also the previous output (the root's for the first unit) beside what the stage holds."""
    from pytest_flopcheck.analytic.tree import live_peak
    from pytest_flopcheck.model.parallel import fsdp2_live_peak, fsdp_gathered_params

    def weighted(node_id: str, params: int) -> CostNode:  # bf16 weights
        return CostNode(node_id, "x", Metrics(flops=7, params=params, weight_bytes=2 * params, io_bytes=7))

    blocks = [
        group(f"blocks.{i}", "block", [attrs.evolve(weighted(f"blocks.{i}.mm", p), scratch_bytes=scratch)])
        for i, p in enumerate(units)
    ]
    tree = group("", "stage", [weighted("embed", rest), *blocks], held_bytes=held)
    largest = max(units, default=0)
    assert fsdp_gathered_params(tree, "blocks.") == rest + largest
    assert fsdp_gathered_params(tree, "") == tree.total.params  # no units: the root holds all
    element = 2
    during = live_peak(tree) + (rest + 2 * largest) * element
    copy_out = held + (rest + max(rest, largest) + 2 * largest) * element
    peak, gathered = fsdp2_live_peak(tree, "blocks.")
    assert peak == max(during, copy_out)
    assert gathered == peak - (live_peak(tree) if during >= copy_out else held)


def test_an_fsdp_unit_must_be_a_group() -> None:
    from pytest_flopcheck.model.parallel import fsdp_gathers

    with pytest.raises(ValueError, match=r"'blocks\.0' is a leaf"):
        fsdp_gathers(group("", "stage", [leaf("blocks.0", 1, 4)]), "blocks.", 2, 2)


def test_a_split_is_checked_only_by_a_check_with_all_of_it() -> None:
    """A layout's split of a stage is verified by a check of that stage whose layout has every
    kind of split it has (Ulysses × ring needs both at once); data replicas are no split."""
    from pytest_flopcheck.model.parallel import Layout, Parallel

    checks = [
        ("W", "core", Layout(ulysses=2)),
        ("W", "core", Layout(ring=2)),
        ("W", "core", Layout(ulysses=2, fsdp=("core",))),
    ]
    p = Parallel(analytic=lambda w, s, layout: leaf(s, 1, 1), validate=lambda w, layout: None, checks=checks)
    assert p.split_check("core", Layout(ulysses=8), True) == ("Ulysses", "u2")
    assert p.split_check("core", Layout(ulysses=4, fsdp=("core",)), True) == ("Ulysses × FSDP", "u2-fsdp")
    assert p.split_check("core", Layout(ulysses=2, ring=2), True) == ("Ulysses × ring", "")
    assert p.split_check("core", Layout(ulysses=2, cfg=2), True) == ("Ulysses × CFG parallel", "")
    assert p.split_check("text", Layout(ulysses=2, fsdp=("text",)), False) == ("FSDP", "")
    assert p.split_check("text", Layout(ulysses=2), False) == ("", "")  # the layout leaves it whole
    assert p.split_check("core", Layout(data=4), True) == ("", "")  # replicas exchange nothing
    assert p.split_check("core", Layout(tensor=2, data=2), True) == ("tensor parallel", "")
    # a stage running another's weights is split by FSDP when its owner is sharded
    assert p.split_check("core_again", Layout(fsdp=("core",)), False, owner="core") == ("FSDP", "")


@given(
    st.integers(1, 16),
    st.integers(1, 16),
    st.integers(1, 2),
    st.integers(1, 16),
    st.integers(1, 16),
    st.booleans(),
)
def test_a_layout_reads_back_from_its_slug(u: int, r: int, c: int, t: int, d: int, sharded: bool) -> None:
    from pytest_flopcheck.model.parallel import Layout, LayoutError, parse_layout, parse_slug

    layout = Layout(ulysses=u, ring=r, cfg=c, tensor=t, data=d, fsdp=("core",) if sharded else ())
    assert layout.gpus == u * r * c * t * d
    assert parse_layout(layout.name) == layout
    if layout.slug == "single-fsdp":  # one GPU shards nothing: no slug names it
        return
    assert parse_slug(layout.slug, ("core",)) == layout
    with pytest.raises(LayoutError, match="is not a slug"):
        parse_slug(layout.slug + "x", ("core",))
