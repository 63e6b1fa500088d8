"""The pytest plugin, black-box through pytester, with a toy model registered from a conftest."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_flopcheck.evidence import TIMING_FIELDS

pytest.importorskip("torch")
TOY = (Path(__file__).parent / "toy_model.py").read_text()
NO_CACHE = ("-p", "no:cacheprovider")


@pytest.fixture
def toy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TOY)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


def run_dirs(pytester: pytest.Pytester) -> list[Path]:
    return sorted((pytester.path / "tmp" / "profile-output").iterdir())


def load_evidence(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "flopcheck" / "evidence.json").read_text())  # type: ignore[no-any-return]


def test_nothing_is_generated_without_the_option(toy: pytest.Pytester) -> None:
    result = toy.runpytest(*NO_CACHE)
    result.assert_outcomes(passed=1)
    assert not (toy.path / "tmp").exists()


def test_help_lists_the_options(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--help")
    for option in (
        "--flopcheck=NAME",
        "--flopcheck-workloads",
        "--flopcheck-device",
        "--flopcheck-output",
        "--flopcheck-strict",
    ):
        result.stdout.fnmatch_lines([f"*{option}*"])


def test_generated_tests_pass_in_a_deterministic_order(toy: pytest.Pytester) -> None:
    collected = toy.runpytest(
        "--flopcheck=toy", "--flopcheck-workloads=small", "--collect-only", "-q", *NO_CACHE
    )
    ids = [line for line in collected.stdout.lines if line.startswith("flopcheck::")]
    assert ids == [
        "flopcheck::test_params[toy/small/core]",
        "flopcheck::test_layer[toy/small/core/proj]",
        "flopcheck::test_params[toy/small/core/proj]",
        "flopcheck::test_layer[toy/small/core/attention]",
        "flopcheck::test_params[toy/small/core/attention]",
        "flopcheck::test_layer[toy/small/core/attention.core]",
        "flopcheck::test_params[toy/small/core/attention.core]",
        "flopcheck::test_layer[toy/small/core/attention.out]",
        "flopcheck::test_params[toy/small/core/attention.out]",
        "flopcheck::test_layer[toy/small/core/conv]",
        "flopcheck::test_params[toy/small/core/conv]",
        "flopcheck::test_end_to_end[toy/small/core]",
        "flopcheck::test_end_to_end[toy/small/pipeline]",
    ]
    result = toy.runpytest("--flopcheck=toy", *NO_CACHE)
    result.assert_outcomes(passed=1 + 2 * len(ids))


def test_a_wrong_analytic_value_fails_exactly_the_affected_tests(toy: pytest.Pytester) -> None:
    toy.makeconftest(TOY.replace("FUDGE = 0", "FUDGE = 7"))
    result = toy.runpytest("--flopcheck=toy", "-rf", *NO_CACHE)
    result.assert_outcomes(passed=21, failed=6)
    failed = sorted(line.split(" ")[1] for line in result.stdout.lines if line.startswith("FAILED"))
    assert failed == sorted(
        f"flopcheck::{kind}[toy/{w}/{path}]"
        for w in ("small", "large")
        for kind, path in (
            ("test_layer", "core/proj"),
            ("test_end_to_end", "core"),
            ("test_end_to_end", "pipeline"),
        )
    )
    result.stdout.fnmatch_lines(
        [
            "toy/small/core/proj  [[]flops[]]  OUTSIDE tolerance",
            "  analytic *15,367",
            "  reference *15,360   proj",
            "  abs error *7",
            "  rel error *4.557e-04 (0.0456%)",
            "  tolerance *0.000e+00",
        ]
    )
    assert "Traceback" not in result.stdout.str()


def test_unknown_model_is_a_usage_error(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=nope", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: --flopcheck: model 'nope' is not registered; registered models: *toy*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("--flopcheck-workloads=huge",),
            "*workload 'huge' is not defined by toy; defined workloads: large, small",
        ),
        (("--flopcheck-device=tpu",), "*device 'tpu' is not supported; allowed: meta, cpu, cuda"),
    ],
)
def test_bad_options_are_usage_errors(toy: pytest.Pytester, args: tuple[str, ...], message: str) -> None:
    result = toy.runpytest("--flopcheck=toy", *args, *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert not (toy.path / "tmp").exists()


def test_ini_keys(toy: pytest.Pytester) -> None:
    toy.makeini("[pytest]\nflopcheck = toy\nflopcheck_workloads = large\nflopcheck_output = out\n")
    result = toy.runpytest(*NO_CACHE)
    result.assert_outcomes(passed=14)
    assert len(list((toy.path / "out").iterdir())) == 1


MISSING = """
from pytest_flopcheck import ModelRegistration, Stage, hookimpl
from pytest_flopcheck.tree import CostNode, Metrics

def reference(w, stage, device):
    import nonexistent_reference_package  # noqa: F401

@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(
        name="ghost", stages=(Stage("core", 0.0),), workloads={"w": 1},
        analytic=lambda w, s: CostNode("", "root", Metrics(flops=1), reference=""),
        reference=reference))
"""


def test_missing_reference_dependency_skips_with_reason_or_fails_under_strict(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(MISSING)
    result = pytester.runpytest("--flopcheck=ghost", "-rs", *NO_CACHE)
    result.assert_outcomes(skipped=2)
    result.stdout.fnmatch_lines(
        ["*needs a package that is not installed: No module named 'nonexistent_reference_package'"]
    )
    strict = pytester.runpytest("--flopcheck=ghost", "--flopcheck-strict", *NO_CACHE)
    strict.assert_outcomes(failed=2)
    evidence = load_evidence(run_dirs(pytester)[-1])
    assert evidence["tests"] == {"total": 2, "passed": 0, "failed": 2, "skipped": 0}


def test_evidence_layout_and_contents(toy: pytest.Pytester) -> None:
    toy.runpytest("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=27)
    toy.runpytest("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=27)
    first, _second = run_dirs(toy)  # a second run never overwrites the first
    assert sorted(p.name for p in (first / "flopcheck").iterdir()) == [
        "evidence.json",
        "report.html",
        "summary.md",
    ]
    evidence = load_evidence(first)
    assert evidence["schema_version"] == 1
    assert evidence["run_id"] == first.name
    assert {"python", "torch", "git_sha", "git_dirty", "device"} <= set(evidence["environment"])
    assert evidence["tests"] == {"total": 26, "passed": 26, "failed": 0, "skipped": 0}
    result = evidence["results"][0]
    assert set(result) >= {
        "model",
        "workload",
        "stage",
        "layer",
        "reference_module",
        "metric",
        "analytic",
        "reference",
        "rel_error",
        "tolerance",
        "passed",
    }
    assert all(
        isinstance(r["analytic"], int) and isinstance(r["reference"], int) for r in evidence["results"]
    )
    assert [c["unclaimed_modules"] + c["uncounted_ops"] for c in evidence["coverage"]] == [[], []]
    pipeline = evidence["totals"][0]["stages"]["pipeline"]
    assert (
        pipeline["analytic_flops"]
        == pipeline["reference_flops"]
        == 3 * evidence["totals"][0]["stages"]["core"]["reference_flops"]
    )
    summary = (first / "flopcheck" / "summary.md").read_text()
    assert "| toy | small | core | 5 | 6 | 0.00e+00 | pass |" in summary
    report = (first / "flopcheck" / "report.html").read_text()
    assert "<h2>flopcheck</h2>" in report
    assert "test_layer[toy/small/core/proj]" in report


def test_serial_and_xdist_runs_give_the_same_evidence(toy: pytest.Pytester) -> None:
    toy.runpytest_subprocess("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=27)
    toy.runpytest_subprocess("--flopcheck=toy", "-n", "2", *NO_CACHE).assert_outcomes(passed=27)
    serial, parallel = (load_evidence(d) for d in run_dirs(toy))
    for document in (serial, parallel):
        for field in TIMING_FIELDS:
            document.pop(field)
    assert serial == parallel
    assert len(run_dirs(toy)) == 2  # the workers wrote nothing of their own


def test_keyword_selection_applies_to_generated_tests(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=toy", "-k", "end_to_end and small", *NO_CACHE)
    result.assert_outcomes(passed=2, deselected=25)
