"""What the checks of a run depend on, produced at most once per process: the analytic trees,
the counted references (through the reference cache), the runs per generation and the tiny
generations. If a dependency cannot be produced, the cause is remembered and every check that
depends on it gets the same one-line error or skip, raised afresh each time so that a thousand
dependent checks cost a thousand dictionary lookups, not a thousand tracebacks."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any, TypeVar

import attrs

from pytest_flopcheck.analytic.tree import CostNode, TreeError, check_tree
from pytest_flopcheck.model.parallel import Layout
from pytest_flopcheck.model.registration import Generation, ModelRegistration, ReferenceCall
from pytest_flopcheck.reference.counting import (
    COUNTS_FORMAT,
    ReferenceCounts,
    ReferenceSkipped,
    build_and_count,
    count_reference,
)
from pytest_flopcheck.reference.parallel import fake_process_group
from pytest_flopcheck.reference.provenance import (
    UnstableKey,
    canonical,
    code_key,
    forget_sources,
    framework_digest,
)
from pytest_flopcheck.reference.store import COUNTED, CountFailed, ReferenceStore, cache_key
from pytest_flopcheck.verification.cases import (
    GENERATION,
    GENERATION_STAGE,
    LAYOUT_MARK,
    PIPELINE,
    Case,
    Selection,
)


@attrs.frozen
class Cause:
    """Why a dependency could not be produced: one per (model, workload, stage[, device]) and
    kind, shared by every check that depends on it."""

    key: str
    kind: str  # "analytic", "reference", "multiplicities"
    model: str
    workload: str
    stage: str
    plugin: str
    message: str
    traceback: str = ""


class CheckError(Exception):
    """A check cannot be evaluated because a dependency failed (reported as a test error)."""

    def __init__(self, cause: Cause) -> None:
        super().__init__(cause.message)
        self.cause = cause


class CheckSkipped(Exception):
    """A check cannot run here (reported as a skip, or a failure under ``--flopcheck-strict``)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@attrs.frozen
class CountSource:
    """Where one reference count used by this process came from."""

    model: str
    workload: str
    stage: str
    device: str
    source: str  # store.COUNTED, CACHED or SHARED
    seconds: float
    total_flops: int

    def as_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


T = TypeVar("T")


def _settled(result: T | ReferenceSkipped | Cause) -> T:
    """A remembered dependency: its value, or its skip or error raised afresh (O(1) per check)."""
    if isinstance(result, ReferenceSkipped):
        raise CheckSkipped(result.reason)
    if isinstance(result, Cause):
        raise CheckError(result)
    return result


def _count_in(layout: Layout | None, count: Any) -> Any:
    """``count()``, within a fake process group of the layout's ranks when it has one."""
    if layout is None:
        return count()
    with fake_process_group(layout.gpus):
        return count()


def _short_traceback(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc, limit=-8))


def _version(package: str) -> str | None:
    try:
        return version(package)
    except PackageNotFoundError:
        return None


@attrs.define
class Dependencies:
    """Trees, reference counts, runs per generation and generations of the selected models, each
    produced once in this process and remembered with its cause if it failed."""

    selection: Selection
    device: str = "meta"
    store: ReferenceStore = attrs.field(factory=lambda: ReferenceStore(None, ""))
    _trees: dict[tuple[str, str, str], CostNode | Cause] = attrs.field(factory=dict, init=False)
    _nodes: dict[tuple[str, str, str], dict[str, CostNode]] = attrs.field(factory=dict, init=False)
    _references: dict[tuple[str, str, str], ReferenceCounts | ReferenceSkipped | Cause] = attrs.field(
        factory=dict, init=False
    )
    _runs: dict[tuple[str, str], dict[str, int] | Cause] = attrs.field(factory=dict, init=False)
    _generations: dict[tuple[str, str], tuple[Generation, ReferenceCounts] | ReferenceSkipped | Cause] = (
        attrs.field(factory=dict, init=False)
    )
    count_sources: list[CountSource] = attrs.field(factory=list, init=False)
    notes: list[str] = attrs.field(factory=list, init=False)
    """Why some counts were not cached (their keys would differ between runs)."""

    def __attrs_post_init__(self) -> None:
        forget_sources()  # the sources as they are when this run starts

    @property
    def registry(self) -> Any:
        return self.selection.registry

    def registration(self, model: str) -> ModelRegistration:
        return self.selection.registration(model)

    def _cause(self, kind: str, model: str, workload: str, stage: str, message: str, tb: str = "") -> Cause:
        key = f"{kind}:{model}/{workload}/{stage}" + (f"@{self.device}" if kind == "reference" else "")
        return Cause(key, kind, model, workload, stage, self.registry.origins.get(model, "?"), message, tb)

    @staticmethod
    def layout_stage(stage: str, layout: Layout) -> str:
        """The stage key of one rank of ``layout`` (``diffusion_core@u2``)."""
        return f"{stage}{LAYOUT_MARK}{layout.slug}"

    def split_stage(self, model: str, key: str) -> tuple[str, Layout | None]:
        """A stage key as the stage and the verified layout it names (None: one GPU)."""
        if LAYOUT_MARK not in key:
            return key, None
        stage, _, slug = key.partition(LAYOUT_MARK)
        parallel = self.registration(model).parallel
        for _, checked, layout in parallel.checks if parallel else ():
            if checked == stage and layout.slug == slug:
                return stage, layout
        raise KeyError(f"{model} verifies no layout {slug!r} of stage {stage!r}")

    def tree_or_cause(self, model: str, workload: str, stage: str) -> CostNode | Cause:
        """The validated analytic tree of one run of ``stage``, or why there is none (a stage key
        with a layout: one rank's tree of that layout)."""
        key = (model, workload, stage)
        if key not in self._trees:
            reg = self.registration(model)
            where = (
                f"the analytic model of {model}/{workload}/{stage} "
                f"(plugin {self.registry.origins.get(model, '?')!r})"
            )
            try:
                assert reg.analytic is not None  # the selection refuses a model without one
                base, layout = self.split_stage(model, stage)
                if layout is not None:
                    assert reg.parallel is not None
                    owner = reg.stage(base).weights_of
                    built = reg.parallel.sharded_tree(reg.workloads[workload], base, layout, weights_of=owner)
                else:
                    built = reg.analytic(reg.workloads[workload], stage)
                tree = check_tree(built)
            except TreeError as exc:
                self._trees[key] = self._cause("analytic", model, workload, stage, f"{where} {exc}")
            except Exception as exc:
                self._trees[key] = self._cause(
                    "analytic",
                    model,
                    workload,
                    stage,
                    f"{where} raised {type(exc).__name__}: {exc}",
                    _short_traceback(exc),
                )
            else:
                self._trees[key] = tree
                self._nodes[key] = {node.id: node for node in tree.walk()}
        return self._trees[key]

    def tree(self, model: str, workload: str, stage: str) -> CostNode:
        """The analytic tree; CheckError if the model's builder failed."""
        return _settled(self.tree_or_cause(model, workload, stage))

    def node(self, model: str, workload: str, stage: str, layer: str) -> CostNode:
        self.tree(model, workload, stage)
        return self._nodes[(model, workload, stage)][layer]

    def runs(self, model: str, workload: str) -> dict[str, int]:
        """Runs of each stage per generation; CheckError if the registration's are unusable."""
        key = (model, workload)
        if key not in self._runs:
            reg = self.registration(model)
            try:
                self._runs[key] = reg.runs_per_generation(reg.workloads[workload])
            except Exception as exc:
                self._runs[key] = self._cause(
                    "multiplicities",
                    model,
                    workload,
                    PIPELINE,
                    f"the pipeline of {model}/{workload} (plugin {self.registry.origins.get(model, '?')!r}): "
                    f"{exc if isinstance(exc, ValueError) else f'{type(exc).__name__}: {exc}'}",
                )
        return _settled(self._runs[key])

    def reference_key(self, model: str, workload: str, stage: str) -> str:
        """Everything a count depends on, digested (see :mod:`pytest_flopcheck.reference.provenance`);
        UnstableKey when some part differs between runs."""
        reg = self.registration(model)
        wl = reg.workloads[workload]
        base, layout = self.split_stage(model, stage)
        parallel = (
            {"layout": layout.as_dict(), "parallel_reference": code_key(reg.parallel.reference)}
            if layout is not None and reg.parallel is not None
            else {}
        )
        return cache_key(
            {
                "model": model,
                "workload": canonical(wl),
                "stage": stage,
                "device": self.device,
                **self._shared_key(reg),
                "reference": code_key(reg.reference),
                "reference_config": canonical(reg.reference_config(wl, base))
                if reg.reference_config
                else None,
                **parallel,
            }
        )

    def _shared_key(self, reg: ModelRegistration) -> dict[str, Any]:
        """The parts of a key every count of a model shares: package versions, the counts'
        layout, the framework's counting code, and the model's op policy with its formulas."""
        packages = sorted({"torch", "pytest-flopcheck", *reg.reference_packages})
        return {
            "versions": {p: _version(p) for p in packages},
            "counts_format": COUNTS_FORMAT,
            "framework": framework_digest(),
            "op_policy": reg.op_policy.describe(),
            "formulas": code_key(*reg.op_policy.formulas.values()),
        }

    def _not_cached(self, what: str, why: UnstableKey) -> None:
        self.notes.append(f"{what} is not cached: its cache key would hold {why}")

    def reference(self, model: str, workload: str, stage: str) -> ReferenceCounts:
        """The counted reference run; CheckSkipped if it cannot run here, CheckError if its
        builder or its run failed."""
        key = (model, workload, stage)
        if key not in self._references:
            self._references[key] = self._count(model, workload, stage)
        return _settled(self._references[key])

    def _count(self, model: str, workload: str, stage: str) -> ReferenceCounts | ReferenceSkipped | Cause:
        reg = self.registration(model)
        if reg.reference is None:
            return ReferenceSkipped(f"model {model!r} registers no reference implementation")
        wl = reg.workloads[workload]
        base, layout = self.split_stage(model, stage)
        build: Callable[[Any, str, str], ReferenceCall]
        if layout is not None:
            parallel = reg.parallel
            if parallel is None or parallel.reference is None:
                return ReferenceSkipped(f"model {model!r} registers no parallel reference")
            builder = parallel.reference
            chosen = layout

            def build(w: Any, s: str, device: str) -> ReferenceCall:
                return builder(w, base, chosen, device)
        else:
            build = reg.reference
        try:
            sized = reg.reference_bytes is not None and self.device != "meta"
            estimate = reg.reference_bytes(wl, base) if reg.reference_bytes and sized else None
            try:
                key: str | None = self.reference_key(model, workload, stage)
            except UnstableKey as why:
                key = None
                self._not_cached(f"the reference count of {model}/{workload}/{stage}", why)
            except Exception as exc:  # the registration's reference_config raised
                raise CountFailed(f"{type(exc).__name__}: {exc}", _short_traceback(exc)) from exc
            start = time.perf_counter()
            counts, source = self.store.fetch(
                key,
                lambda: _count_in(
                    layout,
                    lambda: build_and_count(
                        lambda: build(wl, stage, self.device), self.device, estimate, reg.op_policy
                    ),
                ),
            )
        except ReferenceSkipped as skipped:
            return skipped
        except CountFailed as failed:
            return self._cause(
                "reference",
                model,
                workload,
                stage,
                f"the reference of {model}/{workload}/{stage} on {self.device} (plugin "
                f"{self.registry.origins.get(model, '?')!r}) could not be built or run: {failed.description}",
                failed.traceback,
            )
        seconds = counts.seconds if source == COUNTED else time.perf_counter() - start
        self.count_sources.append(
            CountSource(model, workload, stage, self.device, source, round(seconds, 4), counts.total_flops)
        )
        return counts

    def generation(self, model: str, name: str) -> tuple[Generation, ReferenceCounts]:
        """The registration's tiny generation and its counts (the whole run on CPU), made once;
        CheckSkipped without its packages, CheckError if building or running it failed."""
        key = (model, name)
        if key not in self._generations:
            self._generations[key] = self._run_generation(model, name)
        return _settled(self._generations[key])

    def _run_generation(
        self, model: str, name: str
    ) -> tuple[Generation, ReferenceCounts] | ReferenceSkipped | Cause:
        reg = self.registration(model)
        where = f"the generation {model}/{name} (plugin {self.registry.origins.get(model, '?')!r})"
        try:
            generation = reg.generations[name]()
            if not isinstance(generation, Generation):
                raise TypeError(f"it returned {type(generation).__name__}, not a Generation")
        except Exception as exc:
            message = f"{where} could not be built: {type(exc).__name__}: {exc}"
            return self._cause("generation", model, name, GENERATION_STAGE, message, _short_traceback(exc))
        try:
            key: str | None = cache_key(
                {
                    "model": model,
                    "generation": name,
                    "device": "cpu",
                    **self._shared_key(reg),
                    "build": code_key(generation.build),
                }
            )
        except UnstableKey as why:
            key = None
            self._not_cached(f"the count of generation {model}/{name}", why)
        start = time.perf_counter()
        try:
            counts, source = self.store.fetch(
                key, lambda: count_reference(generation.build(), "cpu", reg.op_policy)
            )
        except CountFailed as failed:
            if failed.description.startswith(("ModuleNotFoundError", "ImportError")):
                return ReferenceSkipped(
                    f"{where} needs a package that is not installed: {failed.description}"
                )
            message = f"{where} could not be built or run: {failed.description}"
            return self._cause("generation", model, name, GENERATION_STAGE, message, failed.traceback)
        seconds = counts.seconds if source == COUNTED else time.perf_counter() - start
        self.count_sources.append(
            CountSource(model, name, GENERATION_STAGE, "cpu", source, round(seconds, 4), counts.total_flops)
        )
        return generation, counts

    def prepare(self, case: Case) -> None:
        """Produce what ``case`` depends on (the item's setup): CheckError or CheckSkipped."""
        if case.kind == GENERATION:
            self.generation(case.model, case.workload)
            return
        if case.stage == PIPELINE:
            reg = self.registration(case.model)
            running = [stage.name for stage in reg.stages if self.runs(case.model, case.workload)[stage.name]]
            for name in running:
                self.tree(case.model, case.workload, name)
            for name in running:
                self.reference(case.model, case.workload, name)
            return
        self.tree(case.model, case.workload, case.stage)
        self.reference(case.model, case.workload, case.stage)
