"""What both DeepSeek OCR references build on: transformers' native DeepSeek-OCR-2
implementation, its configuration from checkpoint numbers, and the shared decoder's prefill and
decode calls on meta. torch and transformers are imported lazily, inside the functions.
"""

from __future__ import annotations

from typing import Any

from deepseek_models.shared.config import ENCODER, DecoderConfig, EncoderConfig, SamConfig
from pytest_flopcheck import ReferenceCall

IMAGE_TOKEN = 3
IMPLEMENTATION = "grouped_mm"
"""transformers' default MoE path; its ``_grouped_mm`` is counted by pytest-flopcheck's formula."""


def config(
    sam: SamConfig, decoder: DecoderConfig, encoder: EncoderConfig = ENCODER, experts: str = IMPLEMENTATION
) -> Any:
    """transformers' DeepSeek-OCR-2 configuration of these parts (``experts``: its MoE
    implementation)."""
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import (
        DeepseekOcr2Config,
        DeepseekOcr2TextConfig,
        DeepseekOcr2VisionConfig,
    )

    d, e = decoder, encoder
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


def tensor_parallel(model: Any, tensor: int) -> Any:
    """``model`` (a ``DeepseekOcr2ForConditionalGeneration``) split by transformers' own
    tensor-parallel plan over ``tensor`` ranks of the process group initialised (a fake one
    while counting): ``maybe_distribute_model``, as ``from_pretrained(distributed_config=
    DistributedConfig(tp_size=tensor))`` applies it before loading weights."""
    if tensor == 1:
        return model
    from transformers.distributed.configuration_utils import DistributedConfig
    from transformers.distributed.utils import initialize_distributed_mesh

    distributed = DistributedConfig(tp_size=tensor)
    _, mesh = initialize_distributed_mesh(distributed)
    return type(model).maybe_distribute_model(model, distributed, mesh)


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
