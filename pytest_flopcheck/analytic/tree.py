"""The cost tree: what an analytic model predicts, node by node.

A node describes one execution of a layer (or a group of layers). Its metrics are exact
Python integers. A parent's metrics are the sum of its children's, where ``repeat`` says how
many times a child runs inside one run of its parent: work (FLOPs, I/O and activation bytes)
is multiplied by ``repeat``, state (parameters, weight bytes, cache bytes) is not, because
running the same weights again does not create new ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Final

import attrs

from pytest_flopcheck.text import is_safe_name, shorten

METRICS: Final = (
    "flops", "params", "weight_bytes", "activation_bytes", "io_bytes", "cache_bytes",
    "elementwise_bytes", "elementwise_ops", "collective_bytes", "collectives",
)  # fmt: skip
"""The metric names, in report order."""

WORK_METRICS: Final = frozenset(
    {"flops", "activation_bytes", "io_bytes", "elementwise_bytes", "elementwise_ops"}
)


@attrs.frozen(slots=True)
class Metrics:
    """Integer metrics of one node.

    ``flops`` follow torch's counter (2 per multiply-add, elementwise work is 0);
    ``activation_bytes`` is what the node writes; ``io_bytes`` what it reads and writes
    (inputs, weights, outputs); ``cache_bytes`` state kept between runs (KV or feature caches).
    ``elementwise_bytes`` are what the node's other ops move, each op reading its inputs and
    writing its outputs on its own (norms, activations, casts, residual adds, copies: the eager
    implementation, unfused), and ``elementwise_ops`` how many such ops run (one kernel each):
    0 where a model does not predict them. ``collective_bytes`` is what the node hands to
    collectives on one rank of a parallel layout (each collective's local input buffer: an
    all-to-all's send buffer, an all-gather's shard) and ``collectives`` how many it issues.
    """

    flops: int = 0
    params: int = 0
    weight_bytes: int = 0
    activation_bytes: int = 0
    io_bytes: int = 0
    cache_bytes: int = 0
    elementwise_bytes: int = 0
    elementwise_ops: int = 0
    collective_bytes: int = 0
    collectives: int = 0

    def __add__(self, other: Metrics) -> Metrics:
        return Metrics(
            self.flops + other.flops,
            self.params + other.params,
            self.weight_bytes + other.weight_bytes,
            self.activation_bytes + other.activation_bytes,
            self.io_bytes + other.io_bytes,
            self.cache_bytes + other.cache_bytes,
            self.elementwise_bytes + other.elementwise_bytes,
            self.elementwise_ops + other.elementwise_ops,
            self.collective_bytes + other.collective_bytes,
            self.collectives + other.collectives,
        )

    def scaled(self, copies: int) -> Metrics:
        """The metrics of ``copies`` distinct copies (separate weights): every field scales."""
        return Metrics(*(getattr(self, name) * copies for name in METRICS))

    def repeated(self, times: int) -> Metrics:
        """The metrics of ``times`` runs: work scales, state does not."""
        if times == 1:
            return self
        return Metrics(
            self.flops * times,
            self.params,
            self.weight_bytes,
            self.activation_bytes * times,
            self.io_bytes * times,
            self.cache_bytes,
            self.elementwise_bytes * times,
            self.elementwise_ops * times,
            self.collective_bytes * times,
            self.collectives * times,
        )

    def as_dict(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in METRICS}


ZERO: Final = Metrics()


COLLECTIVE_KINDS: Final = ("all_to_all", "all_gather", "reduce_scatter", "all_reduce")
"""Collectives as nccl-tests names them; their bus-bandwidth factors are in the time model."""
KERNEL_KINDS: Final = ("gemm", "attention", *COLLECTIVE_KINDS)


@attrs.frozen(slots=True)
class Kernel:
    """The shape of a leaf's compute kernel, for the time model.

    ``kind="gemm"``: ``batch`` products of an ``m``×``k`` by a ``k``×``n`` matrix (a linear is
    rows × in by in × out; a convolution its implicit GEMM, output positions × kernel taps ×
    input channels by output channels). ``kind="attention"``: a fused attention over ``batch``
    (batch × heads) rows of ``m`` queries and ``n`` keys of head width ``k``, ``causal`` or not.
    A collective kind (``all_to_all``, ``all_gather``, ...) runs over ``group`` ranks (its bytes
    are the leaf's ``collective_bytes``; ``m``, ``n``, ``k`` are 0). A node of several calls
    (:func:`merge_calls`) keeps the shape of its largest call."""

    kind: str = attrs.field(validator=attrs.validators.in_(KERNEL_KINDS))
    m: int
    n: int
    k: int
    batch: int = 1
    causal: bool = False
    group: int = 1


@attrs.frozen(slots=True)
class CostNode:
    """One layer or group in an analytic cost tree.

    ``id`` is the stable dotted path inside its stage (``""`` for the stage root).
    ``reference`` names the module of the real implementation this node corresponds to
    (``""`` is the whole reference module, ``None`` none); with ``reference_own`` the node
    corresponds to the work done by that module itself, excluding its child modules (an
    attention module's own matmuls, say).

    ``reference_ops`` (with ``reference_own``) narrows the claim to some operators of that own
    work, so that several leaves can split it.

    ``calls`` > 1 says the metrics add up ``calls`` calls of one module with *different*
    shapes (a global view and its crops, decode steps over a growing KV cache), unlike
    ``repeat`` (identical runs); ``largest_call`` then holds the metrics of the largest single
    call, so that per-call peaks stay honest. Build such nodes with :func:`merge_calls` or
    :func:`closed_form_calls`.
    """

    id: str
    category: str
    metrics: Metrics
    children: tuple[CostNode, ...] = ()
    repeat: int = 1
    reference: str | None = None
    reference_own: bool = False
    note: str = ""
    calls: int = 1
    largest_call: Metrics | None = None
    reference_ops: tuple[str, ...] = ()
    """With ``reference_own``: only these operators of the module's own work (``aten.bmm``), so
    that several leaves can split one module's own work by op."""
    held_bytes: int = 0
    """Bytes this node keeps alive while its children run, beyond what they hold themselves (a
    block's residual stream, a decoder's feature cache, a stage's inputs): see :func:`live_peak`."""
    scratch_bytes: int = 0
    """For a leaf: bytes live at the peak of one call beyond its inputs and outputs (an
    activation's temporaries, an fp32 upcast)."""
    io_exact: bool = True
    """For a leaf with FLOPs: its ``io_bytes`` are the bytes its counted ops read and write (each
    tensor argument and output whole), checked exactly by ``test_io``. False where the model
    deliberately counts physical traffic that differs (a grouped GEMM reading only the experts
    that received rows); its ``note`` says why."""
    kernel: Kernel | None = None
    """For a leaf with FLOPs: the shape of its compute kernel (:class:`Kernel`), from which the time
    model takes the kernel's efficiency; None: a large GEMM is assumed."""

    @property
    def per_call(self) -> Metrics:
        """The metrics of one call (the largest, for a node of several calls)."""
        return self.largest_call if self.largest_call is not None else self.metrics

    @property
    def name(self) -> str:
        """The last component of the id."""
        return self.id.rpartition(".")[2]

    @property
    def total(self) -> Metrics:
        """Metrics of this node for all of its ``repeat`` runs."""
        return self.metrics.repeated(self.repeat)

    def walk(self) -> Iterator[CostNode]:
        """Every node of the subtree in pre-order (parents before children, in order)."""
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(reversed(node.children))

    def leaves(self) -> Iterator[CostNode]:
        return (node for node in self.walk() if not node.children)

    def runs(self) -> Iterator[tuple[CostNode, int]]:
        """Every node with how many times it runs in one run of this tree (repeats multiply)."""
        stack: list[tuple[CostNode, int]] = [(self, self.repeat)]
        while stack:
            node, times = stack.pop()
            yield node, times
            stack.extend((child, times * child.repeat) for child in reversed(node.children))

    def find(self, node_id: str) -> CostNode:
        """The node with this id; KeyError if there is none."""
        for node in self.walk():
            if node.id == node_id:
                return node
        raise KeyError(node_id)


def tree_dtype_bytes(tree: CostNode) -> int:
    """The element size a tree's weights are counted in (2 when it has none)."""
    total = tree.total
    return total.weight_bytes // total.params if total.params else 2


def live_peak(node: CostNode) -> int:
    """The peak of live activation bytes over one run of ``node`` (weights not included).

    Layers run one after another: a leaf's call holds its inputs, its outputs and its scratch
    (the largest call, for a node of several calls); a group adds what it holds while its
    children run to the largest of their peaks."""
    if not node.children:
        return (
            max(node.per_call.io_bytes - node.per_call.weight_bytes, 0) + node.scratch_bytes + node.held_bytes
        )
    return node.held_bytes + max(live_peak(child) for child in node.children)


def peaking_at(leaf: CostNode, live_bytes: int) -> CostNode:
    """``leaf`` with the scratch that makes one call's live bytes ``live_bytes`` (at least its
    inputs and outputs): for a layer whose I/O adds up ops that are never live together, and
    whose peak is a moment its code holds (a MoE finishing its rows, say)."""
    return attrs.evolve(leaf, scratch_bytes=max(live_bytes - max(_working_set(leaf.per_call), 0), 0))


def live_path(node: CostNode) -> list[CostNode]:
    """The nodes from ``node`` down to the leaf whose call sets :func:`live_peak`."""
    path = [node]
    while path[-1].children:
        path.append(max(path[-1].children, key=live_peak))
    return path


def join(prefix: str, name: str) -> str:
    """Dotted id of ``name`` under ``prefix``."""
    return f"{prefix}.{name}" if prefix else name


def group(
    node_id: str,
    category: str,
    children: tuple[CostNode, ...] | list[CostNode],
    *,
    repeat: int = 1,
    reference: str | None = None,
    note: str = "",
    held_bytes: int = 0,
) -> CostNode:
    """A parent node whose metrics are the sum of its children's totals (``held_bytes``: what it
    keeps alive while they run, see :func:`live_peak`)."""
    kids = tuple(children)
    # Summed field by field in locals: groups are built by the thousand in sweeps.
    flops = params = weight = activation = io = cache = moved = ops = gathered = collectives = 0
    for child in kids:
        m, times = child.metrics, child.repeat
        flops += m.flops * times
        params += m.params
        weight += m.weight_bytes
        activation += m.activation_bytes * times
        io += m.io_bytes * times
        cache += m.cache_bytes
        moved += m.elementwise_bytes * times
        ops += m.elementwise_ops * times
        gathered += m.collective_bytes * times
        collectives += m.collectives * times
    total = Metrics(flops, params, weight, activation, io, cache, moved, ops, gathered, collectives)
    return CostNode(node_id, category, total, kids, repeat, reference, False, note, held_bytes=held_bytes)


def regroup(node: CostNode, children: list[CostNode] | tuple[CostNode, ...], *, held_bytes: int) -> CostNode:
    """``node``, a group, rebuilt over new ``children`` (the same layers with other metrics: one
    per chunk, over decode steps, merged calls), holding ``held_bytes`` while they run."""
    return group(
        node.id,
        node.category,
        children,
        repeat=node.repeat,
        reference=node.reference,
        note=node.note,
        held_bytes=held_bytes,
    )


def with_repeat(node: CostNode, repeat: int) -> CostNode:
    """The same node, run ``repeat`` times inside its parent."""
    return attrs.evolve(node, repeat=repeat)


def _working_set(metrics: Metrics) -> int:
    return metrics.io_bytes - metrics.weight_bytes


def merge_calls(
    node_id: str,
    category: str,
    calls: list[CostNode] | tuple[CostNode, ...],
    *,
    reference: str | None = None,
    reference_own: bool = False,
    note: str = "",
    reference_ops: tuple[str, ...] = (),
) -> CostNode:
    """One node for several calls of one module with different shapes (leaves built per call):
    work (FLOPs, I/O, activations) adds up, the weights count once, the cache is the largest one
    held, and the largest call is kept for per-call peaks."""
    if not calls:
        raise ValueError(f"merge_calls({node_id!r}) needs at least one call")
    if any(call.children for call in calls):
        raise ValueError(f"merge_calls({node_id!r}) takes leaves: one node per call of one module")
    work = [call.total for call in calls]
    first = work[0]
    metrics = Metrics(
        flops=sum(m.flops for m in work),
        params=first.params,
        weight_bytes=first.weight_bytes,
        activation_bytes=sum(m.activation_bytes for m in work),
        io_bytes=sum(m.io_bytes for m in work),
        cache_bytes=max(m.cache_bytes for m in work),
        elementwise_bytes=sum(m.elementwise_bytes for m in work),
        elementwise_ops=sum(m.elementwise_ops for m in work),
        collective_bytes=sum(m.collective_bytes for m in work),
        collectives=sum(m.collectives for m in work),
    )
    kernel = max(calls, key=lambda call: call.total.flops).kernel
    largest = max(work, key=_working_set)
    # The live peak is the largest call's by its own inputs, outputs and scratch, which need not
    # be the call with the largest working set: the scratch makes up the difference.
    held = max(call.held_bytes for call in calls)
    live = max(
        max(_working_set(m), 0) + call.scratch_bytes + call.held_bytes
        for m, call in zip(work, calls, strict=True)
    )
    return CostNode(
        node_id,
        category,
        metrics,
        (),
        1,
        reference,
        reference_own,
        note,
        len(calls),
        largest,
        reference_ops,
        held_bytes=held,
        scratch_bytes=max(live - max(_working_set(largest), 0) - held, 0),
        kernel=kernel,
    )


def merge_call_trees(trees: list[CostNode] | tuple[CostNode, ...]) -> CostNode:
    """One tree for several calls of one module tree with different shapes (a vision tower run on
    a batch of global views, then on a batch of crops): trees of the same structure, merged leaf
    by leaf with :func:`merge_calls`."""
    first = trees[0]
    for tree in trees[1:]:
        if (
            tree.id != first.id
            or len(tree.children) != len(first.children)
            or tree.reference != first.reference
        ):
            raise ValueError(f"merge_call_trees: node {tree.id!r} does not match {first.id!r} in every call")
    if len(trees) == 1:
        return first
    if not first.children:
        return merge_calls(
            first.id,
            first.category,
            trees,
            reference=first.reference,
            reference_own=first.reference_own,
            note=first.note,
            reference_ops=first.reference_ops,
        )
    children = [merge_call_trees([tree.children[i] for tree in trees]) for i in range(len(first.children))]
    return regroup(first, children, held_bytes=max(tree.held_bytes for tree in trees))


def closed_form_calls(
    node_id: str,
    category: str,
    *,
    total: Metrics,
    calls: int,
    largest: Metrics,
    reference: str | None = None,
    reference_own: bool = False,
    note: str = "",
    kernel: Kernel | None = None,
) -> CostNode:
    """A node for ``calls`` calls whose sum ``total`` a model computes in closed form (decode
    steps over a growing KV cache: O(1) to build whatever the number of steps); ``largest`` is
    the largest single call, ``kernel`` its compute kernel's shape."""
    if isinstance(calls, bool) or not isinstance(calls, int) or calls < 1:
        raise ValueError(f"calls {calls!r} is not allowed for node {node_id!r}: it must be an integer >= 1")
    if largest.flops > total.flops or _working_set(largest) > _working_set(total):
        raise ValueError(f"node {node_id!r}: its largest call exceeds the total of its {calls} calls")
    return CostNode(
        node_id, category, total, (), 1, reference, reference_own, note, calls, largest, kernel=kernel
    )


class Renamer:
    """Copies one template subtree under new id and reference prefixes, many times.

    Repeated blocks (transformer layers) share metrics: a model builds one block and copies
    it for the others, which is exact and much cheaper than recomputing every formula. The
    template is flattened once into a post-order program so that each copy is a flat loop
    (the hot path of building a 40-layer model).
    """

    def __init__(self, template: CostNode, old_id: str, old_reference: str) -> None:
        self._program: list[
            tuple[
                str,
                str,
                Metrics,
                int,
                int,
                str | None,
                bool,
                str,
                int,
                Metrics | None,
                tuple[str, ...],
                tuple[int, int, bool, Kernel | None],
            ]
        ] = []

        def flatten(node: CostNode) -> None:
            if not node.id.startswith(old_id):
                raise ValueError(f"node id {node.id!r} does not start with {old_id!r}")
            ref = node.reference
            if ref is not None and not ref.startswith(old_reference):
                raise ValueError(f"reference {ref!r} does not start with {old_reference!r}")
            for child in node.children:
                flatten(child)
            ref_tail = None if ref is None else ref[len(old_reference) :]
            self._program.append(
                (
                    node.id[len(old_id) :],
                    node.category,
                    node.metrics,
                    len(node.children),
                    node.repeat,
                    ref_tail,
                    node.reference_own,
                    node.note,
                    node.calls,
                    node.largest_call,
                    node.reference_ops,
                    (node.held_bytes, node.scratch_bytes, node.io_exact, node.kernel),
                )
            )

        flatten(template)

    def __call__(self, new_id: str, new_reference: str) -> CostNode:
        stack: list[CostNode] = []
        for (
            tail,
            category,
            metrics,
            n_children,
            repeat,
            ref_tail,
            own,
            note,
            calls,
            largest,
            ops,
            (held, scratch, io_exact, kernel),
        ) in self._program:
            if n_children:
                children = tuple(stack[-n_children:])
                del stack[-n_children:]
            else:
                children = ()
            stack.append(
                CostNode(
                    new_id + tail,
                    category,
                    metrics,
                    children,
                    repeat,
                    None if ref_tail is None else new_reference + ref_tail,
                    own,
                    note,
                    calls,
                    largest,
                    ops,
                    held,
                    scratch,
                    io_exact,
                    kernel,
                )
            )
        return stack[0]


class TreeError(ValueError):
    """An analytic builder returned something that is not a usable cost tree."""


def check_tree(tree: object) -> CostNode:
    """``tree`` if it is a usable cost tree: a CostNode whose root id is ``""`` and whose other
    node ids are unique safe names; otherwise TreeError with one sentence saying what is wrong."""
    if not isinstance(tree, CostNode):
        raise TreeError(f"returned {type(tree).__name__}, not a CostNode")
    if tree.id != "":
        raise TreeError(f"returned a tree whose root id is {shorten(tree.id)}; a stage root's id must be ''")
    seen: set[str] = set()
    stack: list[object] = list(tree.children)
    while stack:
        node = stack.pop()
        if not isinstance(node, CostNode):
            raise TreeError(f"returned a tree holding {type(node).__name__}, not a CostNode")
        stack.extend(node.children)
        if not is_safe_name(node.id):
            raise TreeError(
                f"returned node id {shorten(node.id)}, which is not allowed: use letters, digits, "
                "'_', '.' and '-'"
            )
        if node.id in seen:
            raise TreeError(f"returned node id {node.id!r} more than once")
        seen.add(node.id)
        if isinstance(node.repeat, bool) or not isinstance(node.repeat, int) or node.repeat < 1:
            raise TreeError(f"returned node {node.id!r} with repeat {shorten(node.repeat)}; it must be >= 1")
        if node.reference_ops and not (
            node.reference_own
            and all(isinstance(op, str) and op.startswith("aten.") for op in node.reference_ops)
        ):
            raise TreeError(
                f"returned node {node.id!r} with reference_ops {shorten(node.reference_ops)}; they need "
                "reference_own and name aten ops as 'aten.<name>'"
            )
        if isinstance(node.calls, bool) or not isinstance(node.calls, int) or node.calls < 1:
            raise TreeError(f"returned node {node.id!r} with calls {shorten(node.calls)}; it must be >= 1")
    return tree
