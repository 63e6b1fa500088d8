"""Wan2.2's two experts: the step split against diffusers' scheduler and pipeline, the
workload's rules, and both experts' weights in the pipeline totals."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from pytest_flopcheck import WorkloadError
from wan_models.wan2_2.pipeline import runs_per_generation, stage_tree
from wan_models.wan2_2.registration import registration
from wan_models.wan2_2.schedule import expert_steps, flow_timesteps
from wan_models.wan2_2.workload import Workload


@pytest.mark.parametrize(
    ("steps", "shift", "boundary", "split"),
    [
        (40, 12.0, 0.875, (26, 14)),  # T2V-A14B, official settings
        (40, 5.0, 0.9, (15, 25)),  # I2V-A14B, official settings
        (50, 3.0, 0.875, (16, 34)),
        (50, 3.0, 0.9, (13, 37)),
    ],
)
def test_the_published_expert_splits(
    steps: int, shift: float, boundary: float, split: tuple[int, int]
) -> None:
    assert expert_steps(steps, shift, boundary) == split


def test_timesteps_equal_the_diffusers_scheduler() -> None:
    pytest.importorskip("diffusers")
    from diffusers import UniPCMultistepScheduler

    for shift in (1.0, 2.5, 3.0, 5.0, 8.0, 12.0, 17.3):
        scheduler = UniPCMultistepScheduler(  # type: ignore[no-untyped-call]
            prediction_type="flow_prediction", use_flow_sigmas=True, flow_shift=shift
        )
        for steps in (*range(1, 61), 100, 250, 1000):
            scheduler.set_timesteps(steps)
            assert [int(t) for t in scheduler.timesteps] == flow_timesteps(steps, shift), (steps, shift)


@pytest.mark.reference
@pytest.mark.parametrize(
    ("variant", "steps", "shift", "guidance"),
    [
        ("T2V-A14B", 4, 3.0, True),
        ("T2V-A14B", 6, 12.0, False),
        ("T2V-A14B", 1, 3.0, True),
        ("I2V-A14B", 6, 5.0, True),
        ("I2V-A14B", 3, 1.0, False),
        ("TI2V-5B", 3, 5.0, True),
    ],
)
def test_the_tiny_pipeline_calls_each_stage_as_modeled(
    variant: str, steps: int, shift: float, guidance: bool
) -> None:
    pytest.importorskip("diffusers")
    pytest.importorskip("transformers")
    from wan_models.wan2_2.reference import tiny_call

    size = 32 if variant == "TI2V-5B" else 16
    workloads = [
        Workload(
            variant=variant, frames=5, height=size, width=size, steps=steps, flow_shift=shift, text_len=8,
            guidance=guidance, image=image,
        )
        for image in ((False, True) if variant == "TI2V-5B" else (variant == "I2V-A14B",))
    ]  # fmt: skip
    for w in workloads:
        observe_stage_calls(w, tiny_call(w))


def observe_stage_calls(w: Workload, call: Any) -> None:
    seen: Counter[str] = Counter()

    def count(stage: str) -> Any:
        def hook(*_: Any) -> None:
            seen[stage] += 1

        return hook

    if "transformer_2" in call.module:
        call.module["transformer"].register_forward_hook(count("diffusion_high_noise"))
        call.module["transformer_2"].register_forward_hook(count("diffusion_low_noise"))
    else:
        call.module["transformer"].register_forward_hook(count("diffusion_core"))
    call.module["text_encoder"].register_forward_hook(count("text_encoder"))
    vae = call.module["vae"]
    for method, stage in (("encode", "vae_encode"), ("decode", "vae_decode")):
        original = getattr(vae, method)

        def counted(*args: Any, _original: Any = original, _stage: str = stage, **kwargs: Any) -> Any:
            seen[_stage] += 1
            return _original(*args, **kwargs)

        setattr(vae, method, counted)
    call.run()
    assert dict(seen) == {stage: n for stage, n in runs_per_generation(w).items() if n}


def test_both_experts_weights_count_in_the_pipeline() -> None:
    w = Workload(height=480, width=832)
    expert = stage_tree(w, "diffusion_high_noise").total.params
    assert expert == stage_tree(w, "diffusion_low_noise").total.params
    reg = registration()
    assert all(stage.weights_of is None for stage in reg.stages)  # two sets of expert weights
    assert expert > 14_000_000_000


def test_official_settings_are_the_variants_defaults() -> None:
    t2v, i2v = Workload(), Workload(variant="I2V-A14B")
    assert (t2v.steps, t2v.flow_shift, i2v.steps, i2v.flow_shift) == (40, 12.0, 40, 5.0)
    assert runs_per_generation(t2v)["diffusion_high_noise"] == 2 * 26
    assert runs_per_generation(i2v)["diffusion_low_noise"] == 2 * 25
    assert runs_per_generation(t2v)["vae_encode"] == 0
    assert runs_per_generation(i2v)["vae_encode"] == 1
    assert stage_tree(i2v, "vae_encode").total.params == 53_596_928  # Wan-VAE encoder + quant_conv


def test_an_expert_no_step_reaches_runs_zero_times() -> None:
    runs = runs_per_generation(Workload(steps=1))
    assert runs["diffusion_high_noise"] == 2
    assert runs["diffusion_low_noise"] == 0
    assert registration().runs_per_generation(Workload(steps=1))["diffusion_low_noise"] == 0


def test_frames_follow_diffusers_and_the_difference_is_stated() -> None:
    w = Workload(frames=16)
    assert w.as_wan2_1().latent_frames == 5  # 16 -> 17 frames -> 5 latent frames; official: 4
    assert any("official code's floor rule gives 4" in note for note in w.warnings())
    assert not any("frames" in note for note in Workload(frames=81).warnings())


def test_the_official_per_token_time_embedding_is_stated_not_modeled() -> None:
    (note,) = Workload().warnings()  # T2V-A14B at 720p, 81 frames: 75,600 tokens per sample
    assert "27,943,132,200,960 FLOPs more per DiT forward" in note  # the facts file: about 27.9 TFLOP
    assert Workload(variant="TI2V-5B").warnings() == []  # diffusers embeds per token there too


@pytest.mark.parametrize(
    ("values", "field", "message"),
    [
        ({"flow_shift": 0}, "flow_shift", "it must be a positive number"),
        ({"flow_shift": float("nan")}, "flow_shift", "it must be a positive number"),
        ({"variant": "T2V-A15B"}, "variant", "choose one of T2V-A14B, I2V-A14B, TI2V-5B"),
        ({"variant": "T2V-A14B", "image": True}, "image", "T2V-A14B: it takes no image"),
        ({"variant": "I2V-A14B", "image": False}, "image", "I2V-A14B: it is image-to-video only"),
        ({"variant": "TI2V-5B", "height": 720}, "height", "TI2V-5B needs a multiple of 32"),
        ({"steps": 0}, "steps", "it must be a positive integer"),
    ],
)
def test_bad_workloads_name_the_field(values: dict[str, object], field: str, message: str) -> None:
    with pytest.raises(WorkloadError, match=message) as info:
        Workload(**values)  # type: ignore[arg-type]
    assert info.value.field == field


def test_the_cli_parses_the_flow_shift(tmp_path: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from pytest_flopcheck.cli.app import main

    assert main(["report", "wan2_2", "--flow-shift", "x", "--output", str(tmp_path)]) == 2
    assert "--flow-shift 'x' is not allowed: it must be a number" in capsys.readouterr().err
    assert main(["report", "wan2_2", "--steps", "50", "--flow-shift", "3", "--output", str(tmp_path)]) == 0
    (report,) = tmp_path.glob("*/static_analysis/wan2_2/report.json")
    import json

    stages = json.loads(report.read_text())["stage_totals"]
    assert stages["diffusion_high_noise"]["runs_per_generation"] == 2 * 16
    assert stages["diffusion_low_noise"]["runs_per_generation"] == 2 * 34


def test_ti2v_defaults_one_dit_per_token_timesteps_and_the_wan22_vae() -> None:
    w = Workload(variant="TI2V-5B")
    assert (w.frames, w.height, w.width, w.steps, w.flow_shift, w.image) == (121, 704, 1280, 50, 5.0, False)
    runs = runs_per_generation(w)
    assert (runs["diffusion_core"], runs["diffusion_high_noise"], runs["diffusion_low_noise"]) == (100, 0, 0)
    assert w.as_wan2_1().tokens == 31 * 22 * 40  # 16x VAE, patch 2
    assert stage_tree(w, "vae_decode").total.params == 555_051_580  # the Wan2.2 decoder (Wan2.1's: 73 M)
    image = Workload(variant="TI2V-5B", image=True)
    assert runs_per_generation(image)["vae_encode"] == 1
    one_frame = stage_tree(image, "vae_encode").total.flops
    assert one_frame < stage_tree(Workload(variant="I2V-A14B"), "vae_encode").total.flops


def test_the_analytic_side_and_reports_do_not_import_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys, wan_models.wan2_2.registration as r; "
        "from pytest_flopcheck.sizing.build import build_report; "
        "reg = r.registration(); "
        "[build_report(reg, w, run_id='x', created_utc='y', runtime='official') "
        "for w in reg.workloads.values()]; "
        "[g() for g in reg.generations.values()]; "
        "print('torch' in sys.modules, 'diffusers' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
