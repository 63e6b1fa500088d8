"""Benchmark: the sweep's totals-only fast path over a 10,000-workload grid.

Grid: 10 heights x 10 widths x 10 frame counts x 10 step counts of T2V-14B (the shape
`flopcheck sweep --vary ...` produces). Prints the time for the per-stage and total FLOPs of
every workload, from a cold cache, and checks a sample against the full trees.
Target: <= 2 s. Run: python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import random
import time

import attrs

from pytest_flopcheck.cli.app import sweep_rows
from pytest_flopcheck.model.registration import load_registry
from wan_models.wan2_1 import Workload, runs_per_generation, stage_tree
from wan_models.wan2_1.pipeline import _TOTALS

TARGET_S = 2.0


def main() -> None:
    reg = load_registry().models["wan2_1"]
    base = Workload()
    grid = {
        "height": [16 * n for n in range(20, 70, 5)],
        "width": [16 * n for n in range(30, 100, 7)],
        "frames": [4 * n + 1 for n in range(2, 32, 3)],
        "steps": [5 * n for n in range(1, 11)],
    }
    _TOTALS.clear()
    start = time.perf_counter()
    rows = list(sweep_rows(reg, grid, lambda values: attrs.evolve(base, **values)))
    elapsed = time.perf_counter() - start
    for row in random.Random(0).sample(rows, 5):
        w = attrs.evolve(base, **{k: row[k] for k in grid})
        runs = runs_per_generation(w)
        assert row["total_flops"] == sum(n * stage_tree(w, s).total.flops for s, n in runs.items())
    print(f"{len(rows):,} workloads ({' x '.join(str(len(v)) for v in grid.values())} grid), cold cache")
    per_workload_us = elapsed / len(rows) * 1e6
    print(f"sweep totals: {elapsed:.3f} s ({per_workload_us:.1f} us per workload)   target <= {TARGET_S} s")
    print("target met" if elapsed <= TARGET_S else "TARGET MISSED")


if __name__ == "__main__":
    main()
