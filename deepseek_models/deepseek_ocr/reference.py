"""References for DeepSeek-OCR (v1), whose own code is not installable: each part is a native
transformers module, put together by a small glue module of the project's own. The only module
of the package that imports torch or transformers, lazily.

=============================  ===========================================================
part (v1 name)                 reference module
=============================  ===========================================================
``sam_model``                  transformers ``DeepseekOcr2SamVisionEncoder`` with v1's
                               compressor widths (``downsample_channels=[512, 1024]``)
``vision_model`` layers        transformers ``CLIPEncoder`` (CLIP-L/14: 24 layers, 1024 wide,
                               quick GELU); v1 fuses q/k/v into one ``qkv_proj``, which has the
                               same parameters and FLOPs as the three projections
``vision_model.embeddings``    transformers ``CLIPVisionEmbeddings`` (parameters only: its
                               patch convolution is held, never run)
``language_model``, ``lm_head``  transformers ``DeepseekOcr2TextModel`` and the lm_head of
                               ``DeepseekOcr2ForConditionalGeneration`` (the shared decoder)
glue (the project's own)       ``vision_model``'s forward (CLS token, the position table
                               interpolated to the view as v1's ``get_abs_pos`` does,
                               ``pre_layrnorm``), the ``projector`` Linear(2048, 1280) over
                               [CLIP without CLS ; SAM], ``image_newline`` and
                               ``view_seperator`` and the page's token layout (tiles' mosaic,
                               global view, separator)
=============================  ===========================================================

The full model does not run on meta (the OCR-2 text model is driven with ids for prefill and
decode), so each stage calls what it covers, as for DeepSeek-OCR-2.
"""

from __future__ import annotations

import functools
import math
from typing import Any

from deepseek_models.deepseek_ocr.config import CHECKPOINT, TINY, Architecture
from deepseek_models.deepseek_ocr.workload import TILE_SIZE, Page
from deepseek_models.shared import reference as shared_reference
from pytest_flopcheck import ReferenceCall, ReferenceSkipped

IMAGE_TOKEN = shared_reference.IMAGE_TOKEN
VISION_SCOPE = ("sam_model", "vision_model", "projector", "image_newline", "view_seperator")
LANGUAGE_SCOPE = ("language_model", "lm_head")


def clip_config(arch: Architecture = CHECKPOINT) -> Any:
    """transformers' CLIP vision configuration of v1's CLIP-L."""
    from transformers import CLIPVisionConfig

    c = arch.clip
    return CLIPVisionConfig(  # type: ignore[call-arg]
        hidden_size=c.width,
        intermediate_size=c.mlp,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        image_size=c.image_size,
        patch_size=c.patch,
        hidden_act="quick_gelu",
        layer_norm_eps=1e-5,
        attn_implementation="sdpa",
    )


def config(arch: Architecture = CHECKPOINT) -> Any:
    """transformers' DeepSeek-OCR-2 configuration carrying v1's SAM and the shared decoder (its
    own vision encoder is not used)."""
    return shared_reference.config(arch.sam, arch.decoder)


@functools.cache
def _glue() -> Any:
    """The glue classes (defined on first use, so importing this module needs no torch)."""
    import torch
    import torch.nn.functional as F
    from torch import nn
    from transformers.models.clip.modeling_clip import CLIPEncoder, CLIPVisionEmbeddings
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import (
        DeepseekOcr2ForConditionalGeneration,
        DeepseekOcr2SamVisionEncoder,
    )

    class ClipOverSam(nn.Module):
        """v1's ``VitModel`` from transformers parts: SAM's feature map as patch embeddings."""

        def __init__(self, cfg: Any) -> None:
            super().__init__()
            self.embeddings = CLIPVisionEmbeddings(cfg)
            self.pre_layrnorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
            self.encoder = CLIPEncoder(cfg)

        def forward(self, features: torch.Tensor) -> torch.Tensor:
            batch, _, height, width = features.shape
            patches = features.flatten(2).transpose(1, 2)
            cls = self.embeddings.class_embedding.to(patches.dtype).expand(batch, 1, -1)
            table = self.embeddings.position_embedding(self.embeddings.position_ids)
            side = math.isqrt(table.shape[1] - 1)
            grid = table[:, 1:]
            if (height, width) != (side, side):
                grid = F.interpolate(
                    grid.reshape(1, side, side, -1).permute(0, 3, 1, 2).to(torch.float32),
                    size=(height, width),
                    mode="bicubic",
                    antialias=True,
                    align_corners=False,
                ).to(table.dtype)
                grid = grid.permute(0, 2, 3, 1).reshape(1, height * width, -1)
            hidden = torch.cat([cls, patches], dim=1) + torch.cat([table[:, :1], grid], dim=1)
            return self.encoder(inputs_embeds=self.pre_layrnorm(hidden)).last_hidden_state  # type: ignore[no-any-return]

    class DeepseekOcr(nn.Module):
        """DeepSeek-OCR (v1) assembled from transformers modules; ``generator`` is the OCR-2
        model whose language model and lm_head this module holds (for ``generate()``)."""

        def __init__(self, arch: Architecture) -> None:
            super().__init__()
            configuration: Any = config(arch)
            ocr2 = DeepseekOcr2ForConditionalGeneration(configuration)
            hidden = arch.decoder.hidden
            self.sam_model = DeepseekOcr2SamVisionEncoder(configuration.vision_config.sam_config)
            self.vision_model = ClipOverSam(clip_config(arch))
            self.projector = nn.Linear(arch.projector_in, hidden)
            self.image_newline = nn.Parameter(torch.randn(hidden))
            self.view_seperator = nn.Parameter(torch.randn(hidden))
            self.language_model = ocr2.model.language_model
            self.lm_head = ocr2.lm_head
            ocr2.model.vision_tower = None  # not v1's; frees its memory
            self.generator = [ocr2]  # a list, so its modules are not registered twice

        def view_features(self, pixels: torch.Tensor) -> torch.Tensor:
            sam = self.sam_model(pixels).last_hidden_state
            clip = self.vision_model(sam)
            features = torch.cat([clip[:, 1:], sam.flatten(2).transpose(1, 2)], dim=-1)
            return self.projector(features)  # type: ignore[no-any-return]

        def _rows(self, grid: torch.Tensor) -> torch.Tensor:
            rows, _, width = grid.shape
            newline = self.image_newline.to(grid.dtype)[None, None, :].expand(rows, 1, width)
            return torch.cat([grid, newline], dim=1).reshape(-1, width)

        def page(self, view: torch.Tensor, tiles: torch.Tensor | None, grid: tuple[int, int]) -> torch.Tensor:
            """One page's image tokens: the tiles' mosaic, the global view, the separator."""
            parts = []
            if tiles is not None:
                local = self.view_features(tiles)
                side, width = math.isqrt(local.shape[1]), local.shape[2]
                wide, high = grid
                local = local.view(high, wide, side, side, width).permute(0, 2, 1, 3, 4)
                parts.append(self._rows(local.reshape(high * side, wide * side, width)))
            features = self.view_features(view)[0]
            side = math.isqrt(features.shape[0])
            parts.append(self._rows(features.view(side, side, -1)))
            parts.append(self.view_seperator.to(features.dtype)[None, :])
            return torch.cat(parts)

    return DeepseekOcr


def _views(w: Page, dtype: Any) -> tuple[Any, Any]:
    import torch

    view = torch.randn(1, 3, w.view, w.view, dtype=dtype)
    tiles = torch.randn(w.tile_count, 3, TILE_SIZE, TILE_SIZE, dtype=dtype) if w.tile_count else None
    return view, tiles


def build(w: Page, stage: str, device: str, tensor: int = 1) -> ReferenceCall:
    """The reference of ``stage`` for the workload (the registration's ``reference``);
    ``tensor``: its OCR-2 language model split by transformers' tensor-parallel plan over that
    many ranks of the process group initialised (the parallel reference)."""
    if device != "meta":
        raise ReferenceSkipped(
            "deepseek_ocr is counted on meta only: at full size its MoE paths need bf16 GPU kernels "
            "(grouped_mm) or far more memory than the model (batched_mm)"
        )
    import torch

    with torch.device("meta"):
        model = _glue()(CHECKPOINT).to(torch.bfloat16)
        shared_reference.tensor_parallel(model.generator[0], tensor)  # splits the modules v1 holds
        if stage == "vision":
            view, tiles = _views(w, torch.bfloat16)

            def vision() -> None:
                for _ in range(w.pages):  # v1 runs the pages of a batch one after another
                    model.page(view, tiles, w.tile_grid)

            return ReferenceCall(model, vision, scope=VISION_SCOPE)
    return shared_reference.language_call(
        model, model.language_model, model.lm_head, w, stage, LANGUAGE_SCOPE
    )


def tiny_generate(w: Page) -> ReferenceCall:
    import torch

    torch.manual_seed(0)
    model = _glue()(TINY)
    model.eval()
    (generator,) = model.generator
    text = [1] + [5] * (w.prompt_tokens - 1)
    ids = torch.tensor([text + [IMAGE_TOKEN] * w.image_tokens] * w.pages)
    pages = [_views(w, torch.float32) for _ in range(w.pages)]

    def run() -> object:
        with torch.no_grad():
            images = torch.cat([model.page(view, tiles, w.tile_grid) for view, tiles in pages])
            embeds = model.language_model.embed_tokens(ids)
            mask = (ids == IMAGE_TOKEN).unsqueeze(-1).expand_as(embeds)
            embeds = embeds.masked_scatter(mask, images)
        return generator.generate(
            inputs_embeds=embeds,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=w.new_tokens,
            min_new_tokens=w.new_tokens,
            do_sample=False,
        )

    return ReferenceCall(model, run)


def parts(arch: Architecture = CHECKPOINT) -> dict[str, int]:
    """Parameters of each part of the assembled reference on meta (for the README's table and
    tests)."""
    import torch

    with torch.device("meta"):
        model = _glue()(arch)
    counts = {
        name: sum(p.numel() for p in getattr(model, name).parameters())
        for name in ("sam_model", "vision_model", "projector", "language_model", "lm_head")
    }
    counts["image_newline"] = model.image_newline.numel()
    counts["view_seperator"] = model.view_seperator.numel()
    return counts
