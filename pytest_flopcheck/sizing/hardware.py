"""The GPU table: datasheet peaks, memory, links, and the measured efficiencies the time model
(:mod:`pytest_flopcheck.sizing.timing`) runs kernels at, each with its public source.

Peaks are dense tensor-core throughput (no structured sparsity) and memory bandwidth from the
vendors' datasheets. An efficiency is what a public kernel benchmark measured on that GPU (or its
architecture) as a fraction of the datasheet figure; where nothing was measured for a GPU the
entry says which measurement it borrows (``assumed``), and reports print that.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pytest_flopcheck.model.workload import PRECISIONS as COMPUTE_PRECISIONS

PRECISIONS = tuple(COMPUTE_PRECISIONS)


@attrs.frozen
class Cited:
    """A constant with where it comes from; ``assumed``: borrowed from another GPU or kernel
    (the source says which), not measured for this one."""

    value: float
    source: str
    assumed: bool = False


# -- public measurements the table cites -------------------------------------------------------------

MAMF = "ml-engineering, compute/accelerator: Maximum Achievable Matmul FLOPS table"
MAMF_BF16 = {
    "H100": Cited(794.5 / 989.0, f"{MAMF}, H100 SXM bf16 794.5 of 989 TFLOPS (H200 the same)"),
    "A100": Cited(271.2 / 312.0, f"{MAMF}, A100 SXM bf16 271.2 of 312 TFLOPS"),
    "B200": Cited(1745.0 / 2250.0, f"{MAMF}, B200 SXM bf16 1,745 of 2,250 TFLOPS"),
}
MAMF_FP8 = {
    "H100": Cited(1402.6 / 1979.0, f"{MAMF}, H100 SXM fp8 1,402.6 of 1,979 TFLOPS"),
    "H200": Cited(1453.4 / 1979.0, f"{MAMF}, H200 SXM fp8 1,453.4 of 1,979 TFLOPS"),
    "B200": Cited(3432.5 / 4500.0, f"{MAMF}, B200 SXM fp8 3,432.5 of 4,500 TFLOPS"),
}
LOWEST_MAMF_BF16 = Cited(
    MAMF_BF16["B200"].value,
    f"assumed: no MAMF measurement published; the lowest NVIDIA one ({MAMF}, B200)",
    True,
)
LOWEST_MAMF_FP8 = Cited(
    MAMF_FP8["H100"].value,
    f"assumed: no MAMF measurement published; the lowest NVIDIA one ({MAMF}, H100)",
    True,
)

ATTENTION_TILE = 128
"""Query rows per thread block of the FlashAttention-2/-3 forward kernels at head dim 128
(FlashAttention-2 ``run_mha_fwd_hdim128``: 128 x 64 blocks on A100 and H100; FlashAttention-3
``tile_size_fwd_sm90``: 128 query rows)."""

ATTENTION_BLOCKS_PER_SM = {"fa2": 2, "fa3": 1}
"""Thread blocks of each attention kernel one SM runs at once. FlashAttention-2's forward blocks
are 128 threads with 48-64 KB of shared memory, two per SM: its ``flash_api.cpp`` sizes its split
heuristic by "number of SMs by 2 to hard-code the fact that we're using 128 threads per block",
and ``flash_fwd_launch_template.h`` picks its block shapes "since we get 2 CTAs per SM".
FlashAttention-3's forward is one block of three warpgroups per SM (its Hopper kernels'
persistent tile scheduler)."""

FA_BENCHMARK_TILES = 16 * 16384 // ATTENTION_TILE
"""Query tiles of one kernel call in the FlashAttention-3 paper's benchmark: batch x sequence =
16k tokens, hidden size 2,048 at head dim 128 (16 heads): 2,048 tiles of 128 rows at every
sequence length."""


def wave_slots(blocks: int, slots: int) -> int:
    """The block slots a kernel of ``blocks`` thread blocks occupies on a GPU that runs ``slots``
    at once (SMs x blocks per SM): whole waves, the last one partly idle."""
    return -(-blocks // slots) * slots


def full_waves(measured: float, kernel: str, sms: int) -> float:
    """The efficiency a kernel reaches over whole waves of thread blocks, from one measured in
    the FlashAttention-3 paper's benchmark on a GPU of ``sms`` SMs: that benchmark's last wave
    runs partly idle too (2,048 tiles over 132 SMs x 2 blocks are 7.76 waves, run as 8), and
    the time model charges each call its own last wave."""
    slots = sms * ATTENTION_BLOCKS_PER_SM[kernel]
    return measured * wave_slots(FA_BENCHMARK_TILES, slots) / FA_BENCHMARK_TILES


FA2_HOPPER = Cited(
    full_waves(0.35, "fa2", 132),
    "FlashAttention-3 paper (Shah et al. 2024), abstract: FlashAttention-2 reaches 35% on H100 in "
    "the paper's benchmark (2,048 query tiles: 7.76 waves of 132 SMs x 2 blocks); 36.1% over whole waves",
)
FA2_AMPERE = Cited(
    0.73,
    "FlashAttention-2 paper (Dao 2023): forward pass up to 73% of the A100's peak (50-73% over "
    "settings; the shape of the best one is not given, so taken as whole waves)",
)
FA3_HOPPER = Cited(
    full_waves(649.0 / 989.0, "fa3", 132),
    "FlashAttention-3 paper, forward, bf16, head dim 128, non-causal, 16k tokens: 649 TFLOPS on H100 "
    "SXM5 (2,048 query tiles: 15.5 waves of 132 SMs); 67.7% of 989 over whole waves",
)

COPY_BANDWIDTH = Cited(
    2495.0 / 3350.0,
    "NVIDIA/nccl issue 1264: p2pBandwidthLatencyTest on HGX H100 SXM, a copy within one GPU "
    "(read and write counted) at 2,495 GB/s of 3,350",
)

HOST_LINK_H100 = (
    Cited(35.2, "NVIDIA/nvbandwidth issue 24: host_to_device_memcpy_sm on H100 (PCIe Gen5), 35.2 GB/s"),
    Cited(52.8, "NVIDIA/nvbandwidth issue 24: device_to_host_memcpy_sm on H100 (PCIe Gen5), 52.8 GB/s"),
)
NVLINK_H100_FRACTION = Cited(
    376.0 / 450.0,
    "NVIDIA/nccl issue 1264: unidirectional P2P writes between HGX H100 SXM GPUs at ~376 of 450 GB/s",
)

COLLECTIVE_LATENCY = Cited(
    12.5e-6,
    "DeepEP (GitHub) issue 303: nccl-tests all_reduce_perf on one 8-GPU Hopper (H20) NVLink node, "
    "12.5 µs for an all-reduce of 4 to 16 bytes: the time any collective takes beyond its bytes; "
    "assumed for every GPU and collective kind",
    True,
)


def _gen5(gpu: str) -> tuple[Cited, Cited]:
    """Host links of PCIe Gen5 x16 GPUs without a measurement of their own: the H100's."""
    h2d, d2h = HOST_LINK_H100
    return (
        Cited(h2d.value, f"assumed for {gpu} (PCIe Gen5 x16 like the H100): {h2d.source}", True),
        Cited(d2h.value, f"assumed for {gpu} (PCIe Gen5 x16 like the H100): {d2h.source}", True),
    )


def _gen4(gpu: str) -> tuple[Cited, Cited]:
    """PCIe Gen4 x16 moves half of Gen5's bytes per second: half the H100's measurement."""
    h2d, d2h = HOST_LINK_H100
    return (
        Cited(h2d.value / 2, f"assumed for {gpu}: half of the PCIe Gen5 measurement ({h2d.source})", True),
        Cited(d2h.value / 2, f"assumed for {gpu}: half of the PCIe Gen5 measurement ({d2h.source})", True),
    )


@attrs.frozen
class Gpu:
    """One GPU: dense tensor peaks in TFLOP/s per precision, its fp32 (CUDA-core) peak, memory,
    streaming multiprocessors, host and GPU-to-GPU links, and the measured efficiencies the time
    model runs its kernels at."""

    name: str
    architecture: str
    tflops: Mapping[str, float]
    fp32_tflops: float
    bandwidth_gbs: float
    memory_gb: float
    sms: int
    host_link: str
    host_to_gpu_gbs: Cited
    gpu_to_host_gbs: Cited
    gpu_link: str
    gpu_link_gbs: float
    """Per direction, between two GPUs of one node (NVLink, or PCIe where a GPU has none)."""
    source: str
    gemm: Mapping[str, Cited]
    """Largest-shape matmul efficiency per compute precision."""
    attention: Mapping[str, Cited]
    """Efficiency of each fused attention kernel (``fa2``, ``fa3``) at long sequences."""
    bandwidth_efficiency: Cited = COPY_BANDWIDTH
    link_efficiency: Cited = NVLINK_H100_FRACTION
    """The share of ``gpu_link_gbs`` collectives reach (their bus bandwidth)."""
    collective_latency: Cited = COLLECTIVE_LATENCY
    """Seconds each collective takes beyond its bytes (a near-empty one's time)."""

    def peak_flops(self, precision: str) -> float:
        return self.tflops[precision] * 1e12

    @property
    def bandwidth(self) -> float:
        """Bytes per second (datasheet)."""
        return self.bandwidth_gbs * 1e9

    @property
    def bus_bandwidth(self) -> float:
        """Bytes per second a collective's bus bandwidth reaches between GPUs of one node."""
        return self.gpu_link_gbs * 1e9 * self.link_efficiency.value

    @property
    def achievable_bandwidth(self) -> float:
        """Bytes per second a memory-bound kernel moves."""
        return self.bandwidth * self.bandwidth_efficiency.value


def _gemm(bf16: Cited, fp8: Cited | None) -> dict[str, Cited]:
    tf32 = Cited(bf16.value, f"assumed: no TF32 matmul benchmark; the bf16 efficiency ({bf16.source})", True)
    table = {"tf32": tf32, "bf16": bf16, "fp16": bf16}
    if fp8 is not None:
        table["fp8"] = fp8
    return table


def _borrowed(value: Cited, gpu: str, of: str) -> Cited:
    return Cited(value.value, f"assumed for {gpu} (the {of}'s): {value.source}", True)


def _hopper_attention(gpu: str | None = None) -> dict[str, Cited]:
    if gpu is None:
        return {"fa2": FA2_HOPPER, "fa3": FA3_HOPPER}
    return {"fa2": _borrowed(FA2_HOPPER, gpu, "H100"), "fa3": _borrowed(FA3_HOPPER, gpu, "H100")}


def _fa2_only(gpu: str, like: Cited, of: str) -> dict[str, Cited]:
    return {"fa2": like if gpu == of else _borrowed(like, gpu, of)}


_H100_GEMM = _gemm(MAMF_BF16["H100"], MAMF_FP8["H100"])

GPUS: dict[str, Gpu] = {
    gpu.name: gpu
    for gpu in (
        # NVIDIA H100 Tensor Core GPU datasheet (SXM5): TF32 494.7, BF16/FP16 989.4, FP8 1,978.9
        # TFLOPS dense (the datasheet's figures with sparsity, halved); FP32 66.9; 3.35 TB/s HBM3;
        # 132 SMs (Hopper whitepaper); PCIe Gen5 x16; NVLink 900 GB/s (450 each way).
        Gpu(
            "H100-SXM",
            "hopper",
            {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
            66.9,
            3350,
            80,
            132,
            "PCIe Gen5 x16",
            *HOST_LINK_H100,
            "NVLink 4 (900 GB/s)",
            450,
            "NVIDIA H100 Tensor Core GPU datasheet, SXM5 column; Hopper architecture whitepaper",
            _H100_GEMM,
            _hopper_attention(),
        ),
        # NVIDIA H200 Tensor Core GPU datasheet (SXM): the H100's tensor cores; 4.8 TB/s HBM3e,
        # 141 GB; PCIe Gen5; NVLink 900 GB/s.
        Gpu(
            "H200",
            "hopper",
            {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
            66.9,
            4800,
            141,
            132,
            "PCIe Gen5 x16",
            *_gen5("H200"),
            "NVLink 4 (900 GB/s)",
            450,
            "NVIDIA H200 Tensor Core GPU datasheet, SXM column",
            _gemm(MAMF_BF16["H100"], MAMF_FP8["H200"]),
            _hopper_attention("H200"),
        ),
        # NVIDIA H800 SXM5 (export variant of the H100 SXM5): the H100's compute and HBM3,
        # NVLink at 400 GB/s (200 each way) instead of 900.
        Gpu(
            "H800",
            "hopper",
            {"tf32": 494.7, "bf16": 989.4, "fp16": 989.4, "fp8": 1978.9},
            66.9,
            3350,
            80,
            132,
            "PCIe Gen5 x16",
            *_gen5("H800"),
            "NVLink 4 (400 GB/s)",
            200,
            "NVIDIA H800 Tensor Core GPU (SXM5) product specifications: H100 SXM5 compute, NVLink 400 GB/s",
            {k: _borrowed(v, "H800", "H100 SXM") for k, v in _H100_GEMM.items()},
            _hopper_attention("H800"),
        ),
        # NVIDIA HGX H20 (export variant of Hopper): FP16/BF16 148, FP8 296, TF32 74 TFLOPS dense;
        # FP32 44; 96 GB HBM3 at 4.0 TB/s; 78 SMs; PCIe Gen5 x16; NVLink 900 GB/s.
        Gpu(
            "H20",
            "hopper",
            {"tf32": 74.0, "bf16": 148.0, "fp16": 148.0, "fp8": 296.0},
            44.0,
            4000,
            96,
            78,
            "PCIe Gen5 x16",
            *_gen5("H20"),
            "NVLink 4 (900 GB/s)",
            450,
            "NVIDIA HGX H20 product brief (2023): dense peaks, 96 GB HBM3 at 4.0 TB/s, NVLink 900 GB/s",
            {k: _borrowed(v, "H20", "H100 SXM") for k, v in _H100_GEMM.items()},
            _hopper_attention("H20"),
        ),
        # NVIDIA A100 Tensor Core GPU datasheet (80GB SXM): TF32 156, BF16/FP16 312 TFLOPS dense;
        # FP32 19.5; 2,039 GB/s HBM2e; 108 SMs (Ampere whitepaper); PCIe Gen4 x16; NVLink 600 GB/s.
        # Ampere has no FP8 tensor cores.
        Gpu(
            "A100-80GB",
            "ampere",
            {"tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
            19.5,
            2039,
            80,
            108,
            "PCIe Gen4 x16",
            *_gen4("A100-80GB"),
            "NVLink 3 (600 GB/s)",
            300,
            "NVIDIA A100 Tensor Core GPU datasheet, 80GB SXM column; Ampere architecture whitepaper",
            _gemm(MAMF_BF16["A100"], None),
            _fa2_only("A100-80GB", FA2_AMPERE, "A100-80GB"),
        ),
        # NVIDIA A800 80GB SXM (export variant of the A100 80GB SXM): the A100's compute and
        # HBM2e, NVLink at 400 GB/s (200 each way).
        Gpu(
            "A800",
            "ampere",
            {"tf32": 156.0, "bf16": 312.0, "fp16": 312.0},
            19.5,
            2039,
            80,
            108,
            "PCIe Gen4 x16",
            *_gen4("A800"),
            "NVLink 3 (400 GB/s)",
            200,
            "NVIDIA A800 Tensor Core GPU datasheet (80GB SXM): A100 compute, NVLink 400 GB/s",
            {k: _borrowed(v, "A800", "A100 SXM") for k, v in _gemm(MAMF_BF16["A100"], None).items()},
            _fa2_only("A800", FA2_AMPERE, "A100-80GB"),
        ),
        # NVIDIA DGX B200 datasheet / Blackwell architecture brief, per GPU: TF32 1.1, BF16/FP16
        # 2.25, FP8 4.5 PFLOPS dense; FP32 75; 8 TB/s HBM3e, 180 GB; 148 SMs; NVLink 5 1.8 TB/s.
        Gpu(
            "B200",
            "blackwell",
            {"tf32": 1100.0, "bf16": 2250.0, "fp16": 2250.0, "fp8": 4500.0},
            75.0,
            8000,
            180,
            148,
            "PCIe Gen5 x16",
            *_gen5("B200"),
            "NVLink 5 (1.8 TB/s)",
            900,
            "NVIDIA DGX B200 datasheet (per-GPU figures); Blackwell architecture technical brief",
            _gemm(MAMF_BF16["B200"], MAMF_FP8["B200"]),
            {"fa2": _borrowed(FA2_HOPPER, "B200", "H100")},
        ),
        # NVIDIA RTX Blackwell GPU architecture whitepaper, GeForce RTX 5090: FP16/BF16 tensor with
        # FP32 accumulate 209.5 TFLOPS dense, FP8 419, TF32 104.8; FP32 104.8; 1,792 GB/s GDDR7,
        # 32 GB; 170 SMs; PCIe Gen5 x16; no NVLink (GPU to GPU over PCIe).
        Gpu(
            "RTX-5090",
            "blackwell",
            {"tf32": 104.8, "bf16": 209.5, "fp16": 209.5, "fp8": 419.0},
            104.8,
            1792,
            32,
            170,
            "PCIe Gen5 x16",
            *_gen5("RTX-5090"),
            "PCIe Gen5 x16 (no NVLink)",
            64,
            "NVIDIA RTX Blackwell GPU architecture whitepaper, GeForce RTX 5090",
            _gemm(LOWEST_MAMF_BF16, LOWEST_MAMF_FP8),
            {"fa2": _borrowed(FA2_HOPPER, "RTX-5090", "H100")},
        ),
        # NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090: FP16/BF16 tensor with
        # FP32 accumulate 165.2 TFLOPS dense, FP8 330.3, TF32 82.6; FP32 82.6; 1,008 GB/s GDDR6X,
        # 24 GB; 128 SMs; PCIe Gen4 x16; no NVLink.
        Gpu(
            "RTX-4090",
            "ada",
            {"tf32": 82.6, "bf16": 165.2, "fp16": 165.2, "fp8": 330.3},
            82.6,
            1008,
            24,
            128,
            "PCIe Gen4 x16",
            *_gen4("RTX-4090"),
            "PCIe Gen4 x16 (no NVLink)",
            32,
            "NVIDIA Ada Lovelace GPU architecture whitepaper, GeForce RTX 4090",
            _gemm(LOWEST_MAMF_BF16, LOWEST_MAMF_FP8),
            {"fa2": _borrowed(FA2_AMPERE, "RTX-4090", "A100")},
        ),
        # NVIDIA L40S datasheet: TF32 183, BF16/FP16 362.05, FP8 733 TFLOPS dense (the datasheet
        # lists 366/733/1,466 with sparsity); FP32 91.6; 864 GB/s GDDR6, 48 GB; 142 SMs; PCIe Gen4.
        Gpu(
            "L40S",
            "ada",
            {"tf32": 183.0, "bf16": 362.05, "fp16": 362.05, "fp8": 733.0},
            91.6,
            864,
            48,
            142,
            "PCIe Gen4 x16",
            *_gen4("L40S"),
            "PCIe Gen4 x16 (no NVLink)",
            32,
            "NVIDIA L40S datasheet",
            _gemm(LOWEST_MAMF_BF16, LOWEST_MAMF_FP8),
            {"fa2": _borrowed(FA2_AMPERE, "L40S", "A100")},
        ),
    )
}
GPUS = {
    name: gpu
    if name == "H100-SXM"
    else attrs.evolve(gpu, link_efficiency=_borrowed(NVLINK_H100_FRACTION, name, "H100 SXM"))
    for name, gpu in GPUS.items()
}
"""Only the H100 SXM's GPU-to-GPU link has a published measurement; the others borrow its share."""


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
