"""The OCR models on several GPUs: data parallel replicas, as a serving engine scales a batch of
pages (each GPU holds every weight and serves its share of the pages). Tensor and expert
parallelism of the MoE decoder are not modelled, and a layout that asks for them is refused."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import attrs

from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import CostNode, Layout, LayoutError, Parallel


def _share(w: PageBatch, layout: Layout) -> Any:
    """The pages the first replica serves (the largest share)."""
    return attrs.evolve(w, pages=-(-w.pages // layout.data))


def _validate(w: PageBatch, layout: Layout) -> None:
    if layout.ulysses > 1 or layout.ring > 1 or layout.cfg > 1 or layout.fsdp:
        raise LayoutError(
            "layout",
            f"{layout.name} is not modelled for the OCR models: they run data parallel (data=N) only",
        )
    if layout.data > w.pages:
        raise LayoutError(
            "data",
            f"data={layout.data} replicas for {w.pages} pages leave replicas idle: use at most {w.pages} "
            "(or more --pages)",
        )


def data_parallel(
    analytic: Callable[[Any, str], CostNode], runs: Callable[[Any], Mapping[str, int]]
) -> Parallel:
    """Replica 0's share of the batch: the model's own trees and runs for its pages."""
    return Parallel(
        analytic=lambda w, stage, layout: analytic(_share(w, layout), stage),
        validate=_validate,
        runs=lambda w, layout: runs(_share(w, layout)),
    )


def data_layout(gpus: int) -> Layout:
    """A serving engine on ``gpus`` GPUs: one replica each."""
    return Layout(data=gpus)
