"""Wan2.1 image-to-video and first-last-frame-to-video: the stages they add, observed on a tiny
diffusers ``WanImageToVideoPipeline``, and the workload's rules."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pytest_flopcheck import WorkloadError
from wan_models.wan2_1.pipeline import runs_per_generation, stage_tree
from wan_models.wan2_1.workload import STANDARD_WORKLOADS, Workload


def test_image_stages_run_once_for_image_variants_and_never_for_text_to_video() -> None:
    for name in ("I2V-480P", "I2V-720P", "FLF2V-720P"):
        runs = runs_per_generation(STANDARD_WORKLOADS[name])
        assert (runs["image_encoder"], runs["vae_encode"], runs["diffusion_core"]) == (1, 1, 80)
    runs = runs_per_generation(STANDARD_WORKLOADS["W-003"])
    assert (runs["image_encoder"], runs["vae_encode"]) == (0, 0)


def test_first_last_frame_encodes_two_images_and_attends_to_both() -> None:
    i2v, flf2v = STANDARD_WORKLOADS["I2V-720P"], STANDARD_WORKLOADS["FLF2V-720P"]
    assert stage_tree(flf2v, "image_encoder").total.flops == 2 * stage_tree(i2v, "image_encoder").total.flops
    assert stage_tree(flf2v, "vae_encode").total == stage_tree(i2v, "vae_encode").total
    assert flf2v.dit.image_tokens == 2 * i2v.dit.image_tokens == 514
    # the learned positions of the two images' tokens: 514 × 1280 more parameters
    extra = stage_tree(flf2v, "diffusion_core").total.params - stage_tree(i2v, "diffusion_core").total.params
    assert extra == 514 * 1280


def test_the_conditioning_video_is_encoded_once_whatever_the_batch() -> None:
    one = Workload(variant="I2V-14B-480P", height=480, width=832, batch_size=1)
    four = Workload(variant="I2V-14B-480P", height=480, width=832, batch_size=4)
    assert stage_tree(four, "vae_encode").total == stage_tree(one, "vae_encode").total
    assert stage_tree(four, "diffusion_core").total.flops == 4 * stage_tree(one, "diffusion_core").total.flops


def test_image_variants_take_exactly_512_text_tokens() -> None:
    with pytest.raises(WorkloadError, match="take exactly 512 text tokens") as info:
        Workload(variant="I2V-14B-480P", text_len=256)
    assert info.value.field == "text_len"


@pytest.mark.reference
@pytest.mark.parametrize("guidance", [True, False])
def test_the_tiny_image_to_video_pipeline_runs_each_stage_as_modeled(guidance: bool) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wan_models.wan2_1.reference import tiny_i2v_call

    w = Workload(
        variant="I2V-14B-480P", frames=5, height=16, width=16, steps=2, text_len=512, guidance=guidance
    )
    call = tiny_i2v_call(w)
    seen: Counter[str] = Counter()
    images: list[int] = []

    def count(stage: str) -> Any:
        def hook(_module: Any, args: Any, kwargs: Any, _output: Any) -> None:
            seen[stage] += 1
            if stage == "image_encoder":
                images.append(int(kwargs["pixel_values"].shape[0]))

        return hook

    for name, stage in (
        ("text_encoder", "text_encoder"),
        ("image_encoder", "image_encoder"),
        ("transformer", "diffusion_core"),
    ):
        call.module[name].register_forward_hook(count(stage), with_kwargs=True)
    vae = call.module["vae"]
    for method, stage in (("encode", "vae_encode"), ("decode", "vae_decode")):
        original = getattr(vae, method)

        def counted(*args: Any, _original: Any = original, _stage: str = stage, **kwargs: Any) -> Any:
            seen[_stage] += 1
            return _original(*args, **kwargs)

        setattr(vae, method, counted)
    call.run()
    assert dict(seen) == {stage: n for stage, n in runs_per_generation(w).items() if n}
    assert images == [1]
