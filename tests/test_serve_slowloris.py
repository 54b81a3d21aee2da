"""Idle and trickling connections must not hold the server's workers (issue 23 item 3).

A connection that never sends a byte, or sends its headers a byte at a time, waits in
the server's selector; only a complete request head reaches a worker. The attackers
connect from 127.0.0.2 and 127.0.0.3, the user from 127.0.0.1 (one address each, as
on the internet). Goals and figures for 1,000 sockets: tests/bench/slowloris.py.
"""

from __future__ import annotations

import contextlib
import resource
import socket
from collections.abc import Iterator

import pytest
import requests
from conftest import PASSWORDS, wait_until

IDLE = 200
TRICKLING = 60


def open_sockets(port: int, count: int, source: str) -> list[socket.socket]:
    out = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
        out.append(s)
    return out


@pytest.fixture
def enough_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = 4 * (IDLE + TRICKLING) + 512  # both ends live in this process
    if hard != resource.RLIM_INFINITY and hard < need:
        pytest.skip(f"the file-descriptor limit ({hard}) is too low for {need} sockets")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def served(share) -> bool:
    r = share.request("GET", "hello.txt", timeout=10)
    return r.status_code == 200 and r.content == b"hello"


def test_idle_and_trickling_connections_do_not_block_a_get(share, enough_fds: None) -> None:
    (share.root / "hello.txt").write_bytes(b"hello")
    port = share.server.port
    held: list[socket.socket] = []
    try:
        held += open_sockets(port, IDLE, "127.0.0.2")  # never send a byte
        trickling = open_sockets(port, TRICKLING, "127.0.0.3")
        held += trickling
        for s in trickling:  # a request head that never ends
            s.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: a")
        # far more than the server's 40 workers are now held open; a user is still served
        assert served(share)
        with requests.Session() as s:  # and a keep-alive user keeps its connection
            s.auth = ("alice", PASSWORDS["alice"])
            for _ in range(3):
                assert s.get(share.url + "hello.txt", timeout=10).content == b"hello"
        # a head that arrives in pieces is still answered once it is complete
        slow = trickling[0]
        for piece in (b"bc\r\n", b"Authorization: Basic ", _basic(), b"\r\n", b"\r\n"):
            slow.sendall(piece)
        slow.settimeout(10)
        answer = _read_answer(slow)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]
    finally:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


def test_one_address_cannot_take_every_connection(share, enough_fds: None) -> None:
    """Past the per-address cap, a new connection from that address is closed at once."""
    from davsync.server.connguard import PER_ADDRESS

    (share.root / "hello.txt").write_bytes(b"hello")
    held = open_sockets(share.server.port, PER_ADDRESS + 40, "127.0.0.2")
    try:

        def closed_by_server() -> int:
            n = 0
            for s in held:
                s.setblocking(False)
                try:
                    n += s.recv(1) == b""
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    n += 1
            return n

        wait_until(lambda: closed_by_server() >= 40, 20, "the connections past the cap to be closed")
        assert closed_by_server() <= 40 + 2  # the rest stay open (not all of them dropped)
        assert served(share)
    finally:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


def _basic() -> bytes:
    import base64

    return base64.b64encode(f"alice:{PASSWORDS['alice']}".encode())


def _read_answer(s: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


def test_an_unread_body_is_not_waited_for(share, enough_fds: None) -> None:
    """A request refused before its body is read (here: no login) is answered at once and the
    connection closed; cheroot would first read the whole announced body, a worker per sender."""
    (share.root / "hello.txt").write_bytes(b"hello")
    held = open_sockets(share.server.port, 60, "127.0.0.2")
    try:
        for s in held:
            s.sendall(b"PUT /big.bin HTTP/1.1\r\nHost: x\r\nContent-Length: 100000000\r\n\r\nfirst bytes")
        for s in held[:3]:
            answer = _read_answer(s)
            assert answer.startswith(b"HTTP/1.1 401"), answer[:100]
        assert served(share)
    finally:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()


def test_bytes_that_are_not_http_are_answered_without_a_worker(share) -> None:
    """A TLS hello to plain http, or garbage without a line end, gets its 400 at once (a worker
    would wait for a line end that never comes)."""
    for junk in (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"\x00", b"\r\n\xff"):
        with socket.create_connection(("127.0.0.1", share.server.port), timeout=10, source_address=("127.0.0.2", 0)) as s:
            s.sendall(junk)
            answer = _read_answer(s)
            assert answer.startswith(b"HTTP/1.1 400") and b"not HTTP" in answer, (junk, answer[:80])


def test_silent_and_trickling_clients_do_not_block_a_tls_server(start_share, tmp_path, enough_fds: None) -> None:
    """With --tls-cert, cheroot did the TLS handshake on the thread that accepts connections: one
    client that connected and said nothing held up every new connection for the whole timeout."""
    trustme = pytest.importorskip("trustme", reason="trustme is in the test extras")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    share = start_share(tls_cert=cert_file, tls_key=key_file)
    (share.root / "hello.txt").write_bytes(b"hello")
    port = share.server.port
    held = open_sockets(port, 3, "127.0.0.2")  # silent: no ClientHello
    try:
        import ssl

        context = ssl.create_default_context(cafile=str(ca_file))
        trickling = []
        for _ in range(IDLE // 4):  # handshaken, then a request head that never ends
            raw_sock = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=("127.0.0.3", 0))
            tls = context.wrap_socket(raw_sock, server_hostname="127.0.0.1")
            tls.sendall(b"GET /hello.txt HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            trickling.append(tls)
        held += trickling
        with requests.Session() as s:
            s.auth = ("alice", PASSWORDS["alice"])
            for _ in range(3):
                r = s.get(share.url + "hello.txt", timeout=10, verify=str(ca_file))
                assert r.status_code == 200 and r.content == b"hello"
        slow = trickling[0]
        slow.sendall(b"\r\nAuthorization: Basic " + _basic() + b"\r\n\r\n")
        answer = _read_answer(slow)
        assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b"hello"), answer[:200]
    finally:
        for s in held:
            with contextlib.suppress(OSError):
                s.close()
