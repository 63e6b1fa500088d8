"""Property tests: random valid workloads against the reference on meta, and scaling laws."""

from __future__ import annotations

import json

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_flopcheck.analytic.tree import CostNode
from pytest_flopcheck.reference.counting import build_and_count, coverage_gaps
from wan_models.wan2_1 import STAGES, Workload, pipeline_tree, runs_per_generation, stage_tree

sizes = st.integers(1, 45).map(lambda n: 16 * n)  # up to 720


def workloads(max_frames: int = 81) -> st.SearchStrategy[Workload]:
    return st.builds(
        Workload,
        variant=st.sampled_from(["T2V-14B", "T2V-1.3B"]),
        batch_size=st.integers(1, 3),
        frames=st.integers(1, max_frames),
        height=sizes,
        width=sizes,
        steps=st.integers(1, 50),
        text_len=st.integers(1, 512),
        guidance=st.booleans(),
    )


def check_against_reference(w: Workload, stage: str, layers: list[str]) -> None:
    from wan_models.wan2_1 import reference

    tree = stage_tree(w, stage)
    counts = build_and_count(lambda: reference.build(w, stage, "meta"), "meta")
    assert tree.total.flops == counts.total_flops
    assert coverage_gaps(tree, counts) == []
    for layer in layers:
        node = tree.find(layer)
        assert node.reference is not None
        assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), layer
        assert node.total.params == counts.value(node.reference, node.reference_own, "params"), layer


@pytest.mark.reference
@settings(max_examples=6)
@given(workloads())
def test_random_workloads_dit_matches_reference(w: Workload) -> None:
    pytest.importorskip("diffusers")
    check_against_reference(
        w,
        "diffusion_core",
        [
            "blocks.0.self_attn.core",
            "blocks.1.cross_attn.core",
            "blocks.0.ffn",
            "patch_embedding",
            "text_embedding",
        ],
    )


@pytest.mark.reference
@settings(max_examples=4)
@given(workloads())
def test_random_workloads_text_encoder_matches_reference(w: Workload) -> None:
    pytest.importorskip("transformers")
    check_against_reference(w, "text_encoder", ["blocks.0.attn.core", "blocks.5.ffn", "token_embedding"])


@pytest.mark.reference
@settings(max_examples=4)
@given(workloads(max_frames=33))
def test_random_workloads_vae_matches_reference(w: Workload) -> None:
    pytest.importorskip("diffusers")
    check_against_reference(
        w,
        "vae_decode",
        [
            "decoder.mid_block.attentions.0.core",
            "decoder.up_blocks.1",
            "decoder.up_blocks.0.upsamplers.0.time_conv",
        ],
    )


def flops(w: Workload) -> dict[str, int]:
    tree = pipeline_tree(w)
    return {child.id: child.total.flops for child in tree.children} | {"pipeline": tree.total.flops}


@given(workloads())
def test_pipeline_total_is_the_exact_sum_of_stages(w: Workload) -> None:
    tree = pipeline_tree(w)
    runs = runs_per_generation(w)
    assert tree.total.flops == sum(runs[s] * stage_tree(w, s).total.flops for s in STAGES)
    assert [c.id for c in tree.children] == list(STAGES)


@given(workloads(), st.integers(2, 4))
def test_linear_in_batch(w: Workload, k: int) -> None:
    base, scaled = flops(w), flops(attrs.evolve(w, batch_size=w.batch_size * k))
    assert scaled == {name: k * value for name, value in base.items()}


@given(workloads())
def test_linear_in_steps(w: Workload) -> None:
    one, two, three = (flops(attrs.evolve(w, steps=s)) for s in (w.steps, w.steps + 1, w.steps + 2))
    per_step = two["diffusion_core"] - one["diffusion_core"]
    assert three["pipeline"] - two["pipeline"] == two["pipeline"] - one["pipeline"] == per_step
    assert one["diffusion_core"] == w.steps * per_step


@pytest.mark.parametrize("knob", ["frames", "height", "width", "text_len"])
@given(w=workloads())
def test_non_decreasing_in_every_knob(knob: str, w: Workload) -> None:
    step = 16 if knob in ("height", "width") else 1
    before, after = flops(w), flops(attrs.evolve(w, **{knob: getattr(w, knob) + step}))
    assert all(after[name] >= before[name] for name in before), (knob, before, after)


def test_resolution_increase_is_attributed_to_named_layers() -> None:
    low, high = Workload(height=480, width=832), Workload(height=720, width=1280)
    grew = [
        n.id
        for n, m in zip(
            stage_tree(low, "diffusion_core").walk(), stage_tree(high, "diffusion_core").walk(), strict=True
        )
        if m.total.flops > n.total.flops and not n.children
    ]
    assert "blocks.0.self_attn.core" in grew
    assert "text_embedding.0" not in grew  # the text side does not depend on the video size


def test_huge_workload_is_exact_finite_and_valid_json() -> None:
    w = Workload(height=2160, width=3840, frames=1001, steps=1000, batch_size=64)
    tree: CostNode = pipeline_tree(w)
    metrics = [node.total.as_dict() for node in tree.walk()]
    assert all(isinstance(v, int) and v >= 0 for m in metrics for v in m.values())
    assert tree.total.flops > 2**63  # beyond int64: Python integers keep it exact
    json.loads(json.dumps(metrics, allow_nan=False))
    assert any("extrapolation" in note for note in w.warnings())


@given(workloads())
def test_fast_stage_totals_equal_the_full_trees(w: Workload) -> None:
    from wan_models.wan2_1.pipeline import stage_totals

    for stage in STAGES:
        assert stage_totals(w, stage) == stage_tree(w, stage).total, stage


@settings(max_examples=40, deadline=None)
@given(
    st.sampled_from([1, 2, 4]),
    st.sampled_from([1, 2]),
    st.integers(1, 8).map(lambda n: 128 * n),
    st.integers(1, 8).map(lambda n: 128 * n),
    st.integers(1, 3),
    st.integers(1, 512),
)
def test_sequence_parallel_splits_the_blocks_and_repeats_the_text_keys(
    ulysses: int, ring: int, height: int, width: int, batch: int, text_len: int
) -> None:
    """One rank of Ulysses U × ring R does 1/S of every block's work except the cross-attention's
    text key and value projections, which every rank repeats; its collectives are the q, k, v and
    output all-to-alls (Ulysses) and one gather of k and v (ring), each of one rank's tokens."""
    from pytest_flopcheck import Layout
    from wan_models.wan2_1.dit import block

    w = Workload(batch_size=batch, frames=5, height=height, width=width, text_len=text_len)
    layout = Layout(ulysses=ulysses, ring=ring)
    s = layout.sequence
    full, rank = block(0, w.dit, w), block(0, w.dit, w, layout)
    nodes = {n.id: n for n in full.walk()}
    repeated = sum(nodes[f"blocks.0.cross_attn.{p}"].total.flops for p in ("k", "v"))
    assert (full.total.flops - repeated) % s == 0
    assert rank.total.flops == (full.total.flops - repeated) // s + repeated
    local = batch * w.tokens // s * w.dit.dim * w.dtype_bytes
    expected = (4 * local if ulysses > 1 else 0) + (2 * local if ring > 1 else 0)
    assert rank.total.collective_bytes == expected
    assert rank.total.collectives == (4 if ulysses > 1 else 0) + (1 if ring > 1 else 0)
