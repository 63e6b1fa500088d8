"""The generation's stages and their analytic trees (no torch)."""

from __future__ import annotations

from typing import Final

from deepseek_models.deepseek_ocr2.config import CHECKPOINT, Architecture
from deepseek_models.deepseek_ocr2.vision import vision_stage
from deepseek_models.deepseek_ocr2.workload import Page
from deepseek_models.shared.decoder import decoder_decode, decoder_prefill, lm_head
from pytest_flopcheck import CostNode, group, per_generation

LANGUAGE_MODEL: Final = "model.language_model"
STAGES: Final = ("vision", "prefill", "decode")


def stage_tree(w: Page, stage: str, arch: Architecture = CHECKPOINT) -> CostNode:
    """One run of ``stage`` for the workload's batch of pages."""
    db, d = w.dtype_bytes, arch.decoder
    if stage == "vision":
        return vision_stage(w.pages, w.crops, arch.encoder, d, db, arch.sam)
    if stage == "prefill":
        body = decoder_prefill(w.pages, w.prefill_tokens, d, db, prefix=LANGUAGE_MODEL)
        head = lm_head(w.pages, d, db)
        return group("", "prefill", [*body.children, head], reference="", held_bytes=body.held_bytes)
    if stage == "decode":
        return decoder_decode(w.pages, w.prefill_tokens, w.decode_steps, d, db, prefix=LANGUAGE_MODEL)
    raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")


def generation_flops(w: Page, arch: Architecture = CHECKPOINT) -> int:
    """FLOPs of one whole generation (every stage runs once)."""
    return per_generation(
        runs_per_generation(w), {stage: stage_tree(w, stage, arch).total.flops for stage in STAGES}
    )


def runs_per_generation(w: Page) -> dict[str, int]:
    """Each stage runs once per generation (decode covers every step)."""
    return dict.fromkeys(STAGES, 1)
