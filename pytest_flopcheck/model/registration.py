"""What a model package registers: its stages, workloads, analytic and reference builders,
generations, runtimes and serving figures (:class:`ModelRegistration` and its parts)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

import attrs

from pytest_flopcheck.analytic.tree import CostNode, Metrics, TreeError, check_tree
from pytest_flopcheck.model.parallel import Layout, Parallel
from pytest_flopcheck.model.workload import DTYPE_BYTES, PRECISIONS
from pytest_flopcheck.reference.ops_policy import OpPolicy
from pytest_flopcheck.text import is_safe_name, name_error

Sized = Sequence[Any] | Mapping[str, Any]


class RegistrationError(Exception):
    """A model package handed over something unusable; the message names the plugin."""


NO_ANALYTIC = "flopcheck inspect MODEL --stage STAGE shows what its reference runs"


class ModelError(Exception):
    """A registration's own code raised, or returned something unusable, while a report or sweep
    asked it for a figure: one sentence naming the model and what failed."""


T = TypeVar("T")


def model_call(model: str, what: str, function: Callable[..., T], *args: Any) -> T:
    """``function(*args)``, with anything it raises turned into one :class:`ModelError` sentence
    (``what`` names the registration's callable, as "the analytic model of stage 'core'")."""
    try:
        return function(*args)
    except ModelError:
        raise
    except Exception as exc:
        raise ModelError(f"model {model!r}: {what} raised {type(exc).__name__}: {exc}") from exc


def _check_name(kind: str) -> Callable[[Any, attrs.Attribute[Any], str], None]:
    def check(_instance: Any, _attribute: attrs.Attribute[Any], value: str) -> None:
        if not is_safe_name(value):
            raise ValueError(name_error(kind, value))

    return check


def _check_tolerance(_instance: Any, _attribute: attrs.Attribute[Any], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"tolerance {value!r} is not allowed: use a finite number >= 0 (a relative error)")


@attrs.frozen
class Stage:
    """A stage of a model's pipeline (text encoder, diffusion core, ...) and its tolerance.

    ``tolerance`` is the largest allowed relative error ``|analytic - reference| / reference``
    for each layer's FLOPs and for the stage total (I/O bytes of layers are compared exactly).
    ``weights_of`` names an earlier stage whose weights this one runs with (decode after prefill,
    say): pipeline parameter and weight totals then count those weights once.
    """

    name: str = attrs.field(validator=_check_name("stage"))
    tolerance: float = attrs.field(validator=_check_tolerance)
    description: str = ""
    weights_of: str | None = None
    memory_tolerance: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_tolerance)
    )
    """The largest allowed relative error of the stage's analytic live peak beyond its weights
    (:func:`~pytest_flopcheck.analytic.tree.live_peak`) against the live tensor bytes measured on the
    reference beyond its weights (which are compared exactly); with it each workload gets a
    ``test_memory`` check. None: the peak is not verified (and reports say so)."""
    traffic_tolerance: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_tolerance)
    )
    """The largest allowed relative error of the stage's predicted elementwise traffic
    (``Metrics.elementwise_bytes`` and ``elementwise_ops`` of its tree) against every other op the
    reference runs (``test_traffic`` on the stage; each layer that predicts its own is compared
    exactly). None: the stage predicts no elementwise traffic, and the time model says so."""


def _strings(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


def _callable(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        raise ValueError(
            f"{attribute.name} is {type(value).__name__}, not a callable: give a function "
            f"(see ModelRegistration's {attribute.name})"
        )


@attrs.frozen
class Generation:
    """A tiny real end-to-end run of a model (a diffusers pipeline call, a transformers
    ``generate()``) with random weights, and the analytic model's per-generation total for the
    same configuration: the counted FLOPs of the whole run must equal ``analytic_flops`` exactly.

    ``build()`` makes the run (it imports torch and friends) as a :class:`ReferenceCall` whose
    module holds the modules the run uses (a ``torch.nn.ModuleDict`` is fine) and whose ``run``
    performs the generation on CPU. It is called only when the count is not already in the
    reference cache, so computing ``analytic_flops`` must not need it.
    """

    analytic_flops: int
    build: Callable[[], ReferenceCall] = attrs.field(validator=_callable)
    description: str = ""


@attrs.frozen
class ReferenceCall:
    """A built reference module and the call whose FLOPs are counted.

    ``module`` is a ``torch.nn.Module``; module names in the counts are relative to it.
    ``run`` performs the counted call (a forward, ``decode``, ...). ``scope`` names the
    submodules whose weights the stage uses (a decoder stage built from a whole vision-language
    model, say): the stage's parameter total is compared over them, each parameter once. Empty,
    the whole module. ``mode``: a dispatch mode the module's tensors live in (the
    ``FakeTensorMode`` a reference is built under when its code cannot run on meta, such as
    FSDP2's sharding); the count runs inside it, beneath the counter. None: meta or real tensors.
    """

    module: Any
    run: Callable[[], object] = attrs.field(validator=_callable)
    scope: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    mode: Any = None


def _non_empty(_instance: Any, attribute: attrs.Attribute[Any], value: Sized) -> None:
    if len(value) == 0:
        raise ValueError(f"{attribute.name} is empty: a model needs at least one")


def _unique_stages(instance: Any, attribute: attrs.Attribute[Any], value: tuple[Stage, ...]) -> None:
    _non_empty(instance, attribute, value)
    names = [stage.name for stage in value]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ValueError(f"stages {duplicates} are registered more than once")
    if "pipeline" in names:
        raise ValueError("stage name 'pipeline' is reserved for the end-to-end total")
    for index, stage in enumerate(value):
        if stage.weights_of is not None and stage.weights_of not in names[:index]:
            raise ValueError(
                f"stage {stage.name!r} has weights_of {stage.weights_of!r}, which is not an earlier stage "
                f"(earlier stages: {', '.join(names[:index]) or 'none'})"
            )


def _workload_ids(instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    _non_empty(instance, attribute, value)
    check = _check_name("workload")
    for workload_id in value:
        check(instance, attribute, workload_id)


def _generation_names(instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Any]) -> None:
    for name, factory in value.items():
        if not is_safe_name(name):
            raise ValueError(name_error("generation", name))
        if not callable(factory) or isinstance(factory, Generation):
            raise ValueError(
                f"generation {name!r} is {type(factory).__name__}, not a callable: register a function that "
                "returns the Generation (it is called only when the generation is checked), such as "
                "functools.partial(tiny_generation, workload)"
            )


def _stages(value: Iterable[Stage]) -> tuple[Stage, ...]:
    return tuple(value)


def _workloads(value: Mapping[str, Any]) -> dict[str, Any]:
    return dict(value)


def _choice(options: Iterable[str], what: str) -> Any:
    allowed = tuple(options)

    def check(_instance: Any, attribute: attrs.Attribute[Any], value: object) -> None:
        if value not in allowed:
            raise ValueError(f"runtime {what} {value!r} is not allowed: choose one of {', '.join(allowed)}")

    return check


PLACEMENTS = ("resident", "moved", "offloaded_after")
"""Where a stage's weights live during a generation: on the GPU throughout (``resident``); moved
onto it before the stage runs and back to the CPU after (``moved``: diffusers'
``enable_model_cpu_offload()``); on the GPU from the start and moved to the CPU after the stage's
last run (``offloaded_after``: a denoiser offloaded before the decoder runs). A stage that
shares another's weights (``weights_of``) follows that one's."""


@attrs.frozen
class StageRuntime:
    """How one stage runs: its weights' dtype, its compute precision, where it runs, where its
    weights live (:data:`PLACEMENTS`), and whether autocast casts wider weights to the compute
    precision at every call (fp32 weights under bf16 autocast)."""

    weights: str = attrs.field(validator=_choice(DTYPE_BYTES, "weights dtype"))
    compute: str = attrs.field(validator=_choice(PRECISIONS, "compute precision"))
    device: str = attrs.field(default="gpu", validator=_choice(("gpu", "cpu"), "device"))
    placement: str = attrs.field(default="resident", validator=_choice(PLACEMENTS, "placement"))
    autocast: bool = False


ATTENTION_KERNELS = ("sdpa", "fa2", "fa3")
LAUNCH_MODES = ("eager", "graphs")


@attrs.frozen(kw_only=True)
class Runtime:
    """A way of running the pipeline as a published run made it: per stage its
    :class:`StageRuntime`; the attention kernel (``sdpa``: torch's, whose flash backend is
    FlashAttention-2; ``fa2``/``fa3``: the flash_attn packages, FlashAttention-3 on Hopper only);
    eager launches or CUDA graphs (``launch``); the assumptions a report should print
    (``notes``); and ``layout(gpus)``, the :class:`~pytest_flopcheck.model.parallel.Layout` its
    script uses on ``gpus`` GPUs (``None``: it runs on one GPU only). On more than one GPU every
    stage's weights stay resident (the scripts offload only on one GPU)."""

    description: str
    stages: Mapping[str, StageRuntime]
    attention: str = attrs.field(default="sdpa", validator=_choice(ATTENTION_KERNELS, "attention kernel"))
    launch: str = attrs.field(default="eager", validator=_choice(LAUNCH_MODES, "launch mode"))
    notes: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    layout: Callable[[int], Layout] | None = None


def _runtimes(instance: Any, attribute: attrs.Attribute[Any], value: Mapping[str, Runtime]) -> None:
    names = [stage.name for stage in instance.stages]
    for name, runtime in value.items():
        if not is_safe_name(name):
            raise ValueError(name_error("runtime", name))
        missing = [stage for stage in names if stage not in runtime.stages]
        extra = sorted(set(runtime.stages) - set(names))
        if missing or extra:
            raise ValueError(
                f"runtime {name!r} must give every stage exactly once: missing {missing}, unknown {extra}"
            )


@attrs.frozen(kw_only=True)
class Serving:
    """How the stages of a generative model become serving figures (``flopcheck report`` and
    ``sweep``): time to first token, time per output token, throughput and KV-cache memory.

    - ``first_token``: the stages that run before the first output token (encoders, prefill).
    - ``per_token``: the stage that produces every further token, one step per token.
    - ``new_tokens(workload)``: tokens each sequence generates, the first from the first-token
      stages; ``per_token`` runs ``new_tokens - 1`` steps.
    - ``sequences(workload)``: sequences generated together (the batch), each one ``unit``.
    - ``context(workload)``: tokens cached per sequence once the first-token stages ran.
    - ``cache_bytes_per_token(workload)``: KV-cache bytes per cached token of one sequence.
    - ``max_context``: the longest sequence the model takes (bounds the KV-cache table).
    """

    first_token: tuple[str, ...] = attrs.field(converter=_strings)
    per_token: str
    new_tokens: Callable[[Any], int]
    sequences: Callable[[Any], int]
    context: Callable[[Any], int]
    cache_bytes_per_token: Callable[[Any], int]
    unit: str = "sequence"
    max_context: int | None = None


def _serving_stages(instance: Any, attribute: attrs.Attribute[Any], value: Serving | None) -> None:
    if value is None:
        return
    names = [stage.name for stage in instance.stages]
    for name in (*value.first_token, value.per_token):
        if name not in names:
            raise ValueError(
                f"serving names stage {name!r}, which is not registered (stages: {', '.join(names)})"
            )
    if value.per_token in value.first_token:
        raise ValueError(f"serving stage {value.per_token!r} cannot be both first_token and per_token")


@attrs.frozen(kw_only=True)
class ModelRegistration:
    """Everything the plugin needs to verify and report one model.

    - ``analytic(workload, stage)`` returns the analytic cost tree of one run of the stage; a
      model may be registered without one while its author starts from ``flopcheck inspect``
      (nothing is verified or sized until it has one).
    - ``reference(workload, stage, device)`` builds the real module on ``device`` and returns
      a :class:`ReferenceCall`; it is the only place that imports torch and friends.
    - ``multiplicities(workload)`` says how many times each stage runs in one end-to-end
      generation; without it there is no pipeline total.
    - ``reference_bytes(workload, stage)`` estimates the memory a reference run needs on a
      real device (cpu, cuda), so that runs that cannot fit are skipped with the estimate.
    - ``metadata``, ``warnings`` and ``not_modeled`` feed the evidence and the reports.
    - ``workload_type`` (an attrs class) lets the CLI build workloads from options.
    - ``stage_totals(workload, stage)`` is an optional fast path for one run's totals (sweeps);
      it must equal ``analytic(workload, stage).total``.
    - ``reference_config(workload, stage)`` is what the reference module is built from (its
      architecture config, as JSON data). With the package versions, the workload, the stage, the
      device and the source of the module that defines ``reference``, it keys the cache of counted
      references, so a change to any of them forces a recount.
    - ``config_workload(workload, path)`` returns the workload with the architecture read from a
      checkpoint's config file or folder (``flopcheck report --config PATH``); a ValueError's
      message is shown to the user.
    - ``generations`` names tiny real end-to-end runs (built lazily, on CPU): each becomes a
      ``test_generation[model/name]`` check of the counted whole run against the analytic total.
    - ``runtimes`` names ways of running the pipeline (:class:`Runtime`: per-stage weight dtype,
      compute precision, device and placement) for ``flopcheck report --runtime``.
    - ``serving`` (a :class:`Serving`) turns a generative model's stages into time to first
      token, time per output token, throughput and KV-cache memory in reports and sweeps.
    - ``op_policy`` adds FLOP formulas for ops torch's counter does not count and declares
      compute-like ops that do no counted work (see :mod:`pytest_flopcheck.reference.ops_policy`).
    - ``parallel`` (a :class:`~pytest_flopcheck.model.parallel.Parallel`) sizes multi-GPU
      layouts per GPU and names the layouts ``test_parallel`` verifies against the real
      parallel code on a fake process group.
    """

    name: str = attrs.field(validator=_check_name("model"))
    stages: tuple[Stage, ...] = attrs.field(converter=_stages, validator=_unique_stages)
    workloads: Mapping[str, Any] = attrs.field(converter=_workloads, validator=_workload_ids)
    analytic: Callable[[Any, str], CostNode] | None = attrs.field(default=None, validator=_callable)
    reference: Callable[[Any, str, str], ReferenceCall] | None = attrs.field(
        default=None, validator=_callable
    )
    multiplicities: Callable[[Any], Mapping[str, int]] | None = attrs.field(default=None, validator=_callable)
    end_to_end_tolerance: float | None = attrs.field(
        default=None, validator=attrs.validators.optional(_check_tolerance)
    )
    reference_bytes: Callable[[Any, str], int] | None = attrs.field(default=None, validator=_callable)
    stage_totals: Callable[[Any, str], Metrics] | None = attrs.field(default=None, validator=_callable)
    reference_packages: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    metadata: Callable[[Any], Mapping[str, Any]] | None = attrs.field(default=None, validator=_callable)
    warnings: Callable[[Any], Sequence[str]] | None = attrs.field(default=None, validator=_callable)
    not_modeled: tuple[str, ...] = attrs.field(default=(), converter=_strings)
    workload_type: type | None = None
    reference_config: Callable[[Any, str], Any] | None = attrs.field(default=None, validator=_callable)
    op_policy: OpPolicy = attrs.field(factory=OpPolicy)
    config_workload: Callable[[Any, str], Any] | None = attrs.field(default=None, validator=_callable)
    generations: Mapping[str, Callable[[], Generation]] = attrs.field(
        factory=dict, converter=_workloads, validator=_generation_names
    )
    description: str = ""
    serving: Serving | None = attrs.field(default=None, validator=_serving_stages)
    runtimes: Mapping[str, Runtime] = attrs.field(factory=dict, converter=_workloads, validator=_runtimes)
    parallel: Parallel | None = None

    def totals(self, workload: Any, stage: str) -> Metrics:
        """One run's totals of ``stage``, through the fast path when there is one
        (ModelError if the model's code fails)."""
        if self.stage_totals is not None:
            totals = model_call(
                self.name, f"stage_totals of stage {stage!r}", self.stage_totals, workload, stage
            )
            if not isinstance(totals, Metrics):
                raise ModelError(
                    f"model {self.name!r}: stage_totals of stage {stage!r} returned {type(totals).__name__}, "
                    "not Metrics"
                )
            return totals
        return self.tree(workload, stage).total

    def tree(self, workload: Any, stage: str) -> CostNode:
        """The validated analytic tree of one run of ``stage`` (ModelError if the builder raises
        or returns something that is not a usable tree, as the plugin checks it)."""
        if self.analytic is None:
            raise ModelError(f"model {self.name!r} registers no analytic model yet ({NO_ANALYTIC})")
        built = model_call(
            self.name, f"the analytic model of stage {stage!r}", self.analytic, workload, stage
        )
        try:
            return check_tree(built)
        except TreeError as exc:
            raise ModelError(f"model {self.name!r}: the analytic model of stage {stage!r} {exc}") from None

    def checked_runs(self, workload: Any) -> dict[str, int]:
        """:meth:`runs`, with a failure as one :class:`ModelError` sentence."""
        try:
            return self.runs_per_generation(workload)
        except ValueError as exc:
            raise ModelError(f"model {self.name!r}: {exc}") from None
        except Exception as exc:
            raise ModelError(
                f"model {self.name!r}: multiplicities raised {type(exc).__name__}: {exc}"
            ) from exc

    def stage(self, name: str) -> Stage:
        for stage in self.stages:
            if stage.name == name:
                return stage
        raise KeyError(name)

    def runs_per_generation(self, workload: Any) -> dict[str, int]:
        """How often each stage runs in one generation, checked: every stage present, none
        negative, at least one running (a stage may run 0 times in some workloads: one of two
        denoising experts no step reaches). Without ``multiplicities`` every stage runs once."""
        if self.multiplicities is None:
            return {stage.name: 1 for stage in self.stages}
        counts = self.multiplicities(workload)
        if not isinstance(counts, Mapping):
            kind = type(counts).__name__
            raise ValueError(f"multiplicities returned {kind}, not a mapping of stages to counts")
        runs: dict[str, int] = {}
        for stage in self.stages:
            n = counts.get(stage.name)
            if n is None:
                raise ValueError(f"multiplicities gives no count for stage {stage.name!r}")
            if isinstance(n, bool) or not isinstance(n, int) or n < 0:
                raise ValueError(
                    f"multiplicities gives stage {stage.name!r} the count {n!r}: it must be an integer >= 0"
                )
            runs[stage.name] = n
        extra = sorted(set(counts) - set(runs))
        if extra:
            raise ValueError(f"multiplicities names {extra}, which are not stages of {self.name!r}")
        if not any(runs.values()):
            raise ValueError("multiplicities gives every stage the count 0: a generation runs at least one")
        return runs

    @property
    def weight_stages(self) -> list[str]:
        """The stages that hold weights of their own (each weight counted once in a pipeline)."""
        return [stage.name for stage in self.stages if stage.weights_of is None]

    @property
    def pipeline_tolerance(self) -> float:
        """Tolerance of the end-to-end total: explicit, else the tightest stage tolerance."""
        if self.end_to_end_tolerance is not None:
            return self.end_to_end_tolerance
        return min(stage.tolerance for stage in self.stages)
