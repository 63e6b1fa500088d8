"""Serving figures of the DeepSeek OCR models: pages in, tokens out (both packages' ``Page``
workloads are :class:`~deepseek_models.shared.workload.PageBatch`)."""

from __future__ import annotations

from deepseek_models.shared.config import DecoderConfig
from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import Serving, Stage


def serving(decoder: DecoderConfig) -> Serving:
    """Vision and prefill before the first token, then one decode step per token; the KV cache
    holds keys and values of every layer (MHA) for each cached token of each page."""

    def new_tokens(w: PageBatch) -> int:
        return w.new_tokens

    def sequences(w: PageBatch) -> int:
        return w.pages

    def context(w: PageBatch) -> int:
        return w.prefill_tokens

    def cache_bytes_per_token(w: PageBatch) -> int:
        return decoder.kv_elements_per_token * w.dtype_bytes

    return Serving(
        first_token=("vision", "prefill"),
        per_token="decode",
        new_tokens=new_tokens,
        sequences=sequences,
        context=context,
        cache_bytes_per_token=cache_bytes_per_token,
        unit="page",
        max_context=decoder.max_positions,
    )


DECODER_STAGES = (
    Stage(
        "prefill",
        0.0,
        "the decoder over prompt and image tokens, logits of the last position",
        memory_tolerance=0.01,
    ),
    Stage(
        "decode",
        0.0,
        "one step per further new token over the KV cache",
        weights_of="prefill",
        memory_tolerance=0.01,
    ),
)
"""The shared decoder's stages, after each model's ``vision``: exact FLOPs, and a memory peak
within 5% (weights dominate it; the part beyond them is not modelled yet)."""
