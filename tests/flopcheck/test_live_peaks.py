"""The memory reference measures the implementation: on every stage of every registered model, the
live peak measured under the FLOP counter equals the peak of a plain run of the same module (the
counter's decompositions, such as a nearest upsample's fp32 index arithmetic, are not seen); and
on small real-tensor CPU runs the tracker's peak equals what the process really allocates."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_flopcheck import ReferenceCall
from pytest_flopcheck.model.registry import load_registry
from pytest_flopcheck.reference.counting import count_reference, plain_peak

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("transformers")


def first_workload_running(model: str, stage: str) -> str:
    reg = load_registry().models[model]
    for name, workload in reg.workloads.items():
        if reg.runs_per_generation(workload)[stage]:
            return name
    raise AssertionError(f"no standard workload of {model} runs {stage}")


STAGES = [
    (model, stage.name, first_workload_running(model, stage.name))
    for model, reg in sorted(load_registry().models.items())
    for stage in reg.stages
    if any(reg.runs_per_generation(w)[stage.name] for w in reg.workloads.values())
]


@pytest.mark.parametrize(("model", "stage", "workload"), STAGES, ids=[f"{m}/{w}/{s}" for m, s, w in STAGES])
def test_the_counted_peak_is_the_peak_of_a_plain_run(model: str, stage: str, workload: str) -> None:
    reg = load_registry().models[model]
    assert reg.reference is not None
    w = reg.workloads[workload]
    counted = count_reference(reg.reference(w, stage, "meta"), "meta", reg.op_policy)
    assert counted.peak_bytes == plain_peak(reg.reference(w, stage, "meta"), "meta")


def allocated_peak(run: Any) -> int:
    """The peak of the bytes the CPU allocator holds over ``run`` beyond what it held before
    (torch's profiler records every allocation and free of the CPU allocator)."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        run()
    events = sorted(
        (e for e in prof.profiler.kineto_results.events() if e.name() == "[memory]"),
        key=lambda e: e.start_ns(),
    )
    live = peak = 0
    for event in events:
        live += event.nbytes()
        peak = max(peak, live)
    return peak


class _Upsample(torch.nn.Module):
    def forward(self, x: Any) -> Any:
        return torch.nn.functional.interpolate(x, scale_factor=2.0, mode="nearest-exact")


class _Attention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.qkv = torch.nn.Linear(64, 192)
        self.out = torch.nn.Linear(64, 64)

    def forward(self, x: Any) -> Any:
        q, k, v = self.qkv(x).view(2, 128, 3, 4, 16).permute(2, 0, 3, 1, 4)
        y = torch.nn.functional.scaled_dot_product_attention(q, k, v)
        return self.out(y.transpose(1, 2).reshape(2, 128, 64))


REAL_MODULES = {
    "mlp with gelu": (
        lambda: torch.nn.Sequential(torch.nn.Linear(256, 1024), torch.nn.GELU(), torch.nn.Linear(1024, 256)),
        (64, 256),
    ),
    "layer norm": (lambda: torch.nn.LayerNorm(256), (64, 256)),
    "attention (sdpa)": (_Attention, (2, 128, 64)),
}


@pytest.mark.parametrize("name", list(REAL_MODULES))
def test_on_real_cpu_tensors_the_tracked_peak_is_what_the_process_allocates(name: str) -> None:
    build, shape = REAL_MODULES[name]
    torch.manual_seed(0)
    module = build().eval()
    x = torch.randn(*shape)
    with torch.no_grad():
        module(x)  # warm up: lazy initialisation allocates once
        counts = count_reference(ReferenceCall(module, lambda: module(x)), "cpu")
        allocated = allocated_peak(lambda: module(x))
    # The tracker's peak beyond what was live at the start, against the allocator's rise: the
    # same bytes (no kernel of these modules takes a workspace from the CPU allocator).
    assert counts.peak_bytes - counts.baseline_bytes == allocated


def test_a_nearest_upsample_holds_its_output_the_cpu_kernel_also_copies_inside() -> None:
    """What the tracker leaves out: a kernel's own allocations. The counter decomposes a nearest
    upsample into fp32 index arithmetic; the tracker sees the op itself and its output alone. The
    CPU kernel clones its input and its output inside (below the dispatcher, where no Python mode
    sees it): the allocator's rise is the output plus those two copies."""
    module = _Upsample()
    x = torch.randn(1, 8, 32, 32)
    with torch.no_grad():
        module(x)
        counts = count_reference(ReferenceCall(module, lambda: module(x)), "cpu")
        allocated = allocated_peak(lambda: module(x))
    output = 1 * 8 * 64 * 64 * 4
    assert counts.peak_bytes - counts.baseline_bytes == output
    assert [t.op for t in counts.peak_tensors] == ["aten._upsample_nearest_exact2d"]
    assert allocated == output + x.nbytes + output
