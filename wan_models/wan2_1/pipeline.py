"""The text-to-video pipeline: which stages run, how often, and the end-to-end tree.

Both upstream pipelines (official ``text2video.py``, diffusers ``WanPipeline``) encode the
prompt and, with guidance, the negative prompt; run the DiT once per step per guidance branch
(cond and uncond as two sequential batch-B forwards); and decode once. A test observes these
counts on a real diffusers pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Final

import attrs

from pytest_flopcheck.tree import CostNode, Metrics, group
from wan_models.wan2_1.dit import dit_forward, dit_totals
from wan_models.wan2_1.text_encoder import text_encoder, text_encoder_totals
from wan_models.wan2_1.vae import vae_decode
from wan_models.wan2_1.workload import Workload

STAGE_BUILDERS: Final[dict[str, Callable[[Workload], CostNode]]] = {
    "text_encoder": text_encoder,
    "diffusion_core": dit_forward,
    "vae_decode": vae_decode,
}
STAGES: Final = tuple(STAGE_BUILDERS)


def runs_per_generation(w: Workload) -> dict[str, int]:
    """How many times each stage runs (at the workload's batch) for one generation."""
    branches = 2 if w.guidance else 1
    return {"text_encoder": branches, "diffusion_core": w.steps * branches, "vae_decode": 1}


def stage_tree(w: Workload, stage: str) -> CostNode:
    """The cost tree of one run of ``stage``."""
    try:
        builder = STAGE_BUILDERS[stage]
    except KeyError:
        raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}") from None
    return builder(w)


def stage_totals(w: Workload, stage: str) -> Metrics:
    """``stage_tree(w, stage).total``, fast: repeated blocks are counted once and scaled, and
    results are cached by the fields the stage depends on (a sweep revisits them often)."""
    if stage not in STAGE_BUILDERS:
        raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")
    return _cached_totals(stage, _depends_on(w, stage))


def _depends_on(w: Workload, stage: str) -> Workload:
    """The workload with every field the stage ignores reset, as a cache key."""
    if stage == "text_encoder":
        return Workload(batch_size=w.batch_size, text_len=w.text_len, dtype=w.dtype)
    # Steps and guidance change how often a stage runs, not one run; frames matter only
    # through the latent frame count.
    same = attrs.evolve(w, steps=1, guidance=True, frames=w.output_frames)
    return attrs.evolve(same, variant="T2V-14B", text_len=1) if stage == "vae_decode" else same


@lru_cache(maxsize=8192)
def _cached_totals(stage: str, w: Workload) -> Metrics:
    if stage == "diffusion_core":
        return dit_totals(w)
    if stage == "text_encoder":
        return text_encoder_totals(w)
    return vae_decode(w).total


def pipeline_tree(w: Workload, stages: tuple[str, ...] = STAGES) -> CostNode:
    """One generation: each stage's tree (id = stage name, node ids inside stay stage-relative),
    repeated as often as it runs. Parameters count once per stage; work counts every run."""
    runs = runs_per_generation(w)
    children = [attrs.evolve(stage_tree(w, s), id=s, repeat=runs[s]) for s in stages]
    return group("", "pipeline", children)
