"""The executor reaches the server and the local folder only through its two seams
(davsync/client/sides.py: ServerSide, LocalSide), so an in-memory server (tests/fakeserver.py)
can stand in for the share in the fast model; nothing in it talks HTTP or the filesystem itself."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

from fakeserver import FakeServer

import davsync
from davsync.client import sides

CLIENT = Path(davsync.__file__).parent / "client"
EXECUTOR = [CLIENT / "execute.py", CLIENT / "steps.py", CLIENT / "uploads.py"]  # the executor's modules
# What only the sides may call: transfers, placements, trash, renames, raw filesystem calls.
BYPASSES = {"download", "place", "move_to_trash", "keep_as_conflict", "stat_entry", "put_file", "remember"}


def _calls(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            f = node.func
            if isinstance(f, ast.Name):
                names.add(f.id)
            elif isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name):
                names.add(f"{f.value.id}.{f.attr}")
    return names


def test_the_executor_goes_through_its_sides() -> None:
    for module in EXECUTOR:
        tree = ast.parse(module.read_text(encoding="utf-8"))
        calls = _calls(tree)
        assert not calls & BYPASSES, (module.name, calls & BYPASSES)
        assert not {c for c in calls if c.split(".")[0] in ("os", "osfs", "delta", "resume", "shutil")}, module.name
        imported = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert not imported & {"os", "shutil", "requests"}, module.name
        assert "ctx.remote." not in module.read_text(encoding="utf-8"), module.name


def test_the_fake_and_the_real_server_side_offer_the_same_calls() -> None:
    wanted = {n for n, _ in inspect.getmembers(sides.ServerSide, inspect.isfunction) if not n.startswith("_")}
    for side in (sides.DavServer, FakeServer):
        for name in wanted:
            got = getattr(side, name, None)
            assert got is not None, f"{side.__name__} lacks {name}"
            want_params = list(inspect.signature(getattr(sides.ServerSide, name)).parameters)
            assert list(inspect.signature(got).parameters) == want_params, (side.__name__, name)


def test_the_disk_offers_every_local_call() -> None:
    wanted = {n for n, _ in inspect.getmembers(sides.LocalSide, inspect.isfunction) if not n.startswith("_")}
    assert wanted and all(callable(getattr(sides.Disk, n, None)) for n in wanted)
