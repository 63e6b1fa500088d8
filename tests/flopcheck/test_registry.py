"""Registration through the flopcheck plugin manager."""

from __future__ import annotations

from typing import Any

import pytest

from pytest_flopcheck import ModelRegistration, Stage, hookimpl
from pytest_flopcheck.analytic.tree import CostNode, Metrics
from pytest_flopcheck.model.registration import RegistrationError
from pytest_flopcheck.model.registry import load_registry


def registration(name: str = "m", **overrides: Any) -> ModelRegistration:
    fields: dict[str, Any] = {
        "name": name,
        "stages": (Stage("core", 0.05),),
        "workloads": {"W-1": object()},
        "analytic": lambda w, s: CostNode("", "root", Metrics()),
    }
    fields.update(overrides)
    return ModelRegistration(**fields)


class Plugin:
    def __init__(self, *registrations: object) -> None:
        self.registrations = registrations

    @hookimpl
    def flopcheck_register_models(self, register: Any) -> None:
        for r in self.registrations:
            register(r)


def test_collects_models_from_plugins() -> None:
    registry = load_registry(
        [("a", Plugin(registration("x"))), ("b", Plugin(registration("y")))], entry_point_plugins=False
    )
    assert registry.names() == ["x", "y"]
    assert registry.origins == {"x": "a", "y": "b"}


def test_installed_entry_points_are_loaded() -> None:
    assert "wan2_1" in load_registry().names()


def test_duplicate_name_names_both_plugins() -> None:
    with pytest.raises(RegistrationError, match=r"plugin 'b' registered model 'x', which plugin 'a' already"):
        load_registry(
            [("a", Plugin(registration("x"))), ("b", Plugin(registration("x")))], entry_point_plugins=False
        )


def test_a_plugin_that_raises_is_named() -> None:
    class Broken:
        @hookimpl
        def flopcheck_register_models(self, register: Any) -> None:
            registration(stages=())

    with pytest.raises(RegistrationError, match=r"plugin 'broken' failed .*stages is empty"):
        load_registry([("broken", Broken())], entry_point_plugins=False)


def test_incomplete_registration_names_the_missing_field() -> None:
    class Incomplete:
        @hookimpl
        def flopcheck_register_models(self, register: Any) -> None:
            register(ModelRegistration(name="x", stages=(Stage("s", 0.0),)))  # type: ignore[call-arg]

    with pytest.raises(RegistrationError, match=r"plugin 'incomplete' .*workloads"):
        load_registry([("incomplete", Incomplete())], entry_point_plugins=False)


def test_registering_something_else_is_an_error() -> None:
    with pytest.raises(RegistrationError, match=r"plugin 'p' registered dict, not a ModelRegistration"):
        load_registry([("p", Plugin({"name": "x"}))], entry_point_plugins=False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "a/b"}, "model name 'a/b' is not allowed"),
        ({"stages": (Stage("s", 0.1), Stage("s", 0.1))}, r"stages \['s'\] are registered more than once"),
        ({"stages": (Stage("pipeline", 0.1),)}, "reserved"),
        ({"workloads": {}}, "workloads is empty"),
        ({"workloads": {"bad id": 1}}, "workload name 'bad id' is not allowed"),
    ],
)
def test_invalid_registrations(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        registration(**overrides)


@pytest.mark.parametrize("tolerance", [-0.1, float("nan"), float("inf"), True, "5%"])
def test_invalid_tolerance(tolerance: object) -> None:
    with pytest.raises(ValueError, match=r"tolerance .* is not allowed"):
        Stage("s", tolerance)  # type: ignore[arg-type]


def test_pipeline_tolerance_defaults_to_the_tightest_stage() -> None:
    reg = registration(stages=(Stage("a", 0.05), Stage("b", 1e-6)))
    assert reg.pipeline_tolerance == 1e-6
    assert registration(end_to_end_tolerance=0.05).pipeline_tolerance == 0.05


@pytest.mark.parametrize("weights_of", ["decode", "vision", "missing"])
def test_weights_of_must_name_an_earlier_stage(weights_of: str) -> None:
    stages = (Stage("vision", 0.0), Stage("decode", 0.0, weights_of=weights_of))
    if weights_of == "vision":
        assert registration(stages=stages).weight_stages == ["vision"]
        return
    with pytest.raises(
        ValueError, match=f"stage 'decode' has weights_of '{weights_of}', which is not an earlier stage"
    ):
        registration(stages=stages)


def test_a_value_that_is_not_a_callable_where_one_is_expected_says_so() -> None:
    from pytest_flopcheck import Generation

    stages = (Stage("a", 0.0),)
    with pytest.raises(
        ValueError, match="generation 'tiny' is Generation, not a callable: register a function"
    ):
        ModelRegistration(
            name="m", stages=stages, workloads={"w": 1}, generations={"tiny": Generation(1, print)}
        )
    with pytest.raises(ValueError, match="reference is str, not a callable"):
        ModelRegistration(name="m", stages=stages, workloads={"w": 1}, reference="build")  # type: ignore[arg-type]


def test_an_unknown_module_name_lists_the_closest() -> None:
    from pytest_flopcheck.reference.counting import ModuleCount, ReferenceCounts

    counts = ReferenceCounts("meta", 0, 0, {}, {"blocks.0.attn1.to_q": ModuleCount(0, 0, 0, 0, {})}, {}, 0.0)
    with pytest.raises(
        KeyError, match=r"no module named 'blocks\.0\.attn1\.to_qq'; closest: blocks\.0\.attn1\.to_q"
    ):
        counts.module("blocks.0.attn1.to_qq")
