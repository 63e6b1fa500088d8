"""Leaf-node builders: one function per kind of layer, shared by every model package.

Each returns a :class:`~pytest_flopcheck.analytic.tree.CostNode` for one run of the layer, with FLOPs
from :mod:`pytest_flopcheck.analytic.ops` and byte counts for the given element size. Byte counts are
first-order: ``io_bytes`` is inputs + weights + outputs read or written once (what a fused
kernel moves), ``activation_bytes`` the output.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod
from typing import Final

import attrs

from pytest_flopcheck.analytic import ops
from pytest_flopcheck.analytic.tree import CostNode, Kernel, Metrics, group

GROUP_OFFSET_BYTES = 4
"""Bytes of one group offset (int32) a grouped GEMM reads."""

FP32_BYTES = 4
"""Bytes of one fp32 element: upcast temporaries, fp32 routers and residual updates."""

LSE_BYTES = FP32_BYTES
"""Bytes of one log-sum-exp value a fused attention kernel writes per query row and head."""


def _node(
    node_id: str,
    category: str,
    *,
    flops: int,
    params: int,
    inputs: int,
    outputs: int,
    dtype_bytes: int,
    reference: str | None,
    reference_own: bool = False,
    cache: int = 0,
    note: str = "",
    reference_ops: tuple[str, ...] = (),
    kernel: Kernel | None = None,
) -> CostNode:
    weight_bytes = params * dtype_bytes
    metrics = Metrics(
        flops=flops,
        params=params,
        weight_bytes=weight_bytes,
        activation_bytes=outputs * dtype_bytes,
        io_bytes=(inputs + outputs) * dtype_bytes + weight_bytes,
        cache_bytes=cache * dtype_bytes,
    )
    return CostNode(
        node_id,
        category,
        metrics,
        (),
        1,
        reference,
        reference_own,
        note,
        reference_ops=reference_ops,
        kernel=kernel if flops else None,
    )


@attrs.frozen
class Traffic:
    """Elementwise work as an eager implementation runs it: the bytes its ops move (each op reads
    its tensor arguments and writes its outputs, a broadcast dimension counted once: the
    convention the reference measures) and how many ops (one kernel launch each on a GPU)."""

    bytes: int = 0
    ops: int = 0

    def __add__(self, other: Traffic) -> Traffic:
        return Traffic(self.bytes + other.bytes, self.ops + other.ops)

    def times(self, n: int) -> Traffic:
        return Traffic(self.bytes * n, self.ops * n)


NO_TRAFFIC: Final = Traffic()


def op(*moved: int) -> Traffic:
    """One op that reads and writes tensors of these byte sizes (arguments and outputs)."""
    return Traffic(sum(moved), 1)


def cast(elements: int, from_bytes: int, to_bytes: int) -> Traffic:
    """A dtype conversion (``.float()``, ``.to(dtype)``, ``type_as``): nothing when the dtype is
    already the target's (torch runs no op then)."""
    return NO_TRAFFIC if from_bytes == to_bytes else Traffic(elements * (from_bytes + to_bytes), 1)


def with_traffic(node: CostNode, traffic: Traffic) -> CostNode:
    """``node`` claiming ``traffic`` as its elementwise work too (``test_traffic`` checks it)."""
    metrics = attrs.evolve(
        node.metrics,
        elementwise_bytes=node.metrics.elementwise_bytes + traffic.bytes,
        elementwise_ops=node.metrics.elementwise_ops + traffic.ops,
    )
    return attrs.evolve(node, metrics=metrics)


def elementwise(
    node_id: str,
    category: str,
    *,
    traffic: Traffic,
    reference: str | None,
    reference_own: bool = False,
    note: str = "",
) -> CostNode:
    """A leaf of elementwise work only (a parameter-free norm, a block's modulation and residual
    adds as its own ops with ``reference_own``): no FLOPs, parameters or live tensors of its own
    in the memory model."""
    metrics = Metrics(elementwise_bytes=traffic.bytes, elementwise_ops=traffic.ops)
    return CostNode(node_id, category, metrics, (), 1, reference, reference_own, note)


def collective(
    node_id: str,
    kind: str,
    *,
    group: int,
    local_bytes: int,
    note: str = "",
) -> CostNode:
    """A collective one rank issues over ``group`` ranks, handing it ``local_bytes`` (an
    all-to-all's send buffer, an all-gather's shard, a reduce-scatter's whole input). It names no
    reference module: ``test_parallel`` compares collectives at the module that encloses it (its
    group), and the time model times it over the GPU-to-GPU link."""
    metrics = Metrics(collective_bytes=local_bytes, collectives=1)
    kernel = Kernel(kind, 0, 0, 0, group=group)
    return CostNode(node_id, "communication", metrics, (), 1, None, False, note, kernel=kernel)


ACTIVATIONS: Final = {
    "gelu": 1,
    "gelu_tanh": 1,
    "silu": 1,
    "relu": 1,
    "quick_gelu": 2,
    "gelu_new": 3,
    "gelu_python": 3,
    "gelu_fast": 4,
}
"""Tensors the size of its input an activation holds at its peak beside that input (its output
included), as the real modules run, each checked against them on meta (``tests/flopcheck/
test_layers.py``): one fused kernel (``torch.nn.GELU`` exact or tanh, ``SiLU``, ``ReLU``) holds
its output; transformers' ``quick_gelu`` (``x * sigmoid(1.702 x)``) holds ``1.702 x`` and its
sigmoid; ``gelu_new`` (T5's tanh GELU written out) three temporaries; ``gelu_python`` (erf written
out) three; ``gelu_fast`` four."""


def activation_bytes(kind: str, elements: int, dtype_bytes: int) -> int:
    """Bytes an activation of ``elements`` holds at its peak beside its input
    (:data:`ACTIVATIONS`); ValueError naming the kinds for an unknown one."""
    if kind not in ACTIVATIONS:
        raise ValueError(f"activation {kind!r} is not known: choose one of {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[kind] * elements * dtype_bytes


def linear(
    node_id: str,
    category: str,
    *,
    rows: int,
    in_features: int,
    out_features: int,
    bias: bool,
    dtype_bytes: int,
    reference: str | None,
    scratch_bytes: int = 0,
    activation: str | None = None,
    bias_in_matmul: bool = True,
) -> CostNode:
    """A linear layer over ``rows`` rows.

    ``scratch_bytes``: temporaries live beside its call. ``activation`` (one of
    :data:`ACTIVATIONS`): the activation applied to its output, whose temporaries and output live
    beside the call (added to the scratch). ``bias_in_matmul=False``: the implementation runs the
    layer as an ``mm`` and a separate ``add`` of the bias (a linear over a non-contiguous input,
    say), so the counted op reads no bias (the add is elementwise traffic)."""
    node = _node(
        node_id,
        category,
        flops=ops.linear_flops(rows, in_features, out_features),
        params=in_features * out_features + (out_features if bias else 0),
        inputs=rows * in_features,
        outputs=rows * out_features,
        dtype_bytes=dtype_bytes,
        reference=reference,
        kernel=Kernel("gemm", rows, out_features, in_features),
    )
    if bias and not bias_in_matmul:
        node = attrs.evolve(
            node,
            metrics=attrs.evolve(node.metrics, io_bytes=node.metrics.io_bytes - out_features * dtype_bytes),
        )
    if activation is not None:
        scratch_bytes += activation_bytes(activation, rows * out_features, dtype_bytes)
    return attrs.evolve(node, scratch_bytes=scratch_bytes) if scratch_bytes else node


def conv(
    node_id: str,
    category: str,
    *,
    batch: int,
    in_channels: int,
    out_channels: int,
    kernel: Sequence[int],
    in_spatial: Sequence[int],
    out_spatial: Sequence[int],
    bias: bool,
    dtype_bytes: int,
    reference: str | None,
    groups: int = 1,
    cache_elements: int = 0,
    note: str = "",
) -> CostNode:
    """A convolution; ``in_spatial``/``out_spatial`` are summed over every call it gets.

    Pass the spatial extents with any repeated dimension (frames, calls) folded in: FLOPs
    and bytes are linear in them.
    """
    return _node(
        node_id,
        category,
        flops=ops.conv_flops(batch, in_channels, out_channels, kernel, out_spatial, groups),
        params=out_channels * (in_channels // groups) * prod(kernel) + (out_channels if bias else 0),
        inputs=batch * in_channels * prod(in_spatial),
        outputs=batch * out_channels * prod(out_spatial),
        dtype_bytes=dtype_bytes,
        reference=reference,
        cache=cache_elements,
        note=note,
        kernel=Kernel(
            "gemm",
            batch * prod(out_spatial),
            out_channels // groups,
            in_channels // groups * prod(kernel),
            batch=groups,
        ),
    )


def attention_core(
    node_id: str,
    category: str,
    *,
    batch: int,
    heads: int,
    q_len: int,
    kv_len: int,
    head_dim: int,
    dtype_bytes: int,
    reference: str | None,
    kv_heads: int | None = None,
    v_head_dim: int | None = None,
    cache_len: int = 0,
    note: str = "",
    reference_ops: tuple[str, ...] = (),
    mask_elements: int = 0,
    scratch_bytes: int = 0,
    causal: bool = False,
) -> CostNode:
    """softmax(QKᵀ)V as one fused kernel: reads Q, K, V (and an additive mask or position bias of
    ``mask_elements``, broadcast dimensions once), writes the output and its fp32 log-sum-exp
    (``scratch_bytes``: tensors live beside the call, the bias a mask was copied from, say).

    ``kv_heads`` (default ``heads``) is the number of key/value heads (grouped-query attention:
    FLOPs follow the query heads, bytes the key/value heads); ``v_head_dim`` (default
    ``head_dim``) the value width; ``kv_len`` every key attended to, cached ones included, and
    ``cache_len`` the positions held in the KV cache after the call (its ``cache_bytes``).
    It corresponds to the attention module's own work (``reference_own``): projections are
    child modules of the reference, the two matmuls are not. ``causal``: each query attends to
    the keys before it (FLOPs still count every pair, as torch's counter does; a causal kernel
    skips the masked half, which the time model uses).
    """
    kv_h = heads if kv_heads is None else kv_heads
    v_dim = head_dim if v_head_dim is None else v_head_dim
    if kv_h < 1 or heads % kv_h:
        raise ValueError(f"kv_heads {kv_h} is not allowed: it must divide heads {heads}")
    q = batch * heads * q_len * head_dim
    kv = batch * kv_h * kv_len * (head_dim + v_dim)
    # The fused kernel also writes each query row's log-sum-exp in fp32.
    lse_elements = -(-batch * heads * q_len * LSE_BYTES // dtype_bytes)
    node = _node(
        node_id,
        category,
        flops=ops.attention_flops(batch, heads, q_len, kv_len, head_dim, v_dim),
        params=0,
        inputs=q + kv + mask_elements,
        outputs=batch * heads * q_len * v_dim + lse_elements,
        dtype_bytes=dtype_bytes,
        reference=reference,
        reference_own=reference is not None,
        cache=batch * kv_h * cache_len * (head_dim + v_dim),
        note=note,
        reference_ops=reference_ops,
        kernel=Kernel("attention", q_len, kv_len, head_dim, batch=batch * heads, causal=causal),
    )
    return attrs.evolve(node, scratch_bytes=scratch_bytes) if scratch_bytes else node


def norm(
    node_id: str,
    category: str,
    *,
    rows: int,
    dim: int,
    params: int,
    dtype_bytes: int,
    reference: str | None,
    fp32_copies: int = 0,
    input_held: bool = False,
    activation: str | None = None,
) -> CostNode:
    """A normalisation layer: no counted FLOPs, ``params`` affine parameters.

    ``fp32_copies``: a half-precision input is normalised on that many fp32 copies, live together
    at the norm's peak beside the input, the output written after they are freed (its scratch);
    ``input_held``: the input is one a parent already holds, not counted again.

    ``activation`` (one of :data:`ACTIVATIONS`): the activation applied to the norm's output
    (GroupNorm then SiLU in a ResNet block, ``x = act(norm(x))``): its temporaries live beside
    the norm's output once the input is released, or beside it too when a parent holds it."""
    node = _node(
        node_id,
        category,
        flops=0,
        params=params,
        inputs=rows * dim,
        outputs=rows * dim,
        dtype_bytes=dtype_bytes,
        reference=reference,
    )
    scratch = 0
    if fp32_copies and dtype_bytes < FP32_BYTES:
        scratch = rows * dim * (fp32_copies * FP32_BYTES - dtype_bytes * (2 if input_held else 1))
    if activation is not None:
        # After the norm: its output and the activation's temporaries, beside the input only when
        # a parent holds it (then already counted there, so the leaf's own input comes off).
        scratch += activation_bytes(activation, rows * dim, dtype_bytes) - rows * dim * dtype_bytes
    return attrs.evolve(node, scratch_bytes=scratch) if scratch else node


def embedding(
    node_id: str,
    category: str,
    *,
    rows: int,
    num_embeddings: int,
    dim: int,
    dtype_bytes: int,
    reference: str | None,
    tied: bool = False,
) -> CostNode:
    """A lookup table: no FLOPs; reads ``rows`` rows of the table.

    ``tied=True``: the table is another module's parameter (T5's ``encoder.embed_tokens`` is its
    ``shared`` embedding; an LM head tied to the input embedding): its parameters and weight bytes
    count where that module is, once, as the reference counts each parameter once."""
    table = 0 if tied else num_embeddings * dim
    return CostNode(
        node_id,
        category,
        Metrics(
            flops=0,
            params=table,
            weight_bytes=table * dtype_bytes,
            activation_bytes=rows * dim * dtype_bytes,
            io_bytes=2 * rows * dim * dtype_bytes,
        ),
        reference=reference,
        note="tied: its table is counted where the module it is tied to holds it" if tied else "",
    )


def parameter(node_id: str, category: str, *, params: int, dtype_bytes: int, note: str = "") -> CostNode:
    """Parameters held directly by a module (a modulation table, say), used elementwise."""
    return CostNode(
        node_id,
        category,
        Metrics(params=params, weight_bytes=params * dtype_bytes, io_bytes=params * dtype_bytes),
        note=note,
    )


def bmm(
    node_id: str,
    category: str,
    *,
    batch: int,
    m: int,
    k: int,
    n: int,
    dtype_bytes: int,
    reference: str | None,
    reference_own: bool = True,
    note: str = "",
    reference_ops: tuple[str, ...] = (),
) -> CostNode:
    """``batch`` products of (m×k) @ (k×n) with no weights: ``aten.bmm``, ``einsum`` and
    ``matmul`` on activations (relative-position terms, attention done by hand). By default it
    claims its module's own work, since such products are rarely modules of their own;
    ``reference_ops`` narrows that claim to some operators (``("aten.bmm",)``)."""
    return _node(
        node_id,
        category,
        flops=ops.bmm_flops(batch, m, k, n),
        params=0,
        inputs=batch * (m * k + k * n),
        outputs=batch * m * n,
        dtype_bytes=dtype_bytes,
        reference=reference,
        reference_own=reference is not None and reference_own,
        note=note,
        reference_ops=reference_ops,
        kernel=Kernel("gemm", m, n, k, batch=batch),
    )


def gated_mlp(
    prefix: str,
    category: str,
    *,
    rows: int,
    hidden: int,
    intermediate: int,
    bias: bool,
    dtype_bytes: int,
    reference: str | None,
    names: tuple[str, str, str] = ("gate_proj", "up_proj", "down_proj"),
    activation: str | None = None,
) -> CostNode:
    """A gated MLP (SwiGLU, GeGLU): gate and up projections, their elementwise product, down.
    ``names`` are the three linears' module names under ``reference``.

    ``activation`` (one of :data:`ACTIVATIONS`) models the live set as transformers' gated MLPs
    hold it (``down(act(gate(x)) * up(x))``, T5's ``wi_0``/``wi_1``/``wo``): the activation's
    temporaries beside the gate's output, then the activated gate held through the up projection
    and beside the product. Without it no temporaries are modelled."""
    gate, up, down = names
    elements = rows * intermediate

    def proj(name: str, in_f: int, out_f: int, scratch: int = 0) -> CostNode:
        return linear(
            f"{prefix}.{name}",
            category,
            rows=rows,
            in_features=in_f,
            out_features=out_f,
            bias=bias,
            dtype_bytes=dtype_bytes,
            reference=None if reference is None else f"{reference}.{name}".lstrip("."),
            scratch_bytes=scratch,
        )

    gate_scratch = 0 if activation is None else activation_bytes(activation, elements, dtype_bytes)
    up_scratch = 0 if activation is None else 2 * elements * dtype_bytes  # the activated gate, the product
    children = (
        proj(gate, hidden, intermediate, gate_scratch),
        proj(up, hidden, intermediate, up_scratch),
        proj(down, intermediate, hidden),
    )
    return group(prefix, category, children, reference=reference)


def moe(
    prefix: str,
    *,
    tokens: int,
    hidden: int,
    experts: int,
    top_k: int,
    expert_intermediate: int,
    shared_intermediate: int,
    dtype_bytes: int,
    reference: str | None,
    router: str = "gate",
    routed: str = "experts",
    shared: str = "shared_experts",
    router_dtype_bytes: int = 0,
) -> CostNode:
    """A mixture-of-experts layer: a router (a linear to ``experts`` logits), routed gated
    experts held as 3-D tensors (gate and up fused, then down), and shared experts (a gated MLP
    of width ``shared_intermediate``; 0 for none).

    Routed work is tokens × top_k rows through one expert each, whatever the routing: the
    FLOPs of transformers' ``grouped_mm`` and ``batched_mm`` paths; parameters count every expert,
    I/O only the weights of the at most ``min(experts, tokens × top_k)`` experts that get rows.
    ``router``, ``routed`` and ``shared`` are the module names under ``reference``;
    ``router_dtype_bytes`` (0: the model's) the element size the router computes in (an fp32
    router reads an upcast copy of its input and weight and writes fp32 logits).
    """

    def ref(name: str) -> str | None:
        return None if reference is None else f"{reference}.{name}".lstrip(".")

    rows = tokens * top_k
    per_expert = 3 * hidden * expert_intermediate
    expert_params = experts * per_expert
    routed_node = _node(
        f"{prefix}.{routed}",
        "moe_experts",
        flops=ops.grouped_matmul_flops(rows, hidden, 2 * expert_intermediate)
        + ops.grouped_matmul_flops(rows, expert_intermediate, hidden),
        params=expert_params,
        inputs=rows * (hidden + expert_intermediate),
        outputs=rows * (2 * expert_intermediate + hidden),
        dtype_bytes=dtype_bytes,
        reference=ref(routed),
        note="weights read: the experts the rows can reach, at most min(experts, tokens × top_k)",
        # A grouped GEMM: each expert that gets rows multiplies its share by its gate-up weights.
        kernel=Kernel(
            "gemm",
            max(1, rows // min(experts, rows)),
            2 * expert_intermediate,
            hidden,
            batch=min(experts, rows),
        ),
    )
    # A grouped GEMM reads only the experts that received rows: in decode (a few tokens) that is
    # top_k experts per token, not all of them. Routing-independent upper bound.
    # Each of the two grouped GEMMs also reads the int32 group offsets, one per expert.
    untouched = (experts - min(experts, rows)) * per_expert * dtype_bytes
    routed_node = attrs.evolve(
        routed_node,
        metrics=attrs.evolve(
            routed_node.metrics,
            io_bytes=routed_node.metrics.io_bytes - untouched + 2 * experts * GROUP_OFFSET_BYTES,
        ),
        # With fewer rows than experts the kernel reads fewer experts than its weight argument
        # holds: physical traffic, not the op-argument convention the reference counts.
        io_exact=not untouched,
    )
    router_node = linear(
        f"{prefix}.{router}",
        "moe_router",
        rows=tokens,
        in_features=hidden,
        out_features=experts,
        bias=False,
        dtype_bytes=router_dtype_bytes or dtype_bytes,
        reference=ref(router),
    )
    if router_dtype_bytes:  # the router's weights are stored at the model's dtype, computed upcast
        router_node = attrs.evolve(
            router_node,
            metrics=attrs.evolve(
                router_node.metrics,
                params=hidden * experts,
                weight_bytes=hidden * experts * dtype_bytes,
            ),
            # the upcast copy of the weights is live beside the call, all of it beyond the weights
            scratch_bytes=hidden * experts * dtype_bytes,
        )
    children = [router_node, routed_node]
    if shared_intermediate:
        children.append(
            gated_mlp(
                f"{prefix}.{shared}",
                "moe_shared_experts",
                rows=tokens,
                hidden=hidden,
                intermediate=shared_intermediate,
                bias=False,
                dtype_bytes=dtype_bytes,
                reference=ref(shared),
            )
        )
    return group(prefix, "moe", children, reference=reference)


def encoder_layer(
    prefix: str,
    kind: str,
    *,
    batch: int,
    tokens: int,
    width: int,
    heads: int,
    mlp: int,
    dtype_bytes: int,
    holds_input: bool = True,
) -> CostNode:
    """A pre-LayerNorm transformer encoder layer under transformers' CLIP names: ``layer_norm1``,
    ``self_attn`` (``q_proj``, ``k_proj``, ``v_proj``, ``out_proj``, all with bias, and
    bidirectional attention over ``tokens``), ``layer_norm2`` and ``mlp`` (``fc1``, ``fc2``).
    ``kind`` prefixes the categories (``vision`` gives ``vision_projection``, ``vision_mlp``...).

    Its live set is transformers' ``CLIPEncoderLayer``: the layer's input, held by its caller
    (``holds_input=False`` where the caller counts it, keeping every hidden state, say); the
    normed input through the attention, whose SDPA output is copied to token-major order and
    whose query, key and value stay live through ``out_proj``; the residual after attention
    and the normed input through the MLP, beside the activation's output."""
    rows = batch * tokens
    hidden = rows * width * dtype_bytes

    def proj(name: str, in_f: int, out_f: int, category: str, scratch: int = 0) -> CostNode:
        ref = f"{prefix}.{name}"
        return linear(
            ref, category, rows=rows, in_features=in_f, out_features=out_f, bias=True,
            dtype_bytes=dtype_bytes, reference=ref, scratch_bytes=scratch,
        )  # fmt: skip

    def layer_norm(name: str) -> CostNode:
        ref = f"{prefix}.{name}"
        return norm(
            ref, "norm", rows=rows, dim=width, params=2 * width, dtype_bytes=dtype_bytes, reference=ref
        )

    projection = f"{kind}_projection"
    attention = group(
        f"{prefix}.self_attn",
        f"{kind}_attention",
        [
            proj("self_attn.q_proj", width, width, projection),
            proj("self_attn.k_proj", width, width, projection),
            proj("self_attn.v_proj", width, width, projection),
            attention_core(
                f"{prefix}.self_attn.core",
                f"{kind}_attention_core",
                batch=batch,
                heads=heads,
                q_len=tokens,
                kv_len=tokens,
                head_dim=width // heads,
                dtype_bytes=dtype_bytes,
                reference=f"{prefix}.self_attn",
                scratch_bytes=hidden,
            ),
            proj("self_attn.out_proj", width, width, projection, scratch=3 * hidden),
        ],
        reference=f"{prefix}.self_attn",
        held_bytes=hidden,
    )
    feed_forward = group(
        f"{prefix}.mlp",
        f"{kind}_mlp",
        [
            proj("mlp.fc1", width, mlp, f"{kind}_mlp", scratch=rows * mlp * dtype_bytes),
            proj("mlp.fc2", mlp, width, f"{kind}_mlp", scratch=hidden),
        ],
        reference=f"{prefix}.mlp",
        held_bytes=hidden,
    )
    children = [layer_norm("layer_norm1"), attention, layer_norm("layer_norm2"), feed_forward]
    return group(prefix, f"{kind}_layer", children, reference=prefix, held_bytes=hidden if holds_input else 0)
