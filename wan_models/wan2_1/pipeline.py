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

from pytest_flopcheck.tree import CostNode, Metrics, group
from wan_models.wan2_1.config import UMT5_XXL, WAN_VAE, DiTConfig, TextEncoderConfig, VAEConfig
from wan_models.wan2_1.dit import dit_forward, dit_totals
from wan_models.wan2_1.text_encoder import text_encoder, text_encoder_totals
from wan_models.wan2_1.vae import vae_decode
from wan_models.wan2_1.workload import Workload

STAGE_BUILDERS: Final[dict[str, Callable[[Workload], CostNode]]] = {
    "text_encoder": text_encoder,
    "diffusion_core": dit_forward,
    "vae_decode": vae_decode,
}
STAGES: Final = tuple(STAGE_BUILDERS)


def runs_per_generation(w: Workload) -> dict[str, int]:
    """How many times each stage runs (at the workload's batch) for one generation."""
    branches = 2 if w.guidance else 1
    return {"text_encoder": branches, "diffusion_core": w.steps * branches, "vae_decode": 1}


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
    raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")


def _compute_totals(w: Workload, stage: str) -> Metrics:
    if stage == "diffusion_core":
        return dit_totals(w)
    if stage == "text_encoder":
        return text_encoder_totals(w)
    return vae_decode(w).total


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
) -> int:
    """FLOPs of one whole generation (every stage times its runs), for any configuration of the
    three architectures (the tiny ones of a real end-to-end check, say)."""
    runs = runs_per_generation(w)
    return (
        runs["text_encoder"] * text_encoder(w, text).total.flops
        + runs["diffusion_core"] * dit_forward(w, dit).total.flops
        + runs["vae_decode"] * vae_decode(w, vae).total.flops
    )
