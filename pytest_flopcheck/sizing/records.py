"""The typed sizing report: every figure ``flopcheck report`` computes, as frozen records.

:func:`~pytest_flopcheck.sizing.build.build_report` builds a :class:`SizingReport` once; the
Markdown and HTML pages, the terminal lines, the plots and ``flopcheck diff`` read its
attributes. JSON exists only at the boundary: :meth:`SizingReport.to_json` writes ``report.json``
and :meth:`SizingReport.from_json` reads one back, checking every field (a problem is one
:class:`~pytest_flopcheck.files.FileProblem` sentence naming the field). Counts are exact
integers throughout; floats only for shares, seconds and rates.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import attrs

from pytest_flopcheck.analytic.tree import METRICS, Metrics
from pytest_flopcheck.files import Fields, FileProblem, describe
from pytest_flopcheck.model.parallel import SINGLE, Layout, LayoutError
from pytest_flopcheck.sizing.timing import PARTS, TimeParts

SCHEMA_VERSION: Final = 2
KIND: Final = "flopcheck.static_analysis"


def _metrics(fields: Fields) -> Metrics:
    values = Metrics(**{name: fields.integer(name) for name in METRICS})
    fields.done()
    return values


def _by_name(records: Any, name: str) -> Any:
    for record in records:
        if record.name == name:
            return record
    raise KeyError(name)


# -- the model and its stages ------------------------------------------------------------------------


@attrs.frozen
class StageInfo:
    """A stage as the registration declares it."""

    name: str
    description: str
    weights_of: str | None

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "description": self.description, "weights_of": self.weights_of}

    @classmethod
    def from_json(cls, f: Fields) -> StageInfo:
        record = cls(f.text("name"), f.text("description"), f.optional_text("weights_of"))
        f.done()
        return record


@attrs.frozen
class ModelInfo:
    """The model the report sizes: its name, description, stages and free-form metadata."""

    name: str
    description: str
    stages: tuple[StageInfo, ...]
    metadata: Mapping[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "stages": [s.to_json() for s in self.stages],
            "metadata": dict(self.metadata),
        }

    @classmethod
    def from_json(cls, f: Fields) -> ModelInfo:
        record = cls(
            f.text("name"),
            f.text("description"),
            tuple(StageInfo.from_json(s) for s in f.objects("stages")),
            f.object("metadata").value,
        )
        f.done()
        return record


@attrs.frozen
class StageTotals:
    """One stage's work: one run, how often it runs, one generation's worth, its share of it."""

    name: str
    runs_per_generation: int
    per_run: Metrics
    per_generation: Metrics
    flops_share: float

    def to_json(self) -> dict[str, Any]:
        return {
            "runs_per_generation": self.runs_per_generation,
            "per_run": self.per_run.as_dict(),
            "per_generation": self.per_generation.as_dict(),
            "flops_share": self.flops_share,
        }

    @classmethod
    def from_json(cls, name: str, f: Fields) -> StageTotals:
        record = cls(
            name,
            f.integer("runs_per_generation"),
            _metrics(f.object("per_run")),
            _metrics(f.object("per_generation")),
            f.number("flops_share"),
        )
        f.done()
        return record


# -- the node tree -----------------------------------------------------------------------------------


@attrs.frozen
class NodeFigures:
    """One node of a stage's analytic tree as the report shows it."""

    id: str
    category: str
    metrics: Metrics
    repeat: int = 1
    calls: int = 1
    largest_call: Metrics | None = None
    reference: str | None = None
    note: str = ""
    children: tuple[NodeFigures, ...] = ()

    def leaves(self, times: int = 1) -> list[tuple[NodeFigures, int]]:
        """Every leaf with how many times it runs in one run of this node."""
        times *= self.repeat
        if not self.children:
            return [(self, times)]
        return [leaf for child in self.children for leaf in child.leaves(times)]

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {"id": self.id, "category": self.category, **self.metrics.as_dict()}
        if self.repeat != 1:
            entry["repeat"] = self.repeat
        if self.calls != 1:
            entry["calls"] = self.calls
            entry["largest_call"] = (self.largest_call or self.metrics).as_dict()
        if self.reference is not None:
            entry["reference"] = self.reference
        if self.note:
            entry["note"] = self.note
        if self.children:
            entry["children"] = [child.to_json() for child in self.children]
        return entry

    @classmethod
    def from_json(cls, f: Fields) -> NodeFigures:
        # Iterative: a deep tree must not exhaust the stack.
        pending: list[tuple[Fields, list[NodeFigures]]] = [(f, [])]
        order: list[tuple[Fields, list[NodeFigures], list[NodeFigures]]] = []
        while pending:
            fields, siblings = pending.pop()
            children: list[NodeFigures] = []
            order.append((fields, siblings, children))
            if fields.has("children"):
                pending.extend((child, children) for child in fields.objects("children"))
        built: NodeFigures | None = None
        for fields, siblings, children in reversed(order):
            metrics = Metrics(**{name: fields.integer(name) for name in METRICS})
            repeat = fields.integer("repeat") if fields.has("repeat") else 1
            if repeat < 1:
                raise FileProblem(
                    f"field {fields.where}.repeat is {describe(repeat)}; it must be an integer >= 1"
                )
            calls = fields.integer("calls") if fields.has("calls") else 1
            largest = _metrics(fields.object("largest_call")) if fields.has("largest_call") else None
            built = cls(
                fields.text("id"),
                fields.text("category"),
                metrics,
                repeat,
                calls,
                largest,
                fields.text("reference") if fields.has("reference") else None,
                fields.text("note") if fields.has("note") else "",
                tuple(reversed(children)),
            )
            fields.done()
            siblings.append(built)
        assert built is not None
        return built


# -- memory ------------------------------------------------------------------------------------------


@attrs.frozen
class StageMemory:
    """One stage's memory: weights, the live set beyond them, caches."""

    name: str
    params: int
    weight_bytes: int
    weight_bytes_by_dtype: Mapping[str, int]
    peak_activation_bytes: int
    working_bytes: int
    working_bytes_verified: bool
    cache_bytes: int
    cache_note: str

    def to_json(self) -> dict[str, Any]:
        return {
            "params": self.params,
            "weight_bytes": self.weight_bytes,
            "weight_bytes_by_dtype": dict(self.weight_bytes_by_dtype),
            "peak_activation_bytes": self.peak_activation_bytes,
            "working_bytes": self.working_bytes,
            "working_bytes_verified": self.working_bytes_verified,
            "cache_bytes": self.cache_bytes,
            "cache_note": self.cache_note,
        }

    @classmethod
    def from_json(cls, name: str, f: Fields) -> StageMemory:
        by_dtype = f.object("weight_bytes_by_dtype")
        record = cls(
            name,
            f.integer("params"),
            f.integer("weight_bytes"),
            {dtype: by_dtype.integer(dtype) for dtype in by_dtype.value},
            f.integer("peak_activation_bytes"),
            f.integer("working_bytes"),
            f.flag("working_bytes_verified"),
            f.integer("cache_bytes"),
            f.text("cache_note"),
        )
        f.done()
        return record


@attrs.frozen
class PipelineMemory:
    """The pipeline's peaks: every loaded stage's weights resident, or one stage at a time."""

    weight_bytes: int
    peak_bytes_all_weights_resident: int
    peak_stage_all_weights_resident: str | None
    peak_bytes_one_stage_resident: int
    peak_stage_one_stage_resident: str | None

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> PipelineMemory:
        record = cls(
            f.integer("weight_bytes"),
            f.integer("peak_bytes_all_weights_resident"),
            f.optional_text("peak_stage_all_weights_resident"),
            f.integer("peak_bytes_one_stage_resident"),
            f.optional_text("peak_stage_one_stage_resident"),
        )
        f.done()
        return record


@attrs.frozen
class MemoryFigures:
    """Memory of every stage and of the pipeline, at the workload's dtype."""

    dtype: str | None
    stages: tuple[StageMemory, ...]
    pipeline: PipelineMemory
    note: str

    def stage(self, name: str) -> StageMemory:
        return _by_name(self.stages, name)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": self.dtype,
            "stages": {s.name: s.to_json() for s in self.stages},
            "pipeline": self.pipeline.to_json(),
            "note": self.note,
        }

    @classmethod
    def from_json(cls, f: Fields) -> MemoryFigures:
        record = cls(
            f.optional_text("dtype"),
            tuple(StageMemory.from_json(name, s) for name, s in f.items("stages")),
            PipelineMemory.from_json(f.object("pipeline")),
            f.text("note"),
        )
        f.done()
        return record


# -- time --------------------------------------------------------------------------------------------


def parts_json(parts: TimeParts) -> dict[str, Any]:
    return {**{f"{name}_s": getattr(parts, name) for name in PARTS}, "kernels": parts.kernels}


def _parts(f: Fields) -> TimeParts:
    record = TimeParts(
        compute=f.number("compute_s"),
        attention=f.number("attention_s"),
        memory=f.number("memory_s"),
        launch=f.number("launch_s"),
        transfer=f.number("transfer_s"),
        kernels=f.integer("kernels"),
        communication=f.number("communication_s"),
    )
    f.done()
    return record


@attrs.frozen
class StageTime:
    """One stage's seconds on one GPU: one run, one generation, and the generation's seconds by
    part (:class:`~pytest_flopcheck.sizing.timing.TimeParts`). ``traffic_modelled``: its
    elementwise traffic is the model's verified prediction (else a first-order estimate)."""

    name: str
    per_run_s: float
    per_generation_s: float
    parts: TimeParts
    traffic_modelled: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "per_run_s": self.per_run_s,
            "per_generation_s": self.per_generation_s,
            "parts": parts_json(self.parts),
            "traffic_modelled": self.traffic_modelled,
        }

    @classmethod
    def from_json(cls, name: str, f: Fields) -> StageTime:
        record = cls(
            name,
            f.number("per_run_s"),
            f.number("per_generation_s"),
            _parts(f.object("parts")),
            f.flag("traffic_modelled"),
        )
        f.done()
        return record


@attrs.frozen
class Constant:
    """A constant the time model used on one GPU, where it comes from, and whether it is borrowed
    from another GPU or kernel (``assumed``)."""

    name: str
    value: float
    source: str
    assumed: bool

    def to_json(self) -> dict[str, Any]:
        return {"value": self.value, "source": self.source, "assumed": self.assumed}

    @classmethod
    def from_json(cls, name: str, f: Fields) -> Constant:
        record = cls(name, f.number("value"), f.text("source"), f.flag("assumed"))
        f.done()
        return record


@attrs.frozen
class GpuTime:
    """One generation's seconds on one GPU, per stage and in all, and the constants behind them."""

    gpu: str
    peak_tflops: float
    bandwidth_gbs: float
    memory_gb: float
    source: str
    stages: tuple[StageTime, ...]
    total_s: float
    parts: TimeParts
    constants: tuple[Constant, ...]

    def stage(self, name: str) -> StageTime:
        return _by_name(self.stages, name)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu,
            "peak_tflops": self.peak_tflops,
            "bandwidth_gbs": self.bandwidth_gbs,
            "memory_gb": self.memory_gb,
            "source": self.source,
            "stages": {s.name: s.to_json() for s in self.stages},
            "total_s": self.total_s,
            "parts": parts_json(self.parts),
            "constants": {c.name: c.to_json() for c in self.constants},
        }

    @classmethod
    def from_json(cls, f: Fields) -> GpuTime:
        record = cls(
            f.text("gpu"),
            f.number("peak_tflops"),
            f.number("bandwidth_gbs"),
            f.number("memory_gb"),
            f.text("source"),
            tuple(StageTime.from_json(name, s) for name, s in f.items("stages")),
            f.number("total_s"),
            _parts(f.object("parts")),
            tuple(Constant.from_json(name, c) for name, c in f.items("constants")),
        )
        f.done()
        return record


@attrs.frozen
class Unsupported:
    """GPUs left out of a time table, and why."""

    gpus: tuple[str, ...]
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"gpus": list(self.gpus), "reason": self.reason}

    @classmethod
    def from_json(cls, f: Fields) -> Unsupported:
        record = cls(tuple(f.texts("gpus")), f.text("reason"))
        f.done()
        return record


@attrs.frozen
class TimeFigures:
    """Seconds per generation on each GPU at one precision, every stage on the GPU with the given
    attention kernel and launch mode."""

    precision: str
    attention: str
    launch: str
    estimates: tuple[GpuTime, ...]
    caveat: str
    not_supported: Unsupported | None = None

    def to_json(self) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "precision": self.precision,
            "attention": self.attention,
            "launch": self.launch,
            "estimates": [e.to_json() for e in self.estimates],
            "caveat": self.caveat,
        }
        if self.not_supported is not None:
            entry["not_supported"] = self.not_supported.to_json()
        return entry

    @classmethod
    def from_json(cls, f: Fields) -> TimeFigures:
        record = cls(
            f.text("precision"),
            f.text("attention"),
            f.text("launch"),
            tuple(GpuTime.from_json(e) for e in f.objects("estimates")),
            f.text("caveat"),
            Unsupported.from_json(f.object("not_supported")) if f.has("not_supported") else None,
        )
        f.done()
        return record


# -- rankings ----------------------------------------------------------------------------------------


@attrs.frozen
class TopLayer:
    stage: str
    id: str
    category: str
    reference: str | None
    flops_per_generation: int
    share: float

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> TopLayer:
        record = cls(
            f.text("stage"),
            f.text("id"),
            f.text("category"),
            f.optional_text("reference"),
            f.integer("flops_per_generation"),
            f.number("share"),
        )
        f.done()
        return record


@attrs.frozen
class TopCategory:
    category: str
    flops_per_generation: int
    share: float

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> TopCategory:
        record = cls(f.text("category"), f.integer("flops_per_generation"), f.number("share"))
        f.done()
        return record


# -- serving -----------------------------------------------------------------------------------------


@attrs.frozen
class ServingTimes:
    """Serving figures on one GPU."""

    gpu: str
    time_to_first_token_s: float
    time_per_output_token_s: float
    generation_s: float
    units_per_s: float
    output_tokens_per_s: float

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> ServingTimes:
        record = cls(
            f.text("gpu"),
            *(
                f.number(key)
                for key in (
                    "time_to_first_token_s",
                    "time_per_output_token_s",
                    "generation_s",
                    "units_per_s",
                    "output_tokens_per_s",
                )
            ),
        )
        f.done()
        return record


@attrs.frozen
class KvRow:
    tokens: int
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "bytes": self.bytes}


@attrs.frozen
class ServingFigures:
    """A generative model's serving figures: the batch, its tokens, its KV cache, its times."""

    unit: str
    sequences: int
    new_tokens: int
    context_after_first_token: int
    final_context: int
    max_context: int | None
    first_token_stages: tuple[str, ...]
    per_token_stage: str
    kv_bytes_per_token_per_sequence: int
    kv_by_length: tuple[KvRow, ...]
    estimates: tuple[ServingTimes, ...]
    caveat: str

    def to_json(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "sequences": self.sequences,
            "new_tokens": self.new_tokens,
            "context_after_first_token": self.context_after_first_token,
            "final_context": self.final_context,
            "max_context": self.max_context,
            "first_token_stages": list(self.first_token_stages),
            "per_token_stage": self.per_token_stage,
            "kv_cache": {
                "bytes_per_token_per_sequence": self.kv_bytes_per_token_per_sequence,
                "by_length": [row.to_json() for row in self.kv_by_length],
            },
            "estimates": [e.to_json() for e in self.estimates],
            "caveat": self.caveat,
        }

    @classmethod
    def from_json(cls, f: Fields) -> ServingFigures:
        kv = f.object("kv_cache")
        rows = []
        for row in kv.objects("by_length"):
            rows.append(KvRow(row.integer("tokens"), row.integer("bytes")))
            row.done()
        record = cls(
            f.text("unit"),
            f.integer("sequences"),
            f.integer("new_tokens"),
            f.integer("context_after_first_token"),
            f.integer("final_context"),
            f.optional_integer("max_context"),
            tuple(f.texts("first_token_stages")),
            f.text("per_token_stage"),
            kv.integer("bytes_per_token_per_sequence"),
            tuple(rows),
            tuple(ServingTimes.from_json(e) for e in f.objects("estimates")),
            f.text("caveat"),
        )
        kv.done()
        f.done()
        return record


# -- runtimes ----------------------------------------------------------------------------------------


@attrs.frozen
class CollectiveUse:
    """One kind of collective a stage's run issues on this GPU over groups of one size."""

    kind: str
    group: int
    calls: int
    bytes: int
    """The bytes this GPU hands to them in one run of the stage (each call's local input)."""

    @classmethod
    def from_json(cls, f: Fields) -> CollectiveUse:
        use = cls(f.text("kind"), f.integer("group"), f.integer("calls"), f.integer("bytes"))
        f.done()
        return use


@attrs.frozen
class RuntimeStage:
    """One stage under a runtime: its dtypes, device, placement and GPU memory."""

    name: str
    weights: str
    compute: str
    device: str
    placement: str
    autocast: bool
    weight_bytes: int
    working_bytes: int
    runs_per_generation: int
    gpu_bytes_while_running: int
    sharded: bool = False
    """Its weights FSDP-sharded over the layout's GPUs (``weight_bytes`` is one GPU's shard)."""
    flops: int = 0
    """FLOPs of one run on this GPU (rank 0 of a layout)."""
    collective_bytes: int = 0
    """Bytes this GPU hands to collectives in one run (FSDP's all-gathers included)."""
    split: str = ""
    """How the layout splits this stage (``Ulysses × FSDP``; empty: it runs as on one GPU)."""
    checked_as: str = ""
    """The ``test_parallel`` layout that verifies that split (``u2-fsdp``; empty: none does)."""
    collectives: tuple[CollectiveUse, ...] = ()
    """``collective_bytes`` by kind and group size, with the number of calls."""

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if k != "name"}

    @classmethod
    def from_json(cls, name: str, f: Fields) -> RuntimeStage:
        record = cls(
            name,
            f.text("weights"),
            f.text("compute"),
            f.text("device"),
            f.text("placement"),
            f.flag("autocast"),
            f.integer("weight_bytes"),
            f.integer("working_bytes"),
            f.integer("runs_per_generation"),
            f.integer("gpu_bytes_while_running"),
            f.flag("sharded"),
            f.integer("flops"),
            f.integer("collective_bytes"),
            # reports written before these three fields read back without them
            f.text("split") if f.has("split") else "",
            f.text("checked_as") if f.has("checked_as") else "",
            tuple(CollectiveUse.from_json(c) for c in f.objects("collectives"))
            if f.has("collectives")
            else (),
        )
        f.done()
        return record


@attrs.frozen
class Move:
    """Weights copied between host and GPU during a generation: whose, which way, how many bytes."""

    weights_of: str
    to: str  # "gpu" or "host"
    bytes: int

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, f: Fields) -> Move:
        record = cls(f.text("weights_of"), f.text("to"), f.integer("bytes"))
        f.done()
        return record


@attrs.frozen
class RuntimeGpu:
    """A runtime's seconds on one GPU: per stage (per generation, by part), the host↔GPU moves,
    one generation end to end, and whether its peak fits."""

    gpu: str
    stages: tuple[StageTime, ...]
    transfer_s: float
    seconds: float
    fits: bool
    memory_gb: float

    def stage(self, name: str) -> StageTime:
        return _by_name(self.stages, name)  # type: ignore[no-any-return]

    @property
    def parts(self) -> TimeParts:
        total = TimeParts(transfer=self.transfer_s)
        for stage in self.stages:
            total = total + stage.parts
        return total

    def to_json(self) -> dict[str, Any]:
        return {
            "gpu": self.gpu,
            "stages": {s.name: s.to_json() for s in self.stages},
            "transfer_s": self.transfer_s,
            "seconds": self.seconds,
            "fits": self.fits,
            "memory_gb": self.memory_gb,
        }

    @classmethod
    def from_json(cls, f: Fields) -> RuntimeGpu:
        record = cls(
            f.text("gpu"),
            tuple(StageTime.from_json(name, s) for name, s in f.items("stages")),
            f.number("transfer_s"),
            f.number("seconds"),
            f.flag("fits"),
            f.number("memory_gb"),
        )
        f.done()
        return record


@attrs.frozen
class MissingPrecision:
    gpu: str
    missing: tuple[str, ...]

    def to_json(self) -> dict[str, Any]:
        return {"gpu": self.gpu, "missing": list(self.missing)}


@attrs.frozen
class RuntimeFigures:
    """How a pipeline runs under one of the model's runtimes: per stage dtypes, devices and
    placements, the most the GPU holds at any moment (and the stage running then), the weights
    moved between host and GPU, and the seconds of one generation per GPU (``seconds``: the one
    GPU's, when the report was made for one)."""

    name: str
    description: str
    attention: str
    launch: str
    notes: tuple[str, ...]
    stages: tuple[RuntimeStage, ...]
    peak_gpu_bytes: int
    set_by: str | None
    moves: tuple[Move, ...]
    estimates: tuple[RuntimeGpu, ...]
    seconds: float | None
    not_supported: tuple[MissingPrecision, ...]
    not_timed: tuple[str, ...]
    note: str
    layout: Layout = SINGLE
    """The multi-GPU layout (one GPU: :data:`~pytest_flopcheck.model.parallel.SINGLE`); the
    figures are one GPU's, rank 0's, which also runs the work only rank 0 does."""

    def stage(self, name: str) -> RuntimeStage:
        return _by_name(self.stages, name)  # type: ignore[no-any-return]

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "attention": self.attention,
            "launch": self.launch,
            "notes": list(self.notes),
            "seconds": self.seconds,
            "peak_gpu_bytes": self.peak_gpu_bytes,
            "set_by": self.set_by,
            "stages": {s.name: s.to_json() for s in self.stages},
            "moves": [m.to_json() for m in self.moves],
            "estimates": [e.to_json() for e in self.estimates],
            "not_supported": [u.to_json() for u in self.not_supported],
            "not_timed": list(self.not_timed),
            "note": self.note,
            "layout": self.layout.as_dict(),
        }

    @classmethod
    def from_json(cls, f: Fields) -> RuntimeFigures:
        missing = []
        for item in f.objects("not_supported"):
            missing.append(MissingPrecision(item.text("gpu"), tuple(item.texts("missing"))))
            item.done()
        seconds = f.get("seconds")
        record = cls(
            f.text("name"),
            f.text("description"),
            f.text("attention"),
            f.text("launch"),
            tuple(f.texts("notes")),
            tuple(RuntimeStage.from_json(name, s) for name, s in f.items("stages")),
            f.integer("peak_gpu_bytes"),
            f.optional_text("set_by"),
            tuple(Move.from_json(m) for m in f.objects("moves")),
            tuple(RuntimeGpu.from_json(e) for e in f.objects("estimates")),
            None if seconds is None else f.number("seconds"),
            tuple(missing),
            tuple(f.texts("not_timed")),
            f.text("note"),
            _layout(f.object("layout")),
        )
        f.done()
        return record


def _layout(f: Fields) -> Layout:
    gpus = f.integer("gpus")
    try:
        layout = Layout(
            f.integer("ulysses"),
            f.integer("ring"),
            f.integer("cfg"),
            f.texts("fsdp"),
            f.integer("data"),
            # reports written before tensor parallelism have no degree: 1
            f.integer("tensor") if f.has("tensor") else 1,
        )
    except LayoutError as exc:
        raise FileProblem(f"field {f.where}: {exc}") from None
    if layout.gpus != gpus:
        raise FileProblem(f"field {f.where}.gpus is {gpus}, but its degrees multiply to {layout.gpus}")
    f.done()
    return layout


# -- the report --------------------------------------------------------------------------------------


@attrs.frozen
class SizingReport:
    """Everything ``flopcheck report`` says about one workload of one model."""

    run_id: str
    created_utc: str
    model: ModelInfo
    workload: Mapping[str, Any]
    convention: str
    stages: tuple[StageTotals, ...]
    totals: Metrics
    memory: MemoryFigures
    time: TimeFigures
    top_layers: tuple[TopLayer, ...]
    top_categories: tuple[TopCategory, ...]
    trees: Mapping[str, NodeFigures]
    warnings: tuple[str, ...]
    not_modeled: tuple[str, ...]
    serving: ServingFigures | None = None
    runtime: RuntimeFigures | None = None

    def stage(self, name: str) -> StageTotals:
        return _by_name(self.stages, name)  # type: ignore[no-any-return]

    @property
    def running(self) -> list[str]:
        """The stages one generation runs (at least once)."""
        return [s.name for s in self.stages if s.runs_per_generation]

    def layer_flops(self) -> dict[str, int]:
        """Every leaf's FLOPs per generation, keyed ``stage/node id``."""
        flops: dict[str, int] = {}
        for stage, tree in self.trees.items():
            runs = self.stage(stage).runs_per_generation
            for leaf, times in tree.leaves():
                flops[f"{stage}/{leaf.id}"] = leaf.metrics.flops * times * runs
        return flops

    def to_json(self) -> dict[str, Any]:
        """The ``report.json`` document (exact integers)."""
        document: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "kind": KIND,
            "run_id": self.run_id,
            "created_utc": self.created_utc,
            "model": self.model.to_json(),
            "workload": dict(self.workload),
            "convention": self.convention,
            "stage_totals": {s.name: s.to_json() for s in self.stages},
            "totals": {"per_generation": self.totals.as_dict()},
            "memory": self.memory.to_json(),
            "time_estimates": self.time.to_json(),
            "top_layers": [t.to_json() for t in self.top_layers],
            "top_categories": [c.to_json() for c in self.top_categories],
            "tree": {name: node.to_json() for name, node in self.trees.items()},
            "warnings": list(self.warnings),
            "not_modeled": list(self.not_modeled),
        }
        if self.serving is not None:
            document["serving"] = self.serving.to_json()
        if self.runtime is not None:
            document["runtime"] = self.runtime.to_json()
        return document

    @classmethod
    def from_json(cls, document: Any) -> SizingReport:
        """A report read back from its ``report.json`` document, every field checked;
        FileProblem naming the first field that is missing, mistyped or unknown."""
        f = Fields(document)
        if f.get("kind") != KIND:
            raise FileProblem("is not a flopcheck report.json")
        version = f.get("schema_version")
        if version != SCHEMA_VERSION:
            raise FileProblem(
                f"is a report of schema version {describe(version)}; this flopcheck reads version "
                f"{SCHEMA_VERSION}"
            )
        totals = f.object("totals")
        stages = tuple(StageTotals.from_json(name, s) for name, s in f.items("stage_totals"))
        trees = {name: NodeFigures.from_json(node) for name, node in f.items("tree")}
        for name in trees:
            if name not in {s.name for s in stages}:
                raise FileProblem(f"field tree.{name} has no stage_totals.{name}")
        record = cls(
            run_id=f.text("run_id"),
            created_utc=f.text("created_utc"),
            model=ModelInfo.from_json(f.object("model")),
            workload=f.object("workload").value,
            convention=f.text("convention"),
            stages=stages,
            totals=_metrics(totals.object("per_generation")),
            memory=MemoryFigures.from_json(f.object("memory")),
            time=TimeFigures.from_json(f.object("time_estimates")),
            top_layers=tuple(TopLayer.from_json(t) for t in f.objects("top_layers")),
            top_categories=tuple(TopCategory.from_json(c) for c in f.objects("top_categories")),
            trees=trees,
            warnings=tuple(f.texts("warnings")),
            not_modeled=tuple(f.texts("not_modeled")),
            serving=ServingFigures.from_json(f.object("serving")) if f.has("serving") else None,
            runtime=RuntimeFigures.from_json(f.object("runtime")) if f.has("runtime") else None,
        )
        totals.done()
        f.done()
        return record
