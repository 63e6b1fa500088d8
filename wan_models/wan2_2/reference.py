"""References for Wan2.2: the shared stages are Wan2.1's diffusers references built with the
Wan2.2 geometry (each expert is a ``WanTransformer3DModel`` of the 14B configuration); the tiny
end-to-end run is a diffusers ``WanPipeline`` with two experts, ``boundary_ratio`` and the
flow-sigma UniPC scheduler. The only module of the package that imports torch, lazily.
"""

from __future__ import annotations

from typing import Any

import attrs

from pytest_flopcheck import Generation, ReferenceCall
from wan_models.wan2_1 import reference as wan21
from wan_models.wan2_1.config import TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE, DiTConfig
from wan_models.wan2_2.pipeline import WAN21_STAGE, encode_geometry, generation_flops
from wan_models.wan2_2.workload import Workload


def build(w: Workload, stage: str, device: str) -> ReferenceCall:
    """The reference of ``stage`` (the registration's ``reference``): Wan2.1's builder of the
    stage it shares, on the Wan2.2 geometry and expert configuration."""
    geometry = encode_geometry(w) if stage == "vae_encode" else w.as_wan2_1()
    return wan21.build(geometry, WAN21_STAGE[stage], device)


def tiny_dit(w: Workload) -> DiTConfig:
    """The tiny expert: image-to-video takes the latent, a 4-channel mask and the condition."""
    return attrs.evolve(TINY_DIT, in_channels=2 * TINY_VAE.z_dim + 4) if w.spec.image else TINY_DIT


def tiny_generation(w: Workload) -> Generation:
    """One whole generation of a tiny two-expert pipeline, and the analytic total for it."""
    kind = "WanImageToVideoPipeline" if w.spec.image else "WanPipeline"
    return Generation(
        generation_flops(w, tiny_dit(w), TINY_TEXT_ENCODER, TINY_VAE),
        lambda: _tiny_call(w),
        f"diffusers {kind} with two tiny experts, boundary_ratio and UniPC flow sigmas, CPU",
    )


def _tiny_call(w: Workload) -> ReferenceCall:
    import torch
    from diffusers import UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline, WanTransformer3DModel

    single = wan21.tiny_pipeline()
    config = {**single.transformer.config, "in_channels": tiny_dit(w).in_channels}
    experts = [WanTransformer3DModel.from_config(config) for _ in range(2)]  # type: ignore[no-untyped-call]
    common: dict[str, Any] = {
        "tokenizer": single.tokenizer,
        "text_encoder": single.text_encoder,
        "transformer": experts[0],
        "transformer_2": experts[1],
        "vae": single.vae,
        "scheduler": UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=w.flow_shift
        ),
        "boundary_ratio": w.spec.boundary_ratio,
    }
    pipe: Any = WanImageToVideoPipeline(**common) if w.spec.image else WanPipeline(**common)  # type: ignore[no-untyped-call]
    inputs: dict[str, Any] = {}
    if w.spec.image:
        from PIL import Image

        inputs["image"] = Image.new("RGB", (w.width, w.height), (128, 64, 32))
    pipe.set_progress_bar_config(disable=True)
    modules = torch.nn.ModuleDict(
        {
            "text_encoder": pipe.text_encoder,
            "transformer": pipe.transformer,
            "transformer_2": pipe.transformer_2,
            "vae": pipe.vae,
        }
    )

    def run() -> object:
        return pipe(
            prompt="a cat",
            negative_prompt="blurry",
            height=w.height,
            width=w.width,
            num_frames=w.frames,
            num_inference_steps=w.steps,
            guidance_scale=5.0 if w.guidance else 1.0,
            max_sequence_length=w.text_len,
            output_type="pt",
            **inputs,
        )

    return ReferenceCall(modules, run)
