"""The planning core is a package of small modules (issue 26): each under 400 lines, and no import
circle among them (function-level imports included), so each concept reads and changes alone."""

from __future__ import annotations

from pathlib import Path

from test_server_imports import find_cycle, server_import_graph

import davsync

PLAN = Path(davsync.__file__).parent / "client" / "plan"


def test_the_plan_package_has_no_import_circle() -> None:
    graph = server_import_graph(PLAN)
    assert {"table", "model", "twoway", "pull", "renames", "guards"} <= set(graph)
    cycle = find_cycle(graph)
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_circle_finder_sees_a_function_level_import(tmp_path: Path) -> None:
    (tmp_path / "a.py").write_text("from . import b\n")
    (tmp_path / "b.py").write_text("def f():\n    from .a import x\n")
    assert find_cycle(server_import_graph(tmp_path)) == ["a", "b", "a"]


def test_every_plan_module_is_under_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PLAN.glob("*.py")}
    assert len(sizes) >= 10 and not {name: n for name, n in sizes.items() if n >= 400}
