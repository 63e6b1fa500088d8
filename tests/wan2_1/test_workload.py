"""The workload: validation, geometry, warnings, the standard set."""

from __future__ import annotations

import pytest

from pytest_flopcheck import WorkloadError
from wan_models.wan2_1.workload import STANDARD_WORKLOADS, Workload


def test_standard_workloads_are_the_seeds_set_and_the_image_models() -> None:
    got = {
        k: (w.variant, w.batch_size, w.steps, w.frames, w.height, w.width, w.text_len)
        for k, w in STANDARD_WORKLOADS.items()
    }
    assert got == {
        "W-001": ("T2V-14B", 1, 1, 4, 256, 256, 64),
        "W-002": ("T2V-14B", 1, 50, 16, 512, 512, 512),
        "W-003": ("T2V-14B", 1, 50, 16, 720, 1280, 512),
        "W-004": ("T2V-1.3B", 1, 50, 81, 480, 832, 512),
        "I2V-480P": ("I2V-14B-480P", 1, 40, 81, 480, 832, 512),
        "I2V-720P": ("I2V-14B-720P", 1, 40, 81, 720, 1280, 512),
        "FLF2V-720P": ("FLF2V-14B", 1, 40, 81, 720, 1280, 512),
    }
    assert all(w.guidance and w.dtype == "bf16" for w in STANDARD_WORKLOADS.values())


def test_geometry_follows_the_official_rule() -> None:
    w = STANDARD_WORKLOADS["W-003"]
    assert (w.latent_frames, w.output_frames, w.latent_height, w.latent_width) == (4, 13, 90, 160)
    assert w.tokens == 4 * 45 * 80
    assert Workload(frames=81).tokens == 21 * 45 * 80


@pytest.mark.parametrize(
    ("field", "value", "allowed"),
    [
        ("batch_size", 0, "positive integer"),
        ("frames", -1, "positive integer"),
        ("steps", 2.5, "positive integer"),
        ("steps", True, "positive integer"),
        ("text_len", float("nan"), "positive integer"),
        ("frames", "81", "positive integer"),
        ("height", 721, "multiple of 16"),
        ("width", 0, "positive integer"),
        ("variant", "T2V-2B", "choose one of T2V-14B, T2V-1.3B"),
        ("dtype", "int4", "choose one of fp32, bf16, fp16, fp8"),
        ("guidance", "yes", "true or false"),
    ],
)
def test_bad_values_get_one_sentence(field: str, value: object, allowed: str) -> None:
    with pytest.raises(WorkloadError) as info:
        Workload(**{field: value})  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith(f"workload field {field!r} is {value!r}; ")
    assert allowed in message
    assert (info.value.field, "\n" in message) == (field, False)


def test_frames_not_4n_plus_1_warn_with_both_counts() -> None:
    (warning,) = [w for w in STANDARD_WORKLOADS["W-003"].warnings() if "4n+1" in w]
    assert "4 latent frames" in warning
    assert "13 output frames" in warning
    assert "round frames to 17" in warning
    assert Workload(frames=81, height=720, width=1280).warnings() == []


def test_extrapolation_warnings() -> None:
    notes = Workload(frames=1001, height=2160, width=3840).warnings()
    assert any("2160×3840 is not an official size" in n for n in notes)
    assert any("exceeds the official 81" in n for n in notes)
    assert any("not an official size of T2V-1.3B" in n for n in Workload(variant="T2V-1.3B").warnings())
