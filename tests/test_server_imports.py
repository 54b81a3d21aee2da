"""The server's modules import without a circle, so each can be read, tested and changed alone.

provider.py, request_server.py and sync.py used to import each other (one import hidden inside
a function to dodge the circle). The graph here includes such function-level imports; imports
under `if TYPE_CHECKING:` are left out (they never run).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import davsync

PACKAGE = "davsync.server"
SERVER = Path(davsync.__file__).parent / "server"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            stack.extend(node.orelse)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def server_import_graph(folder: Path = SERVER) -> dict[str, set[str]]:
    """module name -> the davsync.server modules it imports (at any depth of its code)."""
    modules = {p.stem for p in folder.glob("*.py") if p.stem != "__init__"}
    graph: dict[str, set[str]] = {}
    for name in sorted(modules):
        tree = ast.parse((folder / f"{name}.py").read_text(encoding="utf-8"))
        targets: set[str] = set()
        for node in _runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets |= {a.name.removeprefix(PACKAGE + ".") for a in node.names if a.name.startswith(PACKAGE + ".")}
                continue
            if node.level == 1 or (node.level == 0 and node.module and node.module.startswith(PACKAGE)):
                base = node.module.removeprefix(PACKAGE).lstrip(".") if node.level == 0 else node.module
                if base:  # from .x import y / from davsync.server.x import y
                    targets.add(base.split(".")[0])
                else:  # from . import x
                    targets |= {a.name for a in node.names}
        graph[name] = (targets & modules) - {name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None when the graph is acyclic."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_server_import_graph_has_no_cycle() -> None:
    graph = server_import_graph()
    assert {"provider", "request_server", "sync", "index", "multistatus"} <= graph.keys()
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_check_finds_a_circle_hidden_in_a_function(tmp_path: Path) -> None:
    """What the old provider -> sync -> provider circle looked like (so a pass means something)."""
    (tmp_path / "a.py").write_text("from .b import x\n")
    (tmp_path / "b.py").write_text("def f():\n    from .c import y\n")
    (tmp_path / "c.py").write_text("from typing import TYPE_CHECKING\nfrom . import a\n")
    (tmp_path / "d.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import z\n")
    graph = server_import_graph(tmp_path)
    assert graph["d"] == set()
    assert find_cycle(graph) == ["a", "b", "c", "a"]


def test_each_server_module_imports_alone() -> None:
    """Each module, imported first in a clean interpreter state, loads (an import order cannot hide a circle)."""
    names = sorted(p.stem for p in SERVER.glob("*.py") if p.stem != "__init__")
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'davsync' or m.startswith('davsync.')]:\n"
        "        del sys.modules[loaded]\n"
        f"    importlib.import_module('{PACKAGE}.' + name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
