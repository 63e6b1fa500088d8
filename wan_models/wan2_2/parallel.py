"""Wan2.2 under multi-GPU layouts: each expert's DiT is split as Wan2.1's
(:mod:`wan_models.wan2_1.parallel`); the official multi-GPU command is the same
(``--dit_fsdp --t5_fsdp --ulysses_size N``). The A14B experts are each Wan2.1's 14B DiT, checked
there; TI2V-5B is checked here (its per-token timesteps are split with the tokens)."""

from __future__ import annotations

from pytest_flopcheck import CostNode, Layout, LayoutError, Parallel
from wan_models.wan2_1.dit import dit_forward
from wan_models.wan2_1.parallel import validate as validate_wan21
from wan_models.wan2_2.pipeline import runs_per_generation, stage_tree
from wan_models.wan2_2.reference import parallel_build
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


CHECKS = (("TI2V-5B-t2v", "diffusion_core", Layout(ulysses=2)),)
"""TI2V-5B embeds one timestep per token, which diffusers' context parallelism splits with the
tokens: the one path the A14B experts (each Wan2.1's 14B DiT, checked there) do not take."""

PARALLEL = Parallel(
    analytic=parallel_tree,
    validate=validate,
    runs=parallel_runs,
    fsdp_units=FSDP_UNITS,
    reference=parallel_build,
    checks=CHECKS,
)
