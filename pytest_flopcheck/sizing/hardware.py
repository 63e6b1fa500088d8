"""GPU peaks and first-order (roofline) time estimates.

Peaks are dense tensor-core throughput (no structured sparsity) and memory bandwidth from the
vendors' public datasheets. A roofline time is ``max(FLOPs / peak, bytes / bandwidth)`` per
layer: it assumes each layer runs alone at peak, with perfect overlap of its own compute and
memory traffic, and ignores elementwise kernels, launch overheads, fusion and communication.
Real runs are slower; use the estimates to compare workloads and GPUs, not as a promise.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pytest_flopcheck.analytic.tree import CostNode
from pytest_flopcheck.model.workload import PRECISIONS as COMPUTE_PRECISIONS

PRECISIONS = tuple(COMPUTE_PRECISIONS)


@attrs.frozen
class Gpu:
    """One GPU: dense tensor peaks in TFLOP/s per precision, memory bandwidth and capacity."""

    name: str
    tflops: Mapping[str, float]
    bandwidth_gbs: float
    memory_gb: float
    source: str

    def peak_flops(self, precision: str) -> float:
        return self.tflops[precision] * 1e12

    @property
    def bandwidth(self) -> float:
        """Bytes per second."""
        return self.bandwidth_gbs * 1e9


GPUS: dict[str, Gpu] = {
    gpu.name: gpu
    for gpu in (
        # NVIDIA H100 Tensor Core GPU datasheet (SXM5): TF32 494.7, BF16/FP16 989.4, FP8 1,978.9
        # TFLOPS dense (the datasheet's figures are with sparsity: halved here); 3.35 TB/s HBM3.
        Gpu(
            "H100-SXM",
            {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
            3350,
            80,
            "NVIDIA H100 Tensor Core GPU datasheet, SXM5 column",
        ),
        # NVIDIA H200 Tensor Core GPU datasheet (SXM): same Hopper tensor cores as H100 SXM;
        # 4.8 TB/s HBM3e, 141 GB.
        Gpu(
            "H200",
            {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
            4800,
            141,
            "NVIDIA H200 Tensor Core GPU datasheet, SXM column",
        ),
        # NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): TF32 156, BF16/FP16 312 TFLOPS dense;
        # 2,039 GB/s HBM2e. Ampere has no FP8 tensor cores.
        Gpu(
            "A100-80GB",
            {"tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
            2039,
            80,
            "NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM column",
        ),
        # NVIDIA DGX B200 datasheet / Blackwell architecture brief, per GPU: TF32 1.1, BF16/FP16
        # 2.25, FP8 4.5 PFLOPS dense; 8 TB/s HBM3e, 180 GB (DGX B200: 1,440 GB over 8 GPUs).
        Gpu(
            "B200",
            {"tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
            8000,
            180,
            "NVIDIA DGX B200 datasheet (per-GPU figures)",
        ),
        # NVIDIA RTX Blackwell GPU architecture whitepaper, GeForce RTX 5090: FP16/BF16 tensor with
        # FP32 accumulate 209.5 TFLOPS dense, FP8 with FP32 accumulate 419 dense, TF32 104.8
        # dense; 1,792 GB/s GDDR7, 32 GB.
        Gpu(
            "RTX-5090",
            {"tf32": 104.8, "bf16": 209.5, "fp16": 209.5, "fp8": 419.0},
            1792,
            32,
            "NVIDIA RTX Blackwell GPU architecture whitepaper, GeForce RTX 5090",
        ),
        # NVIDIA L40S datasheet: TF32 183, BF16/FP16 362.05, FP8 733 TFLOPS dense (the datasheet
        # lists 366/733/1,466 with sparsity); 864 GB/s GDDR6, 48 GB.
        Gpu(
            "L40S",
            {"tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
            864,
            48,
            "NVIDIA L40S datasheet",
        ),
    )
}


class HardwareError(ValueError):
    """An unknown GPU or a precision it does not support."""


def lookup(name: str) -> Gpu:
    for gpu_name, gpu in GPUS.items():
        if gpu_name.lower() == name.lower():
            return gpu
    raise HardwareError(f"--gpu {name!r} is not allowed: choose one of {', '.join(GPUS)}")


def check_precision(gpu: Gpu | None, precision: str) -> None:
    """An unknown precision, or (with ``gpu``) one that GPU has no tensor cores for, is an error."""
    if precision not in PRECISIONS:
        raise HardwareError(
            f"--precision {precision!r} is not allowed: choose one of {', '.join(PRECISIONS)}"
        )
    if gpu is not None and precision not in gpu.tflops:
        raise HardwareError(
            f"--precision {precision!r} is not supported by {gpu.name}: choose one of {', '.join(gpu.tflops)}"
        )


@attrs.frozen
class TimeEstimate:
    """Roofline seconds of one run of a tree, and how much of it is compute-bound."""

    seconds: float
    compute_bound_seconds: float
    memory_bound_seconds: float

    def __add__(self, other: TimeEstimate) -> TimeEstimate:
        return TimeEstimate(
            self.seconds + other.seconds,
            self.compute_bound_seconds + other.compute_bound_seconds,
            self.memory_bound_seconds + other.memory_bound_seconds,
        )

    def times(self, n: int) -> TimeEstimate:
        return TimeEstimate(self.seconds * n, self.compute_bound_seconds * n, self.memory_bound_seconds * n)


ZERO_TIME = TimeEstimate(0.0, 0.0, 0.0)


def roofline(
    tree: CostNode, gpu: Gpu, precision: str, weight_bytes_per_param: int | None = None
) -> TimeEstimate:
    """Sum over layers (leaves) of max(compute time, memory time) for one run of ``tree``;
    ``weight_bytes_per_param`` reads the weights at another dtype than the tree's (fp32
    weights under bf16 autocast, fp8 weights)."""
    peak, bandwidth = gpu.peak_flops(precision), gpu.bandwidth
    total = ZERO_TIME
    for node, runs in tree.runs():
        if node.children:
            continue
        m = node.metrics
        io = (
            m.io_bytes
            if weight_bytes_per_param is None
            else m.io_bytes - m.weight_bytes + m.params * weight_bytes_per_param
        )
        compute = runs * m.flops / peak
        memory = runs * io / bandwidth
        if compute >= memory:
            total = total + TimeEstimate(compute, compute, 0.0)
        else:
            total = total + TimeEstimate(memory, 0.0, memory)
    return total
