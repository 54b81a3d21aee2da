"""Digest logins: nonces are the server's own, expire with stale=true, and a (nonce, nc) pair works once."""

from __future__ import annotations

import hashlib
import re
import time
from typing import Any

import requests
from conftest import PASSWORDS
from requests.auth import HTTPDigestAuth

from davsync.server.digest import NonceBook


def _md5(s: str) -> str:
    return hashlib.md5(s.encode()).hexdigest()


def digest_header(method: str, path: str, nonce: str, nc: int, *, user: str = "alice") -> str:
    """What a client that knows the password sends (RFC 7616, MD5, qop=auth)."""
    ha1 = _md5(f"{user}:davsync:{PASSWORDS[user]}")
    response = _md5(f"{ha1}:{nonce}:{nc:08x}:0a4f113b:auth:{_md5(f'{method}:{path}')}")
    return (f'Digest username="{user}", realm="davsync", nonce="{nonce}", uri="{path}", algorithm=MD5, '
            f'response="{response}", qop=auth, nc={nc:08x}, cnonce="0a4f113b"')  # fmt: skip


def server_nonce(share: Any) -> str:
    challenge = requests.get(share.url + "f.txt", timeout=30)
    assert challenge.status_code == 401
    return re.search(r'Digest [^,]*?.*?nonce="([^"]+)"', challenge.headers["WWW-Authenticate"]).group(1)


def front_gate(share: Any) -> Any:
    node = share.server.app
    while not hasattr(node, "nonces"):
        node = node.app
    return node


def test_a_captured_digest_header_cannot_be_replayed(share) -> None:
    """Someone who captured a PUT's Authorization header on plain http sends it again with their
    own body: refused, and the file keeps what its owner wrote."""
    nonce = server_nonce(share)
    header = digest_header("PUT", "/notes.txt", nonce, 1)
    first = requests.put(share.url + "notes.txt", data=b"mine", headers={"Authorization": header}, timeout=30)
    assert first.status_code == 201
    replay = requests.put(share.url + "notes.txt", data=b"evil", headers={"Authorization": header}, timeout=30)
    assert replay.status_code == 401
    assert (share.root / "notes.txt").read_bytes() == b"mine"
    # the answer is a fresh challenge: a real client that knows the password just logs in again
    assert "stale=true" in replay.headers["WWW-Authenticate"]
    # counts may arrive a little out of order (parallel connections share a nonce), each once
    assert requests.get(share.url + "notes.txt", headers={"Authorization": digest_header("GET", "/notes.txt", nonce, 5)},
                        timeout=30).status_code == 200  # fmt: skip
    late = {"Authorization": digest_header("GET", "/notes.txt", nonce, 3)}
    assert requests.get(share.url + "notes.txt", headers=late, timeout=30).status_code == 200
    assert requests.get(share.url + "notes.txt", headers=late, timeout=30).status_code == 401


def test_a_nonce_the_server_did_not_issue_is_refused(share) -> None:
    (share.root / "f.txt").write_bytes(b"f")
    made_up = "0123456789abcdef0123456789abcdef"
    r = requests.get(share.url + "f.txt", headers={"Authorization": digest_header("GET", "/f.txt", made_up, 1)},
                     timeout=30)  # fmt: skip
    assert r.status_code == 401 and "stale=true" in r.headers["WWW-Authenticate"]
    # a wrong password is not "stale": the client must ask its user
    wrong = digest_header("GET", "/f.txt", server_nonce(share), 1).replace('response="', 'response="0')
    r = requests.get(share.url + "f.txt", headers={"Authorization": wrong}, timeout=30)
    assert r.status_code == 401 and "stale" not in r.headers["WWW-Authenticate"]


def test_an_expired_nonce_is_renewed_without_asking_the_user(share) -> None:
    """requests' Digest (as the davsync client, cadaver, curl and Explorer do) re-answers a
    stale=true challenge itself: the session goes on across a nonce's expiry."""
    (share.root / "f.txt").write_bytes(b"f")
    s = share.session(None)
    s.auth = HTTPDigestAuth("alice", PASSWORDS["alice"])
    assert s.get(share.url + "f.txt", timeout=30).text == "f"
    nonces: NonceBook = front_gate(share).nonces
    later = time.monotonic() + nonces.lifetime + 5
    nonces._clock = lambda: later  # the session's nonce is now past its lifetime
    old_nonce = s.auth._thread_local.chal["nonce"]
    r = s.get(share.url + "f.txt", timeout=30)
    assert r.status_code == 200 and r.text == "f"
    assert s.auth._thread_local.chal["nonce"] != old_nonce  # a new nonce was taken, silently


def test_nonce_book_expiry_and_bounded_memory() -> None:
    now = [1000.0]
    book = NonceBook(lifetime=60, max_tracked=3, clock=lambda: now[0])
    a = book.issue("davsync")
    assert book.use("davsync", a, 1) == "ok" and book.use("davsync", a, 1) == "stale"
    assert book.use("other-scope", a, 2) == "stale"  # bound to its realm or link
    assert book.use("davsync", a, 2) == "ok"
    now[0] += 61
    assert book.use("davsync", a, 3) == "stale"  # expired
    fresh = []
    for _ in range(5):
        now[0] += 0.01
        fresh.append(book.issue("davsync"))
        assert book.use("davsync", fresh[-1], 1) == "ok"
    assert book.tracked() <= 3
    # a nonce dropped to keep memory bounded is never taken as new again: its counts are unknown
    assert book.use("davsync", fresh[0], 2) == "stale"
    assert book.use("davsync", fresh[-1], 2) == "ok"
    assert book.use("davsync", "not-a-nonce", 1) == "stale"


def test_a_share_link_refuses_a_replayed_digest_header_too(share) -> None:
    from davsync.server.links import LinkStore

    (share.root / "Photos").mkdir()
    (share.root / "Photos" / "a.jpg").write_bytes(b"jpg")
    token = LinkStore(share.state_dir).create("Photos", "read-write", expires_in=3600, password="pw").token
    path = f"/s/{token}/a.jpg"
    challenge = requests.get(share.url + path.lstrip("/"), timeout=30).headers["WWW-Authenticate"]
    nonce, realm = re.search(r'Digest realm="([^"]+)", nonce="([^"]+)"', challenge).group(2, 1)
    ha1 = _md5(f"share:{realm}:pw")
    response = _md5(f"{ha1}:{nonce}:00000001:c:auth:{_md5(f'DELETE:{path}')}")
    header = (f'Digest username="share", realm="{realm}", nonce="{nonce}", uri="{path}", response="{response}", '
              f"qop=auth, nc=00000001, cnonce=\"c\"")  # fmt: skip
    assert requests.delete(share.url + path.lstrip("/"), headers={"Authorization": header}, timeout=30).status_code == 204
    (share.root / "Photos" / "a.jpg").write_bytes(b"new one")
    again = requests.delete(share.url + path.lstrip("/"), headers={"Authorization": header}, timeout=30)
    assert again.status_code == 401 and "stale=true" in again.headers["WWW-Authenticate"]
    assert (share.root / "Photos" / "a.jpg").read_bytes() == b"new one"
