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
from pytest_flopcheck import ReferenceCall, ReferenceSkipped

IMAGE_TOKEN = 3
IMPLEMENTATION = "grouped_mm"
"""transformers' default MoE path; its ``_grouped_mm`` is counted by pytest-flopcheck's formula."""


def config(arch: Architecture = CHECKPOINT, experts: str = IMPLEMENTATION) -> Any:
    """transformers' configuration of ``arch`` (``experts``: its MoE implementation)."""
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
        DeepseekOcr2Config,
        DeepseekOcr2TextConfig,
        DeepseekOcr2VisionConfig,
    )

    d, e, sam = arch.decoder, arch.encoder, arch.sam
    text = DeepseekOcr2TextConfig(  # type: ignore[call-arg]
        vocab_size=d.vocab_size,
        hidden_size=d.hidden,
        intermediate_size=d.dense_intermediate,
        num_hidden_layers=d.layers,
        num_attention_heads=d.heads,
        num_key_value_heads=d.heads,
        head_dim=d.head_dim,
        n_routed_experts=d.experts,
        n_shared_experts=d.shared_experts,
        num_experts_per_tok=d.top_k,
        moe_intermediate_size=d.expert_intermediate,
        max_position_embeddings=d.max_positions,
        topk_method="greedy",
        mlp_layer_types=["dense"] * d.dense_layers + ["sparse"] * (d.layers - d.dense_layers),
        experts_implementation=experts,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=2,
    )
    vision = DeepseekOcr2VisionConfig(
        sam_config={
            "hidden_size": sam.width,
            "num_hidden_layers": sam.layers,
            "num_attention_heads": sam.heads,
            "mlp_dim": sam.mlp,
            "window_size": sam.window,
            "global_attn_indexes": list(sam.global_layers),
            "output_channels": sam.neck,
            "downsample_channels": list(sam.compressor),
        },
        encoder_config={
            "vocab_size": 1,
            "hidden_size": e.hidden,
            "intermediate_size": e.intermediate,
            "num_hidden_layers": e.layers,
            "num_attention_heads": e.heads,
            "num_key_value_heads": e.kv_heads,
            "rope_parameters": {"rope_type": "default", "rope_theta": 1e6},
        },
    )
    return DeepseekOcr2Config(vision_config=vision, text_config=text, image_token_id=IMAGE_TOKEN)


def build(w: Page, stage: str, device: str) -> ReferenceCall:
    """The reference of ``stage`` for the workload (the registration's ``reference``)."""
    if device != "meta":
        raise ReferenceSkipped(
            "deepseek_ocr2 is counted on meta only: at full size its MoE paths need bf16 GPU kernels "
            "(grouped_mm) or far more memory than the model (batched_mm)"
        )
    import torch
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2ForConditionalGeneration

    with torch.device("meta"):
        model = DeepseekOcr2ForConditionalGeneration(config()).to(torch.bfloat16)  # type: ignore[arg-type]
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


def language_call(
    root: Any, text: Any, lm_head: Any, w: Any, stage: str, scope: tuple[str, ...]
) -> ReferenceCall:
    """The decoder's ``prefill`` (the language model over prompt and image tokens, the lm_head on
    the last position) or ``decode`` (one step per further token over a KV cache a prefill
    filled; only the steps are counted) for ``w.pages`` sequences, on meta. ``root`` holds
    ``text`` and ``lm_head``; both DeepSeek OCR models share this decoder."""
    import torch

    with torch.device("meta"):
        prompt = torch.zeros(w.pages, w.prefill_tokens, dtype=torch.long)
        if stage == "prefill":

            def prefill() -> object:
                hidden = text(input_ids=prompt, use_cache=True).last_hidden_state
                return lm_head(hidden[:, -1:])  # generation keeps the last position's logits

            return ReferenceCall(root, prefill, scope=scope)
        cache = text(input_ids=prompt, use_cache=True).past_key_values
        token = torch.zeros(w.pages, 1, dtype=torch.long)

    def decode() -> None:
        for _ in range(w.decode_steps):
            hidden = text(input_ids=token, past_key_values=cache, use_cache=True).last_hidden_state
            lm_head(hidden)

    return ReferenceCall(root, decode, scope=scope)


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
