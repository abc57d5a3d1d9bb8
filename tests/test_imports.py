"""The package's shape: no import cycle between reactlab's modules (lazy imports inside functions
count too: they run the moment the function does; so do ``TYPE_CHECKING`` ones: a circle of types is
a circle of concepts), no layer imports a higher one (``LAYERS``), the runner never imports
``budget``, production code never imports the scripted test double or the tests, and importing
the package does no heavy work."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import reactlab

SRC = Path(reactlab.__file__).resolve().parent
PACKAGE = "reactlab"


def _module_name(path: Path) -> str:
    rel = path.relative_to(SRC.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {_module_name(p): p for p in SRC.rglob("*.py")}


def imports_of(path: Path, name: str, known: set[str], typing: bool = True) -> set[str]:
    """The reactlab modules ``path`` imports anywhere in its body (``from a import b`` counts as
    ``a.b`` when that is a module, else ``a``); ``typing``: False skips ``TYPE_CHECKING`` blocks."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_pkg = path.name == "__init__.py"
    out: set[str] = set()
    skip: set[int] = set()
    for node in ast.walk(tree):
        if not typing and isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip |= {id(n) for child in node.body for n in ast.walk(child)}
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            for a in node.names:
                out.add(f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod)
    return {m for m in out if m in known and m != name}


def import_graph(typing: bool = True) -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(path, name, known, typing) for name, path in mods.items()}


LAYERS = (
    ("types",),
    ("io", "errors", "paths", "hardware", "progress", "isolate"),
    ("models", "weights", "wiki"),
    ("llm", "envs", "tasks"),
    ("agents",),
    ("config",),  # above agents: RunConfig carries each agent's options record (agents.AgentOptions)
    ("report", "runner"),
    ("evaluate",),
    ("data",),
    ("train",),
    ("export", "budget", "viewer", "serve"),
    ("demo", "demo_report", "demo_mcq"),
    ("cli",),
)
"""reactlab's parts, low to high: a module may import its own layer and lower ones, never a higher one."""

UPWARD_EXCEPTIONS: dict[tuple[str, str], str] = {}
"""Known upward imports, each with why (none now); a new one fails the test."""


def layer_of(module: str) -> int:
    """The index in ``LAYERS`` of a module's part (``reactlab.agents.react`` -> the ``agents`` layer)."""
    part = module.split(".")[1]
    return next(i for i, names in enumerate(LAYERS) if part in names)


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path ``[a, b, ..., a]``, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return [*stack[stack.index(m):], m]
            if m not in state and (found := visit(m)):
                return found
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_import_graph_is_acyclic():
    graph = import_graph()  # TYPE_CHECKING imports count
    assert len(graph) > 40
    assert "reactlab.runner" in graph["reactlab.cli"]  # imported inside the command function: seen too
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph) or [])


def test_find_cycle_sees_a_circle_of_types_only():
    graph = import_graph(typing=False)
    graph["reactlab.types"] = {"reactlab.runner"}  # as if types imported the runner for a hint
    assert find_cycle(graph) is not None


def test_every_part_has_a_layer():
    parts = {m.split(".")[1] for m in modules() if m != PACKAGE}
    assert parts == {p for names in LAYERS for p in names}, parts ^ {p for names in LAYERS for p in names}


def test_no_layer_imports_a_higher_one():
    graph = import_graph()
    upward = sorted((m, d) for m, deps in graph.items() if m != PACKAGE for d in deps
                    if d != PACKAGE and layer_of(d) > layer_of(m))
    assert [e for e in upward if e not in UPWARD_EXCEPTIONS] == []
    assert set(UPWARD_EXCEPTIONS) <= set(upward), "an exception that no longer happens: remove it"
    assert layer_of("reactlab.budget.schedule") > layer_of("reactlab.runner")


def test_the_runner_never_imports_budget():
    graph = import_graph()
    assert graph["reactlab.runner"] and not {d for d in graph["reactlab.runner"] if d.startswith("reactlab.budget")}


def test_nothing_imports_the_cli_the_test_double_or_the_tests():
    graph = import_graph()
    for name, deps in graph.items():
        assert "reactlab.cli" not in deps or name == "reactlab.__main__", f"{name} imports reactlab.cli"
        if name != "reactlab.llm.scripted":
            assert "reactlab.llm.scripted" not in deps, f"{name} imports the scripted test double"
    for path in SRC.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "from tests" not in text and "import tests" not in text, path


def test_importing_the_package_and_its_command_loads_no_heavy_library():
    code = ("import sys, reactlab.cli, reactlab.runner, reactlab.types, reactlab.config, reactlab.train.cli; "
            "print(sorted(m for m in ('torch', 'transformers', 'trl', 'peft', 'llama_cpp', 'jittor') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
