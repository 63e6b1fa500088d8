"""Analytic model of the UMT5-XXL text encoder (stage ``text_encoder``).

Node ids follow the official ``t5.py`` (``blocks.3.attn.q``, ``blocks.3.ffn.gate``); each node
names the module of transformers' ``UMT5EncoderModel`` it corresponds to. The relative
position bias (a per-layer lookup table), the norms and the gated GELU carry no counted FLOPs.
"""

from __future__ import annotations

from pytest_flopcheck import layers
from pytest_flopcheck.tree import CostNode, Metrics, Renamer, group, join
from wan_models.wan2_1.config import UMT5_XXL, TextEncoderConfig
from wan_models.wan2_1.workload import Workload


def encoder_block(index: int, cfg: TextEncoderConfig, w: Workload) -> CostNode:
    prefix, ref = f"blocks.{index}", f"encoder.block.{index}"
    attn_ref = f"{ref}.layer.0.SelfAttention"
    ffn_ref = f"{ref}.layer.1.DenseReluDense"
    b, t, db, d, inner = w.batch_size, w.text_len, w.dtype_bytes, cfg.d_model, cfg.inner_dim

    def linear(name: str, category: str, reference: str, in_f: int, out_f: int) -> CostNode:
        return layers.linear(
            join(prefix, name),
            category,
            rows=b * t,
            in_features=in_f,
            out_features=out_f,
            bias=False,
            dtype_bytes=db,
            reference=reference,
        )

    def norm(name: str, reference: str) -> CostNode:
        return layers.norm(
            join(prefix, name), "norm", rows=b * t, dim=d, params=d, dtype_bytes=db, reference=reference
        )

    attn = group(
        join(prefix, "attn"),
        "attention",
        [
            linear("attn.q", "attention_projection", f"{attn_ref}.q", d, inner),
            linear("attn.k", "attention_projection", f"{attn_ref}.k", d, inner),
            linear("attn.v", "attention_projection", f"{attn_ref}.v", d, inner),
            layers.embedding(
                join(prefix, "pos_embedding"),
                "position_bias",
                rows=t * t,
                num_embeddings=cfg.relative_attention_num_buckets,
                dim=cfg.num_heads,
                dtype_bytes=db,
                reference=f"{attn_ref}.relative_attention_bias",
            ),
            layers.attention_core(
                join(prefix, "attn.core"),
                "attention_core",
                batch=b,
                heads=cfg.num_heads,
                q_len=t,
                kv_len=t,
                head_dim=cfg.d_kv,
                dtype_bytes=db,
                reference=attn_ref,
                mask_elements=cfg.num_heads * t * t,  # the relative position bias, shared by the batch
            ),
            linear("attn.o", "attention_projection", f"{attn_ref}.o", inner, d),
        ],
        reference=attn_ref,
    )
    ffn = group(
        join(prefix, "ffn"),
        "ffn",
        [
            linear("ffn.gate", "ffn", f"{ffn_ref}.wi_0", d, cfg.d_ff),
            linear("ffn.fc1", "ffn", f"{ffn_ref}.wi_1", d, cfg.d_ff),
            linear("ffn.fc2", "ffn", f"{ffn_ref}.wo", cfg.d_ff, d),
        ],
        reference=ffn_ref,
    )
    children = [
        norm("norm1", f"{ref}.layer.0.layer_norm"),
        attn,
        norm("norm2", f"{ref}.layer.1.layer_norm"),
        ffn,
    ]
    return group(prefix, "block", children, reference=ref)


def text_encoder(w: Workload, cfg: TextEncoderConfig = UMT5_XXL) -> CostNode:
    """One encoder pass over ``batch_size`` prompts padded to ``text_len`` tokens."""
    embedding, first, norm = _parts(w, cfg)
    rename = Renamer(first, "blocks.0", "encoder.block.0")
    blocks = [first] + [rename(f"blocks.{i}", f"encoder.block.{i}") for i in range(1, cfg.num_layers)]
    return group("", "text_encoder", [embedding, *blocks, norm], reference="")


def text_encoder_totals(w: Workload, cfg: TextEncoderConfig = UMT5_XXL) -> Metrics:
    """``text_encoder(w).total`` without building every block (the sweep fast path)."""
    embedding, first, norm = _parts(w, cfg)
    return embedding.total + first.total.scaled(cfg.num_layers) + norm.total


def _parts(w: Workload, cfg: TextEncoderConfig) -> tuple[CostNode, CostNode, CostNode]:
    """The token embedding, block 0 (every block is identical) and the final norm."""
    b, t, db = w.batch_size, w.text_len, w.dtype_bytes
    embedding = layers.embedding(
        "token_embedding",
        "embedding",
        rows=b * t,
        num_embeddings=cfg.vocab_size,
        dim=cfg.d_model,
        dtype_bytes=db,
        reference="shared",
    )
    norm = layers.norm(
        "norm",
        "norm",
        rows=b * t,
        dim=cfg.d_model,
        params=cfg.d_model,
        dtype_bytes=db,
        reference="encoder.final_layer_norm",
    )
    return embedding, encoder_block(0, cfg, w), norm
