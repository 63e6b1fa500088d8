"""References for Wan2.2: the shared stages are Wan2.1's diffusers references built with the
Wan2.2 geometry (each expert is a ``WanTransformer3DModel`` of the 14B configuration); the tiny
end-to-end run is a diffusers ``WanPipeline`` with two experts, ``boundary_ratio`` and the
flow-sigma UniPC scheduler. The only module of the package that imports torch, lazily.
"""

from __future__ import annotations

from typing import Any

import attrs

from pytest_flopcheck import ReferenceCall
from wan_models.wan2_1 import reference as wan21
from wan_models.wan2_1.config import TINY_DIT, TINY_VAE, TINY_VAE22, DiTConfig, VAEConfig
from wan_models.wan2_2.workload import WAN21_STAGE, Workload, encode_geometry


def build(w: Workload, stage: str, device: str) -> ReferenceCall:
    """The reference of ``stage`` (the registration's ``reference``): Wan2.1's builder of the
    stage it shares, on the Wan2.2 geometry and expert configuration."""
    geometry = encode_geometry(w) if stage == "vae_encode" else w.as_wan2_1()
    return wan21.build(geometry, WAN21_STAGE[stage], device)


def parallel_build(w: Workload, stage: str, layout: Any, device: str) -> ReferenceCall:
    """An expert's (or TI2V-5B's) DiT under diffusers' context parallelism: Wan2.1's builder on
    the workload's geometry."""
    return wan21.parallel_diffusion_core(w.as_wan2_1(), WAN21_STAGE[stage], layout, device)


def tiny_dit(w: Workload) -> DiTConfig:
    """The tiny DiT: A14B image-to-video takes the latent, a 4-channel mask and the condition;
    TI2V takes the latent alone, with one timestep per token."""
    if w.spec.dit.expand_timesteps:
        z = TINY_VAE22.z_dim
        return attrs.evolve(TINY_DIT, in_channels=z, out_channels=z, expand_timesteps=True)
    return attrs.evolve(TINY_DIT, in_channels=2 * TINY_VAE.z_dim + 4) if w.image else TINY_DIT


def tiny_vae(w: Workload) -> VAEConfig:
    return TINY_VAE22 if w.spec.vae.residual else TINY_VAE


def tiny_call(w: Workload) -> ReferenceCall:
    import torch
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline, WanTransformer3DModel

    single = wan21.tiny_pipeline()
    d = tiny_dit(w)
    config = {**single.transformer.config, "in_channels": d.in_channels, "out_channels": d.out_channels}
    transformers = [WanTransformer3DModel.from_config(config) for _ in range(2 if w.spec.experts else 1)]  # type: ignore[no-untyped-call]
    vae = single.vae
    if w.spec.vae.residual:
        v = TINY_VAE22
        vae = wan21._autoencoder(v)
        vae.register_to_config(latents_mean=[0.0] * v.z_dim, latents_std=[1.0] * v.z_dim)
    common: dict[str, Any] = {
        "tokenizer": single.tokenizer,
        "text_encoder": single.text_encoder,
        "transformer": transformers[0],
        "vae": vae,
        "scheduler": UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=w.flow_shift
        ),
    }
    if w.spec.experts:
        common |= {"transformer_2": transformers[1], "boundary_ratio": w.spec.boundary_ratio}
    else:
        common["expand_timesteps"] = True
    pipe: Any = WanImageToVideoPipeline(**common) if w.image else WanPipeline(**common)  # type: ignore[no-untyped-call]
    inputs: dict[str, Any] = {}
    if w.image:
        from PIL import Image

        inputs["image"] = Image.new("RGB", (w.width, w.height), (128, 64, 32))
    pipe.set_progress_bar_config(disable=True)
    parts = {"text_encoder": pipe.text_encoder, "transformer": pipe.transformer, "vae": pipe.vae}
    if w.spec.experts:
        parts["transformer_2"] = pipe.transformer_2
    modules = torch.nn.ModuleDict(parts)

    return ReferenceCall(modules, wan21.pipeline_call(pipe, w, **inputs))
