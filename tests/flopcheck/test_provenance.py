"""The reference cache's key covers everything a count depends on: each case below edits one
thing a count depends on and checks that the next run counts again (and that an edit of what a
count does not depend on keeps the cache); unusable cache state costs a recount and a warning."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import attrs
import pytest

from pytest_flopcheck.model.registry import load_registry
from pytest_flopcheck.reference.provenance import CodeSet, UnstableKey, canonical, code_key, framework_digest

pytest.importorskip("torch")
TOY = (Path(__file__).parent / "toy_model.py").read_text()


def sources(run_dir: Path) -> dict[str, str]:
    evidence = json.loads((run_dir / "flopcheck" / "evidence.json").read_text())
    return {f"{r['workload']}/{r['stage']}": r["source"] for r in evidence["timing"]["reference_runs"]}


def last_run(pytester: pytest.Pytester) -> Path:
    root = pytester.path / "tmp" / "profile-output"
    return sorted(p for p in root.iterdir() if not p.name.startswith("."))[-1]


def run(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest("--flopcheck=toy", "--flopcheck-workloads=small", "-m", "flopcheck", *args)


# -- what the key covers ----------------------------------------------------------------------------


def test_an_edit_of_a_helper_module_the_reference_imports_forces_a_recount(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        TOY.replace("import attrs\n", "import attrs\nimport toyhelp\n", 1).replace(
            "x = torch.randn(w.batch, w.seq, DIM)", "x = torch.randn(w.batch, w.seq + toyhelp.EXTRA, DIM)"
        )
    )
    pytester.makepyfile(toyhelp="EXTRA = 0\n")
    run(pytester).assert_outcomes(passed=17)
    pytester.makepyfile(toyhelp="EXTRA = 1\n")  # the reference now runs 6 tokens, not 5
    result = run(pytester)
    result.assert_outcomes(passed=8, failed=9)
    assert sources(last_run(pytester)) == {"small/core": "counted"}


def test_an_edit_of_the_function_a_partial_wraps_forces_a_recount(pytester: pytest.Pytester) -> None:
    conftest = TOY.replace(
        "            reference=reference,", "            reference=functools.partial(toyref.build, 1),"
    )
    pytester.makeconftest(
        conftest.replace("import attrs\n", "import attrs\nimport functools\nimport toyref\n", 1)
    )
    helper = (
        "import conftest\n\ndef build(scale, w, stage, device):\n"
        "    return conftest.reference(w, stage, device)\n"
    )
    pytester.makepyfile(toyref=helper)
    run(pytester).assert_outcomes(passed=17)
    pytester.makepyfile(toyref=helper.replace("(w, stage", "(type(w)(w.batch, w.seq + 1, w.image), stage"))
    run(pytester).assert_outcomes(passed=8, failed=9)


def test_an_edit_of_an_analytic_model_keeps_the_cached_counts(pytester: pytest.Pytester) -> None:
    # The reference builder's module imports nothing of the analytic model's module.
    analytic, _, rest = TOY.partition("def reference(")
    builder = rest.partition("def generation(")[0]
    pytester.makepyfile(
        toyanalytic=analytic,
        toyref="from __future__ import annotations\nfrom pytest_flopcheck import ReferenceCall\n"
        "DIM, HEADS, CHANNELS, BUILD_LOG, REFERENCE_ERROR = 16, 2, 3, None, None\n\n"
        "def reference(" + builder,
    )
    pytester.makeconftest(
        "from pytest_flopcheck import ModelRegistration, Stage, hookimpl\n"
        "from toyanalytic import ToyWorkload, analytic\n"
        "from toyref import reference\n\n"
        "@hookimpl\n"
        "def flopcheck_register_models(register):\n"
        "    register(ModelRegistration(name='toy', stages=(Stage('core', 0.0),), analytic=analytic,\n"
        "        workloads={'small': ToyWorkload(2, 5, 8)}, reference=reference,\n"
        "        multiplicities=lambda w: {'core': 3}))\n"
    )
    run(pytester).assert_outcomes(passed=17)
    pytester.makepyfile(toyanalytic=analytic.replace("FUDGE = 0", "FUDGE = 7"))
    result = run(pytester)
    result.assert_outcomes(passed=14, failed=3)  # the layer, the stage total and the pipeline
    assert sources(last_run(pytester)) == {"small/core": "cache"}
    assert "1 of 1 reference count from the cache" in result.stdout.str()


def test_a_workload_without_a_stable_description_is_counted_every_run_and_said_so(
    pytester: pytest.Pytester,
) -> None:
    log = pytester.path / "builds.log"
    pytester.makeconftest(
        TOY.replace(
            "@attrs.frozen\nclass ToyWorkload:\n    batch: int\n    seq: int\n    image: int\n",
            "class ToyWorkload:\n    def __init__(self, batch, seq, image):\n"
            "        self.batch, self.seq, self.image = batch, seq, image\n",
        ).replace("BUILD_LOG = None", f"BUILD_LOG = {str(log)!r}")
    )
    run(pytester).assert_outcomes(passed=17)
    result = run(pytester)
    result.assert_outcomes(passed=17)
    assert len(log.read_text().splitlines()) == 2
    result.stdout.fnmatch_lines(
        ["warning: the reference count of toy/small/core is not cached: its cache key would hold *Toy*"]
    )
    evidence = json.loads((last_run(pytester) / "flopcheck" / "evidence.json").read_text())
    assert "not cached" in evidence["warnings"][0]


def test_unusable_cache_state_costs_a_recount_and_a_warning(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(TOY)
    run(pytester).assert_outcomes(passed=17)
    entries = list((pytester.path / ".pytest_cache" / "d" / "flopcheck-references").glob("*.json"))
    for entry in entries:
        entry.write_text(entry.read_text().replace('"total_flops": ', '"total_flops": 1e400, "x": ', 1))
    result = run(pytester)
    result.assert_outcomes(passed=17)
    result.stdout.fnmatch_lines(["warning: the cached count * is unusable (*); it was counted again"])
    assert sources(last_run(pytester)) == {"small/core": "counted"}
    assert sources(last_run(pytester)) == {"small/core": "counted"}
    run(pytester).assert_outcomes(passed=17)  # the recount replaced the entry
    assert sources(last_run(pytester)) == {"small/core": "cache"}


@pytest.mark.parametrize("mode", [(), ("-n", "2")], ids=["serial", "xdist"])
def test_a_cache_directory_that_is_a_file_runs_and_warns(
    pytester: pytest.Pytester, mode: tuple[str, ...]
) -> None:
    pytester.makeconftest(TOY)
    (pytester.path / ".pytest_cache" / "d").mkdir(parents=True)
    (pytester.path / ".pytest_cache" / "d" / "flopcheck-references").write_text("not a directory")
    result = run(pytester, *mode)
    result.assert_outcomes(passed=17)
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "warning: pytest's cache directory cannot hold the reference cache*",
            "warning: the counts of this run are not kept for later runs",
        ]
    )
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


# -- the key itself ---------------------------------------------------------------------------------


def test_a_models_reference_key_follows_its_imports_but_not_its_analytic_models() -> None:
    registry = load_registry()
    analytic = (".dit", ".vae", ".text_encoder", ".image_encoder", ".pipeline", ".stages", ".decoder")
    for name, reg in registry.models.items():
        for builder in [reg.reference, *(factory().build for factory in reg.generations.values())]:
            code = CodeSet()
            code.describe(builder)
            assert any(module.endswith(".reference") for module in code.modules), name
            assert not [m for m in code.modules if m.endswith(analytic)], (name, sorted(code.modules))
    code = CodeSet()
    code.describe(registry.models["wan2_2"].reference)
    assert "wan_models.wan2_1.reference" in code.modules  # wan2_2's builders delegate to wan2_1's
    code = CodeSet()
    code.describe(registry.models["wan2_1"].generations["tiny-guided"]().build)
    assert "wan_models.wan2_1.config" in code.modules  # the tiny configurations


def test_the_framework_digest_covers_the_counting_and_tracking_code() -> None:
    code = CodeSet()
    code.add_module("pytest_flopcheck.reference.counting")
    assert {"pytest_flopcheck.reference.ops_policy", "pytest_flopcheck.reference.memory"} <= set(code.modules)
    assert len(framework_digest()) == 16


@attrs.frozen
class _Frozen:
    size: int


class _Plain:
    pass


def test_canonical_data_is_stable_or_refused() -> None:
    assert canonical(_Frozen(3)) == canonical(_Frozen(3)) != canonical(_Frozen(4))
    assert canonical({"b": 1, "a": (1.5, None)}) == canonical({"a": (1.5, None), "b": 1})
    with pytest.raises(UnstableKey, match="has no stable description"):
        canonical(_Plain())


def _build(scale: int, *args: object) -> None:
    return None


def test_partials_are_described_by_their_function_and_arguments() -> None:
    one = code_key(functools.partial(_build, 1))
    assert one == code_key(functools.partial(_build, 1))
    assert one != code_key(functools.partial(_build, 2))
    assert "tests.flopcheck.test_provenance" in one["sources"] or any(
        name.endswith("test_provenance") for name in one["sources"]
    )
