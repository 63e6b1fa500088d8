"""Benchmark: `flopcheck sweep` peak memory and time against the number of points.

Runs `flopcheck sweep wan2_1` over grids of 10^4, 10^5 and 10^6 workloads (heights x widths x
frames x steps), each in a fresh process, and prints the wall time and the peak resident memory
of that process (ru_maxrss). Rows are streamed to sweep.csv and sweep.json, so memory should stay
flat in the number of points. Output goes to a temporary folder that is removed afterwards.
Run: python benchmarks/bench_sweep_memory.py
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
GRIDS = {
    10**4: {"height": 10, "width": 10, "frames": 10, "steps": 10},
    10**5: {"height": 10, "width": 10, "frames": 10, "steps": 100},
    10**6: {"height": 10, "width": 10, "frames": 100, "steps": 100},
}


def values(field: str, n: int) -> str:
    if field in ("height", "width"):
        return ",".join(str(16 * (20 + 3 * i)) for i in range(n))
    if field == "frames":
        return ",".join(str(4 * i + 1) for i in range(1, n + 1))
    return ",".join(str(i) for i in range(1, n + 1))


WRAPPER = (
    "import resource, subprocess, sys\n"
    "code = subprocess.run(sys.argv[1:]).returncode\n"
    "print('maxrss_kb', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n"
    "sys.exit(code)\n"
)


def measure(points: int, grid: dict[str, int], output: Path) -> tuple[float, float, int]:
    """Wall seconds, peak RSS in MB, and bytes written."""
    argv = ["sweep", "wan2_1", "--max-points", str(points), "--output", str(output)]
    for field, n in grid.items():
        argv += ["--vary", f"{field}={values(field, n)}"]
    command = shutil.which("flopcheck") or str(Path(sys.executable).parent / "flopcheck")
    start = time.perf_counter()
    # A wrapper process runs the `flopcheck` command alone, so its children's peak is the sweep's.
    done = subprocess.run(
        [sys.executable, "-c", WRAPPER, command, *argv], cwd=ROOT, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"sweep of {points:,} points failed: {done.stderr.strip()}")
    kb = int(next(line.split()[1] for line in done.stderr.splitlines() if line.startswith("maxrss_kb")))
    written = sum(f.stat().st_size for f in output.rglob("*") if f.is_file())
    return seconds, kb / 1024, written


def main() -> None:
    print(f"{'points':>10} {'seconds':>8} {'peak RSS':>10} {'written':>10}")
    for points, grid in GRIDS.items():
        with tempfile.TemporaryDirectory() as tmp:
            seconds, peak_mb, written = measure(points, grid, Path(tmp) / "out")
        print(f"{points:>10,} {seconds:>8.1f} {peak_mb:>8.0f} MB {written / 1e6:>7.0f} MB")


if __name__ == "__main__":
    main()
