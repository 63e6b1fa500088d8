"""The Wan2.2 pipelines (text- and image-to-video): stages, how often each runs, their trees.

As in Wan2.1, the UMT5 encoder runs for the prompt and (with guidance) the negative prompt, each
step runs one DiT forward per guidance branch, and the Wan-VAE decodes once. What is new: two
experts of identical architecture, the high-noise one for the steps whose timestep is at least
``boundary_ratio · 1000`` and the low-noise one after (``schedule.expert_steps``); each is a
stage with weights of its own. Image-to-video adds ``vae_encode``: the conditioning video (the
image followed by zeros, every frame) is encoded once per generation.
"""

from __future__ import annotations

from typing import Final

from pytest_flopcheck import CostNode, Metrics, per_generation
from wan_models.wan2_1.config import UMT5_XXL, DiTConfig, TextEncoderConfig, VAEConfig
from wan_models.wan2_1.dit import dit_forward
from wan_models.wan2_1.pipeline import stage_totals as wan21_totals
from wan_models.wan2_1.text_encoder import text_encoder
from wan_models.wan2_1.vae import vae_decode, vae_encode
from wan_models.wan2_2.schedule import expert_steps
from wan_models.wan2_2.workload import WAN21_STAGE, Workload, encode_geometry

EXPERTS: Final = ("diffusion_high_noise", "diffusion_low_noise")
STAGES: Final = ("text_encoder", "vae_encode", "diffusion_core", *EXPERTS, "vae_decode")


def _check(stage: str) -> str:
    if stage not in WAN21_STAGE:
        raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")
    return WAN21_STAGE[stage]


def runs_per_generation(w: Workload) -> dict[str, int]:
    """Runs of each stage in one generation: the two experts of an A14B variant split the steps
    (one no step reaches runs 0 times); TI2V-5B's single DiT runs them all."""
    branches = 2 if w.guidance else 1
    single = 0
    high = low = 0
    if w.spec.boundary_ratio is None:
        single = w.steps
    else:
        high, low = expert_steps(w.steps, w.flow_shift, w.spec.boundary_ratio)
    return {
        "text_encoder": branches,
        "vae_encode": 1 if w.image else 0,
        "diffusion_core": single * branches,
        "diffusion_high_noise": high * branches,
        "diffusion_low_noise": low * branches,
        "vae_decode": 1,
    }


def stage_tree(w: Workload, stage: str) -> CostNode:
    """The cost tree of one run of ``stage`` (one expert forward for the DiT stages)."""
    shared = _check(stage)
    geometry = w.as_wan2_1()
    if shared == "text_encoder":
        return text_encoder(geometry)
    if shared == "vae_encode":
        return vae_encode(encode_geometry(w))
    if shared == "diffusion_core":
        return dit_forward(geometry)
    return vae_decode(geometry)


def stage_totals(w: Workload, stage: str) -> Metrics:
    """``stage_tree(w, stage).total`` through Wan2.1's cached fast path."""
    shared = _check(stage)
    if shared == "vae_encode":
        return stage_tree(w, stage).total
    return wan21_totals(w.as_wan2_1(), shared)


def generation_flops(
    w: Workload,
    dit: DiTConfig | None = None,
    text: TextEncoderConfig = UMT5_XXL,
    vae: VAEConfig | None = None,
) -> int:
    """FLOPs of one whole generation, for any configuration of the architectures (the tiny ones
    of a real end-to-end check, say); both experts share ``dit``."""
    geometry = w.as_wan2_1()
    forward = dit_forward(geometry, dit if dit is not None else w.spec.dit).total.flops
    return per_generation(
        runs_per_generation(w),
        {
            "text_encoder": text_encoder(geometry, text).total.flops,
            "vae_encode": vae_encode(encode_geometry(w), vae).total.flops,
            "diffusion_core": forward,
            "diffusion_high_noise": forward,
            "diffusion_low_noise": forward,
            "vae_decode": vae_decode(geometry, vae).total.flops,
        },
    )
