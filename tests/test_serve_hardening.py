"""The server facing strangers (issue 23): hostile request bodies and browser-side protections."""

from __future__ import annotations

import pickle
import shelve
from pathlib import Path

import pytest

ENTITY_LOCK = (
    '<?xml version="1.0"?><!DOCTYPE lockinfo [<!ENTITY who "mallory">]>'
    '<D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner>&who;</D:owner></D:lockinfo>"
)


def stored_locks(state_dir: Path) -> list:
    try:
        with shelve.open(str(state_dir / "locks.shelve"), flag="r") as db:
            return [k for k in db.keys() if k.startswith("opaquelocktoken")]  # noqa: SIM118
    except (OSError, pickle.UnpicklingError, Exception):  # no file yet: nothing stored
        return []


def test_lock_with_a_dtd_entity_is_refused_and_stores_nothing(start_share, tmp_path: Path) -> None:
    """Issue 23 item 7: such a LOCK answered 500 yet stored a lock nothing could remove, even after a restart."""
    share = start_share()
    (share.root / "doc.txt").write_text("mine")
    share.wait_indexed()
    r = share.request("LOCK", "doc.txt", data=ENTITY_LOCK, headers={"Timeout": "Second-3600"})
    assert r.status_code == 400, r.text
    assert "DOCTYPE or ENTITY are not accepted" in r.text and "Traceback" not in r.text
    assert share.request("PUT", "doc.txt", data=b"edited").status_code in (200, 201, 204)
    assert share.request("DELETE", "doc.txt").status_code == 204
    share.server.stop()
    assert stored_locks(share.state_dir) == []
    again = start_share(share.root, state_dir=share.state_dir)
    assert again.request("PUT", "doc.txt", data=b"after restart").status_code in (200, 201, 204)
    assert again.request("DELETE", "doc.txt").status_code == 204


@pytest.mark.parametrize("owner", ["<!DOCTYPE x>", '<!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/passwd">]>'])
def test_any_doctype_in_a_dav_body_is_refused(share, owner: str) -> None:
    body = ENTITY_LOCK.replace('<!DOCTYPE lockinfo [<!ENTITY who "mallory">]>', owner).replace("&who;", "x")
    (share.root / "a.txt").write_text("a")
    r = share.request("LOCK", "a.txt", data=body)
    assert r.status_code == 400
    assert share.request("PROPPATCH", "a.txt", data=owner + "<x/>").status_code == 400


def test_an_unreadable_lock_left_by_an_earlier_version_is_dropped_at_start(start_share, tmp_path: Path) -> None:
    """A state dir written before the DOCTYPE refusal may hold such a lock: it must not outlive a restart."""
    from wsgidav.lock_man.lock_storage import LockStorageShelve

    state = tmp_path / "state"
    state.mkdir()
    old = LockStorageShelve(str(state / "locks.shelve"))
    old.open()
    bad = old.create("/doc.txt", {"type": "write", "scope": "exclusive", "depth": "0", "timeout": 3600,
                                  "owner": b'<D:owner xmlns:D="DAV:">&who;</D:owner>', "principal": "alice"})  # fmt: skip
    good = old.create("/other.txt", {"type": "write", "scope": "exclusive", "depth": "0", "timeout": 3600,
                                     "owner": b'<D:owner xmlns:D="DAV:">alice</D:owner>', "principal": "alice"})  # fmt: skip
    old.close()
    share = start_share(state_dir=state)
    (share.root / "doc.txt").write_text("mine")
    (share.root / "other.txt").write_text("locked")
    assert share.request("PUT", "doc.txt", data=b"edited").status_code in (200, 201, 204)
    assert share.request("PUT", "other.txt", data=b"x").status_code == 423  # a readable lock stays
    share.server.stop()
    assert stored_locks(state) == [good["token"]] and bad["token"] not in stored_locks(state)


# --- browser-side protections (issue 23 item 9) ------------------------------------------------

HTML = {"Accept": "text/html"}


def framing_refused(r) -> bool:
    return r.headers.get("X-Frame-Options") == "DENY" and "frame-ancestors 'none'" in r.headers.get(
        "Content-Security-Policy", "")  # fmt: skip


def test_every_user_file_is_served_sandboxed_and_never_sniffed(share) -> None:
    from davsync.server.links import LinkStore

    files = {"a.txt": b"plain", "b.pdf": b"%PDF-1.4 x", "c.png": b"\x89PNG\r\n\x1a\n", "d.html": b"<script>1</script>",
             "e.bin": b"\x00\x01", "noext": b"<html><script>alert(1)</script>"}  # fmt: skip
    (share.root / "Docs").mkdir()
    for name, data in files.items():
        (share.root / "Docs" / name).write_bytes(data)
    share.wait_indexed()
    token = LinkStore(share.state_dir).create("Docs", "read-only", expires_in=3600, password=None).token
    for name, data in files.items():
        answers = [share.request("GET", f"Docs/{name}"), share.request("HEAD", f"Docs/{name}"),
                   share.request("GET", f"Docs/{name}", headers={"Range": "bytes=0-1"}),
                   share.request("GET", f"s/{token}/{name}", user=None)]  # fmt: skip
        for r in answers:
            assert r.status_code in (200, 206), (name, r.status_code)
            csp = r.headers.get("Content-Security-Policy", "")
            assert "sandbox" in csp.split(";")[0], (name, r.request.method, r.url, csp)
            assert r.headers.get("X-Content-Type-Options") == "nosniff", (name, r.url)
        assert answers[0].content == data


def test_a_revalidated_user_file_keeps_its_sandbox(share) -> None:
    """A browser applies a 304's headers to its cached copy: a 304 without `sandbox` let an
    uploaded page run its script, with the viewer's login, from its second view (new-user trial)."""
    from davsync.server.links import LinkStore

    (share.root / "Docs").mkdir()
    (share.root / "Docs" / "evil.html").write_bytes(b"<script>document.title='ran'</script>")
    share.wait_indexed()
    token = LinkStore(share.state_dir).create("Docs", "read-only", expires_in=3600, password=None).token
    for path, kw in (("Docs/evil.html", {}), (f"s/{token}/evil.html", {"user": None})):
        first = share.request("GET", path, **kw)
        assert first.status_code == 200 and first.headers.get("ETag"), (path, first.status_code)
        assert share.request("GET", path, headers={"If-None-Match": first.headers["ETag"]}, **kw).status_code == 304
        for cond in ({"If-None-Match": first.headers["ETag"]}, {"If-Modified-Since": first.headers["Last-Modified"]}):
            again = share.request("GET", path, headers=cond, **kw)
            assert again.status_code in (200, 304), (path, cond, again.status_code)  # 200: mtime within its second
            csp = again.headers.get("Content-Security-Policy", "")
            assert "sandbox" in csp.split(";")[0], (path, cond, csp)
        inline = share.request("GET", path + "?inline", **kw)
        if inline.status_code == 200:  # the viewer's own frame: sandboxed, framable by its own page
            etag = inline.headers["ETag"]
            again = share.request("GET", path + "?inline", headers={"If-None-Match": etag}, **kw)
            assert again.status_code == 304, (path, again.status_code)
            assert again.headers.get("Content-Security-Policy") == inline.headers["Content-Security-Policy"], path


def test_listings_and_link_pages_refuse_framing_and_sniffing(share) -> None:
    from davsync.server.links import LinkStore

    (share.root / "Inbox").mkdir()
    (share.root / "Inbox" / "x.txt").write_text("x")
    store = LinkStore(share.state_dir)
    drop = store.create("Inbox", "drop", expires_in=3600, password=None).token
    locked = store.create("Inbox", "read-only", expires_in=3600, password="s3cret-pass").token
    readable = store.create("Inbox", "read-only", expires_in=3600, password=None).token
    pages = {
        "listing": share.request("GET", "Inbox/", headers=HTML),
        "link listing": share.request("GET", f"s/{readable}/", user=None, headers=HTML),
        "drop page": share.request("GET", f"s/{drop}/", user=None, headers=HTML),
        "login page": share.request("GET", f"s/{locked}/", user=None, headers=HTML),
        "no such link": share.request("GET", "s/" + "A" * 32 + "/", user=None, headers=HTML),
        "not found": share.request("GET", "missing/", headers=HTML),
        "login needed": share.request("GET", "Inbox/", user=None, headers=HTML),
    }
    for what, r in pages.items():
        assert r.headers.get("X-Content-Type-Options") == "nosniff", what
        assert framing_refused(r), (what, r.headers)
    for what in ("listing", "link listing", "drop page"):
        assert pages[what].status_code == 200 and "sandbox" not in pages[what].headers["Content-Security-Policy"]
