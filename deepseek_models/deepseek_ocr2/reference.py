"""Reference implementations: transformers' native DeepSeek-OCR-2 built from the checkpoint's
dimensions (transformers' config defaults are generic), on meta. The only module of the package
that imports torch or transformers, lazily.

The full forward cannot run on meta (``get_placeholder_mask`` reads values), so each stage calls
what it covers: ``get_image_features`` for the views, the language model and the lm_head on the
last position for the prefill, and for decode one step per new token over the KV cache a prefill
filled (the prefill is done while building, so only the steps are counted).
"""

from __future__ import annotations

from typing import Any

from deepseek_models.deepseek_ocr2.config import CHECKPOINT, TINY, Architecture
from deepseek_models.deepseek_ocr2.workload import Page
from deepseek_models.shared.reference import IMAGE_TOKEN, IMPLEMENTATION, language_call, tensor_parallel
from deepseek_models.shared.reference import config as shared_config
from pytest_flopcheck import ReferenceCall, ReferenceSkipped

__all__ = ["IMAGE_TOKEN", "IMPLEMENTATION", "build", "config", "tiny_generate"]


def config(arch: Architecture = CHECKPOINT, experts: str = IMPLEMENTATION) -> Any:
    """transformers' configuration of ``arch`` (``experts``: its MoE implementation)."""
    return shared_config(arch.sam, arch.decoder, arch.encoder, experts)


def build(w: Page, stage: str, device: str, tensor: int = 1) -> ReferenceCall:
    """The reference of ``stage`` for the workload (the registration's ``reference``);
    ``tensor``: split by transformers' tensor-parallel plan over that many ranks of the process
    group initialised (the parallel reference)."""
    if device != "meta":
        raise ReferenceSkipped(
            "deepseek_ocr2 is counted on meta only: at full size its MoE paths need bf16 GPU kernels "
            "(grouped_mm) or far more memory than the model (batched_mm)"
        )
    import torch
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ForConditionalGeneration

    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration(config()).to(torch.bfloat16)  # type: ignore[arg-type]
        model = tensor_parallel(model, tensor)
        if stage == "vision":
            inner = model.model
            views = torch.empty(w.pages, 3, 1024, 1024, dtype=torch.bfloat16)
            crops = torch.empty(w.pages * w.crops, 3, 768, 768, dtype=torch.bfloat16) if w.crops else None
            per_page = [w.crops] * w.pages if w.crops else None
            return ReferenceCall(
                inner,
                lambda: inner.get_image_features(views, crops, per_page),
                scope=("vision_tower", "multi_modal_projector", "view_separator"),
            )
        return language_call(
            model, model.model.language_model, model.lm_head, w, stage, ("model.language_model", "lm_head")
        )


def tiny_generate(w: Page) -> ReferenceCall:
    import torch
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ForConditionalGeneration

    torch.manual_seed(0)
    model = DeepseekOcr2ForConditionalGeneration(config(TINY))
    model.eval()  # type: ignore[no-untyped-call]
    text = [1] + [5] * (w.prompt_tokens - 1)
    ids = torch.tensor([text + [IMAGE_TOKEN] * w.image_tokens] * w.pages)
    views = torch.randn(w.pages, 3, 1024, 1024)
    extra: dict[str, Any] = {}
    if w.crops:
        extra = {
            "pixel_values_local": torch.randn(w.pages * w.crops, 3, 768, 768),
            "num_local_patches": [w.crops] * w.pages,
        }

    def run() -> object:
        return model.generate(
            input_ids=ids,
            pixel_values=views,
            max_new_tokens=w.new_tokens,
            min_new_tokens=w.new_tokens,
            do_sample=False,
            **extra,
        )

    return ReferenceCall(model, run)
