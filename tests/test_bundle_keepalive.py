"""Bundle answers carry an exact Content-Length: one connection serves many bundles, a member
that changes after its length was announced fails alone, and big downloads give their
connection back too. Real server on 127.0.0.1, traffic seen through a recording proxy."""

from __future__ import annotations

import base64
import io
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PASSWORDS
from synchelp import RecordingProxy
from test_bundle_server import bundle_body, md5

from davsync.client import bundle
from davsync.client.engine import RunOptions, run_once
from davsync.client.remote import Remote
from davsync.client.transfer import download
from davsync.client.transport import ConnectionSettings
from davsync.paxstream import PaxReader
from davsync.server import bundle as server_bundle


def conn(url: str) -> ConnectionSettings:
    return ConnectionSettings(url, "alice", PASSWORDS["alice"])


def write_tree(root: Path, n: int, size: int = 500) -> dict[str, bytes]:
    files = {f"album/pic {i:02} é.jpg": os.urandom(size + 97 * i) for i in range(n)}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


@pytest.fixture
def proxy(share):  # type: ignore[no-untyped-def]
    p = RecordingProxy(share.server.port)
    yield p
    p.close()


def test_consecutive_bundles_share_one_connection(
    share, proxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_tree(share.root, 40, size=200_000)  # each bundle larger than the client's read buffer
    share.wait_indexed()
    monkeypatch.setattr(bundle, "BATCH_FILES", 10)  # four bundles, one after the other on one worker
    monkeypatch.setattr(bundle, "WORKERS", 1)
    result = run_once(conn(proxy.url), tmp_path / "m", RunOptions())
    assert result.exit_code == 0, result.errors
    assert {rel: (tmp_path / "m" / rel).read_bytes() for rel in files} == files
    reports = [ex for ex in proxy.since(0) if ex.is_bundle]
    assert len(reports) == 4
    assert len({ex.conn for ex in reports}) == 1, [(ex.n, ex.conn) for ex in reports]


def _send_report(s: socket.socket, body: bytes) -> None:
    """A bundle REPORT written by hand, so the test sees exactly what the connection does."""
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode())
    s.sendall(b"REPORT / HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Basic " + auth +
              b"\r\nContent-Type: application/xml\r\nContent-Length: %d\r\n\r\n" % len(body) + body)  # fmt: skip


def _read_answer(s: socket.socket) -> tuple[dict[str, str], bytes]:
    f = s.makefile("rb")
    status = f.readline()
    assert status.startswith(b"HTTP/1.1 200"), status
    headers: dict[str, str] = {}
    while (line := f.readline()) not in (b"\r\n", b""):
        k, _, v = line.decode().partition(":")
        headers[k.strip().lower()] = v.strip()
    body = f.read(int(headers["content-length"]))
    return headers, body


def test_a_member_changed_after_its_length_was_announced_fails_alone_and_the_framing_holds(
    share, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_tree(share.root, 3)
    share.wait_indexed()
    names = sorted(files)
    victim = names[1]
    read_member: Callable[..., bytes] = server_bundle._read_member

    def grow_then_read(provider, folder, item):  # type: ignore[no-untyped-def]
        if item.rel == victim:  # a writer appends between the answer's head and this member
            with open(share.root / victim, "ab") as f:
                f.write(b"x" * 3000)
        return read_member(provider, folder, item)

    monkeypatch.setattr(server_bundle, "_read_member", grow_then_read)
    with socket.create_connection(("127.0.0.1", share.server.port), timeout=30) as s:
        _send_report(s, bundle_body(*names))
        headers, body = _read_answer(s)
        assert "close" not in headers.get("connection", "")
        assert len(body) == int(headers["content-length"])
        reader = PaxReader(io.BytesIO(body).read)
        got = []
        while (m := reader.next()) is not None:
            got.append((m.path, m.status, reader.data(m, 1 << 20) if m.status == 200 else None, m.attrs))
        assert reader.ended
        assert [(p, st) for p, st, _, _ in got] == [(names[0], 200), (victim, 409), (names[2], 200)]
        assert got[0][2] == files[names[0]] and got[2][2] == files[names[2]]
        assert got[0][3]["md5"] == md5(files[names[0]])
        # the same connection answers the next bundle (the framing held)
        monkeypatch.setattr(server_bundle, "_read_member", read_member)
        _send_report(s, bundle_body(victim))
        _, again = _read_answer(s)
    reader = PaxReader(io.BytesIO(again).read)
    m = reader.next()
    assert m is not None and m.status == 200 and reader.data(m, 1 << 20) == files[victim] + b"x" * 3000


def test_the_client_reports_a_member_changed_mid_stream_and_places_the_rest(
    share, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    files = write_tree(share.root, 12)
    share.wait_indexed()
    victim = sorted(files)[5]
    read_member: Callable[..., bytes] = server_bundle._read_member

    def grow_then_read(provider, folder, item):  # type: ignore[no-untyped-def]
        if item.rel == victim:
            with open(share.root / victim, "ab") as f:
                f.write(b"late")
        return read_member(provider, folder, item)

    monkeypatch.setattr(server_bundle, "_read_member", grow_then_read)
    dest = tmp_path / "m"
    result = run_once(conn(share.url), dest, RunOptions())
    # the member that changed mid-stream is listed and fetched again within the run (issue 24
    # item 14): the run ends with the server's new version, never with the torn one
    assert result.exit_code == 0 and not result.errors, result.errors
    placed = (dest / victim).read_bytes()
    assert placed.startswith(files[victim] + b"late") and placed == (share.root / victim).read_bytes()
    assert all((dest / rel).read_bytes() == data for rel, data in files.items() if rel != victim)
    monkeypatch.setattr(server_bundle, "_read_member", read_member)
    share.wait_indexed()
    result = run_once(conn(share.url), dest, RunOptions())
    assert result.exit_code == 0 and result.bytes_downloaded == 0, (result.errors, result.done)


def test_big_downloads_give_their_connection_back(share, proxy, tmp_path: Path) -> None:
    data = {name: os.urandom(5 * 1024 * 1024 + i) for i, name in enumerate(["a.bin", "b.bin"])}
    for name, body in data.items():
        (share.root / name).write_bytes(body)
    share.wait_indexed()
    remote = Remote(conn(proxy.url))
    try:
        state = tmp_path / "state"
        for name, body in data.items():
            entry = remote.stat(name)
            assert entry is not None
            got = download(remote, entry, state)
            assert got.size == len(body) and got.md5 == md5(body) and got.partial.read_bytes() == body
    finally:
        remote.close()
    exchanges = proxy.since(0)
    assert [ex.method for ex in exchanges] == ["PROPFIND", "GET", "PROPFIND", "GET"]
    assert len({ex.conn for ex in exchanges}) == 1, [(ex.method, ex.conn) for ex in exchanges]
