"""Registration of model ``deepseek_ocr`` (DeepSeek-OCR v1) with pytest-flopcheck."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import attrs

from deepseek_models.deepseek_ocr import reference
from deepseek_models.deepseek_ocr.config import CHECKPOINT, TINY
from deepseek_models.deepseek_ocr.stages import generation_flops, runs_per_generation, stage_tree
from deepseek_models.deepseek_ocr.workload import STANDARD_WORKLOADS, Page
from deepseek_models.shared.parallel import decoder_parallel
from deepseek_models.shared.reference import IMPLEMENTATION
from deepseek_models.shared.serving import DECODER_STAGES, runtimes, serving
from pytest_flopcheck import Generation, Layout, ModelRegistration, Stage, hookimpl

NAME = "deepseek_ocr"

TINY_WORKLOADS = {
    "tiny-base": Page(mode="base", prompt_tokens=4, new_tokens=5, dtype="fp32"),
    "tiny-gundam": Page(mode="gundam", tiles="2x1", prompt_tokens=4, new_tokens=5, dtype="fp32"),
}
"""Workloads of the real end-to-end runs (with the tiny configurations)."""

NOT_MODELED = (
    "Elementwise work (norms, activations, softmax, RoPE, routing top-k and weights, residual adds, the "
    "position-table interpolation, the page's token layout): 0 FLOPs by the counter's convention, and "
    "neither its traffic nor its kernel launches are predicted, so decode times are a lower bound",
    "Image preprocessing, the choice of Gundam tiles from the page's aspect ratio (the workload gives the "
    "tiles), tokenization; Gundam-M (1280 px global view with 1024 px tiles)",
    "Sampling, stopping before new_tokens, and speculative or batched-prefill serving schedules",
    "v1's own code (not installable): its parts are checked against transformers modules, see the README",
    "References on cpu and cuda (the model is counted on meta)",
)


def tiny_generation(w: Page) -> Generation:
    """A real end-to-end run of the tiny configuration on CPU: the glue's vision over random
    pages, their tokens scattered into the prompt, then transformers' ``generate()`` on the
    shared decoder (random weights, so real MoE routing); and the analytic total for it."""
    return Generation(
        generation_flops(w, TINY),
        functools.partial(reference.tiny_generate, w),
        "glue vision + transformers generate(), tiny, CPU",
    )


def reference_config(workload: Page, stage: str) -> dict[str, Any]:
    """What the reference is built from (it keys the reference cache)."""
    return {
        "architecture": attrs.asdict(CHECKPOINT),
        "experts": IMPLEMENTATION,
    }


def metadata(workload: Page) -> dict[str, Any]:
    return {**attrs.asdict(CHECKPOINT), "workload": workload.describe()}


TENSOR_CHECKED = "base-short"
"""The workload whose decoder stages ``test_parallel`` checks under tensor parallelism (t2)."""


def registration() -> ModelRegistration:
    return ModelRegistration(
        name=NAME,
        description="DeepSeek-OCR (v1): SAM + CLIP-L vision, MoE language decoder (transformers parts)",
        stages=(
            Stage(
                "vision", 0.0, "every page: its Gundam tiles (if any), then its view", memory_tolerance=0.01
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
        serving=serving(CHECKPOINT.decoder),
        runtimes=runtimes(),
        parallel=decoder_parallel(
            stage_tree,
            runs_per_generation,
            {
                "the decoder's attention heads": CHECKPOINT.decoder.heads,
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
