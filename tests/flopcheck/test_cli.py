"""The flopcheck command: report, sweep, diff, list; bad input."""

from __future__ import annotations

import csv
import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_flopcheck.cli.app import main
from pytest_flopcheck.sizing import plots
from pytest_flopcheck.sizing.hardware import lookup
from wan_models.wan2_1 import Workload, runs_per_generation, stage_tree


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def only_report(root: Path, model: str = "wan2_1") -> dict[str, Any]:
    (path,) = root.glob(f"*/static_analysis/{model}/report.json")
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def test_report_for_a_standard_workload(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "report", "wan2_1", "--workload", "W-003", "--output", str(tmp_path))
    assert code == 0
    (folder,) = tmp_path.glob("*/static_analysis/wan2_1")
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "report.json", "summary.md"]
    report = only_report(tmp_path)
    assert report["schema_version"] == 2
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
        "H800",
        "H20",
        "A100-80GB",
        "A800",
        "B200",
        "RTX-5090",
        "RTX-4090",
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
    assert only_report(tmp_path / "all")["time_estimates"]["not_supported"]["gpus"] == ["A100-80GB", "A800"]


def test_runtime_on_several_gpus(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--gpus N sizes the runtime in the layout its script uses on N GPUs: one GPU's (rank 0's)
    FLOPs, collectives, weights and seconds, with the layout in report.json."""
    figures = {}
    for n in (1, 4):
        out = tmp_path / str(n)
        argv = ("report", "wan2_1", "--workload", "W-003", "--gpu", "H100-SXM", "--runtime", "official")
        assert run(capsys, *argv, "--gpus", str(n), "--output", str(out))[0] == 0
        figures[n] = only_report(out)["runtime"]
    one, four = figures[1], figures[4]
    assert one["layout"] == {"gpus": 1, "ulysses": 1, "ring": 1, "cfg": 1, "fsdp": [], "data": 1, "tensor": 1}
    assert four["layout"] == {
        "gpus": 4,
        "ulysses": 4,
        "ring": 1,
        "cfg": 1,
        "fsdp": ["diffusion_core", "text_encoder"],
        "data": 1,
        "tensor": 1,
    }
    dit1, dit4 = one["stages"]["diffusion_core"], four["stages"]["diffusion_core"]
    assert dit1["collective_bytes"] == 0 < dit4["collective_bytes"]
    # the blocks split four ways; the embeddings, the text keys and values run on every rank
    assert dit1["flops"] / 4 < dit4["flops"] < dit1["flops"] / 4 * 1.05
    assert dit4["sharded"]
    assert dit4["weight_bytes"] == -(-dit1["weight_bytes"] // 4)
    assert four["stages"]["vae_decode"]["flops"] == one["stages"]["vae_decode"]["flops"]  # rank 0 decodes
    assert four["moves"] == []  # no offloading on several GPUs
    assert four["peak_gpu_bytes"] < one["peak_gpu_bytes"]
    assert one["seconds"] / 4 < four["seconds"] < one["seconds"] / 3
    (estimate,) = four["estimates"]
    assert estimate["stages"]["diffusion_core"]["parts"]["communication_s"] > 0
    assert only_report(tmp_path / "4")["schema_version"] == 2
    # its collectives per run by kind and group: the q, k, v and output all-to-alls of 40 blocks;
    # an FSDP all-gather per block and at the root, and the output's gather
    uses = {(c["kind"], c["group"]): c for c in dit4["collectives"]}
    assert set(uses) == {("all_to_all", 4), ("all_gather", 4)}
    assert (uses["all_to_all", 4]["calls"], uses["all_gather", 4]["calls"]) == (160, 42)
    assert sum(c["bytes"] for c in uses.values()) == dit4["collective_bytes"]
    # each stage says how the layout splits it and which test_parallel layout verifies that split
    assert (dit4["split"], dit4["checked_as"]) == ("Ulysses × FSDP", "u2-fsdp")
    assert (four["stages"]["text_encoder"]["split"], four["stages"]["text_encoder"]["checked_as"]) == (
        "FSDP",
        "u2-fsdp",
    )
    assert four["stages"]["vae_decode"]["split"] == ""
    assert dit1["split"] == ""
    summary = (next(tmp_path.glob("4/*/static_analysis/wan2_1")) / "summary.md").read_text()
    assert "text\\_encoder by FSDP, checked as u2-fsdp" in summary
    assert "checked as u2-fsdp" in summary


def test_cfg_parallel_exchanges_the_predictions_and_is_marked_unchecked(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """CFG parallel halves each GPU's DiT forwards, adds one all-gather of the prediction per
    forward over the two branches, and says that no check verifies it."""
    argv = ("report", "wan2_1", "--workload", "W-003", "--gpu", "H100-SXM", "--runtime", "diffusers")
    figures = {}
    for spec in ("ulysses=2", "ulysses=2,cfg=2", "u2c2"):  # a layout, or its slug
        assert run(capsys, *argv, "--layout", spec, "--output", str(tmp_path / spec))[0] == 0
        figures[spec] = only_report(tmp_path / spec)["runtime"]["stages"]["diffusion_core"]
    u2, cfg = figures["ulysses=2"], figures["ulysses=2,cfg=2"]
    assert figures["u2c2"] == cfg
    assert cfg["runs_per_generation"] * 2 == u2["runs_per_generation"]
    latent = 16 * 4 * 90 * 160 * 2  # W-003's latent (16 channels, 4 frames, 90 × 160) in bf16
    assert cfg["collective_bytes"] - u2["collective_bytes"] == latent
    assert (u2["split"], u2["checked_as"]) == ("Ulysses", "u2")
    assert (cfg["split"], cfg["checked_as"]) == ("Ulysses × CFG parallel", "")


def test_ocr_pages_served_by_data_parallel_replicas(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The served OCR runtime on N GPUs is N replicas, each with every weight and a share of the
    pages: the first replica's batch, seconds and peak; the throughput of all of them."""
    figures = {}
    for n in (1, 4):
        argv = ("report", "deepseek_ocr2", "--pages", "8", "--gpu", "H100-SXM", "--runtime", "served")
        assert run(capsys, *argv, "--gpus", str(n), "--output", str(tmp_path / str(n)))[0] == 0
        figures[n] = only_report(tmp_path / str(n), "deepseek_ocr2")
    one, four = (figures[n]["runtime"] for n in (1, 4))
    assert four["layout"]["data"] == 4
    two_pages = ("report", "deepseek_ocr2", "--pages", "2", "--gpu", "H100-SXM", "--runtime", "served")
    assert run(capsys, *two_pages, "--output", str(tmp_path / "two"))[0] == 0
    alone = only_report(tmp_path / "two", "deepseek_ocr2")["runtime"]
    for stage in ("vision", "prefill", "decode"):  # replica 0 serves 2 of the 8 pages
        assert four["stages"][stage]["flops"] == alone["stages"][stage]["flops"]
        assert four["stages"][stage]["weight_bytes"] == one["stages"][stage]["weight_bytes"]
    assert four["seconds"] == pytest.approx(alone["seconds"])
    serving = [figures[n]["serving"]["estimates"][0]["units_per_s"] for n in (1, 4)]
    assert serving[0] < serving[1] <= 4 * serving[0]
    for args, message in (
        (("--pages", "2", "--gpus", "4"), "data=4 replicas for 2 pages leave replicas idle"),
        (("--layout", "ulysses=2"), "is not modelled for the OCR models: they run data parallel"),
    ):
        argv = ("report", "deepseek_ocr2", "--gpu", "H100-SXM", "--runtime", "served", *args)
        code, out, err = run(capsys, *argv, "--output", str(tmp_path / "bad"))
        assert code == 2
        assert message in err
        assert "Traceback" not in out + err


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
        "--gpu 'V100' is not allowed: choose one of H100-SXM, H200, H800, H20, A100-80GB, A800, B200, "
        "RTX-5090, RTX-4090, L40S",
    ),
    (("--gpu", "A100-80GB", "--precision", "fp8"), "--precision 'fp8' is not supported by A100-80GB"),
    (("--precision", "fp4"), "--precision 'fp4' is not allowed: choose one of tf32, bf16, fp16, fp8"),
    (("--gpus", "2"), "--gpus is not allowed without --runtime"),
    (
        ("--runtime", "official", "--gpus", "0"),
        "--gpus '0' is not allowed: give a positive whole number of GPUs",
    ),
    (("--runtime", "official", "--gpus", "two"), "--gpus 'two' is not allowed"),
    (("--runtime", "official-t5-cpu", "--gpus", "2"), "runtime official-t5-cpu runs on one GPU only"),
    (
        ("--runtime", "official", "--layout", "ulysses=3"),
        "ulysses=3 does not divide the DiT's 40 attention heads",
    ),
    (
        ("--runtime", "official", "--gpus", "4", "--layout", "ulysses=2"),
        "--gpus 4 is not allowed with --layout 'ulysses=2': its degrees multiply to 2 GPUs",
    ),
    (("--runtime", "official", "--layout", "cfg=2", "--no-guidance"), "this workload has no guidance"),
    (("--runtime", "official", "--layout", "cfg=3"), "cfg must be 1 or 2"),
    (("--runtime", "official", "--layout", "tp=2"), "layout item 'tp=2' is not KEY=VALUE"),
    (("--runtime", "official", "--layout", "x2"), "layout 'x2' is not a slug"),
    (("--runtime", "official", "--layout", "t2"), "tensor=2 is not modelled for Wan"),
    (("--runtime", "official", "--layout", "fsdp=vae_decode"), "fsdp=vae_decode cannot be sharded"),
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
        (("report", "nope"), "model 'nope' is not registered: choose one of "),
        (("sweep", "wan2_1"), "--vary is required"),
        (
            ("sweep", "wan2_1", "--vary", "colour=1"),
            "--vary 'colour' is not allowed: choose a field of variant",
        ),
        (("sweep", "wan2_1", "--vary", "height"), "--vary 'height' is not allowed: write FIELD=V1,V2"),
        (("sweep", "wan2_1", "--vary", "height=480,x"), "--height 'x' is not allowed: it must be an integer"),
        (("sweep", "wan2_1", "--vary", "height=480,500"), "--height 500 is not allowed"),
        (("diff", "missing.json", "other.json"), "'missing.json' cannot be read (No such file or directory)"),
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


# -- hardening: every bad input is one sentence, exit 2, nothing written -----------------------------

HUGE = "9" * 5000
BAD_CLI = [
    # options
    (("list", "--bogus"), "unrecognized arguments: --bogus"),
    (
        ("report", "wan2_1", "--height", HUGE),
        "--height '99999999999999999999... is not allowed: it has 5,000 digits",
    ),
    (
        ("report", "wan2_1", "--height", "1" + "0" * 149),
        "is not allowed: it has 150 digits, more than the 30",
    ),
    (
        ("report", "wan2_1", "--batch-size", "1" + "0" * 290),
        "is not allowed: it has 291 digits",
    ),
    (("report", "wan2_1", "--output", " "), "--output is empty: give a directory"),
    (
        ("sweep", "wan2_1", "--vary", "height=480,,720"),
        "--vary 'height=480,,720' is not allowed: it has an empty value",
    ),
    (("sweep", "wan2_1", "--vary", "height=,"), "--vary 'height=,' is not allowed: it has an empty value"),
    (("sweep", "wan2_1", "--vary", "colour=1,2"), "--vary 'colour' is not allowed: choose a field of"),
    (
        ("sweep", "wan2_1", "--height", "480", "--vary", "height=480,720"),
        "--vary 'height' is not allowed together with --height",
    ),
    (
        ("sweep", "wan2_1", "--vary", "height=16,32,48", "--vary", "width=16,32", "--max-points", "5"),
        "--vary gives 6 workloads, more than --max-points 5",
    ),
    (("sweep", "wan2_1", "--vary", "height=16", "--max-points", "0"), "--max-points 0 is not allowed"),
    (("prune", "--keep", "-1"), "--keep -1 is not allowed: it must be 0 or more"),
    (("prune", "--keep", "x"), "argument --keep: invalid int value: 'x'"),
]


@pytest.mark.parametrize(("argv", "message"), BAD_CLI)
def test_bad_cli_input_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: tuple[str, ...], message: str
) -> None:
    out_dir = tmp_path / "out"
    extra = (
        ("--output", str(out_dir))
        if argv[0] in ("report", "sweep", "prune") and "--output" not in argv
        else ()
    )
    if argv[0] == "prune":
        out_dir.mkdir()
    code, out, err = run(capsys, *argv, *extra)
    assert code == 2
    assert err.startswith("flopcheck: error: ")
    assert err.count("\n") == 1
    assert message in err
    assert len(err) < 600
    assert "Traceback" not in out + err
    assert not out_dir.exists() or not any(out_dir.iterdir())


def test_a_float_overflow_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_flopcheck.cli.workloads as cli

    monkeypatch.setattr(cli, "MAX_DIGITS", 400)  # past the digit limit, the float guard still holds
    code, _, err = run(
        capsys, "report", "wan2_1", "--batch-size", "1" + "0" * 290, "--output", str(tmp_path / "o")
    )
    assert code == 2
    assert "is too large: its counts exceed the range of a float" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def evidence_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """A real, minimal evidence document (from the record's own writer)."""
    from pytest_flopcheck.evidence.record import CheckRecord, RunRecord
    from pytest_flopcheck.verification.compare import Comparison

    comparison = Comparison("m", "w", "s", "l", "l", "flops", 10, 10, 0.0)
    check = CheckRecord(
        "test_layer[m/w/s/l]", "test_layer", "m", "w", "s", "l", "passed", comparisons=(comparison,)
    )
    run_record = RunRecord("r", "t", "complete", 1, {}, {"models": ["m"]}, (check,))
    return run_record.to_json()


def hostile(document: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    import copy

    changed = copy.deepcopy(document)
    target: Any = changed
    for key in path[:-1]:
        target = target[key]
    if value is KeyError:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return changed


ROW = ("checks", "m", "w", "s", "l", "test_layer")
HOSTILE = [
    (
        (*ROW, 1, 0, 1),
        1.5,
        "field checks.m.w.s.l.test_layer[1][0][1] (analytic) is 1.5 (a float); it must be an integer",
    ),
    (
        (*ROW, 1, 0, 1),
        True,
        "field checks.m.w.s.l.test_layer[1][0][1] (analytic) is True (a boolean); it must be",
    ),
    (
        (*ROW, 1, 0, 2),
        "10",
        "field checks.m.w.s.l.test_layer[1][0][2] (reference) is '10'; it must be an integer",
    ),
    ((*ROW, 1, 0, 0), KeyError, "field checks.m.w.s.l.test_layer[1][0] is [10, 10, 0.0]; it must be"),
    (
        ("checks", "m", "w", "s", "l", "module"),
        3,
        "field checks.m.w.s.l.module is 3; it must be text or null",
    ),
    ((*ROW, 0), "great", "field checks.m.w.s.l.test_layer[0] is 'great'; it must be one of passed"),
    (
        ("checks", "m", "w", "s", "l", "test_nothing"),
        ["passed", []],
        "field checks.m.w.s.l.test_nothing names no kind",
    ),
    (("checks",), [], "field checks is []; it must be an object"),
    (("tests", "selected"), None, "field tests.selected is None; it must be an integer"),
    (("schema_version",), 99, "is evidence of schema version 99; this flopcheck reads versions 3, 4"),
    (("selection", "workloads"), 5, "field selection.workloads is 5; it must be an object"),
    ((*ROW,), ["passed", [], {"gaps": 5}], "field checks.m.w.s.l.test_layer[2].gaps is 5; it must be a list"),
    (("errors",), [{"extra": 1}], "field errors[0].extra is not a field of this schema version"),
    (("warnings",), [3], "field warnings is [3]; it must be a list of text"),
]


@pytest.mark.parametrize(("path", "value", "message"), HOSTILE)
def test_diff_rejects_hostile_evidence_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], path: tuple[str | int, ...], value: Any, message: str
) -> None:
    good = tmp_path / "good.json"
    good.write_text(json.dumps(evidence_document(tmp_path, capsys)))
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(hostile(json.loads(good.read_text()), path, value)))
    code, _, err = run(capsys, "diff", str(good), str(bad))
    assert code == 2
    assert f"{bad}: " in err or str(bad) in err
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"kind": "flopcheck.evidence", "x": NaN}', "holds NaN, which is not a number JSON allows"),
        ('{"a": Infinity}', "holds Infinity"),
        ("[" * 5000 + "]" * 5000, "is nested too deeply"),
        ('{"a": ' + "1" * 5000 + "}", "is not valid JSON"),
        ("\xff\xfe", "is not UTF-8 text"),
        ('{"kind": "something else"}', "is neither a flopcheck report.json nor an evidence.json"),
    ],
)
def test_diff_rejects_files_that_are_not_sane_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_bytes(content.encode("latin-1"))
    code, _, err = run(capsys, "diff", str(bad), str(bad))
    assert code == 2
    assert str(bad) in err
    assert message in err


def test_diff_refuses_fifos_and_reports_of_different_models(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    code, _, err = run(capsys, "diff", str(fifo), str(fifo))  # would block forever if it were opened
    assert code == 2
    assert "is not a regular file" in err
    assert run(capsys, "report", "wan2_1", "--workload", "W-001", "--output", str(tmp_path / "a"))[0] == 0
    (report_path,) = (tmp_path / "a").glob("*/static_analysis/wan2_1/report.json")
    other = json.loads(report_path.read_text())
    other["model"]["name"] = "other"
    (tmp_path / "other.json").write_text(json.dumps(other))
    code, _, err = run(capsys, "diff", str(report_path), str(tmp_path / "other.json"))
    assert code == 2
    assert "cannot compare reports of different models: 'wan2_1' and 'other'" in err


FULL_DISK_WRITE = OSError(28, "No space left on device")


@pytest.mark.parametrize(
    "command", [("report", "wan2_1", "--workload", "W-001"), ("sweep", "wan2_1", "--vary", "height=256,512")]
)
def test_a_full_disk_leaves_nothing_behind(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: tuple[str, ...],
) -> None:
    out_dir = tmp_path / "out"
    assert run(capsys, *command, "--output", str(out_dir))[0] == 0
    earlier = sorted(out_dir.iterdir())
    real_open = Path.open

    def full(self: Path, mode: str = "r", *args: Any, **kwargs: Any) -> Any:
        if "w" in mode and ".partial" in str(self):
            raise FULL_DISK_WRITE
        return real_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(Path, "open", full)
    code, _, err = run(capsys, *command, "--output", str(out_dir))
    assert code == 2
    assert "could not be written under" in err
    assert "No space left on device" in err
    assert sorted(out_dir.iterdir()) == earlier  # no partial run, the earlier one untouched


def test_an_output_under_a_file_is_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    code, _, err = run(capsys, "report", "wan2_1", "--output", str(tmp_path / "file" / "below"))
    assert code == 2
    assert "it cannot hold a run directory" in err
    code, _, err = run(capsys, "report", "wan2_1", "--output", str(tmp_path / "file"))
    assert code == 2
    assert "it is a file, not a directory" in err


def test_sweep_streams_every_point_and_shows_progress_on_long_sweeps(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import pytest_flopcheck.cli.sweep as cli

    monkeypatch.setattr(cli, "PROGRESS_FROM", 10)
    code, out, err = run(
        capsys,
        "sweep",
        "wan2_1",
        "--vary",
        "height=16,32,48,64",
        "--vary",
        "frames=1,5,9,13,17",
        "--output",
        str(tmp_path),
    )
    assert code == 0
    assert "20 workloads" in out
    assert "swept 20 of 20 workloads" in err
    (folder,) = tmp_path.glob("*/sweep/wan2_1")
    document = json.loads((folder / "sweep.json").read_text())
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert len(document["rows"]) == len(rows) == 20
    assert [int(r["total_flops"]) for r in rows] == [r["total_flops"] for r in document["rows"]]


def test_prune_keeps_the_newest_runs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    made: list[str] = []  # in the order they were made, well within one second
    for _ in range(3):
        assert run(capsys, "report", "wan2_1", "--workload", "W-001", "--output", str(tmp_path))[0] == 0
        made += sorted({p.name for p in tmp_path.iterdir()} - set(made))
    (tmp_path / "notes").mkdir()  # not a run: never touched
    (tmp_path / "20200101T000000Z-abcdef").mkdir()  # a run named to the second, as before 2026-12-07
    assert len(made) == 3
    code, out, _ = run(capsys, "prune", "--keep", "1", "--dry-run", "--output", str(tmp_path))
    assert code == 0
    assert "would remove 3 of 4 runs" in out
    assert len(list(tmp_path.iterdir())) == 5
    code, out, _ = run(capsys, "prune", "--keep", "1", "--output", str(tmp_path))
    assert "removed 3 of 4 runs" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([made[-1], "notes"])  # the newest


# -- model plugins named on the command line ---------------------------------------------------------

TOY_SOURCE = (Path(__file__).parent / "toy_model.py").read_text()
DATACLASS_PLUGIN = """
import dataclasses
from pytest_flopcheck import CostNode, Metrics, ModelRegistration, Stage, hookimpl


@dataclasses.dataclass(frozen=True)
class Pages:
    pages: int = 1
    mode: str = "base"


def analytic(w, stage):
    return CostNode("", "model", Metrics(flops=1000 * w.pages))


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(name="pages", stages=(Stage("core", 0.0),), workloads={"one": Pages()},
                               analytic=analytic, workload_type=Pages))
"""


def test_a_plugin_file_named_with_p_is_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "conftest.py"
    plugin.write_text(TOY_SOURCE)
    code, out, _ = run(capsys, "-p", str(plugin), "list")
    assert code == 0
    assert "toy:" in out
    assert "wan2_1:" in out  # entry points still load
    code, out, _ = run(
        capsys, "-p", str(plugin), "report", "toy", "--workload", "small", "--output", str(tmp_path / "o")
    )
    assert code == 0
    (report_path,) = (tmp_path / "o").glob("*/static_analysis/toy/report.json")
    assert json.loads(report_path.read_text())["model"]["name"] == "toy"


def test_a_dataclass_workload_gets_options(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "pages_plugin.py"
    plugin.write_text(DATACLASS_PLUGIN)
    out_dir = tmp_path / "o"
    code, out, _ = run(capsys, "-p", str(plugin), "report", "pages", "--pages", "3", "--output", str(out_dir))
    assert code == 0
    assert "3,000 FLOPs" in out
    code, out, _ = run(
        capsys, "-p", str(plugin), "sweep", "pages", "--vary", "pages=1,2,4", "--output", str(out_dir)
    )
    assert code == 0
    (csv_path,) = out_dir.glob("*/sweep/pages/sweep.csv")
    assert [r["total_flops"] for r in csv.DictReader(csv_path.open())] == ["1000", "2000", "4000"]
    code, _, err = run(capsys, "-p", str(plugin), "report", "pages", "--pages", "x", "--output", str(out_dir))
    assert code == 2
    assert "--pages 'x' is not allowed: it must be an integer" in err


def test_a_workload_class_without_fields_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "plain_plugin.py"
    plugin.write_text(DATACLASS_PLUGIN.replace("@dataclasses.dataclass(frozen=True)\n", ""))
    code, _, err = run(capsys, "-p", str(plugin), "report", "pages", "--output", str(tmp_path / "o"))
    assert code == 2
    assert "the workload class Pages is neither an attrs class nor a dataclass" in err
    code, _, _ = run(
        capsys, "-p", str(plugin), "report", "pages", "--workload", "one", "--output", str(tmp_path / "o")
    )
    assert code == 0


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_plugin_module", "-p 'no_such_plugin_module' could not be imported: ModuleNotFoundError"),
        ("missing.py", "-p 'missing.py' is not allowed: there is no such file"),
    ],
)
def test_a_plugin_that_cannot_be_imported_is_one_sentence(
    capsys: pytest.CaptureFixture[str], spec: str, message: str
) -> None:
    code, _, err = run(capsys, "-p", spec, "list")
    assert code == 2
    assert message in err
    assert err.count("\n") == 1


# -- architectures from a checkpoint's config.json ---------------------------------------------------

DIFFUSERS_1_3B = {
    "_class_name": "WanTransformer3DModel",
    "num_attention_heads": 12,
    "attention_head_dim": 128,
    "in_channels": 16,
    "out_channels": 16,
    "text_dim": 4096,
    "freq_dim": 256,
    "ffn_dim": 8960,
    "num_layers": 30,
    "patch_size": [1, 2, 2],
}


def test_report_and_sweep_read_the_architecture_from_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    checkpoint = tmp_path / "Wan2.1-T2V-1.3B-Diffusers"
    (checkpoint / "transformer").mkdir(parents=True)
    (checkpoint / "transformer" / "config.json").write_text(json.dumps(DIFFUSERS_1_3B))
    size = ("--height", "480", "--width", "832")
    assert (
        run(capsys, "report", "wan2_1", "--config", str(checkpoint), *size, "--output", str(tmp_path / "a"))[
            0
        ]
        == 0
    )
    assert (
        run(capsys, "report", "wan2_1", "--variant", "T2V-1.3B", *size, "--output", str(tmp_path / "b"))[0]
        == 0
    )
    from_config, from_variant = only_report(tmp_path / "a"), only_report(tmp_path / "b")
    assert from_config["totals"] == from_variant["totals"]
    assert from_config["workload"]["dit_config"]["name"] == "Wan2.1-T2V-1.3B-Diffusers"
    assert any("read from a checkpoint's config.json" in w for w in from_config["warnings"])
    code, out, _ = run(
        capsys,
        "sweep",
        "wan2_1",
        "--config",
        str(checkpoint),
        "--vary",
        "frames=5,9",
        "--output",
        str(tmp_path / "c"),
    )
    assert code == 0
    assert "2 workloads" in out


def test_a_bad_config_is_one_sentence_naming_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "config.json"
    bad.write_text(json.dumps({**DIFFUSERS_1_3B, "num_attention_heads": 7, "attention_head_dim": "x"}))
    code, _, err = run(capsys, "report", "wan2_1", "--config", str(bad), "--output", str(tmp_path / "o"))
    assert code == 2
    assert f"--config '{bad}' is not allowed: {bad}: field 'attention_head_dim' is 'x'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "o").exists()
    plugin = tmp_path / "toy_plugin.py"
    plugin.write_text(TOY_SOURCE)
    code, _, err = run(
        capsys, "-p", str(plugin), "report", "toy", "--workload", "small", "--config", str(bad)
    )
    assert code == 2
    assert "--config is not allowed: model 'toy' does not read checkpoint configs" in err


PHASES_PLUGIN = """
from pytest_flopcheck import CostNode, Metrics, ModelRegistration, Stage, hookimpl


def analytic(w, stage):
    flops = 10_000 if stage == "prefill" else 100
    return CostNode("", "decoder", Metrics(flops=flops, params=1000, weight_bytes=2000))


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(
        name="phases",
        stages=(Stage("prefill", 0.0), Stage("decode", 0.0, weights_of="prefill")),
        workloads={"w": 1},
        analytic=analytic,
        multiplicities=lambda w: {"prefill": 1, "decode": 50},
    ))
"""


def test_phases_sharing_weights_count_them_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "phases_plugin.py"
    plugin.write_text(PHASES_PLUGIN)
    code, _, _ = run(
        capsys, "-p", str(plugin), "report", "phases", "--workload", "w", "--output", str(tmp_path)
    )
    assert code == 0
    (path,) = tmp_path.glob("*/static_analysis/phases/report.json")
    report = json.loads(path.read_text())
    assert report["totals"]["per_generation"]["flops"] == 10_000 + 50 * 100
    assert report["totals"]["per_generation"]["params"] == 1000  # not 2000: decode runs prefill's weights
    assert report["memory"]["pipeline"]["weight_bytes"] == 2000
    assert report["model"]["stages"][1]["weights_of"] == "prefill"


SERVING_PLUGIN = """
import dataclasses

from pytest_flopcheck import CostNode, Metrics, ModelRegistration, Serving, Stage, hookimpl


@dataclasses.dataclass(frozen=True)
class Gen:
    batch: int = 2
    prompt: int = 10
    new_tokens: int = 5


def analytic(w, stage):
    flops = {"encode": 10**12, "prefill": 2 * 10**12, "decode": (w.new_tokens - 1) * 10**11}[stage]
    leaf = CostNode(stage + ".work", "work", Metrics(flops=flops, params=10, weight_bytes=20))
    return CostNode("", stage, leaf.metrics, (leaf,))


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(
        name="gen",
        stages=(Stage("encode", 0.0), Stage("prefill", 0.0), Stage("decode", 0.0, weights_of="prefill")),
        workloads={"w": Gen()},
        analytic=analytic,
        workload_type=Gen,
        serving=Serving(
            first_token=("encode", "prefill"),
            per_token="decode",
            new_tokens=lambda w: w.new_tokens,
            sequences=lambda w: w.batch,
            context=lambda w: w.prompt,
            cache_bytes_per_token=lambda w: 100,
            unit="request",
            max_context=4096,
        ),
    ))
"""


def test_serving_figures_in_the_report(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "gen_plugin.py"
    plugin.write_text(SERVING_PLUGIN)
    code, _, _ = run(
        capsys, "-p", str(plugin), "report", "gen", "--gpu", "H100-SXM", "--output", str(tmp_path / "o")
    )
    assert code == 0
    (folder,) = (tmp_path / "o").glob("*/static_analysis/gen")
    serving = json.loads((folder / "report.json").read_text())["serving"]
    # H100 SXM dense bf16 at its largest achievable matmul efficiency: the toy's leaves name no
    # shape, so each is a large GEMM, and it moves no bytes, so every stage is compute-bound
    gpu = lookup("H100-SXM")
    peak = gpu.peak_flops("bf16") * gpu.gemm["bf16"].value
    (estimate,) = serving["estimates"]
    assert estimate["time_to_first_token_s"] == pytest.approx(3e12 / peak)
    assert estimate["time_per_output_token_s"] == pytest.approx(1e11 / peak)
    assert estimate["generation_s"] == pytest.approx(3.4e12 / peak)
    assert estimate["units_per_s"] == pytest.approx(2 / (3.4e12 / peak))
    assert estimate["output_tokens_per_s"] == pytest.approx(2 * 5 / (3.4e12 / peak))
    assert serving["final_context"] == 10 + 5 - 1
    assert serving["kv_cache"]["by_length"] == [
        {"tokens": n, "bytes": 2 * n * 100} for n in (10, 14, 1024, 2048, 4096)
    ]
    summary = (folder / "summary.md").read_text()
    assert "## Serving" in summary
    assert "2 requests per batch, 5 new tokens each" in summary
    assert "| tokens per request | KV cache, 2 requests |  |" in summary
    assert "| 14 | 2.80 kB | last step |" in summary
    assert "Workload: batch=2, prompt=10, new\\_tokens=5" in summary  # literal Markdown
    assert "<h2>Serving</h2>" in (folder / "report.html").read_text()


def test_a_context_beyond_the_model_is_a_warning(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "gen_plugin.py"
    plugin.write_text(SERVING_PLUGIN)
    code, out, _ = run(
        capsys, "-p", str(plugin), "report", "gen", "--prompt", "5000", "--output", str(tmp_path / "o")
    )
    assert code == 0
    assert "the sequences reach 5,004 tokens, beyond the model's context of 4,096" in out


def test_sweep_over_gpu_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--runtime with --vary gpus: seconds, speedup over one GPU, parallel efficiency, peak per GPU
    and communication share per row, each row the runtime's layout for that count, and plots."""
    base = ("sweep", "wan2_1", "--workload", "W-003", "--gpu", "H100-SXM", "--runtime", "official")
    code, _, _ = run(capsys, *base, "--vary", "gpus=1,2,4", "--output", str(tmp_path / "ok"))
    assert code == 0
    (folder,) = (tmp_path / "ok").glob("*/sweep/wan2_1")
    rows = list(csv.DictReader((folder / "sweep.csv").open()))
    assert [r["gpus"] for r in rows] == ["1", "2", "4"]
    assert float(rows[0]["speedup"]) == 1.0
    assert float(rows[0]["communication_share"]) == 0.0
    assert 1 < float(rows[1]["speedup"]) < 2 < float(rows[2]["speedup"]) < 4
    assert all(0 < float(r["parallel_efficiency"]) <= 1 for r in rows)
    peaks = [int(r["peak_bytes_per_gpu"]) for r in rows]
    assert peaks == sorted(peaks, reverse=True)
    assert [r["fits"] for r in rows] == ["True", "True", "True"]  # every count fits an 80 GB GPU
    assert {p.name for p in folder.glob("*.png")} >= {
        "gpus_seconds.png",
        "gpus_memory.png",
        "gpus_efficiency.png",
        "gpus_scaling.png",
    }
    for argv, message in (
        (("sweep", "wan2_1", "--vary", "gpus=1,2"), "--vary gpus is not allowed without --runtime and --gpu"),
        (
            ("sweep", "wan2_1", "--runtime", "official", "--vary", "gpus=1,2"),
            "--runtime official needs --gpu",
        ),
        ((*base, "--vary", "gpus=1,3"), "ulysses=3 does not divide the DiT's 40 attention heads"),
        ((*base, "--vary", "gpus=0,2"), "the GPU counts must be positive integers"),
    ):
        code, out, err = run(capsys, *argv, "--output", str(tmp_path / "bad"))
        assert code == 2, argv
        assert message in err
        assert "Traceback" not in out + err
    assert not (tmp_path / "bad").exists()


def test_sweep_over_layouts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--vary layout compares layouts by their slugs: each row its layout's GPU count, seconds,
    speedup, efficiency, peak per GPU and communication share; -fsdp shards what the model can."""
    base = ("sweep", "wan2_1", "--workload", "W-003", "--gpu", "H100-SXM", "--runtime", "official")
    layouts = "u8-fsdp,u4c2,u2r2,single"
    code, _, _ = run(capsys, *base, "--vary", f"layout={layouts}", "--output", str(tmp_path / "ok"))
    assert code == 0
    (folder,) = (tmp_path / "ok").glob("*/sweep/wan2_1")
    rows = {r["layout"]: r for r in csv.DictReader((folder / "sweep.csv").open())}
    assert list(rows) == layouts.split(",")
    assert [rows[s]["gpus"] for s in rows] == ["8", "8", "4", "1"]
    assert float(rows["single"]["speedup"]) == 1.0
    # sharded weights hold less per GPU than replicated ones, which do not fit an 80 GB GPU here
    assert int(rows["u8-fsdp"]["peak_bytes_per_gpu"]) < int(rows["u4c2"]["peak_bytes_per_gpu"])
    assert (rows["u8-fsdp"]["fits"], rows["u4c2"]["fits"]) == ("True", "False")
    assert float(rows["u2r2"]["communication_share"]) > 0
    header = json.loads((folder / "sweep.json").read_text())
    assert header["vary"] == {"layout": layouts.split(",")}
    assert {"layout_seconds.png", "layout_memory.png", "layout_efficiency.png"} <= {
        p.name for p in folder.glob("*.png")
    }
    for argv, message in (
        ((*base, "--vary", "layout=u8,x2"), "layout 'x2' is not a slug"),
        ((*base, "--vary", "layout=u3"), "ulysses=3 does not divide the DiT's 40 attention heads"),
        ((*base, "--vary", "layout=u2", "--vary", "gpus=2"), "are not allowed together"),
        (("sweep", "wan2_1", "--vary", "layout=u2"), "--vary layout is not allowed without --runtime"),
        ((*base, "--vary", "layout=c2", "--no-guidance"), "this workload has no guidance"),
    ):
        code, out, err = run(capsys, *argv, "--output", str(tmp_path / "bad"))
        assert code == 2, argv
        assert message in err, err
        assert "Traceback" not in out + err
    assert not (tmp_path / "bad").exists()


def test_sweep_with_a_gpu_adds_time_and_serving_columns(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "gen_plugin.py"
    plugin.write_text(SERVING_PLUGIN)
    out_dir = tmp_path / "o"
    code, _, _ = run(
        capsys, "-p", str(plugin), "sweep", "gen", "--vary", "batch=1,4", "--output", str(out_dir)
    )
    assert code == 0
    (csv_path,) = out_dir.glob("*/sweep/gen/sweep.csv")
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["kv_cache_bytes"] for r in rows] == ["1400", "5600"]
    assert "total_s" not in rows[0]
    code, _, _ = run(
        capsys, "-p", str(plugin), "sweep", "gen", "--vary", "new_tokens=3,9", "--gpu", "h100-sxm",
        "--output", str(out_dir / "gpu"),
    )  # fmt: skip
    assert code == 0
    (csv_path,) = (out_dir / "gpu").glob("*/sweep/gen/sweep.csv")
    rows = list(csv.DictReader(csv_path.open()))
    gpu = lookup("H100-SXM")
    peak = gpu.peak_flops("bf16") * gpu.gemm["bf16"].value  # large GEMMs, no bytes moved
    assert float(rows[1]["decode_s"]) == pytest.approx(8e11 / peak)
    assert float(rows[1]["time_per_output_token_s"]) == pytest.approx(1e11 / peak)
    assert float(rows[0]["requests_per_s"]) == pytest.approx(2 / (3.2e12 / peak))
    (json_path,) = (out_dir / "gpu").glob("*/sweep/gen/sweep.json")
    header = json.loads(json_path.read_text())
    assert header["gpu"]["name"] == "H100-SXM"
    assert set(header["columns"]) == set(rows[0]) - {"new_tokens"}
    # the toy's weights (10 params, 20 bytes per stage; decode runs prefill's) and no activations
    assert rows[0]["peak_bytes_all_resident"] == "40"
    assert rows[0]["peak_bytes_one_stage"] == "20"
    if plots.available():
        pngs = {p.name for p in csv_path.parent.glob("*.png")}
        assert pngs == {"new_tokens.png", "new_tokens_seconds.png", "new_tokens_memory.png"}
    code, _, err = run(
        capsys, "-p", str(plugin), "sweep", "gen", "--vary", "batch=1", "--precision", "fp8",
        "--output", str(out_dir / "bad"),
    )  # fmt: skip
    assert code == 2
    assert "--precision needs --gpu in a sweep" in err
    assert not (out_dir / "bad").exists()


@pytest.mark.parametrize(
    ("first_token", "per_token", "message"),
    [
        (("encode", "prefil"), "decode", "serving names stage 'prefil', which is not registered"),
        (("encode",), "encode", "serving stage 'encode' cannot be both first_token and per_token"),
    ],
)
def test_serving_must_name_registered_stages(
    first_token: tuple[str, ...], per_token: str, message: str
) -> None:
    from pytest_flopcheck import CostNode, ModelRegistration, Serving, Stage

    with pytest.raises(ValueError, match=message):
        ModelRegistration(
            name="gen",
            stages=(Stage("encode", 0.0), Stage("prefill", 0.0), Stage("decode", 0.0)),
            workloads={"w": 1},
            analytic=lambda w, s: CostNode("", s),
            serving=Serving(
                first_token=first_token,
                per_token=per_token,
                new_tokens=lambda w: 2,
                sequences=lambda w: 1,
                context=lambda w: 1,
                cache_bytes_per_token=lambda w: 1,
            ),
        )


RUNTIME_PLUGIN = """
from pytest_flopcheck import CostNode, Metrics, ModelRegistration, Runtime, Stage, StageRuntime, hookimpl


def analytic(w, stage):
    db = {"fp32": 4, "bf16": 2}[w["dtype"]] if isinstance(w, dict) else 2
    params, act = {"encoder": (1000, 10), "core": (5000, 40), "decoder": (300, 90)}[stage]
    leaf = CostNode(stage + ".work", "work", Metrics(flops=10**12, params=params, weight_bytes=params * 2,
                    io_bytes=params * 2 + act * 2, activation_bytes=act * 2))
    return CostNode("", stage, leaf.metrics, (leaf,))


B = StageRuntime("bf16", "bf16")


def runtime(encoder, core, decoder):
    return Runtime(description="test", stages={"encoder": encoder, "core": core, "decoder": decoder})


M = StageRuntime("bf16", "bf16", placement="moved")


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(
        name="rt",
        stages=(Stage("encoder", 0.0), Stage("core", 0.0), Stage("decoder", 0.0)),
        workloads={"w": 1},
        analytic=analytic,
        runtimes={
            "bf16": runtime(B, B, B),
            "mixed": runtime(StageRuntime("bf16", "bf16", "cpu"), StageRuntime("fp32", "bf16"),
                             StageRuntime("fp32", "tf32")),
            "swap": runtime(M, M, M),
            "fp8": runtime(B, StageRuntime("fp8", "fp8"), B),
        },
    ))
    register(ModelRegistration(name="plain", stages=(Stage("core", 0.0),), workloads={"w": 1},
                               analytic=analytic))
"""


def runtime_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, *extra: str
) -> dict[str, Any]:
    plugin = tmp_path / "rt_plugin.py"
    plugin.write_text(RUNTIME_PLUGIN)
    out = tmp_path / name
    code, _, err = run(
        capsys,
        "-p",
        str(plugin),
        "report",
        "rt",
        "--workload",
        "w",
        "--runtime",
        name,
        "--output",
        str(out),
        *extra,
    )
    assert code == 0, err
    (path,) = out.glob("*/static_analysis/rt/report.json")
    return json.loads(path.read_text())["runtime"]  # type: ignore[no-any-return]


def test_a_runtime_sizes_weights_at_its_dtypes_and_names_the_peak_stage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    everything = runtime_report(tmp_path, capsys, "bf16")
    # all resident: every weight (bf16) plus the largest working set (the decoder's 90 bf16 elements)
    assert (everything["peak_gpu_bytes"], everything["set_by"]) == (6300 * 2 + 90 * 2, "decoder")
    assert everything["moves"] == []
    assert everything["seconds"] is None  # every GPU estimated: no single end-to-end figure
    mixed = runtime_report(tmp_path, capsys, "mixed")
    assert mixed["stages"]["core"]["weight_bytes"] == 5000 * 4  # fp32 weights
    assert mixed["stages"]["encoder"]["gpu_bytes_while_running"] == 0  # on the CPU
    assert "encoder" not in mixed["estimates"][0]["stages"]  # CPU time is not estimated
    # GPU weights: the core's and the decoder's in fp32 (the encoder runs on the CPU), and the
    # decoder's working set (this toy's trees ignore the compute dtype)
    assert (mixed["peak_gpu_bytes"], mixed["set_by"]) == (5000 * 4 + 300 * 4 + 90 * 2, "decoder")
    assert mixed["not_timed"] == ["encoder"]
    swap = runtime_report(tmp_path, capsys, "swap", "--gpu", "H100-SXM")
    assert (swap["peak_gpu_bytes"], swap["set_by"]) == (5000 * 2 + 40 * 2, "core")  # one model at a time
    # each model moved in before it runs and out after: six copies over the host link
    assert [(m["weights_of"], m["to"]) for m in swap["moves"]] == [
        (name, to) for name in ("encoder", "core", "decoder") for to in ("gpu", "host")
    ]
    (h100,) = swap["estimates"]
    assert swap["seconds"] == h100["seconds"] > h100["transfer_s"] > 0
    assert h100["seconds"] == pytest.approx(
        h100["transfer_s"] + sum(s["per_generation_s"] for s in h100["stages"].values())
    )
    fp8 = runtime_report(tmp_path, capsys, "fp8")
    assert {u["gpu"] for u in fp8["not_supported"]} == {"A100-80GB", "A800"}  # Ampere: no fp8
    assert fp8["stages"]["core"]["weight_bytes"] == 5000


def test_bad_runtimes_are_one_sentence(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plugin = tmp_path / "rt_plugin.py"
    plugin.write_text(RUNTIME_PLUGIN)
    out = str(tmp_path / "o")
    code, _, err = run(
        capsys, "-p", str(plugin), "report", "rt", "--workload", "w", "--runtime", "nope", "--output", out
    )
    assert (code, err.strip().splitlines()[-1]) == (
        2,
        "flopcheck: error: --runtime 'nope' is not allowed: choose one of bf16, mixed, swap, fp8",
    )
    code, _, err = run(
        capsys,
        "-p",
        str(plugin),
        "report",
        "rt",
        "--workload",
        "w",
        "--runtime",
        "bf16",
        "--precision",
        "fp8",
        "--output",
        out,
    )
    assert code == 2
    assert "--precision is not allowed with --runtime" in err
    code, _, err = run(
        capsys, "-p", str(plugin), "report", "plain", "--workload", "w", "--runtime", "x", "--output", out
    )
    assert code == 2
    assert "model 'plain' declares no runtimes" in err
    assert not (tmp_path / "o").exists()


def test_a_runtime_must_give_every_stage() -> None:
    from pytest_flopcheck import CostNode, ModelRegistration, Runtime, Stage, StageRuntime

    with pytest.raises(ValueError, match=r"runtime 'r' must give every stage exactly once: missing \['b'\]"):
        ModelRegistration(
            name="m",
            stages=(Stage("a", 0.0), Stage("b", 0.0)),
            workloads={"w": 1},
            analytic=lambda w, s: CostNode("", s),
            runtimes={"r": Runtime(description="", stages={"a": StageRuntime("bf16", "bf16")})},
        )
    with pytest.raises(ValueError, match="runtime weights dtype 'int4' is not allowed"):
        StageRuntime("int4", "bf16")


def test_a_checked_live_set_sizes_the_stage_and_an_unchecked_one_is_at_least_a_layer_and_its_caches() -> None:
    from pytest_flopcheck.analytic.tree import CostNode, Metrics, group
    from pytest_flopcheck.sizing.build import working_bytes

    # a layer whose call moves 100 B and writes a 60 B cache its live set does not hold
    tree = group("", "stage", [CostNode("a", "x", Metrics(io_bytes=110, weight_bytes=10, cache_bytes=60))])
    assert working_bytes(tree, verified=True) == 100  # test_memory checks the live set: it is the figure
    assert working_bytes(tree, verified=False) == 100 + 60


def test_diff_of_evidence_with_counts_beyond_a_float_reports_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = evidence_document(tmp_path, capsys)
    after = hostile(before, (*ROW, 1, 0, 1), 10**400)  # the comparison's analytic count
    (tmp_path / "a.json").write_text(json.dumps(before))
    (tmp_path / "b.json").write_text(json.dumps(after))
    code, out, err = run(
        capsys, "diff", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "--fail-on", "1%"
    )
    assert code == 1
    assert "Traceback" not in out + err
    assert "1 value(s) changed by more than 0.01" in err


def report_json(tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str) -> Path:
    code, _, _ = run(capsys, "report", "wan2_1", "--workload", "W-001", "--output", str(tmp_path / name))
    assert code == 0
    (path,) = (tmp_path / name).glob("*/static_analysis/wan2_1/report.json")
    return path


def leaves(node: dict[str, Any]) -> list[dict[str, Any]]:
    children = node.get("children", [])
    return [node] if not children else [leaf for child in children for leaf in leaves(child)]


def test_report_diffs_gate_layers_and_lost_stages(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = report_json(tmp_path, capsys, "a")
    document = json.loads(before.read_text())
    moved = [leaf for leaf in leaves(document["tree"]["diffusion_core"]) if leaf["flops"]]
    moved[0]["flops"] += 2 * 10**12  # two layers trade 2e12 FLOPs: the stage total stays
    moved[1]["flops"] -= 2 * 10**12
    shifted = tmp_path / "shifted.json"
    shifted.write_text(json.dumps(document))
    code, _, err = run(capsys, "diff", str(before), str(shifted), "--fail-on", "1%")
    assert code == 1
    assert "2 layer(s) changed by more than 0.01" in err
    del document["stage_totals"]["vae_decode"], document["tree"]["vae_decode"]
    shifted.write_text(json.dumps(document))
    code, out, err = run(capsys, "diff", str(before), str(shifted), "--fail-on", "1%")
    assert code == 1
    assert "(stage removed)" in out
    assert "stage vae_decode disappeared" in err
    assert "layer(s) disappeared (first: vae_decode/" in err
    document["schema_version"] = 99
    shifted.write_text(json.dumps(document))
    code, _, err = run(capsys, "diff", str(before), str(shifted))
    assert code == 2
    assert "is a report of schema version 99; this flopcheck reads version 2" in err


def config_folder(tmp_path: Path, kind: str) -> Path:
    folder = tmp_path / kind
    folder.mkdir()
    target = folder / "config.json"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "loop":
        target.symlink_to(target)
    else:
        target.symlink_to("/dev/zero")
    return folder


@pytest.mark.parametrize(
    ("kind", "message"),
    [("fifo", "is not a regular file"), ("loop", "cannot be read"), ("zero", "is not a regular file")],
)
def test_a_config_json_that_is_no_file_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], kind: str, message: str
) -> None:
    folder = config_folder(tmp_path, kind)
    code, _, err = run(capsys, "report", "wan2_1", "--config", str(folder), "--output", str(tmp_path / "o"))
    assert code == 2
    assert f"{folder / 'config.json'}' {message}" in err
    assert "no config.json" not in err


def test_config_sizes_and_an_empty_config_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = {"dim": 1536, "ffn_dim": 8960, "num_heads": 12, "num_layers": 10**6, "in_dim": 16, "out_dim": 16}
    (tmp_path / "config.json").write_text(json.dumps(config))
    code, _, err = run(capsys, "report", "wan2_1", "--config", str(tmp_path), "--output", str(tmp_path / "o"))
    assert code == 2
    assert "field 'num_layers' is 1000000; it must be a positive integer of at most 1,000" in err
    os.chdir(tmp_path)  # a config.json in the working directory is not read for an empty --config
    code, _, err = run(capsys, "report", "wan2_1", "--config", "", "--output", str(tmp_path / "o"))
    assert code == 2
    assert "--config is empty" in err


BROKEN_TOY = (Path(__file__).parent / "toy_model.py").read_text()


@pytest.mark.parametrize(
    ("knob", "message"),
    [
        ('ANALYTIC = "raise"', "model 'toy': the analytic model of stage 'core' raised RuntimeError"),
        ('LAYER_ID = "<b>x</b>"', "returned node id '<b>x</b>', which is not allowed"),
        ('RUNS = {"core": -1}', "model 'toy': multiplicities gives stage 'core' the count -1"),
    ],
)
def test_a_broken_model_is_one_sentence_in_the_cli(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], knob: str, message: str
) -> None:
    name = knob.partition(" ")[0]
    plugin = tmp_path / "toy.py"
    plugin.write_text(BROKEN_TOY.replace(f"{name} = ", f"{knob}  # ", 1))
    code, out, err = run(
        capsys, "-p", str(plugin), "report", "toy", "--workload", "small", "--output", str(tmp_path)
    )
    assert code == 1
    assert message in err
    assert err.count("\n") == 1
    assert "Traceback" not in out + err
    assert not list(tmp_path.glob("*/static_analysis"))


def test_plugin_text_cannot_drive_the_terminal_or_the_markdown(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "toy.py"
    plugin.write_text(
        BROKEN_TOY.replace('name="toy",', 'name="toy", description="\\x1b[31mred\\x07 <b>bold</b> | `x`",')
    )
    code, out, _ = run(capsys, "-p", str(plugin), "list")
    assert code == 0
    assert "\x1b" not in out
    assert "\\x1b[31mred\\x07" in out
    code, _, _ = run(
        capsys, "-p", str(plugin), "report", "toy", "--workload", "small", "--output", str(tmp_path)
    )
    (summary,) = tmp_path.glob("*/static_analysis/toy/summary.md")
    text = summary.read_text()
    assert "<b>" not in text
    assert "&lt;b&gt;bold&lt;/b&gt; \\| \\`x\\`" in text


def test_a_plugin_that_exits_on_import_is_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "bad.py").write_text("import sys\nsys.exit(0)\n")
    code, _, err = run(capsys, "-p", str(tmp_path / "bad.py"), "list")
    assert code == 2
    assert "called sys.exit(0) while being imported" in err


def test_a_runtime_a_gpu_cannot_run_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(
        capsys, "report", "wan2_1", "--workload", "W-001", "--runtime", "fp8", "--gpu", "A100-80GB",
        "--output", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "its stage diffusion_core computes in fp8, for which A100-80GB has no tensor cores" in err
    assert not any(tmp_path.iterdir())
    code, out, _ = run(
        capsys, "report", "wan2_1", "--workload", "W-001", "--runtime", "fp8", "--output", str(tmp_path)
    )
    assert code == 0
    assert "A100-80GB: not estimated (no fp8 tensor cores)" in out
    assert "runtime: fp8" in out


def test_prune_leaves_symbolic_links_and_names_what_it_cannot_remove(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "out"
    for name in ("20260101T000000Z-aaaaaa", "20260102T000000Z-bbbbbb", "20260103T000000Z-cccccc"):
        (root / name).mkdir(parents=True)
        (root / name / "f").write_text("x")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("x")
    (root / "20250101T000000Z-dddddd").symlink_to(elsewhere)
    import shutil

    real_rmtree = shutil.rmtree

    def refuse(path: Any, onerror: Any = None, **kwargs: Any) -> None:
        if "aaaaaa" in str(path):  # as a file the user may not delete would (the tests run as root)
            error = PermissionError(13, "Permission denied", str(path / "f"))
            onerror(os.unlink, str(path / "f"), (PermissionError, error, None))
            return
        real_rmtree(path, onerror=onerror, **kwargs)

    monkeypatch.setattr(shutil, "rmtree", refuse)
    code, out, err = run(capsys, "prune", "--keep", "1", "--output", str(root))
    assert code == 1
    assert "removed 1 of 3 runs" in out
    assert "left alone: 20250101T000000Z-dddddd is a symbolic link" in out
    assert "could not be removed completely, first 20260101T000000Z-aaaaaa" in err
    assert "Permission denied" in err
    assert (elsewhere / "keep").exists()
    assert "Traceback" not in out + err


def test_inspect_shows_what_the_reference_runs_before_any_analytic_model(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plugin = tmp_path / "toy.py"
    # a registration with no analytic model yet: an author starts here
    plugin.write_text(BROKEN_TOY.replace("            analytic=analytic,\n", ""))
    code, out, err = run(
        capsys, "-p", str(plugin), "inspect", "toy", "--workload", "small", "--stage", "core",
        "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 0, err
    assert "toy/core on meta (float32): 51,328 FLOPs, 1,184 parameters (4,736 bytes of weights)" in out
    assert "proj (Linear)" in out
    assert "every compute op that ran has a FLOP formula" in out
    assert "set by aten.mm in attention.out" in out
    assert "aten.addmm in proj" in out
    assert "no analytic model yet: nothing to compare the live peak with" in out
    (folder,) = (tmp_path / "o").glob("*/inspect/toy")
    document = json.loads((folder / "core.json").read_text())
    assert document["classes"]["attention"] == "Attention"
    assert document["peak_module"] == "attention.out"
    assert "| attention.out | Linear |" in (folder / "core.md").read_text()
    code, _, err = run(
        capsys, "-p", str(plugin), "report", "toy", "--workload", "small", "--output", str(tmp_path)
    )
    assert code == 1
    assert "registers no analytic model yet (flopcheck inspect MODEL --stage STAGE" in err


def test_inspect_refuses_bad_input_in_one_sentence(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(
        capsys, "inspect", "wan2_1", "--workload", "W-001", "--stage", "dit", "--output", str(tmp_path)
    )
    assert code == 2
    assert "--stage 'dit' is not allowed: choose one of text_encoder, image_encoder" in err
    code, _, err = run(
        capsys, "inspect", "wan2_1", "--workload", "W-001", "--stage", "vae_decode", "--device", "tpu",
        "--output", str(tmp_path),
    )  # fmt: skip
    assert code == 2
    assert "--device 'tpu' is not allowed: choose one of meta, cpu, cuda" in err


def test_a_conftest_named_with_p_imports_the_package_beside_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mypkg").mkdir()
    (tmp_path / "mypkg" / "__init__.py").write_text("")
    (tmp_path / "mypkg" / "model.py").write_text(BROKEN_TOY)
    (tmp_path / "conftest.py").write_text("from mypkg.model import flopcheck_register_models  # noqa: F401\n")
    os.chdir(tmp_path.parent)  # not the conftest's folder: it is put on sys.path as pytest does
    code, out, err = run(capsys, "-p", str(tmp_path / "conftest.py"), "list")
    assert code == 0, err
    assert "toy:" in out


def test_inspect_runs_rank_0_of_a_layout_on_a_fake_process_group(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--layout``: the model's parallel reference on rank 0 of the layout, with its collectives."""
    plugin = tmp_path / "toy.py"
    plugin.write_text(TOY_SOURCE.replace("PARALLEL_FUDGE = None", "PARALLEL_FUDGE = 0"))
    code, out, err = run(
        capsys, "-p", str(plugin), "inspect", "toy", "--workload", "small", "--stage", "core",
        "--layout", "ulysses=2", "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 0, err
    assert "toy/core@u2 on meta (float32)" in out
    # the projection's output, 2 × 5 tokens × 48 features in fp32, handed to one all-gather
    assert "rank 0 of 2 GPUs (ulysses=2) on a fake process group: 1 collective handing over 1,920" in out
    # the model's live peak beside the measured one; the toy's stage has no memory model
    assert re.search(r"the model's live peak beyond the weights: [\d,]+ bytes at \S+, measured [\d,]+", out)
    assert "; not checked\n" in out
    # with one, test_parallel holds it under the layout the toy checks, and says where it does not
    checked = tmp_path / "checked.py"
    checked.write_text(
        TOY_SOURCE.replace("PARALLEL_FUDGE = None", "PARALLEL_FUDGE = 0").replace(
            "MEMORY_TOLERANCE = None", "MEMORY_TOLERANCE = 0.05"
        )
    )
    for layout, held in (
        ("u2", r"test_parallel holds it within 5% under u2 \(at small\)"),
        ("u4", r"not checked under u4 \(test_parallel holds it within 5% under u2 \(at small\)\)"),
    ):
        code, out, err = run(
            capsys, "-p", str(checked), "inspect", "toy", "--workload", "small", "--stage", "core",
            "--layout", layout, "--output", str(tmp_path / "checked"),
        )  # fmt: skip
        assert code == 0, err
        assert re.search(rf"the model's live peak beyond the weights: .*; {held}\n", out), out
    for tolerance, held in (("None", "not checked"), ("0.05", "test_memory holds it within 5%")):
        one = tmp_path / f"one_{tolerance}.py"
        one.write_text(TOY_SOURCE.replace("MEMORY_TOLERANCE = None", f"MEMORY_TOLERANCE = {tolerance}"))
        code, out, err = run(
            capsys, "-p", str(one), "inspect", "toy", "--workload", "small", "--stage", "core",
            "--output", str(tmp_path / "one"),
        )  # fmt: skip
        assert code == 0, err
        assert re.search(rf"the model's live peak beyond the weights: .*; {held}\n", out), out
    (folder,) = (tmp_path / "o").glob("*/inspect/toy")
    assert json.loads((folder / "core@u2.json").read_text())["classes"]["gather"] == "Gather"
    for layout, message in (
        ("ulysses=two", "--layout is not allowed: ulysses must be a positive integer, not 'two'"),
        ("single", "--layout 'single' is not allowed: it runs on one GPU (leave it out)"),
    ):
        code, _, err = run(
            capsys, "-p", str(plugin), "inspect", "toy", "--workload", "small", "--stage", "core",
            "--layout", layout, "--output", str(tmp_path / "checked"),
        )  # fmt: skip
        assert (code, err.strip().splitlines()[-1]) == (2, f"flopcheck: error: {message}")
    code, _, err = run(
        capsys, "inspect", "deepseek_ocr", "--workload", "base-short", "--stage", "decode", "--layout",
        "ulysses=2", "--output", str(tmp_path / "o"),
    )  # fmt: skip
    assert code == 2
    assert "--layout is not allowed: ulysses=2 is not modelled for the OCR models" in err


def test_a_multi_gpu_reports_kv_cache_says_it_is_every_gpus_together(tmp_path: Path) -> None:
    """The serving section's KV cache is the batch's, held by every GPU of the layout together;
    the runtime section's figures are one GPU's. A multi-GPU report says which is which."""
    argv = (
        "report",
        "deepseek_ocr2",
        "--workload",
        "single-short",
        "--gpu",
        "H100-SXM",
        "--runtime",
        "served",
    )
    for name, layout in (("one", ()), ("two", ("--layout", "t2"))):
        assert main([*argv, *layout, "--output", str(tmp_path / name)]) == 0
    (one,) = (tmp_path / "one").glob("*/static_analysis/deepseek_ocr2/summary.md")
    (two,) = (tmp_path / "two").glob("*/static_analysis/deepseek_ocr2/summary.md")
    assert "together" not in one.read_text()
    text = two.read_text()
    assert "| KV cache, 1 page, the 2 GPUs together |" in text
    assert "per page (bf16), the 2 GPUs together: the runtime section gives one GPU's memory." in text
    (html,) = (tmp_path / "two").glob("*/static_analysis/deepseek_ocr2/report.html")
    assert "KV cache, 1 page, the 2 GPUs together" in html.read_text()
