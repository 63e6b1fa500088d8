"""Analytic model of one Wan2.1 diffusion-transformer forward (stage ``diffusion_core``).

Node ids follow the official code (``blocks.12.self_attn.q``); each node names the module of
diffusers' ``WanTransformer3DModel`` it corresponds to (``blocks.12.attn1.to_q``).
"""

from __future__ import annotations

from math import prod

import attrs

from pytest_flopcheck import SINGLE, CostNode, Layout, Metrics, Renamer, group, join, layers, merge_calls
from wan_models.wan2_1.config import DiTConfig
from wan_models.wan2_1.workload import Workload

KV_CACHE_NOTE = (
    "KV cache is 0: every denoising step attends over freshly computed keys and values of all "
    "video tokens (no autoregressive decoding), and the text keys/values are recomputed in each "
    "block each step by the reference implementation"
)


FP32 = layers.FP32_BYTES


def layer_norm_traffic(
    rows: int, dim: int, affine: bool, dtype_bytes: int, input_bytes: int = FP32
) -> layers.Traffic:
    """diffusers' ``FP32LayerNorm``: its input upcast to fp32 (nothing when the caller already
    did, as the blocks do), the affine weight and bias cast to fp32, one ``native_layer_norm``
    writing the output and each row's fp32 mean and inverse deviation, the output cast back."""
    elements = rows * dim
    traffic = layers.op(FP32 * elements, FP32 * elements, FP32 * rows, FP32 * rows)
    if affine:
        upcast = layers.cast(dim, dtype_bytes, FP32)
        traffic = upcast + upcast + traffic + layers.Traffic(2 * FP32 * dim, 0)  # it reads both
    return layers.cast(elements, input_bytes, FP32) + traffic + layers.cast(elements, FP32, input_bytes)


def rms_norm_traffic(rows: int, dim: int, dtype_bytes: int) -> layers.Traffic:
    """``torch.nn.RMSNorm`` as torch's composite runs it (on CUDA a recent torch may fuse it into
    one kernel: then this is an upper bound): upcast, square, mean, add eps in place, rsqrt,
    scale, weight, cast back."""
    e = rows * dim
    return (
        layers.cast(e, dtype_bytes, FP32)
        + layers.op(FP32 * e, FP32 * e)  # pow
        + layers.op(FP32 * e, FP32 * rows)  # mean
        + layers.op(FP32 * rows, FP32 * rows)  # add_
        + layers.op(FP32 * rows, FP32 * rows)  # rsqrt
        + layers.op(FP32 * e, FP32 * rows, FP32 * e)  # x * rsqrt
        + layers.op(FP32 * e, dim * dtype_bytes, FP32 * e)  # * weight
        + layers.cast(e, FP32, dtype_bytes)
    )


def rope_traffic(rows: int, tokens: int, dim: int, head_dim: int, dtype_bytes: int) -> layers.Traffic:
    """diffusers' ``apply_rotary_emb`` on one of q, k (``rows`` × ``dim``): an output like it,
    the even and odd halves times cos and sin (tables of ``tokens`` × ``head_dim / 2``, shared by
    the batch), their difference and sum, each copied into the output's strided halves."""
    half, table = rows * dim // 2 * dtype_bytes, tokens * head_dim // 2 * dtype_bytes
    products = layers.op(half, table, half).times(4)
    combine = layers.op(half, half, half).times(2)
    into = layers.op(half, half, half).times(2)  # copy_: the destination and source read, written
    return layers.op(2 * half, 2 * half) + products + combine + into


def exchange_traffic(
    batch: int, elements: int, dtype_bytes: int, lse: int, ulysses: int, ring: int
) -> layers.Traffic:
    """The copies diffusers' context-parallel attention makes around its collectives, on one rank
    (``elements``: those of its q, k, v or output; ``lse``: the bytes of one fp32 log-sum-exp of
    the core).

    - Ulysses alone (``TemplatedUlyssesAttention``): q, k and v permuted before their
      all-to-alls, the output before and after its own; q, k and v after theirs too when the
      batch is above 1 (for one sample the permute keeps them contiguous).
    - With ring attention too (the unified path, ``_all_to_all_dim_exchange``): the same before
      the q, k, v exchange; the output's permute goes through a reshape that copies and then
      views (``_unsafe_view``, which the convention counts as an op), and one copy after.
    - Ring (``TemplatedRingAttention`` on ``_native_flash``): k and v joined into one buffer
      before the all-gather; at each of the R steps q, k, v and the output transposed for the
      flash kernel (and its log-sum-exp), the output cast to fp32; at each later step the
      running output and log-sum-exp merged in fp32 (eight ops); the result cast back."""
    local = elements * dtype_bytes
    copy = layers.op(local, local)
    traffic = layers.NO_TRAFFIC
    if ulysses > 1:
        after = copy.times(3) if batch > 1 else layers.NO_TRAFFIC
        if ring > 1:
            traffic = copy.times(3) + after + copy + copy + copy
        else:
            traffic = copy.times(3) + after + copy.times(2)
    if ring > 1:
        wide = elements * layers.FP32_BYTES  # the output in fp32
        step = copy.times(4) + layers.op(lse, lse) + layers.cast(elements, dtype_bytes, layers.FP32_BYTES)
        merge = (
            layers.op(lse, lse, lse)  # lse - prev_lse
            + layers.op(lse, lse)  # sigmoid
            + layers.op(wide, wide, wide)  # prev_out - out
            + layers.op(lse, wide, wide)  # sigmoid * (prev_out - out)
            + layers.op(wide, wide, wide)  # prev_out - that
            + layers.op(lse, lse, lse)  # prev_lse - lse
            + layers.op(lse, lse, lse)  # logsigmoid: its output and buffer
            + layers.op(lse, lse, lse)  # prev_lse - that
        )
        joined = layers.op(2 * local, 2 * local)  # cat of k and v
        back = layers.cast(elements, layers.FP32_BYTES, dtype_bytes)
        traffic += joined + step.times(ring) + merge.times(ring - 1) + back
    return traffic


FLASH_RNG_BYTES = 16 + 8
"""``_scaled_dot_product_flash_attention``'s philox seed and offset (``uint64[2]`` and ``uint64[]``)."""


def ring_scratch(elements: int, dtype_bytes: int, lse: int, ulysses: int) -> int:
    """What lives beside ring attention's core at its peak on one rank, beyond the core's own
    q, output and log-sum-exp (``elements``: those of one rank's q, k, v or output; ``lse``: the
    bytes of one fp32 log-sum-exp), as diffusers' ``TemplatedRingAttention.forward`` holds it
    while it merges a later step:

    - the attention's input and the processor's q, k and v (and the exchanged q, k and v under
      Ulysses);
    - four fp32 outputs: the running one, this step's upcast, ``prev_out - out`` and the sigmoid's
      product with it;
    - the first step's output and log-sum-exp saved for the backward (``_save_ctx``, kept even
      without grad) with the flash kernel's RNG seed and offset, the running log-sum-exp and the
      sigmoid of the difference.

    The gathered k and v are the core's inputs, counted there."""
    local = elements * dtype_bytes
    processor = (4 if ulysses == 1 else 7) * local
    live = processor + 4 * elements * layers.FP32_BYTES + local + 3 * lse + FLASH_RNG_BYTES
    return live - (2 * local + lse)


def gelu_traffic(elements: int, dtype_bytes: int) -> layers.Traffic:
    return layers.op(elements * dtype_bytes, elements * dtype_bytes)


def attention(
    prefix: str,
    ref: str,
    kind: str,
    cfg: DiTConfig,
    *,
    batch: int,
    q_rows: int,
    kv_rows: int,
    dtype_bytes: int,
    out_scratch_bytes: int = 0,
    layout: Layout = SINGLE,
) -> CostNode:
    """A WanAttention: q on ``q_rows`` tokens, k/v on ``kv_rows`` tokens, RMSNorm on q and k
    across heads, the attention core, and the output projection (``out_scratch_bytes``: what lives
    beside its call). Under a sequence-parallel ``layout`` the rows are one rank's share; a
    self-attention's q, k, v and output go through Ulysses all-to-alls (heads split by U, the
    sequence gathered over U) and ring attention all-gathers k and v over R, so its core sees
    H/U heads, L/R queries and all L keys."""
    d = cfg.dim

    def proj(name: str, ref_name: str, rows: int, scratch: int = 0) -> CostNode:
        return layers.linear(
            join(prefix, name),
            f"{kind}_projection",
            rows=batch * rows,
            in_features=d,
            out_features=d,
            bias=True,
            dtype_bytes=dtype_bytes,
            reference=f"{ref}.{ref_name}",
            scratch_bytes=scratch,
        )

    def qk_norm(name: str, rows: int, beside: int) -> CostNode:
        """An RMSNorm across heads at its peak (``torch.nn.RMSNorm``'s composite): the input's
        fp32 copy, it times the row's rsqrt and that times the weight, with the rsqrt's fp32
        column, beside ``beside`` (what the processor holds then: its input and the other
        projections)."""
        node = layers.norm(
            join(prefix, name),
            "norm",
            rows=batch * rows,
            dim=d,
            params=d,
            dtype_bytes=dtype_bytes,
            reference=f"{ref}.{name}",
            fp32_copies=3,
        )
        node = attrs.evolve(
            node, scratch_bytes=node.scratch_bytes + beside + batch * rows * layers.FP32_BYTES
        )
        return layers.with_traffic(node, rms_norm_traffic(batch * rows, d, dtype_bytes))

    sequence = kind == "self_attention" and layout.sequence > 1
    u, r = (layout.ulysses, layout.ring) if sequence else (1, 1)
    core = layers.attention_core(
        join(prefix, "core"),
        f"{kind}_core",
        batch=batch,
        heads=cfg.num_heads // u,
        q_len=q_rows * u,
        kv_len=kv_rows * u * r,
        head_dim=cfg.head_dim,
        dtype_bytes=dtype_bytes,
        reference=ref,
    )
    local = batch * q_rows * d * dtype_bytes  # one rank's q (k, v, output alike)
    kv_local = batch * kv_rows * d * dtype_bytes
    if kind == "self_attention":  # rotary embeddings on q and k: the processor's own ops
        rope = rope_traffic(batch * q_rows, q_rows, d, cfg.head_dim, dtype_bytes)
        lse = batch * (cfg.num_heads // u) * q_rows * u * layers.FP32_BYTES
        copies = exchange_traffic(batch, batch * q_rows * d, dtype_bytes, lse, u, r)
        core = layers.with_traffic(core, rope.times(2) + copies)
        if r > 1:
            core = attrs.evolve(core, scratch_bytes=ring_scratch(batch * q_rows * d, dtype_bytes, lse, u))
    exchange = []
    if u > 1:
        exchange += [
            layers.collective(join(prefix, f"all_to_all.{t}"), "all_to_all", group=u, local_bytes=local)
            for t in ("q", "k", "v")
        ]
    if r > 1:
        exchange.append(
            layers.collective(join(prefix, "ring.kv"), "all_gather", group=r, local_bytes=2 * local)
        )
    after = (
        [layers.collective(join(prefix, "all_to_all.out"), "all_to_all", group=u, local_bytes=local)]
        if u > 1
        else []
    )
    children = [
        proj("q", "to_q", q_rows),
        proj("k", "to_k", kv_rows),
        proj("v", "to_v", kv_rows),
        # The processor projects q, k and v, then normalises q and k in turn.
        qk_norm("norm_q", q_rows, local + 2 * kv_local),
        qk_norm("norm_k", kv_rows, 2 * local + kv_local),
        *exchange,
        core,
        *after,
        proj("o", "to_out.0", q_rows, out_scratch_bytes),
    ]
    return group(prefix, kind, children, reference=ref)


def cross_attention(
    prefix: str, ref: str, cfg: DiTConfig, w: Workload, tokens: int | None = None
) -> CostNode:
    """The cross-attention over the text keys; image-to-video DiTs add an image branch: the
    same queries over the image tokens' keys and values (``add_k_proj``/``add_v_proj``, an
    RMSNorm on the keys across heads), its output added before ``to_out``."""
    b, db = w.batch_size, w.dtype_bytes
    tokens = w.tokens if tokens is None else tokens  # one rank's share under sequence parallelism
    text = attention(
        join(prefix, "cross_attn"),
        f"{ref}.attn2",
        "cross_attention",
        cfg,
        batch=b,
        q_rows=tokens,
        kv_rows=w.text_len,
        dtype_bytes=db,
    )
    if not cfg.image_tokens:
        return text
    image_rows = b * cfg.image_tokens
    base = join(prefix, "cross_attn")

    def added(name: str, ref_name: str) -> CostNode:
        return layers.linear(
            join(base, name),
            "cross_attention_projection",
            rows=image_rows,
            in_features=cfg.dim,
            out_features=cfg.dim,
            bias=True,
            dtype_bytes=db,
            reference=f"{ref}.attn2.{ref_name}",
        )

    image = [
        added("k_img", "add_k_proj"),
        added("v_img", "add_v_proj"),
        layers.with_traffic(
            layers.norm(
                join(base, "norm_k_img"),
                "norm",
                rows=image_rows,
                dim=cfg.dim,
                params=cfg.dim,
                dtype_bytes=db,
                reference=f"{ref}.attn2.norm_added_k",
            ),
            rms_norm_traffic(image_rows, cfg.dim, db),
        ),
    ]
    # Both attention cores are the module's own work: one leaf claims both (text and image keys).
    out = text.children[-1]
    image_core = merge_calls(
        join(base, "core"),
        "cross_attention_core",
        [
            layers.attention_core(
                join(base, "core"),
                "cross_attention_core",
                batch=b,
                heads=cfg.num_heads,
                q_len=tokens,
                kv_len=kv_len,
                head_dim=cfg.head_dim,
                dtype_bytes=db,
                reference=f"{ref}.attn2",
            )
            for kv_len in (cfg.image_tokens, w.text_len)
        ],
        reference=f"{ref}.attn2",
        reference_own=True,
        note="the text core and the image core: the same queries over text keys, then over image keys",
    )
    # The processor adds the image branch's output to the text branch's.
    image_core = layers.with_traffic(image_core, layers.op(3 * b * tokens * cfg.dim * db))
    return group(
        base, "cross_attention", [*text.children[:-2], *image, image_core, out], reference=f"{ref}.attn2"
    )


def block(index: int, cfg: DiTConfig, w: Workload, layout: Layout = SINGLE) -> CostNode:
    """One transformer block: self-attention, cross-attention norm, cross-attention, FFN (under
    a sequence-parallel ``layout``, one rank's share of the tokens)."""
    prefix = f"blocks.{index}"
    ref = prefix
    b, tokens, db, d = w.batch_size, w.tokens // layout.sequence, w.dtype_bytes, cfg.dim
    stream = b * tokens * d  # one token-by-width tensor
    # After the output projection diffusers adds the gated output to the residual in fp32: the
    # upcast residual, the gated output and their sum live beside the projection's output.
    children = [
        attention(
            join(prefix, "self_attn"),
            f"{ref}.attn1",
            "self_attention",
            cfg,
            batch=b,
            q_rows=tokens,
            kv_rows=tokens,
            dtype_bytes=db,
            out_scratch_bytes=3 * stream * layers.FP32_BYTES,
            layout=layout,
        )
    ]
    children.insert(
        0,
        layers.elementwise(
            join(prefix, "norm1"),
            "norm",
            traffic=layer_norm_traffic(b * tokens, d, False, db),
            reference=f"{ref}.norm1",
        ),
    )
    if cfg.cross_attn_norm:
        children.append(
            layers.with_traffic(
                layers.norm(
                    join(prefix, "norm3"),
                    "norm",
                    rows=b * tokens,
                    dim=d,
                    params=2 * d,
                    dtype_bytes=db,
                    reference=f"{ref}.norm2",
                ),
                layer_norm_traffic(b * tokens, d, True, db),
            )
        )
    children += [
        cross_attention(prefix, ref, cfg, w, tokens),
        layers.elementwise(
            join(prefix, "norm2"),
            "norm",
            traffic=layer_norm_traffic(b * tokens, d, False, db),
            reference=f"{ref}.norm3",
        ),
        group(
            join(prefix, "ffn"),
            "ffn",
            [
                layers.linear(
                    join(prefix, "ffn.0"),
                    "ffn",
                    rows=b * tokens,
                    in_features=d,
                    out_features=cfg.ffn_dim,
                    bias=True,
                    dtype_bytes=db,
                    reference=f"{ref}.ffn.net.0.proj",
                    scratch_bytes=b * tokens * cfg.ffn_dim * db,  # the GELU output beside its input
                ),
                layers.elementwise(
                    join(prefix, "ffn.1"),
                    "activation",
                    traffic=gelu_traffic(b * tokens * cfg.ffn_dim, db),
                    reference=f"{ref}.ffn.net.0",
                    reference_own=True,
                ),
                layers.linear(
                    join(prefix, "ffn.2"),
                    "ffn",
                    rows=b * tokens,
                    in_features=cfg.ffn_dim,
                    out_features=d,
                    bias=True,
                    dtype_bytes=db,
                    reference=f"{ref}.ffn.net.2",
                ),
            ],
            reference=f"{ref}.ffn",
        ),
        layers.with_traffic(
            attrs.evolve(
                layers.parameter(
                    join(prefix, "modulation"),
                    "modulation",
                    params=6 * d,
                    dtype_bytes=db,
                    note="shift/scale/gate table added to the time projection; the block's own "
                    "elementwise work: modulation, gating and residual adds in fp32",
                ),
                reference=ref,
                reference_own=True,
            ),
            block_traffic(cfg, w, tokens),
        ),
    ]
    # While a sublayer runs the block holds the caller's input; after the self-attention also
    # its residual stream and the previous sublayer's output (diffusers rebinds ``attn_output``
    # only when the next one returns).
    after = 2 * stream * db
    children = [
        child
        if child.id.endswith(("norm1", "self_attn"))
        else attrs.evolve(child, held_bytes=child.held_bytes + after)
        for child in children
    ]
    held = stream * db
    # The shift/scale/gate table plus the time projection, in fp32: per token with one
    # timestep per token, else per sample.
    held += 6 * (stream if cfg.expand_timesteps else b * d) * layers.FP32_BYTES
    return group(prefix, "block", children, reference=ref, held_bytes=held)


ROPE_MAX_SEQ_LEN = 1024
"""Rows of diffusers' rotary tables (``WanRotaryPosEmbed`` buffers ``freqs_cos``, ``freqs_sin``)."""


def block_traffic(cfg: DiTConfig, w: Workload, tokens: int | None = None) -> layers.Traffic:
    """A ``WanTransformerBlock``'s own ops (diffusers): the shift/scale/gate table added to the
    time projection in fp32, then around each sublayer the residual stream upcast to fp32, the
    norm's output modulated (``* (1 + scale) + shift``) and cast back, and the sublayer's output
    gated into the residual in fp32 (the cross-attention's added as is)."""
    b, db, d = w.batch_size, w.dtype_bytes, cfg.dim
    e = b * (w.tokens if tokens is None else tokens) * d
    m = e if cfg.expand_timesteps else b * d  # one modulation vector: per token, or per sample
    table = layers.cast(6 * m, db, FP32) + layers.op(6 * d * db, 6 * m * FP32, 6 * m * FP32)
    up, down = layers.cast(e, db, FP32), layers.cast(e, FP32, db)
    modulate = (
        up
        + layers.op(FP32 * m, FP32 * m)  # 1 + scale
        + layers.op(FP32 * e, FP32 * m, FP32 * e)  # * (1 + scale)
        + layers.op(FP32 * e, FP32 * m, FP32 * e)  # + shift
        + down
    )
    gated_attention = up + layers.op(e * db, FP32 * m, FP32 * e) + layers.op(3 * FP32 * e) + down
    cross = up + down + layers.op(3 * e * db)  # norm2(x.float()).type_as(x), then x + attention
    gated_ffn = up + up + layers.op(FP32 * e, FP32 * m, FP32 * e) + layers.op(3 * FP32 * e) + down
    return table + modulate + gated_attention + cross + modulate + gated_ffn


def dit_forward(w: Workload, cfg: DiTConfig | None = None, layout: Layout = SINGLE) -> CostNode:
    """The cost tree of one DiT forward for the workload's batch (one CFG branch); under a
    sequence-parallel ``layout``, one rank's: the embeddings on every rank, the blocks and the
    output projection on its share of the tokens, the output gathered (diffusers' ``_cp_plan``
    for ``WanTransformer3DModel``, the official code's ``usp_dit_forward`` alike)."""
    cfg = cfg or w.dit
    embed, first, head = _parts(w, cfg, layout)
    rename = Renamer(first, "blocks.0", "blocks.0")
    blocks = [first] + [rename(f"blocks.{i}", f"blocks.{i}") for i in range(1, cfg.num_layers)]
    if layout.sequence > 1:  # the first block's input is a chunk of every token's embedding
        others = w.batch_size * (w.tokens - w.tokens // layout.sequence) * cfg.dim * w.dtype_bytes
        blocks[0] = attrs.evolve(first, held_bytes=first.held_bytes + others)
    # The time embedding and its six projections, held through every block: per token with one
    # timestep per token.
    b, db = w.batch_size, w.dtype_bytes
    held = 7 * b * (w.tokens // layout.sequence if cfg.expand_timesteps else 1) * cfg.dim * db
    # Also held through every block: the inputs (latents, text embeddings, CLIP image tokens,
    # the fp32 timestep: one per token, whole on every rank, with one timestep per token), the
    # rotary tables' buffers and their cos and sin for every token, and the text (and image)
    # embedder's output that every cross-attention reads: for image tokens the image embedder's
    # output stays bound beside its copy in the keys' concatenation.
    inputs = (
        b * cfg.in_channels * w.latent_frames * w.latent_height * w.latent_width
        + b * w.text_len * cfg.text_dim
    )
    if cfg.image_dim is not None:
        inputs += b * cfg.image_tokens * (cfg.image_dim + 2 * cfg.dim)
    rope = 2 * (ROPE_MAX_SEQ_LEN + w.tokens) * cfg.head_dim
    held += (inputs + rope + b * w.text_len * cfg.dim) * db
    held += b * (w.tokens if cfg.expand_timesteps else 1) * layers.FP32_BYTES
    parts = [*embed, *blocks, head]
    if layout.cfg > 1:
        parts.append(cfg_exchange(w, cfg, layout))
    return group("", "diffusion_core", parts, reference="", note=KV_CACHE_NOTE, held_bytes=held)


def cfg_exchange(w: Workload, cfg: DiTConfig, layout: Layout) -> CostNode:
    """CFG parallel's exchange after each forward: the rank's branch's prediction (the whole
    latent, gathered over the sequence group first) all-gathered over the ``cfg`` group, so that
    every rank combines both branches (xDiT's ``get_cfg_group().all_gather(noise_pred,
    separate_tensors=True)``). No module of the reference implements it: not checked."""
    latent = w.batch_size * cfg.out_channels * w.latent_frames * w.latent_height * w.latent_width
    return layers.collective(
        "cfg_exchange",
        "all_gather",
        group=layout.cfg,
        local_bytes=latent * w.dtype_bytes,
        note="CFG parallel: this branch's prediction gathered with the other's (xDiT), not checked",
    )


def dit_totals(w: Workload, cfg: DiTConfig | None = None) -> Metrics:
    """``dit_forward(w).total`` without building every block (the sweep fast path)."""
    cfg = cfg or w.dit
    embed, first, head = _parts(w, cfg)
    total = first.total.scaled(cfg.num_layers) + head.total
    for node in embed:
        total = total + node.total
    return total


def _parts(w: Workload, cfg: DiTConfig, layout: Layout = SINGLE) -> tuple[list[CostNode], CostNode, CostNode]:
    """The embeddings, block 0 (every block is identical) and the head."""
    b, db, d = w.batch_size, w.dtype_bytes, cfg.dim
    local = w.tokens // layout.sequence
    f, h, wd = w.latent_frames, w.latent_height, w.latent_width
    pt, ph, pw = cfg.patch_size
    time_rows = b * local if cfg.expand_timesteps else b  # one timestep per token (split), or per sample
    embed = [
        layers.conv(
            "patch_embedding",
            "patch_embedding",
            batch=b,
            in_channels=cfg.in_channels,
            out_channels=d,
            kernel=cfg.patch_size,
            in_spatial=(f, h, wd),
            out_spatial=(f // pt, h // ph, wd // pw),
            bias=True,
            dtype_bytes=db,
            reference="patch_embedding",
        ),
        group(
            "time_embedding",
            "time_embedding",
            [
                layers.linear(
                    "time_embedding.0",
                    "time_embedding",
                    rows=time_rows,
                    in_features=cfg.freq_dim,
                    out_features=d,
                    bias=True,
                    dtype_bytes=db,
                    reference="condition_embedder.time_embedder.linear_1",
                ),
                layers.linear(
                    "time_embedding.2",
                    "time_embedding",
                    rows=time_rows,
                    in_features=d,
                    out_features=d,
                    bias=True,
                    dtype_bytes=db,
                    reference="condition_embedder.time_embedder.linear_2",
                ),
            ],
            reference="condition_embedder.time_embedder",
        ),
        layers.linear(
            "time_projection",
            "time_embedding",
            rows=time_rows,
            in_features=d,
            out_features=6 * d,
            bias=True,
            dtype_bytes=db,
            reference="condition_embedder.time_proj",
        ),
        group(
            "text_embedding",
            "text_embedding",
            [
                layers.linear(
                    "text_embedding.0",
                    "text_embedding",
                    rows=b * w.text_len,
                    in_features=cfg.text_dim,
                    out_features=d,
                    bias=True,
                    dtype_bytes=db,
                    reference="condition_embedder.text_embedder.linear_1",
                ),
                layers.linear(
                    "text_embedding.2",
                    "text_embedding",
                    rows=b * w.text_len,
                    in_features=d,
                    out_features=d,
                    bias=True,
                    dtype_bytes=db,
                    reference="condition_embedder.text_embedder.linear_2",
                ),
            ],
            reference="condition_embedder.text_embedder",
        ),
    ]
    text_rows = b * w.text_len
    hw_dim = 2 * (cfg.head_dim // 6)
    grid = (f // pt, h // ph, wd // pw)
    tables = grid[0] * (cfg.head_dim - 2 * hw_dim) + (grid[1] + grid[2]) * hw_dim
    embed += [
        layers.elementwise(
            "rope",
            "rope",
            # cos and sin: the frame, height and width tables (broadcast over the grid) joined
            traffic=layers.op(tables * db, prod(grid) * cfg.head_dim * db).times(2),
            reference="rope",
        ),
        layers.elementwise(
            "time_embedding.sinusoid",
            "time_embedding",
            traffic=timestep_traffic(time_rows, cfg),
            reference="condition_embedder.timesteps_proj",
        ),
        layers.elementwise(
            "time_embedding.cast",
            "time_embedding",
            traffic=layers.cast(time_rows * cfg.freq_dim, FP32, db),
            reference="condition_embedder",
            reference_own=True,
        ),
        layers.elementwise(
            "time_embedding.1",
            "activation",
            traffic=gelu_traffic(time_rows * d, db),  # SiLU: one read, one write
            reference="condition_embedder.time_embedder.act",
        ),
        layers.elementwise(
            "time_projection.silu",
            "activation",
            traffic=gelu_traffic(time_rows * d, db),
            reference="condition_embedder.act_fn",
        ),
        layers.elementwise(
            "text_embedding.1",
            "activation",
            traffic=gelu_traffic(text_rows * d, db),
            reference="condition_embedder.text_embedder.act_1",
        ),
    ]
    if cfg.image_dim is not None:
        embed.append(_image_embedder(w, cfg))
    out_dim = cfg.out_channels * prod(cfg.patch_size)
    project = layers.linear(
        "head.head",
        "head",
        rows=b * local,
        in_features=d,
        out_features=out_dim,
        bias=True,
        dtype_bytes=db,
        reference="proj_out",
    )
    if layout.sequence > 1:  # the output gathered in proj_out's context-parallel output hook
        gather = layers.collective(
            "head.gather", "all_gather", group=layout.sequence, local_bytes=b * local * out_dim * db
        )
        parts = [project, gather]
        if b > 1:  # gathered along the batch, then joined along the tokens (a view for one sample)
            joined = b * local * layout.sequence * out_dim * db
            parts.append(
                layers.elementwise("head.join", "head", traffic=layers.op(joined, joined), reference=None)
            )
        project = group("head.proj_out", "head", parts, reference="proj_out")
    head = group(
        "head",
        "head",
        [
            project,
            layers.elementwise(
                "head.norm",
                "norm",
                traffic=layer_norm_traffic(b * local, d, False, db),
                reference="norm_out",
            ),
            layers.with_traffic(
                attrs.evolve(
                    layers.parameter(
                        "head.modulation",
                        "modulation",
                        params=2 * d,
                        dtype_bytes=db,
                        note="output shift/scale table; the model's own elementwise work: the patch "
                        "tokens made contiguous, the output modulation, the unpatchify copy",
                    ),
                    reference="",
                    reference_own=True,
                ),
                model_traffic(cfg, w, local),
            ),
        ],
    )
    return embed, block(0, cfg, w, layout), head


def model_traffic(cfg: DiTConfig, w: Workload, local: int | None = None) -> layers.Traffic:
    """``WanTransformer3DModel``'s own ops: the patch embedding's tokens made contiguous, the
    image tokens joined before the text ones, the output shift/scale table added to the time
    embedding, the final norm's input upcast and its output modulated and cast back, and the
    unpatchified output copied (a clone and a reshape the counter sees as a copy)."""
    b, db, d = w.batch_size, w.dtype_bytes, cfg.dim
    e = b * w.tokens * d
    out = b * w.tokens * cfg.out_channels * prod(cfg.patch_size)
    traffic = layers.op(e * db, e * db)  # before the split: every rank
    e = e if local is None else b * local * d  # the output modulation: one rank's tokens
    m = e if cfg.expand_timesteps else b * d
    if cfg.image_tokens:
        image, text = b * cfg.image_tokens * d * db, b * w.text_len * d * db
        traffic += layers.op(image, text, image + text)
    traffic += (
        layers.op(2 * d * db, m * db, 2 * m * db)
        + layers.cast(e, db, FP32)
        + layers.op(m * db, m * db)  # 1 + scale
        + layers.op(FP32 * e, m * db, FP32 * e)
        + layers.op(FP32 * e, m * db, FP32 * e)
        + layers.cast(e, FP32, db)
        + layers.op(out * db, out * db).times(2)
    )
    return traffic


def timestep_traffic(steps: int, cfg: DiTConfig) -> layers.Traffic:
    """diffusers' ``get_timestep_embedding`` for ``steps`` timesteps (fp32): the frequencies
    (arange, scale, divide, exp), their outer product with the timesteps, sine, cosine, joined,
    then swapped to cosine first."""
    h = cfg.freq_dim // 2
    t = steps * h * FP32
    return (
        layers.op(h * FP32)
        + layers.op(h * FP32, h * FP32).times(3)
        + layers.op(steps * FP32, h * FP32, t)
        + layers.op(t, t).times(3)
        + layers.op(t, t, 2 * t).times(2)
    )


def _image_embedder(w: Workload, cfg: DiTConfig) -> CostNode:
    """``condition_embedder.image_embedder``: LayerNorm, a GELU MLP (image_dim → image_dim →
    dim) and LayerNorm over the image tokens; first-last-frame models add learned positions."""
    assert cfg.image_dim is not None
    rows, db, i = w.batch_size * cfg.image_tokens, w.dtype_bytes, cfg.image_dim
    base = "condition_embedder.image_embedder"

    def norm(name: str, dim: int) -> CostNode:
        node = layers.norm(
            f"img_emb.{name}",
            "norm",
            rows=rows,
            dim=dim,
            params=2 * dim,
            dtype_bytes=db,
            reference=f"{base}.{name}",
        )
        return layers.with_traffic(node, layer_norm_traffic(rows, dim, True, db, input_bytes=db))

    def linear(name: str, ref: str, in_f: int, out_f: int) -> CostNode:
        return layers.linear(
            f"img_emb.{name}",
            "image_embedding",
            rows=rows,
            in_features=in_f,
            out_features=out_f,
            bias=True,
            dtype_bytes=db,
            reference=f"{base}.{ref}",
        )

    children = [
        norm("norm1", i),
        group(
            "img_emb.ff",
            "image_embedding",
            [
                linear("ff.0", "ff.net.0.proj", i, i),
                layers.elementwise(
                    "img_emb.ff.1",
                    "activation",
                    traffic=gelu_traffic(rows * i, db),
                    reference=f"{base}.ff.net.0",
                    reference_own=True,
                ),
                linear("ff.2", "ff.net.2", i, cfg.dim),
            ],
            reference=f"{base}.ff",
        ),
        norm("norm2", cfg.dim),
    ]
    if cfg.pos_embed_seq_len is not None:
        positions = layers.parameter(
            "img_emb.pos_embed", "image_embedding", params=cfg.pos_embed_seq_len * i, dtype_bytes=db
        )
        # Added to the image tokens: the embedder's own op.
        added = layers.op(rows * i * db, cfg.pos_embed_seq_len * i * db, rows * i * db)
        positions = attrs.evolve(positions, reference=base, reference_own=True)
        children.insert(0, layers.with_traffic(positions, added))
    return group("img_emb", "image_embedding", children, reference=base)
