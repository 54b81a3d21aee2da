"""The WsgiDAV and cheroot internals davsync relies on are still there and unchanged.

davsync/server/upstream.py lists them. When this fails after an upgrade: read the upstream change
to the named function, adapt our code that depends on it, then update the fingerprint or signature
in upstream.py.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from typing import Any

import pytest

from davsync.server import app as server_app
from davsync.server import upstream

SERVER = Path(upstream.__file__).parent


def _attribute_exists(owner: Any, name: str) -> bool:
    """A class attribute, or one its __init__ assigns (instance attributes are not on the class)."""
    if hasattr(owner, name):
        return True
    for klass in inspect.getmro(owner):
        init = klass.__dict__.get("__init__")
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


def test_the_list_is_complete_and_current() -> None:
    """Each reliance is used where it says, and every wsgidav environ key our server uses is listed."""
    for rel in upstream.RELIANCES:
        for rel_path in rel.used_in:
            assert rel.name in (SERVER / rel_path).read_text(encoding="utf-8"), (rel.name, rel_path)
    listed = {r.name for r in upstream.RELIANCES}
    used = {m for p in SERVER.glob("*.py") for m in re.findall(r"[\"'](wsgidav\.[\w.]+)[\"']", p.read_text())}
    assert used <= listed, f"unlisted wsgidav environ keys: {sorted(used - listed)}"


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
