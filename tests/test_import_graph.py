"""davsync's modules import each other without cycles, function-level imports included.

A cycle hidden in a function body still ties two modules into one concept to understand and to
change; imports under `if TYPE_CHECKING:` are left out (they never run). (The server's
provider, request server and change feed once imported each other, one import hidden in a
function to dodge the circle.)
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).parent.parent / "davsync"


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement that can run: at module level or in a function, not under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def import_graph(sources: dict[str, tuple[str, bool]]) -> dict[str, set[str]]:
    """module -> the davsync modules it imports. `sources`: module -> (text, is a package)."""
    graph: dict[str, set[str]] = {}
    for module, (text, is_package) in sources.items():
        deps: set[str] = set()
        for node in _runtime_imports(ast.parse(text)):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = module.split(".") if is_package else module.split(".")[:-1]
                if node.level:
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join([*base, *([node.module] if node.module else [])])
                else:
                    origin = node.module or ""
                submodules = [f"{origin}.{a.name}" for a in node.names if f"{origin}.{a.name}" in sources]
                # `from . import sub` needs the submodule only; a name defined in `origin` needs origin
                targets = submodules + ([origin] if len(submodules) < len(node.names) else [])
            deps.update(t for t in targets if t in sources and t != module)
        graph[module] = deps
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    groups: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            group = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                group.append(w)
                if w == v:
                    break
            if len(group) > 1:
                groups.append(sorted(group))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return groups


def _sources() -> dict[str, tuple[str, bool]]:
    return {
        _module_name(p): (p.read_text(encoding="utf-8"), p.name == "__init__.py") for p in PACKAGE.rglob("*.py")
    }


def test_no_import_cycles() -> None:
    sources = _sources()
    assert {"davsync.client.plan.table", "davsync.client.plan.twoway", "davsync.cli.main"} <= set(sources)
    found = cycles(import_graph(sources))
    assert not found, "modules that import each other (directly or around a loop): " + "; ".join(
        " <-> ".join(group) for group in found
    )


def test_the_check_sees_a_cycle_in_a_function_body_but_not_under_type_checking() -> None:
    sources = {
        "davsync.a": ("from . import b\n", False),
        "davsync.b": ("def f():\n    from .a import x\n", False),
        "davsync.c": ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .d import y\n", False),
        "davsync.d": ("from .c import z\n", False),
        "davsync.pkg": ("from .sub import s\n", True),
        "davsync.pkg.sub": ("from ..a import q\nfrom . import other\n", False),
        "davsync.pkg.other": ("", False),
    }
    assert cycles(import_graph(sources)) == [["davsync.a", "davsync.b"]]
    assert import_graph(sources)["davsync.pkg.sub"] == {"davsync.a", "davsync.pkg.other"}


def test_each_module_imports_alone() -> None:
    """Each module, imported first in a fresh interpreter state, loads: an import order that happens
    to work in the suite cannot hide a circle or a missing import."""
    names = sorted(n for n in _sources() if not n.endswith(".__main__"))  # __main__ runs the command
    script = (
        "import importlib, sys\n"
        f"for name in {names!r}:\n"
        "    for loaded in [m for m in sys.modules if m == 'davsync' or m.startswith('davsync.')]:\n"
        "        del sys.modules[loaded]\n"
        "    importlib.import_module(name)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]


def test_every_module_is_under_600_lines() -> None:
    """A module a newcomer reads in one sitting (issue 26); split by concept when one grows past it."""
    sizes = {p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8").count("\n") for p in PACKAGE.rglob("*.py")}
    assert len(sizes) > 100 and not {m: n for m, n in sizes.items() if n > 600}
