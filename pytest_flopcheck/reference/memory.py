"""The memory reference: op traffic per module and the peak of live tensor bytes.

It rides on the FLOP counter's run (one pass): a dispatch mode below the counter sees every op
that executes, with the counter's module tracker saying which modules are active.

Traffic follows the convention of torch's own roofline estimator
(``torch.utils._runtime_estimation.get_transfer_time``): an op reads every tensor argument and
writes every tensor output, each counted as its elements times its element size, where a
broadcast (stride-0) dimension counts once. Views move no data and count nothing. Traffic is kept
per module for the ops the FLOP counter counts (the ops an analytic layer claims) and, for every
other op, as a per-module total that no analytic node claims.

Live bytes are tracked from tensor storages: the storages alive when the call starts (weights,
buffers, the call's inputs) and every storage an op creates, each counted once (views share their
base's storage) until Python frees it. On meta and CPU this is exactly the set of tensors the
implementation keeps alive; it leaves out the allocator's rounding and caching and kernel
workspaces, which a GPU adds.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import attrs


def tensor_bytes(tensor: Any) -> int:
    """Bytes an op moves for ``tensor``: its elements (a stride-0 dimension counts once) times its
    element size."""
    elements = 1
    for size, stride in zip(tensor.shape, tensor.stride(), strict=True):
        if stride != 0:
            elements *= size
    return int(elements) * int(tensor.element_size())


def tensors(value: Any) -> Iterator[Any]:
    """The tensors in ``value`` (an op's arguments or outputs), through lists, tuples and dicts."""
    import torch

    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors(item)


def reachable_tensors(root: Any, depth: int = 4) -> Iterator[Any]:
    """Tensors held by a call's closure (its inputs), through containers, partials and bound
    methods, ``depth`` levels down. Modules are not entered: their weights are registered apart."""
    import torch

    seen: set[int] = set()

    def visit(value: Any, level: int) -> Iterator[Any]:
        if id(value) in seen or level > depth:
            return
        seen.add(id(value))
        if isinstance(value, torch.Tensor):
            yield value
        elif isinstance(value, torch.nn.Module):
            return
        elif isinstance(value, (list, tuple, set, frozenset)):
            for item in value:
                yield from visit(item, level + 1)
        elif isinstance(value, dict):
            for item in value.values():
                yield from visit(item, level + 1)
        elif callable(value):
            for cell in getattr(value, "__closure__", None) or ():
                try:
                    content = cell.cell_contents
                except ValueError:
                    continue
                yield from visit(content, level + 1)
            for attribute in ("func", "args", "keywords", "__self__"):
                if hasattr(value, attribute):
                    yield from visit(getattr(value, attribute), level + 1)

    yield from visit(root, 0)


@attrs.define
class LiveBytes:
    """The bytes of live tensor storages, and their peak."""

    live: int = 0
    peak: int = 0
    _sizes: dict[int, int] = attrs.field(factory=dict)
    _refs: dict[int, Any] = attrs.field(factory=dict)

    def add(self, tensors: Iterable[Any]) -> None:
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = storage._cdata
            if key in self._sizes:
                continue
            size = int(storage.nbytes())
            self._sizes[key] = size
            self._refs[key] = weakref.ref(storage, self._freed(key))
            self.live += size
        self.peak = max(self.peak, self.live)

    def _freed(self, key: int) -> Any:
        def callback(_ref: Any) -> None:
            self.live -= self._sizes.pop(key, 0)
            self._refs.pop(key, None)

        return callback


def op_traffic(func: Any, args: Any, kwargs: Any, out: Any) -> int:
    """Bytes one executed op reads and writes (0 for a view)."""
    if func.is_view:
        return 0
    moved = sum(tensor_bytes(t) for t in tensors(args))
    moved += sum(tensor_bytes(t) for t in tensors(kwargs))
    return moved + sum(tensor_bytes(t) for t in tensors(out))
