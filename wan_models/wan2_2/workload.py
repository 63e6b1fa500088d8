"""The workload of one Wan2.2 generation, validated at construction.

Geometry follows diffusers (the reference): frames that are not 4n+1 are first rounded down to
4n+1 (``num_frames // 4 · 4 + 1``), so a multiple of 4 gets one more latent frame than the
official code's floor rule; a warning says so.
"""

from __future__ import annotations

import math
from typing import Any, Final

import attrs

from pytest_flopcheck import WorkloadError
from wan_models.wan2_1.config import T2V_14B, WAN22_VAE, WAN_VAE, DiTConfig, VAEConfig
from wan_models.wan2_1.workload import (
    DTYPE_BYTES,
    _dtype,
    _flag,
    _help,
    _multiple_of_16,
    _positive_int,
)
from wan_models.wan2_1.workload import Workload as Wan21Workload


@attrs.frozen
class Variant:
    """One Wan2.2 model as users name it: its DiT (two experts of it, switched at
    ``boundary_ratio``, or one), its VAE, and its official settings."""

    name: str
    dit: DiTConfig
    boundary_ratio: float | None
    """Where the high-noise expert hands over to the low-noise one; None: a single DiT."""
    steps: int
    flow_shift: float
    sizes: tuple[tuple[int, int], ...]
    image: bool | None = False
    """True: image-to-video only; False: text-to-video only; None: either (TI2V)."""
    vae: VAEConfig = WAN_VAE
    frames: int = 81

    @property
    def experts(self) -> bool:
        return self.boundary_ratio is not None

    @property
    def pixel_multiple(self) -> int:
        """Height and width must be multiples of this: the VAE's compression times the patch."""
        return self.vae.spatial_stride * self.dit.patch_size[1]


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
TI2V_5B = Variant(
    "TI2V-5B",
    DiTConfig(
        name="TI2V-5B", dim=3072, ffn_dim=14_336, num_heads=24, num_layers=30, in_channels=48,
        out_channels=48, expand_timesteps=True,
    ),
    boundary_ratio=None,
    steps=50,
    flow_shift=5.0,
    sizes=((704, 1280), (1280, 704)),
    image=None,
    vae=WAN22_VAE,
    frames=121,
)  # fmt: skip
VARIANTS: Final = {v.name: v for v in (T2V_A14B, I2V_A14B, TI2V_5B)}
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


def _size(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    _multiple_of_16(instance, attribute, value)
    multiple = VARIANTS[instance.variant].pixel_multiple if instance.variant in VARIANTS else 16
    if isinstance(value, int) and value % multiple:
        raise WorkloadError(
            attribute.name, value, f"{instance.variant} needs a multiple of {multiple} (VAE stride × patch 2)"
        )


def _image(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    _flag(instance, attribute, value)
    fixed = VARIANTS[instance.variant].image if instance.variant in VARIANTS else None
    if fixed is not None and value != fixed:
        allowed = "it is image-to-video only" if fixed else "it takes no image (use I2V-A14B or TI2V-5B)"
        raise WorkloadError(attribute.name, value, f"{instance.variant}: {allowed}")


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
    frames: int = attrs.field(
        default=_default("frames"),
        validator=_positive_int,
        metadata=_help("video frames (4n+1; default: official)"),
    )
    height: int = attrs.field(
        default=attrs.Factory(
            lambda self: VARIANTS.get(self.variant, T2V_A14B).sizes[-1][1], takes_self=True
        ),
        validator=_size,
        metadata=_help("height in pixels (default: the variant's landscape size)"),
    )
    width: int = attrs.field(
        default=attrs.Factory(
            lambda self: VARIANTS.get(self.variant, T2V_A14B).sizes[-1][0], takes_self=True
        ),
        validator=_size,
        metadata=_help("width in pixels"),
    )
    image: bool = attrs.field(
        default=attrs.Factory(lambda self: bool(VARIANTS.get(self.variant, T2V_A14B).image), takes_self=True),
        validator=_image,
        metadata=_help("image-to-video (TI2V-5B: either; the A14B variants: fixed by the variant)"),
    )
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
        stride = self.spec.vae.temporal_stride
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
            vae_config=self.spec.vae,
        )

    def warnings(self) -> list[str]:
        notes = []
        stride = self.spec.vae.temporal_stride
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
        if not self.spec.dit.expand_timesteps:
            d, geometry = self.spec.dit, self.as_wan2_1()
            per_token = 2 * d.freq_dim * d.dim + 2 * d.dim * d.dim + 2 * d.dim * 6 * d.dim
            extra = self.batch_size * (geometry.tokens - 1) * per_token
            notes.append(
                f"the official Wan2.2 code embeds the timestep per token (in fp32) for {self.variant} too: "
                f"{extra:,} FLOPs more per DiT forward than diffusers, which this model follows"
            )
        if self.frames > self.spec.frames:
            notes.append(f"frames={self.frames} exceeds the official {self.spec.frames}: an extrapolation")
        return notes

    def describe(self) -> dict[str, Any]:
        from wan_models.wan2_2.schedule import expert_steps

        geometry = self.as_wan2_1()
        split: dict[str, Any] = {}
        if self.spec.boundary_ratio is not None:
            high, low = expert_steps(self.steps, self.flow_shift, self.spec.boundary_ratio)
            split = {
                "boundary_ratio": self.spec.boundary_ratio,
                "high_noise_steps": high,
                "low_noise_steps": low,
            }
        return {
            **attrs.asdict(self),
            **split,
            "pipeline_frames": self.pipeline_frames,
            "latent_frames": geometry.latent_frames,
            "tokens_per_sample": geometry.tokens,
        }


STANDARD_WORKLOADS: Final = {
    **{
        f"{variant}-{name}": Workload(variant=variant, height=height, width=width)
        for variant in ("T2V-A14B", "I2V-A14B")
        for name, (height, width) in (("480p", (480, 832)), ("720p", (720, 1280)))
    },
    "TI2V-5B-t2v": Workload(variant="TI2V-5B"),
    "TI2V-5B-i2v": Workload(variant="TI2V-5B", image=True),
}
"""Each A14B variant at its two official sizes, 81 frames; TI2V-5B at its official 704×1280 and
121 frames, in text-to-video and image-to-video use; official sampling throughout."""


WAN21_STAGE: Final = {
    "text_encoder": "text_encoder",
    "vae_encode": "vae_encode",
    "diffusion_core": "diffusion_core",
    "diffusion_high_noise": "diffusion_core",
    "diffusion_low_noise": "diffusion_core",
    "vae_decode": "vae_decode",
}
"""The Wan2.1 stage whose builder (and reference) each stage shares."""


def encode_geometry(w: Workload) -> Wan21Workload:
    """The conditioning video diffusers encodes, whatever the batch (the latent condition is
    repeated over the batch): the image then zeros over every frame (A14B), or the image alone
    (TI2V-5B, whose per-token timesteps keep the first latent frame clean)."""
    frames = 1 if w.spec.dit.expand_timesteps else w.pipeline_frames
    return attrs.evolve(w.as_wan2_1(), batch_size=1, frames=frames)
