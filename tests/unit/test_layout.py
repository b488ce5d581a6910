"""The package's shape: what each module exports, and which modules stay pure.

Both tests read the source with ``ast`` instead of importing it, so they see every import,
including those inside functions, and never run a module (``stockade.__main__`` would).
"""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import stockade

MODULES = sorted(m.name for m in pkgutil.walk_packages(stockade.__path__, "stockade."))
MODULES.insert(0, "stockade")

#: Modules of plain, synchronous logic (house style: "the ledger takes ``now`` as an argument;
#: no trio, clock or I/O inside it").
PURE = {
    "stockade.engine.allocation",
    "stockade.engine.cartplan",
    "stockade.engine.changes",
    "stockade.engine.commands",
    "stockade.engine.holders",
    "stockade.engine.ledger",
    "stockade.engine.locations",
    "stockade.engine.models",
    "stockade.engine.orders",
    "stockade.engine.rules",
    "stockade.engine.storage",
    "stockade.engine.validation",
    "stockade.errors",
    "stockade.persistence.books",
}
#: Everything outside stockade a pure module may import: nothing that does I/O, blocks or
#: schedules (no trio, asyncio, threading, sqlite3, asyncpg, socket, os, io, time...).
PURE_IMPORTS = {
    "__future__", "collections", "datetime", "re", "typing", "msgspec",
    "math", "bisect", "heapq", "itertools", "functools", "operator", "enum", "dataclasses",
}  # fmt: skip
#: The modules that may touch asyncio (the rest of stockade runs on trio).
ASYNCIO_MODULES = {
    "stockade._asyncio",
    "stockade.embedding.aio",
    "stockade.outbound.brokers",
    "stockade.persistence.postgres",
}
_TYPEVARS = {"TypeVar", "ParamSpec", "TypeVarTuple"}


def _tree(module: str) -> ast.Module:
    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    return ast.parse(Path(spec.origin).read_text(), spec.origin)


def _defined(tree: ast.Module) -> set[str]:
    """Names bound at module level by ``def``, ``class`` or an assignment (also inside a
    top-level ``if``/``try``), except TypeVar-likes: what the module itself defines."""
    names: set[str] = set()

    def visit(body: list[ast.stmt]) -> None:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
            elif isinstance(node, ast.Assign | ast.AnnAssign):
                value = node.value
                if isinstance(value, ast.Call) and getattr(value.func, "id", "") in _TYPEVARS:
                    continue
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            elif isinstance(node, ast.If | ast.Try):
                visit(node.body)
                visit(node.orelse)
                for handler in getattr(node, "handlers", []):
                    visit(handler.body)

    visit(tree.body)
    return names


def _declared_all(tree: ast.Module) -> list[str] | None:
    for node in tree.body:
        target = node.targets[0] if isinstance(node, ast.Assign) else getattr(node, "target", None)
        if isinstance(target, ast.Name) and target.id == "__all__":
            assert isinstance(node, ast.Assign | ast.AnnAssign) and node.value is not None
            value = ast.literal_eval(node.value)
            assert isinstance(value, list), "__all__ must be a literal list"
            return value
    return None


def _imports(tree: ast.Module) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0 and node.module is not None, "use absolute imports"
            found.add(node.module)
    return found


@pytest.mark.parametrize("module", [m for m in MODULES if not m.endswith(".__main__")])
def test_all_is_exactly_what_the_module_defines(module):
    """Every module (``__main__`` is a script, never imported) has a literal ``__all__``
    naming only what it defines itself, never what it imports (a name kept at an old home
    is re-exported with ``import X as X``, not listed), except the ``stockade`` facade,
    which exports its imports (pinned in test_public_api.py). Outside ``stockade.api``,
    ``__all__`` also names *every* public name the module defines, so nothing is public by
    accident. ``stockade.api`` is exempt from that half: its modules register route
    handlers and blueprints at import time (Quart makes endpoint names of the functions,
    and the OpenAPI document component names of its schema classes), which are neither API
    nor private helpers."""
    tree = _tree(module)
    exported = _declared_all(tree)
    assert exported is not None, f"{module} has no __all__"
    assert len(set(exported)) == len(exported), "a name listed twice"
    if module == "stockade":
        assert set(exported) <= {n for n in vars(stockade) if not n.startswith("_")}
        return
    defined = {name for name in _defined(tree) if not name.startswith("_")}
    assert not set(exported) - defined, "listed but not defined here"
    if not module.startswith("stockade.api"):
        assert not defined - set(exported), "defined here, public, and not in __all__"


def _closure(module: str, seen: set[str]) -> set[str]:
    """``module`` and every stockade module it imports, transitively (their own imports;
    the packages' ``__init__`` are the facade and not counted)."""
    if module in seen:
        return seen
    seen.add(module)
    for name in _imports(_tree(module)):
        if name.startswith("stockade."):
            _closure(name, seen)
    return seen


@pytest.mark.parametrize("module", sorted(PURE))
def test_the_pure_core_does_no_io(module):
    """A pure module, and every stockade module it imports, import nothing outside
    PURE_IMPORTS and stockade: no trio, asyncio, sqlite3, asyncpg, socket or other I/O."""
    for reached in _closure(module, set()):
        assert reached in PURE, f"{module} imports {reached}, which is not pure"
        foreign = {name for name in _imports(_tree(reached)) if not name.startswith("stockade.")}
        assert {name.split(".")[0] for name in foreign} <= PURE_IMPORTS, (reached, foreign)


def test_layers_point_one_way():
    """engine/ imports neither api/, persistence/ nor embedding/; asyncio appears only in
    the PostgreSQL store, the asyncio handle, the asyncio loop thread they and the sinks
    share, and the brokers' publishers that run on it (house style)."""
    upper = ("stockade.api", "stockade.persistence", "stockade.embedding", "stockade._")
    for module in MODULES:
        imports = _imports(_tree(module))
        if module.startswith("stockade.engine."):
            upward = {name for name in imports if name.startswith(upper)}
            assert not upward, (module, upward)
        if any(name.split(".")[0] == "asyncio" for name in imports):
            assert module in ASYNCIO_MODULES, module
