"""Registration of model ``wan2_2`` with pytest-flopcheck (the ``flopcheck`` entry point)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs

from pytest_flopcheck import Generation, ModelRegistration, Stage, hookimpl
from wan_models.wan2_1.config import TINY_TEXT_ENCODER, UMT5_XXL
from wan_models.wan2_1.dit import KV_CACHE_NOTE
from wan_models.wan2_1.runtimes import runtimes
from wan_models.wan2_1.vae import FEATURE_CACHE_NOTE
from wan_models.wan2_2 import reference
from wan_models.wan2_2.parallel import PARALLEL
from wan_models.wan2_2.pipeline import STAGES, generation_flops, runs_per_generation, stage_totals, stage_tree
from wan_models.wan2_2.schedule import expert_steps
from wan_models.wan2_2.workload import STANDARD_WORKLOADS, WAN21_STAGE, Workload

NAME = "wan2_2"

TINY_WORKLOADS = {
    "tiny-t2v": Workload(frames=5, height=16, width=16, steps=4, flow_shift=3.0, text_len=8),
    "tiny-i2v": Workload(
        variant="I2V-A14B", frames=5, height=16, width=16, steps=4, flow_shift=3.0, text_len=8
    ),
    "tiny-ti2v-t2v": Workload(variant="TI2V-5B", frames=5, height=32, width=32, steps=2, text_len=8),
    "tiny-ti2v-i2v": Workload(
        variant="TI2V-5B", frames=5, height=32, width=32, steps=2, text_len=8, image=True
    ),
}
"""Tiny generations. Two experts, 4 steps at shift 3 (timesteps 999, 900, 750, 500): 2 high-noise
and 2 low-noise steps at either boundary (0.875 for T2V, 0.9 for I2V). TI2V: one DiT with
per-token timesteps and a tiny Wan2.2 VAE, without and with an image."""

NOT_MODELED = (
    "Elementwise work (norms, GELU/SiLU, RoPE, modulation, residual adds) has 0 FLOPs by the counter's "
    "convention; its traffic is predicted for the DiTs (elementwise_bytes, checked by test_traffic) and "
    "only to first order for T5 and the VAE (each layer's inputs and outputs once); the CFG mix is not",
    "The scheduler's step arithmetic and the timestep sinusoid (the step split between experts is modeled)",
    "The official code's per-token time embedding in fp32 for the A14B experts (diffusers, the reference, "
    "embeds one timestep per sample there; the workload's warning gives the FLOPs it adds)",
    "TI2V-5B image-to-video's latent blending (elementwise); its conditioning encode of the image alone "
    "is modeled",
    "Expert swapping or offload: both experts' weights are counted as resident",
    "Compute/memory overlap (the time model adds each kernel's time), communication overlapped with "
    "compute, NCCL's latency per collective, kernel fusion under torch.compile; tokenizer, video encoding",
)


def tiny_generation(w: Workload) -> Generation:
    """One whole generation of a tiny pipeline (two experts, or TI2V's single DiT and Wan2.2
    VAE), and the analytic total for it."""
    kind = "WanImageToVideoPipeline" if w.image else "WanPipeline"
    what = "two tiny experts and boundary_ratio" if w.spec.experts else "a tiny DiT with expand_timesteps"
    return Generation(
        generation_flops(w, reference.tiny_dit(w), TINY_TEXT_ENCODER, reference.tiny_vae(w)),
        functools.partial(reference.tiny_call, w),
        f"diffusers {kind} with {what}, UniPC flow sigmas, CPU",
    )


def reference_config(workload: Workload, stage: str) -> dict[str, Any]:
    """What the reference module of ``stage`` is built from (it keys the reference cache)."""
    shared = WAN21_STAGE[stage]
    if shared == "text_encoder":
        return attrs.asdict(UMT5_XXL)
    if shared == "vae_encode":
        return {"vae": attrs.asdict(workload.spec.vae), "encode": True}
    if shared == "diffusion_core":
        return attrs.asdict(workload.spec.dit)
    return attrs.asdict(workload.spec.vae)


def metadata(workload: Workload) -> dict[str, Any]:
    spec = workload.spec
    if spec.boundary_ratio is None:
        denoising = f"one DiT every step ({workload.steps}), one timestep per token (expand_timesteps)"
    else:
        high, low = expert_steps(workload.steps, workload.flow_shift, spec.boundary_ratio)
        denoising = (
            f"transformer (high noise) while t >= {spec.boundary_ratio} * 1000, transformer_2 "
            f"after: {high} and {low} of {workload.steps} steps at flow shift {workload.flow_shift} "
            "(diffusers' UniPC flow-sigma timesteps)"
        )
    return {
        "dit": attrs.asdict(spec.dit),
        "text_encoder": attrs.asdict(UMT5_XXL),
        "vae": attrs.asdict(spec.vae),
        "workload": workload.describe(),
        "runs_per_generation": runs_per_generation(workload),
        "rules": {
            "denoising": denoising,
            "frames": "diffusers: rounded down to 4n+1 first, then (frames - 1) // 4 + 1 latent frames",
            "guidance": "two sequential batch-B forwards of the step's expert per step",
        },
        "kv_cache": KV_CACHE_NOTE,
        "feature_cache": FEATURE_CACHE_NOTE,
    }


def registration() -> ModelRegistration:
    return ModelRegistration(
        name=NAME,
        description="Wan2.2: A14B (two 14B expert DiTs, Wan-VAE) and TI2V-5B (Wan2.2 VAE), UMT5-XXL",
        stages=(
            Stage(
                "text_encoder", 1e-6, "UMT5-XXL encoder, one pass over text_len tokens", memory_tolerance=0.01
            ),
            Stage(
                "vae_encode",
                1e-6,
                "image-to-video: Wan-VAE encode of the conditioning video (image, zeros)",
                memory_tolerance=0.01,
            ),
            Stage(
                "diffusion_core",
                0.05,
                "TI2V-5B's single DiT, one forward (one guidance branch)",
                memory_tolerance=0.01,
                traffic_tolerance=0.0,
            ),
            Stage(
                "diffusion_high_noise",
                0.05,
                "the high-noise expert, one forward (one guidance branch)",
                memory_tolerance=0.01,
                traffic_tolerance=0.0,
            ),
            Stage(
                "diffusion_low_noise",
                0.05,
                "the low-noise expert, one forward (one guidance branch)",
                memory_tolerance=0.01,
                traffic_tolerance=0.0,
            ),
            Stage(
                "vae_decode",
                1e-6,
                "chunked causal decode (Wan-VAE, or the Wan2.2 VAE for TI2V-5B)",
                memory_tolerance=0.02,
            ),
        ),
        workloads=STANDARD_WORKLOADS,
        analytic=stage_tree,
        reference=reference.build,
        reference_config=reference_config,
        generations={name: functools.partial(tiny_generation, w) for name, w in TINY_WORKLOADS.items()},
        multiplicities=runs_per_generation,
        end_to_end_tolerance=0.05,
        stage_totals=stage_totals,
        reference_packages=("torch", "diffusers", "transformers"),
        metadata=metadata,
        warnings=Workload.warnings,
        not_modeled=NOT_MODELED,
        workload_type=Workload,
        runtimes=runtimes(STAGES, dit_placement="moved"),
        parallel=PARALLEL,
    )


@hookimpl
def flopcheck_register_models(register: Callable[[ModelRegistration], None]) -> None:
    register(registration())
