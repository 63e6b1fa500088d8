"""The workload of one Wan2.2 generation, validated at construction.

Geometry follows diffusers (the reference): frames that are not 4n+1 are first rounded down to
4n+1 (``num_frames // 4 · 4 + 1``), so a multiple of 4 gets one more latent frame than the
official code's floor rule; a warning says so.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from wan_models.wan2_1.config import T2V_14B, WAN_VAE, DiTConfig
from wan_models.wan2_1.workload import (
    DTYPE_BYTES,
    WorkloadError,
    _dtype,
    _flag,
    _help,
    _multiple_of_16,
    _positive_int,
)
from wan_models.wan2_1.workload import Workload as Wan21Workload


@attrs.frozen
class Variant:
    """One Wan2.2 model as users name it: its two experts' DiT, where the pipeline switches
    between them, and its official sampling settings."""

    name: str
    dit: DiTConfig
    boundary_ratio: float
    steps: int
    flow_shift: float
    sizes: tuple[tuple[int, int], ...]
    image: bool = False
    """Image-to-video: the conditioning video (the image, then zeros) is VAE-encoded once."""


T2V_A14B = Variant(
    "T2V-A14B",
    attrs.evolve(T2V_14B, name="T2V-A14B"),
    boundary_ratio=0.875,
    steps=40,
    flow_shift=12.0,
    sizes=((480, 832), (832, 480), (720, 1280), (1280, 720)),
)
I2V_A14B = Variant(
    "I2V-A14B",
    attrs.evolve(T2V_14B, name="I2V-A14B", in_channels=36),  # 16 latent + 4 mask + 16 condition
    boundary_ratio=0.9,
    steps=40,
    flow_shift=5.0,
    sizes=T2V_A14B.sizes,
    image=True,
)
VARIANTS: Final = {v.name: v for v in (T2V_A14B, I2V_A14B)}
OFFICIAL_FRAMES: Final = 81


def _variant(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in VARIANTS:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(VARIANTS)}")


def _shift(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise WorkloadError(attribute.name, value, "it must be a positive number")


def _as_float(value: object) -> object:
    return float(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _default(name: str) -> Any:
    # An unknown variant falls back here and is then rejected by its own validator.
    return attrs.Factory(lambda self: getattr(VARIANTS.get(self.variant, T2V_A14B), name), takes_self=True)


@attrs.frozen(kw_only=True)
class Workload:
    """One Wan2.2 generation (text-to-video, or image-to-video for I2V-A14B: one conditioning
    image per generation). ``steps`` and ``flow_shift`` default to the variant's official
    settings; they decide which expert runs each step."""

    variant: str = attrs.field(default="T2V-A14B", validator=_variant, metadata=_help("model variant"))
    batch_size: int = attrs.field(default=1, validator=_positive_int, metadata=_help("videos per generation"))
    frames: int = attrs.field(default=81, validator=_positive_int, metadata=_help("video frames (4n+1)"))
    height: int = attrs.field(default=720, validator=_multiple_of_16, metadata=_help("height in pixels"))
    width: int = attrs.field(default=1280, validator=_multiple_of_16, metadata=_help("width in pixels"))
    steps: int = attrs.field(
        default=_default("steps"),
        validator=_positive_int,
        metadata=_help("denoising steps (default: the variant's official 40)"),
    )
    flow_shift: float = attrs.field(
        default=_default("flow_shift"),
        converter=_as_float,
        validator=_shift,
        metadata=_help("the scheduler's flow shift (default: official, T2V-A14B 12, I2V-A14B 5)"),
    )
    text_len: int = attrs.field(default=512, validator=_positive_int, metadata=_help("padded text length"))
    guidance: bool = attrs.field(
        default=True, validator=_flag, metadata=_help("classifier-free guidance (cond + uncond forwards)")
    )
    dtype: str = attrs.field(
        default="bf16", validator=_dtype, metadata=_help("dtype for memory and I/O figures")
    )

    @property
    def spec(self) -> Variant:
        return VARIANTS[self.variant]

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def pipeline_frames(self) -> int:
        """Frames after diffusers' rounding to 4n+1."""
        stride = WAN_VAE.temporal_stride
        return self.frames if (self.frames - 1) % stride == 0 else self.frames // stride * stride + 1

    def as_wan2_1(self) -> Wan21Workload:
        """The same geometry as a Wan2.1 workload, to build the shared stages (text encoder, one
        expert's DiT forward, the Wan-VAE decode) with Wan2.1's builders."""
        return Wan21Workload(
            batch_size=self.batch_size,
            frames=self.pipeline_frames,
            height=self.height,
            width=self.width,
            steps=self.steps,
            text_len=self.text_len,
            guidance=self.guidance,
            dtype=self.dtype,
            dit_config=self.spec.dit,
        )

    def warnings(self) -> list[str]:
        notes = []
        stride = WAN_VAE.temporal_stride
        if self.pipeline_frames != self.frames:
            official = (self.frames - 1) // stride + 1
            latent = (self.pipeline_frames - 1) // stride + 1
            notes.append(
                f"frames={self.frames} is not 4n+1: diffusers (modeled) rounds it to {self.pipeline_frames} "
                f"({latent} latent frames); the official code's floor rule gives {official}"
            )
        if (self.height, self.width) not in self.spec.sizes:
            sizes = ", ".join(f"{h}×{w}" for h, w in self.spec.sizes)
            notes.append(
                f"{self.height}×{self.width} is not an official size of {self.variant} ({sizes}): "
                "the counts are exact for this architecture, but the model was not trained for it"
            )
        if self.frames > OFFICIAL_FRAMES:
            notes.append(f"frames={self.frames} exceeds the official {OFFICIAL_FRAMES}: an extrapolation")
        return notes

    def describe(self) -> dict[str, Any]:
        from wan_models.wan2_2.schedule import expert_steps

        geometry = self.as_wan2_1()
        high, low = expert_steps(self.steps, self.flow_shift, self.spec.boundary_ratio)
        return {
            **attrs.asdict(self),
            "boundary_ratio": self.spec.boundary_ratio,
            "high_noise_steps": high,
            "low_noise_steps": low,
            "pipeline_frames": self.pipeline_frames,
            "latent_frames": geometry.latent_frames,
            "tokens_per_sample": geometry.tokens,
        }


STANDARD_WORKLOADS: Final = {
    f"{variant}-{name}": Workload(variant=variant, height=height, width=width)
    for variant in VARIANTS
    for name, (height, width) in (("480p", (480, 832)), ("720p", (720, 1280)))
}
"""Each A14B variant at its two official sizes, 81 frames, official sampling."""
