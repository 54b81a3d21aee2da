"""Hostile requests to the server: every answer is a proper status, never a crash or a hang, and it still serves."""

from __future__ import annotations

import base64
import http.client
import socket

import pytest
from conftest import PASSWORDS
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

AUTH = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
FAST = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
FULL = settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))

BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + ']><d:propfind xmlns:d="DAV:"><d:prop><d:displayname>&lol9;</d:displayname></d:prop></d:propfind>'
)
XXE = (
    '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    '<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><z:x xmlns:z="urn:z">&e;</z:x></d:prop></d:set></d:propertyupdate>'
)
DEEP = "<a>" * 5000 + "</a>" * 5000
HUGE = '<d:propfind xmlns:d="DAV:"><d:prop>' + "<d:displayname/>" * 200_000 + "</d:prop></d:propfind>"
KNOWN_BODIES = ["", "<", "<x/>", "\x00\xff", BILLION_LAUGHS, XXE, DEEP, HUGE, "<?xml version='1.0' encoding='nope'?><a/>"]
METHODS = ["PROPFIND", "PROPPATCH", "REPORT", "LOCK", "MKCOL", "PUT", "COPY", "MOVE", "DELETE", "GET", "OPTIONS", "UNLOCK"]
PATHS = ["/", "/f.txt", "/dir/", "/%2e%2e/x", "/a%00b", "/%ff%fe", "/" + "x" * 5000, "/dir/..%2f..%2fetc", "//", "/.~davsync-x"]


def send(port: int, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    try:
        conn.putrequest(method, path, skip_host=False, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        resp = conn.getresponse()
        resp.read()
        return resp.status
    except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError):
        return 400  # the server may drop a connection it considers broken: acceptable, it must survive
    finally:
        conn.close()


@pytest.fixture
def target(share):  # type: ignore[no-untyped-def]
    (share.root / "f.txt").write_text("f")
    (share.root / "dir").mkdir()
    return share


def alive(share) -> bool:  # type: ignore[no-untyped-def]
    """Still answering real requests (the fuzz may have renamed or deleted f.txt itself)."""
    return share.request("PROPFIND", "/", headers={"Depth": "1"}).status_code == 207


def check(share, method: str, path: str, headers: dict[str, str], body: bytes) -> None:  # type: ignore[no-untyped-def]
    status = send(share.server.port, method, path, {"Authorization": AUTH, **headers}, body)
    assert 100 <= status < 600
    assert status != 500, f"internal error for {method} {path[:80]!r} {headers} {body[:80]!r}"


@pytest.mark.parametrize("body", KNOWN_BODIES, ids=["empty", "lt", "foreign", "binary", "laughs", "xxe", "deep", "huge", "enc"])
@pytest.mark.parametrize("method", ["PROPFIND", "PROPPATCH", "REPORT", "LOCK"])
def test_known_hostile_bodies(target, method: str, body: str) -> None:
    check(target, method, "/f.txt" if method != "REPORT" else "/", {"Depth": "0"}, body.encode("utf-8", "surrogatepass"))
    assert alive(target)
    assert "root:" not in target.request("PROPFIND", "/f.txt", headers={"Depth": "0"}).text


header_values = st.one_of(
    st.sampled_from(["0", "1", "infinity", "-1", "T", "F", "", "bytes=0-", "bytes=5-1", "bytes=-0", "bytes=0-1,2-3",
                     "(<opaquelocktoken:x>)", "<http://127.0.0.1/f.txt> (Not <x>)", "http://elsewhere/x",
                     "/../../etc", "\x7f", "é"]),
    st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)  # fmt: skip
headers = st.dictionaries(
    st.sampled_from(["Depth", "Destination", "Overwrite", "If", "Range", "If-Range", "Timeout", "Lock-Token",
                     "Content-Type", "If-Match", "OC-Checksum", "X-OC-Mtime"]),
    header_values, max_size=4,
)  # fmt: skip
bodies = st.one_of(
    st.binary(max_size=300),
    st.sampled_from([b.encode() for b in KNOWN_BODIES[:6]]),
    st.builds(lambda tag, inner: f'<?xml version="1.0"?><d:{tag} xmlns:d="DAV:">{inner}</d:{tag}>'.encode(),
              st.sampled_from(["propfind", "propertyupdate", "sync-collection", "lockinfo", "prop"]),
              st.text(max_size=80)),
)  # fmt: skip
paths = st.one_of(st.sampled_from(PATHS), st.text(min_size=1, max_size=40).map(lambda t: "/" + "".join(
    c if c.isascii() and c.isalnum() else f"%{ord(c) & 0xff:02x}" for c in t)))


def _fuzz(target, method: str, path: str, hdrs: dict[str, str], body: bytes) -> None:  # type: ignore[no-untyped-def]
    check(target, method, path, hdrs, body)


@FAST
@given(st.sampled_from(METHODS), paths, headers, bodies)
def test_fuzz_requests_fast(share_for_fuzz, method, path, hdrs, body) -> None:  # type: ignore[no-untyped-def]
    _fuzz(share_for_fuzz, method, path, hdrs, body)


@pytest.mark.slow
@FULL
@given(st.sampled_from(METHODS), paths, headers, bodies)
def test_fuzz_requests_full(share_for_fuzz, method, path, hdrs, body) -> None:  # type: ignore[no-untyped-def]
    _fuzz(share_for_fuzz, method, path, hdrs, body)


@pytest.fixture(scope="module")
def share_for_fuzz(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One server for all generated cases (hypothesis reruns the test body many times)."""
    from conftest import Share, make_users

    from davsync.server.app import DavServer
    from davsync.server.settings import ServeSettings
    from davsync.users import Users

    base = tmp_path_factory.mktemp("fuzz")
    root = base / "root"
    root.mkdir()
    (root / "f.txt").write_text("f")
    (root / "dir").mkdir()
    users = base / "users.json"
    make_users(users)
    settings_ = ServeSettings(root=root, host="127.0.0.1", port=0, state_dir=base / "state", users=users).resolved()
    server = DavServer(settings_, Users.load(users))
    server.start()
    share = Share(server, settings_.root, base / "state", users, settings_)
    try:
        yield share
        assert alive(share), "the server stopped serving after the fuzz run"
    finally:
        server.stop()


def test_raw_garbage_on_the_socket(target) -> None:
    for junk in (b"\x16\x03\x01\x02\x00", b"GET / HTTP/1.1\r\n" + b"X: " + b"y" * 100_000 + b"\r\n\r\n",
                 b"BREW /pot HTCPCP/1.0\r\n\r\n", b"GET /\r\n\r\n", b"\r\n" * 1000):  # fmt: skip
        with socket.create_connection(("127.0.0.1", target.server.port), timeout=10) as s:
            s.sendall(junk)
            s.shutdown(socket.SHUT_WR)
            try:
                s.recv(1024)
            except OSError:
                pass
    assert alive(target)
