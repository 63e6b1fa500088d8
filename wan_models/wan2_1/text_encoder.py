"""Analytic model of the UMT5-XXL text encoder (stage ``text_encoder``).

Node ids follow the official ``t5.py`` (``blocks.3.attn.q``, ``blocks.3.ffn.gate``); each node
names the module of transformers' ``UMT5EncoderModel`` it corresponds to. The relative
position bias (a per-layer lookup table), the norms and the gated GELU carry no counted FLOPs.
"""

from __future__ import annotations

from pytest_flopcheck import CostNode, Metrics, Renamer, group, join, layers
from wan_models.wan2_1.config import UMT5_XXL, TextEncoderConfig
from wan_models.wan2_1.workload import Workload


def encoder_block(index: int, cfg: TextEncoderConfig, w: Workload) -> CostNode:
    prefix, ref = f"blocks.{index}", f"encoder.block.{index}"
    attn_ref = f"{ref}.layer.0.SelfAttention"
    ffn_ref = f"{ref}.layer.1.DenseReluDense"
    b, t, db, d, inner = w.batch_size, w.text_len, w.dtype_bytes, cfg.d_model, cfg.inner_dim

    hidden = b * t * d * db  # one activation of the residual stream

    def linear(name: str, category: str, reference: str, in_f: int, out_f: int, scratch: int = 0) -> CostNode:
        return layers.linear(
            join(prefix, name),
            category,
            rows=b * t,
            in_features=in_f,
            out_features=out_f,
            bias=False,
            dtype_bytes=db,
            reference=reference,
            scratch_bytes=scratch,
        )

    def norm(name: str, reference: str, input_held: bool) -> CostNode:
        return rms_norm(
            join(prefix, name), reference, rows=b * t, dim=d, dtype_bytes=db, input_held=input_held
        )

    # Live beside the calls (transformers' UMT5 in inference): the block's input, held by its
    # caller; the normed input, held by the attention's; the position bias lookup, of which the
    # fused attention reads a contiguous copy; in the feed-forward the residual after attention,
    # the tanh GELU's temporaries (x/2, x³ and its product), then the GELU and linear branches
    # and their product, the branches still held as the last linear runs on the product.
    gated = b * t * cfg.d_ff * db

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
                scratch_bytes=cfg.num_heads * t * t * db,  # the lookup the mask is a copy of
            ),
            linear("attn.o", "attention_projection", f"{attn_ref}.o", inner, d),
        ],
        reference=attn_ref,
        held_bytes=hidden,
    )
    ffn = group(
        join(prefix, "ffn"),
        "ffn",
        [
            linear("ffn.gate", "ffn", f"{ffn_ref}.wi_0", d, cfg.d_ff, scratch=3 * gated),
            linear("ffn.fc1", "ffn", f"{ffn_ref}.wi_1", d, cfg.d_ff, scratch=2 * gated),
            linear("ffn.fc2", "ffn", f"{ffn_ref}.wo", cfg.d_ff, d, scratch=hidden + 2 * gated),
        ],
        reference=ffn_ref,
        held_bytes=hidden,
    )
    children = [
        norm("norm1", f"{ref}.layer.0.layer_norm", input_held=True),
        attn,
        norm("norm2", f"{ref}.layer.1.layer_norm", input_held=False),
        ffn,
    ]
    return group(prefix, "block", children, reference=ref, held_bytes=hidden)


def rms_norm(
    node_id: str, reference: str, *, rows: int, dim: int, dtype_bytes: int, input_held: bool
) -> CostNode:
    """T5's RMS norm: the variance of an fp32 copy (the copy and its square live together), so
    at its peak the input and two fp32 copies are live; the output is written after they are
    freed. ``input_held``: the input is one a parent already holds."""
    return layers.norm(
        node_id, "norm", rows=rows, dim=dim, params=dim, dtype_bytes=dtype_bytes, reference=reference,
        fp32_copies=2, input_held=input_held,
    )  # fmt: skip


def text_encoder(w: Workload, cfg: TextEncoderConfig = UMT5_XXL) -> CostNode:
    """One encoder pass over ``batch_size`` prompts padded to ``text_len`` tokens."""
    embedding, first, norm = _parts(w, cfg)
    rename = Renamer(first, "blocks.0", "encoder.block.0")
    blocks = [first] + [rename(f"blocks.{i}", f"encoder.block.{i}") for i in range(1, cfg.num_layers)]
    # the token embeddings stay live through the encoder (its caller's input)
    held = w.batch_size * w.text_len * cfg.d_model * w.dtype_bytes
    return group("", "text_encoder", [embedding, *blocks, norm], reference="", held_bytes=held)


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
    norm = rms_norm(
        "norm", "encoder.final_layer_norm", rows=b * t, dim=cfg.d_model, dtype_bytes=db, input_held=False
    )
    return embedding, encoder_block(0, cfg, w), norm
