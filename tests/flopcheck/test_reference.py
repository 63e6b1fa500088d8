"""The reference runner: per-module counts, own work, parameters, coverage gaps."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_flopcheck import ReferenceCall
from pytest_flopcheck.reference.counting import (
    ReferenceSkipped,
    build_and_count,
    check_device,
    count_reference,
    coverage_gaps,
    plain_peak,
)

torch = pytest.importorskip("torch")
sys.path.insert(0, str(Path(__file__).parent))
import toy_model  # noqa: E402


@pytest.fixture(params=["meta", "cpu"])
def device(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_counts_per_module_and_own_work(device: str) -> None:
    w = toy_model.ToyWorkload(2, 5, 8)
    counts = build_and_count(lambda: toy_model.reference(w, "core", device), device)
    tree = toy_model.analytic(w, "core")
    assert counts.total_flops == tree.total.flops
    assert counts.module("attention").own_flops == tree.find("attention.core").total.flops
    assert counts.module("attention").flops == tree.find("attention").total.flops
    assert counts.module("proj").ops == {"aten.addmm": tree.find("proj").total.flops}
    assert counts.module("").params == tree.total.params
    assert coverage_gaps(tree, counts) == []


def test_unclaimed_module_is_a_gap() -> None:
    w = toy_model.ToyWorkload(2, 5, 8)
    counts = build_and_count(lambda: toy_model.reference(w, "core", "meta"), "meta")
    tree = toy_model.analytic(w, "core")
    without_conv = type(tree)(tree.id, tree.category, tree.metrics, tree.children[:2], reference="")
    gaps = coverage_gaps(without_conv, counts)
    assert [(g.kind, g.name) for g in gaps] == [("unclaimed_module", "conv")]


def test_sdpa_on_cpu_is_counted_only_with_the_extra_formula() -> None:
    q = torch.randn(1, 2, 4, 8)
    module = torch.nn.Identity()
    call = ReferenceCall(module, lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q))
    counts = count_reference(call, "cpu")
    assert counts.total_flops == 2 * (2 * 4 * 8 * 4) * 2
    assert counts.uncounted_ops == {}


def test_compute_op_without_formula_is_reported() -> None:
    x = torch.randn(3, 4)
    module = torch.nn.Identity()
    # aten.mv (matrix-vector) has no formula in torch's counter.
    counts = count_reference(ReferenceCall(module, lambda: torch.mv(x, torch.randn(4))), "cpu")
    gaps = coverage_gaps(type("T", (), {"leaves": lambda self: iter(())})(), counts)  # type: ignore[arg-type]
    assert "aten.mv" in counts.uncounted_ops
    assert any(g.kind == "uncounted_op" and g.name == "aten.mv" for g in gaps)


def test_missing_package_is_a_skip_with_the_reason() -> None:
    def build() -> ReferenceCall:
        raise ModuleNotFoundError("No module named 'nonexistent_models'")

    with pytest.raises(ReferenceSkipped, match="nonexistent_models") as info:
        build_and_count(build, "meta")
    assert info.value.missing_dependency


def test_run_that_does_not_fit_is_skipped_with_the_estimate() -> None:
    with pytest.raises(ReferenceSkipped, match=r"needs about 1048576\.0 GiB on cpu"):
        check_device("cpu", 2**50)


def test_unknown_device() -> None:
    with pytest.raises(ValueError, match="device 'tpu' is not supported"):
        check_device("tpu", None)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_counts_match_meta() -> None:
    w = toy_model.ToyWorkload(2, 5, 8)
    cuda = build_and_count(lambda: toy_model.reference(w, "core", "cuda"), "cuda")
    meta = build_and_count(lambda: toy_model.reference(w, "core", "meta"), "meta")
    assert {n: c.flops for n, c in cuda.modules.items()} == {n: c.flops for n, c in meta.modules.items()}
    assert cuda.uncounted_ops == {}
    # the same weights on both devices (the kernels' outputs may differ: cuda's SDPA pads its
    # log-sum-exp); the allocator's peak only on cuda, from the same start as the live bytes
    assert cuda.weight_bytes == meta.weight_bytes
    assert cuda.peak_bytes > cuda.baseline_bytes
    assert meta.allocator_peak_bytes is None
    assert cuda.allocator_peak_bytes is not None
    assert cuda.allocator_peak_bytes >= cuda.baseline_bytes


def test_cuda_without_gpu_is_a_skip() -> None:
    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    with pytest.raises(ReferenceSkipped, match="no CUDA GPU"):
        check_device("cuda", None)


# -- op policy --------------------------------------------------------------------------------------


def test_grouped_mm_is_counted_by_the_shipped_formula() -> None:
    from pytest_flopcheck.analytic.ops import grouped_matmul_flops

    rows, k, n, experts = 12, 8, 16, 3
    a = torch.randn(rows, k, device="meta", dtype=torch.bfloat16)
    w = torch.randn(experts, k, n, device="meta", dtype=torch.bfloat16)
    offs = torch.tensor([4, 8, rows], dtype=torch.int32, device="meta")
    call = ReferenceCall(torch.nn.Identity(), lambda: torch._grouped_mm(a, w, offs=offs))
    counts = count_reference(call, "meta")
    assert counts.total_flops == grouped_matmul_flops(rows, k, n) == 2 * rows * k * n
    assert counts.uncounted_ops == {}


def test_elementwise_ops_named_like_compute_are_not_gaps() -> None:
    x = torch.randn(1, 4, 8)  # SAM's relative-position interpolation runs aten.upsample_linear1d
    call = ReferenceCall(
        torch.nn.Identity(), lambda: torch.nn.functional.interpolate(x, size=16, mode="linear")
    )
    counts = count_reference(call, "cpu")
    assert counts.total_flops == 0
    assert counts.uncounted_ops == {}


def test_a_registration_adds_formulas_and_declares_zero_flop_ops() -> None:
    from pytest_flopcheck import OpPolicy

    x = torch.randn(3, 4)
    v = torch.randn(4)
    call = ReferenceCall(torch.nn.Identity(), lambda: torch.mv(x, v))
    assert count_reference(call, "cpu").uncounted_ops == {"aten.mv": 1}
    with_formula = OpPolicy(formulas={"aten.mv": lambda m, v, out_shape=None: 2 * m[0] * m[1]})
    counted = count_reference(call, "cpu", with_formula)
    assert counted.total_flops == 2 * 3 * 4
    assert counted.uncounted_ops == {}
    silenced = count_reference(call, "cpu", OpPolicy(zero_flop={"aten.mv"}))
    assert (silenced.total_flops, silenced.uncounted_ops) == (0, {})


@pytest.mark.parametrize("name", ["mv", "torch.mv", ""])
def test_op_policy_names_must_be_aten_ops(name: str) -> None:
    from pytest_flopcheck import OpPolicy

    with pytest.raises(ValueError, match=r"is not allowed: name an aten op as 'aten\.<name>'"):
        OpPolicy(zero_flop={name})


# -- reference scope ---------------------------------------------------------------------------------


def scoped_call(scope: tuple[str, ...]) -> ReferenceCall:
    """A 'vision-language model' whose decoder stage uses only ``decoder`` and the shared ``embed``."""
    model = torch.nn.ModuleDict(
        {
            "vision": torch.nn.Linear(4, 4),  # 20 parameters the decoder stage does not use
            "embed": torch.nn.Embedding(10, 4),
            "decoder": torch.nn.Linear(4, 4, bias=False),
        }
    )
    model["decoder"].weight = torch.nn.Parameter(torch.zeros(4, 4))
    tokens = torch.zeros(2, dtype=torch.long)
    return ReferenceCall(model, lambda: model["decoder"](model["embed"](tokens)), scope=scope)


def test_a_stage_compares_parameters_over_its_scope_only() -> None:
    whole = count_reference(scoped_call(()), "cpu")
    assert whole.value("", False, "params") == 20 + 40 + 16
    scoped = count_reference(scoped_call(("embed", "decoder", "decoder")), "cpu")  # each parameter once
    assert scoped.value("", False, "params") == 40 + 16
    assert scoped.module("vision").params == 20  # per-module counts are unchanged
    assert scoped.scope == ("embed", "decoder", "decoder")


def test_a_scope_naming_no_submodule_is_an_error() -> None:
    with pytest.raises(
        ValueError, match=r"scope names \['lm_head'\], which are not submodules or parameters"
    ):
        count_reference(scoped_call(("decoder", "lm_head")), "cpu")


# -- calls of one module with different shapes -------------------------------------------------------


def test_merged_calls_match_a_module_called_with_different_shapes() -> None:
    from pytest_flopcheck import layers, merge_calls
    from pytest_flopcheck.sizing.build import peak_activation_bytes

    proj = torch.nn.Linear(16, 32, device="meta")
    rows = [256, 144, 144]  # a global view and two crops
    views = [torch.empty(r, 16, device="meta") for r in rows]
    counts = count_reference(ReferenceCall(proj, lambda: [proj(v) for v in views]), "meta")
    calls = [
        layers.linear("proj", "projection", rows=r, in_features=16, out_features=32, bias=True, dtype_bytes=2,
                      reference="")
        for r in rows
    ]  # fmt: skip
    node = merge_calls("proj", "projection", calls, reference="")
    assert node.metrics.flops == counts.total_flops == sum(c.metrics.flops for c in calls)
    assert node.metrics.params == counts.total_params == 16 * 32 + 32  # the weights count once
    assert node.calls == 3
    assert node.per_call == calls[0].metrics  # the largest view
    assert peak_activation_bytes(node) == calls[0].metrics.io_bytes - calls[0].metrics.weight_bytes


# -- layer builders against real transformers modules ---------------------------------------------


@pytest.mark.parametrize("implementation", ["grouped_mm", "batched_mm"])
def test_the_moe_builder_matches_transformers_moe_module_by_module(implementation: str) -> None:
    """DeepSeek-OCR-2's decoder MoE (router, 3-D routed experts, shared experts), tiny, on meta."""
    pytest.importorskip("transformers")
    from transformers.models.deepseek_ocr2.configuration_deepseek_ocr2 import DeepseekOcr2TextConfig
    from transformers.models.deepseek_ocr2.modeling_deepseek_ocr2 import DeepseekOcr2TextMoe

    from pytest_flopcheck import layers

    tokens, hidden, experts, top_k, inter, shared = 7, 16, 4, 2, 8, 2
    config = DeepseekOcr2TextConfig(
        hidden_size=hidden, num_attention_heads=2, num_key_value_heads=2, moe_intermediate_size=inter,
        num_experts=experts, num_experts_per_tok=top_k, n_shared_experts=shared, hidden_act="silu",
        experts_implementation=implementation,
    )  # fmt: skip
    with torch.device("meta"):
        module = DeepseekOcr2TextMoe(config).to(torch.bfloat16)
        x = torch.empty(1, tokens, hidden, dtype=torch.bfloat16)
    counts = count_reference(ReferenceCall(module, lambda: module(x)), "meta")
    tree = layers.moe(
        "mlp", tokens=tokens, hidden=hidden, experts=experts, top_k=top_k, expert_intermediate=inter,
        shared_intermediate=shared * inter, dtype_bytes=2, reference="",
    )  # fmt: skip
    assert coverage_gaps(tree, counts) == []
    for node in tree.walk():
        if node.reference is not None:
            assert node.total.flops == counts.value(node.reference, node.reference_own, "flops"), node.id
            assert node.total.params == counts.value(node.reference, node.reference_own, "params"), node.id


def test_the_bmm_builder_claims_an_einsum_of_its_module() -> None:
    from pytest_flopcheck import layers

    class RelPos(torch.nn.Module):
        def forward(self, q: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
            return torch.einsum("bhwc,hkc->bhwk", q, r)  # SAM's decomposed relative position term

    module = RelPos()
    q, r = torch.empty(3, 14, 14, 64, device="meta"), torch.empty(14, 14, 64, device="meta")
    counts = count_reference(ReferenceCall(module, lambda: module(q, r)), "meta")
    node = layers.bmm("rel_pos", "attention", batch=14, m=3 * 14, k=64, n=14, dtype_bytes=2, reference="")
    assert node.metrics.flops == counts.total_flops
    assert coverage_gaps(node, counts) == []


# -- several leaves splitting one module's own work -------------------------------------------------


class TwoProducts(torch.nn.Module):
    """One module whose own work is two kinds of product (like SAM's attention: QKᵀ and PV by
    bmm, and its relative-position terms)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor, c: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
        return torch.mm(a, b).sum() + torch.bmm(c, d).sum()


def two_products() -> ReferenceCall:
    module = TwoProducts()
    tensors = [torch.empty(*shape, device="meta") for shape in ((4, 8), (8, 3), (2, 5, 6), (2, 6, 7))]
    return ReferenceCall(module, lambda: module(*tensors))


def test_leaves_split_a_modules_own_work_by_op() -> None:
    from pytest_flopcheck import group, layers

    counts = count_reference(two_products(), "meta")
    mm = layers.bmm("scores", "attention", batch=1, m=4, k=8, n=3, dtype_bytes=2, reference="",
                    reference_ops=("aten.mm",))  # fmt: skip
    bmm = layers.bmm("rel_pos", "attention", batch=2, m=5, k=6, n=7, dtype_bytes=2, reference="",
                     reference_ops=("aten.bmm",))  # fmt: skip
    assert counts.value("", True, "flops", ("aten.mm",)) == mm.metrics.flops == 2 * 4 * 8 * 3
    assert counts.value("", True, "flops", ("aten.bmm",)) == bmm.metrics.flops == 2 * 2 * 5 * 6 * 7
    assert coverage_gaps(group("", "root", [mm, bmm]), counts) == []
    (gap,) = coverage_gaps(group("", "root", [mm]), counts)
    assert gap.name == "(root)"
    assert "(aten.bmm 840) are not claimed" in gap.detail


# -- the memory reference ---------------------------------------------------------------------------


class _TwoLinears(torch.nn.Module):  # type: ignore[misc]
    def __init__(self) -> None:
        super().__init__()
        self.up = torch.nn.Linear(8, 32)
        self.down = torch.nn.Linear(32, 8, bias=False)

    def forward(self, x: object) -> object:
        return self.down(torch.relu(self.up(x)))


def test_counted_ops_traffic_and_live_bytes_are_measured_per_module(device: str) -> None:
    with torch.device(device):
        model = _TwoLinears().to(torch.bfloat16)
        x = torch.empty(4, 8, dtype=torch.bfloat16)
    counts = count_reference(ReferenceCall(model, lambda: model(x)), device)
    up = counts.module("up")
    # addmm reads the bias, the input and the weight and writes the output, each whole, in bf16
    assert up.io_ops == {"aten.addmm": 2 * (32 + 4 * 8 + 8 * 32 + 4 * 32)}
    assert counts.module("down").io_ops == {"aten.mm": 2 * (4 * 32 + 32 * 8 + 4 * 8)}
    assert counts.module("").other_io == 2 * (4 * 32 + 4 * 32)  # relu: elementwise, claimed by no layer
    assert counts.dtype == "bfloat16"
    weights = 2 * (8 * 32 + 32 + 32 * 8)
    assert counts.weight_bytes == weights
    assert counts.baseline_bytes == weights + 2 * 4 * 8  # the input the call holds
    # the peak: weights, the input, up's output and relu's output (live together), then down's
    assert counts.peak_bytes == weights + 2 * (4 * 8 + 4 * 32 + 4 * 32)
    assert counts.value("up", False, "io_bytes") == sum(up.io_ops.values())


def test_weights_outside_the_stage_scope_are_left_out_of_its_memory() -> None:
    model = _TwoLinears().to(device="meta", dtype=torch.bfloat16)
    x = torch.empty(4, 8, dtype=torch.bfloat16, device="meta")
    whole = count_reference(ReferenceCall(model, lambda: model.up(x)), "meta")
    scoped = count_reference(ReferenceCall(model, lambda: model.up(x), scope=("up",)), "meta")
    down = 2 * 32 * 8
    assert whole.weight_bytes - scoped.weight_bytes == down
    assert whole.peak_bytes - scoped.peak_bytes == down


def test_sdpa_runs_as_one_fused_kernel_on_meta() -> None:
    q = torch.empty(1, 2, 1024, 16, dtype=torch.bfloat16, device="meta")
    model = torch.nn.Identity()
    counts = count_reference(
        ReferenceCall(model, lambda: torch.nn.functional.scaled_dot_product_attention(q, q, q)), "meta"
    )
    assert counts.total_flops == 4 * 2 * 1024 * 1024 * 16
    # the math path would hold the 2 × 1024 × 1024 score matrix; the fused kernel holds q (shared
    # by q, k and v), the output and its fp32 log-sum-exp
    assert counts.peak_bytes == 2 * (2 * 1024 * 16) * 2 + 4 * 2 * 1024


def test_collectives_are_counted_with_their_local_input_bytes_and_not_as_traffic() -> None:
    """On a fake process group, each collective a module issues counts its local input once (an
    all-to-all's buffer, an all-gather's shard); the waits around them count nothing, and none
    of it is elementwise traffic."""
    import torch
    import torch.distributed as dist
    from torch.distributed import _functional_collectives as funcol

    from pytest_flopcheck.reference.parallel import fake_process_group

    class Exchange(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            swapped = funcol.all_to_all_single(x, None, None, dist.group.WORLD)
            return funcol.all_gather_single(swapped, 0, dist.group.WORLD)

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.exchange = Exchange()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.exchange(x) * 2

    model = Outer()
    x = torch.zeros(4, 8)
    with fake_process_group(4):
        counts = build_and_count(lambda: ReferenceCall(model, lambda: model(x)), "cpu")
    assert not dist.is_initialized()  # the group is gone after the count
    assert counts.value("exchange", False, "collective_bytes") == 2 * 4 * 8 * 4
    assert counts.value("exchange", False, "collectives") == 2
    assert counts.value("", True, "collective_bytes") == 0  # the outer module's own ops issue none
    assert counts.value("exchange", False, "elementwise_ops") == 0
    assert counts.value("", False, "elementwise_ops") == 1  # the doubling


def test_fsdp2_shards_are_counted_under_fake_tensors_per_unit_and_rank() -> None:
    """FSDP2 refuses meta tensors: built and counted under a FakeTensorMode (``ReferenceCall.mode``),
    each unit's all-gather is its module's, once per forward, with this rank's padded shard
    (FSDP2 splits each parameter's first dimension, padded to the world size); the weights held
    are this rank's local shards."""
    import torch
    import torch.distributed as dist
    from torch._subclasses.fake_tensor import FakeTensorMode

    from pytest_flopcheck.reference.parallel import fake_process_group

    fully_shard = pytest.importorskip("torch.distributed.fsdp").fully_shard

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.blocks = torch.nn.ModuleList(torch.nn.Linear(8, 8) for _ in range(2))
            self.head = torch.nn.Linear(8, 2)  # 2 rows over 4 ranks: each rank gathers a padded row

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for b in self.blocks:
                x = b(x)
            return self.head(x)

    with fake_process_group(4):
        mesh = dist.device_mesh.init_device_mesh("cpu", (4,))
        fake = FakeTensorMode()
        with fake:
            model = Model()
            for b in model.blocks:
                fully_shard(b, mesh=mesh)
            fully_shard(model, mesh=mesh)
            x = torch.zeros(3, 8)
        counts = build_and_count(lambda: ReferenceCall(model, lambda: model(x), mode=fake), "meta")
    block = (8 * 8 // 4 + 8 // 4) * 4  # fp32: weight and bias split by rows
    head = (1 * 8 + 1) * 4  # weight [2, 8] and bias [2]: one (padded) row of each per rank
    for i in range(2):
        assert counts.value(f"blocks.{i}", False, "collective_bytes") == block
        assert counts.value(f"blocks.{i}", False, "collectives") == 1
    assert counts.value("", True, "collective_bytes") == head
    assert counts.value("", False, "collectives") == 3
    assert counts.weight_bytes == 2 * block + head  # rank 0's local shards, not the whole weights
    assert counts.total_params == 2 * (64 + 8) + 16 + 2  # the parameters themselves, whole
    assert counts.total_flops == 2 * 3 * (2 * 8 * 8 + 8 * 2)


def test_storages_resized_in_place_are_tracked_as_fsdp_frees_and_reallocates_them() -> None:
    """FSDP frees a gathered unit with ``storage.resize_(0)`` and allocates it again the same way;
    no op creates or frees it, so the tracker follows the resizes: a freed unit no longer
    counts, a re-allocated one counts again."""
    import torch

    class Unit(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            gathered = torch.empty(1000, dtype=torch.float32)  # 4,000 bytes, kept by a holder
            holder.append(gathered)
            gathered.untyped_storage().resize_(0)  # freed, the tensor object still alive
            return x + 1

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.units = torch.nn.ModuleList([Unit(), Unit()])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for unit in self.units:
                x = unit(x)
            holder[0].untyped_storage().resize_(4000)  # the first unit's storage again
            return x * 2

    holder: list[torch.Tensor] = []
    model, x = Model(), torch.zeros(10)
    counts = build_and_count(lambda: ReferenceCall(model, lambda: model(x)), "cpu")
    # at the doubling: the input, the last unit's output, its product and one unit's 4,000 bytes
    # (were the frees unseen, both units' 8,000 would count)
    assert counts.peak_bytes == 40 + 40 + 40 + 4000
    holder.clear()
    assert plain_peak(ReferenceCall(model, lambda: model(x)), "cpu") == counts.peak_bytes


@pytest.mark.parametrize("device", ["meta", "cpu"])
def test_an_allocation_counts_from_its_first_use_and_a_probe_never(device: str) -> None:
    """An ``empty`` no op uses holds no memory that matters (transformers' tensor-parallel
    layers make a meta tensor only to read its strides); a buffer counts from the op that fills
    it."""
    import torch

    class Model(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            torch.empty(10**6, dtype=torch.float32, device="meta").stride()  # 4 MB, never used
            buffer = torch.empty(100, dtype=torch.float32, device=x.device)  # 400 bytes, filled below
            torch.add(x, 1, out=buffer)
            return buffer * 2

    model = Model()
    with torch.device(device):
        x = torch.zeros(100)
    counts = build_and_count(lambda: ReferenceCall(model, lambda: model(x)), device)
    assert counts.peak_bytes == 3 * 400  # the input, the buffer, the product
    assert plain_peak(ReferenceCall(model, lambda: model(x)), device) == counts.peak_bytes


def test_a_tensor_parallel_module_is_counted_at_the_ranks_local_shapes() -> None:
    """torch's tensor parallelism (DTensor weights, colwise then rowwise) on rank 0 of a fake
    process group: the rank's matmuls at its local shapes, its all-reduce of the output, its
    weight shards; torch's FLOP counter alone counts the global matmuls."""
    torch = pytest.importorskip("torch")
    from torch.distributed import _functional_collectives as funcol
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.tensor.parallel import ColwiseParallel, RowwiseParallel, parallelize_module

    from pytest_flopcheck.reference.parallel import fake_process_group

    class MLP(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.up = torch.nn.Linear(64, 256, bias=False)
            self.down = torch.nn.Linear(256, 64, bias=False)

        def forward(self, x: object) -> object:
            return self.down(torch.relu(self.up(x)))

    with fake_process_group(2):
        model = MLP()
        parallelize_module(
            model, init_device_mesh("cpu", (2,)), {"up": ColwiseParallel(), "down": RowwiseParallel()}
        )
        x = torch.randn(8, 64)
        # a program waits for the all-reduced output before it uses it (else torch warns at exit
        # of an unwaited collective); the wait counts nothing
        counts = count_reference(ReferenceCall(model, lambda: funcol.wait_tensor(model(x))), "cpu")
    # each rank holds half of each weight and multiplies 8 rows by its half of the 256 features
    assert counts.modules["up"].flops == counts.modules["down"].flops == 2 * 8 * 64 * 128
    assert counts.weight_bytes == 2 * 64 * 128 * 4
    # the rowwise output (8 x 64 fp32 partial sums) is all-reduced once, by the hook
    # parallelize_module adds after the down projection's forward
    assert (counts.value("", False, "collective_bytes"), counts.value("", False, "collectives")) == (
        8 * 64 * 4,
        1,
    )
    assert counts.total_flops == 2 * 2 * 8 * 64 * 128


# -- the counter against torch's own ------------------------------------------------------------


def _torch_counter(call: ReferenceCall) -> dict[str, dict[str, int]]:
    """FLOPs per op as torch's ``FlopCounterMode`` counts the call by itself (with the framework's
    formulas for ops torch has none for): for every module, by its path from the call's module,
    and for the whole call (``"Global"``)."""
    from torch.utils.flop_counter import FlopCounterMode

    from pytest_flopcheck.reference.counting import _custom_mapping
    from pytest_flopcheck.reference.ops_policy import OpPolicy

    class Root(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = call.module

        def forward(self) -> object:
            return call.run()

    call.module.eval()
    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping(OpPolicy()))
    with torch.no_grad(), counter:
        Root()()
    named = {"Global": "Global", "Root.model": ""}
    return {
        named.get(key, key.removeprefix("Root.model.")): {str(op): n for op, n in ops.items()}
        for key, ops in counter.get_flop_counts().items()
        if key.startswith("Root.model") or key == "Global"
    }


def _below_autograd() -> ReferenceCall:
    """A composite op that reaches the counting whole (called beneath autograd, where torch has
    not decomposed it yet): torch's counter decomposes it and counts its matrix product."""

    class Below(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.proj = torch.nn.Linear(8, 16)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            with torch._C._AutoDispatchBelowAutograd():
                return torch.ops.aten.linear.default(x, self.proj.weight, self.proj.bias)

    module = Below()
    x = torch.randn(4, 8)
    return ReferenceCall(module, lambda: module(x))


def _generation(model: str, name: str) -> Callable[[], ReferenceCall]:
    def build() -> ReferenceCall:
        from pytest_flopcheck.model.registry import load_registry

        return load_registry().models[model].generations[name]().build()

    build.__name__ = f"{model}/{name}"
    return build


@pytest.mark.parametrize(
    "build",
    [
        lambda: toy_model.reference(toy_model.ToyWorkload(2, 5, 8), "core", "cpu"),
        _below_autograd,
        # a whole diffusers pipeline call: composite ops the counter decomposes (a dtype
        # conversion, the VAE's nearest-exact upsampling) among its ops
        _generation("wan2_1", "tiny-guided"),
        # transformers' generate(): real MoE routing through grouped_mm experts
        _generation("deepseek_ocr2", "tiny"),
    ],
    ids=["toy", "below-autograd", "wan2_1/tiny-guided", "deepseek_ocr2/tiny"],
)
def test_the_counter_counts_what_torchs_flop_counter_counts_module_by_module_and_op_by_op(
    build: Callable[[], ReferenceCall],
) -> None:
    """The counting runs the counter's formulas, decompositions and module tracking in one mode of
    its own (one Python dispatch layer an op instead of three); what it counts must be exactly what
    ``FlopCounterMode`` itself counts of the same call."""
    expected = _torch_counter(build())
    counts = count_reference(build(), "cpu")
    assert counts.total_ops == expected.pop("Global")
    assert counts.total_flops == sum(counts.total_ops.values()) > 0
    counted = {path: dict(m.ops) for path, m in counts.modules.items() if m.ops}
    assert counted == {path: ops for path, ops in expected.items() if ops}
