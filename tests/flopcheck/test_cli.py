"""The flopcheck command: report, sweep, diff, list; bad input."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_flopcheck.cli import main
from wan_models.wan2_1 import Workload, runs_per_generation, stage_tree


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def only_report(root: Path) -> dict[str, Any]:
    (path,) = root.glob("*/static_analysis/wan2_1/report.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_report_for_a_standard_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "wan2_1", "--workload", "W-003", "--output", str(tmp_path))
    assert code == 0
    (folder,) = tmp_path.glob("*/static_analysis/wan2_1")
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "summary.md"]
    report = only_report(tmp_path)
    assert report["schema_version"] == 1
    assert len(report["top_layers"]) == 10
    assert len(report["top_categories"]) == 5
    assert report["top_layers"][0]["id"] == "blocks.0.self_attn.core"
    assert report["top_categories"][0]["category"] == "self_attention_core"
    w = Workload(steps=50, frames=16, height=720, width=1280, text_len=512)
    stages = report["stage_totals"]
    for name, runs in runs_per_generation(w).items():
        assert stages[name]["per_run"]["flops"] == stage_tree(w, name).total.flops
        assert stages[name]["per_generation"]["flops"] == runs * stages[name]["per_run"]["flops"]
    assert report["totals"]["per_generation"]["flops"] == sum(
        s["per_generation"]["flops"] for s in stages.values()
    )
    assert report["memory"]["stages"]["diffusion_core"]["cache_bytes"] == 0
    assert report["memory"]["stages"]["vae_decode"]["cache_bytes"] > 0
    assert [e["gpu"] for e in report["time_estimates"]["estimates"]] == [
        "H100-SXM",
        "H200",
        "A100-80GB",
        "B200",
        "RTX-5090",
        "L40S",
    ]
    assert any("4n+1" in w for w in report["warnings"])
    assert any("Elementwise work" in item for item in report["not_modeled"])
    assert "end to end" in out
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 3


def test_identical_inputs_give_identical_rankings(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for _ in range(2):
        assert run(capsys, "report", "wan2_1", "--workload", "W-002", "--output", str(tmp_path))[0] == 0
    first, second = (
        json.loads(p.read_text()) for p in sorted(tmp_path.glob("*/static_analysis/wan2_1/report.json"))
    )
    assert first["top_layers"] == second["top_layers"]
    assert first["top_categories"] == second["top_categories"]


def test_resolution_change_is_non_decreasing_and_attributed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    low, high = tmp_path / "low", tmp_path / "high"
    run(capsys, "report", "wan2_1", "--height", "480", "--width", "832", "--output", str(low))
    run(capsys, "report", "wan2_1", "--height", "720", "--width", "1280", "--output", str(high))
    before, after = only_report(low), only_report(high)
    for stage in before["stage_totals"]:
        assert (
            after["stage_totals"][stage]["per_generation"]["flops"]
            >= before["stage_totals"][stage]["per_generation"]["flops"]
        )
    code, out, _ = run(capsys, "diff", str(low), str(high))
    assert code == 0
    assert "workload changes: height 480 -> 720, width 832 -> 1280" in out
    assert "diffusion_core/blocks." in out
    assert "self_attn.core" in out


def test_gpu_and_precision(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(capsys, "report", "wan2_1", "--gpu", "h100-sxm", "--precision", "fp8", "--output", str(tmp_path))[
            0
        ]
        == 0
    )
    times = only_report(tmp_path)["time_estimates"]
    assert [e["gpu"] for e in times["estimates"]] == ["H100-SXM"]
    assert times["estimates"][0]["peak_tflops"] == 1978.9
    assert run(capsys, "report", "wan2_1", "--precision", "fp8", "--output", str(tmp_path / "all"))[0] == 0
    assert only_report(tmp_path / "all")["time_estimates"]["not_supported"]["gpus"] == ["A100-80GB"]


BAD = [
    (("--height", "721"), "--height 721 is not allowed: it must be a positive multiple of 16"),
    (("--width", "0"), "--width 0 is not allowed"),
    (("--frames", "-3"), "--frames -3 is not allowed: it must be a positive integer"),
    (("--steps", "2.5"), "--steps '2.5' is not allowed: it must be an integer"),
    (("--batch-size", "two"), "--batch-size 'two' is not allowed: it must be an integer"),
    (("--text-len", "0"), "--text-len 0 is not allowed"),
    (("--workload", "W-404"), "--workload 'W-404' is not allowed: choose one of W-001, W-002, W-003, W-004"),
    (("--variant", "T2V-2B"), "--variant 'T2V-2B' is not allowed: choose one of T2V-14B, T2V-1.3B"),
    (("--dtype", "int3"), "--dtype 'int3' is not allowed"),
    (
        ("--gpu", "V100"),
        "--gpu 'V100' is not allowed: choose one of H100-SXM, H200, A100-80GB, B200, RTX-5090, L40S",
    ),
    (("--gpu", "A100-80GB", "--precision", "fp8"), "--precision 'fp8' is not supported by A100-80GB"),
    (("--precision", "fp4"), "--precision 'fp4' is not allowed: choose one of tf32, bf16, fp16, fp8"),
]


@pytest.mark.parametrize(("args", "message"), BAD)
def test_bad_report_options(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, out, err = run(capsys, "report", "wan2_1", *args, "--output", str(tmp_path / "out"))
    assert code == 2
    assert err.startswith("flopcheck: error: ")
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in err + out
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("report", "nope"), "model 'nope' is not registered: choose one of wan2_1"),
        (("sweep", "wan2_1"), "--vary is required"),
        (
            ("sweep", "wan2_1", "--vary", "colour=1"),
            "--vary 'colour' is not allowed: choose a field of variant",
        ),
        (("sweep", "wan2_1", "--vary", "height"), "--vary 'height' is not allowed: write FIELD=V1,V2"),
        (("sweep", "wan2_1", "--vary", "height=480,x"), "--height 'x' is not allowed: it must be an integer"),
        (("sweep", "wan2_1", "--vary", "height=480,500"), "--height 500 is not allowed"),
        (("diff", "missing.json", "other.json"), "'missing.json' is not allowed: it cannot be read as JSON"),
    ],
)
def test_bad_command_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    extra = ("--output", str(tmp_path / "out")) if argv[0] != "diff" else ()
    code, _, err = run(capsys, *argv, *extra)
    assert code == 2
    assert message in err
    assert not (tmp_path / "out").exists()


def test_sweep_writes_csv_json_and_plots(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys,
        "sweep",
        "wan2_1",
        "--workload",
        "W-001",
        "--vary",
        "height=256,512",
        "--vary",
        "frames=5,9,17",
        "--output",
        str(tmp_path),
    )
    assert code == 0
    assert "6 workloads" in out
    (folder,) = tmp_path.glob("*/sweep/wan2_1")
    assert sorted(p.name for p in folder.iterdir()) == ["frames.png", "height.png", "sweep.csv", "sweep.json"]
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert [(r["height"], r["frames"]) for r in rows] == [
        (h, f) for h in ("256", "512") for f in ("5", "9", "17")
    ]
    for row in rows:
        w = Workload(steps=1, frames=int(row["frames"]), height=int(row["height"]), width=256, text_len=64)
        runs = runs_per_generation(w)
        assert int(row["total_flops"]) == sum(n * stage_tree(w, s).total.flops for s, n in runs.items())
    document = json.loads((folder / "sweep.json").read_text())
    assert document["vary"] == {"height": [256, 512], "frames": [5, 9, 17]}
    assert (folder / "height.png").read_bytes()[:4] == b"\x89PNG"


def test_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "list")
    assert code == 0
    assert "wan2_1:" in out
    assert "W-003" in out
    assert "H200" in out


def test_huge_workload_report_is_valid_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = (
        "--height",
        "2160",
        "--width",
        "3840",
        "--frames",
        "1001",
        "--steps",
        "1000",
        "--batch-size",
        "64",
    )
    assert run(capsys, "report", "wan2_1", *argv, "--output", str(tmp_path))[0] == 0
    report = only_report(tmp_path)
    assert isinstance(report["totals"]["per_generation"]["flops"], int)
    assert any("extrapolation" in w for w in report["warnings"])
