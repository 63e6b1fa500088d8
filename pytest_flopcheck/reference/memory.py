"""The memory reference: op traffic per module and the peak of live tensor bytes.

It rides on the FLOP counter's run (one pass, one dispatch mode): the counting sees every op the
implementation runs before the counter decomposes any, with the counter's module tracker saying
which modules are active.

Traffic follows the convention of torch's own roofline estimator
(``torch.utils._runtime_estimation.get_transfer_time``): an op reads every tensor argument and
writes every tensor output, each counted as its elements times its element size, where a
broadcast (stride-0) dimension counts once. Views move no data and count nothing. Traffic is kept
per module for the ops the FLOP counter counts (the ops an analytic layer claims) and, for every
other op, as a per-module total that no analytic node claims.

Live bytes are tracked from tensor storages: the storages alive when the call starts (weights,
buffers, the call's inputs) and every storage an op creates, each counted once (views share their
base's storage) until Python frees it. The ops are the implementation's own: the tracker sees an
op before the FLOP counter decomposes it (an op with no formula, such as a nearest upsample into
fp32 index arithmetic), so none of those decompositions' temporaries are seen. It leaves out the
allocator's rounding and caching and kernel workspaces (a convolution's or an attention
kernel's scratch), which a real device adds.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterable, Iterator
from typing import Any, Final

import attrs


def tensor_bytes(tensor: Any) -> int:
    """Bytes an op moves for ``tensor``: its elements (a stride-0 dimension counts once) times its
    element size."""
    elements = 1
    for size, stride in zip(tensor.shape, tensor.stride(), strict=True):
        if stride != 0:
            elements *= size
    return int(elements) * int(tensor.element_size())


def tensors(value: Any) -> list[Any]:
    """The tensors in ``value`` (an op's arguments or outputs), through lists, tuples and dicts, in
    order. A list, not a generator: it runs for every op a counted run dispatches."""
    import torch

    found: list[Any] = []
    _collect(value, found, torch.Tensor)
    return found


def _collect(value: Any, found: list[Any], tensor: type) -> None:
    if isinstance(value, tensor):
        found.append(value)
    elif isinstance(value, (list, tuple)):
        for item in value:
            _collect(item, found, tensor)
    elif isinstance(value, dict):
        for item in value.values():
            _collect(item, found, tensor)


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


@attrs.frozen
class LiveTensor:
    """A storage live at the measured peak: its bytes, and the op, module, shape and dtype of the
    tensor that created it."""

    bytes: int
    op: str
    module: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> list[Any]:
        return [self.bytes, self.op, self.module, list(self.shape), self.dtype]

    @classmethod
    def from_json(cls, data: Any) -> LiveTensor:
        size, op, module, shape, dtype = data
        if not (
            isinstance(size, int)
            and isinstance(op, str)
            and isinstance(module, str)
            and isinstance(shape, list)
            and all(isinstance(n, int) for n in shape)
            and isinstance(dtype, str)
        ):
            raise ValueError(f"field peak_tensors holds {data!r}, not a live tensor")
        return cls(size, op, module, tuple(shape), dtype)


UNWRITTEN: Final = frozenset({"aten.empty", "aten.empty_strided"})
"""Ops that only allocate: their output counts from the first op that uses it, and not at all if
none does. The implementations' only unused allocations are probes on the meta device, which hold
no memory on any device (transformers' tensor-parallel layers create a full-width meta tensor to
read its strides); an allocated buffer is used by the op it is for."""


@attrs.define
class LiveBytes:
    """The bytes of live tensor storages and their peak; at the peak, which op in which module set
    it and every storage then live beyond those present at the start (weights, buffers, inputs)."""

    live: int = 0
    peak: int = 0
    peak_op: str = ""
    peak_module: str = ""
    peak_tensors: tuple[LiveTensor, ...] = ()
    _sizes: dict[int, int] = attrs.field(factory=dict)
    _refs: dict[int, Any] = attrs.field(factory=dict)
    _made: dict[int, LiveTensor] = attrs.field(factory=dict)
    """The storages created during the call (not the start's), with what created them."""
    _unwritten: dict[int, tuple[Any, str, str]] = attrs.field(factory=dict)
    """Storages an allocation op created that no op has used yet (:data:`UNWRITTEN`): a weak
    reference, and the op and module that created each."""

    def add(self, tensors: Iterable[Any], op: str = "", module: str = "") -> None:
        """Track the storages of ``tensors``; ``op`` and ``module`` say what created the new ones
        (empty: present at the start). The output of an allocation op (:data:`UNWRITTEN`) is live
        from the first op that uses it."""
        if op in UNWRITTEN:
            for tensor in tensors:
                storage = tensor.untyped_storage()
                key = storage._cdata
                self._unwritten[key] = (weakref.ref(storage, self._unused(key)), op, module)
            return
        for tensor in tensors:
            storage = tensor.untyped_storage()
            key = storage._cdata
            if key in self._sizes:
                continue
            unwritten = self._unwritten.pop(key, None)
            if unwritten is not None:  # live from now on, as made by its allocation
                self._track(storage, key, tensor, unwritten[1], unwritten[2])
                continue
            self._track(storage, key, tensor, op, module)
        self._rose(op, module)

    def _track(self, storage: Any, key: int, tensor: Any, op: str, module: str) -> None:
        size = int(storage.nbytes())
        self._sizes[key] = size
        self._refs[key] = weakref.ref(storage, self._freed(key))
        self.live += size
        if op:
            shape = tuple(int(n) for n in tensor.shape)
            self._made[key] = LiveTensor(size, op, module, shape, str(tensor.dtype).removeprefix("torch."))

    def _rose(self, op: str, module: str) -> None:
        """A new peak, if the live bytes are one; ``op`` (empty at the start) and ``module`` set it."""
        if self.live > self.peak:
            self.peak = self.live
            if op:
                self.peak_op, self.peak_module = op, module
                self.peak_tensors = tuple(sorted(self._made.values(), key=lambda t: -t.bytes))

    def resized(self, storage: Any, op: str = "resize_", module: str = "") -> None:
        """A storage resized in place (FSDP frees a gathered unit's storage with ``resize_(0)``
        and allocates it again the same way; no op creates or frees it): its bytes now."""
        key = storage._cdata
        size = int(storage.nbytes())
        self._unwritten.pop(key, None)
        if key not in self._sizes:
            if not size:
                return
            self._refs[key] = weakref.ref(storage, self._freed(key))
            self._sizes[key] = 0
        self.live += size - self._sizes[key]
        self._sizes[key] = size
        made = self._made.get(key)
        self._made[key] = (
            attrs.evolve(made, bytes=size) if made else LiveTensor(size, op, module, (size,), "uint8")
        )
        self._rose(op, module)

    def _unused(self, key: int) -> Any:
        def callback(_ref: Any) -> None:
            self._unwritten.pop(key, None)

        return callback

    def _freed(self, key: int) -> Any:
        def callback(_ref: Any) -> None:
            self.live -= self._sizes.pop(key, 0)
            self._refs.pop(key, None)
            self._made.pop(key, None)

        return callback


def op_traffic(func: Any, found: Iterable[Any]) -> int:
    """Bytes one executed op reads and writes, given the tensors of its arguments and outputs
    (:func:`tensors`): each whole, a broadcast dimension once; 0 for a view."""
    return 0 if func.is_view else sum(tensor_bytes(t) for t in found)


@contextlib.contextmanager
def storage_resizes(live: LiveBytes, module: Any = lambda: "") -> Iterator[None]:
    """Within the block, every ``UntypedStorage.resize_`` is reported to ``live`` (``module()``
    names the running module): FSDP frees and re-allocates gathered weights that way, unseen by a
    dispatch mode."""
    import torch

    original = torch.UntypedStorage.resize_

    def resize(storage: Any, size: int) -> Any:
        out = original(storage, size)
        live.resized(storage, module=module())
        return out

    torch.UntypedStorage.resize_ = resize  # type: ignore[method-assign,assignment]
    try:
        yield
    finally:
        torch.UntypedStorage.resize_ = original  # type: ignore[method-assign]
