"""The upstream internals and behaviours davsync relies on are still there and unchanged.

davsync/upstream.py lists them (one registry for every dependency). When this fails after an
upgrade: read the upstream change to the named function, adapt our code that depends on it, then
update the fingerprint or signature in upstream.py.
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
from conftest import wait_until

from davsync import upstream
from davsync.server import app as server_app

PACKAGE = Path(upstream.__file__).parent
TESTS = Path(__file__).parent


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


def _contract(dotted: str) -> pytest.MarkDecorator:
    """The contract mark for the package that owns `dotted` ("wsgidav.x:Y.z" -> wsgidav)."""
    return pytest.mark.contract(dotted.split(":")[0].split(".")[0])


def _by_package(values: Any, dotted: Any) -> list[Any]:
    return [pytest.param(v, marks=_contract(dotted(v))) for v in values]


@pytest.mark.parametrize(
    "rel",
    _by_package([r for r in upstream.RELIANCES if not r.name.startswith("wsgidav.")], lambda r: r.owner),
    ids=lambda r: f"{r.owner}.{r.name}",
)
def test_every_internal_still_exists(rel: upstream.Reliance) -> None:
    owner = upstream.resolve(rel.owner)
    assert _attribute_exists(owner, rel.name), f"{rel.owner}.{rel.name} is gone: {rel.why}"


@pytest.mark.contract("wsgidav")
@pytest.mark.parametrize("rel", [r for r in upstream.RELIANCES if r.name.startswith("wsgidav.")], ids=lambda r: r.name)
def test_every_environ_key_is_still_used_upstream(rel: upstream.Reliance) -> None:
    """Upstream still reads or writes the key (a renamed key would leave ours dangling)."""
    package = Path(upstream.resolve("wsgidav").__file__).parent
    quoted = (f'"{rel.name}"', f"'{rel.name}'")
    assert any(q in p.read_text(encoding="utf-8") for p in package.rglob("*.py") for q in quoted), rel.name


@pytest.mark.parametrize("dotted", _by_package(sorted(upstream.FINGERPRINTS), str))
def test_code_we_copy_skip_or_replace_is_unchanged(dotted: str) -> None:
    got = upstream.source_fingerprint(upstream.resolve(dotted))
    assert got == upstream.FINGERPRINTS[dotted], (
        f"{dotted} changed upstream (fingerprint {got}): review the change against our code "
        f"(see davsync/upstream.py), then update its fingerprint"
    )


@pytest.mark.parametrize("dotted", _by_package(sorted(upstream.SIGNATURES), str))
def test_signatures_we_call_or_override(dotted: str) -> None:
    params = tuple(inspect.signature(upstream.resolve(dotted)).parameters)
    assert params == upstream.SIGNATURES[dotted], f"{dotted} now takes {params}"


@pytest.mark.contract("wsgidav")
def test_copy_or_move_still_uses_the_names_destination_py_rebinds() -> None:
    """destination.py swaps the globals `unquote` and `urlparse` of upstream's _copy_or_move."""
    names = upstream.resolve("wsgidav.request_server:RequestServer._copy_or_move").__code__.co_names
    assert "unquote" in names and "urlparse" in names


@pytest.mark.contract("wsgidav")
def test_file_resource_init_sets_only_what_ours_sets() -> None:
    """DavsyncFile skips FileResource.__init__: it must set every attribute that one sets."""
    source = inspect.getsource(upstream.resolve("wsgidav.fs_dav_provider:FileResource.__init__"))
    assert set(re.findall(r"self\.(\w+)\s*[:=]", source)) == {"_file_path", "file_stat", "name"}


# Our own attributes that happen to share a name with a private one somewhere in WsgiDAV or cheroot.
OWN_NAMES = {"_check", "_commit", "_db", "_lock", "_path", "_queue", "_run", "_share", "_worker"}
# The same, where the name is also an upstream one we use elsewhere (so it stays checked there).
OWN_IN = {("_fail", "client/upload_body.py")}


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
    """What each module touches that may be upstream's: private attributes, `getattr(x, "_name")`,
    names imported from a private module, `wsgidav.*` environ keys, and explicit
    `Base.__init__(self, ...)` calls (which skip an upstream __init__)."""
    uses: dict[str, set[str]] = {}
    for file, text in sources.items():
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.Attribute) and _private(node.attr):
                uses.setdefault(node.attr, set()).add(file)
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("wsgidav."):
                uses.setdefault(node.value, set()).add(file)
            elif _getattr_private(node):  # a private name reached by string: always upstream's or listed
                uses.setdefault(GETATTR + node.args[1].value, set()).add(file)  # type: ignore[attr-defined]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and _private_module(node.module or ""):
                for alias in node.names:
                    uses.setdefault(f"{node.module}.{alias.name}", set()).add(file)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "__init__"
                and isinstance(node.func.value, ast.Name)
            ):
                uses.setdefault("__init__", set()).add(file)
    return uses


GETATTR = "getattr:"


def _getattr_private(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in ("getattr", "hasattr", "setattr")
        and len(node.args) >= 2
        and isinstance(node.args[1], ast.Constant)
        and isinstance(node.args[1].value, str)
        and _private(node.args[1].value)
    )


def _private_module(module: str) -> bool:
    return not module.startswith("davsync") and any(_private(part) for part in module.split("."))


def unlisted(uses: dict[str, set[str]], upstream_names: frozenset[str]) -> set[tuple[str, str]]:
    """(name, module) pairs the registry does not list."""
    listed = {(_listed_name(r), f) for r in upstream.RELIANCES for f in r.used_in}
    ours = {
        n
        for n in uses
        if n.startswith(("wsgidav.", GETATTR)) or n == "__init__" or "." in n or (n in upstream_names - OWN_NAMES)
    }
    return {(n.removeprefix(GETATTR), f) for n in ours for f in uses[n]} - listed - OWN_IN


def _listed_name(rel: upstream.Reliance) -> str:
    """How the scan names a use: a name imported from a private module is "module.name"."""
    if ":" not in rel.owner and _private_module(rel.owner):
        return f"{rel.owner}.{rel.name}"
    return rel.name


def _sources() -> dict[str, str]:
    """Every davsync module but the registry, by its path relative to davsync/."""
    return {
        p.relative_to(PACKAGE).as_posix(): p.read_text(encoding="utf-8")
        for p in PACKAGE.rglob("*.py")
        if p.name != "upstream.py" or p.parent != PACKAGE
    }


@pytest.mark.contract("wsgidav", "cheroot")
def test_the_list_is_complete_and_exact() -> None:
    """Every use of an upstream internal is listed with its module, and every listed use is real."""
    uses = server_uses(_sources())
    missing = unlisted(uses, _upstream_private_names())
    assert not missing, f"upstream internals used but not listed in upstream.py: {sorted(missing)}"
    for rel in upstream.RELIANCES:
        for rel_path in rel.used_in:
            text = (PACKAGE / rel_path).read_text(encoding="utf-8")
            name = _listed_name(rel)
            users = uses.get(name, set()) | uses.get(GETATTR + name, set())
            found = rel_path in users if _private(name) or "." in name else rel.name in text
            assert found, f"upstream.py says {rel_path} uses {rel.name}; it no longer does"


def test_own_names_are_ours() -> None:
    """The names excused as coincidences are assigned by our own code (so the excuse stays true)."""
    sources = _sources()
    for name in OWN_NAMES:
        assert any(re.search(rf"self\.{name}\s*[:=]|def {name}\(", t) for t in sources.values()), name
    for name, module in OWN_IN:
        assert re.search(rf"self\.{name}\s*[:=]|def {name}\(", sources[module]), (name, module)


@pytest.mark.contract("wsgidav")
def test_the_completeness_check_catches_an_unlisted_use() -> None:
    fake = {
        "new.py": "def f(server, environ):\n    server._davProvider\n    return environ['wsgidav.some_key']\n",
        "skip.py": "class F(FileResource):\n    def __init__(self):\n        DAVNonCollection.__init__(self)\n",
        "client.py": "from typer._internal import thing\n\ndef g(resp):\n    return getattr(resp.raw, '_fp2', None)\n",
    }
    got = unlisted(server_uses(fake), _upstream_private_names())
    assert got == {
        ("_davProvider", "new.py"),
        ("wsgidav.some_key", "new.py"),
        ("__init__", "skip.py"),
        ("typer._internal.thing", "client.py"),
        ("_fp2", "client.py"),
    }


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


# --- watchdog (davsync/fswatch.py) -----------------------------------------------------------------
# Until 7.1.0 the server patched watchdog's inotify watch bookkeeping; 7.1.1 fixed both bugs
# below upstream, so davsync uses watchdog's own Observer. These prove the fixes stay fixed.


def _watch(root: Path) -> tuple[Any, list[tuple[str, str]]]:
    from watchdog.events import FileSystemEventHandler
    from watchdog.observers import Observer

    seen: list[tuple[str, str]] = []

    class Handler(FileSystemEventHandler):
        def on_any_event(self, event: Any) -> None:
            seen.append((event.event_type, os.fsdecode(event.src_path)))

    observer = Observer()
    observer.schedule(Handler(), str(root), recursive=True)
    observer.start()
    return observer, seen


@pytest.mark.contract("watchdog")
def test_watchdog_stops_cleanly_after_a_watched_folder_was_replaced(tmp_path: Path) -> None:
    """watchdog 7.1.0 raised KeyError from Observer.stop() once a watched folder was moved out and
    another moved to its path (the server does this when a folder is deleted and restored), and
    its emitter thread never ended."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    observer, seen = _watch(root)
    for d in ("s", "t"):  # s is watched first, so its watch is removed first at stop
        (root / d).mkdir()
        (root / d / f"in-{d}").write_bytes(b"x")  # an event from inside: the folder is watched
        wait_until(lambda: any(p.endswith(f"in-{d}") for _, p in seen), 10, "watchdog to watch the new folder")
    os.rename(root / "t", outside / "t")
    os.rename(root / "s", root / "t")
    (root / "t" / "marker").write_bytes(b"")
    wait_until(lambda: any(p.endswith("marker") for _, p in seen), 10, "watchdog to catch up")
    observer.stop()  # raised KeyError in 7.1.0
    observer.join(timeout=10)
    assert not observer.is_alive()


@pytest.mark.contract("watchdog")
def test_watchdog_forgets_a_folder_moved_out_of_the_tree(tmp_path: Path) -> None:
    """A folder moved out of the share (into the versions area) must not go on reporting events
    as if it were still inside; moved back, its files are seen again. watchdog 7.1.0 kept the old
    watch following the inode and reported later writes under the folder's old path."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "d").mkdir(parents=True)
    outside.mkdir()
    observer, seen = _watch(root)
    try:
        (root / "d" / "first").write_bytes(b"x")
        wait_until(lambda: any(p.endswith("first") for _, p in seen), 10, "watchdog to watch d")
        os.rename(root / "d", outside / "d")
        (outside / "d" / "ghost").write_bytes(b"written outside the tree")
        (root / "beacon").write_bytes(b"")  # an event after the ghost's, inside the tree
        wait_until(lambda: any(p.endswith("beacon") for _, p in seen), 10, "watchdog to see the beacon")
        assert not any(p.endswith("ghost") for _, p in seen), seen
        os.rename(outside / "d", root / "d")
        (root / "d" / "back").write_bytes(b"x")
        wait_until(lambda: any(p.endswith("back") for _, p in seen), 10, "watchdog to watch d again")
    finally:
        observer.stop()
        observer.join(timeout=10)


@pytest.mark.contract("watchdog")
def test_the_server_watcher_leaves_no_inotify_instance_behind() -> None:
    """Each inotify instance counts against a per-user limit (128 by default): a server that
    leaked one per start (an observer made and never run) ran out of them within one test run."""
    pytest.importorskip("watchdog.observers.inotify")
    from davsync.fswatch import new_observer, stop_observer

    def inotify_fds() -> int:
        fds = Path("/proc/self/fd")
        return sum(1 for fd in fds.iterdir() if _link(fd) == "anon_inode:inotify")

    before = inotify_fds()
    for _ in range(5):
        observer = new_observer()
        observer.start()
        stop_observer(observer)
    assert inotify_fds() == before


def _link(fd: Path) -> str:
    try:
        return os.readlink(fd)
    except OSError:
        return ""


# --- urllib3 (davsync/client/transport.py, BodyReader) ----------------------------------------------


@pytest.mark.contract("urllib3", "requests")
def test_a_streamed_answer_still_exposes_http_clients_response_as_fp() -> None:
    """BodyReader reads a download straight into its buffer through urllib3's private `_fp` (the
    http.client response under it); without it every download falls back to urllib3's copies."""
    import http.server
    import threading

    import requests

    from davsync.client.deadline import WATCHDOG
    from davsync.client.transport import BodyReader

    body = os.urandom(100_000)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        with requests.get(f"http://127.0.0.1:{server.server_address[1]}/", stream=True, timeout=10) as resp:
            deadline = lambda: WATCHDOG.step(60)  # noqa: E731  (each step of the read, as the transport gives)
            reader = BodyReader(resp, lambda e: AssertionError(e), "test", deadline)  # type: ignore[arg-type,return-value]
            assert reader._direct is not None, "urllib3 no longer exposes its http.client response as _fp"
            buffer = bytearray(len(body) + 10)
            got = reader.fill(memoryview(buffer))
        assert bytes(buffer[:got]) == body
    finally:
        server.shutdown()
        server.server_close()


# --- pathspec (davsync/client/filters.py) ----------------------------------------------------------


@pytest.mark.contract("pathspec")
def test_exclude_patterns_keep_gitignore_meaning(tmp_path: Path) -> None:
    """--exclude and .davsyncignore are documented as gitignore syntax; pathspec's "gitignore"
    pattern style gives it (the older "gitwildmatch" name is deprecated since pathspec 1.0)."""
    import warnings

    from davsync.client.filters import Filter

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        filt = Filter.load(tmp_path, ["*.tmp", "!keep.tmp", "build/", "/top.txt", "docs/**/draft*"])
    assert filt.excluded("a.tmp", False) and filt.excluded("sub/b.tmp", False)
    assert not filt.excluded("keep.tmp", False)  # a later negation wins
    assert filt.excluded("build", True) and filt.excluded("x/build", True) and not filt.excluded("build", False)
    assert filt.excluded("top.txt", False) and not filt.excluded("sub/top.txt", False)
    assert filt.excluded("docs/a/b/draft1.md", False) and not filt.excluded("docs/final.md", False)
