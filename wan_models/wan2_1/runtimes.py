"""How people run the Wan pipelines, as runtimes for ``flopcheck report --runtime``: per stage
the weights' dtype, the compute precision and the device, and whether weights stay resident.

- ``diffusers``: the diffusers examples: UMT5 and the DiT in bf16, the VAE and the CLIP image
  encoder in fp32 (fp32 matmuls on TF32 tensor cores); everything on the GPU.
- ``diffusers-offload``: the same dtypes with ``enable_model_cpu_offload()``: one model on the
  GPU at a time.
- ``official``: the official code: DiT weights in fp32 under bf16 autocast, UMT5 in bf16, CLIP in
  fp16, the VAE in fp32; everything on the GPU.
- ``official-t5-cpu``: the official code with ``--t5_cpu``: the text encoder runs on the CPU.
- ``fp8``: the DiT's weights and matmuls in fp8 (bf16 activations), the rest as diffusers.
"""

from __future__ import annotations

from collections.abc import Iterable

from pytest_flopcheck import Runtime, StageRuntime

_DIFFUSERS = {
    "text": StageRuntime("bf16", "bf16"),
    "image": StageRuntime("fp32", "tf32"),
    "dit": StageRuntime("bf16", "bf16"),
    "vae": StageRuntime("fp32", "tf32"),
}
_OFFICIAL = {
    "text": StageRuntime("bf16", "bf16"),
    "image": StageRuntime("fp16", "fp16"),
    "dit": StageRuntime("fp32", "bf16"),
    "vae": StageRuntime("fp32", "tf32"),
}


def _role(stage: str) -> str:
    if stage == "text_encoder":
        return "text"
    if stage == "image_encoder":
        return "image"
    if stage.startswith("vae"):
        return "vae"
    return "dit"


def runtimes(stages: Iterable[str]) -> dict[str, Runtime]:
    """The runtimes of a Wan pipeline with ``stages``."""
    names = list(stages)

    def make(
        description: str, roles: dict[str, StageRuntime], resident: str = "all", **over: StageRuntime
    ) -> Runtime:
        table = {**roles, **over}
        return Runtime(description=description, stages={s: table[_role(s)] for s in names}, resident=resident)

    return {
        "diffusers": make("diffusers examples: bf16 text encoder and DiT, fp32 VAE and CLIP", _DIFFUSERS),
        "diffusers-offload": make(
            "diffusers with enable_model_cpu_offload(): one model on the GPU at a time",
            _DIFFUSERS,
            "one_stage",
        ),
        "official": make(
            "official code: fp32 DiT weights under bf16 autocast, bf16 T5, fp16 CLIP, fp32 VAE", _OFFICIAL
        ),
        "official-t5-cpu": make(
            "official code with --t5_cpu: the text encoder on the CPU",
            _OFFICIAL,
            text=StageRuntime("bf16", "bf16", "cpu"),
        ),
        "fp8": make(
            "DiT weights and matmuls in fp8, the rest as diffusers",
            _DIFFUSERS,
            dit=StageRuntime("fp8", "fp8"),
        ),
    }
