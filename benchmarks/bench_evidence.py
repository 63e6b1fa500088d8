"""Benchmark: the cost of a verification run around its reference counts.

Prints, on this machine:
- 2,568 skips (W-001 on an absent CUDA device) against only collecting them;
- the standard run (`pytest --flopcheck=wan2_1 -m flopcheck` on the seed set W-001..W-004 and
  the two text-to-video generations) serial and with `-n 2`, both
  counting every reference, and warm from the reference cache, each against the floor of
  building and counting the 12 references alone in one process;
- how many reference counts each run made (each reference must be counted once);
- the size of the standard run's report.html and how long headless Chromium takes to load it.

Every pytest run uses a private cache and output directory. Run: python benchmarks/bench_evidence.py
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = "W-001,W-002,W-003,W-004,tiny-guided,tiny-unguided"
"""The seed specification's standard set and the two text-to-video generations (the set these
figures have always been measured on; the image-to-video workloads came later)."""
PYTEST = [
    sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "--flopcheck=wan2_1", "-m", "flopcheck",
    f"--flopcheck-workloads={SEED}",
]  # fmt: skip


def timed_pytest(*args: str, cache: Path, output: Path) -> tuple[float, int, Path | None]:
    before = set(output.iterdir()) if output.exists() else set()
    command = [*PYTEST, "-o", f"cache_dir={cache}", f"--flopcheck-output={output}", *args]
    start = time.perf_counter()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    new = sorted(set(output.iterdir()) - before) if output.exists() else []
    return seconds, done.returncode, (new[-1] / "flopcheck" if new else None)


def counted(run: Path | None) -> str:
    if run is None:
        return "no evidence"
    runs = json.loads((run / "evidence.json").read_text())["timing"]["reference_runs"]
    sources = [r["source"] for r in runs]
    return f"{sources.count('counted')} counted, {sources.count('cache')} from the cache"


FLOOR = """
import sys
sys.path.insert(0, "benchmarks")
from torch_floor import count_flops
from wan_models.wan2_1 import STANDARD_WORKLOADS, reference, runs_per_generation
for name in ("W-001", "W-002", "W-003", "W-004"):
    workload = STANDARD_WORKLOADS[name]
    for stage, runs in runs_per_generation(workload).items():
        if runs:
            count_flops(reference.build(workload, stage, "meta"))
"""


def floor_seconds() -> float:
    """A fresh process that imports torch, diffusers and transformers and builds and counts the
    12 standard references, nothing else: the least a verification run can take."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", FLOOR], cwd=ROOT, check=True)
    return time.perf_counter() - start


def chromium_load_seconds(page: Path) -> float | None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        return None
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
    ]

    def load(url: str) -> float:
        with tempfile.TemporaryDirectory() as profile:
            start = time.perf_counter()
            subprocess.run(
                [browser, *flags, f"--user-data-dir={profile}", "--dump-dom", url],
                capture_output=True,
                check=False,
                timeout=120,
            )
            return time.perf_counter() - start

    blank = min(load("about:blank") for _ in range(2))
    return min(load(page.as_uri()) for _ in range(3)) - blank


def row(label: str, seconds: float, detail: str) -> None:
    print(f"{label + ':':<36}{seconds:6.1f} s" + (f"  ({detail})" if detail else ""))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        cache, output = base / "cache", base / "out"
        collect, _, _ = timed_pytest(
            "--collect-only", "--flopcheck-workloads=W-001", cache=cache, output=output
        )
        skips, code, _ = timed_pytest(
            "--flopcheck-workloads=W-001", "--flopcheck-device=cuda", cache=cache, output=output
        )
        row("collect W-001 (2,568 checks)", collect, "")
        row("skip W-001 on absent cuda", skips, f"exit {code}; {skips - collect:+.1f} s over collecting")

        floor = floor_seconds()
        row("floor: build and count 12 refs", floor, "a fresh process, imports included")
        serial, code, run = timed_pytest("--flopcheck-recount", cache=cache, output=output)
        row(
            "standard run, serial, counting",
            serial,
            f"{serial / floor:.2f}x floor; exit {code}; {counted(run)}",
        )
        parallel, code, run = timed_pytest("--flopcheck-recount", "-n", "2", cache=cache, output=output)
        row(
            "standard run, -n 2, counting",
            parallel,
            f"{parallel / floor:.2f}x floor; exit {code}; {counted(run)}",
        )
        warm, code, run = timed_pytest(cache=cache, output=output)
        row(
            "standard run, serial, warm cache",
            warm,
            f"{warm / floor:.2f}x floor; exit {code}; {counted(run)}",
        )
        if run is not None:
            page = run / "report.html"
            print(f"report.html: {page.stat().st_size / 1e6:.3f} MB")
            seconds = chromium_load_seconds(page)
            print(
                "report.html load in headless Chromium: "
                + ("chromium not installed" if seconds is None else f"{seconds:.2f} s over a blank page")
            )


if __name__ == "__main__":
    main()
