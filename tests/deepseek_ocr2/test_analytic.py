"""The DeepSeek-OCR-2 analytic side: no torch, workload validation, shared weights."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepseek_models.deepseek_ocr2.stages import STAGES, stage_tree
from deepseek_models.deepseek_ocr2.workload import STANDARD_WORKLOADS, Page
from pytest_flopcheck import WorkloadError


def test_importing_the_registration_and_building_trees_does_not_import_torch() -> None:
    code = (
        "import sys, deepseek_models.deepseek_ocr2.registration as r; "
        "from deepseek_models.deepseek_ocr2.stages import stage_tree, STAGES; "
        "from deepseek_models.deepseek_ocr2.workload import Page; "
        "[stage_tree(Page(crops=2), s) for s in STAGES]; reg = r.registration(); "
        "[g() for g in reg.generations.values()]; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("crops", 10, "it must be an integer from 0 to 9"),
        ("new_tokens", 1, "it must be an integer >= 2"),
        ("pages", 0, "it must be an integer >= 1"),
        ("dtype", "fp8", "choose one of fp32, bf16, fp16"),
    ],
)
def test_bad_workloads_name_the_field(field: str, value: object, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as info:
        Page(**{field: value})  # type: ignore[arg-type]
    assert info.value.field == field


def test_image_tokens_follow_the_views() -> None:
    assert Page(crops=0).image_tokens == 256 + 1
    assert Page(crops=6).image_tokens == 6 * 144 + 256 + 1


def test_prefill_and_decode_share_weights_and_every_standard_workload_builds() -> None:
    w = STANDARD_WORKLOADS["crops-long"]
    prefill, decode = stage_tree(w, "prefill"), stage_tree(w, "decode")
    assert prefill.total.params == decode.total.params == 2_934_734_080
    for workload in STANDARD_WORKLOADS.values():
        for stage in STAGES:
            assert stage_tree(workload, stage).total.flops > 0


def test_the_serving_kv_cache_is_the_decode_trees_cache_at_the_last_step() -> None:
    from deepseek_models.deepseek_ocr2.registration import registration

    spec = registration().serving
    assert spec is not None
    w = Page(pages=3, crops=2, new_tokens=40)
    final = spec.context(w) + spec.new_tokens(w) - 1
    assert stage_tree(w, "decode").total.cache_bytes == spec.sequences(
        w
    ) * final * spec.cache_bytes_per_token(w)


def test_a_decode_step_reads_only_the_experts_its_tokens_reach() -> None:
    from pytest_flopcheck import layers

    def routed_io(tokens: int) -> int:
        moe = layers.moe(
            "m", tokens=tokens, hidden=8, experts=64, top_k=6, expert_intermediate=4,
            shared_intermediate=0, dtype_bytes=2, reference=None,
        )  # fmt: skip
        (routed,) = [c for c in moe.children if c.id == "m.experts"]
        activations = tokens * 6 * (8 + 4 + 2 * 4 + 8) * 2
        offsets = 2 * 64 * 4  # each grouped GEMM reads one int32 offset per expert
        assert routed.io_exact == (tokens * 6 >= 64)  # fewer rows than experts: physical, not per-op
        return routed.metrics.io_bytes - activations - offsets

    per_expert = 3 * 8 * 4 * 2
    assert routed_io(1) == 6 * per_expert  # one token: its top-6 experts
    assert routed_io(10) == 60 * per_expert
    assert routed_io(11) == 64 * per_expert  # 66 rows can reach every expert
