"""If-Match / If-None-Match hold at the moment of the rename, not only when the request arrived."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from conftest import Share, wait_until
from wsgidav.request_server import RequestServer

from davsync.server.names import SHARE_MARKER, TEMP_PREFIX

LATE = "changed meanwhile"  # the re-check's message (WsgiDAV's early check says "header condition failed")


@pytest.mark.contract("wsgidav")
def test_upstream_skips_if_match_on_missing_target() -> None:
    """WsgiDAV does not evaluate If-Match when the target does not exist (RFC 9110 says 412);
    do_PUT adds the check. If this starts raising, upstream fixed it: drop our patch."""
    environ = {"REQUEST_METHOD": "PUT", "HTTP_IF_MATCH": '"some-etag"'}
    RequestServer._evaluate_if_headers(object.__new__(RequestServer), None, environ)  # no exception


def test_if_match_on_a_missing_resource_is_412(share: Share) -> None:
    r = share.request("PUT", "ghost.txt", data=b"x", headers={"If-Match": '"whatever"'})
    assert r.status_code == 412
    assert not (share.root / "ghost.txt").exists()
    r = share.request("PUT", "ghost.txt", data=b"x", headers={"If-Match": "*"})
    assert r.status_code == 412


def held_body(first_sent: threading.Event, gate: threading.Event, data: bytes) -> Iterator[bytes]:
    yield data[:1]
    first_sent.set()
    gate.wait(30)
    yield data[1:]


def receiving(share: Share, n: int) -> bool:
    """The server has passed its early checks and opened a temp file for `n` PUTs (the body is being read).

    Only then is a refusal proof of the late re-check: a request merely sent may not be read yet."""
    return sum(1 for p in share.root.iterdir() if p.name.startswith(TEMP_PREFIX) and p.name != SHARE_MARKER) >= n


def race(share: Share, path: str, headers: dict[str, str], bodies: list[bytes]) -> list[requests.Response]:
    """Start one PUT per body, hold them all after the headers, then let them finish together."""
    gate = threading.Event()
    sent = [threading.Event() for _ in bodies]
    results: list[Any] = [None] * len(bodies)

    def go(i: int) -> None:
        results[i] = share.session().put(
            share.url + path, data=held_body(sent[i], gate, bodies[i]), headers=headers, timeout=60
        )

    threads = [threading.Thread(target=go, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    wait_until(lambda: all(e.is_set() for e in sent), 20, "every request to be under way")
    wait_until(lambda: receiving(share, len(bodies)), 20, "the server to be receiving every body")
    gate.set()
    for t in threads:
        t.join(60)
    return results


def test_two_puts_with_the_same_if_match_exactly_one_wins(share: Share) -> None:
    etag = share.request("PUT", "doc.txt", data=b"base").headers["ETag"]
    bodies = [b"edit from PC one", b"edit from PC two"]
    r1, r2 = race(share, "doc.txt", {"If-Match": etag}, bodies)
    codes = sorted([r1.status_code, r2.status_code])
    assert codes == [204, 412], (r1.text, r2.text)
    loser = r1 if r1.status_code == 412 else r2
    winner_body = bodies[0] if r1.status_code == 204 else bodies[1]
    assert LATE in loser.text  # refused by the re-check under the lock, not the early one
    assert (share.root / "doc.txt").read_bytes() == winner_body
    # the base went to the versions; the loser's body went nowhere
    versions = share.server.state.versions.files("doc.txt")
    assert [v.size for v in versions] == [4]


def test_two_creates_with_if_none_match_star_exactly_one_wins(share: Share) -> None:
    bodies = [b"new from one", b"new from two"]
    results = race(share, "new.txt", {"If-None-Match": "*"}, bodies)
    assert sorted(r.status_code for r in results) == [201, 412]
    assert (share.root / "new.txt").read_bytes() in bodies
    assert share.server.state.versions.files("new.txt") == []


def test_if_match_put_loses_to_a_delete_that_came_first(share: Share) -> None:
    etag = share.request("PUT", "gone.txt", data=b"base").headers["ETag"]
    gate, sent = threading.Event(), threading.Event()
    out: list[Any] = []
    t = threading.Thread(
        target=lambda: out.append(
            share.session().put(share.url + "gone.txt", data=held_body(sent, gate, b"late edit"),
                                headers={"If-Match": etag}, timeout=60)  # fmt: skip
        )
    )
    t.start()
    wait_until(sent.is_set, 20, "the PUT to be under way")
    wait_until(lambda: receiving(share, 1), 20, "the server to be receiving the PUT's body")
    assert share.request("DELETE", "gone.txt").status_code == 204
    gate.set()
    t.join(60)
    assert out[0].status_code == 412 and LATE in out[0].text
    assert not (share.root / "gone.txt").exists()


def test_stale_if_match_on_delete_and_move_is_412(share: Share) -> None:
    old = share.request("PUT", "f.txt", data=b"one").headers["ETag"]
    new = share.request("PUT", "f.txt", data=b"two!").headers["ETag"]
    assert old != new
    assert share.request("DELETE", "f.txt", headers={"If-Match": old}).status_code == 412
    r = share.request("MOVE", "f.txt", headers={"If-Match": old, "Destination": share.url + "g.txt"})
    assert r.status_code == 412
    assert (share.root / "f.txt").read_bytes() == b"two!" and not (share.root / "g.txt").exists()
    r = share.request("MOVE", "f.txt", headers={"If-Match": new, "Destination": share.url + "g.txt"})
    assert r.status_code == 201
    etag_g = share.request("HEAD", "g.txt").headers["ETag"]
    assert share.request("DELETE", "g.txt", headers={"If-Match": etag_g}).status_code == 204
