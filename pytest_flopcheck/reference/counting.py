"""The reference runner: counts the real implementation with torch's FLOP counter.

torch is imported lazily, inside the functions that need it, so that the analytic side of
the package never loads it.
"""

from __future__ import annotations

import difflib
import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeVar

import attrs

from pytest_flopcheck.analytic.tree import CostNode
from pytest_flopcheck.model.registration import ReferenceCall
from pytest_flopcheck.reference.memory import (
    LiveBytes,
    LiveTensor,
    op_traffic,
    reachable_tensors,
    storage_resizes,
    tensor_bytes,
    tensors,
)
from pytest_flopcheck.reference.meta_results import MetaResults
from pytest_flopcheck.reference.ops_policy import COMPUTE_OPS, OpPolicy

DEVICES = ("meta", "cpu", "cuda")

OUTSIDE = "(outside any module)"

_T = TypeVar("_T")

COUNTS_FORMAT = 6

COLLECTIVE_NAMESPACES: Final = frozenset({"_c10d_functional", "c10d"})
COLLECTIVES: Final = {
    # functional collectives (diffusers' context parallelism, DTensor): the input is argument 0
    "_c10d_functional.all_to_all_single": 0,
    "_c10d_functional.all_gather_into_tensor": 0,
    "_c10d_functional.reduce_scatter_tensor": 0,
    "_c10d_functional.all_reduce": 0,
    "_c10d_functional.all_gather_into_tensor_coalesced": 0,
    "_c10d_functional.reduce_scatter_tensor_coalesced": 0,
    "_c10d_functional.broadcast": 0,
    # in-place c10d ops (FSDP2, torch.distributed calls): (output, input, ...) or (tensors, ...)
    "c10d._allgather_base_": 1,
    "c10d._reduce_scatter_base_": 1,
    "c10d.alltoall_base_": 1,
    "c10d.allreduce_": 0,
    "c10d.allgather_": 1,
    "c10d.broadcast_": 0,
}
"""The collectives a parallel reference issues, and which argument holds its local input (the
bytes a layout's ``collective_bytes`` claim); other ops of these namespaces (waits, autograd
wrappers) move nothing."""
"""The layout of :class:`ReferenceCounts`; part of every cache key, so that a new field forces a
recount rather than a default."""


class ReferenceSkipped(Exception):
    """The reference cannot run here (missing package, no GPU, not enough memory)."""

    def __init__(self, reason: str, *, missing_dependency: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.missing_dependency = missing_dependency


@attrs.frozen
class ModuleCount:
    """Counted FLOPs and parameters of one reference module.

    ``flops``/``params`` include child modules, ``own_flops``/``own_params`` do not.
    ``ops`` splits ``flops`` by operator, ``own_ops`` splits ``own_flops``.
    """

    flops: int
    own_flops: int
    params: int
    own_params: int
    ops: Mapping[str, int]
    own_ops: Mapping[str, int] = attrs.field(factory=dict)
    io_ops: Mapping[str, int] = attrs.field(factory=dict)
    """Bytes read and written by the counted ops that ran in the module (children included), per
    operator (:mod:`pytest_flopcheck.reference.memory` says how bytes are counted)."""
    own_io_ops: Mapping[str, int] = attrs.field(factory=dict)
    other_io: int = 0
    """Bytes moved by every other op that ran in the module (children included): elementwise
    work, norms, copies, padding (a layer's ``elementwise_bytes`` claims them)."""
    own_other_io: int = 0
    """``other_io`` of the module's own ops (its children's left out)."""
    other_ops: int = 0
    """How many of those other ops ran (each that moved bytes: one kernel on a GPU, views none)."""
    own_other_ops: int = 0
    collective_bytes: int = 0
    """Bytes the module handed to collectives on this rank (children included): each
    collective's local input buffer, as :data:`COLLECTIVES` reads it."""
    own_collective_bytes: int = 0
    collectives: int = 0
    """How many collectives it issued (children included)."""
    own_collectives: int = 0
    peak_bytes: int = 0
    """The peak of live tensor bytes while the module ran (everything live, not only its own)."""


@attrs.frozen
class ReferenceCounts:
    """The result of one counted reference run."""

    device: str
    total_flops: int
    total_params: int
    total_ops: Mapping[str, int]
    modules: Mapping[str, ModuleCount]
    uncounted_ops: Mapping[str, int]
    seconds: float
    scope: tuple[str, ...] = ()
    weight_bytes: int = 0
    """Bytes of the parameters the stage uses (its scope's), in the dtype it was built in."""
    baseline_bytes: int = 0
    """Live bytes when the call started: weights, buffers and the call's inputs."""
    peak_bytes: int = 0
    """The peak of live tensor bytes over the call (weights and inputs included; parameters
    outside the stage's scope left out)."""
    dtype: str = ""
    """The dtype the reference module was built in."""
    allocator_peak_bytes: int | None = None
    """On cuda, the caching allocator's peak over the call beyond what it held when the call
    started, plus the live bytes then (so comparable with ``peak_bytes``: its rounding, kernel
    workspaces and the counter's own bookkeeping included); None elsewhere."""
    peak_op: str = ""
    """The op whose output set the live peak (``aten.addmm``), and the module it ran in
    (``peak_module``, a path from the reference module; ``""`` the reference module itself)."""
    peak_module: str = ""
    peak_tensors: tuple[LiveTensor, ...] = ()
    """Every storage live at the peak that the call created (not its weights, buffers or
    inputs), largest first."""

    def module(self, name: str) -> ModuleCount:
        """Counts of the module with this name (``""`` the whole module); KeyError naming the
        closest names the reference has."""
        try:
            return self.modules[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.modules), n=3, cutoff=0.6)
            hint = f"; closest: {', '.join(close)}" if close else ""
            raise KeyError(f"the reference has no module named {name!r}{hint}") from None

    def to_json(self) -> dict[str, Any]:
        """Plain data for the reference cache (exact integers)."""
        return {
            "device": self.device,
            "total_flops": self.total_flops,
            "total_params": self.total_params,
            "total_ops": dict(self.total_ops),
            "modules": {name: attrs.asdict(count) for name, count in self.modules.items()},
            "uncounted_ops": dict(self.uncounted_ops),
            "seconds": self.seconds,
            "scope": list(self.scope),
            "weight_bytes": self.weight_bytes,
            "baseline_bytes": self.baseline_bytes,
            "peak_bytes": self.peak_bytes,
            "dtype": self.dtype,
            "allocator_peak_bytes": self.allocator_peak_bytes,
            "peak_op": self.peak_op,
            "peak_module": self.peak_module,
            "peak_tensors": [t.to_json() for t in self.peak_tensors],
        }

    @classmethod
    def from_json(cls, data: Any) -> ReferenceCounts:
        """Counts from :meth:`to_json`'s data; ValueError naming the field when it is not that
        (a cache entry edited by hand, or written by another layout)."""
        top = _fields(data, "counts", _COUNTS_FIELDS)
        modules = _fields(top["modules"], "modules")
        return cls(
            device=_text(top["device"], "device"),
            total_flops=_count(top["total_flops"], "total_flops"),
            total_params=_count(top["total_params"], "total_params"),
            total_ops=_per_op(top["total_ops"], "total_ops"),
            modules={
                _text(name, "modules"): _module_count(count, f"modules.{name}")
                for name, count in modules.items()
            },
            uncounted_ops=_per_op(top["uncounted_ops"], "uncounted_ops"),
            seconds=_seconds(top["seconds"]),
            scope=tuple(_text(s, "scope") for s in _list(top["scope"], "scope")),
            weight_bytes=_count(top["weight_bytes"], "weight_bytes"),
            baseline_bytes=_count(top["baseline_bytes"], "baseline_bytes"),
            peak_bytes=_count(top["peak_bytes"], "peak_bytes"),
            dtype=_text(top["dtype"], "dtype"),
            allocator_peak_bytes=None
            if top["allocator_peak_bytes"] is None
            else _count(top["allocator_peak_bytes"], "allocator_peak_bytes"),
            peak_op=_text(top["peak_op"], "peak_op"),
            peak_module=_text(top["peak_module"], "peak_module"),
            peak_tensors=tuple(LiveTensor.from_json(t) for t in _list(top["peak_tensors"], "peak_tensors")),
        )

    def value(self, name: str, own: bool, metric: str, ops: tuple[str, ...] = ()) -> int:
        """A module's counted FLOPs or parameters: with ``own`` its own work only, and with
        ``ops`` only those operators' FLOPs."""
        count = self.module(name)
        if metric == "flops" and ops:
            per_op = count.own_ops if own else count.ops
            return sum(per_op.get(op, 0) for op in ops)
        if metric == "flops":
            return count.own_flops if own else count.flops
        if metric == "io_bytes":
            per_op = count.own_io_ops if own else count.io_ops
            return sum(n for op, n in per_op.items() if not ops or op in ops)
        if metric == "params":
            if name == "" and not own:
                return self.total_params  # over the stage's scope when it has one
            return count.own_params if own else count.params
        if metric == "elementwise_bytes":
            return count.own_other_io if own else count.other_io
        if metric == "elementwise_ops":
            return count.own_other_ops if own else count.other_ops
        if metric == "collective_bytes":
            return count.own_collective_bytes if own else count.collective_bytes
        if metric == "collectives":
            return count.own_collectives if own else count.collectives
        raise ValueError(
            f"metric {metric!r} is not counted by the reference (allowed: flops, params, io_bytes, "
            "elementwise_bytes, elementwise_ops, collective_bytes, collectives)"
        )


_COUNTS_FIELDS = (
    "device", "total_flops", "total_params", "total_ops", "modules", "uncounted_ops", "seconds", "scope",
    "weight_bytes", "baseline_bytes", "peak_bytes", "dtype", "allocator_peak_bytes", "peak_op", "peak_module",
    "peak_tensors",
)  # fmt: skip
_MODULE_FIELDS = tuple(field.name for field in attrs.fields(ModuleCount))


def _fields(value: Any, where: str, names: tuple[str, ...] = ()) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise ValueError(f"field {where} is {type(value).__name__}, not an object")
    missing = [name for name in names if name not in value]
    extra = sorted(set(value) - set(names)) if names else []
    if missing or extra:
        raise ValueError(f"field {where} lacks {missing} or has unknown {extra}")
    return value


def _count(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"field {where} is {value!r}, not an integer")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"field {where} is {value!r}, not text")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"field {where} is {type(value).__name__}, not a list")
    return value


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < float("inf"):
        raise ValueError(f"field seconds is {value!r}, not a duration")
    return float(value)


def _per_op(value: Any, where: str) -> dict[str, int]:
    return {_text(op, where): _count(n, f"{where}.{op}") for op, n in _fields(value, where).items()}


def _module_count(value: Any, where: str) -> ModuleCount:
    data = _fields(value, where, _MODULE_FIELDS)
    return ModuleCount(
        flops=_count(data["flops"], f"{where}.flops"),
        own_flops=_count(data["own_flops"], f"{where}.own_flops"),
        params=_count(data["params"], f"{where}.params"),
        own_params=_count(data["own_params"], f"{where}.own_params"),
        ops=_per_op(data["ops"], f"{where}.ops"),
        own_ops=_per_op(data["own_ops"], f"{where}.own_ops"),
        io_ops=_per_op(data["io_ops"], f"{where}.io_ops"),
        own_io_ops=_per_op(data["own_io_ops"], f"{where}.own_io_ops"),
        other_io=_count(data["other_io"], f"{where}.other_io"),
        own_other_io=_count(data["own_other_io"], f"{where}.own_other_io"),
        other_ops=_count(data["other_ops"], f"{where}.other_ops"),
        own_other_ops=_count(data["own_other_ops"], f"{where}.own_other_ops"),
        collective_bytes=_count(data["collective_bytes"], f"{where}.collective_bytes"),
        own_collective_bytes=_count(data["own_collective_bytes"], f"{where}.own_collective_bytes"),
        collectives=_count(data["collectives"], f"{where}.collectives"),
        own_collectives=_count(data["own_collectives"], f"{where}.own_collectives"),
        peak_bytes=_count(data["peak_bytes"], f"{where}.peak_bytes"),
    )


@attrs.frozen
class CoverageGap:
    """Counted work that no analytic node accounts for, or work the counter could not count."""

    kind: str  # "unclaimed_module" or "uncounted_op"
    name: str
    detail: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "detail": self.detail}


def available_memory(device: str) -> int | None:
    """Bytes free on ``device`` now, or None if unknown."""
    if device == "cpu":
        try:
            with open("/proc/meminfo", encoding="ascii") as meminfo:
                for line in meminfo:
                    if line.startswith("MemAvailable:"):
                        return int(line.split()[1]) * 1024
        except OSError:
            pass
        try:
            return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError):
            return None
    if device == "cuda":
        import torch

        free, _total = torch.cuda.mem_get_info()
        return int(free)
    return None


def _gib(n: int) -> str:
    return f"{n / 2**30:.1f} GiB"


def check_device(device: str, estimate: int | None) -> None:
    """Raise ReferenceSkipped if ``device`` is unusable here or the run would not fit."""
    if device not in DEVICES:
        raise ValueError(f"device {device!r} is not supported (allowed: {', '.join(DEVICES)})")
    if device == "meta":
        return
    try:
        import torch
    except ImportError as exc:
        raise ReferenceSkipped(f"torch is not installed ({exc})", missing_dependency=True) from exc
    if device == "cuda" and not torch.cuda.is_available():
        raise ReferenceSkipped("device 'cuda' requested but no CUDA GPU is available")
    if estimate is None:
        return
    free = available_memory(device)
    if free is not None and estimate > 0.9 * free:
        raise ReferenceSkipped(
            f"the reference run needs about {_gib(estimate)} on {device}, but only {_gib(free)} is free; "
            "use --flopcheck-device=meta to count without allocating"
        )


def _custom_mapping(policy: OpPolicy) -> dict[Any, Any]:
    """The policy's formulas keyed by the ops this torch has (others cannot run anyway)."""
    import torch

    mapping: dict[Any, Any] = {}
    for name, formula in policy.all_formulas().items():
        op = getattr(torch.ops.aten, name.removeprefix("aten."), None)
        if op is not None:
            mapping[op] = formula
    return mapping


_ROOT_PREFIX = "_FlopcheckRoot.model"


def count_reference(call: ReferenceCall, device: str, policy: OpPolicy | None = None) -> ReferenceCounts:
    """Run ``call`` under torch's FLOP counter and return per-module counts.

    The counter's formulas, decompositions and module tracking (``FlopCounterMode``'s) run inside
    one dispatch mode of this module's, with the traffic and live-memory tracking: an op pays for
    one Python dispatch layer, not three. What it counts is exactly what ``FlopCounterMode``
    counts of the same call (a test holds that for whole pipeline calls).

    The module is wrapped in a root module whose forward performs the call, so every module
    is named by its path from ``call.module`` whatever method the call uses. ``policy`` adds
    formulas to the counter and says which compute ops do no counted work; the framework's own
    formulas (:data:`~pytest_flopcheck.reference.ops_policy.SHIPPED_FORMULAS`) always apply.
    """
    rules = policy or OpPolicy()
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    class _FlopcheckRoot(torch.nn.Module):
        def __init__(self, model: Any, run: Callable[[], object]) -> None:
            super().__init__()
            self.model = model
            self._run = run

        def forward(self) -> object:
            return self._run()

    counter = FlopCounterMode(display=False, custom_mapping=_custom_mapping(rules))
    registry = counter.flop_registry
    tracker = counter.mod_tracker
    uncounted: dict[str, int] = {}
    io_ops: dict[str, dict[str, int]] = {}
    other_io: dict[str, int] = {}
    other_ops: dict[str, int] = {}
    collective_bytes: dict[str, int] = {}
    collectives: dict[str, int] = {}
    peaks: dict[str, int] = {}
    live = LiveBytes()

    sharded = _sharded_types()
    fake_mode, fake_key = torch._C._get_dispatch_mode, torch._C._TorchDispatchModeKey.FAKE

    results = MetaResults()
    flops: dict[str, dict[Any, int]] = {}
    decomposes: dict[Any, bool] = {}  # per operator: it has a CompositeImplicitAutograd kernel
    names: dict[Any, str] = {}  # per operator packet: its name, "aten.mm"

    def op_name(packet: Any) -> str:
        return names.get(packet) or names.setdefault(packet, str(packet))

    implicit = torch._C.DispatchKey.CompositeImplicitAutograd
    has_kernel = torch._C._dispatch_has_kernel_for_dispatch_key
    device_op = torch.ops.prim.device.default

    class _Counting(TorchDispatchMode):  # type: ignore[no-untyped-call]
        """One mode for all the counting, so that an op pays for one Python dispatch layer.

        An op the implementation runs is tracked first (its traffic and the live tensor bytes,
        as it is, before any decomposition); then, as torch's ``FlopCounterMode`` does, one with
        no FLOP formula is decomposed where torch can (the ops of its decomposition come back
        here and are counted, not tracked); an op with a formula is counted for every active
        module (the counter's formulas and module tracker); a compute op that ran without a
        formula is noted; the kernel runs (a meta kernel's result remembered,
        :mod:`~pytest_flopcheck.reference.meta_results`). An op on a DTensor is handed to it
        (:func:`_sharded_types`): the rank's local ops then come back here."""

        def __init__(self) -> None:
            super().__init__()  # type: ignore[no-untyped-call]
            self.decomposing = 0

        def _run(self, func: Any, args: Any, kwargs: Any) -> Any:
            """The op counted and run, as the FLOP counter and the kernels beneath it would."""
            packet = func._overloadpacket
            formula = registry.get(packet)
            if formula is None and func is not device_op:
                composite = decomposes.get(func)
                if composite is None:
                    composite = implicit in func.py_kernels or has_kernel(func.name(), implicit)
                    decomposes[func] = composite
                if composite:
                    self.decomposing += 1
                    try:
                        with self:
                            done = func.decompose(*args, **kwargs)
                    finally:
                        self.decomposing -= 1
                    if done is not NotImplemented:
                        return done
                name = op_name(packet)
                if name in COMPUTE_OPS and name not in rules.zero_flop:
                    uncounted[name] = uncounted.get(name, 0) + 1
            out = results.run(func, args, kwargs)
            if formula is not None:
                n = formula(*args, **kwargs, out_val=out)
                for parent in set(tracker.parents):
                    per_op = flops.setdefault(parent, {})
                    per_op[packet] = per_op.get(packet, 0) + n
            return out

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if self.decomposing:  # an op of a decomposition: counted, the composite op was tracked
                return self._run(func, args, kwargs)
            # a plain tensor's op has no subclass types, and runs outside another fake mode
            if sharded and (types or fake_mode(fake_key) not in (None, call.mode)):
                handled = _not_run(func, types, args, kwargs, call.mode, sharded)
                if handled is not _RUN_IT:
                    return handled
            packet = func._overloadpacket
            name = op_name(packet)
            out = self._run(func, args, kwargs)
            parents = tracker.parents
            if func.namespace in COLLECTIVE_NAMESPACES:  # communication, not memory traffic
                handed = collective_input_bytes(name, args)
                for parent in parents if handed is not None else ():
                    collective_bytes[parent] = collective_bytes.get(parent, 0) + (handed or 0)
                    collectives[parent] = collectives.get(parent, 0) + 1
                return out
            found = tensors((args, kwargs, out))
            moved = op_traffic(func, found)
            live.add(found, name, _innermost(parents))
            now = live.live
            counted = moved and packet in registry
            for parent in parents:
                if counted:
                    per_op = io_ops.setdefault(parent, {})
                    per_op[name] = per_op.get(name, 0) + moved
                elif moved:
                    other_io[parent] = other_io.get(parent, 0) + moved
                    other_ops[parent] = other_ops.get(parent, 0) + 1
                if now > peaks.get(parent, 0):
                    peaks[parent] = now
            return out

    root = _FlopcheckRoot(call.module, call.run)
    with _tensor_mode(call):
        weight_bytes, other_weights, baseline = _start(call, live)
        allocator = _AllocatorPeak(device)
        start = time.perf_counter()
        resizes = storage_resizes(live, lambda: _innermost(tracker.parents))
        with torch.no_grad(), _fused_attention(device), tracker, _Counting(), allocator, resizes:
            root()
        seconds = time.perf_counter() - start

    module_ops = _by_module(
        {key: {str(op): int(n) for op, n in per_op.items()} for key, per_op in flops.items()}
    )
    total_ops = {str(op): int(n) for op, n in flops.get("Global", {}).items()}
    modules = _module_counts(
        call.module,
        module_ops,
        io=_by_module(io_ops),
        other_io=_by_module(other_io),
        other_ops=_by_module(other_ops),
        collective_bytes=_by_module(collective_bytes),
        collectives=_by_module(collectives),
        peaks=_by_module(peaks),
    )
    total = sum(total_ops.values())
    dtypes = sorted(
        {str(p.dtype).removeprefix("torch.") for p in call.module.parameters() if p.is_floating_point()}
    )
    return ReferenceCounts(
        device=device,
        total_flops=total,
        total_params=_scoped_params(call) if call.scope else modules[""].params,
        total_ops=total_ops,
        modules=modules,
        uncounted_ops=dict(sorted(uncounted.items())),
        seconds=seconds,
        scope=call.scope,
        weight_bytes=weight_bytes,
        baseline_bytes=baseline - other_weights,
        peak_bytes=live.peak - other_weights,
        dtype="+".join(dtypes),
        allocator_peak_bytes=None if allocator.rise is None else baseline - other_weights + allocator.rise,
        peak_op=live.peak_op,
        peak_module=_module_name(live.peak_module),
        peak_tensors=tuple(attrs.evolve(t, module=_module_name(t.module)) for t in live.peak_tensors),
    )


def _start(call: ReferenceCall, live: LiveBytes) -> tuple[int, int, int]:
    """Put the module in inference mode and track what is live when the call starts: the stage's
    weights, other weights, buffers and the call's inputs; their bytes as (stage weights, other
    weights, everything)."""
    # Inference, as it is sized: a module built from a config is in training mode, where dropout
    # runs (masks and products that inference never holds).
    call.module.eval()
    live.add(_local(p) for p in _scoped_parameters(call))
    weight_bytes = live.live
    live.add(_local(p) for p in call.module.parameters())
    # Weights outside the stage's scope are another stage's (a VAE's encoder during its decode):
    # live, but not this stage's memory.
    other_weights = live.live - weight_bytes
    live.add([*call.module.buffers(), *reachable_tensors(call.run)])
    return weight_bytes, other_weights, live.live


def plain_peak(call: ReferenceCall, device: str) -> int:
    """The live peak of a plain run of ``call``: the same tracker as :func:`count_reference` (the
    same start, scope and fused attention on meta), with no FLOP counter in the way. Counting the
    same call must give the same peak: the tracker observes the implementation's own ops."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    live = LiveBytes()
    sharded = _sharded_types()
    fake_mode, fake_key = torch._C._get_dispatch_mode, torch._C._TorchDispatchModeKey.FAKE

    class _Plain(TorchDispatchMode):  # type: ignore[no-untyped-call]
        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            # a DTensor runs its ops as local ops; another fake mode infers shapes
            if sharded and (types or fake_mode(fake_key) not in (None, call.mode)):
                handled = _not_run(func, types, args, kwargs or {}, call.mode, sharded)
                if handled is not _RUN_IT:
                    return handled
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            live.add(tensors((args, kwargs, out)), str(func._overloadpacket))
            return out

    with _tensor_mode(call):
        _, other_weights, _ = _start(call, live)
        with torch.no_grad(), _fused_attention(device), _Plain(), storage_resizes(live):  # type: ignore[no-untyped-call]
            call.run()
    return live.peak - other_weights


def _sharded_types() -> tuple[type, ...]:
    """DTensor, the tensor type that runs each op as this rank's local ops and collectives
    (tensor parallelism, FSDP2's parameters), and FakeTensor, in which it infers shapes; empty
    in a torch build without distributed. The counting mode (and a plain run's) returns
    NotImplemented for an op on one, so the DTensor runs it and the mode sees, and counts, what the
    rank runs at its local shapes, not the op at the global shape (torch's FLOP counter alone
    counts the latter)."""
    try:
        from torch.distributed.tensor import DTensor
    except ImportError:  # a torch build without distributed
        return ()
    from torch._subclasses.fake_tensor import FakeTensor

    return (DTensor, FakeTensor)


def _other_fake_mode(mode: Any) -> Any:
    """The fake mode active if it is not the call's own (``mode``, None on meta): the DTensor's
    sharding propagation inferring shapes, beneath the counting mode as torch runs every fake
    mode; else None."""
    import torch

    active = torch._C._get_dispatch_mode(torch._C._TorchDispatchModeKey.FAKE)
    return active if active is not None and active is not mode else None


_RUN_IT: Final = object()
"""What :func:`_not_run` returns for an op the rank runs as it is (an op may return None)."""


def _not_run(func: Any, types: Any, args: Any, kwargs: Any, mode: Any, sharded: tuple[type, ...]) -> Any:
    """An op the rank does not run as it is, handled without counting it (else ``_RUN_IT``): an op on
    a DTensor, handed back to it (NotImplemented) to run as local ops, each dispatched again
    through the counting mode; and the DTensor's sharding propagation, shape inference on fake
    tensors of another fake mode than the call's own, run with the counting mode off.
    ``sharded``: (DTensor, FakeTensor), from :func:`_sharded_types`."""
    from torch.utils._python_dispatch import _disable_current_modes

    dtensor, fake_type = sharded
    if any(issubclass(t, dtensor) for t in types):
        return NotImplemented
    other = _other_fake_mode(mode)
    if other is not None:  # run by it alone: its factory ops have no fake argument to tell by
        with _disable_current_modes(), other:
            return func(*args, **kwargs)
    if not any(issubclass(t, fake_type) for t in types):
        return _RUN_IT
    fake: Any = next((t for t in tensors(args) if isinstance(t, fake_type)), None)
    if fake is None or fake.fake_mode is mode:
        return _RUN_IT

    with _disable_current_modes():
        return func(*args, **kwargs)


def _tensor_mode(call: ReferenceCall) -> Any:
    """The mode the call's tensors live in (entered beneath every counting mode), or nothing."""
    import contextlib

    return call.mode if call.mode is not None else contextlib.nullcontext()


def _local(tensor: Any) -> Any:
    """A DTensor's local shard (what this rank holds: an FSDP2 parameter's shard); other tensors
    as they are."""
    local = getattr(tensor, "_local_tensor", None)
    return tensor if local is None else local


def _innermost(parents: Any) -> str:
    """The innermost active module of the module tracker's names (they extend their parents')."""
    return max(parents, key=len, default="")


def _module_name(tracked: str) -> str:
    """A module tracker's name as a path from the reference module (``""`` for it or outside)."""
    return tracked[len(_ROOT_PREFIX) + 1 :] if tracked.startswith(_ROOT_PREFIX + ".") else ""


def _by_module(raw: Mapping[str, _T]) -> dict[str, _T]:
    """Values keyed by the module tracker's names, re-keyed by module path from the reference
    module (``""`` for it; outside modules dropped)."""
    named: dict[str, _T] = {}
    for key, value in raw.items():
        if key == _ROOT_PREFIX:
            named[""] = value
        elif key.startswith(_ROOT_PREFIX + "."):
            named[key[len(_ROOT_PREFIX) + 1 :]] = value
    return named


class _AllocatorPeak:
    """On cuda, the caching allocator's peak over a block, as a rise above what it held at the
    start (the weights and inputs are already there); ``rise`` stays None elsewhere."""

    def __init__(self, device: str) -> None:
        self.device = device
        self.rise: int | None = None
        self._start = 0

    def __enter__(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self._start = torch.cuda.memory_allocated()

    def __exit__(self, *exc: object) -> None:
        if self.device.startswith("cuda") and exc[0] is None:
            import torch

            torch.cuda.synchronize()
            self.rise = torch.cuda.max_memory_allocated() - self._start


def _fused_attention(device: str) -> Any:
    """On meta, SDPA runs as one fused kernel, as it does on CPU and GPU.

    torch has no fused attention for meta tensors and falls back to the math path, which
    materialises the full score matrix (110 GB at 32,760 tokens and 12 heads) and would make the
    live-bytes peak a property of the meta device. The CPU flash kernel has a meta implementation
    with the real kernels' inputs and outputs (the output and its log-sum-exp), and its FLOPs are
    the same. Elsewhere nothing changes."""
    import contextlib

    if device != "meta":
        return contextlib.nullcontext()
    import torch
    import torch.nn.functional as F
    from torch.overrides import TorchFunctionMode

    fused = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu.default

    class _Fused(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            kwargs = kwargs or {}
            if func is not F.scaled_dot_product_attention:
                return func(*args, **kwargs)
            names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa")
            bound = {**dict(zip(names, args, strict=False)), **kwargs}
            query, key, value = bound["query"], bound["key"], bound["value"]
            if query.device.type != "meta" or query.dim() != 4:
                return func(*args, **kwargs)
            if key.shape[1] != query.shape[1]:  # grouped-query attention: as the math path does
                repeat = query.shape[1] // key.shape[1]
                key = key.repeat_interleave(repeat, dim=1)
                value = value.repeat_interleave(repeat, dim=1)
            mask = bound.get("attn_mask")
            if mask is not None and mask.dtype == torch.bool:  # the kernel takes an additive mask
                mask = torch.zeros(mask.shape, dtype=query.dtype, device=query.device).masked_fill(
                    mask.logical_not(), float("-inf")
                )
            return fused(
                query,
                key,
                value,
                bound.get("dropout_p", 0.0),
                bool(bound.get("is_causal", False)),
                attn_mask=mask,
                scale=bound.get("scale"),
            )[0]

    return _Fused()


def _scoped_params(call: ReferenceCall) -> int:
    """Parameters of the scope's submodules (or single named parameters), each parameter once
    (shared or nested ones too)."""
    return sum(parameter.numel() for parameter in _scoped_parameters(call))


def _scoped_parameters(call: ReferenceCall) -> list[Any]:
    """The parameters the stage uses: the scope's, or the whole module's; each once."""
    if not call.scope:
        return list(call.module.parameters())
    named = dict(call.module.named_modules())
    parameters = dict(call.module.named_parameters())
    missing = [name for name in call.scope if name not in named and name not in parameters]
    if missing:
        raise ValueError(
            f"the reference's scope names {missing}, which are not submodules or parameters of the reference "
            "module"
        )
    seen: dict[int, Any] = {}
    for name in call.scope:
        for parameter in named[name].parameters() if name in named else [parameters[name]]:
            seen[id(parameter)] = parameter
    return list(seen.values())


def _inclusive(module: Any, per_module: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    """Per-operator values of every module, children included. A module that was never called
    itself (a ModuleList, say) has what its children had, so that own work is never inflated by a
    container."""
    named = dict(module.named_modules())
    inclusive: dict[str, dict[str, int]] = {}
    # named_modules lists parents before children: walk it backwards to have children first.
    for name in reversed(named):
        if name in per_module:
            inclusive[name] = dict(per_module[name])
        else:
            inclusive[name] = _sum_ops(
                inclusive.get(_child(name, c), {}) for c, _ in named[name].named_children()
            )
    return inclusive


def _own(module: Any, name: str, inclusive: Mapping[str, Mapping[str, int]]) -> dict[str, int]:
    children = _sum_ops(inclusive.get(_child(name, c), {}) for c, _ in module.named_children())
    own = {op: n - children.get(op, 0) for op, n in inclusive[name].items()}
    return dict(sorted((op, n) for op, n in own.items() if n))


def collective_input_bytes(name: str, args: Any) -> int | None:
    """The local input bytes of collective ``name``, or None for an op of a collective namespace
    that is no collective (a wait)."""
    index = COLLECTIVES.get(name)
    if index is None or len(args) <= index:
        return None
    return sum(tensor_bytes(t) for t in tensors(args[index]))


def _module_counts(
    module: Any,
    module_ops: Mapping[str, Mapping[str, int]],
    *,
    io: Mapping[str, Mapping[str, int]] | None = None,
    other_io: Mapping[str, int] | None = None,
    other_ops: Mapping[str, int] | None = None,
    collective_bytes: Mapping[str, int] | None = None,
    collectives: Mapping[str, int] | None = None,
    peaks: Mapping[str, int] | None = None,
) -> dict[str, ModuleCount]:
    """Per-module counts, per operator (FLOPs, and with ``io`` bytes of the counted ops)."""
    named = dict(module.named_modules())
    flops = _inclusive(module, module_ops)
    moved = _inclusive(module, io or {})
    other = _inclusive(
        module,
        {name: {"bytes": n, "ops": (other_ops or {}).get(name, 0)} for name, n in (other_io or {}).items()},
    )
    handed = _inclusive(
        module,
        {
            name: {"bytes": n, "ops": (collectives or {}).get(name, 0)}
            for name, n in (collective_bytes or {}).items()
        },
    )
    peak = dict(peaks or {})
    for name in reversed(named):  # a container that never ran itself: its children's largest peak
        if name not in peak:
            peak[name] = max(
                (peak.get(_child(name, c), 0) for c, _ in named[name].named_children()), default=0
            )
    counts: dict[str, ModuleCount] = {}
    for name, mod in named.items():
        own = _own(mod, name, flops)
        own_other = _own(mod, name, other)
        own_handed = _own(mod, name, handed)
        counts[name] = ModuleCount(
            flops=sum(flops[name].values()),
            own_flops=sum(own.values()),
            params=sum(p.numel() for p in mod.parameters()),
            own_params=sum(p.numel() for p in mod.parameters(recurse=False)),
            ops=dict(sorted(module_ops.get(name, {}).items())),
            own_ops=own,
            io_ops=dict(sorted(moved[name].items())),
            own_io_ops=_own(mod, name, moved),
            other_io=other[name].get("bytes", 0),
            own_other_io=own_other.get("bytes", 0),
            other_ops=other[name].get("ops", 0),
            own_other_ops=own_other.get("ops", 0),
            collective_bytes=handed[name].get("bytes", 0),
            own_collective_bytes=own_handed.get("bytes", 0),
            collectives=handed[name].get("ops", 0),
            own_collectives=own_handed.get("ops", 0),
            peak_bytes=peak[name],
        )
    return counts


def _sum_ops(parts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for part in parts:
        for op, n in part.items():
            total[op] = total.get(op, 0) + n
    return total


def _child(parent: str, child: str) -> str:
    return f"{parent}.{child}" if parent else child


def build_and_count(
    build: Callable[[], ReferenceCall],
    device: str,
    estimate: int | None = None,
    policy: OpPolicy | None = None,
) -> ReferenceCounts:
    """Check the device, build the reference and count it.

    A missing package (ImportError while building) becomes :class:`ReferenceSkipped` with
    ``missing_dependency`` set.
    """
    check_device(device, estimate)
    try:
        call = build()
    except ImportError as exc:
        raise ReferenceSkipped(
            f"the reference implementation needs a package that is not installed: {exc}",
            missing_dependency=True,
        ) from exc
    return count_reference(call, device, policy)


def _claims(tree: CostNode) -> Iterable[tuple[str, bool, tuple[str, ...]]]:
    for leaf in tree.leaves():
        if leaf.reference is not None:
            yield leaf.reference, leaf.reference_own, leaf.reference_ops


def coverage_gaps(tree: CostNode, counts: ReferenceCounts) -> list[CoverageGap]:
    """Counted work that no analytic leaf claims, and compute ops that ran uncounted.

    A leaf claims its module's whole subtree, or with ``reference_own`` only the module's
    own work, or with ``reference_ops`` too only those operators of it (several leaves may
    split one module's own work by op). Every module's own counted FLOPs must be claimed.
    """
    whole: set[str] = set()
    own: set[str] = set()
    own_ops: dict[str, set[str]] = {}
    for name, is_own, ops in _claims(tree):
        if not is_own:
            whole.add(name)
        elif ops:
            own_ops.setdefault(name, set()).update(ops)
        else:
            own.add(name)

    def unclaimed(name: str, count: ModuleCount) -> dict[str, int]:
        """The module's own FLOPs per operator that no leaf claims."""
        parts = name.split(".")
        if name in own or name in whole or "" in whole:
            return {}
        if any(".".join(parts[:i]) in whole for i in range(1, len(parts))):
            return {}
        claimed = own_ops.get(name, set())
        return {op: n for op, n in count.own_ops.items() if n and op not in claimed}

    gaps = []
    for name, count in counts.modules.items():
        if count.own_flops <= 0:
            continue
        missing = unclaimed(name, count)
        if missing:
            listed = ", ".join(f"{op} {n:,}" for op, n in missing.items())
            gaps.append(
                CoverageGap(
                    "unclaimed_module",
                    name or "(root)",
                    f"{sum(missing.values()):,} FLOPs counted on it ({listed}) are not claimed by any "
                    "analytic node",
                )
            )
    outside = counts.total_flops - counts.modules[""].flops
    if outside:
        gaps.append(
            CoverageGap("unclaimed_module", OUTSIDE, f"{outside:,} FLOPs counted outside every module")
        )
    return gaps + uncounted_gaps(counts)


def uncounted_gaps(counts: ReferenceCounts) -> list[CoverageGap]:
    """Compute ops that ran with no FLOP formula: their work was counted as 0."""
    return [
        CoverageGap(
            "uncounted_op", op, f"ran {calls} time(s) with no FLOP formula: its work was counted as 0"
        )
        for op, calls in counts.uncounted_ops.items()
    ]
