"""The builders' memory and I/O options, each checked against the real module it describes on meta:
activation temporaries, gated MLPs, a linear run as mm + add, tied embeddings."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_flopcheck import ReferenceCall, group, layers
from pytest_flopcheck.analytic.tree import CostNode, live_peak
from pytest_flopcheck.reference.counting import ReferenceCounts, count_reference

torch = pytest.importorskip("torch")
activations = pytest.importorskip("transformers.activations")

ROWS, DIM, INTER = 64, 256, 1024
BF16 = 2


def measured(module: Any, *inputs: Any) -> ReferenceCounts:
    """The module run once on meta in bf16, its inputs held by the call."""
    module = module.to(torch.bfloat16).eval()
    return count_reference(ReferenceCall(module, lambda: module(*inputs)), "meta")


def beyond_inputs(counts: ReferenceCounts) -> int:
    """The live peak beyond what was live when the call started (weights, buffers, inputs)."""
    return counts.peak_bytes - counts.baseline_bytes


def meta(*shape: int) -> Any:
    return torch.randn(*shape, dtype=torch.bfloat16, device="meta")


TRANSFORMERS_NAMES = {
    "gelu": "gelu",
    "gelu_tanh": "gelu_pytorch_tanh",
    "silu": "silu",
    "relu": "relu",
    "quick_gelu": "quick_gelu",
    "gelu_new": "gelu_new",
    "gelu_python": "gelu_python",
    "gelu_fast": "gelu_fast",
}


@pytest.mark.parametrize("kind", list(layers.ACTIVATIONS))
def test_each_activation_holds_what_the_real_one_holds(kind: str) -> None:
    act = activations.ACT2FN[TRANSFORMERS_NAMES[kind]]
    x = meta(ROWS, DIM)
    holder = torch.nn.ModuleDict({"act": act})
    counts = count_reference(ReferenceCall(holder, lambda: act(x)), "meta")
    assert beyond_inputs(counts) == layers.activation_bytes(kind, ROWS * DIM, BF16)


def test_an_unknown_activation_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="activation 'gelu2' is not known: choose one of gelu, gelu_tanh"):
        layers.activation_bytes("gelu2", 1, 2)


def analytic_mlp(activation: str, names: tuple[str, str, str]) -> CostNode:
    mlp = layers.gated_mlp(
        "mlp", "mlp", rows=ROWS, hidden=DIM, intermediate=INTER, bias=False, dtype_bytes=BF16, reference="",
        names=names, activation=activation,
    )  # fmt: skip
    # The caller holds the input through the MLP (the leaves' own I/O counts it where they read it).
    return group("", "mlp", [mlp], held_bytes=0)


@pytest.mark.parametrize(
    ("hidden_act", "activation", "family"),
    [("gelu", "gelu_new", "t5"), ("silu", "silu", "llama"), ("gelu", "gelu", "llama")],
)
def test_a_gated_mlp_holds_what_transformers_holds(hidden_act: str, activation: str, family: str) -> None:
    x = meta(ROWS, DIM)
    if family == "t5":
        from transformers import T5Config
        from transformers.models.t5.modeling_t5 import T5DenseGatedActDense

        # T5's "gated-gelu" runs transformers' gelu_new (the tanh GELU written out).
        config = T5Config(d_model=DIM, d_ff=INTER, feed_forward_proj=f"gated-{hidden_act}", dropout_rate=0.0)
        with torch.device("meta"):
            module = T5DenseGatedActDense(config)
        names = ("wi_0", "wi_1", "wo")
    else:
        from transformers import LlamaConfig
        from transformers.models.llama.modeling_llama import LlamaMLP

        config = LlamaConfig(hidden_size=DIM, intermediate_size=INTER, hidden_act=hidden_act)
        with torch.device("meta"):
            module = LlamaMLP(config)
        names = ("gate_proj", "up_proj", "down_proj")
    counts = measured(module, x)
    tree = analytic_mlp(activation, names)
    # The analytic leaves count the input they read; the measured peak is beyond the held input.
    assert live_peak(tree) - ROWS * DIM * BF16 == beyond_inputs(counts)


def test_a_linear_run_as_mm_and_add_reads_no_bias_in_its_counted_op() -> None:
    with torch.device("meta"):
        linear = torch.nn.Linear(DIM, INTER)
    x = meta(4, ROWS, DIM).transpose(0, 1)  # not contiguous: torch runs mm, then adds the bias
    counts = measured(linear, x)
    ops = counts.modules[""].io_ops
    assert "aten.mm" in ops
    assert "aten.addmm" not in ops
    node = layers.linear(
        "proj", "p", rows=4 * ROWS, in_features=DIM, out_features=INTER, bias=True, dtype_bytes=BF16,
        reference="", bias_in_matmul=False,
    )  # fmt: skip
    assert node.total.io_bytes == sum(ops.values())
    assert node.total.params == counts.total_params


def test_a_tied_embedding_counts_its_table_where_it_is_held() -> None:
    from transformers import UMT5Config, UMT5EncoderModel

    config = UMT5Config(vocab_size=100, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    with torch.device("meta"):
        model = UMT5EncoderModel(config)
    assert model.encoder.embed_tokens.weight is model.shared.weight  # the same parameter
    ids = torch.zeros(1, 8, dtype=torch.long, device="meta")
    counts = measured(model, ids)
    shared = layers.embedding(
        "shared", "e", rows=0, num_embeddings=100, dim=16, dtype_bytes=BF16, reference="shared"
    )
    tied = layers.embedding(
        "embed", "e", rows=8, num_embeddings=100, dim=16, dtype_bytes=BF16, reference="encoder.embed_tokens",
        tied=True,
    )  # fmt: skip
    assert shared.total.params + tied.total.params == counts.modules["shared"].params
    assert counts.modules["encoder.embed_tokens"].params == 100 * 16  # the module holds it, once overall
    assert counts.total_params == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def test_traffic_helpers_count_each_op_once_and_skip_casts_to_the_same_dtype() -> None:
    assert layers.cast(10, 2, 2) == layers.NO_TRAFFIC
    assert layers.cast(10, 2, 4) == layers.Traffic(60, 1)
    assert layers.op(8, 8, 16) + layers.op(4) == layers.Traffic(36, 2)
    assert layers.op(3, 5).times(4) == layers.Traffic(32, 4)
    leaf = layers.elementwise("norm1", "norm", traffic=layers.op(8, 8), reference="norm1")
    assert (leaf.metrics.flops, leaf.metrics.io_bytes, leaf.metrics.elementwise_bytes) == (0, 0, 16)
    linear = layers.linear(
        "fc", "mlp", rows=2, in_features=3, out_features=4, bias=False, dtype_bytes=2, reference="fc"
    )
    claimed = layers.with_traffic(linear, layers.op(12, 12))
    assert claimed.metrics.io_bytes == linear.metrics.io_bytes
    assert (claimed.metrics.elementwise_bytes, claimed.metrics.elementwise_ops) == (24, 1)
    assert linear.kernel is not None
    assert (linear.kernel.m, linear.kernel.n, linear.kernel.k) == (2, 4, 3)
