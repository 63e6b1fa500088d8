"""Registration of model ``wan2_1`` with pytest-flopcheck (the ``flopcheck`` entry point)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs

from pytest_flopcheck import Generation, ModelRegistration, Stage, hookimpl
from wan_models.wan2_1 import reference
from wan_models.wan2_1.config import (
    CLIP_VIT_H,
    TINY_DIT,
    TINY_I2V_DIT,
    TINY_IMAGE_ENCODER,
    TINY_TEXT_ENCODER,
    TINY_VAE,
    UMT5_XXL,
    WAN_VAE,
    load_dit_config,
)
from wan_models.wan2_1.dit import KV_CACHE_NOTE
from wan_models.wan2_1.parallel import PARALLEL
from wan_models.wan2_1.pipeline import STAGES, generation_flops, runs_per_generation, stage_totals, stage_tree
from wan_models.wan2_1.runtimes import runtimes
from wan_models.wan2_1.vae import FEATURE_CACHE_NOTE
from wan_models.wan2_1.workload import STANDARD_WORKLOADS, Workload

NAME = "wan2_1"

TINY_WORKLOADS = {
    "tiny-guided": Workload(frames=5, height=16, width=16, steps=2, text_len=8, guidance=True),
    "tiny-unguided": Workload(frames=5, height=16, width=16, steps=2, text_len=8, guidance=False),
    # diffusers splits the image-to-video cross-attention keys at 512 text tokens: the tiny
    # image-to-video run keeps that length.
    "tiny-i2v": Workload(variant="I2V-14B-480P", frames=5, height=16, width=16, steps=2, text_len=512),
}
"""Workloads of the real end-to-end generations (run with the tiny configurations)."""

NOT_MODELED = (
    "Elementwise work (norms, GELU/SiLU, RoPE, modulation shift/scale/gate, residual adds) has 0 FLOPs by "
    "the counter's convention; its traffic is predicted for the DiT (elementwise_bytes, checked by "
    "test_traffic) and only to first order for T5, CLIP and the VAE (each layer's inputs and outputs once)",
    "The CFG mix and the official code's fp32 residual stream and fp64 RoPE (the time model takes the "
    "diffusers DiT's traffic for the official runtimes)",
    "The scheduler (UniPC / flow matching) step arithmetic and the timestep sinusoid",
    "Compute/memory overlap (the time model adds each kernel's time), communication overlapped with "
    "compute, NCCL's latency per collective, and kernel fusion under torch.compile",
    "Tokenizer, prompt extension, and video encoding after the VAE decode",
    "CLIP image preprocessing (resize and normalise to 224 px); the image-to-video DiTs are not read "
    "from config.json (use --variant)",
    "The VAE's optional tiled decode and encode (off by default in diffusers)",
)


def _analytic(workload: Workload, stage: str) -> Any:
    return stage_tree(workload, stage)


def tiny_generation(w: Workload) -> Generation:
    """One whole generation of the tiny pipeline for ``w`` (prompt, negative prompt, every step,
    the decode; for an image variant also the CLIP image encoder and the conditioning encode),
    and the analytic total for the tiny configurations (no torch needed for it)."""
    if w.dit.image_dim is not None:
        return Generation(
            generation_flops(w, TINY_I2V_DIT, TINY_TEXT_ENCODER, TINY_VAE, TINY_IMAGE_ENCODER),
            functools.partial(reference.tiny_i2v_call, w),
            "diffusers WanImageToVideoPipeline, tiny random configs (CLIP too), on CPU: the whole call",
        )
    return Generation(
        generation_flops(w, TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE),
        functools.partial(reference.tiny_pipeline_call, w),
        "diffusers WanPipeline with tiny random configs on CPU: the whole call",
    )


def config_workload(workload: Workload, path: str) -> Workload:
    """The workload with the DiT of a checkpoint's config.json (official or diffusers layout)."""
    return attrs.evolve(workload, dit_config=load_dit_config(path))


def reference_config(workload: Workload, stage: str) -> dict[str, Any]:
    """What the reference module of ``stage`` is built from (it keys the reference cache)."""
    if stage == "text_encoder":
        return attrs.asdict(UMT5_XXL)
    if stage == "image_encoder":
        return {"clip": attrs.asdict(CLIP_VIT_H), "images": workload.dit.image_frames}
    if stage == "diffusion_core":
        return attrs.asdict(workload.dit)
    return {"vae": attrs.asdict(WAN_VAE), "stage": stage}


def reference_bytes(workload: Workload, stage: str) -> int:
    """Rough memory of a reference run on a real device: fp32 weights plus twice the largest
    layer's inputs and outputs, plus caches."""
    tree = stage_tree(attrs.evolve(workload, dtype="fp32"), stage)
    largest = max(leaf.total.io_bytes - leaf.total.weight_bytes for leaf in tree.leaves())
    return tree.total.weight_bytes + 2 * largest + tree.total.cache_bytes


def metadata(workload: Workload) -> dict[str, Any]:
    """Architecture numbers, geometry and the rules applied, for evidence and reports."""
    return {
        "diffusion_core": attrs.asdict(workload.dit),
        "text_encoder": attrs.asdict(UMT5_XXL),
        "image_encoder": attrs.asdict(CLIP_VIT_H) if workload.dit.image_dim is not None else None,
        "vae": attrs.asdict(WAN_VAE),
        "workload": workload.describe(),
        "runs_per_generation": runs_per_generation(workload),
        "rules": {
            "latent_frames": "official: (frames - 1) // 4 + 1",
            "text": "always padded to text_len rows (encoder input and cross-attention keys/values)",
            "guidance": (
                "two sequential batch-B DiT forwards per step; the encoder runs for the prompt and the "
                "negative prompt"
            ),
        },
        "kv_cache": KV_CACHE_NOTE,
        "feature_cache": FEATURE_CACHE_NOTE,
    }


def registration() -> ModelRegistration:
    return ModelRegistration(
        name=NAME,
        description="Wan2.1 text-, image- and first-last-frame-to-video: UMT5-XXL, CLIP ViT-H, DiT, Wan-VAE",
        stages=(
            Stage(
                "text_encoder", 1e-6, "UMT5-XXL encoder, one pass over text_len tokens", memory_tolerance=0.01
            ),
            Stage(
                "image_encoder",
                1e-6,
                "image-to-video: CLIP ViT-H/14 on the conditioning image(s)",
                memory_tolerance=0.01,
            ),
            Stage(
                "vae_encode",
                1e-6,
                "image-to-video: Wan-VAE encode of the conditioning video",
                memory_tolerance=0.01,
            ),
            Stage(
                "diffusion_core",
                0.05,
                "Wan2.1 DiT, one forward (one guidance branch)",
                memory_tolerance=0.01,
                traffic_tolerance=0.0,
            ),
            Stage("vae_decode", 1e-6, "Wan-VAE chunked causal decode", memory_tolerance=0.02),
        ),
        workloads=STANDARD_WORKLOADS,
        analytic=_analytic,
        reference=reference.build,
        reference_config=reference_config,
        config_workload=config_workload,
        generations={name: functools.partial(tiny_generation, w) for name, w in TINY_WORKLOADS.items()},
        multiplicities=runs_per_generation,
        end_to_end_tolerance=0.05,
        reference_bytes=reference_bytes,
        stage_totals=stage_totals,
        reference_packages=("torch", "diffusers", "transformers"),
        metadata=metadata,
        warnings=Workload.warnings,
        not_modeled=NOT_MODELED,
        workload_type=Workload,
        runtimes=runtimes(STAGES),
        parallel=PARALLEL,
    )


@hookimpl
def flopcheck_register_models(register: Callable[[ModelRegistration], None]) -> None:
    register(registration())
