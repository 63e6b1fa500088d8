"""Repo-wide test configuration: hypothesis profiles, and pytester running the toy in this process."""

import os
import sys
from collections.abc import Callable, Iterator

import _pytest.pytester
import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("default", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("ci", parent=settings.get_profile("default"), derandomize=True)
settings.load_profile("ci" if os.environ.get("CI") else "default")


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester whose runs leave out hypothesis' pytest plugin (in the xdist workers and the runs
    that need a process of their own, importing it costs a second), which no run of the toy uses."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-p no:hypothesispytest")
    return pytester


@pytest.fixture(scope="session", autouse=True)
def _keep_imported_libraries(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """pytester runs the toy in this process and, after each run, forgets the modules the run
    imported. Only the run's own files (its conftest, its helper modules: they live under the
    temporary directory, and tests edit them between runs) must be forgotten: torch registers its
    operator libraries once per process and cannot import its modules a second time. So every other
    module a run imports stays. This patches a pytest internal; if pytest renames it, this fails."""
    temporary = str(tmp_path_factory.getbasetemp())

    def outside_the_runs(name: str) -> bool:
        origin = getattr(sys.modules.get(name), "__file__", None)
        return not (isinstance(origin, str) and origin.startswith(temporary))

    class Snapshot(_pytest.pytester.SysModulesSnapshot):
        def __init__(self, preserve: Callable[[str], bool] | None = None) -> None:
            super().__init__(lambda name: outside_the_runs(name) or (preserve is not None and preserve(name)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(_pytest.pytester, "SysModulesSnapshot", Snapshot)
        yield
