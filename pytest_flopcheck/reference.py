"""The reference runner: counts the real implementation with torch's FLOP counter.

torch is imported lazily, inside the functions that need it, so that the analytic side of
the package never loads it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import attrs

from pytest_flopcheck.ops_policy import COMPUTE_OPS, OpPolicy
from pytest_flopcheck.registry import ReferenceCall
from pytest_flopcheck.tree import CostNode

DEVICES = ("meta", "cpu", "cuda")

OUTSIDE = "(outside any module)"


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

    def module(self, name: str) -> ModuleCount:
        """Counts of the module with this name (``""`` the whole module)."""
        try:
            return self.modules[name]
        except KeyError:
            raise KeyError(f"the reference has no module named {name!r}") from None

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
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ReferenceCounts:
        return cls(
            device=str(data["device"]),
            total_flops=int(data["total_flops"]),
            total_params=int(data["total_params"]),
            total_ops=dict(data["total_ops"]),
            modules={name: ModuleCount(**count) for name, count in data["modules"].items()},
            uncounted_ops=dict(data["uncounted_ops"]),
            seconds=float(data["seconds"]),
            scope=tuple(data.get("scope", ())),
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
        if metric == "params":
            if name == "" and not own:
                return self.total_params  # over the stage's scope when it has one
            return count.own_params if own else count.params
        raise ValueError(f"metric {metric!r} is not counted by the reference (allowed: flops, params)")


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
    """Run ``call`` under ``FlopCounterMode`` and return per-module counts.

    The module is wrapped in a root module whose forward performs the call, so every module
    is named by its path from ``call.module`` whatever method the call uses. ``policy`` adds
    formulas to the counter and says which compute ops do no counted work; the framework's own
    formulas (:data:`~pytest_flopcheck.ops_policy.SHIPPED_FORMULAS`) always apply.
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
    uncounted: dict[str, int] = {}

    class _Uncounted(TorchDispatchMode):  # type: ignore[no-untyped-call]
        """Sees the ops that actually execute, after the counter decomposed what it could."""

        def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            packet = func._overloadpacket
            name = str(packet)
            if packet not in registry and name in COMPUTE_OPS and name not in rules.zero_flop:
                uncounted[name] = uncounted.get(name, 0) + 1
            return func(*args, **(kwargs or {}))

    root = _FlopcheckRoot(call.module, call.run)
    start = time.perf_counter()
    with torch.no_grad(), _Uncounted(), counter:  # type: ignore[no-untyped-call]
        root()
    seconds = time.perf_counter() - start

    raw = counter.get_flop_counts()
    module_ops: dict[str, dict[str, int]] = {}
    for key, per_op in raw.items():
        if key == _ROOT_PREFIX:
            name = ""
        elif key.startswith(_ROOT_PREFIX + "."):
            name = key[len(_ROOT_PREFIX) + 1 :]
        else:
            continue
        module_ops[name] = {str(op): int(n) for op, n in per_op.items()}
    total_ops = {str(op): int(n) for op, n in raw.get("Global", {}).items()}
    modules = _module_counts(call.module, module_ops)
    total = sum(total_ops.values())
    return ReferenceCounts(
        device=device,
        total_flops=total,
        total_params=_scoped_params(call) if call.scope else modules[""].params,
        total_ops=total_ops,
        modules=modules,
        uncounted_ops=dict(sorted(uncounted.items())),
        seconds=seconds,
        scope=call.scope,
    )


def _scoped_params(call: ReferenceCall) -> int:
    """Parameters of the scope's submodules (or single named parameters), each parameter once
    (shared or nested ones too)."""
    named = dict(call.module.named_modules())
    parameters = dict(call.module.named_parameters())
    missing = [name for name in call.scope if name not in named and name not in parameters]
    if missing:
        raise ValueError(
            f"the reference's scope names {missing}, which are not submodules or parameters of the reference "
            "module"
        )
    seen: dict[int, int] = {}
    for name in call.scope:
        for parameter in named[name].parameters() if name in named else [parameters[name]]:
            seen[id(parameter)] = parameter.numel()
    return sum(seen.values())


def _module_counts(module: Any, module_ops: Mapping[str, Mapping[str, int]]) -> dict[str, ModuleCount]:
    """Per-module counts, per operator. A module that was never called itself (a ModuleList,
    say) counts what its children counted, so that own work is never inflated by a container."""
    named = dict(module.named_modules())
    inclusive: dict[str, dict[str, int]] = {}
    # named_modules lists parents before children: walk it backwards to have children first.
    for name in reversed(named):
        if name in module_ops:
            inclusive[name] = dict(module_ops[name])
        else:
            inclusive[name] = _sum_ops(
                inclusive.get(_child(name, c), {}) for c, _ in named[name].named_children()
            )
    counts: dict[str, ModuleCount] = {}
    for name, mod in named.items():
        children = _sum_ops(inclusive.get(_child(name, c), {}) for c, _ in mod.named_children())
        own = {op: n - children.get(op, 0) for op, n in inclusive[name].items() if n - children.get(op, 0)}
        counts[name] = ModuleCount(
            flops=sum(inclusive[name].values()),
            own_flops=sum(inclusive[name].values()) - sum(children.values()),
            params=sum(p.numel() for p in mod.parameters()),
            own_params=sum(p.numel() for p in mod.parameters(recurse=False)),
            ops=dict(sorted(module_ops.get(name, {}).items())),
            own_ops=dict(sorted(own.items())),
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


def run_reference(
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
