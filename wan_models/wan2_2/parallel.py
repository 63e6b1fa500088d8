"""Wan2.2 under multi-GPU layouts: each expert's DiT is split as Wan2.1's
(:mod:`wan_models.wan2_1.parallel`); the official multi-GPU command is the same
(``--dit_fsdp --t5_fsdp --ulysses_size N``). The parallel reference checks run on Wan2.1's DiT,
which each expert is."""

from __future__ import annotations

from pytest_flopcheck import CostNode, Layout, LayoutError, Parallel
from wan_models.wan2_1.dit import dit_forward
from wan_models.wan2_1.parallel import validate as validate_wan21
from wan_models.wan2_2.pipeline import runs_per_generation, stage_tree
from wan_models.wan2_2.workload import WAN21_STAGE, Workload

DITS = tuple(stage for stage, shared in WAN21_STAGE.items() if shared == "diffusion_core")
FSDP_UNITS = {"text_encoder": "blocks.", **dict.fromkeys(DITS, "blocks.")}


def validate(w: Workload, layout: Layout) -> None:
    validate_wan21(w.as_wan2_1(), Layout(layout.ulysses, layout.ring, layout.cfg))
    unknown = [s for s in layout.fsdp if s not in FSDP_UNITS]
    if unknown:
        raise LayoutError(
            "fsdp", f"fsdp={'+'.join(unknown)} cannot be sharded: allowed {', '.join(FSDP_UNITS)}"
        )


def parallel_tree(w: Workload, stage: str, layout: Layout) -> CostNode:
    if stage in DITS:
        return dit_forward(w.as_wan2_1(), layout=layout)
    return stage_tree(w, stage)


def parallel_runs(w: Workload, layout: Layout) -> dict[str, int]:
    runs = runs_per_generation(w)
    for stage in DITS:
        runs[stage] //= layout.cfg
    return runs


PARALLEL = Parallel(analytic=parallel_tree, validate=validate, runs=parallel_runs, fsdp_units=FSDP_UNITS)
