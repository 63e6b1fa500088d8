"""The framework stays model-agnostic."""

from __future__ import annotations

from pathlib import Path

import pytest_flopcheck


def test_the_framework_never_mentions_a_model_package() -> None:
    sources = sorted(Path(pytest_flopcheck.__file__).parent.rglob("*.py"))
    assert sources
    for model in ("wan", "deepseek"):
        assert [p.name for p in sources if model in p.read_text(encoding="utf-8").lower()] == [], model


ROOT = Path(__file__).resolve().parents[2]
CPU_INDEX = "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0"


def test_ci_runs_the_readme_test_command_with_torchs_cpu_index() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    commands = [line for line in readme.splitlines() if line.startswith("python3 -m venv .venv")][:2]
    assert len(commands) == 2
    assert all(CPU_INDEX in command for command in commands)
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert commands[1] in ci.splitlines()
    workflow = (ROOT / ".github" / "workflows" / "flopcheck.yml").read_text(encoding="utf-8")
    assert CPU_INDEX in workflow
    pixi = (ROOT / "pixi.toml").read_text(encoding="utf-8")
    assert 'torch = { version = "==2.13.0", index = "https://download.pytorch.org/whl/cpu" }' in pixi
    assert "[project]" not in pixi  # pixi's deprecated table name
    assert ".pixi/" in (ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
