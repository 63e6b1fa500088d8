"""The workload: what one text-to-video generation asks for, validated at construction."""

from __future__ import annotations

from typing import Any, Final

import attrs

from pytest_flopcheck import DTYPES, WorkloadError
from wan_models.wan2_1.config import OFFICIAL_FRAMES, OFFICIAL_SIZES, VARIANTS, WAN_VAE, DiTConfig, VAEConfig

DTYPE_BYTES: Final = {name: dtype.bytes for name, dtype in DTYPES.items()}
"""The framework's dtypes (fp32, bf16, fp16, fp8), by element size."""


def _positive_int(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise WorkloadError(attribute.name, value, "it must be a positive integer")


def _multiple_of_16(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    _positive_int(instance, attribute, value)
    assert isinstance(value, int)
    if value % 16:
        raise WorkloadError(
            attribute.name, value, "it must be a positive multiple of 16 (VAE stride 8 × patch 2)"
        )


def _variant(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in VARIANTS:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(VARIANTS)}")


IMAGE_TEXT_LEN: Final = 512
"""diffusers' image branch splits the cross-attention keys at 512 text tokens (hard-coded)."""


def _image_text_len(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if instance.dit.image_dim is not None and value != IMAGE_TEXT_LEN:
        raise WorkloadError(
            attribute.name,
            value,
            f"the image-to-video variants take exactly {IMAGE_TEXT_LEN} text tokens (diffusers separates "
            f"image and text keys at {IMAGE_TEXT_LEN})",
        )


def _dtype(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in DTYPE_BYTES:
        raise WorkloadError(attribute.name, value, f"choose one of {', '.join(DTYPE_BYTES)}")


def _flag(instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if not isinstance(value, bool):
        raise WorkloadError(attribute.name, value, "it must be true or false")


def _help(text: str) -> dict[str, str]:
    return {"help": text}


@attrs.frozen(kw_only=True)
class Workload:
    """One Wan2.1 generation: text-to-video, or image-to-video and first-last-frame-to-video
    for those variants (one conditioning image, or a first and a last frame).

    ``frames`` is the requested video length; the latent length follows the official rule
    ``(frames - 1) // 4 + 1`` (diffusers first rounds frames to 4n+1: a warning says when the
    two differ). ``text_len`` is the padded text length the encoder and cross-attention see.
    """

    variant: str = attrs.field(default="T2V-14B", validator=_variant, metadata=_help("DiT variant"))
    batch_size: int = attrs.field(default=1, validator=_positive_int, metadata=_help("videos per generation"))
    frames: int = attrs.field(default=81, validator=_positive_int, metadata=_help("video frames (4n+1)"))
    height: int = attrs.field(default=720, validator=_multiple_of_16, metadata=_help("height in pixels"))
    width: int = attrs.field(default=1280, validator=_multiple_of_16, metadata=_help("width in pixels"))
    steps: int = attrs.field(default=50, validator=_positive_int, metadata=_help("denoising steps"))
    text_len: int = attrs.field(
        default=512, validator=[_positive_int, _image_text_len], metadata=_help("padded text length")
    )
    guidance: bool = attrs.field(
        default=True, validator=_flag, metadata=_help("classifier-free guidance (cond + uncond forwards)")
    )
    dtype: str = attrs.field(
        default="bf16", validator=_dtype, metadata=_help("dtype for memory and I/O figures")
    )
    dit_config: DiTConfig | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(DiTConfig)),
        metadata={"option": False},
    )
    """A DiT read from a checkpoint's config.json (``load_dit_config``), in place of ``variant``."""
    vae_config: VAEConfig | None = attrs.field(
        default=None,
        validator=attrs.validators.optional(attrs.validators.instance_of(VAEConfig)),
        metadata={"option": False},
    )
    """Another VAE than Wan-VAE (Wan2.2's), whose compression sets the latent geometry."""

    @property
    def vae(self) -> VAEConfig:
        return self.vae_config if self.vae_config is not None else WAN_VAE

    @property
    def dit(self) -> DiTConfig:
        return self.dit_config if self.dit_config is not None else VARIANTS[self.variant]

    @property
    def dtype_bytes(self) -> int:
        return DTYPE_BYTES[self.dtype]

    @property
    def latent_frames(self) -> int:
        return (self.frames - 1) // self.vae.temporal_stride + 1

    @property
    def output_frames(self) -> int:
        """Frames the VAE decodes to: 1 + 4·(latent frames − 1)."""
        return 1 + self.vae.temporal_stride * (self.latent_frames - 1)

    @property
    def latent_height(self) -> int:
        return self.height // self.vae.spatial_stride

    @property
    def latent_width(self) -> int:
        return self.width // self.vae.spatial_stride

    @property
    def tokens(self) -> int:
        """Video tokens per sample after the (1, 2, 2) patch embedding."""
        pt, ph, pw = self.dit.patch_size
        return (self.latent_frames // pt) * (self.latent_height // ph) * (self.latent_width // pw)

    def warnings(self) -> list[str]:
        """What a reader should know about how this workload is interpreted."""
        notes = []
        if (self.frames - 1) % WAN_VAE.temporal_stride:
            rounded = self.frames // WAN_VAE.temporal_stride * WAN_VAE.temporal_stride + 1
            notes.append(
                f"frames={self.frames} is not 4n+1: the official rule gives {self.latent_frames} latent "
                f"frames, decoded to {self.output_frames} output frames (diffusers would first round frames "
                f"to {rounded})"
            )
        if self.dit_config is not None:
            notes.append(
                f"the DiT is {self.dit_config.name!r}, read from a checkpoint's config.json (dim "
                f"{self.dit_config.dim}, {self.dit_config.num_layers} layers); the variant field is not used"
            )
        elif (self.height, self.width) not in OFFICIAL_SIZES[self.variant]:
            official = ", ".join(f"{h}×{w}" for h, w in OFFICIAL_SIZES[self.variant])
            notes.append(
                f"{self.height}×{self.width} is not an official size of {self.variant} ({official}): "
                "the counts are exact for this architecture, but the model was not trained for it "
                "(an extrapolation)"
            )
        if self.frames > OFFICIAL_FRAMES:
            notes.append(
                f"frames={self.frames} exceeds the official {OFFICIAL_FRAMES}: an extrapolation beyond the "
                "lengths the model was trained for"
            )
        return notes

    def describe(self) -> dict[str, Any]:
        """The workload fields and the geometry derived from them."""
        fields = attrs.asdict(self)
        for internal in (
            "dit_config",
            "vae_config",
        ):  # shown only when a loaded config replaces the variant's
            if fields[internal] is None:
                del fields[internal]
        return {
            **fields,
            "latent_frames": self.latent_frames,
            "output_frames": self.output_frames,
            "latent_height": self.latent_height,
            "latent_width": self.latent_width,
            "tokens_per_sample": self.tokens,
        }


STANDARD_WORKLOADS: Final = {
    # The seed specification's standard set (T2V-14B) ...
    "W-001": Workload(batch_size=1, steps=1, frames=4, height=256, width=256, text_len=64),
    "W-002": Workload(batch_size=1, steps=50, frames=16, height=512, width=512, text_len=512),
    "W-003": Workload(batch_size=1, steps=50, frames=16, height=720, width=1280, text_len=512),
    # ... and the 1.3B model at its official 480p size and default length.
    "W-004": Workload(
        variant="T2V-1.3B", batch_size=1, steps=50, frames=81, height=480, width=832, text_len=512
    ),
    # Image-to-video and first-last-frame-to-video at their official sizes, 81 frames, the official
    # code's 40 steps.
    "I2V-480P": Workload(variant="I2V-14B-480P", steps=40, frames=81, height=480, width=832),
    "I2V-720P": Workload(variant="I2V-14B-720P", steps=40, frames=81, height=720, width=1280),
    "FLF2V-720P": Workload(variant="FLF2V-14B", steps=40, frames=81, height=720, width=1280),
}
