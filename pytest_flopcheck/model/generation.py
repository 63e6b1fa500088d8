"""One generation of a pipeline: how often each stage runs, and what its runs add up to.

The one owner of per-generation figures: the pytest end-to-end checks, the evidence totals, the
sizing reports and the sweeps all ask :func:`per_generation` or :class:`GenerationTotals`, and
model packages use :func:`per_generation` for the totals of their tiny real generations.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from pytest_flopcheck.analytic.tree import ZERO, Metrics


def per_generation(runs: Mapping[str, int], per_run: Mapping[str, int]) -> int:
    """One generation's worth of a per-run count (FLOPs, say): each stage's count times its runs
    per generation, summed; a stage that runs 0 times adds nothing. ``per_run`` names the stages
    to add (every one of them must be in ``runs``)."""
    return sum(runs[stage] * value for stage, value in per_run.items())


@attrs.frozen
class GenerationTotals:
    """Each stage's metrics for one run and for one generation, and the generation's total.

    ``owners`` maps each stage to the stage whose weights it runs (itself, or the ``weights_of``
    of a phase such as decode after prefill). In the total, work counts every run; each weight
    counts once, and only for stages the generation loads (it runs them, or a phase that uses
    them)."""

    runs: Mapping[str, int]
    per_run: Mapping[str, Metrics]
    owners: Mapping[str, str]

    @property
    def loaded(self) -> set[str]:
        """The stages whose own weights a generation loads."""
        return {self.owners[name] for name, n in self.runs.items() if n}

    def of(self, stage: str) -> Metrics:
        """One generation's metrics of ``stage``: work times its runs, state once."""
        return self.per_run[stage].repeated(self.runs[stage])

    @property
    def total(self) -> Metrics:
        loaded = self.loaded
        total = ZERO
        for name in self.per_run:
            metrics = self.of(name)
            # A phase that runs another stage's weights adds its work, not those weights again; a
            # stage the workload never runs adds neither.
            total = total + (metrics if name in loaded else attrs.evolve(metrics, params=0, weight_bytes=0))
        return total
