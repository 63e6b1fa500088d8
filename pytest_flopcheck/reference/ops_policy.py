"""Which ops do counted work, and how the counter treats the ones torch has no formula for.

torch's counter counts a fixed set of ops (mm, addmm, bmm, baddbmm, _scaled_mm, convolutions,
SDPA kernels, flex attention) and silently counts every other op as 0. An op that does matmul,
convolution or attention work but has no formula is therefore a hole in the count, so the
reference runner reports every op of :data:`COMPUTE_OPS` that ran without a formula. The list is
explicit (a name pattern took ``aten.upsample_linear1d`` for a matmul). A model registration can
add formulas for ops it knows (:class:`OpPolicy`) and declare ops that do no counted work.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from math import prod
from typing import Any, Final

import attrs

Formula = Callable[..., int]
"""``formula(*input_shapes, out_shape=..., **kwargs) -> FLOPs``: torch's custom_mapping shape."""

COMPUTE_OPS: Final = frozenset(
    f"aten.{name}"
    for name in (
        # matmul
        "mm", "addmm", "bmm", "baddbmm", "addbmm", "matmul", "mv", "addmv", "dot", "vdot", "einsum",
        "tensordot", "linear", "_int_mm", "_scaled_mm", "_grouped_mm", "_scaled_grouped_mm",
        "_weight_int8pack_mm", "_weight_int4pack_mm", "_mixed_dtypes_linear", "mkldnn_linear",
        # convolution
        "convolution", "_convolution", "convolution_overrideable", "conv1d", "conv2d", "conv3d",
        "conv_transpose1d", "conv_transpose2d", "conv_transpose3d", "cudnn_convolution",
        "cudnn_convolution_transpose", "mkldnn_convolution", "_slow_conv2d_forward",
        "slow_conv3d_forward", "slow_conv_dilated2d", "slow_conv_dilated3d",
        "slow_conv_transpose2d", "slow_conv_transpose3d", "_nnpack_spatial_convolution",
        # attention
        "scaled_dot_product_attention", "_scaled_dot_product_attention_math",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_efficient_attention", "_scaled_dot_product_cudnn_attention",
        "_scaled_dot_product_fused_attention_overrideable", "_flash_attention_forward",
        "_efficient_attention_forward", "_cudnn_attention_forward",
    )
) | {"flex_attention"}  # fmt: skip
"""Ops that do matmul-, convolution- or attention-like work: one of these running without a
formula means the counter counted 0 for real work."""


def grouped_mm_flops(a_shape: Sequence[int], b_shape: Sequence[int], *args: Any, out_shape: Any = None,
                     **kwargs: Any) -> int:  # fmt: skip
    """``aten._grouped_mm``: one matmul per group, routing independent. 2-D × 3-D (MoE experts:
    rows of every group against their expert) and 3-D × 3-D (batched) count
    2 · output elements · K; 2-D × 2-D (groups along K) counts 2 · M · K · N."""
    if len(a_shape) == 2 and len(b_shape) == 2:
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]
    return 2 * int(prod(out_shape)) * a_shape[-1]


def sdpa_flops(query_shape: Sequence[int], key_shape: Sequence[int], value_shape: Sequence[int], *args: Any,
               **kwargs: Any) -> int:  # fmt: skip
    """SDPA kernels without a formula in torch (the CPU flash kernel): QKᵀ plus PV."""
    from torch.utils.flop_counter import sdpa_flop_count

    return int(sdpa_flop_count(query_shape, key_shape, value_shape))  # type: ignore[no-untyped-call]


SHIPPED_FORMULAS: Final[Mapping[str, Formula]] = {
    "aten._grouped_mm": grouped_mm_flops,
    "aten._scaled_dot_product_flash_attention_for_cpu": sdpa_flops,
    "aten._scaled_dot_product_fused_attention_overrideable": sdpa_flops,
}
"""Formulas the framework adds to torch's counter for every model."""


def _check_names(_instance: Any, _attribute: Any, value: Mapping[str, Formula] | frozenset[str]) -> None:
    for name in sorted(value):
        if not isinstance(name, str) or not (name.startswith("aten.") or name in COMPUTE_OPS):
            raise ValueError(f"op name {name!r} is not allowed: name an aten op as 'aten.<name>'")


@attrs.frozen
class OpPolicy:
    """How the reference counter treats ops for one model.

    ``formulas`` adds FLOP formulas (``formula(*input_shapes, out_shape=...)``) for ops torch's
    counter does not count; ``zero_flop`` declares ops that do no work in the FLOP convention
    although they are compute-like (they are then not reported as uncounted).
    """

    formulas: Mapping[str, Formula] = attrs.field(factory=dict, converter=dict, validator=_check_names)
    zero_flop: frozenset[str] = attrs.field(factory=frozenset, converter=frozenset, validator=_check_names)

    def all_formulas(self) -> dict[str, Formula]:
        return {**SHIPPED_FORMULAS, **self.formulas}

    def describe(self) -> dict[str, list[str]]:
        """The policy as data (part of the reference cache key)."""
        return {"formulas": sorted(self.all_formulas()), "zero_flop": sorted(self.zero_flop)}
