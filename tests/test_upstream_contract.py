"""The WsgiDAV and cheroot internals davsync relies on are still there and unchanged.

davsync/server/upstream.py lists them. When this fails after an upgrade: read the upstream change
to the named function, adapt our code that depends on it, then update the fingerprint or signature
in upstream.py.
"""

from __future__ import annotations

import ast
import functools
import inspect
import os
import re
from pathlib import Path
from typing import Any

import pytest

from davsync.server import app as server_app
from davsync.server import upstream

SERVER = Path(upstream.__file__).parent


def _attribute_exists(owner: Any, name: str) -> bool:
    """A class attribute, or one its __init__ (or prepare, for cheroot's server) assigns (instance
    attributes are not on the class)."""
    if hasattr(owner, name):
        return True
    for klass in inspect.getmro(owner):
        for method in ("__init__", "prepare"):
            init = klass.__dict__.get(method)
            if init is not None and re.search(rf"self\.{re.escape(name)}\s*[:=]", inspect.getsource(init)):
                return True
    return False


@pytest.mark.parametrize(
    "rel", [r for r in upstream.RELIANCES if not r.name.startswith("wsgidav.")], ids=lambda r: f"{r.owner}.{r.name}"
)
def test_every_internal_still_exists(rel: upstream.Reliance) -> None:
    owner = upstream.resolve(rel.owner)
    assert _attribute_exists(owner, rel.name), f"{rel.owner}.{rel.name} is gone: {rel.why}"


@pytest.mark.parametrize("rel", [r for r in upstream.RELIANCES if r.name.startswith("wsgidav.")], ids=lambda r: r.name)
def test_every_environ_key_is_still_used_upstream(rel: upstream.Reliance) -> None:
    """Upstream still reads or writes the key (a renamed key would leave ours dangling)."""
    package = Path(upstream.resolve("wsgidav").__file__).parent
    quoted = (f'"{rel.name}"', f"'{rel.name}'")
    assert any(q in p.read_text(encoding="utf-8") for p in package.rglob("*.py") for q in quoted), rel.name


@pytest.mark.parametrize("dotted", sorted(upstream.FINGERPRINTS))
def test_code_we_copy_skip_or_replace_is_unchanged(dotted: str) -> None:
    got = upstream.source_fingerprint(upstream.resolve(dotted))
    assert got == upstream.FINGERPRINTS[dotted], (
        f"{dotted} changed upstream (fingerprint {got}): review the change against our code "
        f"(see davsync/server/upstream.py), then update its fingerprint"
    )


@pytest.mark.parametrize("dotted", sorted(upstream.SIGNATURES))
def test_signatures_we_call_or_override(dotted: str) -> None:
    params = tuple(inspect.signature(upstream.resolve(dotted)).parameters)
    assert params == upstream.SIGNATURES[dotted], f"{dotted} now takes {params}"


def test_copy_or_move_still_uses_the_names_destination_py_rebinds() -> None:
    """destination.py swaps the globals `unquote` and `urlparse` of upstream's _copy_or_move."""
    names = upstream.resolve("wsgidav.request_server:RequestServer._copy_or_move").__code__.co_names
    assert "unquote" in names and "urlparse" in names


def test_file_resource_init_sets_only_what_ours_sets() -> None:
    """DavsyncFile skips FileResource.__init__: it must set every attribute that one sets."""
    source = inspect.getsource(upstream.resolve("wsgidav.fs_dav_provider:FileResource.__init__"))
    assert set(re.findall(r"self\.(\w+)\s*[:=]", source)) == {"_file_path", "file_stat", "name"}


# Our own attributes that happen to share a name with a private one somewhere in WsgiDAV or cheroot.
OWN_NAMES = {"_db", "_lock", "_run", "_worker"}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


@functools.cache
def _upstream_private_names() -> frozenset[str]:
    """Every private name WsgiDAV and cheroot define (functions, classes, attributes they assign)."""
    names: set[str] = set()
    for package in ("wsgidav", "cheroot"):
        for path in Path(upstream.resolve(package).__file__).parent.rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                    names.add(node.name)
                elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                    names.add(node.attr)
                elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                    names.add(node.id)
    return frozenset(n for n in names if _private(n))


def server_uses(sources: dict[str, str]) -> dict[str, set[str]]:
    """What each module touches that may be upstream's: private attributes, `wsgidav.*` environ
    keys, and explicit `Base.__init__(self, ...)` calls (which skip an upstream __init__)."""
    uses: dict[str, set[str]] = {}
    for file, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                uses.setdefault(node.attr, set()).add(file)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("wsgidav."):
                uses.setdefault(node.value, set()).add(file)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "__init__"
                and isinstance(node.func.value, ast.Name)
            ):
                uses.setdefault("__init__", set()).add(file)
    return uses


def unlisted(uses: dict[str, set[str]], upstream_names: frozenset[str]) -> set[tuple[str, str]]:
    """(name, module) pairs the registry does not list."""
    listed = {(r.name, f) for r in upstream.RELIANCES for f in r.used_in}
    ours = {n for n in uses if n.startswith("wsgidav.") or n == "__init__" or (n in upstream_names - OWN_NAMES)}
    return {(n, f) for n in ours for f in uses[n]} - listed


def _server_sources() -> dict[str, str]:
    return {p.name: p.read_text(encoding="utf-8") for p in SERVER.glob("*.py") if p.name != "upstream.py"}


def test_the_list_is_complete_and_exact() -> None:
    """Every use of an upstream internal is listed with its module, and every listed use is real."""
    uses = server_uses(_server_sources())
    missing = unlisted(uses, _upstream_private_names())
    assert not missing, f"upstream internals used but not listed in upstream.py: {sorted(missing)}"
    for rel in upstream.RELIANCES:
        for rel_path in rel.used_in:
            text = (SERVER / rel_path).read_text(encoding="utf-8")
            found = rel_path in uses.get(rel.name, set()) if _private(rel.name) else rel.name in text
            assert found, f"upstream.py says {rel_path} uses {rel.name}; it no longer does"


def test_own_names_are_ours() -> None:
    """The names excused as coincidences are assigned by our own code (so the excuse stays true)."""
    sources = _server_sources()
    for name in OWN_NAMES:
        assert any(re.search(rf"self\.{name}\s*[:=]|def {name}\(", t) for t in sources.values()), name


def test_the_completeness_check_catches_an_unlisted_use() -> None:
    fake = {
        "new.py": "def f(server, environ):\n    server._davProvider\n    return environ['wsgidav.some_key']\n",
        "skip.py": "class F(FileResource):\n    def __init__(self):\n        DAVNonCollection.__init__(self)\n",
    }
    got = unlisted(server_uses(fake), _upstream_private_names())
    assert got == {("_davProvider", "new.py"), ("wsgidav.some_key", "new.py"), ("__init__", "skip.py")}


def test_the_check_catches_a_change(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fingerprint is sensitive to a code change (so a pass means something)."""

    def changed(self: Any, environ: dict, start_response: Any, is_move: bool) -> None:
        return None

    assert (
        upstream.source_fingerprint(changed)
        != upstream.FINGERPRINTS["wsgidav.request_server:RequestServer._copy_or_move"]
    )


class _Body:
    """What a request server returns: a body that must be closed (PEP 3333)."""

    def __init__(self) -> None:
        self.closed = False

    def __iter__(self) -> Any:
        return iter([b"one", b"two"])

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("read_all", [True, False], ids=["read-to-the-end", "client-went-away"])
def test_resolver_closes_the_app_iter(monkeypatch: pytest.MonkeyPatch, read_all: bool) -> None:
    bodies: list[_Body] = []

    class Server:
        def __init__(self, provider: Any, **kw: Any) -> None:
            pass

        def __call__(self, environ: dict, start_response: Any) -> _Body:
            bodies.append(_Body())
            return bodies[-1]

    monkeypatch.setattr(server_app, "DavsyncRequestServer", Server)
    resolver = server_app._Resolver(None, None, {"davsync": {"allow_infinite_depth": False}})
    out = resolver({"wsgidav.provider": object()}, lambda *a: None)
    if read_all:
        assert b"".join(out) == b"onetwo"
    else:
        assert next(iter(out)) == b"one"
        out.close()  # what cheroot does when the client disconnects mid-body
    assert bodies and bodies[0].closed


def test_watchdog_inotify_internals_tree_observer_reaches_into_are_still_there() -> None:
    """The server's watcher (fswatch.tree_observer) drops the watches of folders moved out of the
    share using watchdog 7.1's inotify internals; on another layout it falls back to watchdog's
    plain Observer, and this fails so that we look again."""
    pytest.importorskip("watchdog.observers.inotify")
    from watchdog.observers.inotify import InotifyEmitter, InotifyObserver, InotifyWatchGroup

    from davsync.fswatch import _written_against, stop_observer, tree_observer

    assert _written_against(InotifyWatchGroup, InotifyEmitter, InotifyObserver)
    observer = tree_observer()
    observer.start()  # (an InotifyObserver holds an inotify instance until its thread stops)
    try:
        assert observer._emitter_class is not InotifyEmitter
    finally:
        stop_observer(observer)


def test_the_server_watcher_leaves_no_inotify_instance_behind() -> None:
    """Each inotify instance counts against a per-user limit (128 by default): a server that
    leaked one per start (an observer made and never run) ran out of them within one test run."""
    pytest.importorskip("watchdog.observers.inotify")
    from davsync.fswatch import stop_observer, tree_observer

    def inotify_fds() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _link(fd) == "anon_inode:inotify")

    before = inotify_fds()
    for _ in range(5):
        observer = tree_observer()
        observer.start()
        stop_observer(observer)
    assert inotify_fds() == before


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""
