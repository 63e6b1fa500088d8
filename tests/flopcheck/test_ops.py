"""Every op formula against torch's FlopCounterMode on small real tensors."""

from __future__ import annotations

import pytest

from pytest_flopcheck.analytic import ops

torch = pytest.importorskip("torch")
F = torch.nn.functional


def counted(fn) -> int:  # type: ignore[no-untyped-def]
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


@pytest.mark.parametrize(("m", "k", "n"), [(1, 1, 1), (3, 5, 7), (16, 8, 4)])
def test_matmul(m: int, k: int, n: int) -> None:
    a, b = torch.randn(m, k), torch.randn(k, n)
    assert ops.matmul_flops(m, k, n) == counted(lambda: a @ b)


@pytest.mark.parametrize("bias", [True, False])
def test_linear(bias: bool) -> None:
    layer = torch.nn.Linear(6, 10, bias=bias)
    x = torch.randn(2, 3, 6)
    assert ops.linear_flops(6, 6, 10) == counted(lambda: layer(x))


def test_bmm() -> None:
    a, b = torch.randn(4, 3, 5), torch.randn(4, 5, 2)
    assert ops.bmm_flops(4, 3, 5, 2) == counted(lambda: torch.bmm(a, b))


@pytest.mark.parametrize(("q_len", "kv_len"), [(7, 7), (7, 3), (1, 9)])
def test_attention_with_separate_query_and_key_lengths(q_len: int, kv_len: int) -> None:
    q = torch.randn(2, 3, q_len, 4, device="meta")
    k = torch.randn(2, 3, kv_len, 4, device="meta")
    v = torch.randn(2, 3, kv_len, 4, device="meta")
    assert ops.attention_flops(2, 3, q_len, kv_len, 4) == counted(
        lambda: F.scaled_dot_product_attention(q, k, v)
    )


@pytest.mark.parametrize(
    ("dims", "kernel", "stride", "padding", "dilation", "groups"),
    [
        (1, (3,), (1,), (1,), (1,), 1),
        (2, (3, 5), (2, 1), (1, 2), (1, 2), 1),
        (2, (3, 3), (1, 1), (0, 0), (1, 1), 2),
        (3, (3, 3, 3), (1, 2, 2), (1, 1, 1), (1, 1, 1), 1),
        (3, (1, 2, 2), (1, 2, 2), (0, 0, 0), (1, 1, 1), 4),
    ],
)
def test_conv_any_dimensionality(
    dims: int,
    kernel: tuple[int, ...],
    stride: tuple[int, ...],
    padding: tuple[int, ...],
    dilation: tuple[int, ...],
    groups: int,
) -> None:
    conv = {1: torch.nn.Conv1d, 2: torch.nn.Conv2d, 3: torch.nn.Conv3d}[dims](
        4, 8, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups
    )
    spatial = (9, 10, 11)[:dims]
    x = torch.randn(2, 4, *spatial)
    out = tuple(
        ops.conv_output_size(s, k, st, p, d)
        for s, k, st, p, d in zip(spatial, kernel, stride, padding, dilation, strict=True)
    )
    assert tuple(conv(x).shape[2:]) == out
    assert ops.conv_flops(2, 4, 8, kernel, out, groups) == counted(lambda: conv(x))


@pytest.mark.parametrize(("dims", "groups"), [(1, 1), (2, 1), (2, 2), (3, 1)])
def test_transposed_conv(dims: int, groups: int) -> None:
    conv = {1: torch.nn.ConvTranspose1d, 2: torch.nn.ConvTranspose2d, 3: torch.nn.ConvTranspose3d}[dims](
        4, 6, 3, stride=2, padding=1, groups=groups
    )
    spatial = (5, 6, 7)[:dims]
    x = torch.randn(2, 4, *spatial)
    out = tuple(ops.conv_transpose_output_size(s, 3, 2, 1) for s in spatial)
    assert tuple(conv(x).shape[2:]) == out
    assert ops.conv_transpose_flops(2, 4, 6, (3,) * dims, spatial, groups) == counted(lambda: conv(x))


@pytest.mark.parametrize(
    ("heads", "kv_heads", "q_len", "kv_len", "head_dim", "v_head_dim"),
    [(8, 2, 3, 10, 16, 24), (8, 8, 1, 17, 16, 16), (6, 1, 5, 5, 8, 4)],
)
def test_attention_with_kv_heads_value_width_and_cache_matches_the_counter(
    heads: int, kv_heads: int, q_len: int, kv_len: int, head_dim: int, v_head_dim: int
) -> None:
    from pytest_flopcheck import layers

    batch = 2
    q = torch.randn(batch, heads, q_len, head_dim, device="meta")
    k = torch.randn(batch, kv_heads, kv_len, head_dim, device="meta")
    v = torch.randn(batch, kv_heads, kv_len, v_head_dim, device="meta")
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        torch.nn.functional.scaled_dot_product_attention(q, k, v, enable_gqa=kv_heads != heads)
    node = layers.attention_core(
        "attn", "attention", batch=batch, heads=heads, q_len=q_len, kv_len=kv_len, head_dim=head_dim,
        kv_heads=kv_heads, v_head_dim=v_head_dim, cache_len=kv_len, dtype_bytes=2, reference=None,
    )  # fmt: skip
    assert node.metrics.flops == counter.get_total_flops()
    kv_bytes = 2 * batch * kv_heads * kv_len * (head_dim + v_head_dim)
    assert node.metrics.cache_bytes == kv_bytes  # the cache grows with the sequence it holds
    lse_bytes = 4 * batch * heads * q_len  # the fused kernel's fp32 log-sum-exp
    assert node.metrics.io_bytes == 2 * batch * heads * q_len * (head_dim + v_head_dim) + kv_bytes + lse_bytes


def test_kv_heads_must_divide_heads() -> None:
    from pytest_flopcheck import layers

    with pytest.raises(ValueError, match="kv_heads 3 is not allowed: it must divide heads 8"):
        layers.attention_core(
            "a",
            "attention",
            batch=1,
            heads=8,
            q_len=1,
            kv_len=1,
            head_dim=4,
            kv_heads=3,
            dtype_bytes=2,
            reference=None,
        )
