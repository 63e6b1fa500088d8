"""The DeepSeek models under tensor parallelism: the analytic rank against transformers' own
tensor-parallel plan run on a fake process group (the generated ``test_parallel`` checks hold
t2 at one workload; these hold v1's decoder at degree 5, which splits the MLP widths unevenly),
and the layouts the framework refuses (OCR-2's vision encoder has 14 heads and 2 key/value
heads, so only degree 2 divides every head count it splits)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from deepseek_models.deepseek_ocr.registration import registration as v1_registration
from deepseek_models.deepseek_ocr2.registration import registration
from deepseek_models.shared.config import DECODER
from pytest_flopcheck import Layout, LayoutError


@pytest.mark.parametrize("stage", ["prefill", "decode"])
def test_a_rank_matches_transformers_tensor_parallel_plan(stage: str) -> None:
    """FLOPs, collective bytes and calls, and the rank's weight shards exactly; the live peak
    within the stage's memory tolerance (the same small gap as on one GPU). Degree 5 splits the
    dense MLP's 6,848 columns unevenly: rank 0 holds 1,370."""
    tensor = 5
    pytest.importorskip("transformers")
    from pytest_flopcheck.analytic.tree import live_peak
    from pytest_flopcheck.reference.counting import count_reference
    from pytest_flopcheck.reference.parallel import fake_process_group

    reg = v1_registration()
    assert reg.parallel is not None
    assert reg.parallel.reference is not None
    w = reg.workloads["base-short"]
    layout = Layout(tensor=tensor)
    reg.parallel.validate(w, layout)
    with fake_process_group(tensor):
        counts = count_reference(reg.parallel.reference(w, stage, layout, "meta"), "meta")
    tree = reg.parallel.analytic(w, stage, layout)
    assert tree.total.flops == counts.total_flops
    assert tree.total.collective_bytes == counts.value("", False, "collective_bytes", ())
    assert tree.total.collectives == counts.value("", False, "collectives", ())
    assert tree.total.weight_bytes == counts.weight_bytes
    measured = counts.peak_bytes - counts.weight_bytes
    assert abs(live_peak(tree) - measured) <= 0.01 * measured


@settings(max_examples=25, deadline=None)
@given(st.sampled_from([1, 2, 5, 10]), st.integers(1, 4), st.integers(1, 64))
def test_a_rank_does_its_share_and_repeats_the_routed_experts(tensor: int, pages: int, steps: int) -> None:
    """Summed over the ranks, the split work is the one-GPU work (rank 0's share times the degree,
    more where a width does not divide); the router and routed experts
    are every rank's; one all-reduce after the embedding, each attention, each MLP (dense or
    shared experts) and one all-gather of the logits per forward."""
    import attrs

    reg = v1_registration()
    assert reg.parallel is not None
    w = attrs.evolve(reg.workloads["base-short"], pages=pages, new_tokens=steps + 1)
    one = reg.parallel.analytic(w, "decode", Layout())
    rank = reg.parallel.analytic(w, "decode", Layout(tensor=tensor))
    forwards = w.decode_steps
    per_forward = 2 * DECODER.layers + 2 if tensor > 1 else 0
    assert rank.total.collectives == per_forward * forwards

    def routed(tree: object) -> int:
        return sum(n.total.flops for n in tree.walk() if n.id.endswith((".experts", ".gate")))  # type: ignore[attr-defined]

    assert routed(rank) == routed(one)
    split, whole = rank.total.flops - routed(rank), one.total.flops - routed(one)
    widths = (DECODER.dense_intermediate, DECODER.shared_intermediate, DECODER.vocab_size)
    if all(n % tensor == 0 for n in widths):
        assert tensor * split == whole
    else:  # rank 0 holds the larger share of a width the degree does not divide
        assert whole < tensor * split


def test_a_degree_that_splits_a_head_is_refused() -> None:
    v1, v2 = v1_registration(), registration()
    assert v1.parallel is not None
    assert v2.parallel is not None
    w1, w2 = v1.workloads["base-short"], v2.workloads["single-short"]
    with pytest.raises(
        LayoutError, match=r"tensor=4 does not divide the decoder's attention heads \(10\).*use 2, 5, 10$"
    ) as e:
        v1.parallel.validate(w1, Layout(tensor=4))
    assert e.value.field == "tensor"
    with pytest.raises(
        LayoutError, match=r"tensor=5 does not divide the vision encoder's attention heads \(14\).*use 2$"
    ):
        v2.parallel.validate(w2, Layout(tensor=5))
    with pytest.raises(LayoutError, match="tensor=T"):
        v2.parallel.validate(w2, Layout(ulysses=2))
    v1.parallel.validate(w1, Layout(tensor=5))
    v2.parallel.validate(w2, Layout(tensor=2, data=1))


def test_replicas_of_a_tensor_parallel_group_are_not_run_as_one_reference() -> None:
    """transformers meshes every rank of the process group into the tensor-parallel group, so the
    reference runs one group alone and says so for a layout with replicas too."""
    import attrs

    from pytest_flopcheck import ReferenceSkipped

    reg = registration()
    assert reg.parallel is not None
    assert reg.parallel.reference is not None
    w = attrs.evolve(reg.workloads["single-short"], pages=4)
    with pytest.raises(ReferenceSkipped, match="ask for tensor=2"):
        reg.parallel.reference(w, "prefill", Layout(tensor=2, data=2), "meta")
