"""Benchmark: building the analytic DiT tree for W-003 vs counting the reference on meta with
torch's own FLOP counter (the plugin's counting also tracks traffic and memory: slower still).

Prints medians of repeated runs in one process and their ratio. Targets: the analytic tree
in <= 2 ms and >= 500x faster than the reference count. Run: python benchmarks/bench_dit_tree.py
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from torch_floor import count_flops

from wan_models.wan2_1 import STANDARD_WORKLOADS
from wan_models.wan2_1.dit import dit_forward

TREE_TARGET_MS = 2.0
RATIO_TARGET = 500.0


def median_seconds(fn: Callable[[], object], repeats: int, inner: int = 1) -> float:
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(inner):
            fn()
        samples.append((time.perf_counter() - start) / inner)
    return statistics.median(samples)


def main() -> None:
    from wan_models.wan2_1 import reference

    w = STANDARD_WORKLOADS["W-003"]
    count_flops(reference.diffusion_core(w, "meta"))  # warm up imports
    warm_until = time.perf_counter() + 2.0  # let the interpreter and CPU clocks settle
    while time.perf_counter() < warm_until:
        dit_forward(w)
    tree_s = median_seconds(lambda: dit_forward(w), repeats=51, inner=10)
    reference_s = median_seconds(lambda: count_flops(reference.diffusion_core(w, "meta")), 5)
    ratio = reference_s / tree_s
    print(f"workload W-003 ({w.variant}, {w.height}x{w.width}, {w.frames} frames, {w.tokens} tokens)")
    print(f"analytic tree (median of 51x10): {tree_s * 1e3:8.3f} ms   target <= {TREE_TARGET_MS} ms")
    print(f"reference count on meta (median of 5): {reference_s * 1e3:8.1f} ms")
    print(f"speed-up: {ratio:,.0f}x   target >= {RATIO_TARGET:.0f}x")
    ok = tree_s * 1e3 <= TREE_TARGET_MS and ratio >= RATIO_TARGET
    print("targets met" if ok else "TARGETS MISSED")


if __name__ == "__main__":
    main()
