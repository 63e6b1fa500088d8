"""The time model: each kernel of an analytic tree at the efficiency a public benchmark measured
for its kind, shape and GPU, instead of every layer at the datasheet peak.

- Matmuls and convolutions (their implicit GEMM) run at the GPU's largest-shape matmul efficiency
  (:data:`~pytest_flopcheck.sizing.hardware.MAMF_BF16`) times the shape's tile and wave
  quantization: cuBLAS computes 128 × 128 output tiles, one per SM at a time, so a shape that
  leaves SMs idle in its last wave, or pads its edge tiles, loses that share (NVIDIA, "Matrix
  Multiplication Background User's Guide": tile and wave quantization). A matmul whose bytes take
  longer than its FLOPs (decode at batch 1) is memory-bound: its bytes at the achievable bandwidth.
- Attention runs at the efficiency of the kernel the runtime uses (FlashAttention-2, -3, torch's
  SDPA, whose flash backend is FlashAttention-2), measured at long sequences and taken to whole
  waves, times the wave quantization of its query tiles (128 rows per thread block; two blocks per
  SM for FlashAttention-2, one for FlashAttention-3:
  :data:`~pytest_flopcheck.sizing.hardware.ATTENTION_BLOCKS_PER_SM`); a causal kernel skips the
  masked half of the pairs torch's counter counts. fp32 attention (no flash kernel takes fp32) runs
  torch's memory-efficient kernel on CUDA cores.
- Elementwise work (norms, activations, casts, residual adds, copies) moves the bytes the model
  predicts (``Metrics.elementwise_bytes``, verified by ``test_traffic``) at the achievable
  bandwidth; a layer without FLOPs in a stage that predicts no traffic moves its inputs and
  outputs once (a first-order estimate, and the report says which stages those are).
- Autocast (fp32 weights, bf16 matmuls) casts each weight to bf16 at every call: its bytes read
  and written, one kernel.
- Collectives of a parallel layout move their bytes over the GPU-to-GPU link at its measured
  bus bandwidth, with nccl-tests' bus-bandwidth factors: an all-to-all or reduce-scatter of a
  local buffer of B bytes over n ranks takes B·(n−1)/n / busBW, an all-gather of a shard of B
  bytes B·(n−1) / busBW (its output is n·B), an all-reduce 2·B·(n−1)/n / busBW.
- Every kernel costs the host a launch; when the launches take longer than the GPU's work, the
  difference is exposed (``launch``). CUDA graphs replay the launches for a fraction of the cost.

Constants come with their sources (:mod:`pytest_flopcheck.sizing.hardware`); none is fitted to an
end-to-end timing.
"""

from __future__ import annotations

import math
from typing import Final

import attrs

from pytest_flopcheck.analytic.tree import COLLECTIVE_KINDS, CostNode, Kernel
from pytest_flopcheck.model.workload import DTYPE_BYTES, PRECISIONS
from pytest_flopcheck.sizing.hardware import ATTENTION_BLOCKS_PER_SM, ATTENTION_TILE, Cited, Gpu, wave_slots

GEMM_TILE: Final = 128
"""Output tile edge of cuBLAS's large bf16 kernels (NVIDIA, "Matrix Multiplication Background
User's Guide", tile quantization); skinny dimensions get narrower tiles (:func:`_tile`)."""

LAUNCH: Final = {
    "eager": Cited(
        260e-6 / 80,
        "CUDA.jl documentation, 'Graphs': 80 small broadcast kernels take 260 µs launched one by one "
        "(3.25 µs each); PyTorch's eager dispatcher adds host time of its own, so this is a lower bound",
    ),
    "graphs": Cited(
        70e-6 / 80,
        "CUDA.jl documentation, 'Graphs': the same 80 kernels take 70 µs replayed as one CUDA graph",
    ),
}
"""Host seconds per kernel launch, eager and under CUDA graphs."""


@attrs.frozen
class Execution:
    """How a stage's kernels run: the matmul precision, the attention kernel, eager or CUDA-graph
    launches, the weights' dtype where it differs from the tree's activations (fp32 weights,
    fp8 weights) and whether autocast casts them to the compute dtype at every call."""

    precision: str
    attention: str = "sdpa"
    launch: str = "eager"
    weights: str | None = None
    autocast: bool = False


@attrs.frozen
class TimeParts:
    """Seconds by what bounds them: matmuls and convolutions at their compute rate, attention at
    its kernel's rate, memory-bound work (elementwise traffic, bandwidth-bound matmuls, autocast
    casts), collectives over the GPU-to-GPU link (``communication``), exposed launch overhead,
    host↔GPU transfers; and the kernels launched."""

    compute: float = 0.0
    attention: float = 0.0
    memory: float = 0.0
    launch: float = 0.0
    transfer: float = 0.0
    kernels: int = 0
    communication: float = 0.0

    @property
    def seconds(self) -> float:
        return self.compute + self.attention + self.memory + self.communication + self.launch + self.transfer

    @property
    def device(self) -> float:
        """The GPU's own work (launch overhead and transfers apart)."""
        return self.compute + self.attention + self.memory + self.communication

    def __add__(self, other: TimeParts) -> TimeParts:
        return TimeParts(
            self.compute + other.compute,
            self.attention + other.attention,
            self.memory + other.memory,
            self.launch + other.launch,
            self.transfer + other.transfer,
            self.kernels + other.kernels,
            self.communication + other.communication,
        )

    def times(self, n: int) -> TimeParts:
        return TimeParts(
            self.compute * n,
            self.attention * n,
            self.memory * n,
            self.launch * n,
            self.transfer * n,
            self.kernels * n,
            self.communication * n,
        )


ZERO: Final = TimeParts()
PARTS: Final = ("compute", "attention", "memory", "communication", "launch", "transfer")


def gemm_efficiency(gpu: Gpu, precision: str, kernel: Kernel | None) -> float:
    """The GPU's largest-shape matmul efficiency at ``precision`` times the shape's tile and wave
    quantization (no shape: a large GEMM)."""
    base = gpu.gemm[precision].value
    if kernel is None:
        return base
    tile_m, tile_n = _tile(kernel.m), _tile(kernel.n)
    tiles = kernel.batch * math.ceil(kernel.m / tile_m) * math.ceil(kernel.n / tile_n)
    useful = kernel.batch * kernel.m * kernel.n
    return base * useful / (wave_slots(tiles, gpu.sms) * tile_m * tile_n)


def _tile(extent: int) -> int:
    """The tile edge along one output dimension: 128, or for a skinny dimension the next power of
    two (at least 16), since cuBLAS picks narrower kernels (down to matrix-vector ones) there."""
    return min(GEMM_TILE, max(16, 1 << max(extent - 1, 0).bit_length()))


def attention_kernel(gpu: Gpu, requested: str) -> str:
    """The flash kernel that runs: ``sdpa`` is FlashAttention-2; FlashAttention-3 where the GPU
    runs it, else FlashAttention-2."""
    if requested == "fa3" and "fa3" in gpu.attention:
        return "fa3"
    return "fa2"


def attention_rate(gpu: Gpu, execution: Execution, kernel: Kernel) -> tuple[float, float]:
    """FLOPs per second an attention call computes at, and the share of its counted FLOPs it
    computes (a causal kernel skips the masked half)."""
    activations = PRECISIONS[execution.precision].activations
    share = 0.5 if kernel.causal and kernel.m > 1 else 1.0
    name = attention_kernel(gpu, execution.attention)
    flash = gpu.attention[name].value
    if activations == "fp32":  # no flash kernel takes fp32: the memory-efficient one, on CUDA cores
        return gpu.fp32_tflops * 1e12 * flash, share
    peak = gpu.peak_flops("bf16" if execution.precision == "fp8" else execution.precision)
    if kernel.m >= ATTENTION_TILE:  # prefill: query tiles over the SMs, the last wave partly idle
        tiles = kernel.batch * math.ceil(kernel.m / ATTENTION_TILE)
        occupied = wave_slots(tiles, gpu.sms * ATTENTION_BLOCKS_PER_SM[name])
        flash *= kernel.batch * kernel.m / (occupied * ATTENTION_TILE)
    return peak * flash, share


def leaf_time(node: CostNode, gpu: Gpu, execution: Execution, traffic_modelled: bool) -> TimeParts:
    """One run of a leaf."""
    m = node.metrics
    bandwidth = gpu.achievable_bandwidth
    compute = attention = memory = 0.0
    kernels = 0
    kernel = node.kernel
    if kernel is not None and kernel.kind in COLLECTIVE_KINDS:
        seconds = collective_seconds(gpu, kernel.kind, kernel.group, m.collective_bytes)
        if kernel.group > 1:
            seconds += m.collectives * gpu.collective_latency.value
        return TimeParts(kernels=m.collectives, communication=seconds)
    if m.flops:
        kernels += node.calls
        io = m.io_bytes
        if execution.weights is not None and not execution.autocast and m.params:
            io += m.params * DTYPE_BYTES[execution.weights] - m.weight_bytes
        moving = io / bandwidth
        if kernel is not None and kernel.kind == "attention":
            rate, share = attention_rate(gpu, execution, kernel)
            busy = m.flops * share / rate
            if busy >= moving:
                attention = busy
            else:
                memory = moving
        else:
            precision = execution.precision
            busy = m.flops / (gpu.peak_flops(precision) * gemm_efficiency(gpu, precision, kernel))
            if busy >= moving:
                compute = busy
            else:
                memory = moving
        if execution.autocast and m.params and execution.weights is not None:
            wide = DTYPE_BYTES[execution.weights]
            narrow = DTYPE_BYTES[PRECISIONS[execution.precision].activations]
            memory += node.calls * m.params * (wide + narrow) / bandwidth
            kernels += node.calls
    elif not traffic_modelled and not m.elementwise_ops and m.io_bytes:
        memory += m.io_bytes / bandwidth  # first order: its inputs and outputs once
        kernels += node.calls
    if m.elementwise_ops:
        memory += m.elementwise_bytes / bandwidth
        kernels += m.elementwise_ops
    return TimeParts(compute, attention, memory, 0.0, 0.0, kernels)


def tree_time(tree: CostNode, gpu: Gpu, execution: Execution, traffic_modelled: bool) -> TimeParts:
    """One run of a stage's tree on ``gpu``: its kernels' parts, and the launch overhead the GPU's
    work does not hide (the host launching every kernel in turn)."""
    total = ZERO
    for node, times in tree.runs():
        if node.children:
            continue
        total = total + leaf_time(node, gpu, execution, traffic_modelled).times(times)
    host = total.kernels * LAUNCH[execution.launch].value
    return attrs.evolve(total, launch=max(0.0, host - total.device))


def _bus_factor(kind: str, n: int) -> float:
    if kind == "all_gather":
        return float(n - 1)
    if kind == "all_reduce":
        return 2 * (n - 1) / n
    return (n - 1) / n  # all-to-all, reduce-scatter


"""Bytes on the wire per byte of a rank's local input, over the bus bandwidth (nccl-tests,
PERFORMANCE.md: busBW = algBW·(n−1)/n for all-gather, reduce-scatter and all-to-all, whose size
is the whole gathered output for an all-gather; 2(n−1)/n for all-reduce)."""


def collective_seconds(gpu: Gpu, kind: str, group: int, local_bytes: int) -> float:
    """One collective's bytes over ``group`` ranks of ``gpu`` with ``local_bytes`` of input per
    rank, at the bus bandwidth (:func:`leaf_time` adds the latency each collective takes)."""
    if group <= 1 or not local_bytes:
        return 0.0
    return local_bytes * _bus_factor(kind, group) / gpu.bus_bandwidth


def transfer_seconds(gpu: Gpu, to_gpu_bytes: int, to_host_bytes: int) -> float:
    """Host↔GPU copies over the GPU's host link at its measured rates."""
    return to_gpu_bytes / (gpu.host_to_gpu_gbs.value * 1e9) + to_host_bytes / (
        gpu.gpu_to_host_gbs.value * 1e9
    )
