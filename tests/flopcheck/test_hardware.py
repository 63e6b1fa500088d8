"""GPU table and roofline estimates."""

from __future__ import annotations

import pytest

from pytest_flopcheck.analytic.tree import CostNode, Metrics, group, with_repeat
from pytest_flopcheck.sizing.hardware import GPUS, HardwareError, check_precision, lookup, roofline


def test_table_covers_the_required_gpus_with_sources() -> None:
    assert set(GPUS) >= {"H100-SXM", "H200", "A100-80GB", "B200", "RTX-5090", "L40S"}
    for gpu in GPUS.values():
        assert gpu.source
        assert gpu.bandwidth_gbs > 0
        assert {"bf16", "fp16"} <= set(gpu.tflops)
    assert "fp8" not in GPUS["A100-80GB"].tflops


def test_roofline_takes_the_slower_of_compute_and_memory_per_layer() -> None:
    gpu = lookup("h100-sxm")
    compute = CostNode("a", "x", Metrics(flops=int(989.4e12), io_bytes=1))  # 1 s of compute
    memory = CostNode("b", "x", Metrics(flops=1, io_bytes=int(3.35e12)))  # 1 s of memory traffic
    estimate = roofline(group("", "root", [compute, with_repeat(memory, 2)]), gpu, "bf16")
    assert estimate.seconds == pytest.approx(3.0)
    assert estimate.compute_bound_seconds == pytest.approx(1.0)
    assert estimate.memory_bound_seconds == pytest.approx(2.0)


def test_errors_list_the_choices() -> None:
    with pytest.raises(HardwareError, match="choose one of H100-SXM, H200"):
        lookup("TPUv5")
    with pytest.raises(HardwareError, match="not supported by A100-80GB: choose one of tf32, bf16, fp16"):
        check_precision(GPUS["A100-80GB"], "fp8")
