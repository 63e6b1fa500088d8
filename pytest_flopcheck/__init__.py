"""pytest-flopcheck: verify analytic FLOP and memory models against the real models."""

from pytest_flopcheck._hookspecs import hookimpl, hookspec
from pytest_flopcheck.analytic import layers
from pytest_flopcheck.analytic.tree import (
    METRICS,
    CostNode,
    Metrics,
    closed_form_calls,
    group,
    join,
    merge_call_trees,
    merge_calls,
)
from pytest_flopcheck.files import FileProblem, read_json
from pytest_flopcheck.model.registration import (
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
from pytest_flopcheck.names import shorten
from pytest_flopcheck.reference.counting import ReferenceSkipped
from pytest_flopcheck.reference.ops_policy import OpPolicy
from pytest_flopcheck.verification.compare import Comparison, relative_error

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
    "layers",
    "load_registry",
    "merge_call_trees",
    "merge_calls",
    "read_json",
    "relative_error",
    "shorten",
]
