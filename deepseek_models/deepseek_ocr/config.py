"""Architecture numbers of DeepSeek-OCR (v1), the checkpoint's.

SAM is DeepSeek-OCR-2's with v1's compressor widths (256 → 512 → 1024); the second encoder is
CLIP-L over SAM's feature map; the decoder is the one DeepSeek-OCR-2 shares.
"""

from __future__ import annotations

import attrs

from deepseek_models.shared.config import DECODER, TINY_DECODER, TINY_SAM, DecoderConfig, SamConfig

SAM = SamConfig(compressor=(512, 1024))


@attrs.frozen
class ClipConfig:
    """CLIP-L/14 (224 px) encoder layers over SAM features; its patch convolution is held but
    not run, and it has no final LayerNorm (v1's ``VitModel``)."""

    width: int = 1024
    layers: int = 24
    heads: int = 16
    mlp: int = 4096
    image_size: int = 224
    patch: int = 14

    @property
    def grid(self) -> int:
        """Side of the position table (16 for 224 px at patch 14), interpolated to each view."""
        return self.image_size // self.patch

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


CLIP = ClipConfig()


@attrs.frozen
class Architecture:
    """SAM, CLIP-L, the projector over [CLIP ; SAM] features, and the shared decoder."""

    sam: SamConfig = SAM
    clip: ClipConfig = CLIP
    decoder: DecoderConfig = DECODER

    @property
    def projector_in(self) -> int:
        return self.clip.width + self.sam.compressor[1]


CHECKPOINT = Architecture()
TINY = Architecture(
    sam=TINY_SAM,
    clip=ClipConfig(width=16, layers=2, heads=2, mlp=24, image_size=28, patch=14),
    decoder=TINY_DECODER,
)
"""Tiny configurations of the same architecture, for a real end-to-end generation on CPU (SAM's
output width equals CLIP's, as in the checkpoint)."""
