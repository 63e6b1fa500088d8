"""Hook specifications of the ``flopcheck`` plugin manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from pytest_flopcheck.model.registration import ModelRegistration

hookspec = pluggy.HookspecMarker("flopcheck")
hookimpl = pluggy.HookimplMarker("flopcheck")


@hookspec
def flopcheck_register_models(register: Callable[[ModelRegistration], None]) -> None:
    """Hand over model registrations by calling ``register`` once per model.

    Example, in a module listed under the ``flopcheck`` entry-point group or in a
    ``conftest.py``::

        from pytest_flopcheck import ModelRegistration, Stage, hookimpl

        @hookimpl
        def flopcheck_register_models(register):
            register(ModelRegistration(name="toy", stages=(Stage("core", 0.0),), ...))
    """
