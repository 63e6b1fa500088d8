"""The registered models, and the ``flopcheck`` plugin manager that collects them from entry
points and from a project's own plugins (conftest modules, ``flopcheck -p``)."""

from __future__ import annotations

from collections.abc import Iterable
from importlib.metadata import entry_points

import attrs
import pluggy

from pytest_flopcheck import _hookspecs
from pytest_flopcheck.model.registration import ModelRegistration, RegistrationError

ENTRY_POINT_GROUP = "flopcheck"


@attrs.define
class Registry:
    """The registered models, by name, and which plugin registered each."""

    models: dict[str, ModelRegistration] = attrs.field(factory=dict)
    origins: dict[str, str] = attrs.field(factory=dict)

    def add(self, registration: object, plugin: str) -> None:
        if not isinstance(registration, ModelRegistration):
            raise RegistrationError(
                f"flopcheck plugin {plugin!r} registered {type(registration).__name__!s}, "
                "not a ModelRegistration"
            )
        if registration.name in self.models:
            raise RegistrationError(
                f"flopcheck plugin {plugin!r} registered model {registration.name!r}, which plugin "
                f"{self.origins[registration.name]!r} already registered"
            )
        self.models[registration.name] = registration
        self.origins[registration.name] = plugin

    def names(self) -> list[str]:
        return sorted(self.models)

    def describe(self) -> str:
        """The registered models as a short list for error messages."""
        return ", ".join(self.names()) or "(none)"


def plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(ENTRY_POINT_GROUP)
    pm.add_hookspecs(_hookspecs)
    return pm


def hook_names(pm: pluggy.PluginManager) -> list[str]:
    """The hooks a flopcheck plugin may implement."""
    return sorted(name for name in vars(pm.hook) if not name.startswith("_"))


def load_registry(
    extra_plugins: Iterable[tuple[str, object]] = (), *, entry_point_plugins: bool = True
) -> Registry:
    """Collect the models of every installed model package and of ``extra_plugins``.

    ``extra_plugins`` are ``(name, plugin)`` pairs, such as conftest modules that implement
    ``flopcheck_register_models``. Errors name the plugin that caused them.
    """
    pm = plugin_manager()
    if entry_point_plugins:
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name):
            try:
                module = ep.load()
            except Exception as exc:
                raise RegistrationError(
                    f"flopcheck plugin {ep.name!r} ({ep.value}) could not be imported: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            if not pm.is_registered(module):
                pm.register(module, name=ep.name)
    for name, plugin in extra_plugins:
        if not pm.is_registered(plugin) and pm.get_plugin(name) is None:
            pm.register(plugin, name=name)
    try:
        pm.check_pending()  # a misspelt hook name would otherwise be ignored silently
    except pluggy.PluginValidationError as exc:
        raise RegistrationError(
            f"flopcheck plugin {pm.get_name(exc.plugin)!r} implements a hook flopcheck does not know: "
            f"{exc}; known hooks: {', '.join(hook_names(pm))}"
        ) from None
    registry = Registry()
    # Each implementation is called on its own, in registration order, so that an error
    # can name its plugin.
    for impl in pm.hook.flopcheck_register_models.get_hookimpls():
        plugin_name = impl.plugin_name

        def register(registration: ModelRegistration, _plugin: str = plugin_name) -> None:
            registry.add(registration, _plugin)

        try:
            impl.function(register=register)
        except RegistrationError:
            raise
        except Exception as exc:
            raise RegistrationError(
                f"flopcheck plugin {plugin_name!r} failed while registering models: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
    return registry
