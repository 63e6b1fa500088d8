"""The DeepSeek-OCR-2 decoder's analytic prefill against transformers' DeepseekOcr2TextModel,
full size, on meta: every module's FLOPs and parameters exact, no coverage gap."""

from __future__ import annotations

import pytest

from deepseek_models.shared.config import DECODER
from deepseek_models.shared.decoder import decoder_prefill
from pytest_flopcheck import ReferenceCall
from pytest_flopcheck.reference.counting import count_reference, coverage_gaps

torch = pytest.importorskip("torch")
pytest.importorskip("transformers")
pytestmark = pytest.mark.reference


def reference(batch: int, tokens: int, implementation: str) -> ReferenceCall:
    """The decoder alone, from the package's own transformers configuration."""
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextModel

    from deepseek_models.deepseek_ocr2.reference import config

    with torch.device("meta"):
        model = DeepseekOcr2TextModel(config(experts=implementation).text_config).to(torch.bfloat16)
        ids = torch.zeros(batch, tokens, dtype=torch.long)
    # use_cache: prefill fills the KV cache (and transformers' packed-sequence probe, which
    # reads values, runs only without one)
    return ReferenceCall(model, lambda: model(input_ids=ids, use_cache=True))


@pytest.mark.parametrize(
    ("batch", "tokens", "implementation"), [(1, 300, "grouped_mm"), (2, 64, "batched_mm")]
)
def test_prefill_is_exact_module_by_module(batch: int, tokens: int, implementation: str) -> None:
    counts = count_reference(reference(batch, tokens, implementation), "meta")
    tree = decoder_prefill(batch, tokens)
    assert coverage_gaps(tree, counts) == []
    assert tree.total.flops == counts.total_flops
    assert tree.total.params == counts.total_params == 2_769_255_680  # without the lm_head
    for node in tree.walk():
        if node.reference is not None:
            assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), node.id
            assert node.total.params == counts.value(node.reference, node.reference_own, "params"), node.id


def test_the_kv_cache_after_prefill_grows_with_the_tokens() -> None:
    per_token = 2 * DECODER.layers * DECODER.heads * DECODER.head_dim * 2  # K and V, bf16
    assert decoder_prefill(1, 300).total.cache_bytes == 300 * per_token
    assert decoder_prefill(1, 600).total.cache_bytes == 600 * per_token


def vision_reference(view: int) -> ReferenceCall:
    """The vision tower alone, from the package's own transformers configuration."""
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2VisionModel

    from deepseek_models.deepseek_ocr2.reference import config

    with torch.device("meta"):
        model = DeepseekOcr2VisionModel(config().vision_config).to(torch.bfloat16)
        pixels = torch.empty(1, 3, view, view, dtype=torch.bfloat16)
    return ReferenceCall(model, lambda: model(pixel_values=pixels))


@pytest.mark.parametrize("view", [1024, 768])
def test_the_vision_tower_is_exact_module_by_module(view: int) -> None:
    from deepseek_models.deepseek_ocr2.vision import vision

    counts = count_reference(vision_reference(view), "meta")
    tree = vision(view)
    assert coverage_gaps(tree, counts) == []
    assert tree.total.flops == counts.total_flops
    assert tree.total.params == counts.total_params == 453_235_840
    for node in tree.walk():
        if node.reference is not None:
            assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), node.id
            assert node.total.params == counts.value(node.reference, node.reference_own, "params"), node.id


def full_model() -> object:
    """transformers' DeepseekOcr2Model with the checkpoint's dimensions, on meta."""
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2Model

    from deepseek_models.deepseek_ocr2.reference import config

    with torch.device("meta"):
        return DeepseekOcr2Model(config()).to(torch.bfloat16)


@pytest.mark.parametrize(("pages", "crops"), [(2, 3), (1, 0)])
def test_the_vision_stage_counts_global_views_and_crops_as_two_calls(pages: int, crops: int) -> None:
    from deepseek_models.deepseek_ocr2.vision import vision_stage

    model = full_model()
    with torch.device("meta"):
        global_views = torch.empty(pages, 3, 1024, 1024, dtype=torch.bfloat16)
        local = torch.empty(pages * crops, 3, 768, 768, dtype=torch.bfloat16) if crops else None
    call = ReferenceCall(
        model,
        lambda: model.get_image_features(global_views, local, [crops] * pages if crops else None),  # type: ignore[attr-defined]
        scope=("vision_tower", "multi_modal_projector", "view_separator"),
    )
    counts = count_reference(call, "meta")
    tree = vision_stage(pages, crops)
    assert coverage_gaps(tree, counts) == []
    assert tree.total.flops == counts.total_flops
    assert tree.total.params == counts.total_params == 453_235_840 + 896 * 1280 + 1280 + 1280
    for node in tree.walk():
        if node.reference:
            assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), node.id
            assert node.total.params == counts.value(node.reference, node.reference_own, "params"), node.id
    layer = tree.find("vision_tower.sam_encoder.layers.0.attn.qkv")
    assert layer.calls == (2 if crops else 1)


def generation_model() -> object:
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ForConditionalGeneration

    from deepseek_models.deepseek_ocr2.reference import config

    with torch.device("meta"):
        return DeepseekOcr2ForConditionalGeneration(config()).to(torch.bfloat16)


def test_decode_steps_are_exact_module_by_module_and_built_in_constant_time() -> None:
    import time

    from deepseek_models.shared.decoder import decoder_decode

    batch, prompt, steps = 2, 300, 8
    model = generation_model()
    text = model.model.language_model  # type: ignore[attr-defined]
    with torch.device("meta"):
        cache = text(input_ids=torch.zeros(batch, prompt, dtype=torch.long), use_cache=True).past_key_values
        token = torch.zeros(batch, 1, dtype=torch.long)

    def run() -> None:
        for _ in range(steps):
            hidden = text(input_ids=token, past_key_values=cache, use_cache=True).last_hidden_state
            model.lm_head(hidden)  # type: ignore[attr-defined]

    counts = count_reference(ReferenceCall(model, run, scope=("model.language_model", "lm_head")), "meta")
    tree = decoder_decode(batch, prompt, steps, prefix="model.language_model")
    assert coverage_gaps(tree, counts) == []
    assert tree.total.flops == counts.total_flops
    assert tree.total.params == counts.total_params == 2_769_255_680 + 1280 * 129_280
    for node in tree.walk():
        if node.reference:
            assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), node.id
            assert node.total.params == counts.value(node.reference, node.reference_own, "params"), node.id
    core = tree.find("model.language_model.layers.0.self_attn.core")
    assert core.calls == steps
    assert core.total.cache_bytes == batch * 10 * (prompt + steps) * 256 * 2  # K and V, bf16
    start = time.perf_counter()
    decoder_decode(batch, prompt, 4096)
    assert time.perf_counter() - start < 0.5  # the same tree whatever the number of steps
