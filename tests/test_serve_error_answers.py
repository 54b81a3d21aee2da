"""The owner's share answers an error with one sentence, never WsgiDAV's page (its version, the time)."""

from __future__ import annotations

import http.client
import inspect

import pytest
import wsgidav.request_server
from conftest import PASSWORDS, Share
from wsgidav.dav_error import DAVError

from davsync.server.link_answers import UPSTREAM_PAGE, UPSTREAM_SAID, sentence

SYNC_REPORT = (b'<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
               b"<d:prop><d:getetag/></d:prop></d:sync-collection>")  # fmt: skip


def raw(share: Share, method: str, target: str, body: bytes = b"", **headers: str) -> tuple[int, str, str]:
    """One request as a client sends it: status, Content-Type, body text."""
    import base64

    token = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    try:
        conn.request(method, target, body=body, headers={"Authorization": f"Basic {token}", **headers})
        resp = conn.getresponse()
        return resp.status, resp.getheader("Content-Type", ""), resp.read().decode("utf-8", "replace")
    finally:
        conn.close()


def test_share_errors_are_one_plain_sentence_without_the_server_version(share: Share) -> None:
    (share.root / "here.txt").write_text("x")
    (share.root / "dir").mkdir()
    share.wait_indexed()
    cases = [  # ... and what the sentence tells the user to do
        ("GET", "/nosuch.txt", b"", {}, 404, "check the name"),
        ("DELETE", "/nosuch.txt", b"", {}, 404, "check the name"),
        ("PUT", "/nosuchdir/a.txt", b"x", {}, 409, "make it first"),
        ("MKCOL", "/nosuchdir/sub", b"", {}, 409, "make it first"),
        ("MKCOL", "/dir", b"", {}, 405, "choose another name"),
        ("MOVE", "/nosuch.txt", b"", {"Destination": "/else.txt"}, 404, "check the name"),
        ("REPORT", "/", SYNC_REPORT, {"Depth": "1"}, 400, "sync-level"),
    ]
    for method, target, body, headers, status, todo in cases:
        got, ctype, text = raw(share, method, target, body, **headers)
        assert got == status, (method, target, got, text)
        assert todo in text, (method, target, text)
        assert "WsgiDAV" not in text and "<" not in text, (method, target, text)
        assert text.count("\n") == 1 and text.strip().endswith("."), (method, target, text)
        assert ctype.startswith("text/plain"), (method, target, ctype)


def test_a_browser_gets_a_small_page_and_answers_with_bodies_of_their_own_stay(share: Share) -> None:
    (share.root / "here.txt").write_text("x")
    share.wait_indexed()
    got, ctype, text = raw(share, "GET", "/nosuch.txt", Accept="text/html,application/xhtml+xml,*/*;q=0.8")
    assert got == 404 and ctype.startswith("text/html"), (got, ctype)
    assert "WsgiDAV" not in text and "nothing here by that name" in text, text
    # davsync's own bodies are not touched: a multistatus, a folder page, a JSON error
    got, ctype, text = raw(share, "PROPFIND", "/", Depth="1")
    assert got == 207 and "multistatus" in text
    got, ctype, text = raw(share, "GET", "/", Accept="text/html")
    assert got == 200 and ctype.startswith("text/html") and "here.txt" in text
    got, _, text = raw(share, "HEAD", "/nosuch.txt")
    assert got == 404 and text == ""


@pytest.mark.contract("wsgidav")
def test_upstream_error_pages_are_what_plain_errors_recognises() -> None:
    """If this fails, WsgiDAV changed its error page or its words: adapt link_answers.py."""
    _, page = DAVError(404, "Parent must be an existing collection.").get_response_page()
    assert page.startswith(UPSTREAM_PAGE) and b"WsgiDAV/" in page
    assert sentence("404 Not Found", page) == UPSTREAM_SAID["Parent must be an existing collection."]
    source = inspect.getsource(wsgidav.request_server)
    assert [said for said in UPSTREAM_SAID if said not in source] == []
