"""Runtime profiles of the Wan pipelines: per-stage dtypes and devices, and which stage sets the
pipeline's GPU peak (W-004, the 1.3B model at 480p, 81 frames)."""

from __future__ import annotations

import pytest

from pytest_flopcheck.sizing.build import build_report
from pytest_flopcheck.sizing.records import RuntimeFigures
from wan_models.wan2_1.registration import registration
from wan_models.wan2_1.workload import STANDARD_WORKLOADS


def runtime(name: str, workload: str = "W-004") -> RuntimeFigures:
    report = build_report(
        registration(), STANDARD_WORKLOADS[workload], run_id="r", created_utc="t", runtime=name
    )
    assert report.runtime is not None
    return report.runtime


@pytest.mark.parametrize(
    ("name", "stage"),
    [
        ("diffusers", "vae_decode"),  # every model resident: the fp32 VAE's working set tops them
        ("diffusers-offload", "text_encoder"),  # one model at a time: the 11.4 GB UMT5 is the largest
        ("official", "text_encoder"),  # the fp32 DiT is loaded at start-up: UMT5 joins it to encode
        ("official-no-offload", "vae_decode"),
        ("official-t5-cpu", "vae_decode"),  # the DiT moved out before the decode
        ("fp8", "vae_decode"),
    ],
)
def test_each_runtime_names_the_stage_that_sets_the_peak(name: str, stage: str) -> None:
    assert runtime(name).set_by == stage


def test_runtimes_hold_weights_at_their_dtypes() -> None:
    diffusers, official, fp8 = runtime("diffusers"), runtime("official"), runtime("fp8")
    params = official.stage("diffusion_core").weight_bytes // 4
    assert diffusers.stage("diffusion_core").weight_bytes == 2 * params
    assert fp8.stage("diffusion_core").weight_bytes == params
    assert official.stage("vae_decode").weight_bytes == diffusers.stage("vae_decode").weight_bytes
    assert runtime("official-t5-cpu").stage("text_encoder").gpu_bytes_while_running == 0
    # 14B DiT weights in fp32: the official code's 57 GB
    assert round(runtime("official", "W-003").stage("diffusion_core").weight_bytes / 1e9) == 57


def test_stages_a_text_to_video_run_skips_are_not_loaded() -> None:
    rt = runtime("diffusers")
    loaded = sum(rt.stage(n).weight_bytes for n in ("text_encoder", "diffusion_core", "vae_decode"))
    assert rt.peak_gpu_bytes == loaded + rt.stage("vae_decode").working_bytes
    assert rt.moves == ()  # every model resident: nothing moves


def test_the_official_one_gpu_run_moves_what_generate_py_moves() -> None:
    """--offload_model True: UMT5 to the GPU and back, the DiT (loaded at start-up) to the CPU
    after sampling; the VAE stays. While UMT5 encodes, the GPU holds it, the fp32 DiT and the VAE."""
    rt = runtime("official")
    moves = [(m.weights_of, m.to) for m in rt.moves]
    assert moves == [("text_encoder", "gpu"), ("text_encoder", "host"), ("diffusion_core", "host")]
    weights = {s.name: s.weight_bytes for s in rt.stages}
    assert rt.stage("text_encoder").gpu_bytes_while_running == (
        weights["text_encoder"]
        + weights["diffusion_core"]
        + weights["vae_decode"]
        + rt.stage("text_encoder").working_bytes
    )
    assert rt.stage("vae_decode").gpu_bytes_while_running == (
        weights["vae_decode"] + rt.stage("vae_decode").working_bytes
    )
    assert rt.stage("diffusion_core").autocast
    assert rt.attention == "fa2"


def test_the_report_counts_only_the_weights_a_generation_loads() -> None:
    from wan_models.wan2_1.pipeline import stage_tree

    w = STANDARD_WORKLOADS["W-004"]
    report = build_report(registration(), w, run_id="r", created_utc="t")
    loaded = sum(
        stage_tree(w, s).total.weight_bytes for s in ("text_encoder", "diffusion_core", "vae_decode")
    )
    assert report.memory.pipeline.weight_bytes == loaded  # no CLIP, no VAE encoder
    assert report.totals.weight_bytes == loaded
