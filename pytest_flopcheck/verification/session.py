"""One process's view of a verification run: the selection, the dependencies of its checks, and
their plan and evaluation. The pytest plugin holds one on the controller and on every xdist
worker."""

from __future__ import annotations

from collections.abc import Iterator

from pytest_flopcheck.model.registration import ModelRegistration
from pytest_flopcheck.model.registry import Registry
from pytest_flopcheck.verification import evaluation
from pytest_flopcheck.verification.cases import Case, Selection
from pytest_flopcheck.verification.dependencies import Dependencies
from pytest_flopcheck.verification.evaluation import Outcome


class FlopcheckSession:
    """Plans the checks of the selected models and workloads and evaluates them lazily, each
    dependency produced once (:class:`~pytest_flopcheck.verification.dependencies.Dependencies`)."""

    def __init__(
        self, registry: Registry, models: list[str], workload_filter: list[str], device: str = "meta"
    ):
        self.selection = Selection(registry, models, workload_filter)
        self.dependencies = Dependencies(self.selection, device)

    @property
    def models(self) -> list[str]:
        return self.selection.models

    @property
    def device(self) -> str:
        return self.dependencies.device

    def registration(self, model: str) -> ModelRegistration:
        return self.selection.registration(model)

    def workloads(self, model: str) -> list[str]:
        return self.selection.workloads(model)

    def plan(self) -> Iterator[Case]:
        """Every check, in a deterministic order (models, workloads, stages, tree pre-order)."""
        return evaluation.plan(self.dependencies)

    def prepare(self, case: Case) -> None:
        """Produce what ``case`` depends on (the item's setup): CheckError or CheckSkipped."""
        self.dependencies.prepare(case)

    def evaluate(self, case: Case) -> Outcome:
        """Compare the analytic and reference numbers for ``case`` (after :meth:`prepare`)."""
        return evaluation.evaluate(self.dependencies, case)
