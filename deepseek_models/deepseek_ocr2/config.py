"""Architecture numbers of DeepSeek-OCR-2 (the checkpoint's, not transformers' generic defaults)."""

from __future__ import annotations

import attrs

from deepseek_models.shared.config import (
    DECODER,
    ENCODER,
    SAM,
    TINY_DECODER,
    TINY_SAM,
    DecoderConfig,
    EncoderConfig,
    SamConfig,
)

__all__ = [
    "CHECKPOINT",
    "DECODER",
    "ENCODER",
    "SAM",
    "TINY",
    "Architecture",
    "DecoderConfig",
    "EncoderConfig",
    "SamConfig",
]


@attrs.frozen
class Architecture:
    """The three parts together (the checkpoint's by default)."""

    sam: SamConfig = SAM
    encoder: EncoderConfig = ENCODER
    decoder: DecoderConfig = DECODER


CHECKPOINT = Architecture()
TINY = Architecture(
    sam=TINY_SAM,
    encoder=EncoderConfig(hidden=16, layers=1, heads=2, kv_heads=1, intermediate=24),
    decoder=TINY_DECODER,
)
"""Tiny configurations of the same architecture, for a real end-to-end generate() on CPU."""
