"""Reference implementations: diffusers and transformers modules built for a workload.

The only module of ``wan_models`` that imports torch, diffusers or transformers (lazily, inside
the builders). No weights are loaded: modules are built from configs, on ``meta`` (no memory)
or with random weights on a real device. It imports no analytic builder: the reference cache keys
a count by the source of this module and what it imports, so an edit of an analytic model keeps
the counts.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pytest_flopcheck import DTYPES, ReferenceCall
from wan_models.wan2_1.config import (
    CLIP_VIT_H,
    TINY_DIT,
    TINY_I2V_DIT,
    TINY_IMAGE_ENCODER,
    TINY_TEXT_ENCODER,
    TINY_VAE,
    UMT5_XXL,
    VAEConfig,
)
from wan_models.wan2_1.workload import Workload

PACKAGES = ("torch", "diffusers", "transformers")


def _dtype(w: Workload, device: str) -> Any:
    """The dtype the reference is built in: the sized one (the framework's dtype table) on meta,
    which runs every op in fp8 too, and on a GPU; fp32 on CPU, where bf16 matmuls are slow."""
    import torch

    return getattr(torch, DTYPES[w.dtype].torch) if device != "cpu" else torch.float32


def _on_device(module: Any, w: Workload, device: str) -> Any:
    dtype = _dtype(w, device)
    if device != FAKE:
        return module.to(dtype)
    # Module.to swaps each tensor for its cast, which fake tensors refuse: cast them one by one,
    # a parameter two modules share (T5's tied embedding) once, so that they still share it.
    import torch

    cast: dict[int, Any] = {}
    for sub in module.modules():
        for name, param in sub._parameters.items():
            if param is not None and param.is_floating_point():
                if id(param) not in cast:
                    cast[id(param)] = torch.nn.Parameter(param.to(dtype), param.requires_grad)
                sub._parameters[name] = cast[id(param)]
        for name, buffer in sub._buffers.items():
            if buffer is not None and buffer.is_floating_point():
                sub._buffers[name] = buffer.to(dtype)
    return module


FAKE = "fake"
"""The device of a module built under a ``FakeTensorMode`` (fake CPU tensors at the sized dtype):
what FSDP2, which refuses meta tensors, can shard."""


def _torch_device(device: str) -> str:
    return "cpu" if device == FAKE else device


def diffusion_core(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``WanTransformer3DModel`` for the variant, called once (one CFG branch)."""
    import torch
    from diffusers import WanTransformer3DModel

    cfg = w.dit
    dtype = _dtype(w, device)
    with torch.device(_torch_device(device)):
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
            image_dim=cfg.image_dim,
            added_kv_proj_dim=cfg.dim if cfg.image_dim is not None else None,
            pos_embed_seq_len=cfg.pos_embed_seq_len,
        )
        model = _on_device(model, w, device)
        latents = torch.randn(
            w.batch_size, cfg.in_channels, w.latent_frames, w.latent_height, w.latent_width, dtype=dtype
        )
        # expand_timesteps models (Wan2.2 TI2V-5B) take one timestep per token
        timestep = torch.full((w.batch_size, w.tokens) if cfg.expand_timesteps else (w.batch_size,), 999.0)
        text = torch.randn(w.batch_size, w.text_len, cfg.text_dim, dtype=dtype)
        extra: dict[str, Any] = {}
        if cfg.image_dim is not None:  # the pipeline repeats each image's CLIP features per sample
            extra["encoder_hidden_states_image"] = torch.randn(
                w.batch_size * cfg.image_frames, cfg.image_tokens_per_image, cfg.image_dim, dtype=dtype
            )
    return ReferenceCall(
        model,
        lambda: model(
            hidden_states=latents, timestep=timestep, encoder_hidden_states=text, return_dict=False, **extra
        ),
    )


def image_encoder(w: Workload, device: str) -> ReferenceCall:
    """transformers ``CLIPVisionModel`` (ViT-H/14) on the conditioning image(s), asked for its
    hidden states as the pipeline does."""
    import torch
    from transformers import CLIPVisionConfig, CLIPVisionModel

    c = CLIP_VIT_H
    config = CLIPVisionConfig(
        hidden_size=c.width,
        intermediate_size=c.mlp,
        num_hidden_layers=c.layers,
        num_attention_heads=c.heads,
        image_size=c.image_size,
        patch_size=c.patch,
        hidden_act="gelu",
    )
    with torch.device(device):
        model = _on_device(CLIPVisionModel(config), w, device)
        pixels = torch.randn(w.dit.image_frames, 3, c.image_size, c.image_size, dtype=_dtype(w, device))
    return ReferenceCall(model, lambda: model(pixel_values=pixels, output_hidden_states=True))


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
    with torch.device(_torch_device(device)):
        model = _on_device(UMT5EncoderModel(config), w, device)
        ids = torch.zeros(w.batch_size, w.text_len, dtype=torch.long)
    return ReferenceCall(model, lambda: model(input_ids=ids))


def vae_decode(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``AutoencoderKLWan().decode`` on the workload's latent (its VAE)."""
    import torch

    c = w.vae
    dtype = _dtype(w, device)
    with torch.device(device):
        vae = _on_device(_autoencoder(c), w, device)
        latents = torch.randn(
            w.batch_size, c.z_dim, w.latent_frames, w.latent_height, w.latent_width, dtype=dtype
        )
    return ReferenceCall(
        vae, lambda: vae.decode(latents, return_dict=False), scope=("post_quant_conv", "decoder")
    )


def _autoencoder(c: VAEConfig) -> Any:
    """diffusers ``AutoencoderKLWan`` of a VAE configuration (Wan-VAE or the Wan2.2 VAE)."""
    from diffusers import AutoencoderKLWan

    extra: dict[str, Any] = {}
    if c.residual:
        extra = {
            "decoder_base_dim": c.decoder_base_dim,
            "is_residual": True,
            "in_channels": c.in_channels,
            "out_channels": c.out_channels,
            "patch_size": c.patch,
            "scale_factor_spatial": c.spatial_stride,
            "scale_factor_temporal": c.temporal_stride,
        }
    return AutoencoderKLWan(  # type: ignore[no-untyped-call]
        base_dim=c.base_dim,
        z_dim=c.z_dim,
        dim_mult=list(c.dim_mult),
        num_res_blocks=c.num_res_blocks,
        temperal_downsample=list(c.temporal_downsample),
        **extra,
    )


def vae_encode(w: Workload, device: str) -> ReferenceCall:
    """diffusers ``AutoencoderKLWan().encode`` on one ``output_frames``-frame conditioning video
    (image-to-video pipelines encode it once and repeat its latent over the batch)."""
    import torch

    dtype = _dtype(w, device)
    with torch.device(device):
        vae = _on_device(_autoencoder(w.vae), w, device)
        video = torch.randn(1, 3, w.output_frames, w.height, w.width, dtype=dtype)
    return ReferenceCall(vae, lambda: vae.encode(video, return_dict=False), scope=("encoder", "quant_conv"))


BUILDERS = {
    "text_encoder": text_encoder,
    "image_encoder": image_encoder,
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
    transformer: Any = WanTransformer3DModel(  # type: ignore[no-untyped-call]
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


def pipeline_call(pipe: Any, w: Any, **inputs: Any) -> Callable[[], object]:
    """One whole call of a tiny diffusers Wan pipeline for ``w`` (a prompt and, with guidance, a
    negative prompt; ``inputs`` adds the image of an image-to-video call)."""

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

    return run


def tiny_i2v_call(w: Workload) -> ReferenceCall:
    """A tiny ``WanImageToVideoPipeline`` (tiny CLIP vision tower and image processor, a tiny
    image-to-video DiT) and its call for ``w``."""
    import torch
    from diffusers import WanImageToVideoPipeline, WanTransformer3DModel
    from PIL import Image
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    single = tiny_pipeline()
    d, c = TINY_I2V_DIT, TINY_IMAGE_ENCODER
    transformer: Any = WanTransformer3DModel(  # type: ignore[no-untyped-call]
        patch_size=d.patch_size, num_attention_heads=d.num_heads, attention_head_dim=d.head_dim,
        in_channels=d.in_channels, out_channels=d.out_channels, text_dim=d.text_dim, freq_dim=d.freq_dim,
        ffn_dim=d.ffn_dim, num_layers=d.num_layers, rope_max_seq_len=32, image_dim=d.image_dim,
        added_kv_proj_dim=d.dim,
    )  # fmt: skip
    encoder = CLIPVisionModel(
        CLIPVisionConfig(
            hidden_size=c.width, intermediate_size=c.mlp, num_hidden_layers=c.layers,
            num_attention_heads=c.heads, image_size=c.image_size, patch_size=c.patch, hidden_act="gelu",
        )
    )  # fmt: skip
    processor = CLIPImageProcessor(
        size={"shortest_edge": c.image_size}, crop_size={"height": c.image_size, "width": c.image_size}
    )
    pipe: Any = WanImageToVideoPipeline(  # type: ignore[no-untyped-call]
        tokenizer=single.tokenizer,
        text_encoder=single.text_encoder,
        vae=single.vae,
        scheduler=single.scheduler,
        image_processor=processor,
        image_encoder=encoder,
        transformer=transformer,
    )
    pipe.set_progress_bar_config(disable=True)
    modules = torch.nn.ModuleDict(
        {
            "text_encoder": pipe.text_encoder,
            "image_encoder": encoder,
            "transformer": transformer,
            "vae": pipe.vae,
        }
    )
    image = Image.new("RGB", (w.width, w.height), (128, 64, 32))

    return ReferenceCall(modules, pipeline_call(pipe, w, image=image))


def tiny_pipeline_call(w: Workload) -> ReferenceCall:
    """The tiny pipeline, and its call for ``w``."""
    import torch

    pipe = tiny_pipeline()
    modules = torch.nn.ModuleDict(
        {"text_encoder": pipe.text_encoder, "transformer": pipe.transformer, "vae": pipe.vae}
    )

    return ReferenceCall(modules, pipeline_call(pipe, w))


def parallel_diffusion_core(w: Workload, stage: str, layout: Any, device: str) -> ReferenceCall:
    """The DiT under diffusers' own context parallelism (``enable_parallelism`` with a
    ``ContextParallelConfig`` of the layout's Ulysses and ring degrees), built while the
    framework holds a fake process group of ``layout.gpus`` ranks; counted on rank 0. Ulysses
    runs with the ``native`` attention backend, ring with ``_native_flash`` (the native one
    returns no log-sum-exp, which ring attention needs).

    With the DiT in ``layout.fsdp``, its weights are also sharded by FSDP2 (``fully_shard`` of
    each block, then of the whole model, over all ranks), which cannot shard meta tensors: the
    module is then built on fake CPU tensors under a ``FakeTensorMode`` the count runs in. The
    device meshes are built before it (they read their rank from real tensors)."""
    import torch.distributed as dist
    from diffusers.models._modeling_parallel import ContextParallelConfig

    if stage == "text_encoder":
        return _sharded_text_encoder(w, layout)
    if stage != "diffusion_core":
        raise ValueError(f"only diffusion_core runs under context parallelism, not {stage}")
    mesh = dist.device_mesh.init_device_mesh(
        "cpu", (layout.ring, layout.ulysses), mesh_dim_names=("ring", "ulysses")
    )
    config = ContextParallelConfig(ulysses_degree=layout.ulysses, ring_degree=layout.ring, mesh=mesh)
    backend = "native" if layout.ring == 1 else "_native_flash"
    if stage not in layout.fsdp:
        call = diffusion_core(w, device)
        call.module.set_attention_backend(backend)
        call.module.enable_parallelism(config=config)
        return call
    from torch._subclasses.fake_tensor import FakeTensorMode

    mesh["ring", "ulysses"]._flatten()  # as enable_parallelism does, before the fake mode
    shards = dist.device_mesh.init_device_mesh("cpu", (layout.gpus,))
    fake = FakeTensorMode()
    with fake:
        call = diffusion_core(w, FAKE)
        model = call.module
        model.set_attention_backend(backend)
        model.enable_parallelism(config=config)
        _fully_shard(model, model.blocks, shards)
    return ReferenceCall(model, call.run, mode=fake)


def _sharded_text_encoder(w: Workload, layout: Any) -> ReferenceCall:
    """UMT5's encoder with its weights sharded by FSDP2 over every rank (``fully_shard`` of each
    block, then of the whole model: the official ``--t5_fsdp`` wraps each block), on fake CPU
    tensors under the ``FakeTensorMode`` the count runs in. Sequence parallelism leaves it whole:
    every rank encodes the whole prompt."""
    import torch.distributed as dist
    from torch._subclasses.fake_tensor import FakeTensorMode

    if "text_encoder" not in layout.fsdp:
        raise ValueError("the text encoder splits only under FSDP: every rank runs it whole otherwise")
    shards = dist.device_mesh.init_device_mesh("cpu", (layout.gpus,))
    fake = FakeTensorMode()
    with fake:
        call = text_encoder(w, FAKE)
        model = call.module
        _fully_shard(model, model.encoder.block, shards)
    return ReferenceCall(model, call.run, mode=fake)


def _fully_shard(model: Any, blocks: Any, mesh: Any) -> None:
    """FSDP2 as the official ``--dit_fsdp``/``--t5_fsdp`` wrap: each block a unit of its own, then
    the whole model (what is left: embeddings, norms, heads)."""
    from torch.distributed.fsdp import fully_shard

    for block in blocks:
        fully_shard(block, mesh=mesh)
    fully_shard(model, mesh=mesh)
