"""Registration of model ``deepseek_ocr2`` with pytest-flopcheck (the ``flopcheck`` entry point)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs

from deepseek_models.deepseek_ocr2 import reference
from deepseek_models.deepseek_ocr2.config import DECODER, ENCODER, SAM, TINY
from deepseek_models.deepseek_ocr2.stages import generation_flops, runs_per_generation, stage_tree
from deepseek_models.deepseek_ocr2.workload import STANDARD_WORKLOADS, Page
from deepseek_models.shared.parallel import decoder_parallel
from deepseek_models.shared.serving import DECODER_STAGES, runtimes, serving
from pytest_flopcheck import Generation, Layout, ModelRegistration, Stage, hookimpl

NAME = "deepseek_ocr2"

TINY_WORKLOADS = {
    "tiny": Page(pages=1, crops=0, prompt_tokens=4, new_tokens=5, dtype="fp32"),
    "tiny-crops": Page(pages=1, crops=2, prompt_tokens=4, new_tokens=5, dtype="fp32"),
}
"""Workloads of the real end-to-end generations (run with the tiny configurations)."""

NOT_MODELED = (
    "Elementwise work (norms, activations, softmax, RoPE, routing top-k and weights, residual adds, the "
    "view assembly): 0 FLOPs by the counter's convention, and neither its traffic nor its kernel launches "
    "are predicted, so decode times are a lower bound",
    "Image preprocessing and the choice of crops (the workload gives the crop count), tokenization",
    "Sampling, stopping before new_tokens, and speculative or batched-prefill serving schedules",
    "References on cpu and cuda (the model is counted on meta)",
)


def tiny_generation(w: Page) -> Generation:
    """A real ``generate()`` of the tiny configuration on CPU (random weights, so real MoE
    routing through transformers' grouped_mm experts), and the analytic total for the same
    configuration."""
    return Generation(
        generation_flops(w, TINY),
        functools.partial(reference.tiny_generate, w),
        "transformers generate(), tiny, CPU",
    )


def reference_config(workload: Page, stage: str) -> dict[str, Any]:
    """What the reference is built from (it keys the reference cache)."""
    return {
        "decoder": attrs.asdict(DECODER),
        "sam": attrs.asdict(SAM),
        "encoder": attrs.asdict(ENCODER),
        "experts": reference.IMPLEMENTATION,
    }


def metadata(workload: Page) -> dict[str, Any]:
    return {
        "decoder": attrs.asdict(DECODER),
        "sam": attrs.asdict(SAM),
        "encoder": attrs.asdict(ENCODER),
        "workload": workload.describe(),
    }


TENSOR_CHECKED = "single-short"
"""The workload whose decoder stages ``test_parallel`` checks under tensor parallelism (t2)."""


def registration() -> ModelRegistration:
    return ModelRegistration(
        name=NAME,
        description="DeepSeek-OCR-2: SAM + Qwen2-style vision encoder, MoE language decoder (transformers)",
        stages=(
            Stage(
                "vision",
                0.0,
                "every view of every page: the global views, then the crops",
                memory_tolerance=0.01,
            ),
            *DECODER_STAGES,
        ),
        workloads=STANDARD_WORKLOADS,
        analytic=stage_tree,
        reference=reference.build,
        multiplicities=runs_per_generation,
        reference_packages=("torch", "transformers"),
        reference_config=reference_config,
        metadata=metadata,
        generations={name: functools.partial(tiny_generation, w) for name, w in TINY_WORKLOADS.items()},
        not_modeled=NOT_MODELED,
        workload_type=Page,
        serving=serving(DECODER),
        runtimes=runtimes(),
        parallel=decoder_parallel(
            stage_tree,
            runs_per_generation,
            {
                "the decoder's attention heads": DECODER.heads,
                "the vision encoder's attention heads": ENCODER.heads,
                "the vision encoder's key/value heads": ENCODER.kv_heads,
            },
            reference.build,
            checks=tuple(
                (TENSOR_CHECKED, stage, Layout(tensor=2)) for stage in ("vision", "prefill", "decode")
            ),
        ),
    )


@hookimpl
def flopcheck_register_models(register: Callable[[ModelRegistration], None]) -> None:
    register(registration())
