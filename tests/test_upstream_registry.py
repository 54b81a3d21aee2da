"""davsync/upstream.py is the one registry of what davsync relies on upstream, and it is exact.

Every contract test in the suite is named there (so `python -m tests.drift` and a reader see the
same list), every test it names exists and carries its package's mark, and each package it names
is a dependency. The behaviour tests of keyring, zeroconf, webdavclient3 and pystray live here.
"""

from __future__ import annotations

import ast
import inspect
import re
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest

from davsync import upstream

TESTS = Path(__file__).parent
TOP = TESTS.parent


def _marked_contract_tests() -> dict[str, set[str]]:
    """'tests/test_x.py::test_name' -> the packages of its literal `pytest.mark.contract(...)`."""
    found: dict[str, set[str]] = {}
    for path in sorted(TESTS.glob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for deco in node.decorator_list:
                if (
                    isinstance(deco, ast.Call)
                    and isinstance(deco.func, ast.Attribute)
                    and deco.func.attr == "contract"
                ):
                    packages = {a.value for a in deco.args if isinstance(a, ast.Constant)}
                    found.setdefault(f"tests/{path.name}::{node.name}", set()).update(packages)
    return found


# The registry's own checks: they are contract tests over RELIANCES, not behaviours.
REGISTRY_CHECKS = {
    "tests/test_upstream_contract.py::test_every_environ_key_is_still_used_upstream",
    "tests/test_upstream_contract.py::test_the_list_is_complete_and_exact",
    "tests/test_upstream_contract.py::test_the_completeness_check_catches_an_unlisted_use",
}


def test_every_contract_test_is_in_the_registry_and_every_named_test_exists() -> None:
    marked = _marked_contract_tests()
    named = {t: b.package for b in upstream.BEHAVIOURS for t in b.tests}
    unnamed = set(marked) - set(named) - REGISTRY_CHECKS
    assert not unnamed, f"contract tests missing from BEHAVIOURS in davsync/upstream.py: {sorted(unnamed)}"
    for test, package in named.items():
        assert test in marked, f"upstream.py names {test}: no such test marked contract"
        assert package in marked[test], f"{test} is not marked contract({package!r})"


def test_the_registry_names_only_dependencies_and_real_modules() -> None:
    project = tomllib.loads((TOP / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    declared = {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower() for r in project["dependencies"]}
    assert set(upstream.packages()) <= declared, set(upstream.packages()) - declared
    for behaviour in upstream.BEHAVIOURS:
        for module in behaviour.used_in:
            assert (TOP / "davsync" / module).is_file(), f"{behaviour.package}: no davsync/{module}"


def test_the_registry_check_sees_an_unmarked_or_missing_test(tmp_path: Path) -> None:
    """The exactness check reads marks from the source, so it can fail: a contract test in a file
    it scans shows up, with its packages."""
    marked = _marked_contract_tests()
    assert marked["tests/test_upstream_registry.py::test_zeroconf_takes_the_record_discovery_publishes"] == {
        "zeroconf"
    }
    assert "tests/test_upstream_registry.py::test_the_registry_check_sees_an_unmarked_or_missing_test" not in marked


# --- keyring (client/credentials.py) ----------------------------------------------------------------


@pytest.mark.contract("keyring")
def test_keyring_reports_no_store_and_missing_passwords(tmp_path: Path) -> None:
    import keyring
    from keyring.backends import fail
    from keyring.errors import KeyringError, NoKeyringError, PasswordDeleteError

    from davsync.client import credentials

    assert issubclass(NoKeyringError, KeyringError) and issubclass(PasswordDeleteError, KeyringError)
    before = keyring.get_keyring()
    try:
        keyring.set_keyring(fail.Keyring())
        assert not credentials.store_available()
        with pytest.raises(credentials.NoCredentialStore):
            credentials.save_password("https://pi.local/", "ann", "secret")
        assert credentials.load_password("https://pi.local/", "ann") is None

        from keyrings.alt.file import PlaintextKeyring

        store = PlaintextKeyring()
        store.file_path = str(tmp_path / "keyring.cfg")  # type: ignore[misc]
        keyring.set_keyring(store)
        assert credentials.store_available()
        assert credentials.delete_password("https://pi.local/", "ann") is False  # PasswordDeleteError
        credentials.save_password("https://pi.local/", "ann", "secret")
        assert credentials.load_password("https://pi.local/", "ann") == "secret"
        assert credentials.delete_password("https://pi.local/", "ann") is True
    finally:
        keyring.set_keyring(before)


# --- zeroconf (server/discovery.py) -----------------------------------------------------------------


@pytest.mark.contract("zeroconf")
def test_zeroconf_takes_the_record_discovery_publishes() -> None:
    from zeroconf import Zeroconf

    from davsync.server.discovery import SERVICE_TYPE, service_info

    info = service_info("photos", 8080, ["192.168.1.20"], path="/share/")
    assert info.type == SERVICE_TYPE and info.port == 8080
    assert info.properties[b"path"] == b"/share/"
    assert info.parsed_addresses() == ["192.168.1.20"]
    assert "interfaces" in inspect.signature(Zeroconf).parameters


# --- webdavclient3 (client/transport.py) ------------------------------------------------------------


@pytest.mark.contract("webdavclient3")
def test_webdavclient3_client_holds_what_the_transport_reads() -> None:
    import requests

    from davsync.client.transport import ConnectionSettings, Transport

    t = Transport(ConnectionSettings(url="http://127.0.0.1:9/share/", user="ann", password="pw", timeout=7))
    assert t.user == "ann"
    assert t.client.webdav.hostname.rstrip("/") == "http://127.0.0.1:9/share"
    assert t.client.webdav.timeout == 7
    assert isinstance(t.client.session, requests.Session)
    assert t.session() is t.client.session  # the first thread reuses the library's session


# --- pystray (app/tray.py) --------------------------------------------------------------------------


@pytest.mark.contract("pystray")
def test_pystray_takes_what_the_tray_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checked on the classes' signatures: building an Icon needs a desktop session, which the
    tray tests have (Xvfb on Linux, the Windows lane)."""
    fresh = "pystray" not in sys.modules
    if fresh:  # its backend is chosen at import: the dummy one needs no desktop (and is dropped after)
        monkeypatch.setenv("PYSTRAY_BACKEND", "dummy")
    try:
        pystray: Any = pytest.importorskip("pystray", reason="pystray is the `tray` extra on Linux")
        # the base class (a backend's Icon, once another test imported one, takes *args, **kwargs)
        base = next(c for c in pystray.Icon.__mro__ if c.__module__ == "pystray._base")
        icon = inspect.signature(base.__init__).parameters
        assert list(icon)[:5] == ["self", "name", "icon", "title", "menu"]
        item = inspect.signature(pystray.MenuItem.__init__).parameters
        assert {"text", "action", "checked", "default"} <= set(item)
        for name in ("icon", "title"):
            prop = inspect.getattr_static(base, name)
            assert isinstance(prop, property) and prop.fset is not None, f"Icon.{name} can no longer be set"
        assert callable(pystray.Icon.run_detached) and callable(pystray.Icon.stop)
    finally:
        if fresh:
            for module in [m for m in sys.modules if m == "pystray" or m.startswith("pystray.")]:
                del sys.modules[module]
