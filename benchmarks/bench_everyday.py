"""Benchmark: the everyday run's figures against their floors, as ratios within one run.

Prints, on this machine (issue 24's targets):
- the import floor: a fresh process that imports torch, diffusers and transformers with the model
  classes the ``wan2_1`` references use, and nothing else;
- ``pytest --flopcheck=wan2_1 -m flopcheck --co -q`` in this repository (the user's own test
  modules are collected too, then deselected), and the same collection in a project of its own
  (an empty directory: only the generated checks): each against the import floor (target 1.3×);
- the warm ``wan2_1`` run (every count from the reference cache), serial and with ``-n 2``,
  against its collection (target 1.5×);
- pytest's own floor for as many checks: a test file of that many trivial parametrised tests,
  collected and run in a fresh process with the same plugins, so the per-check cost of the
  generated checks reads against what pytest itself costs a test.

Every pytest run uses a private cache and output directory. Run:
python benchmarks/bench_everyday.py
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly"]
FLOPCHECK = ["--flopcheck=wan2_1", "-m", "flopcheck"]

IMPORTS = """
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from transformers import CLIPVisionModel, UMT5EncoderModel
"""

TRIVIAL = """
import pytest

@pytest.mark.parametrize("n", range({count}))
def test_check(n):
    assert n == n
"""


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode not in (0, 5):
        sys.exit(f"{' '.join(command)} exited {done.returncode}:\n{done.stdout[-2000:]}{done.stderr[-2000:]}")
    return seconds, done.stdout


def passed(output: str) -> int:
    """The passed count of pytest's last summary line (the plugin's stage lines say "passed" too)."""
    found = re.findall(r"(\d+) passed", output.strip().splitlines()[-1]) if output.strip() else []
    return int(found[-1]) if found else 0


def row(label: str, seconds: float, detail: str = "") -> None:
    print(f"{label + ':':<46}{seconds:7.1f} s" + (f"  ({detail})" if detail else ""))


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        private = ["-o", f"cache_dir={base / 'cache'}", f"--flopcheck-output={base / 'out'}"]
        alone = base / "alone"  # a project of its own: no test module of this repository
        alone.mkdir()
        alone_private = ["-o", f"cache_dir={base / 'cache'}", f"--flopcheck-output={base / 'out-alone'}"]

        floor, _ = timed([sys.executable, "-c", IMPORTS], ROOT)
        row("import floor (torch, diffusers, transformers)", floor)
        collect, _ = timed([*PYTEST, *FLOPCHECK, "--co", *private], ROOT)
        row("wan2_1 collection, this repository", collect, f"{collect / floor:.2f}x floor; target 1.3x")
        collect_alone, _ = timed([*PYTEST, "--flopcheck=wan2_1", "--co", *alone_private], alone)
        row("wan2_1 collection, a project of its own", collect_alone, f"{collect_alone / floor:.2f}x floor")

        timed([*PYTEST, *FLOPCHECK, *private], ROOT)  # fills the reference cache
        warm, out = timed([*PYTEST, *FLOPCHECK, *private], ROOT)
        checks = passed(out)
        row(f"wan2_1 warm, serial ({checks:,})", warm, f"{warm / collect:.2f}x collection; target 1.5x")
        warm2, _ = timed([*PYTEST, *FLOPCHECK, "-n", "2", *private], ROOT)
        row("wan2_1 warm, -n 2", warm2, f"{warm2 / collect:.2f}x collection")
        warm_alone, _ = timed([*PYTEST, "--flopcheck=wan2_1", *alone_private], alone)
        row("wan2_1 warm, a project of its own", warm_alone, f"{warm_alone / collect_alone:.2f}x collection")
        per_check = (warm_alone - collect_alone) / max(checks, 1) * 1e3

        trivial = base / "trivial"
        trivial.mkdir()
        (trivial / "test_trivial.py").write_text(TRIVIAL.format(count=checks))
        plain = [*PYTEST, "-o", f"cache_dir={base / 'cache'}"]
        env_note = "PYTHONDONTWRITEBYTECODE set" if os.environ.get("PYTHONDONTWRITEBYTECODE") else ""
        t_collect, _ = timed([*plain, "--co"], trivial)
        row(f"pytest floor: collect {checks:,} trivial tests", t_collect, env_note)
        t_run, _ = timed(plain, trivial)
        row(f"pytest floor: run {checks:,} trivial tests", t_run, f"{t_run / t_collect:.2f}x collection")
        floor_per_test = (t_run - t_collect) / max(checks, 1) * 1e3
        print(
            f"per check beyond collection: generated {per_check:.2f} ms, "
            f"pytest's trivial test {floor_per_test:.2f} ms ({per_check / floor_per_test:.2f}x)"
        )


if __name__ == "__main__":
    main()
