"""Pipeline multiplicities observed on a real diffusers WanPipeline (tiny, random, CPU).

The whole tiny generation is also a generated check, ``test_generation[wan2_1/tiny-guided]``:
its counted FLOPs must equal the analytic per-generation total. This file checks what a total
cannot: how often each stage is called, and that cond and uncond are separate batch-1 forwards."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from wan_models.wan2_1 import Workload, runs_per_generation

pytestmark = pytest.mark.reference


def tiny_pipeline() -> Any:
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wan_models.wan2_1.reference import tiny_pipeline as build

    return build()


def observe(pipe: Any, *, steps: int, guidance: bool) -> tuple[Counter[str], set[int]]:
    seen: Counter[str] = Counter()
    dit_batches: set[int] = set()

    def count(stage: str) -> Any:
        def hook(module: Any, args: Any, kwargs: Any, output: Any) -> None:
            seen[stage] += 1
            if stage == "diffusion_core":
                dit_batches.add(int(kwargs["hidden_states"].shape[0]))

        return hook

    handles = [
        pipe.text_encoder.register_forward_hook(count("text_encoder"), with_kwargs=True),
        pipe.transformer.register_forward_hook(count("diffusion_core"), with_kwargs=True),
    ]
    decode = pipe.vae.decode

    def counted_decode(*args: Any, **kwargs: Any) -> Any:
        seen["vae_decode"] += 1
        return decode(*args, **kwargs)

    pipe.vae.decode = counted_decode
    try:
        pipe(
            prompt="a cat",
            negative_prompt="blurry",
            height=16,
            width=16,
            num_frames=5,
            num_inference_steps=steps,
            guidance_scale=5.0 if guidance else 1.0,
            max_sequence_length=8,
            output_type="pt",
        )
    finally:
        for handle in handles:
            handle.remove()
        pipe.vae.decode = decode
    return seen, dit_batches


@pytest.mark.parametrize("guidance", [True, False])
def test_pipeline_runs_each_stage_as_the_analytic_pipeline_assumes(guidance: bool) -> None:
    pipe = tiny_pipeline()
    seen, dit_batches = observe(pipe, steps=2, guidance=guidance)
    runs = runs_per_generation(Workload(steps=2, guidance=guidance))
    assert dict(seen) == {stage: n for stage, n in runs.items() if n}  # text-to-video: no image stages
    # cond and uncond are separate batch-1 forwards, not one batch-2 forward
    assert dit_batches == {1}


def test_pipeline_multiplicities_scale_with_steps() -> None:
    seen, _ = observe(tiny_pipeline(), steps=3, guidance=True)
    assert dict(seen) == {stage: n for stage, n in runs_per_generation(Workload(steps=3)).items() if n}
