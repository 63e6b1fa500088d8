"""Architecture numbers of DeepSeek-OCR-2 (the checkpoint's, not transformers' generic defaults)."""

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

    @property
    def shared_intermediate(self) -> int:
        return self.expert_intermediate * self.shared_experts


DECODER = DecoderConfig()
