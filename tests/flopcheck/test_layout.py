"""The framework stays model-agnostic."""

from __future__ import annotations

from pathlib import Path

import pytest_flopcheck


def test_the_framework_never_mentions_a_model_package() -> None:
    sources = sorted(Path(pytest_flopcheck.__file__).parent.rglob("*.py"))
    assert sources
    assert [p.name for p in sources if "wan" in p.read_text(encoding="utf-8").lower()] == []
