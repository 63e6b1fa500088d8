"""Analytic model of the CLIP ViT-H/14 image encoder of the image-to-video models (stage
``image_encoder``): transformers' ``CLIPVisionModel``, called once per generation on the
conditioning image (first-last-frame: both images in one batch of 2). The pipeline keeps the
penultimate hidden states, but every layer runs. Ids and references are transformers' module
names (transformers 5 holds the tower's modules at the model's top level).
"""

from __future__ import annotations

import attrs

from pytest_flopcheck import CostNode, Renamer, group, layers
from wan_models.wan2_1.config import CLIP_VIT_H, ImageEncoderConfig


def _layer(index: int, images: int, cfg: ImageEncoderConfig, db: int) -> CostNode:
    return layers.encoder_layer(
        f"encoder.layers.{index}",
        "image",
        batch=images,
        tokens=cfg.tokens,
        width=cfg.width,
        heads=cfg.heads,
        mlp=cfg.mlp,
        dtype_bytes=db,
        holds_input=False,
    )


def image_encoder(images: int, dtype_bytes: int, cfg: ImageEncoderConfig = CLIP_VIT_H) -> CostNode:
    """One call of the CLIP vision tower on ``images`` images of ``cfg.image_size`` pixels."""
    db, w, side = dtype_bytes, cfg.width, cfg.image_size // cfg.patch
    emb = "embeddings"
    embeddings = group(
        emb,
        "image_embedding",
        [
            layers.parameter(f"{emb}.class_embedding", "image_embedding", params=w, dtype_bytes=db),
            layers.conv(
                f"{emb}.patch_embedding",
                "image_embedding",
                batch=images,
                in_channels=3,
                out_channels=w,
                kernel=(cfg.patch, cfg.patch),
                in_spatial=(cfg.image_size, cfg.image_size),
                out_spatial=(side, side),
                bias=False,
                dtype_bytes=db,
                reference=f"{emb}.patch_embedding",
            ),
            layers.embedding(
                f"{emb}.position_embedding",
                "image_embedding",
                rows=cfg.tokens,
                num_embeddings=cfg.tokens,
                dim=w,
                dtype_bytes=db,
                reference=f"{emb}.position_embedding",
            ),
        ],
        reference=emb,
    )
    first = _layer(0, images, cfg, db)
    rename = Renamer(first, "encoder.layers.0", "encoder.layers.0")
    blocks = [first] + [rename(f"encoder.layers.{i}", f"encoder.layers.{i}") for i in range(1, cfg.layers)]
    # The pipeline asks for every hidden state, so the encoder keeps the normed embeddings and
    # each layer's output: layer i runs beside i + 1 of them (its input the last).
    hidden = images * cfg.tokens * w * db
    blocks = [
        attrs.evolve(block, held_bytes=block.held_bytes + (i + 1) * hidden) for i, block in enumerate(blocks)
    ]

    def norm(name: str, rows: int) -> CostNode:
        return layers.norm(name, "norm", rows=rows, dim=w, params=2 * w, dtype_bytes=db, reference=name)

    return group(
        "",
        "image_encoder",
        [
            embeddings,
            norm("pre_layrnorm", images * cfg.tokens),
            group("encoder", "image_layers", blocks, reference="encoder"),
            norm("post_layernorm", images),  # on the pooled class token only
        ],
        reference="",
        held_bytes=images * 3 * cfg.image_size**2 * db,  # the pixels, the caller's input
    )
