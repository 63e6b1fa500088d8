"""Analytic model of the DeepSeek-OCR-2 language decoder: prefill over a prompt, then decode steps.

Node ids and references follow transformers' ``DeepseekOcr2TextModel`` (``layers.3.mlp.experts``).
Norms, RoPE, the residual adds and the routing's top-k and softmax count no FLOPs.

``tensor`` > 1 is one rank of transformers' tensor-parallel plan for the model
(``base_model_tp_plan``, applied by ``from_pretrained(tp_plan=...)``): the embedding split by
vocabulary and its partial rows all-reduced; q, k and v split by heads (so the attention and its
KV cache are the rank's heads), o_proj by its input and its partial output all-reduced; the dense
MLP and the shared experts split by width, each down projection's output all-reduced; the router
and the routed experts whole on every rank (the plan leaves them out: each rank repeats them); the
lm_head split by vocabulary and its logits all-gathered.
"""

from __future__ import annotations

import attrs

from deepseek_models.shared.config import DECODER, DecoderConfig
from deepseek_models.shared.tensor_parallel import all_reduce, split
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


def _with(node: CostNode, extra: CostNode) -> CostNode:
    """The group ``node`` with ``extra`` after its children."""
    return regroup(node, [*node.children, extra], held_bytes=node.held_bytes)


def _layer(
    index: int, *, batch: int, tokens: int, keys: int, cfg: DecoderConfig, dtype_bytes: int, tensor: int = 1
) -> CostNode:
    """One decoder layer. Its live set is transformers' (SDPA, grouped_mm experts): the layer's
    input, held by its caller; the normed input through the attention, whose rotated queries
    stay live through ``o_proj`` (the keys and values are the cache's); then the layer's own
    cache, the residual after attention and the normed input through the MLP. The routed
    experts peak as they finish: the gathered rows and the down projection's output beside its
    product with the fp32 routing weights and that product put back in token order.
    ``tensor``: one rank of the tensor-parallel plan (the module docstring)."""
    prefix = f"layers.{index}"
    rows = batch * tokens
    heads = cfg.heads // tensor  # the layout's validation refuses a degree that does not divide them
    width = heads * cfg.head_dim
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
        heads=heads,
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
    reduce = (
        [all_reduce(f"{prefix}.self_attn.all_reduce", rows, cfg.hidden, dtype_bytes, tensor)]
        if tensor > 1
        else []
    )
    attention = group(
        f"{prefix}.self_attn",
        "attention",
        [
            proj("q_proj", cfg.hidden, width),
            proj("k_proj", cfg.hidden, width),
            proj("v_proj", cfg.hidden, width),
            core,
            proj("o_proj", width, cfg.hidden, scratch=rows * width * dtype_bytes),
            *reduce,
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
            intermediate=split(cfg.dense_intermediate, tensor),
            bias=False,
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.mlp",
        )
        if tensor > 1:
            mlp = _with(mlp, all_reduce(f"{prefix}.mlp.all_reduce", rows, cfg.hidden, dtype_bytes, tensor))
    else:
        mlp = layers.moe(
            f"{prefix}.mlp",
            tokens=rows,
            hidden=cfg.hidden,
            experts=cfg.experts,
            top_k=cfg.top_k,
            expert_intermediate=cfg.expert_intermediate,
            shared_intermediate=split(cfg.shared_intermediate, tensor),
            dtype_bytes=dtype_bytes,
            reference=f"{prefix}.mlp",
            router_dtype_bytes=4,  # transformers' DeepSeek-V2 router computes in fp32
        )
        routed = rows * cfg.top_k * cfg.hidden
        finish = 2 * routed * dtype_bytes + 2 * routed * layers.FP32_BYTES
        children = [peaking_at(n, finish) if n.id.endswith(".experts") else n for n in mlp.children]
        if tensor > 1:
            shared = f"{prefix}.mlp.shared_experts"
            reduce_shared = all_reduce(f"{shared}.all_reduce", rows, cfg.hidden, dtype_bytes, tensor)
            children = [_with(n, reduce_shared) if n.id == shared else n for n in children]
        mlp = regroup(mlp, children, held_bytes=mlp.held_bytes)
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
    batch: int,
    tokens: int,
    cfg: DecoderConfig = DECODER,
    dtype_bytes: int = 2,
    prefix: str = "",
    tensor: int = 1,
) -> CostNode:
    """One prefill of ``batch`` sequences of ``tokens`` tokens (prompt and image tokens) through
    the decoder, filling the KV cache (``cache_bytes``); the lm_head is not part of it.
    ``prefix`` is the decoder's module name in a larger model (``model.language_model``);
    ``tensor``: one rank of the tensor-parallel plan."""
    return _prefixed(_decoder(batch, tokens, tokens, cfg, dtype_bytes, "decoder_prefill", tensor), prefix)


def lm_head(rows: int, cfg: DecoderConfig = DECODER, dtype_bytes: int = 2, tensor: int = 1) -> list[CostNode]:
    """The output projection to vocabulary logits (untied) on ``rows`` rows: generation keeps
    only each sequence's last position. Under tensor parallelism (``tensor`` > 1) the rank's
    share of the vocabulary, then the all-gather of the logits (``colwise_gather_output``)."""
    vocab = split(cfg.vocab_size, tensor)
    head = layers.linear(
        "lm_head",
        "lm_head",
        rows=rows,
        in_features=cfg.hidden,
        out_features=vocab,
        bias=False,
        dtype_bytes=dtype_bytes,
        reference="lm_head",
    )
    if tensor == 1:
        return [head]
    note = "tensor parallel: every rank's share of the logits gathered"
    gather = layers.collective(
        "lm_head.all_gather", "all_gather", group=tensor, local_bytes=rows * vocab * dtype_bytes, note=note
    )
    return [head, gather]


def decoder_decode(
    batch: int,
    prompt: int,
    steps: int,
    cfg: DecoderConfig = DECODER,
    dtype_bytes: int = 2,
    prefix: str = "",
    tensor: int = 1,
) -> CostNode:
    """``steps`` decode steps after a prefill of ``prompt`` tokens: one token per sequence per
    step, step ``s`` attending to ``prompt + s`` cached keys, with the lm_head on each new token
    (``tensor``: one rank of the tensor-parallel plan).

    Built in O(1) in ``steps``: every module but the attention does the same work each step
    (``repeat``), and each attention core is one node of ``steps`` calls whose sum is an
    arithmetic series (its FLOPs and bytes are linear in the keys attended to)."""
    if steps < 1:
        raise ValueError(f"steps {steps} is not allowed: decode needs at least one step")
    first = _decoder(batch, 1, prompt + 1, cfg, dtype_bytes, "decoder_decode", tensor)
    last = _decoder(batch, 1, prompt + steps, cfg, dtype_bytes, "decoder_decode", tensor)
    head = [attrs.evolve(n, repeat=steps) for n in lm_head(batch, cfg, dtype_bytes, tensor)]
    body = _prefixed(_over_steps(first, last, steps), prefix)
    return group("", "decoder_decode", [*body.children, *head], reference="", held_bytes=body.held_bytes)


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
    batch: int, tokens: int, keys: int, cfg: DecoderConfig, dtype_bytes: int, category: str, tensor: int = 1
) -> CostNode:
    """The decoder over ``tokens`` new tokens per sequence, attending to ``keys`` keys."""
    rows = batch * tokens
    embed = [
        layers.embedding(
            "embed_tokens",
            "embedding",
            rows=rows,
            num_embeddings=split(cfg.vocab_size, tensor),
            dim=cfg.hidden,
            dtype_bytes=dtype_bytes,
            reference="embed_tokens",
        )
    ]
    if tensor > 1:  # each rank looks up the tokens in its share of the vocabulary; the rows summed
        embed.append(all_reduce("embed_tokens.all_reduce", rows, cfg.hidden, dtype_bytes, tensor))
    kwargs = {
        "batch": batch, "tokens": tokens, "keys": keys, "cfg": cfg, "dtype_bytes": dtype_bytes,
        "tensor": tensor,
    }  # fmt: skip
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
    return group("", category, [*embed, *blocks, norm], reference="", held_bytes=held)


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
