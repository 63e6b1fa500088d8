"""pytest-flopcheck: verify analytic FLOP and memory models against the real models."""

from pytest_flopcheck._hookspecs import hookimpl, hookspec
from pytest_flopcheck.compare import Comparison, relative_error
from pytest_flopcheck.files import FileProblem, read_json
from pytest_flopcheck.names import shorten
from pytest_flopcheck.ops_policy import OpPolicy
from pytest_flopcheck.reference import ReferenceSkipped
from pytest_flopcheck.registry import (
    Generation,
    ModelRegistration,
    ReferenceCall,
    RegistrationError,
    Registry,
    Runtime,
    Serving,
    Stage,
    StageRuntime,
    load_registry,
)
from pytest_flopcheck.tree import (
    METRICS,
    CostNode,
    Metrics,
    closed_form_calls,
    group,
    join,
    merge_call_trees,
    merge_calls,
)

__all__ = [
    "METRICS",
    "Comparison",
    "CostNode",
    "FileProblem",
    "Generation",
    "Metrics",
    "ModelRegistration",
    "OpPolicy",
    "ReferenceCall",
    "ReferenceSkipped",
    "RegistrationError",
    "Registry",
    "Runtime",
    "Serving",
    "Stage",
    "StageRuntime",
    "closed_form_calls",
    "group",
    "hookimpl",
    "hookspec",
    "join",
    "load_registry",
    "merge_call_trees",
    "merge_calls",
    "read_json",
    "relative_error",
    "shorten",
]
