"""Analytic model of SAM ViT-B with its neck and compressor (transformers'
``DeepseekOcr2SamVisionEncoder``), which both DeepSeek OCR models run over every view.

Windowed layers pad the patch grid to whole 14×14 windows and run qkv, the attention and proj on
the padded windows; the MLP runs on the unpadded grid. The decomposed relative positions add two
products per attention, counted with the attention's own work.
"""

from __future__ import annotations

import math

import attrs

from deepseek_models.shared.config import SAM, SamConfig
from pytest_flopcheck import CostNode, group, join, layers


def _sam_layer(base: str, index: int, view: int, batch: int, cfg: SamConfig, db: int) -> CostNode:
    prefix = f"{base}.layers.{index}"
    grid = view // cfg.patch
    if index in cfg.global_layers:
        windows, side, rel_size = batch, grid, cfg.image_size // cfg.patch  # tables sized for the full image
    else:
        windows, side, rel_size = batch * math.ceil(grid / cfg.window) ** 2, cfg.window, cfg.window
    rows = windows * side * side
    pixels = batch * grid * grid
    head_dim = cfg.width // cfg.heads

    def linear(name: str, rows_: int, in_f: int, out_f: int, scratch: int = 0) -> CostNode:
        return layers.linear(
            f"{prefix}.{name}",
            "vision_projection",
            rows=rows_,
            in_features=in_f,
            out_features=out_f,
            bias=True,
            dtype_bytes=db,
            reference=f"{prefix}.{name}",
            scratch_bytes=scratch,
        )

    # Live beside the calls (transformers' SDPA SAM layer): the layer's input (the residual) and
    # the attention's input, held by their callers; qkv's output, and its copy when several
    # windows make the head split a copy; the relative-position sum, of which the mask is a
    # reshaped copy (the peak, made before the fused kernel runs); all of them still held as proj
    # runs; then the residual after attention and the normed input through the MLP.
    qkv = rows * 3 * cfg.width * db
    split = qkv if windows > 1 else 0
    mask = windows * cfg.heads * (side * side) ** 2 * db
    written = windows * cfg.heads * side * side * (head_dim * db + layers.LSE_BYTES)

    attention = layers.attention_core(
        f"{prefix}.attn.core",
        "vision_attention_core",
        batch=windows,
        heads=cfg.heads,
        q_len=side * side,
        kv_len=side * side,
        head_dim=head_dim,
        dtype_bytes=db,
        reference=f"{prefix}.attn",
        mask_elements=windows * cfg.heads * (side * side) ** 2,  # the relative-position bias, materialised
    )
    # Each product is one bmm over the grid side: (side, windows·heads·side, head_dim) times the
    # gathered table (side, head_dim, side).
    relative = layers.bmm(
        f"{prefix}.attn.rel_pos",
        "vision_attention_core",
        batch=side,
        m=windows * cfg.heads * side,
        k=head_dim,
        n=side,
        dtype_bytes=db,
        reference=None,
    ).metrics.scaled(2)
    tables = layers.parameter(
        f"{prefix}.attn.rel_pos",
        "vision_attention_core",
        params=2 * (2 * rel_size - 1) * head_dim,
        dtype_bytes=db,
    )
    # The attention module's own work: QKᵀ and PV, the relative-position products, and its own
    # parameters (the two relative-position tables).
    # The tables' bytes are read by gathers, not by a counted op: no I/O of the core's.
    own = attention.metrics + relative + tables.metrics
    core = attrs.evolve(
        attention,
        metrics=attrs.evolve(own, io_bytes=own.io_bytes - tables.metrics.weight_bytes),
        note="QKᵀ, PV and the two decomposed relative-position products; the rel-pos tables",
        # its I/O adds the products' and the kernel's, never live at once; the peak is the mask's copy
        scratch_bytes=split + max(mask - written - relative.io_bytes, 0),
    )
    attn = group(
        f"{prefix}.attn",
        "vision_attention",
        [
            linear("attn.qkv", rows, cfg.width, 3 * cfg.width),
            core,
            linear("attn.proj", rows, cfg.width, cfg.width, scratch=mask + qkv + split),
        ],
        reference=f"{prefix}.attn",
        held_bytes=rows * cfg.width * db,
    )

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
            linear("mlp.lin1", pixels, cfg.width, cfg.mlp, scratch=pixels * cfg.mlp * db),
            linear("mlp.lin2", pixels, cfg.mlp, cfg.width, scratch=pixels * cfg.width * db),
        ],
        reference=f"{prefix}.mlp",
        held_bytes=pixels * cfg.width * db,
    )
    return group(
        prefix,
        "vision_layer",
        [norm("layer_norm1"), attn, norm("layer_norm2"), mlp],
        reference=prefix,
        held_bytes=pixels * cfg.width * db,
    )


def _conv(
    node_id: str,
    batch: int,
    c_in: int,
    c_out: int,
    kernel: int,
    size_in: int,
    size_out: int,
    db: int,
    bias: bool,
) -> CostNode:
    return layers.conv(
        node_id,
        "vision_conv",
        batch=batch,
        in_channels=c_in,
        out_channels=c_out,
        kernel=(kernel, kernel),
        in_spatial=(size_in, size_in),
        out_spatial=(size_out, size_out),
        bias=bias,
        dtype_bytes=db,
        reference=node_id,
    )


def sam(
    view: int, batch: int = 1, prefix: str = "", cfg: SamConfig = SAM, db: int = 2, name: str = "sam_encoder"
) -> CostNode:
    """SAM over ``batch`` square views of ``view`` pixels, to ``(view / 64)²`` tokens each;
    ``name`` is its module's name under ``prefix``."""
    base = join(prefix, name)
    grid = view // cfg.patch
    patch = group(
        f"{base}.patch_embed",
        "vision_patch_embedding",
        [_conv(f"{base}.patch_embed.projection", batch, 3, cfg.width, cfg.patch, view, grid, db, bias=True)],
        reference=f"{base}.patch_embed",
    )
    pos = layers.parameter(
        f"{base}.pos_embed",
        "vision_patch_embedding",
        params=(cfg.image_size // cfg.patch) ** 2 * cfg.width,
        dtype_bytes=db,
        note="absolute positions for the full image, interpolated for smaller views",
    )
    blocks = [_sam_layer(base, i, view, batch, cfg, db) for i in range(cfg.layers)]

    def norm2d(name: str) -> CostNode:
        return layers.norm(
            f"{base}.neck.{name}",
            "norm",
            rows=batch * grid * grid,
            dim=cfg.neck,
            params=2 * cfg.neck,
            dtype_bytes=db,
            reference=f"{base}.neck.{name}",
        )

    neck = group(
        f"{base}.neck",
        "vision_neck",
        [
            _conv(f"{base}.neck.conv1", batch, cfg.width, cfg.neck, 1, grid, grid, db, bias=False),
            norm2d("layer_norm1"),
            _conv(f"{base}.neck.conv2", batch, cfg.neck, cfg.neck, 3, grid, grid, db, bias=False),
            norm2d("layer_norm2"),
        ],
        reference=f"{base}.neck",
    )
    first, second = cfg.compressor
    compressor = group(
        f"{base}.proj",
        "vision_compressor",
        [
            _conv(f"{base}.proj.conv1", batch, cfg.neck, first, 3, grid, grid // 2, db, bias=False),
            _conv(f"{base}.proj.conv2", batch, first, second, 3, grid // 2, grid // 4, db, bias=False),
        ],
        reference=f"{base}.proj",
    )
    layers_group = group(f"{base}.layers", "vision_layers", blocks, reference=f"{base}.layers")
    return group(base, "sam", [patch, pos, layers_group, neck, compressor], reference=base)
