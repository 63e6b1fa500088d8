"""Analytic model of DeepSeek-OCR-2's vision side (transformers ``DeepseekOcr2VisionModel`` and
the ``multi_modal_projector`` names).

Per view: SAM, its neck and compressor, then the Qwen2-style encoder over [SAM tokens; learned
queries], of which only the query outputs are kept. Windowed SAM layers pad the patch grid to
whole 14×14 windows and run qkv, the attention and proj on the padded windows; the MLP runs on
the unpadded grid. The decomposed relative positions add two products per attention, counted
with the attention's own work. A page's global view and its crops are two calls of the same
modules with different shapes (:func:`vision_stage`).
"""

from __future__ import annotations

import math

import attrs

from deepseek_models.deepseek_ocr2.config import (
    DECODER,
    ENCODER,
    SAM,
    DecoderConfig,
    EncoderConfig,
    SamConfig,
)
from pytest_flopcheck import CostNode, group, join, layers, merge_call_trees
from pytest_flopcheck.analytic.tree import Renamer

GLOBAL_VIEW, CROP_VIEW = 1024, 768


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


def _encoder_layer(base: str, index: int, batch: int, tokens: int, cfg: EncoderConfig, db: int) -> CostNode:
    prefix = f"{base}.layers.{index}"
    rows = batch * tokens
    kv_width = cfg.kv_heads * cfg.head_dim

    def proj(name: str, in_f: int, out_f: int, bias: bool) -> CostNode:
        return layers.linear(
            f"{prefix}.self_attn.{name}",
            "vision_projection",
            rows=rows,
            in_features=in_f,
            out_features=out_f,
            bias=bias,
            dtype_bytes=db,
            reference=f"{prefix}.self_attn.{name}",
        )

    core = layers.attention_core(
        f"{prefix}.self_attn.core",
        "vision_attention_core",
        batch=batch,
        heads=cfg.heads,
        q_len=tokens,
        kv_len=tokens,
        head_dim=cfg.head_dim,
        dtype_bytes=db,
        reference=f"{prefix}.self_attn",
        # With a mask, transformers repeats the key/value heads up to the query heads before SDPA
        # (on every device): the kernel reads them at the query heads. The mask: image tokens see
        # each other, queries causally.
        mask_elements=batch * tokens * tokens,
    )
    attn = group(
        f"{prefix}.self_attn",
        "vision_attention",
        [
            proj("q_proj", cfg.hidden, cfg.hidden, True),
            proj("k_proj", cfg.hidden, kv_width, True),
            proj("v_proj", cfg.hidden, kv_width, True),
            core,
            proj("o_proj", cfg.hidden, cfg.hidden, False),
        ],
        reference=f"{prefix}.self_attn",
    )

    def norm(name: str) -> CostNode:
        return layers.norm(
            f"{prefix}.{name}",
            "norm",
            rows=rows,
            dim=cfg.hidden,
            params=cfg.hidden,
            dtype_bytes=db,
            reference=f"{prefix}.{name}",
        )

    mlp = layers.gated_mlp(
        f"{prefix}.mlp",
        "vision_mlp",
        rows=rows,
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


def vision(
    view: int,
    batch: int = 1,
    prefix: str = "",
    sam_cfg: SamConfig = SAM,
    cfg: EncoderConfig = ENCODER,
    db: int = 2,
) -> CostNode:
    """The vision tower over ``batch`` views of ``view`` pixels: SAM, then the encoder over its
    tokens and the view's learned queries (only the query outputs are kept). ``prefix`` is the
    tower's module name in a larger model (``vision_tower``)."""
    sam_tokens = (view // sam_cfg.patch // 4) ** 2
    tokens = sam_tokens + dict(cfg.queries)[view]
    base = join(prefix, "vision_encoder")
    first = _encoder_layer(base, 0, batch, tokens, cfg, db)
    rename = Renamer(first, f"{base}.layers.0", f"{base}.layers.0")
    blocks = [first] + [rename(f"{base}.layers.{i}", f"{base}.layers.{i}") for i in range(1, cfg.layers)]
    encoder = group(
        base,
        "vision_encoder",
        [
            group(f"{base}.layers", "vision_layers", blocks, reference=f"{base}.layers"),
            layers.norm(
                f"{base}.norm",
                "norm",
                rows=batch * tokens,
                dim=cfg.hidden,
                params=cfg.hidden,
                dtype_bytes=db,
                reference=f"{base}.norm",
            ),
        ],
        reference=base,
    )
    tables = [
        layers.embedding(
            join(prefix, f"query_{size}_resolution"),
            "vision_queries",
            rows=batch * n if size == view else 0,
            num_embeddings=n,
            dim=cfg.hidden,
            dtype_bytes=db,
            reference=join(prefix, f"query_{size}_resolution"),
        )
        for size, n in cfg.queries
    ]
    return group(
        prefix, "vision", [sam(view, batch, prefix, sam_cfg, db), encoder, *tables], reference=prefix
    )


def _view_call(
    view: int, batch: int, sam_cfg: SamConfig, cfg: EncoderConfig, decoder: DecoderConfig, db: int
) -> CostNode:
    """One call of the tower and the projector on ``batch`` views of one size."""
    queries = dict(cfg.queries)[view]
    projector = layers.linear(
        "multi_modal_projector",
        "vision_projector",
        rows=batch * queries,
        in_features=cfg.hidden,
        out_features=decoder.hidden,
        bias=True,
        dtype_bytes=db,
        reference="multi_modal_projector",
    )
    if batch > 1:
        # Several views' queries are a strided slice of the encoder output: torch's linear then
        # runs a matmul and adds the bias apart, so the counted op does not read the bias.
        projector = attrs.evolve(
            projector,
            metrics=attrs.evolve(
                projector.metrics, io_bytes=projector.metrics.io_bytes - decoder.hidden * db
            ),
        )
    separator = layers.parameter(
        "view_separator",
        "vision_projector",
        params=decoder.hidden,
        dtype_bytes=db,
        note="one token per image",
    )
    return group(
        "",
        "vision_stage",
        [vision(view, batch, "vision_tower", sam_cfg=sam_cfg, cfg=cfg, db=db), projector, separator],
    )


def vision_stage(
    pages: int,
    crops: int,
    cfg: EncoderConfig = ENCODER,
    decoder: DecoderConfig = DECODER,
    db: int = 2,
    sam_cfg: SamConfig = SAM,
) -> CostNode:
    """Every view of ``pages`` pages: the global 1024 px views in one call of the vision tower and
    the projector, the ``crops`` 768 px crops of every page in a second call (none without crops)."""
    calls = [_view_call(GLOBAL_VIEW, pages, sam_cfg, cfg, decoder, db)]
    if crops:
        calls.append(_view_call(CROP_VIEW, pages * crops, sam_cfg, cfg, decoder, db))
    merged = merge_call_trees(calls)
    # every view's pixels are the stage's input, live through both calls
    pixels = 3 * pages * (GLOBAL_VIEW**2 + crops * CROP_VIEW**2) * db
    return attrs.evolve(merged, held_bytes=merged.held_bytes + pixels)


def image_tokens(crops: int, cfg: EncoderConfig = ENCODER) -> int:
    """Image tokens a page inserts into the prompt: every crop's and the global view's queries
    and one view separator."""
    queries = dict(cfg.queries)
    return crops * queries[CROP_VIEW] + queries[GLOBAL_VIEW] + 1
