"""The pytest plugin (entry point ``pytest11: flopcheck``): options, generated checks, outcomes
from pytest's own reports, evidence, xdist."""

from pytest_flopcheck.plugin.hooks import pytest_addoption, pytest_configure

__all__ = ["pytest_addoption", "pytest_configure"]
