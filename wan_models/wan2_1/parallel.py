"""Wan under multi-GPU layouts, as the official ``generate.py`` and diffusers run it.

- Sequence parallelism (Ulysses U, ring R) splits the DiT's tokens after the patch embedding:
  the embeddings run on every rank, the blocks and the output projection on L/S tokens each,
  the output is gathered (:func:`wan_models.wan2_1.dit.dit_forward` with a layout).
- CFG parallel (cfg = 2) runs the conditional and unconditional branches on separate halves of
  the GPUs: each rank runs half of the DiT forwards.
- FSDP shards the DiT's and T5's weights over all GPUs, unit by unit (each block a unit, the rest
  the root unit); the framework applies it (``fsdp_units``).
- The text encoder, CLIP and the VAE encode run whole on every rank; the VAE decode runs on rank 0
  while the others wait (official ``text2video.py``: ``if self.rank == 0: decode``).

Constraints enforced as the implementations enforce them: heads divisible by U (Ulysses splits
heads), the tokens divisible by U·R (diffusers splits the sequence evenly), CFG parallel only
with guidance.
"""

from __future__ import annotations

from collections.abc import Mapping

from pytest_flopcheck import SINGLE, CostNode, Layout, LayoutError, Parallel
from wan_models.wan2_1.dit import dit_forward
from wan_models.wan2_1.pipeline import runs_per_generation, stage_tree
from wan_models.wan2_1.reference import parallel_diffusion_core
from wan_models.wan2_1.workload import STANDARD_WORKLOADS, Workload

FSDP_UNITS: Mapping[str, str] = {"diffusion_core": "blocks.", "text_encoder": "blocks."}
"""The stages the official code can shard (``--dit_fsdp``, ``--t5_fsdp``): each block one unit."""


def validate(w: Workload, layout: Layout) -> None:
    """A layout the implementations can run for ``w``, or LayoutError naming the field."""
    heads = w.dit.num_heads
    if layout.tensor > 1:
        raise LayoutError(
            "tensor",
            f"tensor={layout.tensor} is not modelled for Wan: its scripts split the DiT by sequence "
            "(ulysses, ring), by guidance branch (cfg) and by FSDP",
        )
    if heads % layout.ulysses:
        raise LayoutError(
            "ulysses",
            f"ulysses={layout.ulysses} does not divide the DiT's {heads} attention heads "
            "(Ulysses gives each GPU whole heads)",
        )
    if w.tokens % layout.sequence:
        raise LayoutError(
            "ring" if layout.ring > 1 else "ulysses",
            f"the DiT's {w.tokens:,} tokens do not split evenly over ulysses×ring = {layout.sequence} GPUs",
        )
    if layout.cfg == 2 and not w.guidance:
        raise LayoutError(
            "cfg", "cfg=2 runs the two guidance branches apart, but this workload has no guidance"
        )
    unknown = [s for s in layout.fsdp if s not in FSDP_UNITS]
    if unknown:
        raise LayoutError(
            "fsdp", f"fsdp={'+'.join(unknown)} cannot be sharded: allowed {' or '.join(FSDP_UNITS)}"
        )


def parallel_tree(w: Workload, stage: str, layout: Layout) -> CostNode:
    """One run of ``stage`` on rank 0 of ``layout``."""
    if stage == "diffusion_core":
        return dit_forward(w, layout=layout)
    return stage_tree(w, stage)


def parallel_runs(w: Workload, layout: Layout) -> dict[str, int]:
    """Runs per generation on rank 0: CFG parallel halves the DiT's forwards."""
    runs = runs_per_generation(w)
    runs["diffusion_core"] //= layout.cfg
    return runs


def official_layout(gpus: int) -> Layout:
    """The official multi-GPU command (SIZING_FACTS §1): ``torchrun --nproc_per_node=N generate.py
    --dit_fsdp --t5_fsdp --ulysses_size N``; one GPU: no parallelism."""
    if gpus == 1:
        return SINGLE
    return Layout(ulysses=gpus, fsdp=("diffusion_core", "text_encoder"))


def diffusers_layout(gpus: int) -> Layout:
    """diffusers' context parallelism: Ulysses over every GPU, weights replicated."""
    return SINGLE if gpus == 1 else Layout(ulysses=gpus)


CHECKS = (
    ("W-001", "diffusion_core", Layout(ulysses=2)),
    ("W-001", "diffusion_core", Layout(ring=2)),
    ("W-001", "diffusion_core", Layout(ulysses=2, ring=2)),
    ("W-004", "diffusion_core", Layout(ulysses=4)),
    ("W-004", "diffusion_core", Layout(ulysses=2, fsdp=("diffusion_core",))),
    ("W-004", "text_encoder", Layout(ulysses=2, fsdp=("text_encoder",))),
)
"""Layouts ``test_parallel`` verifies on a fake process group: Ulysses, ring and both on the 14B
DiT (diffusers' context parallelism), Ulysses 4 on the 1.3B at 480p, Ulysses 2 with the DiT
sharded by FSDP2 (the official multi-GPU layout's shape) on the 1.3B, and UMT5 sharded by FSDP2
(the official ``--t5_fsdp``; Ulysses leaves it whole)."""
assert all(w in STANDARD_WORKLOADS for w, _, _ in CHECKS)

PARALLEL = Parallel(
    analytic=parallel_tree,
    validate=validate,
    runs=parallel_runs,
    fsdp_units=FSDP_UNITS,
    reference=parallel_diffusion_core,
    checks=CHECKS,
)
