"""The parts both DeepSeek OCR models take from transformers' DeepSeek-OCR-2 implementation: the
language decoder, SAM (whose compressor each model sets) and the Qwen2-style vision encoder that
OCR-2 runs (v1 builds it with transformers' model and leaves it out). Checkpoint numbers, not
transformers' generic defaults."""

from __future__ import annotations

import attrs


@attrs.frozen
class DecoderConfig:
    """The shared language decoder, "DeepSeek3B-MoE-A570M": MHA (no MLA), layer 0 dense, the
    rest mixture of experts with shared experts (transformers ``DeepseekOcr2TextModel``)."""

    vocab_size: int = 129_280
    hidden: int = 1280
    layers: int = 12
    heads: int = 10
    head_dim: int = 128
    dense_intermediate: int = 6848
    dense_layers: int = 1
    experts: int = 64
    top_k: int = 6
    expert_intermediate: int = 896
    shared_experts: int = 2
    max_positions: int = 8192
    """``max_position_embeddings`` of both checkpoints' config.json (transformers' default is 2,048)."""

    @property
    def kv_elements_per_token(self) -> int:
        """KV-cache elements per cached token of one sequence (keys and values of every layer, MHA)."""
        return 2 * self.layers * self.heads * self.head_dim

    @property
    def shared_intermediate(self) -> int:
        return self.expert_intermediate * self.shared_experts


DECODER = DecoderConfig()


@attrs.frozen
class SamConfig:
    """SAM ViT-B image encoder with its neck and DeepSeek-OCR-2's compressor (896 wide)."""

    image_size: int = 1024
    patch: int = 16
    width: int = 768
    layers: int = 12
    heads: int = 12
    mlp: int = 3072
    window: int = 14
    global_layers: tuple[int, ...] = (2, 5, 8, 11)
    neck: int = 256
    compressor: tuple[int, int] = (512, 896)


@attrs.frozen
class EncoderConfig:
    """The Qwen2-style vision encoder over [SAM tokens; learned queries] (GQA)."""

    hidden: int = 896
    layers: int = 24
    heads: int = 14
    kv_heads: int = 2
    intermediate: int = 4864
    queries: tuple[tuple[int, int], ...] = ((768, 144), (1024, 256))
    """(view size, learned queries) pairs; every query table is held whatever the view."""

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


SAM = SamConfig()
ENCODER = EncoderConfig()


TINY_SAM = SamConfig(width=8, layers=2, heads=2, mlp=32, global_layers=(1,), neck=8, compressor=(8, 16))
TINY_DECODER = DecoderConfig(
    vocab_size=64, hidden=32, layers=2, heads=2, head_dim=16, dense_intermediate=48, experts=4, top_k=2,
    expert_intermediate=8, shared_experts=1,
)  # fmt: skip
"""Tiny SAM and decoder of the same architectures, for real end-to-end generations on CPU."""
