"""Benchmark: the sweep's totals-only fast path over a 10,000-workload grid.

Grid: 10 heights x 10 widths x 10 frame counts x 10 step counts of T2V-14B (the shape
`flopcheck sweep --vary ...` produces), run through the `flopcheck` command in a fresh process;
the sweep's time is that run's time less a one-point sweep's (the process start and imports).
A sample of the written rows is checked against the full trees. Target: <= 2 s.
Run: python benchmarks/bench_sweep.py
"""

from __future__ import annotations

import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import attrs

from wan_models.wan2_1 import Workload, runs_per_generation, stage_tree

TARGET_S = 2.0
GRID = {
    "height": [16 * n for n in range(20, 70, 5)],
    "width": [16 * n for n in range(30, 100, 7)],
    "frames": [4 * n + 1 for n in range(2, 32, 3)],
    "steps": [5 * n for n in range(1, 11)],
}


def flopcheck() -> list[str]:
    found = shutil.which("flopcheck") or str(Path(sys.executable).parent / "flopcheck")
    return [found]


def sweep(grid: dict[str, list[int]], output: Path) -> float:
    argv = [*flopcheck(), "sweep", "wan2_1", "--output", str(output)]
    for field, values in grid.items():
        argv += ["--vary", f"{field}={','.join(map(str, values))}"]
    start = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        one = min(sweep({k: v[:1] for k, v in GRID.items()}, Path(tmp) / f"one{i}") for i in range(3))
        full = sweep(GRID, Path(tmp) / "full")
        (path,) = (Path(tmp) / "full").rglob("sweep.csv")
        with path.open() as handle:
            rows = list(csv.DictReader(handle))
    elapsed = full - one
    base = Workload()
    for row in random.Random(0).sample(rows, 5):
        w = attrs.evolve(base, **{k: int(row[k]) for k in GRID})
        runs = runs_per_generation(w)
        assert int(row["total_flops"]) == sum(n * stage_tree(w, s).total.flops for s, n in runs.items())
    points = len(rows)
    print(f"{points:,} workloads ({' x '.join(str(len(v)) for v in GRID.values())} grid), one fresh process")
    print(f"process with a one-point sweep: {one:.3f} s; with the grid: {full:.3f} s")
    print(
        f"sweep of the grid (CSV, JSON and plots written): {elapsed:.3f} s "
        f"({elapsed / points * 1e6:.1f} us per workload)   target <= {TARGET_S} s"
    )
    print("target met" if elapsed <= TARGET_S else "TARGET MISSED")


if __name__ == "__main__":
    main()
