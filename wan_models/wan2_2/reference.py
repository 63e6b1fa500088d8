"""References for Wan2.2: the shared stages are Wan2.1's diffusers references built with the
Wan2.2 geometry (each expert is a ``WanTransformer3DModel`` of the 14B configuration); the tiny
end-to-end run is a diffusers ``WanPipeline`` with two experts, ``boundary_ratio`` and the
flow-sigma UniPC scheduler. The only module of the package that imports torch, lazily.
"""

from __future__ import annotations

from typing import Any

from pytest_flopcheck import Generation, ReferenceCall
from wan_models.wan2_1 import reference as wan21
from wan_models.wan2_1.config import TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE
from wan_models.wan2_2.pipeline import WAN21_STAGE, generation_flops
from wan_models.wan2_2.workload import Workload


def build(w: Workload, stage: str, device: str) -> ReferenceCall:
    """The reference of ``stage`` (the registration's ``reference``): Wan2.1's builder of the
    stage it shares, on the Wan2.2 geometry and expert configuration."""
    return wan21.build(w.as_wan2_1(), WAN21_STAGE[stage], device)


def tiny_generation(w: Workload) -> Generation:
    """One whole generation of a tiny two-expert pipeline, and the analytic total for it."""
    return Generation(
        generation_flops(w, TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE),
        lambda: _tiny_call(w),
        "diffusers WanPipeline with two tiny experts, boundary_ratio and UniPC flow sigmas, CPU",
    )


def _tiny_call(w: Workload) -> ReferenceCall:
    import torch
    from diffusers import UniPCMultistepScheduler, WanPipeline, WanTransformer3DModel

    single = wan21.tiny_pipeline()
    second = WanTransformer3DModel.from_config(single.transformer.config)  # type: ignore[no-untyped-call]
    pipe: Any = WanPipeline(  # a second random expert beside the first
        tokenizer=single.tokenizer,
        text_encoder=single.text_encoder,
        transformer=single.transformer,
        transformer_2=second,
        vae=single.vae,
        scheduler=UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=w.flow_shift
        ),
        boundary_ratio=w.spec.boundary_ratio,
    )
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
        )

    return ReferenceCall(modules, run)
