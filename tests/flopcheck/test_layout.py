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


# -- the public surface for model authors ---------------------------------------------------------

MODEL_CODE = ("wan_models", "deepseek_models", "benchmarks", "tests/flopcheck/toy_model.py")


def framework_imports(roots: tuple[str, ...]) -> list[tuple[str, str, str]]:
    """(file, module, name) of every import from pytest_flopcheck in these packages or files."""
    import ast

    found = []
    for root in roots:
        path = ROOT / root
        for source in [path] if path.suffix == ".py" else sorted(path.rglob("*.py")):
            for node in ast.walk(ast.parse(source.read_text(encoding="utf-8"))):
                if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pytest_flopcheck"):
                    found += [(source.name, node.module or "", alias.name) for alias in node.names]
                elif isinstance(node, ast.Import):
                    found += [
                        (source.name, a.name, "") for a in node.names if a.name.startswith("pytest_flopcheck")
                    ]
    return found


def test_model_packages_and_benchmarks_use_only_the_public_api() -> None:
    outside = [
        (file, module, name)
        for file, module, name in framework_imports(MODEL_CODE)
        if module != "pytest_flopcheck" or name not in pytest_flopcheck.__all__
    ]
    assert outside == []


def test_the_public_api_is_what_model_packages_use_and_the_readme_lists() -> None:
    import typing

    import attrs

    from pytest_flopcheck.model.registration import ModelRegistration

    used = {name for _, _, name in framework_imports(MODEL_CODE)}
    # The types of a registration's fields are public even where no package here fills them in.
    hints = typing.get_type_hints(ModelRegistration)
    field_types = {
        name
        for name in pytest_flopcheck.__all__
        for f in attrs.fields(ModelRegistration)
        if name in str(hints[f.name])
    }
    assert set(pytest_flopcheck.__all__) == used | field_types
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    api = readme.partition("## API for model authors")[2].partition("\n## ")[0]
    assert [name for name in pytest_flopcheck.__all__ if f"`{name}" not in api] == []
