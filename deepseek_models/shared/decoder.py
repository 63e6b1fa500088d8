"""Analytic model of the DeepSeek-OCR-2 language decoder: prefill over a prompt, then decode steps.

Node ids and references follow transformers' ``DeepseekOcr2TextModel`` (``layers.3.mlp.experts``).
Norms, RoPE, the residual adds and the routing's top-k and softmax count no FLOPs.
"""

from __future__ import annotations

import attrs

from deepseek_models.shared.config import DECODER, DecoderConfig
from pytest_flopcheck import (
    CostNode,
    Metrics,
    Renamer,
    closed_form_calls,
    group,
    join,
    layers,
    peaking_at,
    regroup,
)


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


def _layer(
    index: int, *, batch: int, tokens: int, keys: int, cfg: DecoderConfig, dtype_bytes: int
) -> CostNode:
    """One decoder layer. Its live set is transformers' (SDPA, grouped_mm experts): the layer's
    input, held by its caller; the normed input through the attention, whose rotated queries
    stay live through ``o_proj`` (the keys and values are the cache's); then the layer's own
    cache, the residual after attention and the normed input through the MLP. The routed
    experts peak as they finish: the gathered rows and the down projection's output beside its
    product with the fp32 routing weights and that product put back in token order."""
    prefix = f"layers.{index}"
    rows = batch * tokens
    width = cfg.heads * cfg.head_dim
    hidden = rows * cfg.hidden * dtype_bytes

    def proj(name: str, in_f: int, out_f: int, scratch: int = 0) -> CostNode:
        return layers.linear(
            f"{prefix}.self_attn.{name}",
            "attention_projection",
            rows=rows,
            in_features=in_f,
            out_features=out_f,
            bias=False,
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.self_attn.{name}",
            scratch_bytes=scratch,
        )

    core = layers.attention_core(
        f"{prefix}.self_attn.core",
        "attention_core",
        batch=batch,
        heads=cfg.heads,
        q_len=tokens,
        kv_len=keys,
        head_dim=cfg.head_dim,
        cache_len=keys,
        dtype_bytes=dtype_bytes,
        reference=f"{prefix}.self_attn",
    )
    # The cache update joins keys, then values, to the cache: in a prefill the new cache and the
    # rotated keys and raw values it copies are live together, in a decode step the old keys
    # beside the new ones (the peak of the attention, just before the kernel runs).
    own = core.metrics.cache_bytes
    written = core.metrics.io_bytes - rows * width * dtype_bytes - own  # its output and log-sum-exp
    core = attrs.evolve(core, scratch_bytes=own // 2 if keys > tokens else max(own - written, 0))
    attention = group(
        f"{prefix}.self_attn",
        "attention",
        [
            proj("q_proj", cfg.hidden, width),
            proj("k_proj", cfg.hidden, width),
            proj("v_proj", cfg.hidden, width),
            core,
            proj("o_proj", width, cfg.hidden, scratch=rows * width * dtype_bytes),
        ],
        reference=f"{prefix}.self_attn",
        held_bytes=hidden,
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
            router_dtype_bytes=4,  # transformers' DeepSeek-V2 router computes in fp32
        )
        routed = rows * cfg.top_k * cfg.hidden
        finish = 2 * routed * dtype_bytes + 2 * routed * layers.FP32_BYTES
        children = [peaking_at(n, finish) if n.id.endswith(".experts") else n for n in mlp.children]
        mlp = attrs.evolve(mlp, children=tuple(children))
    own_cache = attention.total.cache_bytes
    mlp = attrs.evolve(mlp, held_bytes=mlp.held_bytes + own_cache + 2 * hidden)
    children = [
        _norm(f"{prefix}.input_layernorm", rows, cfg, dtype_bytes),
        attention,
        _norm(f"{prefix}.post_attention_layernorm", rows, cfg, dtype_bytes),
        mlp,
    ]
    return group(prefix, "decoder_layer", children, reference=prefix, held_bytes=hidden)


def decoder_prefill(
    batch: int, tokens: int, cfg: DecoderConfig = DECODER, dtype_bytes: int = 2, prefix: str = ""
) -> CostNode:
    """One prefill of ``batch`` sequences of ``tokens`` tokens (prompt and image tokens) through
    the decoder, filling the KV cache (``cache_bytes``); the lm_head is not part of it.
    ``prefix`` is the decoder's module name in a larger model (``model.language_model``)."""
    return _prefixed(_decoder(batch, tokens, tokens, cfg, dtype_bytes, "decoder_prefill"), prefix)


def lm_head(rows: int, cfg: DecoderConfig = DECODER, dtype_bytes: int = 2) -> CostNode:
    """The output projection to vocabulary logits (untied) on ``rows`` rows: generation keeps
    only each sequence's last position."""
    return layers.linear(
        "lm_head",
        "lm_head",
        rows=rows,
        in_features=cfg.hidden,
        out_features=cfg.vocab_size,
        bias=False,
        dtype_bytes=dtype_bytes,
        reference="lm_head",
    )


def decoder_decode(
    batch: int, prompt: int, steps: int, cfg: DecoderConfig = DECODER, dtype_bytes: int = 2, prefix: str = ""
) -> CostNode:
    """``steps`` decode steps after a prefill of ``prompt`` tokens: one token per sequence per
    step, step ``s`` attending to ``prompt + s`` cached keys, with the lm_head on each new token.

    Built in O(1) in ``steps``: every module but the attention does the same work each step
    (``repeat``), and each attention core is one node of ``steps`` calls whose sum is an
    arithmetic series (its FLOPs and bytes are linear in the keys attended to)."""
    if steps < 1:
        raise ValueError(f"steps {steps} is not allowed: decode needs at least one step")
    first = _decoder(batch, 1, prompt + 1, cfg, dtype_bytes, "decoder_decode")
    last = _decoder(batch, 1, prompt + steps, cfg, dtype_bytes, "decoder_decode")
    head = attrs.evolve(lm_head(batch, cfg, dtype_bytes), repeat=steps)
    body = _prefixed(_over_steps(first, last, steps), prefix)
    return group("", "decoder_decode", [*body.children, head], reference="", held_bytes=body.held_bytes)


def _over_steps(first: CostNode, last: CostNode, steps: int) -> CostNode:
    """The first and the last step's trees as one tree over every step."""
    if first.children:
        children = [_over_steps(a, b, steps) for a, b in zip(first.children, last.children, strict=True)]
        return regroup(first, children, held_bytes=last.held_bytes)  # the last step holds the most
    if first.metrics == last.metrics:
        return attrs.evolve(last, repeat=steps)
    a, b = first.metrics, last.metrics
    total = Metrics(
        flops=(a.flops + b.flops) * steps // 2,
        params=a.params,
        weight_bytes=a.weight_bytes,
        activation_bytes=(a.activation_bytes + b.activation_bytes) * steps // 2,
        io_bytes=(a.io_bytes + b.io_bytes) * steps // 2,
        cache_bytes=b.cache_bytes,
        elementwise_bytes=(a.elementwise_bytes + b.elementwise_bytes) * steps // 2,
        elementwise_ops=(a.elementwise_ops + b.elementwise_ops) * steps // 2,
    )
    node = closed_form_calls(
        first.id,
        first.category,
        total=total,
        calls=steps,
        largest=b,
        reference=first.reference,
        reference_own=first.reference_own,
        note=f"{steps} decode steps over a growing KV cache",
        kernel=last.kernel,
    )
    return attrs.evolve(node, scratch_bytes=last.scratch_bytes)


def _decoder(
    batch: int, tokens: int, keys: int, cfg: DecoderConfig, dtype_bytes: int, category: str
) -> CostNode:
    """The decoder over ``tokens`` new tokens per sequence, attending to ``keys`` keys."""
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
    kwargs = {"batch": batch, "tokens": tokens, "keys": keys, "cfg": cfg, "dtype_bytes": dtype_bytes}
    dense = [_layer(i, **kwargs) for i in range(cfg.dense_layers)]  # type: ignore[arg-type]
    first_moe = _layer(cfg.dense_layers, **kwargs)  # type: ignore[arg-type]
    rename = Renamer(first_moe, f"layers.{cfg.dense_layers}", f"layers.{cfg.dense_layers}")
    moe = [first_moe] + [
        rename(f"layers.{i}", f"layers.{i}") for i in range(cfg.dense_layers + 1, cfg.layers)
    ]
    norm = _norm("norm", rows, cfg, dtype_bytes)
    # Each layer runs beside the other layers' KV caches: in a prefill those of the layers
    # before it (the cache fills layer by layer), in a decode step all of them. The inputs'
    # embeddings and the rotary cos and sin stay live through the decoder.
    blocks = [*dense, *moe]
    caches = [block.total.cache_bytes for block in blocks]
    total = sum(caches)
    blocks = [
        attrs.evolve(
            block,
            held_bytes=block.held_bytes + (total - own if category == "decoder_decode" else sum(caches[:i])),
        )
        for i, (block, own) in enumerate(zip(blocks, caches, strict=True))
    ]
    held = rows * cfg.hidden * dtype_bytes + 2 * rows * cfg.head_dim * dtype_bytes
    return group("", category, [embed, *blocks, norm], reference="", held_bytes=held)


def _prefixed(tree: CostNode, prefix: str) -> CostNode:
    """The tree with every id and reference under ``prefix`` (the root keeps id "")."""
    if not prefix:
        return tree
    return attrs.evolve(tree, children=tuple(_rename(child, prefix) for child in tree.children))


def _rename(node: CostNode, prefix: str) -> CostNode:
    return attrs.evolve(
        node,
        id=join(prefix, node.id),
        reference=None if node.reference is None else join(prefix, node.reference),
        children=tuple(_rename(child, prefix) for child in node.children),
    )
