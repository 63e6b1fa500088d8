"""The stages both DeepSeek OCR generations run (vision, prefill, decode) and the shared
decoder's two of them; each model adds its vision stage (no torch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

from deepseek_models.shared.config import DecoderConfig
from deepseek_models.shared.decoder import decoder_decode, decoder_prefill, lm_head
from deepseek_models.shared.workload import PageBatch
from pytest_flopcheck import CostNode, group, per_generation

STAGES: Final = ("vision", "prefill", "decode")


def language_stage(
    w: PageBatch, stage: str, decoder: DecoderConfig, prefix: str, tensor: int = 1
) -> CostNode:
    """One run of ``prefill`` (the prompt and image tokens, then the lm_head on the last
    position) or ``decode`` (every step) for the workload's pages; ``prefix``: where the
    decoder sits in the reference module; ``tensor``: one rank of the tensor-parallel plan."""
    db = w.dtype_bytes
    if stage == "prefill":
        body = decoder_prefill(w.pages, w.prefill_tokens, decoder, db, prefix=prefix, tensor=tensor)
        head = lm_head(w.pages, decoder, db, tensor)
        return group("", "prefill", [*body.children, *head], reference="", held_bytes=body.held_bytes)
    if stage == "decode":
        return decoder_decode(
            w.pages, w.prefill_tokens, w.decode_steps, decoder, db, prefix=prefix, tensor=tensor
        )
    raise ValueError(f"stage {stage!r} is not modeled; allowed: {', '.join(STAGES)}")


def runs_per_generation(w: PageBatch) -> dict[str, int]:
    """Each stage runs once per generation (decode covers every step)."""
    return dict.fromkeys(STAGES, 1)


def generation_flops(w: PageBatch, tree: Callable[[str], CostNode]) -> int:
    """FLOPs of one whole generation: every stage's ``tree(stage)`` once."""
    return per_generation(runs_per_generation(w), {stage: tree(stage).total.flops for stage in STAGES})
