"""The DeepSeek-OCR (v1) analytic side: no torch, modes and tiles, tokens, shared weights, and
the assembled reference's parameters against the published total."""

from __future__ import annotations

import subprocess
import sys

import pytest

from deepseek_models.deepseek_ocr.stages import STAGES, stage_tree
from deepseek_models.deepseek_ocr.workload import STANDARD_WORKLOADS, Page
from pytest_flopcheck import WorkloadError

PUBLISHED_PARAMETERS = 3_336_106_240
"""DeepSeek-OCR's own remote code instantiated on meta (DEEPSEEK_OCR_FACTS.md)."""


def test_importing_the_registration_and_building_trees_does_not_import_torch() -> None:
    code = (
        "import sys, deepseek_models.deepseek_ocr.registration as r; "
        "from deepseek_models.deepseek_ocr.stages import stage_tree, STAGES; "
        "from deepseek_models.deepseek_ocr.workload import Page; "
        "[stage_tree(Page(mode='gundam', tiles='3x3'), s) for s in STAGES]; reg = r.registration(); "
        "[g() for g in reg.generations.values()]; "
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"mode": "huge"}, "mode", "choose one of tiny, small, base, large, gundam"),
        ({"mode": "base", "tiles": "2x2"}, "tiles", "only mode 'gundam' has tiles; mode is 'base'"),
        ({"mode": "gundam"}, "tiles", "mode 'gundam' needs WIDTHxHEIGHT tiles of 640 px, 2 to 9 in all"),
        ({"mode": "gundam", "tiles": "1x1"}, "tiles", "2 to 9 in all"),
        ({"mode": "gundam", "tiles": "5x2"}, "tiles", "2 to 9 in all"),
        ({"mode": "gundam", "tiles": "ax2"}, "tiles", "2 to 9 in all"),
        ({"new_tokens": 1}, "new_tokens", "it must be an integer >= 2"),
        ({"pages": 0}, "pages", "it must be an integer >= 1"),
        ({"dtype": "fp8"}, "dtype", "choose one of fp32, bf16, fp16"),
    ],
)
def test_bad_workloads_name_the_field(values: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as info:
        Page(**values)  # type: ignore[arg-type]
    assert info.value.field == field


@pytest.mark.parametrize(
    ("mode", "tiles", "vision_tokens"),
    [("tiny", "none", 64), ("small", "none", 100), ("base", "none", 256), ("large", "none", 400)],
)
def test_image_tokens_are_the_papers_vision_tokens_plus_newlines_and_a_separator(
    mode: str, tiles: str, vision_tokens: int
) -> None:
    side = int(vision_tokens**0.5)
    assert Page(mode=mode, tiles=tiles).image_tokens == vision_tokens + side + 1


def test_gundam_tiles_form_one_mosaic_with_a_newline_per_row() -> None:
    # 2 tiles across and 3 down: 30 rows of 20 tile tokens and a newline, then the global view.
    assert Page(mode="gundam", tiles="2x3").image_tokens == 30 * 21 + 16 * 17 + 1
    assert Page(mode="gundam", tiles="3x2").image_tokens == 20 * 31 + 16 * 17 + 1


def test_pipeline_parameters_count_the_decoder_once_and_equal_the_published_total() -> None:
    w = STANDARD_WORKLOADS["gundam-long"]
    vision, prefill, decode = (stage_tree(w, stage) for stage in STAGES)
    assert prefill.total.params == decode.total.params == 2_934_734_080
    assert vision.total.params + prefill.total.params == PUBLISHED_PARAMETERS


def test_the_assembled_reference_holds_the_published_parameters() -> None:
    pytest.importorskip("transformers")
    from deepseek_models.deepseek_ocr.reference import parts

    counts = parts()
    assert sum(counts.values()) == PUBLISHED_PARAMETERS
    assert counts["projector"] == 2048 * 1280 + 1280


def test_a_batch_of_pages_repeats_each_pages_vision_calls() -> None:
    one, three = (stage_tree(Page(mode="gundam", tiles="3x3", pages=n), "vision") for n in (1, 3))
    assert three.total.flops == 3 * one.total.flops
    assert three.total.params == one.total.params
    sam = next(node for node, _ in one.runs() if node.id == "sam_model.layers.0.mlp.lin1")
    assert sam.calls == 2  # the tiles, then the global view


def test_every_standard_workload_and_mode_builds() -> None:
    workloads = [*STANDARD_WORKLOADS.values(), *(Page(mode=m) for m in ("tiny", "small", "large"))]
    for workload in workloads:
        for stage in STAGES:
            assert stage_tree(workload, stage).total.flops > 0
