"""Analytic model of the DeepSeek-OCR-2 language decoder over a prompt (prefill).

Node ids and references follow transformers' ``DeepseekOcr2TextModel`` (``layers.3.mlp.experts``).
Norms, RoPE, the residual adds and the routing's top-k and softmax count no FLOPs.
"""

from __future__ import annotations

from deepseek_models.deepseek_ocr2.config import DECODER, DecoderConfig
from pytest_flopcheck import CostNode, group, layers
from pytest_flopcheck.tree import Renamer


def _norm(node_id: str, rows: int, cfg: DecoderConfig, dtype_bytes: int) -> CostNode:
    return layers.norm(
        node_id,
        "norm",
        rows=rows,
        dim=cfg.hidden,
        params=cfg.hidden,
        dtype_bytes=dtype_bytes,
        reference=node_id,
    )


def _layer(index: int, *, batch: int, tokens: int, cfg: DecoderConfig, dtype_bytes: int) -> CostNode:
    prefix = f"layers.{index}"
    rows = batch * tokens
    width = cfg.heads * cfg.head_dim

    def proj(name: str, in_f: int, out_f: int) -> CostNode:
        return layers.linear(
            f"{prefix}.self_attn.{name}",
            "attention_projection",
            rows=rows,
            in_features=in_f,
            out_features=out_f,
            bias=False,
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.self_attn.{name}",
        )

    attention = group(
        f"{prefix}.self_attn",
        "attention",
        [
            proj("q_proj", cfg.hidden, width),
            proj("k_proj", cfg.hidden, width),
            proj("v_proj", cfg.hidden, width),
            layers.attention_core(
                f"{prefix}.self_attn.core",
                "attention_core",
                batch=batch,
                heads=cfg.heads,
                q_len=tokens,
                kv_len=tokens,
                head_dim=cfg.head_dim,
                cache_len=tokens,
                dtype_bytes=dtype_bytes,
                reference=f"{prefix}.self_attn",
            ),
            proj("o_proj", width, cfg.hidden),
        ],
        reference=f"{prefix}.self_attn",
    )
    if index < cfg.dense_layers:
        mlp = layers.gated_mlp(
            f"{prefix}.mlp",
            "ffn",
            rows=rows,
            hidden=cfg.hidden,
            intermediate=cfg.dense_intermediate,
            bias=False,
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.mlp",
        )
    else:
        mlp = layers.moe(
            f"{prefix}.mlp",
            tokens=rows,
            hidden=cfg.hidden,
            experts=cfg.experts,
            top_k=cfg.top_k,
            expert_intermediate=cfg.expert_intermediate,
            shared_intermediate=cfg.shared_intermediate,
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.mlp",
        )
    children = [
        _norm(f"{prefix}.input_layernorm", rows, cfg, dtype_bytes),
        attention,
        _norm(f"{prefix}.post_attention_layernorm", rows, cfg, dtype_bytes),
        mlp,
    ]
    return group(prefix, "decoder_layer", children, reference=prefix)


def decoder_prefill(batch: int, tokens: int, cfg: DecoderConfig = DECODER, dtype_bytes: int = 2) -> CostNode:
    """One prefill of ``batch`` sequences of ``tokens`` tokens (prompt and image tokens) through
    the decoder, filling the KV cache (``cache_bytes``); the lm_head is not part of it."""
    rows = batch * tokens
    embed = layers.embedding(
        "embed_tokens",
        "embedding",
        rows=rows,
        num_embeddings=cfg.vocab_size,
        dim=cfg.hidden,
        dtype_bytes=dtype_bytes,
        reference="embed_tokens",
    )
    kwargs = {"batch": batch, "tokens": tokens, "cfg": cfg, "dtype_bytes": dtype_bytes}
    dense = [_layer(i, **kwargs) for i in range(cfg.dense_layers)]  # type: ignore[arg-type]
    first_moe = _layer(cfg.dense_layers, **kwargs)  # type: ignore[arg-type]
    rename = Renamer(first_moe, f"layers.{cfg.dense_layers}", f"layers.{cfg.dense_layers}")
    moe = [first_moe] + [
        rename(f"layers.{i}", f"layers.{i}") for i in range(cfg.dense_layers + 1, cfg.layers)
    ]
    norm = _norm("norm", rows, cfg, dtype_bytes)
    return group("", "decoder_prefill", [embed, *dense, *moe, norm], reference="")
