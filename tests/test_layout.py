"""The house (DESIGN.md "The three programs"): no import circles between modules, the agent imports
nothing of the console but ``fieldtui.protocol``, the console imports ``screens`` only where it opens the
app, and ``agent/`` holds its code in subpackages by concern. Read from the source text (ast), so a
circle hidden behind a function-level or TYPE_CHECKING import counts too."""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ROOTS = ("agent", "fieldtui", "screens")
# The one place the console opens the TUI (fieldtui/__init__.py's docstring says so).
SCREENS_ENTRY = {"fieldtui.cli.main"}
MAX_LOOSE_AGENT_MODULES = 12


def _modules() -> dict[str, Path]:
    mods = {}
    for root in ROOTS:
        for path in (REPO / root).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            mods[".".join(parts)] = path
    return mods


def _imports(mods: dict[str, Path]) -> dict[str, set[str]]:
    def resolve(name: str) -> str | None:
        while name and name not in mods:
            name = name.rpartition(".")[0]
        return name or None

    edges: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                names = [base] + [f"{base}.{a.name}" for a in node.names]
            else:
                continue
            for name in names:
                target = resolve(name)
                # a module importing its own package (or a parent) is how Python loads it, not a circle
                if target and target != mod and not mod.startswith(target + "."):
                    edges[mod].add(target)
    return edges


def _circles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


EDGES = _imports(_modules())


def test_no_import_circles():
    assert _circles(EDGES) == []


def test_the_agent_imports_only_the_protocol_of_the_console():
    reaching = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if m.split(".")[0] == "agent"
        for t in targets
        if t.split(".")[0] in ("fieldtui", "screens") and not t.startswith("fieldtui.protocol")
    )
    assert reaching == []


def test_the_console_opens_screens_only_at_its_entry_point():
    reaching = sorted(
        f"{m} -> {t}"
        for m, targets in EDGES.items()
        if m.split(".")[0] == "fieldtui" and m not in SCREENS_ENTRY
        for t in targets
        if t.split(".")[0] in ("screens", "agent")
    )
    assert reaching == []


def test_screens_never_import_the_agent():
    reaching = sorted(
        f"{m} -> {t}"
        for m, ts in EDGES.items()
        if m.startswith("screens")
        for t in ts
        if t.startswith("agent")
    )
    assert reaching == []


def test_the_agent_is_grouped_by_concern():
    loose = sorted(
        p.name for p in (REPO / "agent").glob("*.py") if p.name not in ("__init__.py", "__main__.py")
    )
    assert len(loose) <= MAX_LOOSE_AGENT_MODULES, loose


def test_the_circle_finder_finds_a_circle():
    """The check itself can fail: a two-module loop and a three-module loop are both reported."""
    edges = {"a": {"b"}, "b": {"a"}, "c": {"d"}, "d": {"e"}, "e": {"c"}, "f": {"a"}}
    assert sorted(_circles(edges)) == [["a", "b"], ["c", "d", "e"]]
