"""No request reaches outside ROOT: dot segments, encodings, NUL, symlinks, COPY/MOVE destinations."""

from __future__ import annotations

import base64
import http.client
import os
from pathlib import Path

import pytest
from conftest import PASSWORDS

SECRET = b"TOPSECRET-outside-the-share"
AUTH = {"Authorization": "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()}

PROBES = [
    "/../outside/secret.txt",
    "/%2e%2e/outside/secret.txt",
    "/%2E%2E/%2E%2E/outside/secret.txt",
    "/sub/..%2f..%2foutside%2fsecret.txt",
    "/sub/%2e%2e/%2e%2e/outside/secret.txt",
    "/..%5coutside%5csecret.txt",
    "//..//outside/secret.txt",
    "/%00",
    "/sub/a%00b",
    "/link/secret.txt",
    "/link",
    "/filelink",
    "/" + "a" * 300,
    "/%ff%fe.txt",
]


@pytest.fixture
def jail(share, tmp_path: Path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_bytes(SECRET)
    (share.root / "sub").mkdir()
    (share.root / "inside.txt").write_text("inside")
    os.symlink(outside, share.root / "link")
    os.symlink(outside / "secret.txt", share.root / "filelink")
    return share, outside


def raw(share, method: str, path: str, headers: dict | None = None, body: bytes | None = None):
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    try:
        conn.putrequest(method, path, skip_accept_encoding=True)
        for k, v in {**AUTH, **(headers or {})}.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body or b"")))
        conn.endheaders(body)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


@pytest.mark.parametrize("probe", PROBES)
def test_read_probes_never_leak(jail, probe: str) -> None:
    share, _ = jail
    for method in ("GET", "PROPFIND", "HEAD"):
        status, body = raw(share, method, probe, {"Depth": "1"})
        assert SECRET not in body
        assert status in (400, 403, 404, 414), (method, probe, status)


@pytest.mark.parametrize("probe", PROBES[:7])
def test_write_probes_stay_inside(jail, tmp_path: Path, probe: str) -> None:
    share, outside = jail
    before = sorted(os.listdir(outside)), sorted(os.listdir(tmp_path))
    target = probe.replace("secret.txt", "pwned.txt")
    for method in ("PUT", "MKCOL", "DELETE"):
        status, _ = raw(share, method, target, body=b"pwned" if method == "PUT" else None)
        assert status < 500, (method, target, status)
    assert (sorted(os.listdir(outside)), sorted(os.listdir(tmp_path))) == before
    assert (outside / "secret.txt").read_bytes() == SECRET


@pytest.mark.parametrize(
    "destination",
    [
        "/../pwned.txt",
        "/%2e%2e/pwned.txt",
        "/%2e%2e/outside/pwned.txt",
        "/link/pwned.txt",
        "/link",
        "/filelink",
        "http://elsewhere.invalid/pwned.txt",
    ],
)
def test_copy_move_destination_outside(jail, tmp_path: Path, destination: str) -> None:
    share, outside = jail
    before = sorted(os.listdir(outside)), sorted(os.listdir(tmp_path))
    if destination.startswith("/"):
        destination = f"http://127.0.0.1:{share.server.port}{destination}"
    for method in ("COPY", "MOVE"):
        status, _ = raw(share, method, "/inside.txt", {"Destination": destination, "Overwrite": "T"})
        assert status < 500 or status == 502, (method, destination, status)
    assert (sorted(os.listdir(outside)), sorted(os.listdir(tmp_path))) == before
    assert (outside / "secret.txt").read_bytes() == SECRET


def test_symlinks_are_not_listed(jail) -> None:
    share, _ = jail
    status, body = raw(share, "PROPFIND", "/", {"Depth": "1"})
    assert status == 207
    assert b"/link" not in body and b"filelink" not in body and b"inside.txt" in body


def test_root_cannot_be_deleted_or_moved(jail) -> None:
    share, _ = jail
    for method, headers in (("DELETE", {}), ("MOVE", {"Destination": f"http://127.0.0.1:{share.server.port}/sub/x/"})):
        status, _ = raw(share, method, "/", headers)
        assert status == 403
    assert (share.root / "inside.txt").exists()


# A sibling of ROOT whose name starts with ROOT's name (WsgiDAV fixed this containment bug in
# its own _loc_to_file_path in 4.3.4; ours replaces that function, so it must hold on its own).
SIBLING_SECRET = b"TOPSECRET-in-the-sibling-folder"
SIBLING_PROBES = [
    "/../root_evil/secret.txt",  # raw
    "/%2e%2e/root_evil/secret.txt",  # percent-encoded dots
    "/%2E%2e/root_evil/secret.txt",  # mixed case
    "/..%2froot_evil%2fsecret.txt",  # encoded slashes
    "/%2e%2e%2froot_evil%2fsecret.txt",  # everything encoded
    "/%252e%252e/root_evil/secret.txt",  # double-encoded dots
    "/%252e%252e%252froot_evil%252fsecret.txt",  # double-encoded dots and slashes
    "/..%5croot_evil%5csecret.txt",  # encoded backslashes
    "/..\\root_evil\\secret.txt",  # raw backslashes
    "/sub/../../root_evil/secret.txt",  # from a subfolder
    "/sub/%2e%2e/..%2f%2e%2e/root_evil/secret.txt",  # mixed encodings
    "/sub/..%5c..%2froot_evil/secret.txt",  # mixed separators
    "/../root_evil",  # the folder itself (a listing would name the secret)
    "/%2e%2e/root_evil/",
]


@pytest.fixture
def sibling(share):
    evil = share.root.parent / (share.root.name + "_evil")
    evil.mkdir()
    (evil / "secret.txt").write_bytes(SIBLING_SECRET)
    (share.root / "sub").mkdir()
    (share.root / "inside.txt").write_text("inside")
    return share, evil


@pytest.mark.parametrize("probe", SIBLING_PROBES)
def test_sibling_prefix_probes_never_leak(sibling, probe: str) -> None:
    share, evil = sibling
    assert evil.name == "root_evil"  # the probes name it
    for method in ("GET", "PROPFIND", "HEAD"):
        status, body = raw(share, method, probe, {"Depth": "1"})
        assert SIBLING_SECRET not in body, (method, probe, status)
        assert status in (400, 403, 404), (method, probe, status)  # no 200/207: nothing served or listed


@pytest.mark.parametrize("probe", SIBLING_PROBES[:12])
def test_sibling_prefix_writes_stay_inside(sibling, probe: str) -> None:
    share, evil = sibling
    target = probe.replace("secret.txt", "pwned.txt")
    for method in ("PUT", "MKCOL", "DELETE"):
        status, _ = raw(share, method, target, body=b"pwned" if method == "PUT" else None)
        assert status < 500, (method, target, status)
    for method in ("COPY", "MOVE"):
        destination = f"http://127.0.0.1:{share.server.port}{target}"
        status, _ = raw(share, method, "/inside.txt", {"Destination": destination, "Overwrite": "T"})
        assert status < 500 or status == 502, (method, destination, status)
    assert sorted(os.listdir(evil)) == ["secret.txt"]
    assert (evil / "secret.txt").read_bytes() == SIBLING_SECRET
