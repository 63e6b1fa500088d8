"""The run record: headlines and stage results never claim more than what ran."""

from __future__ import annotations

import attrs
import pytest

from pytest_flopcheck.evidence.record import (
    COMPLETE,
    INTERRUPTED,
    NOTHING_RUN,
    CheckRecord,
    ErrorRecord,
    RunRecord,
    StageTotal,
)
from pytest_flopcheck.evidence.render import summary_html, summary_markdown, terminal_lines
from pytest_flopcheck.files import FileProblem
from pytest_flopcheck.reference.counting import CoverageGap
from pytest_flopcheck.text import md
from pytest_flopcheck.verification.compare import Comparison


def check(outcome: str, kind: str = "test_layer", layer: str = "proj", **extra: object) -> CheckRecord:
    comparisons = ()
    if outcome in ("passed", "failed", "xpassed") and "comparisons" not in extra:
        analytic = 10 if outcome != "failed" else 11
        comparisons = (Comparison("toy", "w", "core", layer, layer, "flops", analytic, 10, 0.0),)
    fields: dict[str, object] = {"comparisons": comparisons, **extra}
    return CheckRecord(
        test=f"{kind}[toy/w/core{'/' + layer if layer else ''}]",
        kind=kind,
        model="toy",
        workload="w",
        stage="core",
        layer=layer,
        outcome=outcome,
        **fields,  # type: ignore[arg-type]
    )


def record(
    *checks: CheckRecord, status: str = COMPLETE, selected: int | None = None, **extra: object
) -> RunRecord:
    return RunRecord(
        run_id="r",
        created_utc="t",
        status=status,
        selected=len(checks) if selected is None else selected,
        environment={"device": "meta"},
        selection={},
        checks=checks,
        **extra,  # type: ignore[arg-type]
    )


def rendered(run: RunRecord) -> str:
    return "\n".join([summary_markdown(run), summary_html(run), *terminal_lines(run), str(run.to_json())])


def test_all_passed_is_the_only_green_headline() -> None:
    run = record(check("passed"), check("passed", kind="test_end_to_end", layer=""))
    assert run.headline == "✅ all 2 checks passed"
    assert run.stage_summaries()[0].status == "pass"


@pytest.mark.parametrize(
    ("run", "headline"),
    [
        (
            record(check("skipped", message="no GPU"), check("skipped", message="no GPU")),
            "⚠️ nothing verified: all 2 checks were skipped",
        ),
        (
            record(check("passed"), status=INTERRUPTED, selected=5),
            "⚠️ interrupted: 1 of 5 checks finished (1 passed, 4 not run)",
        ),
        (record(status=NOTHING_RUN, selected=0), "⚪ nothing run: 0 checks selected, none finished"),
        (
            record(check("passed"), check("error", message="boom")),
            "❌ 1 error of 2 checks (1 passed, 1 error)",
        ),
        (
            record(check("xfailed", message="known"), check("skipped", message="no GPU")),
            "⚠️ nothing verified: none of 2 checks passed (1 skipped, 1 xfailed)",
        ),
    ],
)
def test_headlines_never_claim_more_than_ran(run: RunRecord, headline: str) -> None:
    assert run.headline == headline
    text = rendered(run)
    assert "✅" not in text
    assert "all checks passed" not in text
    assert "every counted FLOP" not in text


def test_an_xfail_is_not_a_failure_and_a_skip_reason_is_counted() -> None:
    run = record(check("passed"), check("xfailed", message="known gap"), check("skipped", message="no GPU"))
    assert run.counts["failed"] == 0
    assert run.verdict == "passed"
    assert run.skip_reasons() == {"known gap": 1, "no GPU": 1}
    assert "1 xfailed" in run.headline


def test_a_stage_passes_only_with_its_end_to_end_check_and_coverage() -> None:
    layer_only = record(check("passed"))
    assert layer_only.stage_summaries()[0].status == "incomplete"
    failed_total = record(check("passed"), check("failed", kind="test_end_to_end", layer=""))
    assert failed_total.stage_summaries()[0].status == "FAIL"
    gap = CoverageGap("unclaimed_module", "conv", "12 FLOPs")
    with_gap = record(check("passed"), check("passed", kind="test_end_to_end", layer="", gaps=(gap,)))
    assert with_gap.stage_summaries()[0].status == "incomplete"
    skipped = record(
        check("skipped", message="x"), check("skipped", kind="test_end_to_end", layer="", message="x")
    )
    assert skipped.stage_summaries()[0].status == "skipped"
    assert skipped.coverage() == []  # coverage is judged only for counted stages
    assert "Coverage" not in summary_markdown(skipped)


def test_failure_lists_count_failed_checks_not_comparisons() -> None:
    run = record(*(check("failed", layer=f"l{i}") for i in range(3)), check("error", message="x", layer="e"))
    text = summary_markdown(run)
    assert "### Failures (first 3 of 3)" in text
    assert "❌ 3 failed and 1 error of 4 checks" in text


def test_errors_are_reported_once_per_cause() -> None:
    error = ErrorRecord("reference:toy/w/core@meta", "reference", "toy", "w", "core", "conftest", "boom", 7)
    run = record(check("error", message="boom", cause=error.cause), errors=(error,))
    assert summary_markdown(run).count("boom") == 1
    assert terminal_lines(run).count("error (7 dependent checks): boom") == 1


def test_markdown_and_html_escape_what_they_print() -> None:
    evil = "<img src=x onerror=alert(1)> | *bold* `code`"
    run = record(check("skipped", message=evil))
    assert "<img" not in summary_markdown(run)
    assert "<img" not in summary_html(run)
    assert md("a|b*c<d>&\nnext") == "a\\|b\\*c&lt;d&gt;&amp; next"


def test_json_round_trip() -> None:
    total = StageTotal("toy", "w", "core", 3, 10, 10, 5)
    error = ErrorRecord("analytic:toy/w/x", "analytic", "toy", "w", "x", "conftest", "boom", 1, "tb")
    gap = CoverageGap("uncounted_op", "aten.mv", "ran 1 time")
    run = record(
        check("passed"),
        check("failed", kind="test_end_to_end", layer="", gaps=(gap,)),
        check("error", message="boom", cause=error.cause, layer="x"),
        errors=(error,),
        totals=(total,),
    )
    again = RunRecord.from_json(run.to_json())
    assert again == run


def test_a_stage_that_compared_nothing_shows_no_error_figure() -> None:
    run = record(check("skipped", message="no GPU"), check("error", message="boom", layer="x"))
    (row,) = run.stage_summaries()
    assert row.comparisons == 0
    row_cells = "| toy | w | core | 1 error, 1 skipped | 0 | 0 | 0 | – | – | – | **FAIL** |"
    assert row_cells in summary_markdown(run)
    assert "max rel. error – — FAIL" in terminal_lines(run)[1]


def test_a_traffic_row_names_its_module_only_where_it_is_not_the_layers_other_ops() -> None:
    """An elementwise-traffic row labelled ``<layer module>: its other ops`` (every traffic row
    of a layer) leaves its label out of the JSON and reads it back; any other label, the layer's
    module itself included, is written out."""
    import json

    def traffic(label: str, layer: str) -> Comparison:
        return Comparison("toy", "w", "core", layer, label, "elementwise_bytes", 8, 8, 0.0)

    flops = Comparison("toy", "w", "core", "attn.core", "attn (own work)", "flops", 10, 10, 0.0)
    rows = (traffic("attn (own work): its other ops", "attn.core"), traffic("attn (own work)", "attn.core"))
    runs = [
        record(
            check("passed", layer="attn.core", comparisons=(flops,)),
            check("passed", kind="test_traffic", layer="attn.core", comparisons=(row,)),
        )
        for row in rows
    ]
    written = [json.dumps(run.to_json()) for run in runs]
    assert "its other ops" not in written[0]
    assert '"module": "attn (own work)"' in written[1]
    for run in runs:
        assert RunRecord.from_json(run.to_json()) == run


def test_a_layer_named_like_its_module_leaves_the_module_out_and_version_3_still_reads() -> None:
    """Schema 4 writes a layer's ``module`` only where it is not the layer's own name; evidence
    of schema 3, which always wrote it, reads back to the same record."""
    from pytest_flopcheck.evidence.schema import load_evidence

    own = Comparison("toy", "w", "core", "proj", "proj", "flops", 10, 10, 0.0)
    other = Comparison("toy", "w", "core", "attn", "model.attn", "flops", 10, 10, 0.0)
    none = check("skipped", layer="conv", message="no GPU")
    run = record(
        check("passed", comparisons=(own,)), check("passed", layer="attn", comparisons=(other,)), none
    )
    run = attrs.evolve(run, selection={"models": ["toy"]})
    document = run.to_json()
    layers = document["checks"]["toy"]["w"]["core"]
    assert "module" not in layers["proj"]
    assert layers["attn"]["module"] == "model.attn"
    assert layers["conv"]["module"] is None  # no comparison: no module
    assert load_evidence(document) == run
    older = dict(document, schema_version=3)
    older["checks"] = {
        "toy": {
            "w": {
                "core": {
                    "proj": {"module": "proj", **layers["proj"]},
                    **{k: v for k, v in layers.items() if k != "proj"},
                }
            }
        }
    }
    assert load_evidence(older) == run
    del older["checks"]["toy"]["w"]["core"]["attn"]["module"]
    with pytest.raises(FileProblem, match=r"field checks\.toy\.w\.core\.attn\.module is missing"):
        load_evidence(older)  # version 3 always wrote it
