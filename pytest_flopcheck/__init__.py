"""pytest-flopcheck: verify analytic FLOP and memory models against the real models.

This module is the whole API a model package uses (the README's "API for model authors" lists
every name with what it is for); everything else is the framework's own. A test holds the model
packages and the benchmarks to it.
"""

from pytest_flopcheck._hookspecs import hookimpl
from pytest_flopcheck.analytic import layers
from pytest_flopcheck.analytic.tree import (
    CostNode,
    Metrics,
    Renamer,
    closed_form_calls,
    group,
    join,
    merge_call_trees,
    merge_calls,
    peaking_at,
    regroup,
    with_repeat,
)
from pytest_flopcheck.files import FileProblem, read_json
from pytest_flopcheck.model.generation import per_generation
from pytest_flopcheck.model.parallel import SINGLE, Layout, LayoutError, Parallel
from pytest_flopcheck.model.registration import (
    Generation,
    ModelRegistration,
    ReferenceCall,
    Runtime,
    Serving,
    Stage,
    StageRuntime,
)
from pytest_flopcheck.model.workload import DTYPES, WorkloadError
from pytest_flopcheck.reference.counting import ReferenceSkipped
from pytest_flopcheck.reference.ops_policy import OpPolicy
from pytest_flopcheck.text import shorten

__all__ = [
    "DTYPES",
    "SINGLE",
    "CostNode",
    "FileProblem",
    "Generation",
    "Layout",
    "LayoutError",
    "Metrics",
    "ModelRegistration",
    "OpPolicy",
    "Parallel",
    "ReferenceCall",
    "ReferenceSkipped",
    "Renamer",
    "Runtime",
    "Serving",
    "Stage",
    "StageRuntime",
    "WorkloadError",
    "closed_form_calls",
    "group",
    "hookimpl",
    "join",
    "layers",
    "merge_call_trees",
    "merge_calls",
    "peaking_at",
    "per_generation",
    "read_json",
    "regroup",
    "shorten",
    "with_repeat",
]
