"""Analytic model of DeepSeek-OCR-2's vision tower for one view (SAM, neck, compressor, then the
Qwen2-style encoder over [SAM tokens; learned queries]); transformers' ``DeepseekOcr2VisionModel``
names. Windowed SAM layers pad the patch grid to whole 14×14 windows and run qkv, the attention
and proj on the padded windows; the MLP runs on the unpadded grid. The decomposed relative
positions add two products per attention (counted with the attention's own work)."""

from __future__ import annotations

import math

import attrs

from deepseek_models.deepseek_ocr2.config import ENCODER, SAM, EncoderConfig, SamConfig
from pytest_flopcheck import CostNode, group, layers
from pytest_flopcheck.tree import Renamer


def _sam_layer(index: int, view: int, cfg: SamConfig, db: int) -> CostNode:
    prefix = f"sam_encoder.layers.{index}"
    grid = view // cfg.patch
    is_global = index in cfg.global_layers
    if is_global:
        batch, side, rel_size = (
            1,
            grid,
            cfg.image_size // cfg.patch,
        )  # rel-pos tables sized for the full image
    else:
        batch, side, rel_size = math.ceil(grid / cfg.window) ** 2, cfg.window, cfg.window
    rows = batch * side * side
    head_dim = cfg.width // cfg.heads

    def linear(name: str, rows_: int, in_f: int, out_f: int, ref: str) -> CostNode:
        return layers.linear(
            f"{prefix}.{name}",
            "vision_projection",
            rows=rows_,
            in_features=in_f,
            out_features=out_f,
            bias=True,
            dtype_bytes=db,
            reference=f"{prefix}.{ref}",
        )

    attention = layers.attention_core(
        f"{prefix}.attn.core",
        "vision_attention_core",
        batch=batch,
        heads=cfg.heads,
        q_len=side * side,
        kv_len=side * side,
        head_dim=head_dim,
        dtype_bytes=db,
        reference=f"{prefix}.attn",
    )
    relative = layers.bmm(
        f"{prefix}.attn.rel_pos",
        "vision_attention_core",
        batch=2 * batch * cfg.heads * side,
        m=side,
        k=head_dim,
        n=side,
        dtype_bytes=db,
        reference=None,
    )
    tables = layers.parameter(
        f"{prefix}.attn.rel_pos",
        "vision_attention_core",
        params=2 * (2 * rel_size - 1) * head_dim,
        dtype_bytes=db,
    )
    # The attention module's own work: QKᵀ and PV, the relative-position products, and its own
    # parameters (the two relative-position tables).
    core = attrs.evolve(
        attention,
        metrics=attention.metrics + relative.metrics + tables.metrics,
        note="QKᵀ, PV and the two decomposed relative-position products; the rel-pos tables",
    )
    attn = group(
        f"{prefix}.attn",
        "vision_attention",
        [
            linear("attn.qkv", rows, cfg.width, 3 * cfg.width, "attn.qkv"),
            core,
            linear("attn.proj", rows, cfg.width, cfg.width, "attn.proj"),
        ],
        reference=f"{prefix}.attn",
    )
    pixels = grid * grid

    def norm(name: str) -> CostNode:
        return layers.norm(
            f"{prefix}.{name}",
            "norm",
            rows=pixels,
            dim=cfg.width,
            params=2 * cfg.width,
            dtype_bytes=db,
            reference=f"{prefix}.{name}",
        )

    mlp = group(
        f"{prefix}.mlp",
        "vision_mlp",
        [
            linear("mlp.lin1", pixels, cfg.width, cfg.mlp, "mlp.lin1"),
            linear("mlp.lin2", pixels, cfg.mlp, cfg.width, "mlp.lin2"),
        ],
        reference=f"{prefix}.mlp",
    )
    return group(
        prefix, "vision_layer", [norm("layer_norm1"), attn, norm("layer_norm2"), mlp], reference=prefix
    )


def _conv(
    node_id: str, c_in: int, c_out: int, kernel: int, size_in: int, size_out: int, db: int, bias: bool
) -> CostNode:
    return layers.conv(
        node_id,
        "vision_conv",
        batch=1,
        in_channels=c_in,
        out_channels=c_out,
        kernel=(kernel, kernel),
        in_spatial=(size_in, size_in),
        out_spatial=(size_out, size_out),
        bias=bias,
        dtype_bytes=db,
        reference=node_id,
    )


def sam(view: int, cfg: SamConfig = SAM, db: int = 2) -> CostNode:
    """SAM over one square view of ``view`` pixels, to ``(view / 64)²`` tokens."""
    grid = view // cfg.patch
    patch = group(
        "sam_encoder.patch_embed",
        "vision_patch_embedding",
        [_conv("sam_encoder.patch_embed.projection", 3, cfg.width, cfg.patch, view, grid, db, bias=True)],
        reference="sam_encoder.patch_embed",
    )
    pos = layers.parameter(
        "sam_encoder.pos_embed",
        "vision_patch_embedding",
        params=(cfg.image_size // cfg.patch) ** 2 * cfg.width,
        dtype_bytes=db,
        note="absolute positions for the full image, interpolated for smaller views",
    )
    blocks = [_sam_layer(i, view, cfg, db) for i in range(cfg.layers)]

    def norm2d(name: str, size: int) -> CostNode:
        return layers.norm(
            f"sam_encoder.neck.{name}",
            "norm",
            rows=size * size,
            dim=cfg.neck,
            params=2 * cfg.neck,
            dtype_bytes=db,
            reference=f"sam_encoder.neck.{name}",
        )

    neck = group(
        "sam_encoder.neck",
        "vision_neck",
        [
            _conv("sam_encoder.neck.conv1", cfg.width, cfg.neck, 1, grid, grid, db, bias=False),
            norm2d("layer_norm1", grid),
            _conv("sam_encoder.neck.conv2", cfg.neck, cfg.neck, 3, grid, grid, db, bias=False),
            norm2d("layer_norm2", grid),
        ],
        reference="sam_encoder.neck",
    )
    first, second = cfg.compressor
    compressor = group(
        "sam_encoder.proj",
        "vision_compressor",
        [
            _conv("sam_encoder.proj.conv1", cfg.neck, first, 3, grid, grid // 2, db, bias=False),
            _conv("sam_encoder.proj.conv2", first, second, 3, grid // 2, grid // 4, db, bias=False),
        ],
        reference="sam_encoder.proj",
    )
    layers_group = group("sam_encoder.layers", "vision_layers", blocks, reference="sam_encoder.layers")
    return group("sam_encoder", "sam", [patch, pos, layers_group, neck, compressor], reference="sam_encoder")


def _encoder_layer(index: int, tokens: int, cfg: EncoderConfig, db: int) -> CostNode:
    prefix = f"vision_encoder.layers.{index}"
    kv_width = cfg.kv_heads * cfg.head_dim

    def proj(name: str, in_f: int, out_f: int, bias: bool) -> CostNode:
        return layers.linear(
            f"{prefix}.self_attn.{name}",
            "vision_projection",
            rows=tokens,
            in_features=in_f,
            out_features=out_f,
            bias=bias,
            dtype_bytes=db,
            reference=f"{prefix}.self_attn.{name}",
        )

    attn = group(
        f"{prefix}.self_attn",
        "vision_attention",
        [
            proj("q_proj", cfg.hidden, cfg.hidden, True),
            proj("k_proj", cfg.hidden, kv_width, True),
            proj("v_proj", cfg.hidden, kv_width, True),
            layers.attention_core(
                f"{prefix}.self_attn.core",
                "vision_attention_core",
                batch=1,
                heads=cfg.heads,
                q_len=tokens,
                kv_len=tokens,
                head_dim=cfg.head_dim,
                kv_heads=cfg.kv_heads,
                dtype_bytes=db,
                reference=f"{prefix}.self_attn",
            ),
            proj("o_proj", cfg.hidden, cfg.hidden, False),
        ],
        reference=f"{prefix}.self_attn",
    )

    def norm(name: str) -> CostNode:
        return layers.norm(
            f"{prefix}.{name}",
            "norm",
            rows=tokens,
            dim=cfg.hidden,
            params=cfg.hidden,
            dtype_bytes=db,
            reference=f"{prefix}.{name}",
        )

    mlp = layers.gated_mlp(
        f"{prefix}.mlp",
        "vision_mlp",
        rows=tokens,
        hidden=cfg.hidden,
        intermediate=cfg.intermediate,
        bias=False,
        dtype_bytes=db,
        reference=f"{prefix}.mlp",
    )
    return group(
        prefix,
        "vision_layer",
        [norm("input_layernorm"), attn, norm("post_attention_layernorm"), mlp],
        reference=prefix,
    )


def vision(view: int, sam_cfg: SamConfig = SAM, cfg: EncoderConfig = ENCODER, db: int = 2) -> CostNode:
    """The vision tower for one view: SAM, then the encoder over its tokens and the view's learned
    queries (only the query outputs are kept)."""
    sam_tokens = (view // sam_cfg.patch // 4) ** 2
    queries = dict(cfg.queries)[view]
    tokens = sam_tokens + queries
    first = _encoder_layer(0, tokens, cfg, db)
    rename = Renamer(first, "vision_encoder.layers.0", "vision_encoder.layers.0")
    blocks = [first] + [
        rename(f"vision_encoder.layers.{i}", f"vision_encoder.layers.{i}") for i in range(1, cfg.layers)
    ]
    encoder = group(
        "vision_encoder",
        "vision_encoder",
        [
            group("vision_encoder.layers", "vision_layers", blocks, reference="vision_encoder.layers"),
            layers.norm(
                "vision_encoder.norm",
                "norm",
                rows=tokens,
                dim=cfg.hidden,
                params=cfg.hidden,
                dtype_bytes=db,
                reference="vision_encoder.norm",
            ),
        ],
        reference="vision_encoder",
    )
    tables = [
        layers.embedding(
            f"query_{size}_resolution",
            "vision_queries",
            rows=n if size == view else 0,
            num_embeddings=n,
            dim=cfg.hidden,
            dtype_bytes=db,
            reference=f"query_{size}_resolution",
        )
        for size, n in cfg.queries
    ]
    return group("", "vision", [sam(view, sam_cfg, db), encoder, *tables], reference="")
