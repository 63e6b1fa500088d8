"""Benchmark: the time and memory model against the development set, the official Wan2.1
efficiency table for 1, 2, 4 and 8 GPUs (../shared/design/SIZING_FACTS.md §1).

Wan2.1 T2V-14B, 1280x720, 81 frames, 50 steps with guidance, one H800/H100 (taken as H100-SXM),
the official ``generate.py`` with its one-GPU defaults (``--offload_model True``): 1,837.9 s per
generation and 69.1 GB peak GPU memory; on N GPUs ``torchrun --nproc_per_node=N generate.py
--dit_fsdp --t5_fsdp --ulysses_size N``. The prediction is what a user gets from

    flopcheck report wan2_1 --workload W-003 --frames 81 --gpu H100-SXM --runtime official [--gpus N]

read back from its ``report.json`` (``runtime.seconds``, ``runtime.peak_gpu_bytes``). No constant
of the model is fitted to these rows; the script prints the errors, the parts of the time, the other
runtimes of the same run, the datasheet roofline the model replaced, and the multi-GPU rows read
as H800 (the table's other GPU), for comparison.
Run: python benchmarks/bench_published.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

PUBLISHED = {"seconds": 1837.9, "peak_gb": 69.1}
"""Official Wan2.1 README, 'Computational efficiency' table, T2V-14B at 720p on one GPU."""
PUBLISHED_MULTI = {2: (945.1, 53.9), 4: (497.0, 37.9), 8: (287.9, 29.9)}
"""The same table's 2-, 4- and 8-GPU rows: seconds, peak GB per GPU."""
TARGET = 0.10
RUNTIMES = (
    "official",
    "official-fa3",
    "official-t5-cpu",
    "official-no-offload",
    "diffusers",
    "diffusers-offload",
)
H100_DENSE_BF16 = 989.4e12


def flopcheck() -> list[str]:
    found = shutil.which("flopcheck") or str(Path(sys.executable).parent / "flopcheck")
    return [found]


def report(runtime: str, output: Path, gpus: int = 1, gpu: str = "H100-SXM") -> dict[str, Any]:
    folder = output / f"{runtime}-{gpus}-{gpu}"
    argv = [*flopcheck(), "report", "wan2_1", "--workload", "W-003", "--frames", "81"]
    argv += ["--gpu", gpu, "--runtime", runtime, "--gpus", str(gpus), "--output", str(folder)]
    subprocess.run(argv, check=True, capture_output=True, text=True)
    (path,) = folder.glob("*/static_analysis/wan2_1/report.json")
    loaded: dict[str, Any] = json.loads(path.read_text())
    return loaded


def error(predicted: float, published: float) -> str:
    return f"{(predicted - published) / published:+.1%}"


def main() -> int:
    with tempfile.TemporaryDirectory() as folder:
        reports = {name: report(name, Path(folder)) for name in RUNTIMES}
        multi = {n: report("official", Path(folder), n) for n in PUBLISHED_MULTI}
        h800 = {n: report("official", Path(folder), n, "H800") for n in PUBLISHED_MULTI}
    official = reports["official"]["runtime"]
    seconds, peak_gb = official["seconds"], official["peak_gpu_bytes"] / 1e9
    print("Wan2.1 T2V-14B, 720p, 81 frames, 50 steps, one H100-SXM, official generate.py (offload on)")
    print(f"{'':>22}{'predicted':>12}{'published':>12}{'error':>9}")
    published_s, published_gb = PUBLISHED["seconds"], PUBLISHED["peak_gb"]
    print(f"{'seconds':>22}{seconds:>12.1f}{published_s:>12.1f}{error(seconds, published_s):>9}")
    print(f"{'peak GPU GB':>22}{peak_gb:>12.2f}{published_gb:>12.1f}{error(peak_gb, published_gb):>9}")
    gib = error(peak_gb, published_gb * 2**30 / 1e9)
    print(f"  (if the published GB are GiB, the peak error is {gib})")
    print(f"  peak set while {official['set_by']} runs")
    ok = all(
        abs(p - q) / q <= TARGET
        for p, q in ((seconds, PUBLISHED["seconds"]), (peak_gb, PUBLISHED["peak_gb"]))
    )
    print(f"  target: both within {TARGET:.0%}: {'met' if ok else 'NOT met'}")

    (estimate,) = official["estimates"]
    print("\nWhere the official run's time goes (seconds per generation):")
    totals: dict[str, float] = {}
    for stage, figures in estimate["stages"].items():
        parts = figures["parts"]  # per generation
        line = ", ".join(f"{k[:-2]} {v:.1f}" for k, v in parts.items() if k.endswith("_s") and v)
        print(f"  {stage:>15}: {figures['per_generation_s']:8.1f} s  ({line}; {parts['kernels']:,} kernels)")
        for k, v in parts.items():
            if k.endswith("_s"):
                totals[k[:-2]] = totals.get(k[:-2], 0.0) + v
    totals["transfer"] = totals.get("transfer", 0.0) + estimate["transfer_s"]
    print("  all stages: " + ", ".join(f"{k} {v:.1f} s ({v / seconds:.1%})" for k, v in totals.items() if v))

    flops = reports["official"]["totals"]["per_generation"]["flops"]
    print(f"\nDatasheet roofline (every FLOP at 989.4 dense bf16 TFLOPS): {flops / H100_DENSE_BF16:.1f} s")
    print("\nOther runtimes of the same generation (no published figure to compare with):")
    for name in RUNTIMES[1:]:
        runtime = reports[name]["runtime"]
        fits = runtime["estimates"][0]["fits"]
        print(
            f"  {name:>20}: {runtime['seconds']:8.1f} s, peak {runtime['peak_gpu_bytes'] / 1e9:6.2f} GB"
            f" ({'fits' if fits else 'does not fit'} in 80 GB)"
        )

    print("\nMulti-GPU rows (official: --dit_fsdp --t5_fsdp --ulysses_size N; figures per GPU, rank 0's):")
    head = (("GPUs", 6), ("pred. s", 10), ("publ. s", 10), ("error", 9), ("pred. GB", 10), ("publ. GB", 10))
    print("".join(f"{t:>{w}}" for t, w in head) + f"{'error':>9}{'comm.':>8}")
    for n, (published_s, published_gb) in PUBLISHED_MULTI.items():
        runtime = multi[n]["runtime"]
        (gpu,) = runtime["estimates"]
        comm = sum(s["parts"]["communication_s"] for s in gpu["stages"].values()) / runtime["seconds"]
        gb, took = runtime["peak_gpu_bytes"] / 1e9, runtime["seconds"]
        print(
            f"{n:>6}{took:>10.1f}{published_s:>10.1f}{error(took, published_s):>9}"
            f"{gb:>10.2f}{published_gb:>10.1f}{error(gb, published_gb):>9}{comm:>8.1%}"
        )
        rows_ok = abs(runtime["seconds"] - published_s) / published_s <= TARGET
        rows_ok = rows_ok and abs(gb - published_gb) / published_gb <= TARGET
        print(
            f"{'':>6}peak set while {runtime['set_by']} runs; target (both within {TARGET:.0%}): "
            f"{'met' if rows_ok else 'NOT met'}"
        )
    print("\nThe same rows read as H800 (the table says H800/H100; NVLink 400 GB/s instead of 900):")
    print("".join(f"{t:>{w}}" for t, w in head[:4]))
    for n, (published_s, _) in PUBLISHED_MULTI.items():
        took = h800[n]["runtime"]["seconds"]
        print(f"{n:>6}{took:>10.1f}{published_s:>10.1f}{error(took, published_s):>9}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
