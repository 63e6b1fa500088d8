"""Analytic trees: structure, parameters, invariants, and no torch on the analytic path."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pytest_flopcheck.analytic import ops
from wan_models.wan2_1 import STAGES, STANDARD_WORKLOADS, Workload, stage_tree
from wan_models.wan2_1.dit import dit_forward


def test_importing_the_model_package_does_not_import_torch() -> None:
    code = (
        "import sys, wan_models.wan2_1, wan_models.wan2_1.registration as r; "
        "from wan_models.wan2_1 import pipeline_tree, Workload; pipeline_tree(Workload()); r.registration(); "
        "print('torch' in sys.modules, 'diffusers' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False", "False"]


@pytest.mark.parametrize(("variant", "params"), [("T2V-14B", 14_288_491_584), ("T2V-1.3B", 1_418_996_800)])
def test_dit_parameter_totals(variant: str, params: int) -> None:
    assert dit_forward(Workload(variant=variant, height=480, width=832)).total.params == params


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("workload", sorted(STANDARD_WORKLOADS))
def test_parents_sum_children_and_ids_are_unique(stage: str, workload: str) -> None:
    tree = stage_tree(STANDARD_WORKLOADS[workload], stage)
    ids = [node.id for node in tree.walk()]
    assert len(ids) == len(set(ids))
    for node in tree.walk():
        if node.children:
            total = node.children[0].total
            for child in node.children[1:]:
                total = total + child.total
            assert node.metrics == total, node.id


def test_dit_kv_cache_is_zero_with_the_reason() -> None:
    tree = dit_forward(STANDARD_WORKLOADS["W-003"])
    assert tree.total.cache_bytes == 0
    assert "KV cache is 0" in tree.note


def test_dit_self_attention_formula_by_hand() -> None:
    w = STANDARD_WORKLOADS["W-003"]
    core = dit_forward(w).find("blocks.12.self_attn.core")
    assert core.total.flops == ops.attention_flops(1, 40, 14_400, 14_400, 128) == 4 * 40 * 14_400**2 * 128
    cross = dit_forward(w).find("blocks.12.cross_attn.core")
    assert cross.total.flops == 4 * 40 * 14_400 * 512 * 128
    assert core.reference == "blocks.12.attn1"
    assert core.reference_own


def test_vae_feature_cache_is_reported() -> None:
    tree = stage_tree(STANDARD_WORKLOADS["W-003"], "vae_decode")
    assert tree.total.cache_bytes > 0
    conv_in = tree.find("decoder.conv_in")
    assert conv_in.total.cache_bytes == 16 * 2 * 90 * 160 * 2  # z_dim × 2 frames × h × w × bf16


def test_categories_rank_the_dit() -> None:
    tree = dit_forward(STANDARD_WORKLOADS["W-003"])
    categories = {leaf.category for leaf in tree.leaves()}
    assert {
        "self_attention_core",
        "cross_attention_core",
        "self_attention_projection",
        "cross_attention_projection",
        "ffn",
        "patch_embedding",
        "head",
    } <= categories


def test_vae_peaks_are_one_chunks_not_the_sum_over_chunks() -> None:
    """The coder runs one chunk at a time: a layer is one call per chunk, and the peak is the
    largest call's (W-004: the 0.92 GB conv the issue measured), whatever the video's length."""
    from pytest_flopcheck.sizing.build import peak_activation_bytes
    from wan_models.wan2_1.pipeline import stage_tree as tree

    short, long = Workload(variant="T2V-1.3B", frames=9, height=480, width=832), STANDARD_WORKLOADS["W-004"]
    for stage in ("vae_decode", "vae_encode"):
        assert peak_activation_bytes(tree(short, stage)) == peak_activation_bytes(tree(long, stage))
        assert tree(long, stage).total.flops > tree(short, stage).total.flops
    assert round(peak_activation_bytes(tree(long, "vae_decode")) / 1e9, 2) == 0.92
    conv = next(node for node, _ in tree(long, "vae_decode").runs() if node.id == "decoder.conv_in")
    assert conv.calls == long.latent_frames
