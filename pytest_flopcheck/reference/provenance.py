"""What a reference count depends on, as data for the reference cache's key.

A count is reused only while everything it came from is unchanged:

- **code**: the source of every module a registered callable's code comes from. The callable is
  unwrapped (``functools.partial`` into its function and arguments, bound methods into their
  function and instance, callable objects into their class, decorated functions through
  ``__wrapped__``, closures and defaults into what they hold), and each module is followed
  through its imports (module level and inside functions alike) to every module of the same
  package tree: the same top-level package, or, for a top-level module such as a ``conftest.py``,
  the modules and packages beside it. Imports under ``if TYPE_CHECKING:`` are not followed.
- **data**: workloads, configurations and arguments as canonical JSON (attrs classes and
  dataclasses field by field). A value whose only description holds a memory address (a plain
  class without a ``__repr__``) would give a new key every run: :class:`UnstableKey` says so, and
  the caller counts without caching.
- **the framework's counting code**: :func:`framework_digest`, the source of the modules that
  count and track a reference run.
"""

from __future__ import annotations

import ast
import dataclasses
import enum
import functools
import hashlib
import importlib.util
import re
import sys
import types
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import attrs

_ADDRESS = re.compile(r" at 0x[0-9A-Fa-f]+")
COUNTING_MODULES = ("pytest_flopcheck.reference.counting",)
"""The framework's counting and tracking code starts here (its imports inside the framework are
followed)."""


class UnstableKey(Exception):
    """A key would hold something that differs between runs (a memory address)."""


def canonical(value: Any, _depth: int = 0) -> Any:
    """``value`` as plain JSON data that is the same in every run; UnstableKey otherwise.

    Callables and modules stand for their code (see :class:`CodeSet`), so describe them with
    :meth:`CodeSet.describe`; here they are named only."""
    if _depth > 50:
        raise UnstableKey("a value nested more than 50 levels deep")
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return repr(value)  # inf and nan stay distinct and JSON-safe
    if isinstance(value, enum.Enum):
        return {"enum": f"{type(value).__module__}.{type(value).__qualname__}", "name": value.name}
    if isinstance(value, Mapping):
        pairs = ([canonical(k, _depth + 1), canonical(v, _depth + 1)] for k, v in value.items())
        return {"mapping": sorted(pairs, key=repr)}
    if isinstance(value, list | tuple):
        return [canonical(item, _depth + 1) for item in value]
    if isinstance(value, set | frozenset):
        return {"set": sorted((canonical(item, _depth + 1) for item in value), key=repr)}
    if isinstance(value, types.ModuleType):
        return {"module": value.__name__}
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        return {"code": f"{getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}"}
    cls = type(value)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if attrs.has(cls):
        fields = {f.name: canonical(getattr(value, f.name), _depth + 1) for f in attrs.fields(cls)}
        return {"class": name, "fields": fields}
    if dataclasses.is_dataclass(value):
        fields = {f.name: canonical(getattr(value, f.name), _depth + 1) for f in dataclasses.fields(value)}
        return {"class": name, "fields": fields}
    text = repr(value)
    if _ADDRESS.search(text):
        raise UnstableKey(
            f"{_short(text)} (a {name} has no stable description: make it an attrs class or a dataclass, "
            "or give it a __repr__ without memory addresses)"
        )
    return {"class": name, "repr": text}


def _short(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


@attrs.define
class CodeSet:
    """The modules some callables' code comes from, followed through their imports."""

    modules: dict[str, Path | None] = attrs.field(factory=dict)

    def describe(self, value: Any, _depth: int = 0) -> Any:
        """``value`` as canonical data, its code added to this set: callables are unwrapped into
        the functions, classes and data they are made of."""
        if _depth > 20:
            raise UnstableKey("a callable wrapped more than 20 levels deep")
        if isinstance(value, functools.partial):
            return {
                "partial": self.describe(value.func, _depth + 1),
                "args": [self.describe(a, _depth + 1) for a in value.args],
                "keywords": {k: self.describe(v, _depth + 1) for k, v in sorted(value.keywords.items())},
            }
        if isinstance(value, types.MethodType):
            owner = value.__self__
            described = (
                {"class": f"{owner.__module__}.{owner.__qualname__}"}
                if isinstance(owner, type)
                else self.describe(owner, _depth + 1)
            )
            self.add_module(getattr(owner if isinstance(owner, type) else type(owner), "__module__", None))
            return {"method": self.describe(value.__func__, _depth + 1), "self": described}
        if isinstance(value, types.ModuleType):
            self.add_module(value.__name__)
            return {"module": value.__name__}
        if isinstance(value, type):
            self.add_module(value.__module__)
            return {"code": f"{value.__module__}.{value.__qualname__}"}
        if isinstance(value, types.FunctionType):
            wrapped = getattr(value, "__wrapped__", None)
            self.add_module(value.__module__)
            parts: dict[str, Any] = {"code": f"{value.__module__}.{value.__qualname__}"}
            held = [cell.cell_contents for cell in value.__closure__ or () if _filled(cell)]
            held += list(value.__defaults__ or ()) + list((value.__kwdefaults__ or {}).values())
            if held:
                parts["holds"] = [self.describe(item, _depth + 1) for item in held]
            if wrapped is not None:
                parts["wraps"] = self.describe(wrapped, _depth + 1)
            return parts
        if isinstance(value, types.BuiltinFunctionType | types.BuiltinMethodType):
            return {"builtin": f"{getattr(value, '__module__', None)}.{value.__qualname__}"}
        wrapped = getattr(value, "__wrapped__", None)
        if wrapped is not None and callable(value):  # functools.cache and friends
            return {"wraps": self.describe(wrapped, _depth + 1)}
        if callable(value) and not attrs.has(type(value)) and not dataclasses.is_dataclass(value):
            self.add_module(type(value).__module__)
            return {"callable": canonical(value, _depth + 1)}
        if callable(value):
            self.add_module(type(value).__module__)
        if isinstance(value, list | tuple):
            return [self.describe(item, _depth + 1) for item in value]
        if isinstance(value, Mapping):
            items = sorted(value.items(), key=lambda kv: repr(kv[0]))
            return {"mapping": [[canonical(k), self.describe(v, _depth + 1)] for k, v in items]}
        return canonical(value)

    def add_module(self, name: str | None) -> None:
        """``name`` and every module of its package tree it imports."""
        if not name or name in self.modules:
            return
        for found in _closure(name):
            self.modules.setdefault(found, _module_file(found))

    def digest(self) -> dict[str, str | None]:
        """Each module's source digest (None: no source file, so it cannot be told apart)."""
        return {name: _file_digest(path) for name, path in sorted(self.modules.items())}


def _filled(cell: Any) -> bool:
    try:
        cell.cell_contents  # noqa: B018
    except ValueError:
        return False
    return True


def code_key(*values: Any) -> dict[str, Any]:
    """Canonical data for ``values`` and the source digests of the code they come from;
    UnstableKey when some value cannot be described the same way in every run."""
    code = CodeSet()
    described = [code.describe(value) for value in values]
    digests = code.digest()
    unknown = [name for name, digest in digests.items() if digest is None]
    if unknown:
        raise UnstableKey(f"module {unknown[0]} has no source file, so an edit to it could not be noticed")
    return {"values": described, "sources": digests}


def forget_sources() -> None:
    """Read every source again: a run of pytest in a process that ran one before (pytester, an
    IDE) must see the files as they are now, so each run starts here."""
    for cached in (framework_digest, _file_digest, _closure, _sibling_directory, _imports, _is_module):
        cached.cache_clear()


@functools.cache
def framework_digest() -> str:
    """A digest of the framework's counting and tracking code (and what it imports)."""
    code = CodeSet()
    for name in COUNTING_MODULES:
        code.add_module(name)
    text = repr(sorted(code.digest().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# -- modules and their imports -------------------------------------------------------------------


def _module_file(name: str) -> Path | None:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if path is None:
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError, AttributeError):
            return None
        path = spec.origin if spec is not None and spec.has_location else None
    return Path(path) if path else None


@functools.cache
def _file_digest(path: Path | None) -> str | None:
    if path is None:
        return None
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    except OSError:
        return None


@functools.cache
def _closure(name: str) -> tuple[str, ...]:
    """``name`` and the modules of its package tree it imports, transitively."""
    scope = _Scope.of(name)
    seen: dict[str, None] = {}
    stack = [name]
    while stack:
        current = stack.pop()
        if current in seen:
            continue
        seen[current] = None
        found = (n for n in _imports(current) if n not in seen and scope.holds(n) and _is_module(n))
        stack.extend(sorted(found))
    return tuple(seen)


@attrs.frozen
class _Scope:
    """The package tree of a start module: its top-level package, or the modules and packages in
    the directory of a top-level module (a conftest's neighbours)."""

    top: str
    directory: Path | None

    @classmethod
    def of(cls, name: str) -> _Scope:
        top = name.partition(".")[0]
        module = sys.modules.get(top)
        if module is not None and hasattr(module, "__path__"):
            return cls(top, None)
        path = _module_file(name)
        return cls(top, path.parent.resolve() if path is not None and "." not in name else None)

    def holds(self, name: str) -> bool:
        top = name.partition(".")[0]
        if top == self.top:
            return True
        if self.directory is None:
            return False
        return _sibling_directory(top) == self.directory


@functools.cache
def _sibling_directory(top: str) -> Path | None:
    """The directory holding top-level module or package ``top`` (None if unknown)."""
    path = _module_file(top)
    if path is None:
        return None
    path = path.resolve()
    return path.parent.parent if path.name == "__init__.py" else path.parent


@functools.cache
def _imports(name: str) -> tuple[str, ...]:
    """The names ``name`` imports anywhere in its source, absolute: ``import a.b`` gives ``a.b``;
    ``from a import b`` gives ``a.b`` when that is a module, else ``a`` (whose ``__init__`` defines
    ``b``). A package's ``__init__`` is not followed when only its submodules are imported, so a
    model package's ``__init__`` that re-exports its analytic builders does not tie a reference to
    them."""
    path = _module_file(name)
    if path is None or path.suffix != ".py":
        return ()
    try:
        tree = ast.parse(path.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return ()
    module = sys.modules.get(name)
    package = getattr(module, "__package__", None) or (
        name if path.name == "__init__.py" else name.rpartition(".")[0]
    )
    found: list[str] = []
    for node in _walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(node.module, node.level, package)
            if base is None:
                continue
            for alias in node.names:
                submodule = f"{base}.{alias.name}"
                found.append(submodule if alias.name != "*" and _is_module(submodule) else base)
    return tuple(dict.fromkeys(found))


def _walk(tree: ast.AST) -> Iterable[ast.AST]:
    """Every node, leaving out ``if TYPE_CHECKING:`` blocks (imports for annotations only)."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        yield node
        stack.extend(ast.iter_child_nodes(node))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _resolve(module: str | None, level: int, package: str) -> str | None:
    if level == 0:
        return module
    parts = package.split(".") if package else []
    if level - 1 > len(parts):
        return None
    base = ".".join(parts[: len(parts) - (level - 1)])
    return f"{base}.{module}" if module and base else (module or base or None)


@functools.cache
def _is_module(name: str) -> bool:
    if name in sys.modules:
        return True
    parent = name.rpartition(".")[0]
    if parent and not _is_module(parent):
        return False
    if parent and not hasattr(sys.modules.get(parent), "__path__"):
        return False
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError, AttributeError):
        return False
