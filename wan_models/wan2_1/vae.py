"""Analytic model of the Wan-VAE decode (stage ``vae_decode``).

The decode is chunked and causal: ``post_quant_conv`` runs over the whole latent, then the
decoder runs once per latent frame with a feature cache of the last 2 frames of every cached
causal conv's input. So counted work follows the frames each level produces over all chunks:
the first chunk stays 1 frame at every level; every other chunk doubles at each temporal
upsample (whose time conv runs only on chunks after the first). Ids and references use
diffusers' ``AutoencoderKLWan`` names.
"""

from __future__ import annotations

from itertools import pairwise

import attrs

from pytest_flopcheck import CostNode, Metrics, closed_form_calls, group, join, layers, regroup
from wan_models.wan2_1.config import VAEConfig
from wan_models.wan2_1.workload import Workload

CACHE_FRAMES = 2
"""Frames of each cached conv's input kept between chunks (diffusers' CACHE_T)."""

FEATURE_CACHE_NOTE = (
    "cache_bytes is the decoder's feature cache: the last 2 frames of the input of every causal "
    "3×3×3 conv and time conv, kept between per-frame chunks"
)


@attrs.frozen
class Level:
    """Where the decoder is: channels, spatial size, and frames produced over all chunks."""

    height: int
    width: int
    first: int  # frames of the first chunk
    later: int  # frames of each later chunk
    chunks: int

    @property
    def frames(self) -> int:
        return self.first + (self.chunks - 1) * self.later


class _Builder:
    def __init__(self, w: Workload) -> None:
        self.b = w.batch_size
        self.db = w.dtype_bytes

    def causal_conv(
        self,
        node_id: str,
        ref: str,
        level: Level,
        c_in: int,
        c_out: int,
        kernel: int,
        *,
        cached: bool = True,
        fresh_input: bool = False,
    ) -> CostNode:
        """A WanCausalConv3d: same frames out as in per chunk. A 3×3×3 conv reads each chunk's
        frames after 2 more (cached frames, or zeros), padded by 1 on each side.

        Beside one call (one chunk) are live: the unpadded input when only its caller holds it
        (``fresh_input``), the caller's new cache entry (its input's last 2 frames), and while
        the padded input is built, the input joined to the cached frames (later chunks)."""
        spatial = (level.frames, level.height, level.width)
        pad = kernel // 2
        read = (level.frames + 2 * pad * _calls(level), level.height + 2 * pad, level.width + 2 * pad)
        frame = self.b * c_in * level.height * level.width * self.db
        scratch = level.frames * frame if fresh_input else 0
        if cached:
            scratch += (min(level.frames, CACHE_FRAMES) if level.first else CACHE_FRAMES) * frame
            if not level.first and pad:  # later chunk: cat(cached frames, input) before padding
                joined = (level.frames + 2 * pad) * frame
                scratch += max(
                    joined - self.b * c_out * level.frames * level.height * level.width * self.db, 0
                )
        node = layers.conv(
            node_id,
            "vae_conv3d",
            batch=self.b,
            in_channels=c_in,
            out_channels=c_out,
            kernel=(kernel,) * 3,
            in_spatial=read,
            out_spatial=spatial,
            bias=True,
            dtype_bytes=self.db,
            reference=ref,
            cache_elements=self.b * c_in * CACHE_FRAMES * level.height * level.width if cached else 0,
        )
        return attrs.evolve(node, scratch_bytes=scratch) if scratch else node

    def rms_norm(
        self, node_id: str, ref: str, level: Level, dim: int, *, input_held: bool = False
    ) -> CostNode:
        """WanRMS_norm: ``F.normalize`` of an fp32 copy of a half-precision input, so at its peak
        the input, its fp32 copy and the fp32 quotient are live (the output is cast after the
        copy is freed). ``input_held``: the input is the residual its block already holds."""
        rows = self.b * level.frames * level.height * level.width
        return layers.norm(
            node_id, "norm", rows=rows, dim=dim, params=dim, dtype_bytes=self.db, reference=ref,
            fp32_copies=2, input_held=input_held,
        )  # fmt: skip

    def activation(self, level: Level, channels: int) -> int:
        """Bytes of one call's ``channels``-channel activation at ``level`` (one chunk)."""
        return self.b * channels * level.frames * level.height * level.width * self.db

    def resnet(
        self, prefix: str, level: Level, c_in: int, c_out: int, *, parent_holds_input: bool = False
    ) -> CostNode:
        """WanResidualBlock. Its input stays live through it (its caller holds it, unless
        ``parent_holds_input`` counts it already), and so does the residual: the input itself, or
        the shortcut conv's output."""
        children = [
            self.rms_norm(join(prefix, "norm1"), f"{prefix}.norm1", level, c_in, input_held=True),
            self.causal_conv(
                join(prefix, "conv1"), f"{prefix}.conv1", level, c_in, c_out, 3, fresh_input=True
            ),
            self.rms_norm(join(prefix, "norm2"), f"{prefix}.norm2", level, c_out),
            self.causal_conv(
                join(prefix, "conv2"), f"{prefix}.conv2", level, c_out, c_out, 3, fresh_input=True
            ),
        ]
        if c_in != c_out:
            children.append(
                self.causal_conv(
                    join(prefix, "conv_shortcut"),
                    f"{prefix}.conv_shortcut",
                    level,
                    c_in,
                    c_out,
                    1,
                    cached=False,
                )
            )
        held = (0 if parent_holds_input else self.activation(level, c_in)) + (
            self.activation(level, c_out) if c_in != c_out else 0
        )
        return group(prefix, "vae_resnet", children, reference=prefix, held_bytes=held)

    def attention(self, prefix: str, level: Level, dim: int) -> CostNode:
        """Single-head self-attention over the h·w positions of each frame."""
        images = level.frames
        pixels = level.height * level.width

        def conv1x1(name: str, c_out: int) -> CostNode:
            return layers.conv(
                join(prefix, name),
                "vae_attention_projection",
                batch=self.b,
                in_channels=dim,
                out_channels=c_out,
                kernel=(1, 1),
                in_spatial=(images, pixels),
                out_spatial=(images, pixels),
                bias=True,
                dtype_bytes=self.db,
                reference=f"{prefix}.{name}",
            )

        core = layers.attention_core(
            join(prefix, "core"),
            "vae_attention_core",
            batch=self.b * images,
            heads=1,
            q_len=pixels,
            kv_len=pixels,
            head_dim=dim,
            dtype_bytes=self.db,
            reference=prefix,
        )
        children = [
            self.rms_norm(join(prefix, "norm"), f"{prefix}.norm", level, dim),
            conv1x1("to_qkv", 3 * dim),
            core,
            conv1x1("proj", dim),
        ]
        # the input is the residual, live through the block
        return group(
            prefix, "vae_attention", children, reference=prefix, held_bytes=self.activation(level, dim)
        )

    def mid_block(self, prefix: str, level: Level, dim: int) -> CostNode:
        """WanMidBlock: resnet, attention, resnet; its input stays live through it."""
        children = [
            self.resnet(f"{prefix}.resnets.0", level, dim, dim, parent_holds_input=True),
            self.attention(f"{prefix}.attentions.0", level, dim),
            self.resnet(f"{prefix}.resnets.1", level, dim, dim),
        ]
        return group(
            prefix, "vae_mid_block", children, reference=prefix, held_bytes=self.activation(level, dim)
        )

    def nearest(self, node_id: str, ref: str, level: Level, dim: int, *, input_held: bool) -> CostNode:
        """diffusers' ``WanUpsample``: nearest-exact ×2 of every frame in fp32,
        ``upsample(x.float()).type_as(x)`` (0 FLOPs). At its peak, the cast back, the input, the
        fp32 upsampled frames and the output are live (a half-precision input's fp32 copy is freed
        before it; an fp32 input is neither copied nor cast). ``input_held``: the input is one its
        parent already holds."""
        pixels = self.b * dim * level.frames * level.height * level.width
        metrics = Metrics(activation_bytes=4 * pixels * self.db, io_bytes=5 * pixels * self.db)
        upsampled = 4 * pixels * layers.FP32_BYTES if self.db < layers.FP32_BYTES else 0
        scratch = upsampled - (pixels * self.db if input_held else 0)
        return CostNode(
            node_id, "vae_upsample_nearest", metrics, reference=ref, scratch_bytes=scratch,
            note="nearest ×2 in fp32; elementwise, 0 FLOPs",
        )  # fmt: skip

    def upsample(
        self, prefix: str, level: Level, dim: int, out_dim: int, temporal: bool
    ) -> tuple[CostNode, Level]:
        """WanResample: optional time conv (doubling later chunks' frames), then nearest ×2
        and a 3×3 Conv2d on every frame."""
        children = []
        held = self.activation(level, dim)
        if temporal:
            later = attrs.evolve(level, first=0)  # the time conv skips the first chunk
            spatial = (later.frames, level.height, level.width)
            calls = _calls(level) - 1 if level.first else _calls(level)
            children.append(
                layers.conv(
                    join(prefix, "time_conv"),
                    "vae_time_conv",
                    batch=self.b,
                    in_channels=dim,
                    out_channels=2 * dim,
                    kernel=(3, 1, 1),
                    in_spatial=(later.frames + 2 * calls, level.height, level.width),  # after 2 cached frames
                    out_spatial=spatial,
                    bias=True,
                    dtype_bytes=self.db,
                    reference=f"{prefix}.time_conv",
                    cache_elements=self.b * dim * CACHE_FRAMES * level.height * level.width,
                )
            )
            level = attrs.evolve(level, later=2 * level.later)
        # a time conv's output is a new tensor; otherwise the input is the one held above
        node = self.nearest(
            join(prefix, "resample.0"), f"{prefix}.resample.0", level, dim, input_held=not temporal
        )
        children.append(node)
        level = attrs.evolve(level, height=2 * level.height, width=2 * level.width)
        children.append(
            layers.conv(
                join(prefix, "resample.1"),
                "vae_upsample_conv",
                batch=self.b,
                in_channels=dim,
                out_channels=out_dim,
                kernel=(3, 3),
                in_spatial=(level.frames, level.height, level.width),
                out_spatial=(level.frames, level.height, level.width),
                bias=True,
                dtype_bytes=self.db,
                reference=f"{prefix}.resample.1",
            )
        )
        # its input stays live through it
        return group(prefix, "vae_upsample", children, reference=prefix, held_bytes=held), level


def vae_decode(w: Workload, cfg: VAEConfig | None = None) -> CostNode:
    """One decode of the workload's latent batch into ``output_frames`` frames (the workload's
    VAE unless ``cfg`` is given). Wan2.2's residual up blocks keep their width through the
    upsample (no halving) and add a duplicating shortcut (0 FLOPs); its decoder ends at half the
    output size in 12 channels, unpatchified (0 FLOPs)."""
    cfg = cfg if cfg is not None else w.vae
    build = _Builder(w)
    h, wd, n = w.latent_height, w.latent_width, w.latent_frames
    whole = Level(h, wd, first=n, later=0, chunks=1)
    every = _decoder(build, cfg, Level(h, wd, first=1, later=1, chunks=n))
    decoder = _per_chunk(every, _decoder(build, cfg, _one_chunk(h, wd, n)), n)
    post_quant = build.causal_conv(
        "post_quant_conv", "post_quant_conv", whole, cfg.z_dim, cfg.z_dim, 1, cached=False
    )
    # Held through the last chunk's decode (where the peak is): the feature cache, full after the
    # first chunk, and the frames decoded so far, which diffusers concatenates chunk by chunk. A
    # single chunk holds neither (its cache fills as it goes and is left out).
    last = 2 ** sum(cfg.temporal_downsample)
    pixels = (w.height // cfg.patch) * (w.width // cfg.patch)  # Wan2.2 unpatchifies at the end
    video = w.batch_size * cfg.out_channels * (w.output_frames - last) * pixels * w.dtype_bytes
    if n > 1:
        held = decoder.total.cache_bytes + video
    else:
        held, decoder = 0, _filling_cache(decoder)
    return group("", "vae_decode", [post_quant, decoder], note=FEATURE_CACHE_NOTE, held_bytes=held)


def _filling_cache(node: CostNode) -> CostNode:
    """``node`` run as a single one-frame chunk: each layer's cache entry (one frame: the chunk's
    last frames, of which it has one), written when it runs, stays live while every later layer
    runs (held by the later siblings)."""
    if not node.children:
        return node
    children, written = [], 0
    for child in node.children:
        filled = _filling_cache(child)
        children.append(attrs.evolve(filled, held_bytes=filled.held_bytes + written))
        written += child.total.cache_bytes // CACHE_FRAMES
    return attrs.evolve(node, children=tuple(children))


def _calls(level: Level) -> int:
    """Chunks of ``level`` that produce frames (the decoder's per-chunk calls)."""
    return (1 if level.first else 0) + (level.chunks - 1 if level.later else 0)


def _one_chunk(height: int, width: int, chunks: int) -> Level:
    """The level of one later chunk (the largest call of every chunked layer), or of the only
    chunk: a later chunk is the second of two whose first contributes no frames."""
    return Level(height, width, first=0, later=1, chunks=2) if chunks > 1 else Level(height, width, 1, 0, 1)


def _per_chunk(every: CostNode, one: CostNode, chunks: int) -> CostNode:
    """``every`` (all chunks' work) with each layer made a node of one call per chunk whose
    largest call is the layer in ``one`` (one chunk): per-call peaks are a chunk's, not the sum
    over the chunks the coder runs one after another. Time convs skip the first chunk."""
    if every.children:
        children = [_per_chunk(a, b, chunks) for a, b in zip(every.children, one.children, strict=True)]
        return regroup(every, children, held_bytes=one.held_bytes)
    calls = chunks - 1 if every.category == "vae_time_conv" else chunks
    if calls < 2:
        return attrs.evolve(every, scratch_bytes=one.scratch_bytes)
    # every call reads the layer's weights again
    total = attrs.evolve(
        every.metrics, io_bytes=every.metrics.io_bytes + (calls - 1) * every.metrics.weight_bytes
    )
    node = closed_form_calls(
        every.id,
        every.category,
        total=total,
        calls=calls,
        largest=one.metrics,
        reference=every.reference,
        reference_own=every.reference_own,
        note=every.note,
    )
    return attrs.evolve(node, scratch_bytes=one.scratch_bytes)


def _decoder(build: _Builder, cfg: VAEConfig, level: Level) -> CostNode:
    """The decoder's layers over the chunks of ``level``."""
    dims = [cfg.decoder_dim * m for m in (cfg.dim_mult[-1], *reversed(cfg.dim_mult))]
    temporal_up = tuple(reversed(cfg.temporal_downsample))
    decoder: list[CostNode] = [
        build.causal_conv("decoder.conv_in", "decoder.conv_in", level, cfg.z_dim, dims[0], 3),
        build.mid_block("decoder.mid_block", level, dims[0]),
    ]
    for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
        prefix = f"decoder.up_blocks.{i}"
        # Wan2.1's upsamplers halve the channels they hand on; Wan2.2's residual blocks do not.
        c_in = in_dim if i == 0 or cfg.residual else in_dim // 2
        # the block's input stays live through it (Wan2.2's also in a copy for its shortcut)
        held = build.activation(level, c_in) * (2 if cfg.residual else 1)
        blocks: list[CostNode] = []
        for j in range(cfg.num_res_blocks + 1):
            blocks.append(
                build.resnet(
                    f"{prefix}.resnets.{j}",
                    level,
                    c_in if j == 0 else out_dim,
                    out_dim,
                    parent_holds_input=j == 0,
                )
            )
        if i != len(cfg.dim_mult) - 1:
            name = f"{prefix}.upsampler" if cfg.residual else f"{prefix}.upsamplers.0"
            node, level = build.upsample(
                name, level, out_dim, out_dim if cfg.residual else out_dim // 2, temporal_up[i]
            )
            blocks.append(node)
        decoder.append(group(prefix, "vae_up_block", blocks, reference=prefix, held_bytes=held))
    decoder += [
        build.rms_norm("decoder.norm_out", "decoder.norm_out", level, dims[-1]),
        build.causal_conv(
            "decoder.conv_out", "decoder.conv_out", level, dims[-1], cfg.out_channels, 3, fresh_input=True
        ),
    ]
    return group("decoder", "vae_decoder", decoder, reference="decoder")


ENCODE_CACHE_NOTE = (
    "cache_bytes is the encoder's feature cache: the last 2 frames of the input of every causal 3×3×3 "
    "conv and the last frame before every temporal downsample, kept between chunks"
)


def vae_encode(w: Workload, cfg: VAEConfig | None = None) -> CostNode:
    """One encode of a ``w.batch_size`` batch of ``w.output_frames``-frame videos (diffusers'
    ``AutoencoderKLWan.encode``): the encoder runs on the first frame, then on chunks of 4
    frames, with a feature cache; each temporal downsample skips the first chunk and halves the
    later chunks' frames (stride 2 over the previous chunk's last frame and the chunk's own);
    ``quant_conv`` runs over the whole latent."""
    cfg = cfg if cfg is not None else w.vae
    build = _Builder(w)
    chunks, h, wd, t = w.latent_frames, w.height // cfg.patch, w.width // cfg.patch, cfg.temporal_stride
    every, level = _encoder(build, cfg, Level(h, wd, first=1, later=t, chunks=chunks))
    one = Level(h, wd, first=0, later=t, chunks=2) if chunks > 1 else Level(h, wd, 1, 0, 1)
    encoder = _per_chunk(every, _encoder(build, cfg, one)[0], chunks)
    whole = Level(level.height, level.width, first=level.frames, later=0, chunks=1)
    quant = build.causal_conv(
        "quant_conv", "quant_conv", whole, 2 * cfg.z_dim, 2 * cfg.z_dim, 1, cached=False
    )
    # Held through the last chunk's encode (where the peak is): the input video (and its
    # patchified copy, Wan2.2), the feature cache (full after the first chunk) and the latent
    # frames encoded so far, which diffusers concatenates chunk by chunk. A single chunk's cache
    # fills as it goes.
    video = w.batch_size * cfg.in_channels * w.output_frames * h * wd * w.dtype_bytes
    held = video * (2 if cfg.patch > 1 else 1)
    if chunks > 1:
        latent = w.batch_size * 2 * cfg.z_dim * (level.frames - level.later) * level.height * level.width
        held += encoder.total.cache_bytes + latent * w.dtype_bytes
    else:
        encoder = _filling_cache(encoder)
    encoder = attrs.evolve(encoder, held_bytes=encoder.held_bytes + held)
    return group("", "vae_encode", [encoder, quant], note=ENCODE_CACHE_NOTE)


def _encoder(build: _Builder, cfg: VAEConfig, level: Level) -> tuple[CostNode, Level]:
    """The encoder's layers over the chunks of ``level``, and the level it ends at."""
    dims = [cfg.base_dim * m for m in (1, *cfg.dim_mult)]
    encoder: list[CostNode] = [
        build.causal_conv("encoder.conv_in", "encoder.conv_in", level, cfg.in_channels, dims[0], 3)
    ]
    index = 0
    for i, (in_dim, out_dim) in enumerate(pairwise(dims)):
        down = i != len(cfg.dim_mult) - 1
        if cfg.residual:  # Wan2.2: one block per level (an average-pool shortcut, 0 FLOPs)
            prefix = f"encoder.down_blocks.{i}"
            # the block's input stays live through it, and a copy of it for the shortcut
            held = 2 * build.activation(level, in_dim)
            block = [
                build.resnet(
                    f"{prefix}.resnets.{j}",
                    level,
                    in_dim if j == 0 else out_dim,
                    out_dim,
                    parent_holds_input=j == 0,
                )
                for j in range(cfg.num_res_blocks)
            ]
            if down:
                node, level = _downsample(
                    build, f"{prefix}.downsampler", level, out_dim, cfg.temporal_downsample[i]
                )
                block.append(node)
            encoder.append(group(prefix, "vae_down_block", block, reference=prefix, held_bytes=held))
            continue
        for j in range(cfg.num_res_blocks):
            prefix = f"encoder.down_blocks.{index}"
            encoder.append(build.resnet(prefix, level, in_dim if j == 0 else out_dim, out_dim))
            index += 1
        if down:
            node, level = _downsample(
                build, f"encoder.down_blocks.{index}", level, out_dim, cfg.temporal_downsample[i]
            )
            encoder.append(node)
            index += 1
    top = dims[-1]
    encoder += [
        build.mid_block("encoder.mid_block", level, top),
        build.rms_norm("encoder.norm_out", "encoder.norm_out", level, top),
        build.causal_conv(
            "encoder.conv_out", "encoder.conv_out", level, top, 2 * cfg.z_dim, 3, fresh_input=True
        ),
    ]
    return group("encoder", "vae_encoder", encoder, reference="encoder"), level


def _downsample(
    build: _Builder, prefix: str, level: Level, dim: int, temporal: bool
) -> tuple[CostNode, Level]:
    """WanResample down: zero-pad right and bottom, a 3×3 stride-2 Conv2d on every frame, then
    (temporal) a (3, 1, 1) stride-2 time conv over the previous chunk's last frame and the
    chunk's frames, on every chunk but the first."""
    half = attrs.evolve(level, height=level.height // 2, width=level.width // 2)
    children = [
        layers.conv(
            join(prefix, "resample.1"),
            "vae_downsample_conv",
            batch=build.b,
            in_channels=dim,
            out_channels=dim,
            kernel=(3, 3),
            in_spatial=(level.frames, level.height + 1, level.width + 1),
            out_spatial=(level.frames, half.height, half.width),
            bias=True,
            dtype_bytes=build.db,
            reference=f"{prefix}.resample.1",
        )
    ]
    if temporal:
        out_later = (1 + level.later - 3) // 2 + 1
        later_chunks = level.chunks - 1
        children.append(
            layers.conv(
                join(prefix, "time_conv"),
                "vae_time_conv",
                batch=build.b,
                in_channels=dim,
                out_channels=dim,
                kernel=(3, 1, 1),
                in_spatial=(later_chunks * (1 + level.later), half.height, half.width),
                out_spatial=(later_chunks * out_later, half.height, half.width),
                bias=True,
                dtype_bytes=build.db,
                reference=f"{prefix}.time_conv",
                cache_elements=build.b * dim * half.height * half.width,
            )
        )
        half = attrs.evolve(half, later=out_later)
    # its input stays live through it
    held = build.activation(level, dim)
    return group(prefix, "vae_downsample", children, reference=prefix, held_bytes=held), half
