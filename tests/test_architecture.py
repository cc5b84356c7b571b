"""The layering of the package, checked from the source: no import cycle, no reach into another module's privates.

``lint-imports`` (the ``layers`` contract in pyproject.toml) checks the allowed direction
between layers; these tests add what it does not: function-level imports count for
cycles, and a private name (``x._name``, ``from m import _name``) may only be used in the
module that defines it. The one import that points up the layers is ``Vault.sync()``'s
lazy hook into the optional ``vault.sync`` package.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import vault

ROOT = Path(vault.__file__).parent
#: The one allowed upward import: Vault.sync() loads the optional sync package on first use.
ALLOWED_UPWARD = {("vault._vault", "vault.sync")}
#: Underscore names that are documented public API of the standard library.
STDLIB_PUBLIC = frozenset({"_exit", "_replace", "_asdict", "_fields", "_make", "_current_frames"})


def _modules() -> dict[str, Path]:
    out: dict[str, Path] = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST) -> Iterator[ast.AST]:
    """Every node that can run, skipping ``if TYPE_CHECKING:`` bodies (type-only imports)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def _package_of(module: str, path: Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _imports(module: str, path: Path) -> set[str]:
    """The vault modules ``module`` imports at run time (top level or inside functions)."""
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    package = _package_of(module, path)
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.split(".")[0] == "vault")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "vault":
                continue
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    # Importing a submodule runs its packages' __init__ first; they are nodes of their own.
    return {m for m in found if m in MODULES and m != module}


def _graph() -> dict[str, set[str]]:
    return {
        module: {m for m in _imports(module, path) if (module, m) not in ALLOWED_UPWARD}
        for module, path in MODULES.items()
    }


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append([*stack[stack.index(nxt):], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_no_import_cycle_counting_function_level_imports() -> None:
    # The package __init__ re-exports the public API; every module below it is imported from it,
    # so edges *into* the root package would make every module a cycle with it.
    graph = {m: {t for t in targets if t != "vault"} for m, targets in _graph().items()}
    assert _cycles(graph) == []


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _defined_private_names(tree: ast.AST) -> set[str]:
    """Private names a module defines itself: functions, classes, assignments, attributes it sets."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.alias) and node.asname:
            names.add(node.asname)
        elif isinstance(node, (ast.AnnAssign,)) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.isidentifier():
            names.add(node.value)  # __slots__ entries
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__")) and name not in STDLIB_PUBLIC


def _is_module_name(package: str, name: str) -> bool:
    return f"{package}.{name}" in MODULES


def test_no_module_reaches_into_another_modules_privates() -> None:
    found: list[str] = []
    for module, path in MODULES.items():
        package = _package_of(module, path)
        tree = ast.parse(path.read_text(), str(path))
        own = _defined_private_names(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _private(node.attr) and node.attr not in own:
                # ``_format.corrupt`` is a public name of a private module; ``x._name`` is a reach.
                found.append(f"{module}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    target = ".".join(base + ([node.module] if node.module else []))
                else:
                    target = node.module or ""
                for alias in node.names:
                    if _private(alias.name) and not _is_module_name(target, alias.name):
                        found.append(f"{module}:{node.lineno}: from {target} import {alias.name}")
    assert found == []


def test_the_reach_finder_sees_a_reach(tmp_path: Path) -> None:
    src = "def f(v):\n    return v._engine\n\nclass A:\n    def __init__(self):\n        self._x = 1\n"
    tree = ast.parse(src)
    own = _defined_private_names(tree)
    attrs = [n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)]
    reaches = [a for a in attrs if _private(a) and a not in own]
    assert reaches == ["_engine"]
