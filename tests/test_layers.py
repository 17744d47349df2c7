"""The package's shape: no import cycles (function-level imports included), stage order,
and no module over 400 lines or function over 60."""

from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "ldmprobe"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60
#: Stages in data-flow order; a module may import its own stage and earlier ones only.
#: Top-level modules (errors, resources, records, the package itself) are the foundation.
STAGES = ["store", "specs", "models", "engine", "analysis", "results", "render", "usecases", "cli"]
#: Other engineers' modules that this shape does not yet cover.
IGNORED = ("ldmprobe.reference",)
#: Functions allowed over the limit, at their length (a ratchet: none today).
LONG_FUNCTIONS: dict[str, int] = {}


@functools.cache  # read once per session: the package does not change while tests run
def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        if not name.startswith(IGNORED):
            found[name] = path
    return found


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """Every ldmprobe module ``name`` imports, at any depth of the file (functions too)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


@functools.cache
def _graph() -> dict[str, set[str]]:
    modules = _modules()
    # importing ldmprobe.x.y runs ldmprobe and ldmprobe.x first: a package's own __init__ is not an edge
    return {name: {t for t in _imports(name, path, modules) if not name.startswith(t + ".")}
            for name, path in modules.items()}


def _stage(name: str) -> int:
    parts = name.split(".")
    if len(parts) > 2 or (len(parts) == 2 and parts[1] in STAGES):
        return STAGES.index(parts[1]) if parts[1] in STAGES else len(STAGES)
    return -1  # foundation: ldmprobe, ldmprobe.errors, ldmprobe.resources, ldmprobe.records, ...


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle in ``graph`` (depth-first, in name order), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_no_import_cycles():
    planted = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(planted) == ["a", "b", "c", "a"]  # the finder finds one
    assert _find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_stages_import_only_earlier_stages():
    graph = _graph()
    upward = [f"{name} -> {target}" for name, targets in graph.items() for target in targets
              if name not in ("ldmprobe", "ldmprobe.api", "ldmprobe.__main__") and _stage(target) > _stage(name)]
    assert not upward, "imports against the data flow:\n" + "\n".join(sorted(upward))


def test_no_module_over_400_lines():
    long = {name: n for name, path in _modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_60_lines():
    long = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = node.end_lineno - node.lineno + 1
                qualified = f"{name}.{node.name}"
                if length > LONG_FUNCTIONS.get(qualified, MAX_FUNCTION_LINES):
                    long[qualified] = length
                elif qualified in LONG_FUNCTIONS and length <= MAX_FUNCTION_LINES:
                    long[qualified] = f"{length} (now short: remove it from LONG_FUNCTIONS)"
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_the_graph_sees_function_level_imports():
    graph = _graph()
    # ldmprobe.cli.main registers the commands inside a function
    assert "ldmprobe.cli.sweep" in graph["ldmprobe.cli.main"]
