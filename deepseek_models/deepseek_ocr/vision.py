"""Analytic model of DeepSeek-OCR (v1)'s vision side.

Per view: SAM (DeepSeek-OCR-2's, with v1's 1024-wide compressor), then CLIP-L's encoder layers
over SAM's feature map (a CLS token prepended, the 16×16 position table interpolated to the
view), then one projector over [CLIP outputs without CLS ; SAM features]. v1 runs every page on
its own: its tiles (if any) in one call, then its global view, so a batch of pages repeats those
calls. Module names are those of the package's reference (transformers modules under the
project's glue, see ``reference.py``).
"""

from __future__ import annotations

import attrs

from deepseek_models.deepseek_ocr.config import CHECKPOINT, Architecture, ClipConfig
from deepseek_models.deepseek_ocr.workload import TILE_SIZE, Page, view_tokens
from deepseek_models.shared.sam import sam
from pytest_flopcheck import CostNode, Renamer, group, layers, merge_call_trees, with_repeat

CLIP_PREFIX = "vision_model"


def _clip_layer(index: int, batch: int, tokens: int, cfg: ClipConfig, db: int) -> CostNode:
    return layers.encoder_layer(
        f"{CLIP_PREFIX}.encoder.layers.{index}",
        "vision",
        batch=batch,
        tokens=tokens,
        width=cfg.width,
        heads=cfg.heads,
        mlp=cfg.mlp,
        dtype_bytes=db,
    )


def clip(view: int, batch: int = 1, cfg: ClipConfig = CHECKPOINT.clip, db: int = 2) -> CostNode:
    """CLIP-L's embeddings (the patch convolution held, not run), pre-LayerNorm and encoder
    layers over ``batch`` views' SAM features plus a CLS token each."""
    tokens = view_tokens(view) ** 2 + 1
    emb = f"{CLIP_PREFIX}.embeddings"
    embeddings = group(
        emb,
        "vision_patch_embedding",
        [
            layers.parameter(
                f"{emb}.class_embedding", "vision_patch_embedding", params=cfg.width, dtype_bytes=db
            ),
            layers.parameter(
                f"{emb}.patch_embedding",
                "vision_patch_embedding",
                params=3 * cfg.patch * cfg.patch * cfg.width,
                dtype_bytes=db,
                note="held by CLIP-L but not run: SAM's features are its patch embeddings",
            ),
            layers.embedding(
                f"{emb}.position_embedding",
                "vision_patch_embedding",
                rows=cfg.grid**2 + 1,
                num_embeddings=cfg.grid**2 + 1,
                dim=cfg.width,
                dtype_bytes=db,
                reference=f"{emb}.position_embedding",
            ),
        ],
    )
    base = f"{CLIP_PREFIX}.encoder"
    first = _clip_layer(0, batch, tokens, cfg, db)
    rename = Renamer(first, f"{base}.layers.0", f"{base}.layers.0")
    blocks = [first] + [rename(f"{base}.layers.{i}", f"{base}.layers.{i}") for i in range(1, cfg.layers)]
    pre_norm = layers.norm(
        f"{CLIP_PREFIX}.pre_layrnorm",
        "norm",
        rows=batch * tokens,
        dim=cfg.width,
        params=2 * cfg.width,
        dtype_bytes=db,
        reference=f"{CLIP_PREFIX}.pre_layrnorm",
    )
    encoder = group(
        base,
        "vision_encoder",
        [group(f"{base}.layers", "vision_layers", blocks, reference=f"{base}.layers")],
        reference=base,
    )
    return group(CLIP_PREFIX, "clip", [embeddings, pre_norm, encoder], reference=CLIP_PREFIX)


def view_call(view: int, batch: int, arch: Architecture = CHECKPOINT, db: int = 2) -> CostNode:
    """One call of SAM, CLIP-L and the projector on ``batch`` views of ``view`` pixels."""
    projector = layers.linear(
        "projector",
        "vision_projector",
        rows=batch * view_tokens(view) ** 2,
        in_features=arch.projector_in,
        out_features=arch.decoder.hidden,
        bias=True,
        dtype_bytes=db,
        reference="projector",
    )
    specials = [
        layers.parameter(name, "vision_projector", params=arch.decoder.hidden, dtype_bytes=db, note=note)
        for name, note in (
            ("image_newline", "closes every row of a view's (or the tiles' mosaic) tokens"),
            ("view_seperator", "one token per image (v1's spelling)"),
        )
    ]
    return group(
        "",
        "vision_stage",
        [
            sam(view, batch, "", arch.sam, db, name="sam_model"),
            clip(view, batch, arch.clip, db),
            projector,
            *specials,
        ],
    )


def vision_stage(w: Page, arch: Architecture = CHECKPOINT) -> CostNode:
    """Every page's views: its tiles in one call (Gundam), then its global view; v1 runs the
    pages one after another, so the batch repeats those calls."""
    db = w.dtype_bytes
    calls = []
    if w.tile_count:
        calls.append(view_call(TILE_SIZE, w.tile_count, arch, db))
    calls.append(view_call(w.view, 1, arch, db))
    page = merge_call_trees(calls)
    # every page's pixels are the stage's input, live through all its calls
    pixels = 3 * w.pages * (w.tile_count * TILE_SIZE**2 + w.view**2) * db
    if w.pages == 1:
        return attrs.evolve(page, held_bytes=page.held_bytes + pixels)
    children = [with_repeat(child, w.pages) for child in page.children]
    return group("", page.category, children, held_bytes=page.held_bytes + pixels)
