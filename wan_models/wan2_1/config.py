"""Architecture numbers of the Wan2.1 models (text-, image- and first-last-frame-to-video).

The DiT configs can be read from a checkpoint folder's ``config.json`` (official Wan format or
diffusers format). Only JSON is read: nothing in a model folder is executed or unpickled.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs

from pytest_flopcheck import FileProblem, read_json, shorten

CONFIG_MAX_BYTES = 2**20
"""A checkpoint's config.json is a few hundred bytes; anything past a MiB is not one."""


class ConfigError(ValueError):
    """A checkpoint config that cannot be used; the message names the file and the field."""


@attrs.frozen
class DiTConfig:
    """The diffusion transformer (official ``WanModel``; diffusers ``WanTransformer3DModel``)."""

    name: str
    dim: int
    ffn_dim: int
    num_heads: int
    num_layers: int
    in_channels: int = 16
    out_channels: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    eps: float = 1e-6
    cross_attn_norm: bool = True
    image_dim: int | None = None
    """Width of the CLIP image features an image-to-video DiT takes (1280), else None."""
    image_frames: int = 0
    """Conditioning images: 0 text-to-video, 1 image-to-video, 2 first-last-frame-to-video."""
    image_tokens_per_image: int = 257
    """CLIP tokens per image (ViT-H/14 at 224 px: 16 × 16 patches and the class token)."""
    expand_timesteps: bool = False
    """One timestep per token (Wan2.2 TI2V-5B): the time embedding and projection run per token."""

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    @property
    def image_tokens(self) -> int:
        """Image keys of the cross-attention's image branch: 257 CLIP tokens per image."""
        return self.image_tokens_per_image * self.image_frames if self.image_dim is not None else 0

    @property
    def pos_embed_seq_len(self) -> int | None:
        """The image embedder's learned positions (first-last-frame models only)."""
        return self.image_tokens if self.image_frames > 1 else None


@attrs.frozen
class ImageEncoderConfig:
    """CLIP ViT-H/14 vision tower (transformers ``CLIPVisionModel``) of the image-to-video
    models; the pipeline keeps its penultimate hidden states, but every layer runs."""

    width: int = 1280
    layers: int = 32
    heads: int = 16
    mlp: int = 5120
    image_size: int = 224
    patch: int = 14

    @property
    def tokens(self) -> int:
        return (self.image_size // self.patch) ** 2 + 1

    @property
    def head_dim(self) -> int:
        return self.width // self.heads


@attrs.frozen
class TextEncoderConfig:
    """UMT5-XXL encoder (official ``umt5_xxl``; transformers ``UMT5EncoderModel``)."""

    vocab_size: int = 256_384
    d_model: int = 4096
    d_kv: int = 64
    d_ff: int = 10_240
    num_layers: int = 24
    num_heads: int = 64
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv


@attrs.frozen
class VAEConfig:
    """Wan-VAE (diffusers ``AutoencoderKLWan`` defaults)."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    out_channels: int = 3
    temporal_stride: int = 4
    spatial_stride: int = 8
    decoder_base_dim: int | None = None
    """The decoder's base width when it differs from the encoder's (Wan2.2: 256 vs 160)."""
    residual: bool = False
    """Wan2.2's residual down and up blocks (average-pool / duplicate shortcuts, 0 FLOPs)."""
    patch: int = 1
    """Pixels folded into channels before the encoder and unfolded after the decoder (Wan2.2: 2)."""
    in_channels: int = 3
    """Channels the encoder's first conv takes (after patchify: 3 · patch²)."""

    @property
    def decoder_dim(self) -> int:
        return self.decoder_base_dim if self.decoder_base_dim is not None else self.base_dim


T2V_14B = DiTConfig(name="T2V-14B", dim=5120, ffn_dim=13_824, num_heads=40, num_layers=40)
T2V_1_3B = DiTConfig(name="T2V-1.3B", dim=1536, ffn_dim=8960, num_heads=12, num_layers=30)
# Image-to-video: 16 latent + 4 mask + 16 condition channels in, CLIP features through an image
# branch of every cross-attention.
I2V_14B_480P = attrs.evolve(T2V_14B, name="I2V-14B-480P", in_channels=36, image_dim=1280, image_frames=1)
I2V_14B_720P = attrs.evolve(I2V_14B_480P, name="I2V-14B-720P")
FLF2V_14B = attrs.evolve(I2V_14B_480P, name="FLF2V-14B", image_frames=2)
VARIANTS: dict[str, DiTConfig] = {
    c.name: c for c in (T2V_14B, T2V_1_3B, I2V_14B_480P, I2V_14B_720P, FLF2V_14B)
}
UMT5_XXL = TextEncoderConfig()
CLIP_VIT_H = ImageEncoderConfig()
WAN_VAE = VAEConfig()
WAN22_VAE = VAEConfig(
    base_dim=160, decoder_base_dim=256, z_dim=48, residual=True, patch=2, in_channels=12, out_channels=12,
    spatial_stride=16,
)  # fmt: skip
"""The Wan2.2 VAE of TI2V-5B: 16× spatial compression (8 from the convolutions, 2 from patchify)."""

# Tiny configurations of the same architectures, for a real end-to-end WanPipeline run on CPU
# with random weights (the registration's generations).
TINY_DIT = DiTConfig(
    name="tiny", dim=8, ffn_dim=16, num_heads=2, num_layers=1, in_channels=4, out_channels=4, freq_dim=8,
    text_dim=8, text_len=8,
)  # fmt: skip
TINY_TEXT_ENCODER = TextEncoderConfig(vocab_size=6, d_model=8, d_kv=4, d_ff=16, num_layers=1, num_heads=2)
TINY_VAE = VAEConfig(base_dim=4, z_dim=4, dim_mult=(1, 1, 1, 1), num_res_blocks=1)
TINY_VAE22 = attrs.evolve(
    TINY_VAE, decoder_base_dim=4, residual=True, patch=2, in_channels=12, out_channels=12, spatial_stride=16
)
"""A tiny Wan2.2 VAE (residual blocks, patchify 2, 16× spatial compression)."""
TINY_IMAGE_ENCODER = ImageEncoderConfig(width=8, layers=1, heads=2, mlp=16, image_size=28, patch=14)
TINY_I2V_DIT = attrs.evolve(
    TINY_DIT, name="tiny-i2v", in_channels=2 * TINY_VAE.z_dim + 4, image_dim=8, image_frames=1,
    image_tokens_per_image=TINY_IMAGE_ENCODER.tokens,
)  # fmt: skip

OFFICIAL_SIZES: dict[str, tuple[tuple[int, int], ...]] = {
    "T2V-14B": ((720, 1280), (1280, 720), (480, 832), (832, 480)),
    "T2V-1.3B": ((480, 832), (832, 480)),
    "I2V-14B-480P": ((480, 832), (832, 480)),
    "I2V-14B-720P": ((720, 1280), (1280, 720)),
    "FLF2V-14B": ((720, 1280), (1280, 720)),
}
"""Official (height, width) pairs per variant."""
OFFICIAL_FRAMES = 81

# Field names per format: ours -> (official key, diffusers key).
_FIELDS = {
    "dim": ("dim", None),
    "ffn_dim": ("ffn_dim", "ffn_dim"),
    "num_heads": ("num_heads", "num_attention_heads"),
    "num_layers": ("num_layers", "num_layers"),
    "in_channels": ("in_dim", "in_channels"),
    "out_channels": ("out_dim", "out_channels"),
    "freq_dim": ("freq_dim", "freq_dim"),
    "text_dim": ("text_dim", "text_dim"),
    "text_len": ("text_len", None),
}


MAX_LAYERS = 1_000
"""The most DiT layers a config may give: the analytic tree holds one node per layer (the largest
published Wan DiT has 40), and a million-layer tree would take minutes and gigabytes to build."""


def _positive_int(path: Path, field: str, raw: dict[str, Any], limit: int = 2**31 - 1) -> int:
    if field not in raw:
        raise ConfigError(f"{path}: field {field!r} is missing")
    value = raw[field]
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= limit:
        raise ConfigError(
            f"{path}: field {field!r} is {shorten(value)}; it must be a positive integer of at most {limit:,}"
        )
    return value


def load_dit_config(path: str | Path, name: str | None = None) -> DiTConfig:
    """Read a DiT config from a checkpoint folder or a ``config.json``.

    A folder may hold ``config.json`` (official layout) or ``transformer/config.json``
    (diffusers layout). Either format is recognised by its keys.
    """
    path = Path(path)
    default_name = path.name if path.is_dir() else path.parent.name
    if path.is_dir():
        candidates = [path / "config.json", path / "transformer" / "config.json"]
        # A config.json that is there but is no regular file (a FIFO, a device, a symlink loop) is
        # found too, so that reading it names what is wrong with it.
        found = next((c for c in candidates if c.exists() or c.is_symlink()), None)
        if found is None:
            raise ConfigError(f"{path}: no config.json (looked for {', '.join(str(c) for c in candidates)})")
        path = found
    try:
        raw = read_json(path, max_bytes=CONFIG_MAX_BYTES)
    except FileProblem as exc:
        raise ConfigError(str(exc)) from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: must hold a JSON object, not {type(raw).__name__}")
    diffusers = "num_attention_heads" in raw or "attention_head_dim" in raw
    values: dict[str, Any] = {}
    for ours, (official_key, diffusers_key) in _FIELDS.items():
        key = diffusers_key if diffusers else official_key
        if key is not None and (key in raw or ours not in ("text_len", "freq_dim", "text_dim")):
            values[ours] = _positive_int(path, key, raw, MAX_LAYERS if ours == "num_layers" else 2**31 - 1)
    if diffusers:
        values["dim"] = values["num_heads"] * _positive_int(path, "attention_head_dim", raw)
        patch = raw.get("patch_size", [1, 2, 2])
        if not (
            isinstance(patch, list) and len(patch) == 3 and all(isinstance(p, int) and p > 0 for p in patch)
        ):
            raise ConfigError(f"{path}: field 'patch_size' is {patch!r}; it must be three positive integers")
        if tuple(patch) != (1, 2, 2):
            raise ConfigError(f"{path}: field 'patch_size' is {patch!r}; only [1, 2, 2] is modeled")
        if raw.get("image_dim") is not None or raw.get("added_kv_proj_dim") is not None:
            raise ConfigError(
                f"{path}: field 'image_dim' is set: image-to-video DiTs are not read from config.json yet "
                "(use --variant I2V-14B-480P, I2V-14B-720P or FLF2V-14B)"
            )
        cross_norm = raw.get("cross_attn_norm", True)
    else:
        model_type = raw.get("model_type", "t2v")
        if model_type != "t2v":
            raise ConfigError(
                f"{path}: field 'model_type' is {model_type!r}; only 't2v' is read from config.json "
                "(use --variant for the image-to-video models)"
            )
        cross_norm = raw.get("cross_attn_norm", True)
    if not isinstance(cross_norm, bool):
        raise ConfigError(f"{path}: field 'cross_attn_norm' is {cross_norm!r}; it must be true or false")
    if values["dim"] % values["num_heads"]:
        raise ConfigError(
            f"{path}: field 'num_heads' is {values['num_heads']}, which does not divide dim {values['dim']}"
        )
    return DiTConfig(name=name or default_name or "custom", cross_attn_norm=cross_norm, **values)
