"""Analytic model of one Wan2.1 diffusion-transformer forward (stage ``diffusion_core``).

Node ids follow the official code (``blocks.12.self_attn.q``); each node names the module of
diffusers' ``WanTransformer3DModel`` it corresponds to (``blocks.12.attn1.to_q``).
"""

from __future__ import annotations

from math import prod

from pytest_flopcheck import CostNode, Metrics, Renamer, group, join, layers, merge_calls
from wan_models.wan2_1.config import DiTConfig
from wan_models.wan2_1.workload import Workload

KV_CACHE_NOTE = (
    "KV cache is 0: every denoising step attends over freshly computed keys and values of all "
    "video tokens (no autoregressive decoding), and the text keys/values are recomputed in each "
    "block each step by the reference implementation"
)


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
) -> CostNode:
    """A WanAttention: q on ``q_rows`` tokens, k/v on ``kv_rows`` tokens, RMSNorm on q and k
    across heads, the attention core, and the output projection (``out_scratch_bytes``: what lives
    beside its call)."""
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

    def qk_norm(name: str, rows: int) -> CostNode:
        return layers.norm(
            join(prefix, name),
            "norm",
            rows=batch * rows,
            dim=d,
            params=d,
            dtype_bytes=dtype_bytes,
            reference=f"{ref}.{name}",
        )

    core = layers.attention_core(
        join(prefix, "core"),
        f"{kind}_core",
        batch=batch,
        heads=cfg.num_heads,
        q_len=q_rows,
        kv_len=kv_rows,
        head_dim=cfg.head_dim,
        dtype_bytes=dtype_bytes,
        reference=ref,
    )
    children = [
        proj("q", "to_q", q_rows),
        proj("k", "to_k", kv_rows),
        proj("v", "to_v", kv_rows),
        qk_norm("norm_q", q_rows),
        qk_norm("norm_k", kv_rows),
        core,
        proj("o", "to_out.0", q_rows, out_scratch_bytes),
    ]
    return group(prefix, kind, children, reference=ref)


def cross_attention(prefix: str, ref: str, cfg: DiTConfig, w: Workload) -> CostNode:
    """The cross-attention over the text keys; image-to-video DiTs add an image branch: the
    same queries over the image tokens' keys and values (``add_k_proj``/``add_v_proj``, an
    RMSNorm on the keys across heads), its output added before ``to_out``."""
    b, tokens, db = w.batch_size, w.tokens, w.dtype_bytes
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
        layers.norm(
            join(base, "norm_k_img"),
            "norm",
            rows=image_rows,
            dim=cfg.dim,
            params=cfg.dim,
            dtype_bytes=db,
            reference=f"{ref}.attn2.norm_added_k",
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
    return group(
        base, "cross_attention", [*text.children[:-2], *image, image_core, out], reference=f"{ref}.attn2"
    )


def block(index: int, cfg: DiTConfig, w: Workload) -> CostNode:
    """One transformer block: self-attention, cross-attention norm, cross-attention, FFN."""
    prefix = f"blocks.{index}"
    ref = prefix
    b, tokens, db, d = w.batch_size, w.tokens, w.dtype_bytes, cfg.dim
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
        )
    ]
    if cfg.cross_attn_norm:
        children.append(
            layers.norm(
                join(prefix, "norm3"),
                "norm",
                rows=b * tokens,
                dim=d,
                params=2 * d,
                dtype_bytes=db,
                reference=f"{ref}.norm2",
            )
        )
    children += [
        cross_attention(prefix, ref, cfg, w),
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
        layers.parameter(
            join(prefix, "modulation"),
            "modulation",
            params=6 * d,
            dtype_bytes=db,
            note="shift/scale/gate table added to the time projection; elementwise",
        ),
    ]
    # While a sublayer runs, the block holds the caller's input, its residual stream and the
    # previous sublayer's output (diffusers rebinds it only when the next one returns).
    held = 3 * stream * db
    if cfg.expand_timesteps:  # the per-token shift/scale/gate table plus time projection, in fp32
        held += 6 * stream * layers.FP32_BYTES
    return group(prefix, "block", children, reference=ref, held_bytes=held)


ROPE_MAX_SEQ_LEN = 1024
"""Rows of diffusers' rotary tables (``WanRotaryPosEmbed`` buffers ``freqs_cos``, ``freqs_sin``)."""


def dit_forward(w: Workload, cfg: DiTConfig | None = None) -> CostNode:
    """The cost tree of one DiT forward for the workload's batch (one CFG branch)."""
    cfg = cfg or w.dit
    embed, first, head = _parts(w, cfg)
    rename = Renamer(first, "blocks.0", "blocks.0")
    blocks = [first] + [rename(f"blocks.{i}", f"blocks.{i}") for i in range(1, cfg.num_layers)]
    # With one timestep per token the time embedding and its six projections are per token too,
    # held through every block.
    b, db = w.batch_size, w.dtype_bytes
    held = 7 * b * w.tokens * cfg.dim * db if cfg.expand_timesteps else 0
    # Also held through every block: the inputs (latents, text embeddings, CLIP image tokens),
    # the rotary tables' buffers and their cos and sin for every token, and the text (and image)
    # embedder's output that every cross-attention reads.
    inputs = (
        b * cfg.in_channels * w.latent_frames * w.latent_height * w.latent_width
        + b * w.text_len * cfg.text_dim
    )
    if cfg.image_dim is not None:
        inputs += b * cfg.image_tokens * (cfg.image_dim + cfg.dim)
    rope = 2 * (ROPE_MAX_SEQ_LEN + w.tokens) * cfg.head_dim
    held += (inputs + rope + b * w.text_len * cfg.dim) * db
    return group(
        "", "diffusion_core", [*embed, *blocks, head], reference="", note=KV_CACHE_NOTE, held_bytes=held
    )


def dit_totals(w: Workload, cfg: DiTConfig | None = None) -> Metrics:
    """``dit_forward(w).total`` without building every block (the sweep fast path)."""
    cfg = cfg or w.dit
    embed, first, head = _parts(w, cfg)
    total = first.total.scaled(cfg.num_layers) + head.total
    for node in embed:
        total = total + node.total
    return total


def _parts(w: Workload, cfg: DiTConfig) -> tuple[list[CostNode], CostNode, CostNode]:
    """The embeddings, block 0 (every block is identical) and the head."""
    b, db, d = w.batch_size, w.dtype_bytes, cfg.dim
    f, h, wd = w.latent_frames, w.latent_height, w.latent_width
    pt, ph, pw = cfg.patch_size
    time_rows = b * w.tokens if cfg.expand_timesteps else b  # one timestep per token, or per sample
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
    if cfg.image_dim is not None:
        embed.append(_image_embedder(w, cfg))
    head = group(
        "head",
        "head",
        [
            layers.linear(
                "head.head",
                "head",
                rows=b * w.tokens,
                in_features=d,
                out_features=cfg.out_channels * prod(cfg.patch_size),
                bias=True,
                dtype_bytes=db,
                reference="proj_out",
            ),
            layers.parameter(
                "head.modulation",
                "modulation",
                params=2 * d,
                dtype_bytes=db,
                note="output shift/scale table; elementwise",
            ),
        ],
    )
    return embed, block(0, cfg, w), head


def _image_embedder(w: Workload, cfg: DiTConfig) -> CostNode:
    """``condition_embedder.image_embedder``: LayerNorm, a GELU MLP (image_dim → image_dim →
    dim) and LayerNorm over the image tokens; first-last-frame models add learned positions."""
    assert cfg.image_dim is not None
    rows, db, i = w.batch_size * cfg.image_tokens, w.dtype_bytes, cfg.image_dim
    base = "condition_embedder.image_embedder"

    def norm(name: str, dim: int) -> CostNode:
        return layers.norm(
            f"img_emb.{name}",
            "norm",
            rows=rows,
            dim=dim,
            params=2 * dim,
            dtype_bytes=db,
            reference=f"{base}.{name}",
        )

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
            [linear("ff.0", "ff.net.0.proj", i, i), linear("ff.2", "ff.net.2", i, cfg.dim)],
            reference=f"{base}.ff",
        ),
        norm("norm2", cfg.dim),
    ]
    if cfg.pos_embed_seq_len is not None:
        children.insert(
            0,
            layers.parameter(
                "img_emb.pos_embed", "image_embedding", params=cfg.pos_embed_seq_len * i, dtype_bytes=db
            ),
        )
    return group("img_emb", "image_embedding", children, reference=base)
