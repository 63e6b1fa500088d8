"""Multi-GPU layouts: how one generation is split over GPUs, and what a model package declares so
that the framework can size it per GPU and verify it against the real parallel code.

Notation as in xDiT and DeepSpeed-Ulysses: ``ulysses`` (U) and ``ring`` (R) split the sequence
(S = U·R), ``cfg`` = 2 runs the two guidance branches on separate GPU groups, ``fsdp`` names
the stages whose weights are sharded over every GPU (gathered unit by unit for each forward),
``tensor`` (T) splits a decoder's projections over T GPUs (Megatron-style, as transformers'
tensor-parallel plans do: heads and MLP widths split, one all-reduce after each split block), and
``data`` replicas each serve their share of a batch (a serving engine's data parallelism). The
world size is U·R·cfg·T·data.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Final

import attrs

from pytest_flopcheck.analytic.layers import collective
from pytest_flopcheck.analytic.tree import CostNode, join, live_peak, regroup, tree_dtype_bytes

if TYPE_CHECKING:
    from pytest_flopcheck.model.registration import ReferenceCall


class LayoutError(ValueError):
    """A layout that cannot run: ``field`` names the option, the message says what is allowed."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


def _positive(instance: Any, attribute: Any, value: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LayoutError(attribute.name, f"{attribute.name} must be a positive integer, not {value!r}")


def _names(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _checks(value: Iterable[tuple[str, str, Layout]]) -> tuple[tuple[str, str, Layout], ...]:
    return tuple(value)


@attrs.frozen
class Layout:
    """Degrees of one parallel layout (all 1: one GPU)."""

    ulysses: int = attrs.field(default=1, validator=_positive)
    ring: int = attrs.field(default=1, validator=_positive)
    cfg: int = attrs.field(default=1, validator=_positive)
    fsdp: tuple[str, ...] = attrs.field(default=(), converter=_names)
    data: int = attrs.field(default=1, validator=_positive)
    tensor: int = attrs.field(default=1, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.cfg not in (1, 2):
            raise LayoutError("cfg", f"cfg must be 1 or 2 (the two guidance branches), not {self.cfg}")

    @property
    def gpus(self) -> int:
        return self.ulysses * self.ring * self.cfg * self.tensor * self.data

    @property
    def sequence(self) -> int:
        """The sequence-parallel degree S = U·R."""
        return self.ulysses * self.ring

    @property
    def name(self) -> str:
        """``ulysses=4,ring=2,fsdp=diffusion_core+text_encoder``; ``single`` for one GPU."""
        parts = [f"{key}={getattr(self, key)}" for key, _ in DEGREES if getattr(self, key) > 1]
        if self.fsdp:
            parts.append("fsdp=" + "+".join(self.fsdp))
        return ",".join(parts) or "single"

    @property
    def slug(self) -> str:
        """The layout in a test id: ``u2``, ``u2r2``, ``r2-fsdp``, ``t2``."""
        text = "".join(f"{letter}{getattr(self, key)}" for key, letter in DEGREES if getattr(self, key) > 1)
        return (text or "single") + ("-fsdp" if self.fsdp else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "gpus": self.gpus,
            "ulysses": self.ulysses,
            "ring": self.ring,
            "cfg": self.cfg,
            "fsdp": list(self.fsdp),
            "data": self.data,
            "tensor": self.tensor,
        }


SINGLE = Layout()

DEGREES: Final = (("ulysses", "u"), ("ring", "r"), ("cfg", "c"), ("tensor", "t"), ("data", "d"))
"""Each degree's name and its letter in a slug, in the order names and slugs write them."""


def parse_layout(text: str) -> Layout:
    """``ulysses=4,ring=2,cfg=2,fsdp=diffusion_core+text_encoder``, ``tensor=2,data=2`` (any
    subset; ``single``)."""
    if text.strip() == "single":
        return SINGLE
    values: dict[str, Any] = {}
    for item in text.split(","):
        key, eq, value = item.strip().partition("=")
        if not eq or key not in ("fsdp", *(name for name, _ in DEGREES)):
            raise LayoutError(
                "layout",
                f"layout item {item.strip()!r} is not KEY=VALUE "
                "with KEY one of ulysses, ring, cfg, fsdp, tensor, data",
            )
        if key in values:
            raise LayoutError("layout", f"layout names {key} twice")
        if key == "fsdp":
            values[key] = tuple(s for s in value.split("+") if s)
            continue
        if not value.isdigit():
            raise LayoutError(key, f"{key} must be a positive integer, not {value!r}")
        values[key] = int(value)
    return Layout(**values)


def parse_slug(text: str, fsdp: tuple[str, ...]) -> Layout:
    """A layout written as its slug, ``u4c2``, ``u2r4``, ``u8-fsdp``, ``t2d2`` (``-fsdp``: ``fsdp`` are
    sharded) or ``single``: the form a sweep lists several of, comma-separated."""
    text = text.strip()
    if text == "single":
        return SINGLE
    match = re.fullmatch("".join(rf"(?:{letter}(\d+))?" for _, letter in DEGREES) + "(-fsdp)?", text)
    if match is None or not any(match.groups()):
        raise LayoutError(
            "layout",
            f"layout {text!r} is not a slug: write u<U>r<R>c<C>t<T>d<D> with the degrees above 1 "
            "in that order, -fsdp to shard the stages the model can shard (u4c2, u2r4, u8-fsdp, t2d2), "
            "or single",
        )
    degrees = {name: int(g) if g else 1 for (name, _), g in zip(DEGREES, match.groups(), strict=False)}
    return Layout(**degrees, fsdp=fsdp if match.group(len(DEGREES) + 1) else ())


def read_layout(text: str, fsdp: tuple[str, ...]) -> Layout:
    """A layout as a user writes it: ``ulysses=4,cfg=2,fsdp=...`` (:func:`parse_layout`) or its
    slug, ``u4c2`` (:func:`parse_slug`, ``-fsdp`` sharding ``fsdp``)."""
    return parse_layout(text) if "=" in text else parse_slug(text, fsdp)


FSDP_GATHER = "fsdp.all_gather"
"""The id (under a unit's node) of the all-gather FSDP issues for that unit."""


def fsdp_gathers(tree: CostNode, prefix: str, world: int, element_bytes: int) -> CostNode:
    """``tree`` (one run of a stage on one rank) with the all-gathers FSDP issues when its
    weights are sharded over ``world`` ranks: each child of the root whose id starts with
    ``prefix`` is a unit and gathers its weights once per run (in its pre-forward hook, inside
    it); the rest of the stage is the root unit, gathered once at the root. A rank hands over its
    shard of a unit, ``ceil(params / world)`` elements at ``element_bytes`` (the dtype FSDP's
    mixed precision gathers at): FSDP1's flat parameter, padded once per unit, as scripts built
    on ``FullyShardedDataParallel`` shard. (FSDP2 pads each parameter's first dimension instead;
    ``test_parallel`` compares with it within :data:`FSDP2_PADDING`.)"""
    units: list[CostNode] = []
    unit_params = 0
    for child in tree.children:
        if prefix and child.id.startswith(prefix):
            if not child.children:
                raise ValueError(f"FSDP unit {child.id!r} is a leaf: a unit must be a group of layers")
            unit_params += child.total.params
            gather = _gather(join(child.id, FSDP_GATHER), child.total.params, world, element_bytes)
            child = regroup(child, [gather, *child.children], held_bytes=child.held_bytes)
        units.append(child)
    root = _gather(FSDP_GATHER, tree.total.params - unit_params, world, element_bytes)
    return regroup(tree, [root, *units], held_bytes=tree.held_bytes)


def _gather(node_id: str, params: int, world: int, element_bytes: int) -> CostNode:
    shard = -(-params // world) * element_bytes
    note = "FSDP: the unit's weights gathered"
    return collective(node_id, "all_gather", group=world, local_bytes=shard, note=note)


def _units(tree: CostNode, prefix: str) -> tuple[int, int]:
    """The parameters of the root unit and of the largest other unit (each child of the root
    whose id starts with ``prefix``)."""
    units = [c.total.params for c in tree.children if prefix and c.id.startswith(prefix)]
    return tree.total.params - sum(units), max(units, default=0)


def fsdp_gathered_params(tree: CostNode, prefix: str) -> int:
    """Parameters FSDP1 (``FullyShardedDataParallel``, which the official scripts run) holds
    gathered at once while a stage runs: the root unit (gathered in the root's pre-forward,
    resharded after the whole run) and the largest other unit, gathered for its own forward into
    its flat parameter."""
    root, unit = _units(tree, prefix)
    return root + unit


def fsdp2_live_peak(tree: CostNode, prefix: str) -> tuple[int, int]:
    """The live peak beyond its weight shards of one run of ``tree`` on a rank of FSDP2 (torch's
    ``fully_shard``, which the references run), and the weight bytes gathered at it: the larger
    of two moments. FSDP2 copies a unit's all-gather output out into its parameters and keeps
    the output until the next unit's copy-out is done (``AllGatherState``, so that the copy-out
    overlaps the next gather).

    - In a unit's forward: the live set's peak beside the root unit and the running unit twice
      (its parameters and its all-gather output).
    - At a unit's copy-out: its output and parameters beside the previous gather's output (the
      root's, for the first unit) and the root unit, with what the stage holds then (its held
      bytes)."""
    element = tree_dtype_bytes(tree)
    root, unit = _units(tree, prefix)
    during = (root + 2 * unit) * element
    copy_out = (root + max(root, unit) + 2 * unit) * element
    live = live_peak(tree)
    if live + during >= tree.held_bytes + copy_out:
        return live + during, during
    return tree.held_bytes + copy_out, copy_out


FSDP2_PADDING = 1e-3
"""Relative tolerance of collective bytes where FSDP2 shards a stage: FSDP2 splits each
parameter along its first dimension, padded to the world size, so a parameter with fewer rows
than ranks (a ``[1, 6, d]`` modulation table) is gathered whole by every rank, 2e-4 of a
1.3B-parameter DiT block's gather on 2 ranks. The model counts FSDP1's flat parameter, which
``FullyShardedDataParallel`` scripts run and which needs a GPU to run."""


@attrs.frozen
class Parallel:
    """What a model package declares for multi-GPU layouts.

    - ``analytic(workload, stage, layout)``: one run of ``stage`` on one rank (rank 0, which also
      runs the work only rank 0 does, such as a VAE decode), with the collectives it issues as
      :func:`~pytest_flopcheck.analytic.layers.collective` leaves. The weights in it are the
      whole stage's; FSDP sharding is applied by the framework (``fsdp_units``).
    - ``validate(workload, layout)``: raise :class:`LayoutError` naming the field for a layout the
      implementation cannot run (heads not divisible by the Ulysses degree, say).
    - ``runs(workload, layout)``: runs of each stage per generation on rank 0 (CFG parallel
      halves the denoiser's); ``None``: as on one GPU.
    - ``fsdp_units``: per stage that FSDP can shard, the id prefix of the tree's children that
      are FSDP units (``"blocks."``); the rest of the stage is the root unit.
    - ``sharded_tree(workload, stage, layout, element_bytes)``: ``analytic``'s tree with the
      FSDP all-gathers of a stage the layout shards (:func:`fsdp_gathers`); ``shard`` adds them
      to a tree already built.
    - ``reference(workload, stage, layout, device)``: the real module under its own parallelism,
      built while a fake process group of ``layout.gpus`` ranks is initialised; ``checks``: the
      (workload, stage, layout) triples ``test_parallel`` verifies with it.
    """

    analytic: Callable[[Any, str, Layout], CostNode]
    validate: Callable[[Any, Layout], None]
    runs: Callable[[Any, Layout], Mapping[str, int]] | None = None
    fsdp_units: Mapping[str, str] = attrs.field(factory=dict)
    reference: Callable[[Any, str, Layout, str], ReferenceCall] | None = None
    checks: tuple[tuple[str, str, Layout], ...] = attrs.field(default=(), converter=_checks)

    def split_check(
        self, stage: str, layout: Layout, split: bool, owner: str | None = None
    ) -> tuple[str, str]:
        """How ``layout`` splits ``stage`` (``"Ulysses × FSDP"``; empty: as on one GPU) and the
        check of ``checks`` that verifies that split (its layout's slug; empty: none does).
        ``split``: the layout changes the stage's tree beyond FSDP (a sequence or CFG split);
        ``owner``: the stage whose weights it runs. A check covers what it has all of at once:
        Ulysses × ring needs a check with both, FSDP with Ulysses a check with both. Data
        parallel replicas run the one-GPU model on their share and exchange nothing, so they are
        not a split."""

        def kinds(by: Layout) -> list[str]:
            on = {
                "Ulysses": split and by.ulysses > 1,
                "ring": split and by.ring > 1,
                "CFG parallel": split and by.cfg > 1,
                "tensor parallel": split and by.tensor > 1,
                "FSDP": (owner or stage) in by.fsdp,
            }
            return [name for name, yes in on.items() if yes]

        asked = kinds(layout)
        if not asked:
            return "", ""
        for _, checked, by in self.checks:
            if checked == stage and set(asked) <= set(kinds(by)):
                return " × ".join(asked), by.slug
        return " × ".join(asked), ""

    def sharded_tree(
        self,
        workload: Any,
        stage: str,
        layout: Layout,
        element_bytes: int | None = None,
        weights_of: str | None = None,
    ) -> CostNode:
        """One run of ``stage`` on rank 0 of ``layout``, with FSDP's all-gathers where the layout
        shards the stage's weights (``weights_of``: the stage that owns them, if another); they
        gather at ``element_bytes`` (None: the tree's weight dtype)."""
        return self.shard(self.analytic(workload, stage, layout), stage, layout, element_bytes, weights_of)

    def shard(
        self,
        tree: CostNode,
        stage: str,
        layout: Layout,
        element_bytes: int | None = None,
        weights_of: str | None = None,
    ) -> CostNode:
        """``tree`` (``analytic``'s for ``stage`` under ``layout``) with FSDP's all-gathers, as
        :meth:`sharded_tree` gives it."""
        owner = weights_of or stage
        if owner not in layout.fsdp:
            return tree
        size = element_bytes or tree_dtype_bytes(tree)
        return fsdp_gathers(tree, self.fsdp_units.get(owner, ""), layout.gpus, size)
