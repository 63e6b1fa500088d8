"""How people run the Wan pipelines, as runtimes for ``flopcheck report --runtime``: per stage the
weights' dtype, the compute precision, the device, where the weights live, and the attention
kernel, each as the published code does it.

- ``official``: the official ``generate.py`` on one GPU with its defaults there
  (``--offload_model True``). Wan2.1: the UMT5 encoder (bf16) and CLIP (fp16) are moved to the GPU
  to encode and back (``text2video.py``/``image2video.py``: ``.to(device)``, then ``.cpu()``); the
  DiT is loaded onto the GPU at start-up and moved to the CPU after the last step, before the VAE
  decode; the VAE stays on the GPU. Wan2.2 (``init_on_cpu=True``): each DiT is moved to the GPU
  for its steps and back. The DiT's checkpoint is fp32 and runs under bf16 autocast; the VAE runs in
  fp32 (its convolutions on TF32 tensor cores: cuDNN's default ``allow_tf32``). Attention is
  ``flash_attn`` (FlashAttention-2), the package ``requirements.txt`` installs;
  ``wan/modules/attention.py`` prefers FlashAttention-3 only when ``flash_attn_interface`` is
  importable, which needs a separate build.
- ``official-fa3``: the same with FlashAttention-3 installed (Hopper; elsewhere FlashAttention-2).
- ``official-no-offload``: ``--offload_model False``: every model stays on the GPU.
- ``official-t5-cpu``: ``--t5_cpu``: the text encoder runs on the CPU (not timed).
- ``official-convert``: Wan2.2's ``--convert_model_dtype``: the DiTs converted to bf16 (no casts).
- ``diffusers``: the diffusers examples: UMT5 and the DiT in bf16, the VAE and CLIP in fp32;
  everything on the GPU; torch's SDPA.
- ``diffusers-offload``: the same with ``enable_model_cpu_offload()``: each model moved to the GPU
  when it runs and back when the next one does.
- ``fp8``: the DiT's weights and matmuls in fp8 (bf16 activations), the rest as diffusers.
"""

from __future__ import annotations

from collections.abc import Iterable

import attrs

from pytest_flopcheck import Runtime, StageRuntime
from wan_models.wan2_1.parallel import diffusers_layout, official_layout

_DIFFUSERS = {
    "text": StageRuntime("bf16", "bf16"),
    "image": StageRuntime("fp32", "tf32"),
    "dit": StageRuntime("bf16", "bf16"),
    "vae": StageRuntime("fp32", "tf32"),
}

ELEMENTWISE_NOTE = (
    "Elementwise traffic is the diffusers implementation's (verified by test_traffic); the official "
    "code keeps the DiT's residual stream in fp32 and applies RoPE in float64, which moves more bytes "
    "(not modelled)."
)
OFFICIAL_NOTES = (
    "The official generate.py on one GPU: model loading from disk is not counted; one generation is "
    "the text encoding, the sampling steps and the VAE decode, with the host-GPU moves between them.",
    "Attention: flash_attn (FlashAttention-2), the package the official requirements.txt installs.",
    "DiT weights in fp32 under bf16 autocast: on one GPU each weight is cast to bf16 at every call "
    "(read in fp32, written in bf16) and the cast copy is live beside its matmul; under FSDP the "
    "weights are gathered in bf16 instead.",
    ELEMENTWISE_NOTE,
)


MULTI_GPU_NOTE = (
    "On N > 1 GPUs: torchrun --nproc_per_node=N generate.py --dit_fsdp --t5_fsdp --ulysses_size N "
    "(offload off, so every model stays on the GPU): the DiT's and T5's weights sharded by FSDP "
    "(fp32 shards, each block gathered in bf16 for its forward), Ulysses over all N, the VAE decode "
    "on rank 0 while the others wait."
)


def _role(stage: str) -> str:
    if stage == "text_encoder":
        return "text"
    if stage == "image_encoder":
        return "image"
    if stage.startswith("vae"):
        return "vae"
    return "dit"


def runtimes(stages: Iterable[str], dit_placement: str = "offloaded_after") -> dict[str, Runtime]:
    """The runtimes of a Wan pipeline with ``stages``; ``dit_placement`` is where the official
    one-GPU run keeps the DiT: loaded at start-up and offloaded after sampling (Wan2.1), or moved
    in for its steps and out after them (Wan2.2, ``init_on_cpu``)."""
    names = list(stages)
    official = {
        "text": StageRuntime("bf16", "bf16", placement="moved"),
        "image": StageRuntime("fp16", "fp16", placement="moved"),
        "dit": StageRuntime("fp32", "bf16", placement=dit_placement, autocast=True),
        "vae": StageRuntime("fp32", "tf32"),
    }
    no_offload = {role: attrs.evolve(sr, placement="resident") for role, sr in official.items()}
    offload = {role: attrs.evolve(sr, placement="moved") for role, sr in _DIFFUSERS.items()}

    def make(description: str, roles: dict[str, StageRuntime], **options: object) -> Runtime:
        return Runtime(
            description=description,
            stages={s: roles[_role(s)] for s in names},
            **options,  # type: ignore[arg-type]
        )

    made = {
        "official": make(
            "official generate.py with its defaults (one GPU: --offload_model True; N GPUs: FSDP and "
            "Ulysses, see the notes): fp32 DiT under bf16 autocast, bf16 T5, fp16 CLIP, fp32 VAE, "
            "FlashAttention-2",
            official,
            attention="fa2",
            notes=(*OFFICIAL_NOTES, MULTI_GPU_NOTE),
            layout=official_layout,
        ),
        "official-fa3": make(
            "official generate.py with its defaults, FlashAttention-3 installed (Hopper)",
            official,
            attention="fa3",
            notes=(*OFFICIAL_NOTES[:1], *OFFICIAL_NOTES[2:], MULTI_GPU_NOTE),
            layout=official_layout,
        ),
        "official-no-offload": make(
            "official generate.py with --offload_model False: every model stays on the GPU",
            no_offload,
            attention="fa2",
            notes=OFFICIAL_NOTES,
        ),
        "official-t5-cpu": make(
            "official generate.py with --t5_cpu: the text encoder runs on the CPU",
            {**official, "text": StageRuntime("bf16", "bf16", "cpu")},
            attention="fa2",
            notes=OFFICIAL_NOTES,
        ),
        "diffusers": make(
            "diffusers examples: bf16 text encoder and DiT, fp32 VAE and CLIP, torch SDPA",
            _DIFFUSERS,
            notes=(
                "Attention: torch's scaled_dot_product_attention (its flash backend is FlashAttention-2).",
                "On N GPUs: diffusers' context parallelism, Ulysses over all N (enable_parallelism with "
                "ContextParallelConfig(ulysses_degree=N)); weights replicated on every GPU.",
            ),
            layout=diffusers_layout,
        ),
        "diffusers-offload": make(
            "diffusers with enable_model_cpu_offload(): each model moved to the GPU when it runs",
            offload,
            notes=(
                "enable_model_cpu_offload(): each model is moved to the GPU when it is called and back "
                "when the next one is, the last one at the end of the call.",
            ),
        ),
        "fp8": make(
            "DiT weights and matmuls in fp8, the rest as diffusers",
            {**_DIFFUSERS, "dit": StageRuntime("fp8", "fp8")},
        ),
    }
    if dit_placement == "moved":  # Wan2.2's generate.py offers --convert_model_dtype
        made["official-convert"] = make(
            "official generate.py, one GPU, --offload_model True --convert_model_dtype: bf16 DiTs",
            {**official, "dit": StageRuntime("bf16", "bf16", placement="moved")},
            attention="fa2",
            notes=(*OFFICIAL_NOTES[:2], ELEMENTWISE_NOTE, MULTI_GPU_NOTE),
            layout=official_layout,
        )
    return made
