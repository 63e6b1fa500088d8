"""Serving figures of the DeepSeek OCR models: pages in, tokens out (both packages' ``Page``
workloads have ``pages``, ``new_tokens``, ``prefill_tokens`` and ``dtype_bytes``)."""

from __future__ import annotations

from typing import Any

from deepseek_models.deepseek_ocr2.config import DecoderConfig
from pytest_flopcheck import Serving


def serving(decoder: DecoderConfig) -> Serving:
    """Vision and prefill before the first token, then one decode step per token; the KV cache
    holds keys and values of every layer (MHA) for each cached token of each page."""

    def cache_bytes_per_token(w: Any) -> int:
        return decoder.kv_elements_per_token * int(w.dtype_bytes)

    return Serving(
        first_token=("vision", "prefill"),
        per_token="decode",
        new_tokens=lambda w: int(w.new_tokens),
        sequences=lambda w: int(w.pages),
        context=lambda w: int(w.prefill_tokens),
        cache_bytes_per_token=cache_bytes_per_token,
        unit="page",
        max_context=decoder.max_positions,
    )
