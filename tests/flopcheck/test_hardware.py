"""The GPU table and the per-kernel time model."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pytest_flopcheck.analytic import layers
from pytest_flopcheck.analytic.tree import CostNode, Kernel, Metrics, group, with_repeat
from pytest_flopcheck.sizing.hardware import (
    FA2_HOPPER,
    FA3_HOPPER,
    GPUS,
    MAMF_BF16,
    HardwareError,
    check_precision,
    lookup,
)
from pytest_flopcheck.sizing.timing import (
    LAUNCH,
    Execution,
    collective_seconds,
    gemm_efficiency,
    leaf_time,
    tree_time,
)

H100 = GPUS["H100-SXM"]


def test_table_covers_the_published_gpus_with_links_and_sources() -> None:
    required = {
        "H100-SXM",
        "H200",
        "A100-80GB",
        "B200",
        "RTX-5090",
        "L40S",
        "H20",
        "RTX-4090",
        "A800",
        "H800",
    }
    assert set(GPUS) >= required
    for gpu in GPUS.values():
        assert gpu.source
        assert gpu.bandwidth_gbs > 0
        assert gpu.sms > 0
        assert gpu.gpu_link_gbs > 0
        assert gpu.host_to_gpu_gbs.value > 0
        assert {"bf16", "fp16"} <= set(gpu.tflops)
        assert set(gpu.gemm) == set(gpu.tflops)  # an efficiency for every precision it has
        assert "fa2" in gpu.attention
        for constant in (*gpu.gemm.values(), *gpu.attention.values(), gpu.host_to_gpu_gbs):
            assert constant.source
            assert constant.assumed == constant.source.startswith("assumed")
    assert "fp8" not in GPUS["A100-80GB"].tflops
    assert GPUS["H800"].gpu_link_gbs < GPUS["H100-SXM"].gpu_link_gbs  # its NVLink is cut to 400 GB/s
    assert not H100.gemm["bf16"].assumed  # measured (MAMF) where a measurement exists
    assert GPUS["RTX-4090"].gemm["bf16"].assumed


def test_errors_list_the_choices() -> None:
    with pytest.raises(HardwareError, match="choose one of H100-SXM, H200"):
        lookup("TPUv5")
    with pytest.raises(HardwareError, match="not supported by A100-80GB: choose one of tf32, bf16, fp16"):
        check_precision(GPUS["A100-80GB"], "fp8")


def gemm(m: int, n: int, k: int) -> CostNode:
    return layers.linear(
        "l", "x", rows=m, in_features=k, out_features=n, bias=False, dtype_bytes=2, reference="l"
    )


def test_a_large_matmul_runs_at_the_measured_matmul_efficiency() -> None:
    node = gemm(128 * 132, 1024, 8192)  # 1,056 tiles: 8 full waves on 132 SMs
    efficiency = gemm_efficiency(H100, "bf16", node.kernel)
    assert efficiency == pytest.approx(MAMF_BF16["H100"].value)
    parts = leaf_time(node, H100, Execution("bf16"), True)
    assert parts.compute == pytest.approx(node.metrics.flops / (989.4e12 * efficiency))
    assert parts.memory == 0
    assert parts.kernels == 1


def test_a_shape_that_leaves_sms_idle_runs_slower() -> None:
    # 133 tiles of 128 x 128 on 132 SMs: a second wave for one tile
    full = Kernel("gemm", 128 * 132, 128, 4096)
    spill = Kernel("gemm", 128 * 133, 128, 4096)
    assert gemm_efficiency(H100, "bf16", spill) == pytest.approx(
        gemm_efficiency(H100, "bf16", full) * 133 / 264
    )


def test_decode_matmuls_are_bound_by_their_weights() -> None:
    parts = leaf_time(gemm(1, 4096, 4096), H100, Execution("bf16"), True)
    assert parts.compute == 0
    assert parts.memory == pytest.approx((4096 * 4096 + 2 * 4096) * 2 / H100.achievable_bandwidth)


def attention(causal: bool = False, q: int = 8192) -> CostNode:
    return layers.attention_core(
        "a",
        "x",
        batch=4,
        heads=40,
        q_len=q,
        kv_len=q,
        head_dim=128,
        dtype_bytes=2,
        reference="a",
        causal=causal,
    )


def test_attention_runs_at_its_kernels_efficiency_and_a_causal_kernel_skips_half() -> None:
    node = attention()
    fa2 = leaf_time(node, H100, Execution("bf16", attention="fa2"), True).attention
    fa3 = leaf_time(node, H100, Execution("bf16", attention="fa3"), True).attention
    assert fa2 / fa3 == pytest.approx(FA3_HOPPER.value / FA2_HOPPER.value)
    assert leaf_time(node, H100, Execution("bf16", attention="sdpa"), True).attention == fa2  # torch's is FA2
    a100 = GPUS["A100-80GB"]  # FlashAttention-3 runs on Hopper only: FlashAttention-2 there
    assert leaf_time(node, a100, Execution("bf16", attention="fa3"), True) == leaf_time(
        node, a100, Execution("bf16", attention="fa2"), True
    )
    causal = leaf_time(attention(causal=True), H100, Execution("bf16", attention="fa2"), True).attention
    assert causal == pytest.approx(fa2 / 2)


def attention_tflops(node: CostNode, kernel: str) -> float:
    seconds = leaf_time(node, H100, Execution("bf16", attention=kernel), True).attention
    return node.metrics.flops / seconds / 1e12


@pytest.mark.parametrize(("kernel", "published"), [("fa2", 0.35 * 989.0), ("fa3", 649.0)])
def test_the_papers_benchmark_shape_runs_at_the_papers_figure(kernel: str, published: float) -> None:
    # FlashAttention-3 paper: batch x sequence = 16k tokens, hidden 2,048, head dim 128 (16 heads)
    for sequence in (2048, 8192, 16384):
        node = layers.attention_core(
            "a", "x", batch=16384 // sequence, heads=16, q_len=sequence, kv_len=sequence,
            head_dim=128, dtype_bytes=2, reference="a",
        )  # fmt: skip
        assert attention_tflops(node, kernel) == pytest.approx(published * 989.4 / 989.0)


def test_flash_attention_2_runs_two_blocks_per_sm_and_flash_attention_3_one() -> None:
    def tiles(count: int) -> CostNode:  # count tiles of 128 queries
        return layers.attention_core(
            "a", "x", batch=1, heads=1, q_len=128 * count, kv_len=16384, head_dim=128, dtype_bytes=2,
            reference="a",
        )  # fmt: skip

    sms = H100.sms
    # 132 tiles: one whole wave of FlashAttention-3's blocks, half a wave of FlashAttention-2's
    assert attention_tflops(tiles(sms), "fa3") == pytest.approx(FA3_HOPPER.value * 989.4)
    assert attention_tflops(tiles(sms), "fa2") == pytest.approx(FA2_HOPPER.value * 989.4 / 2)
    assert attention_tflops(tiles(2 * sms), "fa2") == pytest.approx(FA2_HOPPER.value * 989.4)
    # one tile more than a wave costs a whole wave
    assert attention_tflops(tiles(2 * sms + 1), "fa2") == pytest.approx(
        FA2_HOPPER.value * 989.4 * (2 * sms + 1) / (4 * sms)
    )


def test_elementwise_traffic_moves_at_the_copy_bandwidth_and_unmodelled_stages_fall_back() -> None:
    norm = layers.norm("n", "norm", rows=1000, dim=1000, params=1000, dtype_bytes=2, reference="n")
    claimed = layers.with_traffic(norm, layers.op(4_000_000, 4_000_000).times(3))
    parts = leaf_time(claimed, H100, Execution("bf16"), True)
    assert parts.memory == pytest.approx(24e6 / H100.achievable_bandwidth)
    assert parts.kernels == 3
    assert leaf_time(norm, H100, Execution("bf16"), True).memory == 0  # a modelled stage: no claim, no bytes
    first_order = leaf_time(norm, H100, Execution("bf16"), False)  # inputs and outputs once
    assert first_order.memory == pytest.approx(norm.metrics.io_bytes / H100.achievable_bandwidth)


def test_autocast_casts_each_weight_at_every_call() -> None:
    node = gemm(4096, 4096, 4096)
    plain = leaf_time(node, H100, Execution("bf16"), True)
    cast = leaf_time(node, H100, Execution("bf16", weights="fp32", autocast=True), True)
    assert cast.memory - plain.memory == pytest.approx(4096 * 4096 * (4 + 2) / H100.achievable_bandwidth)
    assert cast.kernels == plain.kernels + 1


def test_launches_the_gpus_work_cannot_hide_are_exposed_and_graphs_shrink_them() -> None:
    tiny = layers.elementwise("t", "x", traffic=layers.op(64, 64), reference="t")
    tree = group("", "root", [with_repeat(tiny, 1000)])
    eager = tree_time(tree, H100, Execution("bf16"), True)
    graphs = tree_time(tree, H100, Execution("bf16", launch="graphs"), True)
    assert eager.kernels == 1000
    assert eager.launch == pytest.approx(1000 * LAUNCH["eager"].value - eager.device)
    assert 0 < graphs.launch < eager.launch
    big = group("", "root", [gemm(16_384, 16_384, 16_384)])
    assert tree_time(big, H100, Execution("bf16"), True).launch == 0  # one long kernel hides its launch


@settings(max_examples=40, deadline=None)
@given(
    repeat=st.integers(1, 50),
    rows=st.integers(1, 20_000),
    width=st.sampled_from([64, 1000, 4096]),
    traffic=st.integers(0, 10**9),
)
def test_time_scales_with_repeats(repeat: int, rows: int, width: int, traffic: int) -> None:
    """A block run ``repeat`` times takes ``repeat`` times as long, part by part."""
    block = group(
        "b",
        "block",
        [
            gemm(rows, width, width),
            layers.elementwise("b.e", "x", traffic=layers.Traffic(traffic, 3), reference="e"),
        ],
    )
    once = tree_time(group("", "root", [block]), H100, Execution("bf16"), True)
    many = tree_time(group("", "root", [with_repeat(block, repeat)]), H100, Execution("bf16"), True)
    assert many.kernels == repeat * once.kernels
    for name in ("compute", "memory", "launch"):
        assert math.isclose(getattr(many, name), repeat * getattr(once, name), rel_tol=1e-9, abs_tol=1e-15)


def test_a_node_without_a_shape_is_a_large_gemm() -> None:
    node = CostNode("x", "x", Metrics(flops=10**15, io_bytes=1))
    assert leaf_time(node, H100, Execution("bf16"), True).compute == pytest.approx(
        1e15 / (989.4e12 * MAMF_BF16["H100"].value)
    )


def test_collectives_take_nccl_tests_bus_bandwidth_factors() -> None:
    """An all-to-all of B local bytes over n ranks moves B(n-1)/n per rank over the bus bandwidth,
    an all-gather of a B-byte shard B(n-1) (its output is nB), an all-reduce 2B(n-1)/n; a group of
    one moves nothing. The H100's bus bandwidth is its NVLink's measured share."""
    gpu = lookup("H100-SXM")
    bus = 450e9 * 376 / 450
    assert gpu.bus_bandwidth == pytest.approx(bus)
    assert collective_seconds(gpu, "all_to_all", 8, 10**9) == pytest.approx(1e9 * 7 / 8 / bus)
    assert collective_seconds(gpu, "all_gather", 8, 10**9) == pytest.approx(7e9 / bus)
    assert collective_seconds(gpu, "all_reduce", 4, 10**9) == pytest.approx(2e9 * 3 / 4 / bus)
    assert collective_seconds(gpu, "all_gather", 1, 10**9) == 0.0
    leaf = layers.collective("x", "all_to_all", group=2, local_bytes=10**6)
    parts = leaf_time(leaf, gpu, Execution("bf16"), True)
    # each collective also takes a few-byte all-reduce's time (nccl-tests), whatever its bytes
    assert parts.communication == pytest.approx(0.5e6 / bus + 12.5e-6)
    assert gpu.collective_latency.assumed
    assert parts.kernels == 1
    assert parts.compute == parts.memory == 0
    assert lookup("H800").link_efficiency.assumed
    assert not gpu.link_efficiency.assumed


def test_the_time_constants_a_report_lists_read_in_their_units() -> None:
    """Every constant the time model used is listed with its source: seconds in µs, link rates
    in GB/s, efficiencies as shares."""
    from pytest_flopcheck.sizing.build import gpu_constants
    from pytest_flopcheck.sizing.render import _constant_cell, _constant_label

    constants = {c.name: c for c in gpu_constants(lookup("H100-SXM"), Execution("bf16"))}
    latency = constants["collective_latency_s"]
    assert (_constant_label(latency.name), _constant_cell(latency)) == (
        "latency per collective",
        "12.50 µs (assumed)",
    )
    assert _constant_cell(constants["link_efficiency"]) == "83.6%"
    assert _constant_cell(constants["host_to_gpu_gbs"]).endswith("GB/s")
    assert all(c.source for c in constants.values())
