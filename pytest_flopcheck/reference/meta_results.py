"""Meta kernels' results, remembered by their inputs' metadata.

On the meta device an operator's result depends on nothing but its inputs' sizes, strides and
dtypes and its other arguments, yet many of torch's meta kernels are Python decompositions that
cost a hundred microseconds or more an op. A decode of 256 tokens runs the same few thousand
ops on the same shapes step after step; :class:`MetaResults` runs each distinct call once and
afterwards makes empty tensors of the very sizes, strides and dtypes it returned. It sits below
every counting mode, where only the kernel runs: what the counters see is unchanged.

A call is remembered only where that is exact: an operator that neither mutates nor returns a
view of its inputs (its schema says so), every tensor a plain meta tensor, every other argument
a constant, and every result a fresh tensor starting its own storage (no result sharing a
storage with another or with an input) or a constant.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

CONSTANTS: Final = (int, float, bool, str, type(None))


class MetaResults:
    """Runs an operator on meta tensors, or rebuilds the result of an identical earlier call."""

    def __init__(self) -> None:
        self.kept: dict[Any, Callable[[], Any] | None] = {}
        self.fresh: dict[Any, bool] = {}  # per operator: its schema neither mutates nor aliases
        self.hits = 0
        self.calls = 0

    def run(self, func: Any, args: Any, kwargs: Any) -> Any:
        self.calls += 1
        fresh = self.fresh.get(func)
        if fresh is None:
            schema = func._schema
            fresh = not schema.is_mutable and all(r.alias_info is None for r in schema.returns)
            self.fresh[func] = fresh
        if not fresh:
            return func(*args, **kwargs)
        try:
            key = (func, _part(args), _part(kwargs))
        except _NotKept:
            return func(*args, **kwargs)
        seen = key in self.kept
        rebuild = self.kept.get(key)
        if rebuild is not None:
            self.hits += 1
            return rebuild()
        out = func(*args, **kwargs)
        if not seen:
            self.kept[key] = _recipe(out, args, kwargs)
        return out


class _NotKept(Exception):
    """An argument the result may depend on beyond its metadata (a tensor not on meta, an
    object)."""


def _part(value: Any) -> Any:
    """What a meta kernel's result can depend on in one argument: a tensor's sizes, strides,
    dtype and offset; a constant; the same of a tuple's, list's or dict's items."""
    import torch

    kind = type(value)
    if kind is torch.Tensor or kind is torch.nn.Parameter:
        if value.device.type != "meta":
            raise _NotKept
        return (value.shape, value.stride(), value.dtype, value.storage_offset())
    if kind is tuple or kind is list:
        return (kind, *map(_part, value))
    if kind is dict:
        return (dict, *((k, _part(v)) for k, v in value.items()))
    if kind in CONSTANTS or kind is torch.dtype or kind is torch.device or kind is torch.layout:
        return (kind, value)
    if kind is torch.memory_format:
        return (kind, str(value))
    raise _NotKept


def _recipe(out: Any, args: Any, kwargs: Any) -> Callable[[], Any] | None:
    """How to make ``out`` again from nothing, or None if it is not fresh meta tensors and
    constants."""
    import torch
    from torch.utils._pytree import tree_flatten, tree_unflatten

    flat, spec = tree_flatten(out)
    inputs = {
        a.untyped_storage()._cdata for a in tree_flatten((args, kwargs))[0] if isinstance(a, torch.Tensor)
    }
    storages: set[int] = set()
    leaves: list[tuple[bool, Any]] = []
    for leaf in flat:
        if isinstance(leaf, torch.Tensor):
            if type(leaf) is not torch.Tensor or leaf.device.type != "meta" or leaf.storage_offset():
                return None
            storage = leaf.untyped_storage()
            if storage._cdata in inputs or storage._cdata in storages:
                return None
            storages.add(storage._cdata)
            if storage.nbytes() != _needed(leaf):
                return None
            leaves.append((True, (tuple(leaf.shape), leaf.stride(), leaf.dtype)))
        elif isinstance(leaf, CONSTANTS):
            leaves.append((False, leaf))
        else:
            return None

    def rebuild() -> Any:
        made = [
            torch.empty_strided(value[0], value[1], dtype=value[2], device="meta") if tensor else value
            for tensor, value in leaves
        ]
        return tree_unflatten(made, spec)

    return rebuild


def _needed(tensor: Any) -> int:
    """Bytes of the smallest storage that holds ``tensor`` at offset 0 (what ``empty_strided``
    allocates)."""
    if tensor.numel() == 0:
        return 0
    span = sum((size - 1) * stride for size, stride in zip(tensor.shape, tensor.stride(), strict=True))
    return int((span + 1) * tensor.element_size())
