"""The generation's stages and their analytic trees (no torch): the vision stage is this
model's, prefill and decode the shared decoder's (:mod:`deepseek_models.shared.stages`)."""

from __future__ import annotations

from typing import Final

from deepseek_models.deepseek_ocr2.config import CHECKPOINT, Architecture
from deepseek_models.deepseek_ocr2.vision import vision_stage
from deepseek_models.deepseek_ocr2.workload import Page
from deepseek_models.shared import stages as shared
from deepseek_models.shared.stages import STAGES, runs_per_generation
from pytest_flopcheck import CostNode

LANGUAGE_MODEL: Final = "model.language_model"
__all__ = ["LANGUAGE_MODEL", "STAGES", "generation_flops", "runs_per_generation", "stage_tree"]


def stage_tree(w: Page, stage: str, arch: Architecture = CHECKPOINT, tensor: int = 1) -> CostNode:
    """One run of ``stage`` for the workload's batch of pages (``tensor``: on one rank of
    transformers' tensor-parallel plan, which splits the decoder and the vision encoder)."""
    if stage == "vision":
        return vision_stage(w.pages, w.crops, arch.encoder, arch.decoder, w.dtype_bytes, arch.sam, tensor)
    return shared.language_stage(w, stage, arch.decoder, LANGUAGE_MODEL, tensor)


def generation_flops(w: Page, arch: Architecture = CHECKPOINT) -> int:
    """FLOPs of one whole generation (every stage runs once)."""
    return shared.generation_flops(w, lambda stage: stage_tree(w, stage, arch))
