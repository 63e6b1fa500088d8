"""The OCR models on several GPUs, as serving engines and transformers run them: data-parallel
replicas (each GPU holds every weight and serves its share of the pages), tensor parallelism of
the language decoder (transformers' ``base_model_tp_plan``: :mod:`deepseek_models.shared.decoder`),
or both. Under tensor parallelism the vision stage runs whole on every GPU of the group: the
model does not split it (transformers' plan for OCR-2 splits its Qwen2 encoder's projections
too; a layout's report marks the vision stage as run as on one GPU, unchecked). Expert
parallelism of the MoE decoder is not modelled, and a layout that asks for what is not modelled
is refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Final

import attrs

from deepseek_models.shared.config import DecoderConfig
from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import CostNode, Layout, LayoutError, Parallel, ReferenceCall

LANGUAGE: Final = ("prefill", "decode")
"""The stages tensor parallelism splits."""


def _share(w: PageBatch, layout: Layout) -> Any:
    """The pages the first replica serves (the largest share)."""
    return attrs.evolve(w, pages=-(-w.pages // layout.data))


def _validate(decoder: DecoderConfig) -> Callable[[PageBatch, Layout], None]:
    def validate(w: PageBatch, layout: Layout) -> None:
        if layout.ulysses > 1 or layout.ring > 1 or layout.cfg > 1 or layout.fsdp:
            raise LayoutError(
                "layout",
                f"{layout.name} is not modelled for the OCR models: they run data parallel (data=N), "
                "tensor parallel (tensor=T) or both",
            )
        if decoder.heads % layout.tensor:
            degrees = ", ".join(str(t) for t in range(2, decoder.heads + 1) if decoder.heads % t == 0)
            raise LayoutError(
                "tensor",
                f"tensor={layout.tensor} does not divide the decoder's {decoder.heads} attention heads, "
                f"which transformers' tensor-parallel plan splits whole: use {degrees}",
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
    decoder: DecoderConfig,
    reference: Callable[[Any, str, str, int], ReferenceCall] | None = None,
    checks: tuple[tuple[str, str, Layout], ...] = (),
) -> Parallel:
    """Replica 0's share of the batch, on rank 0 of its tensor-parallel group:
    ``analytic(workload, stage, tensor=T)`` and ``runs`` for its pages. ``reference(workload,
    stage, device, tensor)``: the model under transformers' own tensor-parallel plan, for the
    ``checks``."""

    def tree(w: Any, stage: str, layout: Layout) -> CostNode:
        return analytic(_share(w, layout), stage, tensor=layout.tensor if stage in LANGUAGE else 1)

    def parallel_reference(w: Any, stage: str, layout: Layout, device: str) -> ReferenceCall:
        assert reference is not None
        return reference(w, stage, device, layout.tensor)

    return Parallel(
        analytic=tree,
        validate=_validate(decoder),
        runs=lambda w, layout: runs(_share(w, layout)),
        reference=parallel_reference if reference is not None else None,
        checks=checks,
    )


def data_layout(gpus: int) -> Layout:
    """A serving engine on ``gpus`` GPUs: one replica each."""
    return Layout(data=gpus)
