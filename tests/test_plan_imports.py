"""The planning core is a package of small modules (issue 26): each under 400 lines. (No import
circle among them, function-level imports included: tests/test_import_graph.py checks all of
davsync.)"""

from __future__ import annotations

from pathlib import Path

import davsync

PLAN = Path(davsync.__file__).parent / "client" / "plan"


def test_every_plan_module_is_under_400_lines() -> None:
    sizes = {p.name: len(p.read_text(encoding="utf-8").splitlines()) for p in PLAN.glob("*.py")}
    assert len(sizes) >= 10 and not {name: n for name, n in sizes.items() if n >= 400}
