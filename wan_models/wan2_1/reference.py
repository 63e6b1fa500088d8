"""Reference implementations: diffusers and transformers modules built for a workload.

The only module of ``wan_models`` that imports torch, diffusers or transformers (lazily, inside
the builders). No weights are loaded: modules are built from configs, on ``meta`` (no memory)
or with random weights on a real device.
"""

from __future__ import annotations

from typing import Any

from pytest_flopcheck import Generation, ReferenceCall
from wan_models.wan2_1.config import TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE, UMT5_XXL, WAN_VAE
from wan_models.wan2_1.pipeline import generation_flops
from wan_models.wan2_1.workload import Workload

PACKAGES = ("torch", "diffusers", "transformers")


def _on_device(module: Any, device: str) -> Any:
    """Random weights stay fp32 on meta and CPU (where bf16 matmuls are slow); a GPU runs bf16,
    as the model does in production."""
    import torch

    return module.to(torch.bfloat16) if device == "cuda" else module


def _dtype(device: str) -> Any:
    import torch

    return torch.bfloat16 if device == "cuda" else torch.float32


def diffusion_core(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``WanTransformer3DModel`` for the variant, called once (one CFG branch)."""
    import torch
    from diffusers import WanTransformer3DModel

    cfg = w.dit
    dtype = _dtype(device)
    with torch.device(device):
        model = WanTransformer3DModel(  # type: ignore[no-untyped-call]
            patch_size=cfg.patch_size,
            num_attention_heads=cfg.num_heads,
            attention_head_dim=cfg.head_dim,
            in_channels=cfg.in_channels,
            out_channels=cfg.out_channels,
            text_dim=cfg.text_dim,
            freq_dim=cfg.freq_dim,
            ffn_dim=cfg.ffn_dim,
            num_layers=cfg.num_layers,
            cross_attn_norm=cfg.cross_attn_norm,
            qk_norm="rms_norm_across_heads",
            eps=cfg.eps,
        )
        model = _on_device(model, device)
        latents = torch.randn(
            w.batch_size, cfg.in_channels, w.latent_frames, w.latent_height, w.latent_width, dtype=dtype
        )
        timestep = torch.full((w.batch_size,), 999.0)
        text = torch.randn(w.batch_size, w.text_len, cfg.text_dim, dtype=dtype)
    return ReferenceCall(
        model,
        lambda: model(
            hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False
        ),
    )


def text_encoder(w: Workload, device: str) -> ReferenceCall:
    """transformers ``UMT5EncoderModel`` (umt5-xxl) on ``text_len`` tokens.

    No attention mask is passed: on meta, transformers cannot build one, and the padded
    sequence costs the same counted FLOPs with or without it.
    """
    import torch
    from transformers import UMT5Config, UMT5EncoderModel

    c = UMT5_XXL
    config = UMT5Config(
        vocab_size=c.vocab_size,
        d_model=c.d_model,
        d_kv=c.d_kv,
        d_ff=c.d_ff,
        num_layers=c.num_layers,
        num_heads=c.num_heads,
        relative_attention_num_buckets=c.relative_attention_num_buckets,
        relative_attention_max_distance=c.relative_attention_max_distance,
        feed_forward_proj="gated-gelu",
    )
    with torch.device(device):
        model = _on_device(UMT5EncoderModel(config), device)
        ids = torch.zeros(w.batch_size, w.text_len, dtype=torch.long)
    return ReferenceCall(model, lambda: model(input_ids=ids))


def vae_decode(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``AutoencoderKLWan().decode`` on the workload's latent."""
    import torch
    from diffusers import AutoencoderKLWan

    c = WAN_VAE
    dtype = _dtype(device)
    with torch.device(device):
        vae = AutoencoderKLWan(  # type: ignore[no-untyped-call]
            base_dim=c.base_dim,
            z_dim=c.z_dim,
            dim_mult=list(c.dim_mult),
            num_res_blocks=c.num_res_blocks,
            temperal_downsample=list(c.temporal_downsample),
        )
        vae = _on_device(vae, device)
        latents = torch.randn(
            w.batch_size, c.z_dim, w.latent_frames, w.latent_height, w.latent_width, dtype=dtype
        )
    return ReferenceCall(vae, lambda: vae.decode(latents, return_dict=False))


def vae_encode(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``AutoencoderKLWan().encode`` on a ``batch_size`` batch of
    ``output_frames``-frame videos (image-to-video pipelines encode their conditioning video)."""
    import torch
    from diffusers import AutoencoderKLWan

    c = WAN_VAE
    dtype = _dtype(device)
    with torch.device(device):
        vae = AutoencoderKLWan(  # type: ignore[no-untyped-call]
            base_dim=c.base_dim,
            z_dim=c.z_dim,
            dim_mult=list(c.dim_mult),
            num_res_blocks=c.num_res_blocks,
            temperal_downsample=list(c.temporal_downsample),
        )
        vae = _on_device(vae, device)
        video = torch.randn(w.batch_size, 3, w.output_frames, w.height, w.width, dtype=dtype)
    return ReferenceCall(vae, lambda: vae.encode(video, return_dict=False))


BUILDERS = {
    "text_encoder": text_encoder,
    "diffusion_core": diffusion_core,
    "vae_decode": vae_decode,
    "vae_encode": vae_encode,
}


def build(w: Workload, stage: str, device: str) -> ReferenceCall:
    """The reference of ``stage`` for the workload, built on ``device`` (the registration's
    ``reference``; torch is imported only when it is called)."""
    return BUILDERS[stage](w, device)


TINY_VOCAB = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "cat": 4, "blurry": 5}


def tiny_pipeline() -> Any:
    """A diffusers ``WanPipeline`` of the tiny configurations, random weights, on CPU."""
    import torch
    from diffusers import (
        AutoencoderKLWan,
        FlowMatchEulerDiscreteScheduler,
        WanPipeline,
        WanTransformer3DModel,
    )
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    torch.manual_seed(0)
    backend = Tokenizer(models.WordLevel(TINY_VOCAB, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=backend, pad_token="<pad>", eos_token="</s>", unk_token="<unk>"
    )
    t = TINY_TEXT_ENCODER
    encoder = UMT5EncoderModel(
        UMT5Config(
            vocab_size=t.vocab_size, d_model=t.d_model, d_kv=t.d_kv, d_ff=t.d_ff, num_layers=t.num_layers,
            num_heads=t.num_heads, feed_forward_proj="gated-gelu",
        )
    )  # fmt: skip
    d = TINY_DIT
    transformer = WanTransformer3DModel(  # type: ignore[no-untyped-call]
        patch_size=d.patch_size, num_attention_heads=d.num_heads, attention_head_dim=d.head_dim,
        in_channels=d.in_channels, out_channels=d.out_channels, text_dim=d.text_dim, freq_dim=d.freq_dim,
        ffn_dim=d.ffn_dim, num_layers=d.num_layers, rope_max_seq_len=32,
    )  # fmt: skip
    v = TINY_VAE
    vae = AutoencoderKLWan(  # type: ignore[no-untyped-call]
        base_dim=v.base_dim, z_dim=v.z_dim, dim_mult=list(v.dim_mult), num_res_blocks=v.num_res_blocks,
        temperal_downsample=list(v.temporal_downsample), latents_mean=[0.0] * v.z_dim,
        latents_std=[1.0] * v.z_dim,
    )  # fmt: skip
    pipe = WanPipeline(
        tokenizer=tokenizer,
        text_encoder=encoder,
        transformer=transformer,
        vae=vae,
        scheduler=FlowMatchEulerDiscreteScheduler(),  # type: ignore[no-untyped-call]
    )
    pipe.set_progress_bar_config(disable=True)  # type: ignore[attr-defined]
    return pipe


def tiny_generation(w: Workload) -> Generation:
    """One whole generation of the tiny pipeline for ``w`` (prompt, negative prompt, every step,
    the decode), and the analytic total for the tiny configurations (no torch needed for it)."""
    return Generation(
        generation_flops(w, TINY_DIT, TINY_TEXT_ENCODER, TINY_VAE),
        lambda: tiny_pipeline_call(w),
        "diffusers WanPipeline with tiny random configs on CPU: the whole call",
    )


def tiny_pipeline_call(w: Workload) -> ReferenceCall:
    """The tiny pipeline, and its call for ``w``."""
    import torch

    pipe = tiny_pipeline()
    modules = torch.nn.ModuleDict(
        {"text_encoder": pipe.text_encoder, "transformer": pipe.transformer, "vae": pipe.vae}
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
