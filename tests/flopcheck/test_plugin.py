"""The pytest plugin, black-box through pytester, with a toy model registered from a conftest."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from pytest_flopcheck.evidence.record import VOLATILE_FIELDS, expanded

pytest.importorskip("torch")
TOY = (Path(__file__).parent / "toy_model.py").read_text()
NO_CACHE = ("-p", "no:cacheprovider")


MODES = {"serial": (), "xdist": ("-n", "2")}


def toy_source(**knobs: str) -> str:
    """The toy conftest with some of its knobs set (values are Python source)."""
    text = TOY
    for name, value in knobs.items():
        text, found = re.subn(rf"^{name} = .*$", f"{name} = {value}", text, count=1, flags=re.M)
        assert found, name
    return text


@pytest.fixture
def toy(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(TOY)
    pytester.makepyfile(test_plain="def test_plain():\n    assert True\n")
    return pytester


@pytest.fixture(params=list(MODES))
def mode(request: pytest.FixtureRequest) -> tuple[str, ...]:
    """Extra pytest arguments: serial, or two xdist workers."""
    return MODES[request.param]


def run_dirs(pytester: pytest.Pytester) -> list[Path]:
    """The runs' directories, oldest first: in the order they were written, as two runs within
    one second have run ids that sort by their random suffix."""
    root = pytester.path / "tmp" / "profile-output"
    runs = [p for p in root.iterdir() if not p.name.startswith(".")] if root.exists() else []
    return sorted(runs, key=lambda p: (p.stat().st_mtime_ns, p.name))


def published_text(run_dir: Path) -> str:
    """Everything a reader of the run sees."""
    return "\n".join(
        (run_dir / "flopcheck" / name).read_text() for name in ("evidence.json", "summary.md", "report.html")
    )


def load_evidence(run_dir: Path) -> dict[str, Any]:
    """A run's evidence, its checks and comparisons spelled out as flat records (the loader's own
    ``expanded``, which also reads the nested layout back)."""
    return expanded(json.loads((run_dir / "flopcheck" / "evidence.json").read_text()))


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
        "flopcheck::test_io[toy/small/core/proj]",
        "flopcheck::test_layer[toy/small/core/attention]",
        "flopcheck::test_params[toy/small/core/attention]",
        "flopcheck::test_layer[toy/small/core/attention.core]",
        "flopcheck::test_params[toy/small/core/attention.core]",
        "flopcheck::test_io[toy/small/core/attention.core]",
        "flopcheck::test_layer[toy/small/core/attention.out]",
        "flopcheck::test_params[toy/small/core/attention.out]",
        "flopcheck::test_io[toy/small/core/attention.out]",
        "flopcheck::test_layer[toy/small/core/conv]",
        "flopcheck::test_params[toy/small/core/conv]",
        "flopcheck::test_io[toy/small/core/conv]",
        "flopcheck::test_end_to_end[toy/small/core]",
        "flopcheck::test_end_to_end[toy/small/pipeline]",
    ]
    result = toy.runpytest("--flopcheck=toy", *NO_CACHE)
    result.assert_outcomes(passed=1 + 2 * len(ids))


def test_a_wrong_analytic_value_fails_exactly_the_affected_tests(toy: pytest.Pytester) -> None:
    toy.makeconftest(TOY.replace("FUDGE = 0", "FUDGE = 7"))
    result = toy.runpytest("--flopcheck=toy", "-rf", *NO_CACHE)
    result.assert_outcomes(passed=29, failed=6)
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
    result.assert_outcomes(passed=18)
    assert len(list((toy.path / "out").iterdir())) == 1


MISSING = """
from pytest_flopcheck import ModelRegistration, Stage, hookimpl
from pytest_flopcheck.analytic.tree import CostNode, Metrics

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
    strict.assert_outcomes(errors=2)
    evidence = load_evidence(run_dirs(pytester)[-1])
    assert evidence["tests"]["error"] == 2
    assert evidence["verdict"] == "failed"


def test_evidence_layout_and_contents(toy: pytest.Pytester) -> None:
    toy.runpytest("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=35)
    toy.runpytest("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=35)
    first, _second = run_dirs(toy)  # a second run never overwrites the first
    assert sorted(p.name for p in (first / "flopcheck").iterdir()) == [
        "evidence.json",
        "report.html",
        "summary.md",
    ]
    evidence = load_evidence(first)
    assert evidence["schema_version"] == 4
    assert evidence["run_id"] == first.name
    assert evidence["status"] == "complete"
    assert evidence["headline"] == "✅ all 34 checks passed · 0 of 2 reference counts from the cache"
    assert {"python", "torch", "git_sha", "git_dirty", "device"} <= set(evidence["environment"])
    assert evidence["tests"] == {
        "selected": 34,
        "finished": 34,
        "passed": 34,
        "failed": 0,
        "error": 0,
        "skipped": 0,
        "xfailed": 0,
        "xpassed": 0,
        "not_run": 0,
    }
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
    assert "| toy | small | core | 16 passed | 5 | 6 | 4 | 0.00e+00 | – | – | pass |" in summary
    report = (first / "flopcheck" / "report.html").read_text()
    assert "<h2>flopcheck: ✅ all 34 checks passed · 0 of 2 reference counts from the cache</h2>" in report
    assert "leaves out the rows of the 34 passed and 0 skipped generated checks" in report
    assert "test_layer[toy/small/core/proj]" not in report
    assert "test_plain.py::test_plain" in report  # ordinary tests keep their rows
    assert '<title id="head-title">report.html · flopcheck ' in report
    assert ".partial" not in report


def test_serial_and_xdist_runs_give_the_same_evidence(toy: pytest.Pytester) -> None:
    toy.runpytest_subprocess("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=35)
    toy.runpytest_subprocess("--flopcheck=toy", "-n", "2", *NO_CACHE).assert_outcomes(passed=35)
    serial, parallel = (load_evidence(d) for d in run_dirs(toy))
    for document in (serial, parallel):
        for field in VOLATILE_FIELDS:
            document.pop(field)
    assert serial == parallel
    assert len(run_dirs(toy)) == 2  # the workers wrote nothing of their own


def test_keyword_selection_applies_to_generated_tests(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=toy", "-k", "end_to_end and small", *NO_CACHE)
    result.assert_outcomes(passed=2, deselected=33)


# -- evidence that cannot lie ---------------------------------------------------------------------


def assert_no_false_claims(pytester: pytest.Pytester, result: pytest.RunResult) -> None:
    """Nothing a reader sees (files, terminal) says the run passed."""
    seen = result.stdout.str() + result.stderr.str()
    for run_dir in run_dirs(pytester):
        seen += published_text(run_dir)
    assert "✅" not in seen
    assert "all checks passed" not in seen


def test_an_all_skipped_run_verifies_nothing_and_exits_non_zero(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    result = toy.runpytest("--flopcheck=toy", "-m", "flopcheck", "--flopcheck-device=cuda", *mode, *NO_CACHE)
    if "no CUDA GPU" not in result.stdout.str():
        pytest.skip("a GPU is present")
    result.assert_outcomes(skipped=34)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(
        ["⚠️ nothing verified: all 34 checks were skipped", "skipped 34: *no CUDA GPU*"]
    )
    assert_no_false_claims(toy, result)
    assert "every counted FLOP" not in result.stdout.str() + published_text(run_dirs(toy)[0])
    evidence = load_evidence(run_dirs(toy)[0])
    assert evidence["verdict"] == "nothing verified"
    assert evidence["coverage"] == []
    assert list(evidence["skipped"].values()) == [34]


def test_a_keyboard_interrupt_publishes_an_interrupted_run(toy: pytest.Pytester) -> None:
    toy.makeconftest(
        TOY
        + "\n\ndef pytest_runtest_call(item):\n"
        + "    if item.name == 'test_layer[toy/small/core/conv]':\n"
        + "        raise KeyboardInterrupt\n"
    )
    result = toy.runpytest_subprocess("--flopcheck=toy", *NO_CACHE)  # an interrupt needs a process of its own
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert_no_false_claims(toy, result)
    evidence = load_evidence(run_dirs(toy)[0])
    assert evidence["status"] == "interrupted"
    assert evidence["headline"] == (
        "⚠️ interrupted: 12 of 34 checks finished (12 passed, 22 not run)"
        " · 0 of 1 reference count from the cache"
    )


def test_stopping_at_the_first_failure_is_an_interrupted_run(toy: pytest.Pytester) -> None:
    toy.makeconftest(toy_source(FUDGE="7"))
    result = toy.runpytest("--flopcheck=toy", "-x", *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    evidence = load_evidence(run_dirs(toy)[0])
    assert evidence["status"] == "interrupted"
    assert evidence["tests"]["failed"] == 1
    assert evidence["tests"]["not_run"] > 0


def test_collect_only_publishes_nothing_and_deselecting_everything_says_nothing_ran(
    toy: pytest.Pytester,
) -> None:
    toy.runpytest("--flopcheck=toy", "--collect-only", *NO_CACHE)
    assert run_dirs(toy) == []
    assert not list((toy.path / "tmp" / "profile-output").glob(".*"))  # no staging left behind
    result = toy.runpytest("--flopcheck=toy", "-k", "no_such_test", *NO_CACHE)
    assert_no_false_claims(toy, result)
    evidence = load_evidence(run_dirs(toy)[0])
    assert evidence["status"] == "nothing run"
    assert evidence["headline"] == "⚪ nothing run: 0 checks selected, none finished"


def test_generated_checks_skip_log_capture_but_the_users_tests_keep_it(toy: pytest.Pytester) -> None:
    """The checks run without the per-phase hooks (log capture), the user's own tests with them:
    a failing test of the user's still shows what it logged."""
    toy.makepyfile(
        test_logs="""
        import logging

        def test_logs():
            logging.getLogger("user").warning("the user's own message")
            assert False
        """
    )
    result = toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    result.assert_outcomes(passed=18, failed=1)
    result.stdout.fnmatch_lines(["*Captured log call*", "*the user's own message*"])


def test_collect_only_counts_what_it_lists(toy: pytest.Pytester) -> None:
    """``--co -q`` lists every generated check and its summary line counts them, deselected ones
    apart (the checks are reported like any collector's items)."""
    listed = toy.runpytest("--flopcheck=toy", "--collect-only", "-q", *NO_CACHE)
    ids = [line for line in listed.stdout.lines if "::" in line]  # the checks and the user's test_plain
    assert len(ids) == 35
    listed.stdout.fnmatch_lines([f"{len(ids)} tests collected in *"])
    some = toy.runpytest("--flopcheck=toy", "-k", "test_io", "--collect-only", "-q", *NO_CACHE)
    some.stdout.fnmatch_lines(["8/35 tests collected (27 deselected) in *"])


def test_a_reference_that_cannot_be_built_is_one_error_built_once(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    log = toy.path / "builds.log"
    toy.makeconftest(toy_source(REFERENCE_ERROR='RuntimeError("no such kernel")', BUILD_LOG=repr(str(log))))
    result = toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *mode, *NO_CACHE)
    result.assert_outcomes(errors=17, passed=1)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "Traceback" not in out
    result.stdout.fnmatch_lines(
        [
            "error (17 dependent checks): the reference of toy/small/core on meta (plugin '*conftest.py') "
            "could not be built or run: RuntimeError: no such kernel"
        ]
    )
    assert len(log.read_text().splitlines()) == 1  # built once, for all 13 checks (on every worker)
    evidence = load_evidence(run_dirs(toy)[0])
    (error,) = evidence["errors"]
    assert error["tests"] == 17
    assert error["kind"] == "reference"
    assert "RuntimeError: no such kernel" in error["traceback"]
    assert_no_false_claims(toy, result)


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"ANALYTIC": '"raise"'}, "raised RuntimeError: toy analytic model is broken"),
        ({"ANALYTIC": '"wrong-type"'}, "returned dict, not a CostNode"),
        ({"ANALYTIC": '"duplicate"'}, "returned node id 'proj' more than once"),
        (
            {"LAYER_ID": '"<img src=x onerror=alert(1)>"'},
            "returned node id '<img src=x onerror=alert(1)>', which",
        ),
        (
            {"ANALYTIC": '"unhandled"', "STAGES": '("core", "extra")', "RUNS": '{"core": 3, "extra": 1}'},
            "raised ValueError: stage 'extra' is not modeled",
        ),
    ],
    # Plain ids: pytest-html renders a test id as HTML, so markup in an id runs in report.html.
    ids=["raises", "wrong-type", "duplicate-id", "markup-in-node-id", "unhandled-stage"],
)
def test_a_broken_analytic_model_is_one_clear_error(
    pytester: pytest.Pytester, knobs: dict[str, str], message: str
) -> None:
    pytester.makeconftest(toy_source(**knobs))
    result = pytester.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    out = result.stdout.str()
    assert "INTERNALERROR" not in out
    assert "the analytic model of toy/small/" in out
    assert message in out
    assert "plugin '" in out
    assert_no_false_claims(pytester, result)
    assert "<img" not in (run_dirs(pytester)[0] / "flopcheck" / "report.html").read_text().split("</h2>")[0]


@pytest.mark.parametrize(
    ("runs", "message"),
    [
        ("{}", "multiplicities gives no count for stage 'core'"),
        ('{"core": -1}', "multiplicities gives stage 'core' the count -1: it must be an integer >= 0"),
        ('{"core": 0}', "multiplicities gives every stage the count 0: a generation runs at least one"),
    ],
)
def test_bad_multiplicities_are_one_error_on_the_pipeline(
    pytester: pytest.Pytester, runs: str, message: str
) -> None:
    pytester.makeconftest(toy_source(RUNS=runs))
    result = pytester.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    result.assert_outcomes(passed=16, errors=1)
    result.stdout.fnmatch_lines([f"*the pipeline of toy/small (plugin '*conftest.py'): {message}*"])


def test_a_stage_a_workload_never_runs_gets_no_checks(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(toy_source(STAGES='("core", "extra")', RUNS='{"core": 3, "extra": 0}'))
    result = pytester.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", "-v", *NO_CACHE)
    result.assert_outcomes(passed=17)  # core's 16 checks and the pipeline; nothing of "extra"
    assert "toy/small/extra" not in result.stdout.str()
    result.stdout.fnmatch_lines(["*test_end_to_end?toy/small/pipeline? PASSED*"])


def test_a_misspelt_hook_is_a_usage_error_naming_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TOY.replace("def flopcheck_register_models(", "def flopcheck_register_model("))
    result = pytester.runpytest("--flopcheck=toy", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*conftest.py* implements a hook flopcheck does not know*flopcheck_register_model*"]
    )


def test_xfail_is_recorded_as_xfail_and_a_failed_stage_is_not_a_pass(toy: pytest.Pytester) -> None:
    toy.makeconftest(
        toy_source(FUDGE="7")
        + "\n\nimport pytest\n\ndef pytest_collection_modifyitems(items):\n"
        + "    for item in items:\n"
        + "        if item.name == 'test_layer[toy/small/core/proj]':\n"
        + "            item.add_marker(pytest.mark.xfail(reason='known drift', strict=True))\n"
    )
    result = toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    result.assert_outcomes(passed=15, xfailed=1, failed=2)
    evidence = load_evidence(run_dirs(toy)[0])
    assert evidence["tests"]["xfailed"] == 1
    assert evidence["tests"]["failed"] == 2
    assert evidence["skipped"] == {"known drift": 1}
    statuses = {row["stage"]: row["status"] for row in evidence["summary"]}
    assert statuses == {"core": "FAIL", "pipeline": "FAIL"}
    summary = (run_dirs(toy)[0] / "flopcheck" / "summary.md").read_text()
    assert "### Failures (first 2 of 2)" in summary
    report = (run_dirs(toy)[0] / "flopcheck" / "report.html").read_text()
    for listed in ("test_end_to_end[toy/small/core]", "test_layer[toy/small/core/proj]"):
        assert listed in report  # the failures and the xfail keep their rows
    assert "❌ 2 failed of 17 checks" in summary


def test_unsafe_names_are_rejected_at_registration(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TOY.replace('"small": ToyWorkload', '"small\\n<b>": ToyWorkload'))
    result = pytester.runpytest("--flopcheck=toy", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*workload name 'small\\n<b>' is not allowed*"])


# -- publishing ---------------------------------------------------------------------------------


def test_published_files_are_whole_readable_and_linked_by_their_final_name(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=toy", *NO_CACHE)
    (run_dir,) = run_dirs(toy)
    result.stdout.fnmatch_lines(
        [f"*Generated html report: {(run_dir / 'flopcheck' / 'report.html').as_uri()}*"]
    )
    assert ".partial" not in result.stdout.str()
    assert sorted(p.name for p in (toy.path / "tmp" / "profile-output").iterdir()) == [run_dir.name]
    for path in (run_dir / "flopcheck").iterdir():
        assert path.stat().st_mode & 0o044 == 0o044, path  # group and others may read
    assert (run_dir / "flopcheck" / "report.html").read_text().rstrip().endswith("</html>")


def test_an_output_path_that_is_a_file_is_a_usage_error(toy: pytest.Pytester) -> None:
    (toy.path / "taken").write_text("a file")
    result = toy.runpytest("--flopcheck=toy", "--flopcheck-output=taken", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--flopcheck-output 'taken' is not allowed: it is a file, not a directory"])
    result = toy.runpytest("--flopcheck=toy", "--flopcheck-output=taken/below", *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*--flopcheck-output 'taken/below' is not allowed: it cannot hold a run directory*"]
    )


FULL_DISK = """

import errno
import pathlib

_open = pathlib.Path.open


def _full(self, mode="r", *args, **kwargs):
    if "w" in mode and ".partial" in str(self):
        raise OSError(errno.ENOSPC, "No space left on device")
    return _open(self, mode, *args, **kwargs)


pathlib.Path.open = _full
"""


def test_a_full_disk_publishes_nothing_and_keeps_earlier_runs(toy: pytest.Pytester) -> None:
    toy.runpytest("--flopcheck=toy", *NO_CACHE).assert_outcomes(passed=35)
    (earlier,) = run_dirs(toy)
    before = {p.name: p.read_bytes() for p in (earlier / "flopcheck").iterdir()}
    toy.makeconftest(TOY + FULL_DISK)
    result = toy.runpytest_subprocess("--flopcheck=toy", *NO_CACHE)  # it patches pathlib for the process
    assert result.ret == 3
    result.stdout.fnmatch_lines(
        ["flopcheck: the evidence could not be written under *No space left on device*"]
    )
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert run_dirs(toy) == [earlier]
    assert sorted(p.name for p in (toy.path / "tmp" / "profile-output").iterdir()) == [earlier.name]
    assert {p.name: p.read_bytes() for p in (earlier / "flopcheck").iterdir()} == before


# -- counting each reference once ----------------------------------------------------------------


def test_each_reference_is_counted_once_with_xdist_and_reused_from_the_cache(toy: pytest.Pytester) -> None:
    log = toy.path / "builds.log"
    toy.makeconftest(toy_source(BUILD_LOG=repr(str(log))))

    def counted() -> dict[str, str]:
        evidence = load_evidence(run_dirs(toy)[-1])
        return {f"{r['workload']}/{r['stage']}": r["source"] for r in evidence["timing"]["reference_runs"]}

    toy.runpytest("--flopcheck=toy", "-n", "2").assert_outcomes(passed=35)
    assert len(log.read_text().splitlines()) == 2  # two references, two builds across both workers
    assert counted() == {"large/core": "counted", "small/core": "counted"}
    toy.runpytest("--flopcheck=toy").assert_outcomes(passed=35)
    assert len(log.read_text().splitlines()) == 2  # nothing changed: both counts come from the cache
    assert counted() == {"large/core": "cache", "small/core": "cache"}
    toy.runpytest("--flopcheck=toy", "-n", "2", "--flopcheck-recount").assert_outcomes(passed=35)
    assert len(log.read_text().splitlines()) == 4
    toy.runpytest("--flopcheck=toy", "--cache-clear").assert_outcomes(passed=35)
    assert len(log.read_text().splitlines()) == 6
    documents = [load_evidence(d) for d in run_dirs(toy)]
    for document in documents:
        for field in VOLATILE_FIELDS:
            document.pop(field)
    assert all(document == documents[0] for document in documents)  # serial, -n 2 and cached agree


def test_editing_the_reference_forces_a_recount(toy: pytest.Pytester) -> None:
    log = toy.path / "builds.log"
    toy.makeconftest(toy_source(BUILD_LOG=repr(str(log))))
    toy.runpytest("--flopcheck=toy").assert_outcomes(passed=35)
    toy.makeconftest(toy_source(BUILD_LOG=repr(str(log))) + "\n# an edit to the reference module\n")
    toy.runpytest("--flopcheck=toy").assert_outcomes(passed=35)
    assert len(log.read_text().splitlines()) == 4


# -- comparing runs -----------------------------------------------------------------------------


def test_diff_of_two_evidence_runs_shows_drift_and_gates_on_it(
    toy: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_flopcheck.cli.app import main

    toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    toy.makeconftest(toy_source(FUDGE="7"))
    toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "not pipeline", *NO_CACHE)
    good, drifted = (str(d) for d in run_dirs(toy))

    assert main(["diff", good, good, "--fail-on", "0"]) == 0
    assert "0 changed outcome, 0 values changed" in capsys.readouterr().out

    assert main(["diff", good, drifted]) == 0  # without --fail-on a diff only reports
    out = capsys.readouterr().out
    assert "toy/small/core: pass -> FAIL" in out
    assert "toy/small/pipeline: pass -> absent" in out
    assert "test_layer[toy/small/core/proj]: passed -> failed" in out
    assert "test_layer[toy/small/core/proj] flops analytic: 15,360 -> 15,367 (0.046%)" in out
    assert "disappeared: test_end_to_end[toy/small/pipeline]" in out

    assert main(["diff", good, drifted, "--fail-on", "1%"]) == 1
    err = capsys.readouterr().err
    assert "2 check(s) newly failing" in err
    assert "1 check(s) disappeared" in err
    assert "value(s) changed" not in err  # 0.046% is within 1%
    assert main(["diff", good, drifted, "--fail-on", "0"]) == 1
    assert "value(s) changed by more than 0" in capsys.readouterr().err


def test_diff_gates_checks_that_are_no_longer_verified(
    toy: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    from pytest_flopcheck.cli.app import main

    toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", "--flopcheck-device=cuda", *NO_CACHE)
    good, skipped = (str(d) for d in run_dirs(toy))
    assert main(["diff", good, skipped, "--fail-on", "0"]) == 1
    err = capsys.readouterr().err
    assert "17 check(s) no longer verified (first: test_params[toy/small/core], passed -> skipped)" in err
    assert "2 stage(s) no longer pass" in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (("--top", "-1"), "--top -1 is not allowed: it must be 0 or more"),
        (("--fail-on", "lots"), "--fail-on 'lots' is not allowed: give a relative change"),
        (("--fail-on=-1%",), "--fail-on '-1%' is not allowed"),
    ],
)
def test_bad_diff_options(
    toy: pytest.Pytester, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], message: str
) -> None:
    from pytest_flopcheck.cli.app import main

    toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", *NO_CACHE)
    (run,) = (str(d) for d in run_dirs(toy))
    assert main(["diff", run, run, *extra]) == 2
    assert message in capsys.readouterr().err


def test_runs_without_pytest_html(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=toy", "-p", "no:html", *NO_CACHE)
    result.assert_outcomes(passed=35)
    (run_dir,) = run_dirs(toy)
    assert sorted(p.name for p in (run_dir / "flopcheck").iterdir()) == ["evidence.json", "summary.md"]
    assert "Generated html report" not in result.stdout.str()


# -- options that mean one thing ------------------------------------------------------------------

BAD_PYTEST_INPUT = [
    (("--flopcheck=",), "", "--flopcheck '' names no model: give one or more of"),
    (("--flopcheck= , ",), "", "--flopcheck ' , ' names no model"),
    (("--flopcheck-workloads=small",), "", "--flopcheck-workloads needs --flopcheck=NAME[,NAME]"),
    (("--flopcheck-device=cpu",), "", "--flopcheck-device needs --flopcheck=NAME[,NAME]"),
    (("--flopcheck-recount",), "", "--flopcheck-recount needs --flopcheck=NAME[,NAME]"),
    (("-m", "flopcheck"), "", "-m 'flopcheck' selects the tests pytest-flopcheck generates, but none are"),
    (("--flopcheck=toy", "--flopcheck-workloads=,"), "", "--flopcheck-workloads ',' names no workload"),
    (("--flopcheck=toy", "--flopcheck-output= "), "", "--flopcheck-output is empty: give a directory"),
    (
        (),
        "flopcheck = toy\nflopcheck_device = tpu\n",
        "ini key flopcheck_device: device 'tpu' is not supported",
    ),
    (
        (),
        "flopcheck = toy\nflopcheck_workloads = huge\n",
        "ini key flopcheck_workloads: workload 'huge' is not",
    ),
    ((), "flopcheck = nope\n", "ini key flopcheck: model 'nope' is not registered; registered models:"),
    ((), "flopcheck = toy\nflopcheck_output =\n", "ini key flopcheck_output is empty"),
    (
        (),
        "flopcheck = toy\nflopcheck_strict = maybe\n",
        "ini key flopcheck_strict 'maybe' is not allowed: use true or false",
    ),
    (("--flopcheck=toy", "--flopcheck-device=" + "x" * 5000), "", "device 'xxxxxxxx"),
]


@pytest.mark.parametrize(("args", "ini", "message"), BAD_PYTEST_INPUT)
def test_bad_pytest_input_is_one_sentence_and_exit_4(
    toy: pytest.Pytester, args: tuple[str, ...], ini: str, message: str
) -> None:
    if ini:
        toy.makeini("[pytest]\n" + ini)
    result = toy.runpytest(*args, *NO_CACHE)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    errors = [line for line in result.stderr.lines if line.startswith("ERROR: ")]
    assert len(errors) == 1, result.stderr.lines
    assert message in errors[0]
    assert len(errors[0]) < 400  # a huge value is never echoed whole
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert run_dirs(toy) == []


def test_a_model_named_twice_runs_each_check_once(toy: pytest.Pytester) -> None:
    result = toy.runpytest("--flopcheck=toy,toy", "--flopcheck-workloads=small,small", *NO_CACHE)
    result.assert_outcomes(passed=18)


GROUPED = """
import torch
from pytest_flopcheck import CostNode, Metrics, ModelRegistration, OpPolicy, ReferenceCall, Stage, hookimpl
from pytest_flopcheck.analytic.ops import grouped_matmul_flops

ROWS, K, N, EXPERTS = 12, 8, 16, 3


class Experts(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.empty(EXPERTS, K, N))

    def forward(self, x, offs):
        y = torch._grouped_mm(x, self.weight, offs=offs)
        return torch.nn.functional.interpolate(y[None], size=2 * N, mode="linear")


def reference(w, stage, device):
    model = Experts().to(device=device, dtype=torch.bfloat16)
    x = torch.empty(ROWS, K, device=device, dtype=torch.bfloat16)
    offs = torch.tensor([4, 8, ROWS], dtype=torch.int32, device=device)
    return ReferenceCall(model, lambda: model(x, offs))


def analytic(w, stage):
    metrics = Metrics(flops=grouped_matmul_flops(ROWS, K, N), params=EXPERTS * K * N)
    experts = CostNode("experts", "moe", metrics, reference="", reference_own=True)
    return CostNode("", "model", experts.metrics, (experts,), reference="")


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(name="moe", stages=(Stage("core", 0.0),), workloads={"w": 1},
                               analytic=analytic, reference=reference, op_policy=OpPolicy(zero_flop=set())))
"""


def test_a_grouped_mm_model_is_counted_exactly_with_no_coverage_gap(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(GROUPED)
    result = pytester.runpytest("--flopcheck=moe", *NO_CACHE)
    result.assert_outcomes(passed=4)
    evidence = load_evidence(run_dirs(pytester)[0])
    (total,) = [r for r in evidence["results"] if r["test"] == "test_end_to_end[moe/w/core]"]
    assert total["analytic"] == total["reference"] == 2 * 12 * 8 * 16
    assert evidence["coverage"] == [
        {"model": "moe", "workload": "w", "stage": "core", "unclaimed_modules": [], "uncounted_ops": []}
    ]


def test_a_generation_is_counted_whole_and_must_match_exactly(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    toy.makeconftest(toy_source(GENERATIONS='{"twice": lambda: generation()}'))
    result = toy.runpytest("--flopcheck=toy", "-k", "generation", *mode, *NO_CACHE)
    result.assert_outcomes(passed=1)
    evidence = load_evidence(run_dirs(toy)[-1])
    (check,) = evidence["checks"]
    assert check["test"] == "test_generation[toy/twice]"
    (comparison,) = evidence["results"]
    assert comparison["analytic"] == comparison["reference"] == 2 * 51_328
    assert evidence["summary"][0]["status"] == "pass"
    toy.makeconftest(toy_source(GENERATIONS='{"twice": lambda: generation()}', GENERATION_FUDGE="1"))
    result = toy.runpytest("--flopcheck=toy", "-k", "generation", *mode, *NO_CACHE)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["toy/twice/generation  [[]flops[]]  OUTSIDE tolerance"])


def test_memory_compares_weights_exactly_and_the_live_peak_beyond_them(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    """A stage that declares a memory tolerance gets one test_memory per workload: weights exact,
    the live peak beyond them within the tolerance, recorded like the other checks."""
    args = ("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "test_memory", *mode, *NO_CACHE)
    toy.makeconftest(toy_source(MEMORY_TOLERANCE="0.01"))
    toy.runpytest(*args).assert_outcomes(passed=1)
    evidence = load_evidence(run_dirs(toy)[-1])
    (check,) = evidence["checks"]
    assert check["test"] == "test_memory[toy/small/core]"
    weights, live = evidence["results"]
    assert weights["metric"] == "weight_bytes"
    assert weights["analytic"] == weights["reference"] == (16 * 48 + 48 + 16 * 16 + 3 * 4 * 9 + 4) * 4
    assert live["metric"] == "live_peak_bytes"
    # at attention.out: the inputs (x 640 B, image 1,536 B), qkv, the kernel's output (already
    # token-major) and the projection's output (5 × 640 B)
    assert live["analytic"] == live["reference"] == 640 + 1_536 + 5 * 640
    assert live["tolerance"] == 0.01
    (row,) = evidence["summary"]
    assert row["memory_tolerance"] == 0.01
    assert row["memory_rel_error"] == 0
    toy.makeconftest(toy_source(MEMORY_TOLERANCE="0.01", LIVE_FUDGE="100"))
    result = toy.runpytest(*args)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(
        [
            "*toy/small/core*live_peak_bytes*OUTSIDE tolerance*",
            # where each side puts the peak: the measured op and module, the tensors live then
            "measured peak: 5,376 bytes beyond the weights, set by aten.mm in attention.out; live then*",
            "*1,920  float32 [[]10, 48]  aten.addmm in proj",
            "*640  float32 [[]10, 16]  aten.mm in attention.out",
            "analytic peak: 5,476 bytes beyond the weights, at attention.out:",
            "*100  held by (stage) while its children run",
            "*2,176  held by attention while its children run",
            "*1,280  the inputs and outputs of one call of attention.out",
            "*1,920  its scratch (temporaries beside its call)",
        ]
    )
    toy.makeconftest(toy_source(MEMORY_TOLERANCE="0.01"))
    toy.runpytest(
        "--flopcheck=toy", "--flopcheck-workloads=large", "-k", "test_memory", *mode, *NO_CACHE
    ).assert_outcomes(passed=1)  # there the conv holds the most: the inputs, both outputs
    toy.makeconftest(TOY)
    collected = toy.runpytest("--flopcheck=toy", "--collect-only", "-q", *NO_CACHE).stdout.lines
    assert not [line for line in collected if "test_memory" in line]  # no tolerance, no check


def test_traffic_compares_each_claiming_layer_exactly_and_the_stage_within_its_tolerance(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    """A layer that predicts its elementwise work gets a test_traffic (bytes and op count, exact
    against its module's other ops); a stage that declares a traffic tolerance gets one on its
    total. A stage that declares none and whose layers predict nothing gets neither."""
    args = ("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "test_traffic", *mode, *NO_CACHE)
    toy.makeconftest(toy_source(TRAFFIC_FUDGE="0"))
    toy.runpytest(*args).assert_outcomes(passed=2)
    evidence = load_evidence(run_dirs(toy)[-1])
    assert sorted(c["test"] for c in evidence["checks"]) == [
        "test_traffic[toy/small/core/attention.out]",
        "test_traffic[toy/small/core]",
    ]
    by_metric = {(r["layer"], r["metric"]): r for r in evidence["results"]}
    # attention.out's linear copies its transposed 10 x 16 fp32 input: read and written once
    assert by_metric["attention.out", "elementwise_bytes"]["reference"] == 2 * 10 * 16 * 4
    assert by_metric["attention.out", "elementwise_ops"]["reference"] == 1
    assert by_metric["", "elementwise_bytes"]["analytic"] == by_metric["", "elementwise_bytes"]["reference"]
    (row,) = evidence["summary"]
    assert row["traffic_compared"] == 1
    assert row["traffic_rel_error"] == 0
    toy.makeconftest(toy_source(TRAFFIC_FUDGE="8"))
    result = toy.runpytest(*args)
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(["*toy/small/core/attention.out*elementwise_bytes*OUTSIDE tolerance*"])
    toy.makeconftest(TOY)
    collected = toy.runpytest("--flopcheck=toy", "--collect-only", "-q", *NO_CACHE).stdout.lines
    assert not [line for line in collected if "test_traffic" in line]


@pytest.mark.parametrize("mode", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_parallel_layouts_are_checked_on_one_rank_of_a_fake_process_group(
    toy: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    """A registration's verified layouts get a test_parallel check per claiming node: FLOPs on
    every node, the collectives' bytes and count on groups, against the real code run on rank 0
    of a fake process group; a wrong collective fails and names the metric."""
    args = ("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "test_parallel", *mode, *NO_CACHE)
    toy.makeconftest(toy_source(PARALLEL_FUDGE="0"))
    toy.runpytest(*args).assert_outcomes(passed=3)
    evidence = load_evidence(run_dirs(toy)[-1])
    assert sorted(c["test"] for c in evidence["checks"]) == [
        "test_parallel[toy/small/core@u2/gather]",
        "test_parallel[toy/small/core@u2/proj]",
        "test_parallel[toy/small/core@u2]",
    ]
    by_metric = {(r["layer"], r["metric"]): r for r in evidence["results"]}
    # one all-gather of the 2 x 5 x 48 fp32 projection, counted where the Gather module runs it
    assert by_metric["gather", "collective_bytes"]["reference"] == 2 * 5 * 48 * 4
    assert by_metric["gather", "collectives"]["reference"] == 1
    assert by_metric["", "collective_bytes"]["analytic"] == by_metric["", "collective_bytes"]["reference"]
    assert ("proj", "collective_bytes") not in by_metric  # a leaf compares FLOPs only
    # the weights rank 0 holds: the projection's whole (the layout shards no weight)
    assert (
        by_metric["", "weight_bytes"]["analytic"]
        == by_metric["", "weight_bytes"]["reference"]
        == 16 * 48 * 4 + 48 * 4
    )
    (row,) = [r for r in evidence["summary"] if r["stage"] == "core@u2"]
    assert row["status"] == "pass"
    toy.makeconftest(toy_source(PARALLEL_FUDGE="8"))
    result = toy.runpytest(*args)
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(["*toy/small/core@u2/gather*collective_bytes*OUTSIDE tolerance*"])
    # a rank's tree that forgets a weight (the projection's bias) fails the stage's weight row
    unbiased = toy_source(PARALLEL_FUDGE="0").replace(
        'out_features=3 * DIM, bias=True, dtype_bytes=4,\n        reference="proj",',
        'out_features=3 * DIM, bias=False, dtype_bytes=4,\n        reference="proj",',
    )
    assert unbiased != toy_source(PARALLEL_FUDGE="0")
    toy.makeconftest(unbiased)
    result = toy.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*toy/small/core@u2 *weight_bytes*OUTSIDE tolerance*"])
    toy.makeconftest(TOY)
    collected = toy.runpytest("--flopcheck=toy", "--collect-only", "-q", *NO_CACHE).stdout.lines
    assert not [line for line in collected if "test_parallel" in line]


def test_a_stage_with_a_memory_model_is_held_to_its_live_peak_under_its_layouts(toy: pytest.Pytester) -> None:
    """With a memory tolerance, test_parallel also compares rank 0's live peak beyond its weights
    with the tracker's: the toy's, while its gathered outputs are joined."""
    args = ("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "test_parallel", *NO_CACHE)
    toy.makeconftest(toy_source(PARALLEL_FUDGE="0", MEMORY_TOLERANCE="0.01"))
    toy.runpytest(*args).assert_outcomes(passed=3)
    evidence = load_evidence(run_dirs(toy)[-1])
    (live,) = [r for r in evidence["results"] if r["metric"] == "live_peak_bytes"]
    assert live["test"] == "test_parallel[toy/small/core@u2]"
    # the input (2 x 5 x 16 fp32), the projection's output (2 x 5 x 48), gathered over two ranks
    # and joined along the tokens
    assert live["analytic"] == live["reference"] == 640 + 1_920 + 2 * 3_840
    toy.makeconftest(toy_source(PARALLEL_FUDGE="0", MEMORY_TOLERANCE="0.01", LIVE_FUDGE="1000"))
    result = toy.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(
        [
            "*toy/small/core@u2*live_peak_bytes*OUTSIDE tolerance*",
            "measured peak: 10,240 bytes beyond the weights, set by aten.cat in gather*",
        ]
    )


def test_a_stage_that_predicts_traffic_is_held_to_it_under_its_layouts(toy: pytest.Pytester) -> None:
    """With a traffic tolerance, test_parallel also compares the stage's elementwise traffic on
    one rank: the toy's gathered output is joined along its tokens, a copy for two samples."""
    args = ("--flopcheck=toy", "--flopcheck-workloads=small", "-k", "test_parallel", *NO_CACHE)
    toy.makeconftest(toy_source(PARALLEL_FUDGE="0", TRAFFIC_FUDGE="0"))
    toy.runpytest(*args).assert_outcomes(passed=3)
    evidence = load_evidence(run_dirs(toy)[-1])
    by_metric = {(r["layer"], r["metric"]): r for r in evidence["results"]}
    joined = 2 * (2 * 2 * 5 * 48 * 4)  # two ranks' outputs (2 x 5 x 48 fp32 each), read and written
    assert (
        by_metric["", "elementwise_bytes"]["reference"]
        == by_metric["", "elementwise_bytes"]["analytic"]
        == joined
    )
    assert by_metric["", "elementwise_ops"]["reference"] == 1
    (row,) = [r for r in evidence["summary"] if r["stage"] == "core@u2"]
    assert (row["status"], row["traffic_rel_error"]) == ("pass", 0.0)
    toy.makeconftest(
        toy_source(PARALLEL_FUDGE="0", TRAFFIC_FUDGE="0").replace("if w.batch > 1:", "if False:")
    )
    result = toy.runpytest(*args)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*toy/small/core@u2*elementwise_bytes*OUTSIDE tolerance*"])


def test_generations_are_selected_like_workloads(toy: pytest.Pytester) -> None:
    toy.makeconftest(toy_source(GENERATIONS='{"twice": lambda: generation()}'))
    only_small = toy.runpytest(
        "--flopcheck=toy", "--flopcheck-workloads=small", "--collect-only", "-q", *NO_CACHE
    )
    assert not [line for line in only_small.stdout.lines if "test_generation" in line]
    only_twice = toy.runpytest("--flopcheck=toy", "--flopcheck-workloads=twice", "-q", *NO_CACHE)
    only_twice.assert_outcomes(passed=2)  # the generation and test_plain


SPLIT = """
import torch
from pytest_flopcheck import ModelRegistration, ReferenceCall, Stage, group, hookimpl, layers


class TwoProducts(torch.nn.Module):
    def forward(self, a, b, c, d):
        return torch.mm(a, b).sum() + torch.bmm(c, d).sum()


def reference(w, stage, device):
    module = TwoProducts()
    tensors = [torch.empty(*s, device=device) for s in ((4, 8), (8, 3), (2, 5, 6), (2, 6, 7))]
    return ReferenceCall(module, lambda: module(*tensors))


def analytic(w, stage):
    mm = layers.bmm("scores", "attention", batch=1, m=4, k=8, n=3, dtype_bytes=4, reference="",
                    reference_ops=("aten.mm",))
    bmm = layers.bmm("rel_pos", "attention", batch=2, m=5, k=6, n=7 + OFF, dtype_bytes=4, reference="",
                     reference_ops=("aten.bmm",))
    return group("", "model", [mm, bmm], reference="")


OFF = 0


@hookimpl
def flopcheck_register_models(register):
    register(ModelRegistration(name="split", stages=(Stage("core", 0.0),), workloads={"w": 1},
                               analytic=analytic, reference=reference))
"""


def test_two_leaves_split_one_modules_own_work_through_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(SPLIT)
    result = pytester.runpytest("--flopcheck=split", "-rf", *NO_CACHE)
    result.assert_outcomes(passed=8)  # each leaf's FLOPs, parameters and I/O, the total's
    evidence = load_evidence(run_dirs(pytester)[0])
    labels = {r["layer"]: r["reference_module"] for r in evidence["results"] if r["metric"] == "flops"}
    assert labels["scores"] == "(whole module) (own work) [aten.mm]"
    pytester.makeconftest(SPLIT.replace("OFF = 0", "OFF = 1"))
    result = pytester.runpytest("--flopcheck=split", "-rf", *NO_CACHE)
    result.assert_outcomes(passed=5, failed=3)  # only the bmm leaf (FLOPs, I/O) and the total are off
    result.stdout.fnmatch_lines(["FAILED flopcheck::test_layer[[]split/w/core/rel_pos[]]*"])


# -- crashed workers --------------------------------------------------------------------------------

KILL = """
import os

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if item.name == "test_layer[toy/small/core/conv]" and not os.path.exists(MARK):
        open(MARK, "w").close()
        os._exit(1)
"""


def test_a_check_whose_worker_dies_is_a_failure_in_the_evidence(toy: pytest.Pytester) -> None:
    toy.makeconftest(TOY + KILL.replace("MARK", repr(str(toy.path / "killed"))))
    result = toy.runpytest("--flopcheck=toy", "-m", "flopcheck", "-n", "2", *NO_CACHE)
    result.assert_outcomes(passed=33, failed=1)  # the crashed check is not run again
    evidence = load_evidence(run_dirs(toy)[-1])
    assert evidence["verdict"] == "failed"
    assert evidence["tests"]["failed"] == 1
    (crashed,) = [c for c in evidence["checks"] if c["outcome"] == "failed"]
    assert crashed["test"] == "test_layer[toy/small/core/conv]"
    assert "crashed" in crashed["message"]
    summary = (run_dirs(toy)[-1] / "flopcheck" / "summary.md").read_text()
    assert "❌ 1 failed of 34 checks" in summary


def test_a_reference_that_kills_every_worker_ends_the_run_without_hanging(toy: pytest.Pytester) -> None:
    toy.makeconftest(
        toy_source().replace(
            "    if REFERENCE_ERROR is not None:\n        raise REFERENCE_ERROR",
            "    if REFERENCE_ERROR is not None:\n        raise REFERENCE_ERROR\n    if w.seq == 7:\n"
            "        import os\n        os._exit(1)",
        )
    )
    result = toy.runpytest_subprocess(  # a process of its own, so that a hang is a timeout
        "--flopcheck=toy", "-m", "flopcheck", "-n", "2", "--max-worker-restart=2", *NO_CACHE, timeout=300
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    assert result.ret == 1
    evidence = load_evidence(run_dirs(toy)[-1])
    assert evidence["status"] == "interrupted"
    assert evidence["tests"]["failed"] == 3  # one per crashed worker: the first two and their replacement
    assert evidence["tests"]["passed"] == 17  # every check of the workload whose reference runs
