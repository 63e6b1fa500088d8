"""A toy model registered from a conftest: a linear, a convolution and attention.

pytester tests copy this file in as ``conftest.py``; the knobs below (changed by text
replacement) break the model on purpose: ``FUDGE`` one layer's FLOPs, ``ANALYTIC`` the analytic
builder, ``REFERENCE_ERROR`` the reference builder, ``RUNS`` the multiplicities, ``LAYER_ID``
a node id; ``BUILD_LOG`` names a file that gets one line per reference build.
"""

from __future__ import annotations

import attrs

from pytest_flopcheck import (
    CostNode,
    Generation,
    Layout,
    ModelRegistration,
    Parallel,
    ReferenceCall,
    Stage,
    group,
    hookimpl,
    layers,
)

FUDGE = 0  # added to the analytic FLOPs of "proj"; tests change it to make one layer wrong
ANALYTIC = "ok"  # "raise", "wrong-type", "duplicate" or "unhandled"
REFERENCE_ERROR = None  # an exception the reference builder raises
STAGES = ("core",)
RUNS = {"core": 3}
LAYER_ID = "proj"
BUILD_LOG = None
GENERATIONS = {}  # tests set {"twice": lambda: generation()} to add an end-to-end generation check
GENERATION_FUDGE = 0  # added to the analytic total of that generation
MEMORY_TOLERANCE = None  # set to declare the stage's memory tolerance (a test_memory check)
LIVE_FUDGE = 0  # added to the bytes the analytic model says the stage holds
TRAFFIC_FUDGE = None  # set to an int: the stage predicts its elementwise traffic (off by this many bytes)
PARALLEL_FUDGE = None  # set to an int: a two-rank layout is verified (its all-gather off by this many bytes)
DIM, HEADS, CHANNELS = 16, 2, 3


@attrs.frozen
class ToyWorkload:
    batch: int
    seq: int
    image: int


def analytic(w: ToyWorkload, stage: str) -> CostNode:
    if ANALYTIC == "raise":
        raise RuntimeError("toy analytic model is broken")
    if ANALYTIC == "wrong-type":
        return {"flops": 1}  # type: ignore[return-value]
    if ANALYTIC == "unhandled" and stage != "core":
        raise ValueError(f"stage {stage!r} is not modeled")
    rows = w.batch * w.seq
    proj = layers.linear(
        LAYER_ID,
        "projection",
        rows=rows,
        in_features=DIM,
        out_features=3 * DIM,
        bias=True,
        dtype_bytes=4,
        reference="proj",
    )
    proj = attrs.evolve(proj, metrics=attrs.evolve(proj.metrics, flops=proj.metrics.flops + FUDGE))
    core = layers.attention_core(
        "attention.core",
        "attention",
        batch=w.batch,
        heads=HEADS,
        q_len=w.seq,
        kv_len=w.seq,
        head_dim=DIM // HEADS,
        dtype_bytes=4,
        reference="attention",
    )
    out = layers.linear(
        "attention.out",
        "projection",
        rows=rows,
        in_features=DIM,
        out_features=DIM,
        bias=False,
        dtype_bytes=4,
        reference="attention.out",
        scratch_bytes=3 * rows * DIM * 4,  # qkv, its caller's (the kernel's output is token-major)
    )
    if TRAFFIC_FUDGE is not None:  # the linear copies its transposed input to a contiguous one
        copy = layers.op(rows * DIM * 4, rows * DIM * 4)
        out = layers.with_traffic(out, layers.Traffic(copy.bytes + TRAFFIC_FUDGE, copy.ops))
    conv = layers.conv(
        "conv",
        "convolution",
        batch=w.batch,
        in_channels=CHANNELS,
        out_channels=4,
        kernel=(3, 3),
        in_spatial=(w.image, w.image),
        out_spatial=(w.image, w.image),
        bias=True,
        dtype_bytes=4,
        reference="conv",
    )
    # Live beside the layers: the inputs the layer does not read, and beside the conv the
    # attention's output, held for the returned tuple.
    x, image = rows * DIM * 4, w.batch * CHANNELS * w.image**2 * 4
    proj = attrs.evolve(proj, scratch_bytes=image)
    conv = attrs.evolve(conv, scratch_bytes=x + rows * DIM * 4)
    if ANALYTIC == "duplicate":
        conv = attrs.evolve(conv, id="proj")
    return group(
        "",
        "model",
        [
            proj,
            group("attention", "attention", [core, out], reference="attention", held_bytes=x + image),
            conv,
        ],
        reference="",
        held_bytes=LIVE_FUDGE,
    )


def reference(w: ToyWorkload, stage: str, device: str) -> ReferenceCall:
    if BUILD_LOG is not None:
        with open(BUILD_LOG, "a") as log:
            log.write(f"{w} {stage} {device}\n")
    if REFERENCE_ERROR is not None:
        raise REFERENCE_ERROR
    import torch
    from torch import nn

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.out = nn.Linear(DIM, DIM, bias=False)

        def forward(self, qkv: torch.Tensor) -> torch.Tensor:
            b, s, _ = qkv.shape
            q, k, v = qkv.view(b, s, 3, HEADS, DIM // HEADS).permute(2, 0, 3, 1, 4)
            x = nn.functional.scaled_dot_product_attention(q, k, v)
            return self.out(x.transpose(1, 2).reshape(b, s, DIM))

    class Toy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(DIM, 3 * DIM)
            self.attention = Attention()
            self.conv = nn.Conv2d(CHANNELS, 4, 3, padding=1)

        def forward(self, x: torch.Tensor, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return self.attention(self.proj(x)), self.conv(image)

    with torch.device(device):
        model = Toy()
        x = torch.randn(w.batch, w.seq, DIM)
        image = torch.randn(w.batch, CHANNELS, w.image, w.image)
    return ReferenceCall(model, lambda: model(x, image))


def parallel_analytic(w: ToyWorkload, stage: str, layout: Layout) -> CostNode:
    """One rank of the toy's sequence-parallel projection: its rows, then the outputs gathered."""
    rows = w.batch * w.seq
    proj = layers.linear(
        "proj", "projection", rows=rows, in_features=DIM, out_features=3 * DIM, bias=True, dtype_bytes=4,
        reference="proj",
    )  # fmt: skip
    gather = layers.collective(
        "gather.all_gather", "all_gather", group=layout.gpus, local_bytes=rows * 3 * DIM * 4 + PARALLEL_FUDGE
    )
    gathered = layout.gpus * rows * 3 * DIM * 4
    parts = [attrs.evolve(gather, scratch_bytes=gathered)]  # its output
    if w.batch > 1:  # gathered along dim 0, joined along dim 1: a copy (a view for one sample)
        join = layers.elementwise(
            "gather.join", "copy", traffic=layers.op(gathered, gathered), reference=None
        )
        parts.append(attrs.evolve(join, scratch_bytes=2 * gathered))  # the gathered and the joined
    # While the outputs are gathered: the caller's input and the projection's output.
    gather_group = group("gather", "communication", parts, reference="gather", held_bytes=rows * 3 * DIM * 4)
    return group("", "model", [proj, gather_group], reference="", held_bytes=LIVE_FUDGE + rows * DIM * 4)


def parallel_reference(w: ToyWorkload, stage: str, layout: Layout, device: str) -> ReferenceCall:
    """The projection on this rank's tokens, its output all-gathered over the (fake) group."""
    import torch
    import torch.distributed as dist
    from torch import nn
    from torch.distributed import _functional_collectives as funcol

    class Gather(nn.Module):
        def forward(self, y: torch.Tensor) -> torch.Tensor:
            return funcol.all_gather_single(y, 1, dist.group.WORLD)

    class ParallelToy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = nn.Linear(DIM, 3 * DIM)
            self.gather = Gather()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.gather(self.proj(x))

    with torch.device(device):
        model = ParallelToy()
        x = torch.randn(w.batch, w.seq, DIM)
    return ReferenceCall(model, lambda: model(x))


def generation() -> Generation:
    """A whole 'generation' of the toy: the model run twice on CPU, and its analytic total."""
    w = ToyWorkload(2, 5, 8)

    def build() -> ReferenceCall:
        call = reference(w, "core", "cpu")
        return ReferenceCall(call.module, lambda: (call.run(), call.run()))

    return Generation(2 * analytic(w, "core").total.flops + GENERATION_FUDGE, build, "model twice")


@hookimpl
def flopcheck_register_models(register):  # type: ignore[no-untyped-def]
    register(
        ModelRegistration(
            name="toy",
            stages=tuple(
                Stage(
                    name,
                    0.0,
                    memory_tolerance=MEMORY_TOLERANCE,
                    traffic_tolerance=None if TRAFFIC_FUDGE is None else 0.0,
                )
                for name in STAGES
            ),
            workloads={"small": ToyWorkload(2, 5, 8), "large": ToyWorkload(3, 7, 12)},
            analytic=analytic,
            reference=reference,
            multiplicities=lambda w: RUNS,
            reference_packages=("torch",),
            generations=GENERATIONS,
            parallel=None
            if PARALLEL_FUDGE is None
            else Parallel(
                analytic=parallel_analytic,
                validate=lambda w, layout: None,
                reference=parallel_reference,
                checks=(("small", "core", Layout(ulysses=2)),),
            ),
        )
    )
