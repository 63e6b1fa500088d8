"""Analytic model of DeepSeek-OCR-2's vision side (transformers ``DeepseekOcr2VisionModel`` and
the ``multi_modal_projector`` names).

Per view: SAM, its neck and compressor (:mod:`deepseek_models.shared.sam`), then the Qwen2-style
encoder over [SAM tokens; learned queries], of which only the query outputs are kept. A page's
global view and its crops are two calls of the same modules with different shapes
(:func:`vision_stage`).
"""

from __future__ import annotations

import attrs

from deepseek_models.shared.config import (
    DECODER,
    ENCODER,
    SAM,
    DecoderConfig,
    EncoderConfig,
    SamConfig,
)
from deepseek_models.shared.sam import sam
from deepseek_models.shared.tensor_parallel import all_reduce, split
from pytest_flopcheck import CostNode, Renamer, group, join, layers, merge_call_trees, regroup

GLOBAL_VIEW, CROP_VIEW = 1024, 768


def _encoder_layer(
    base: str, index: int, batch: int, tokens: int, cfg: EncoderConfig, db: int, tensor: int = 1
) -> CostNode:
    """One encoder layer; ``tensor`` > 1: one rank of transformers' tensor-parallel plan for the
    encoder (q, k, v by heads and o_proj by its input, gate and up by width and down by its
    input, each block's output all-reduced), which the layout's validation holds to whole heads."""
    prefix = f"{base}.layers.{index}"
    rows = batch * tokens
    heads, kv_heads = cfg.heads // tensor, cfg.kv_heads // tensor
    width, kv_width = heads * cfg.head_dim, kv_heads * cfg.head_dim

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
        heads=heads,
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

    def reduce(node_id: str) -> list[CostNode]:
        return [all_reduce(node_id, rows, cfg.hidden, db, tensor)] if tensor > 1 else []

    attn = group(
        f"{prefix}.self_attn",
        "vision_attention",
        [
            proj("q_proj", cfg.hidden, width, True),
            proj("k_proj", cfg.hidden, kv_width, True),
            proj("v_proj", cfg.hidden, kv_width, True),
            core,
            proj("o_proj", width, cfg.hidden, False),
            *reduce(f"{prefix}.self_attn.all_reduce"),
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
        intermediate=split(cfg.intermediate, tensor),
        bias=False,
        dtype_bytes=db,
        reference=f"{prefix}.mlp",
    )
    if tensor > 1:
        mlp = regroup(mlp, [*mlp.children, *reduce(f"{prefix}.mlp.all_reduce")], held_bytes=mlp.held_bytes)
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
    tensor: int = 1,
) -> CostNode:
    """The vision tower over ``batch`` views of ``view`` pixels: SAM, then the encoder over its
    tokens and the view's learned queries (only the query outputs are kept). ``prefix`` is the
    tower's module name in a larger model (``vision_tower``); ``tensor``: the encoder on one rank
    of transformers' tensor-parallel plan (SAM, the tables and the projector are not in it)."""
    sam_tokens = (view // sam_cfg.patch // 4) ** 2
    tokens = sam_tokens + dict(cfg.queries)[view]
    base = join(prefix, "vision_encoder")
    first = _encoder_layer(base, 0, batch, tokens, cfg, db, tensor)
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
    view: int,
    batch: int,
    sam_cfg: SamConfig,
    cfg: EncoderConfig,
    decoder: DecoderConfig,
    db: int,
    tensor: int,
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
        [
            vision(view, batch, "vision_tower", sam_cfg=sam_cfg, cfg=cfg, db=db, tensor=tensor),
            projector,
            separator,
        ],
    )


def vision_stage(
    pages: int,
    crops: int,
    cfg: EncoderConfig = ENCODER,
    decoder: DecoderConfig = DECODER,
    db: int = 2,
    sam_cfg: SamConfig = SAM,
    tensor: int = 1,
) -> CostNode:
    """Every view of ``pages`` pages: the global 1024 px views in one call of the vision tower and
    the projector, the ``crops`` 768 px crops of every page in a second call (none without crops).
    ``tensor``: on one rank of transformers' tensor-parallel plan (:func:`vision`)."""
    calls = [_view_call(GLOBAL_VIEW, pages, sam_cfg, cfg, decoder, db, tensor)]
    if crops:
        calls.append(_view_call(CROP_VIEW, pages * crops, sam_cfg, cfg, decoder, db, tensor))
    merged = merge_call_trees(calls)
    # every view's pixels are the stage's input, live through both calls
    pixels = 3 * pages * (GLOBAL_VIEW**2 + crops * CROP_VIEW**2) * db
    return attrs.evolve(merged, held_bytes=merged.held_bytes + pixels)


def image_tokens(crops: int, cfg: EncoderConfig = ENCODER) -> int:
    """Image tokens a page inserts into the prompt: every crop's and the global view's queries
    and one view separator."""
    queries = dict(cfg.queries)
    return crops * queries[CROP_VIEW] + queries[GLOBAL_VIEW] + 1
