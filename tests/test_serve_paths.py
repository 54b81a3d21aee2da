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
