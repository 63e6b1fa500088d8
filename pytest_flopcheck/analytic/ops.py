"""Operator FLOP formulas in torch's counting convention.

The convention (``torch.utils.flop_counter``): a multiply-add is 2 FLOPs; matmul,
convolution and attention are counted; bias adds, norms, activations, softmax, RoPE and
every other elementwise op count 0. A convolution counts by output size (a transposed one
by input size). Attention counts both QKᵀ and PV with no causal discount.

Each formula is a small pure function on integers, the analogue of torch's own formula
registry, so that every model package computes the same thing the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import prod


def matmul_flops(m: int, k: int, n: int) -> int:
    """(m×k) @ (k×n): ``aten.mm`` / ``aten.addmm``."""
    return 2 * m * k * n


def linear_flops(rows: int, in_features: int, out_features: int) -> int:
    """A linear layer applied to ``rows`` rows (the bias is free)."""
    return matmul_flops(rows, in_features, out_features)


def bmm_flops(batch: int, m: int, k: int, n: int) -> int:
    """``batch`` independent (m×k) @ (k×n): ``aten.bmm`` / ``aten.baddbmm``."""
    return batch * matmul_flops(m, k, n)


def attention_flops(
    batch: int, heads: int, q_len: int, kv_len: int, head_dim: int, v_head_dim: int | None = None
) -> int:
    """Scaled dot-product attention: QKᵀ plus PV, no causal discount."""
    v_dim = head_dim if v_head_dim is None else v_head_dim
    return bmm_flops(batch * heads, q_len, head_dim, kv_len) + bmm_flops(batch * heads, q_len, kv_len, v_dim)


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> int:
    """Output length of a convolution along one dimension."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def conv_transpose_output_size(
    size: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1, output_padding: int = 0
) -> int:
    """Output length of a transposed convolution along one dimension."""
    return (size - 1) * stride - 2 * padding + dilation * (kernel - 1) + output_padding + 1


def conv_flops(
    batch: int,
    in_channels: int,
    out_channels: int,
    kernel: Sequence[int],
    out_spatial: Sequence[int],
    groups: int = 1,
) -> int:
    """A convolution of any dimensionality, counted by its output positions."""
    return 2 * batch * out_channels * (in_channels // groups) * prod(kernel) * prod(out_spatial)


def conv_transpose_flops(
    batch: int,
    in_channels: int,
    out_channels: int,
    kernel: Sequence[int],
    in_spatial: Sequence[int],
    groups: int = 1,
) -> int:
    """A transposed convolution, counted by its input positions (as torch does)."""
    return 2 * batch * in_channels * (out_channels // groups) * prod(kernel) * prod(in_spatial)


def grouped_matmul_flops(rows: int, k: int, n: int) -> int:
    """``aten._grouped_mm`` of ``rows`` rows (summed over groups) against per-group k×n weights:
    MoE routed experts count tokens × top-k rows whatever the routing."""
    return matmul_flops(rows, k, n)
