"""The OCR models on several GPUs, as serving engines and transformers run them: data-parallel
replicas (each GPU holds every weight and serves its share of the pages), tensor parallelism as
transformers' own plan for the model splits it (``base_model_tp_plan``: the language decoder,
:mod:`deepseek_models.shared.decoder`, and OCR-2's vision encoder; SAM, v1's CLIP and the
projectors run whole on every GPU of the group), or both. Expert parallelism of the MoE decoder
is not modelled, and a layout that asks for what is not modelled is refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import CostNode, Layout, LayoutError, Parallel, ReferenceCall, ReferenceSkipped


def _share(w: PageBatch, layout: Layout) -> Any:
    """The pages the first replica serves (the largest share)."""
    return attrs.evolve(w, pages=-(-w.pages // layout.data))


def _validate(heads: Mapping[str, int]) -> Callable[[PageBatch, Layout], None]:
    """``heads``: the head counts the tensor-parallel plan splits whole, by what holds them."""

    def validate(w: PageBatch, layout: Layout) -> None:
        if layout.ulysses > 1 or layout.ring > 1 or layout.cfg > 1 or layout.fsdp:
            raise LayoutError(
                "layout",
                f"{layout.name} is not modelled for the OCR models: they run data parallel (data=N), "
                "tensor parallel (tensor=T) or both",
            )
        for what, count in heads.items():
            if count % layout.tensor:
                top = min(heads.values())
                degrees = [t for t in range(2, top + 1) if all(n % t == 0 for n in heads.values())]
                allowed = (
                    f"use {', '.join(map(str, degrees))}" if degrees else "no degree above 1 divides them all"
                )
                raise LayoutError(
                    "tensor",
                    f"tensor={layout.tensor} does not divide {what} ({count}), which transformers' "
                    f"tensor-parallel plan splits whole: {allowed}",
                )
        if layout.data > w.pages:
            raise LayoutError(
                "data",
                f"data={layout.data} replicas for {w.pages} pages leave replicas idle: use at most "
                f"{w.pages} (or more --pages)",
            )

    return validate


def decoder_parallel(
    analytic: Callable[..., CostNode],
    runs: Callable[[Any], Mapping[str, int]],
    heads: Mapping[str, int],
    reference: Callable[[Any, str, str, int], ReferenceCall] | None = None,
    checks: tuple[tuple[str, str, Layout], ...] = (),
) -> Parallel:
    """Replica 0's share of the batch, on rank 0 of its tensor-parallel group:
    ``analytic(workload, stage, tensor=T)`` and ``runs`` for its pages; ``heads``: the head
    counts the plan splits (a degree must divide each). ``reference(workload, stage, device,
    tensor)``: the model under transformers' own tensor-parallel plan, for the ``checks``."""

    def tree(w: Any, stage: str, layout: Layout) -> CostNode:
        return analytic(_share(w, layout), stage, tensor=layout.tensor)

    def parallel_reference(w: Any, stage: str, layout: Layout, device: str) -> ReferenceCall:
        assert reference is not None
        if layout.data > 1 and layout.tensor > 1:  # transformers meshes every rank of the group
            raise ReferenceSkipped(
                f"{layout.name} runs replicas of a tensor-parallel group; the reference runs one "
                f"group alone: ask for tensor={layout.tensor}"
            )
        return reference(_share(w, layout), stage, device, layout.tensor)  # replica 0's pages

    return Parallel(
        analytic=tree,
        validate=_validate(heads),
        runs=lambda w, layout: runs(_share(w, layout)),
        reference=parallel_reference if reference is not None else None,
        checks=checks,
    )


def data_layout(gpus: int) -> Layout:
    """A serving engine on ``gpus`` GPUs: one replica each."""
    return Layout(data=gpus)
