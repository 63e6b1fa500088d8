"""The text-to-video pipeline: which stages run, how often, and the end-to-end tree.

Both upstream pipelines (official ``text2video.py``, diffusers ``WanPipeline``) encode the
prompt and, with guidance, the negative prompt; run the DiT once per step per guidance branch
(cond and uncond as two sequential batch-B forwards); and decode once. A test observes these
counts on a real diffusers pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import attrs

from pytest_flopcheck import CostNode, Metrics, group, per_generation
from wan_models.wan2_1.config import (
    CLIP_VIT_H,
    UMT5_XXL,
    WAN_VAE,
    DiTConfig,
    ImageEncoderConfig,
    TextEncoderConfig,
    VAEConfig,
)
from wan_models.wan2_1.dit import dit_forward, dit_totals
from wan_models.wan2_1.image_encoder import image_encoder
from wan_models.wan2_1.text_encoder import text_encoder, text_encoder_totals
from wan_models.wan2_1.vae import vae_decode, vae_encode
from wan_models.wan2_1.workload import Workload


def conditioning_encode(w: Workload) -> CostNode:
    """The image-to-video conditioning video (image, zeros; or image, zeros, last image),
    encoded once: the pipeline repeats its latent over the batch."""
    return vae_encode(attrs.evolve(w, batch_size=1))


def clip_images(w: Workload, cfg: ImageEncoderConfig = CLIP_VIT_H) -> CostNode:
    """The CLIP image encoder on the generation's conditioning image(s), in one call."""
    return image_encoder(max(w.dit.image_frames, 1), w.dtype_bytes, cfg)


STAGE_BUILDERS: Final[dict[str, Callable[[Workload], CostNode]]] = {
    "text_encoder": text_encoder,
    "image_encoder": clip_images,
    "vae_encode": conditioning_encode,
    "diffusion_core": dit_forward,
    "vae_decode": vae_decode,
}
STAGES: Final = tuple(STAGE_BUILDERS)


def runs_per_generation(w: Workload) -> dict[str, int]:
    """How many times each stage runs (at the workload's batch) for one generation."""
    branches = 2 if w.guidance else 1
    image = 1 if w.dit.image_frames else 0
    return {
        "text_encoder": branches,
        "image_encoder": image if w.dit.image_dim is not None else 0,
        "vae_encode": image,
        "diffusion_core": w.steps * branches,
        "vae_decode": 1,
    }


def stage_tree(w: Workload, stage: str) -> CostNode:
    """The cost tree of one run of ``stage``."""
    try:
        builder = STAGE_BUILDERS[stage]
    except KeyError:
        raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}") from None
    return builder(w)


def stage_totals(w: Workload, stage: str) -> Metrics:
    """``stage_tree(w, stage).total``, fast: repeated blocks are counted once and scaled, and
    results are cached by the fields the stage depends on (a sweep revisits them often)."""
    key = _depends_on(w, stage)
    cached = _TOTALS.get(key)
    if cached is None:
        if len(_TOTALS) >= _CACHE_LIMIT:
            _TOTALS.clear()
        cached = _TOTALS[key] = _compute_totals(w, stage)
    return cached


_TOTALS: dict[tuple[object, ...], Metrics] = {}
_CACHE_LIMIT = 65_536


def _depends_on(w: Workload, stage: str) -> tuple[object, ...]:
    """The fields one run of the stage depends on. Steps and guidance change how often a stage
    runs, not one run; frames matter only through the latent frame count."""
    if stage == "text_encoder":
        return (stage, w.batch_size, w.text_len, w.dtype)
    if stage == "diffusion_core":
        return (stage, w.dit, w.batch_size, w.latent_frames, w.height, w.width, w.text_len, w.dtype)
    if stage == "vae_decode":
        return (stage, w.batch_size, w.latent_frames, w.height, w.width, w.dtype)
    if stage == "vae_encode":
        return (stage, w.latent_frames, w.height, w.width, w.dtype)
    if stage == "image_encoder":
        return (stage, w.dit.image_frames, w.dtype)
    raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")


def _compute_totals(w: Workload, stage: str) -> Metrics:
    if stage == "diffusion_core":
        return dit_totals(w)
    if stage == "text_encoder":
        return text_encoder_totals(w)
    return STAGE_BUILDERS[stage](w).total


def pipeline_tree(w: Workload, stages: tuple[str, ...] = STAGES) -> CostNode:
    """One generation: each stage's tree (id = stage name, node ids inside stay stage-relative),
    repeated as often as it runs. Parameters count once per stage; work counts every run."""
    runs = runs_per_generation(w)
    children = [attrs.evolve(stage_tree(w, s), id=s, repeat=runs[s]) for s in stages]
    return group("", "pipeline", children)


def generation_flops(
    w: Workload,
    dit: DiTConfig | None = None,
    text: TextEncoderConfig = UMT5_XXL,
    vae: VAEConfig = WAN_VAE,
    image: ImageEncoderConfig = CLIP_VIT_H,
) -> int:
    """FLOPs of one whole generation (every stage times its runs), for any configuration of the
    three architectures (the tiny ones of a real end-to-end check, say)."""
    return per_generation(
        runs_per_generation(w),
        {
            "text_encoder": text_encoder(w, text).total.flops,
            "image_encoder": clip_images(w, image).total.flops,
            "vae_encode": vae_encode(attrs.evolve(w, batch_size=1), vae).total.flops,
            "diffusion_core": dit_forward(w, dit).total.flops,
            "vae_decode": vae_decode(w, vae).total.flops,
        },
    )
