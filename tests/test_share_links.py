"""Share links on a real server: tokens, expiry, revocation, modes, re-rooting, escapes, passwords."""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import requests
from conftest import shown as shown_in
from conftest import wait_until
from lxml import etree
from requests.auth import HTTPDigestAuth

from davsync.server.links import LinkStore, token_hash
from davsync.server.names import SHARE_MARKER, TEMP_PREFIX

SYNC_BODY = (
    '<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token>{}</d:sync-token>'
    "<d:sync-level>infinite</d:sync-level><d:prop><d:getetag/></d:prop></d:sync-collection>"
)
MD5_BODY = (
    '<?xml version="1.0"?><d:propfind xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns"><d:prop>'
    "<d:resourcetype/><oc:checksums/><d:sync-token/></d:prop></d:propfind>"
)


@pytest.fixture
def tree(share) -> Any:
    root = share.root
    (root / "Photos" / "2024").mkdir(parents=True)
    (root / "Photos" / "beach.jpg").write_bytes(b"sand" * 100)
    (root / "Photos" / "2024" / "x.txt").write_text("x")
    (root / "secret.txt").write_text("top secret")
    (root / "Other").mkdir()
    (root / "Other" / "private.txt").write_text("private")
    share.wait_indexed()
    return share


def link(share, path: str = "Photos", mode: str = "read-only", **kw: Any) -> tuple[str, str]:
    kw.setdefault("expires_in", 3600)
    kw.setdefault("password", None)
    issued = LinkStore(share.state_dir).create(path, mode, **kw)
    return f"{share.url}s/{issued.token}/", issued.token


def raw(share, method: str, target: str, headers: dict | None = None, body: bytes | None = None,
        source: str | None = None) -> http.client.HTTPResponse:  # fmt: skip
    """A request sent exactly as written (requests would normalise '..' and encodings away)."""
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30,
                                      source_address=(source, 0) if source else None)  # fmt: skip
    conn.putrequest(method, target, skip_accept_encoding=True)
    for k, v in (headers or {}).items():
        conn.putheader(k, v)
    conn.putheader("Content-Length", str(len(body or b"")))
    conn.endheaders(body)
    resp = conn.getresponse()
    resp.read()
    conn.close()
    return resp


def hrefs(xml: bytes) -> list[str]:
    tree = etree.fromstring(xml)
    return [unquote(h.text) for h in tree.iter("{DAV:}href")]


# --- tokens, expiry, revocation ------------------------------------------------------------


def test_token_is_long_random_and_stored_only_as_a_hash(tree) -> None:
    url, token = link(tree)
    assert len(token) >= 22 and len(set(token)) > 8  # >= 128 bits of base64url
    other_url, other = link(tree)
    assert token != other
    stored = (tree.state_dir / "shares.json").read_text()
    assert token not in stored and other not in stored
    assert token_hash(token) in stored
    assert oct((tree.state_dir / "shares.json").stat().st_mode & 0o777) == "0o600"
    assert requests.get(url + "beach.jpg", timeout=10).content == b"sand" * 100


def test_unknown_revoked_and_reissued_tokens(tree) -> None:
    store = LinkStore(tree.state_dir)
    url, token = link(tree)
    assert requests.request("PROPFIND", url, headers={"Depth": "0"}, timeout=10).status_code == 207
    unknown = tree.url + "s/" + "A" * 27 + "/"
    r = requests.get(unknown, timeout=10)
    assert r.status_code == 404 and r.headers["Referrer-Policy"] == "no-referrer"
    assert requests.get(tree.url + "s/short/", timeout=10).status_code == 404

    link_id = store.find(token).id
    new = store.reissue(link_id)
    assert requests.get(url + "beach.jpg", timeout=10).status_code == 404  # the old token died at once
    new_url = f"{tree.url}s/{new.token}/"
    assert requests.get(new_url + "beach.jpg", timeout=10).status_code == 200
    store.revoke(link_id)
    r = requests.get(new_url + "beach.jpg", headers={"Accept": "text/html"}, timeout=10)
    assert r.status_code == 404 and "withdrawn" in r.text


def test_expired_link_is_410_with_a_friendly_page(tree) -> None:
    url, _ = link(tree, expires_in=0.5)
    wait_until(lambda: requests.get(url, timeout=10).status_code == 410, 10, "the link to expire")
    page = requests.get(url, headers={"Accept": "text/html,application/xhtml+xml"}, timeout=10)
    assert page.status_code == 410 and "has expired" in page.text and page.headers["Content-Type"].startswith("text/html")
    dav = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert dav.status_code == 410 and dav.headers["Content-Type"].startswith("text/plain")
    assert dav.headers["Cache-Control"] == "private"


# --- methods under each mode --------------------------------------------------------------

LOCK_BODY = (
    b'<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope>'
    b"<d:locktype><d:write/></d:locktype><d:owner>phone</d:owner></d:lockinfo>"
)
PROPPATCH_BODY = (
    b'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:" xmlns:z="urn:x"><d:set><d:prop>'
    b"<z:color>blue</z:color></d:prop></d:set></d:propertyupdate>"
)


def run_methods(url: str) -> dict[str, int]:
    s = requests.Session()
    got: dict[str, int] = {}

    def do(name: str, method: str, path: str, **kw: Any) -> requests.Response:
        r = s.request(method, url + path, timeout=10, **kw)
        got[name] = r.status_code
        return r

    do("GET", "GET", "beach.jpg")
    do("HEAD", "HEAD", "beach.jpg")
    do("OPTIONS", "OPTIONS", "")
    do("PROPFIND", "PROPFIND", "", headers={"Depth": "1"})
    do("REPORT", "REPORT", "", data=SYNC_BODY.format(""), headers={"Depth": "0"})
    do("PUT", "PUT", "new.txt", data=b"new")
    do("MKCOL", "MKCOL", "NewDir")
    do("COPY", "COPY", "beach.jpg", headers={"Destination": url + "copy.jpg"})
    do("MOVE", "MOVE", "2024/x.txt", headers={"Destination": url + "moved.txt"})
    do("PROPPATCH", "PROPPATCH", "beach.jpg", data=PROPPATCH_BODY)
    lock = do("LOCK", "LOCK", "beach.jpg", data=LOCK_BODY, headers={"Timeout": "Second-60"})
    token = lock.headers.get("Lock-Token", "<opaquelocktoken:none>")
    do("UNLOCK", "UNLOCK", "beach.jpg", headers={"Lock-Token": token})
    do("DELETE", "DELETE", "2024")
    do("POST", "POST", "", data=b"x")
    do("TRACE", "TRACE", "")
    s.close()
    return got


def test_read_only_link_methods(tree) -> None:
    url, _ = link(tree, mode="read-only")
    got = run_methods(url)
    assert {m: got[m] for m in ("GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT")} == {
        "GET": 200, "HEAD": 200, "OPTIONS": 200, "PROPFIND": 207, "REPORT": 207}  # fmt: skip
    for m in ("PUT", "MKCOL", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK", "DELETE"):
        assert got[m] == 403, m
    assert got["POST"] == 405 and got["TRACE"] == 405
    photos = tree.root / "Photos"
    assert sorted(p.name for p in photos.iterdir()) == ["2024", "beach.jpg"]
    assert (photos / "2024" / "x.txt").exists()
    options = requests.options(url, timeout=10)
    assert "PUT" not in options.headers["Allow"] and options.headers["DAV"] == "1"


def test_read_write_link_methods(tree) -> None:
    url, _ = link(tree, mode="read-write")
    got = run_methods(url)
    expected = {"GET": 200, "HEAD": 200, "OPTIONS": 200, "PROPFIND": 207, "REPORT": 207, "PUT": 201, "MKCOL": 201,
                "COPY": 201, "MOVE": 201, "PROPPATCH": 207, "LOCK": 200, "UNLOCK": 204, "DELETE": 204,
                "POST": 405, "TRACE": 405}  # fmt: skip
    assert got == expected
    photos = tree.root / "Photos"
    assert (photos / "new.txt").read_bytes() == b"new"
    assert (photos / "copy.jpg").read_bytes() == b"sand" * 100
    assert (photos / "moved.txt").read_text() == "x"
    assert (photos / "NewDir").is_dir() and not (photos / "2024").exists()
    assert not (tree.root / "new.txt").exists()  # written inside the folder, not the share's root
    # what a link writes is what the share sees, hashes and all
    r = tree.request("PROPFIND", "Photos/new.txt", headers={"Depth": "0"}, data=MD5_BODY)
    assert f"MD5:{hashlib.md5(b'new').hexdigest()}".encode() in r.content


def test_drop_link_methods_and_never_overwrites(tree) -> None:
    url, _ = link(tree, mode="drop")
    got = run_methods(url)
    assert {m: got[m] for m in ("OPTIONS", "PROPFIND", "PUT", "MKCOL")} == {
        "OPTIONS": 200, "PROPFIND": 207, "PUT": 201, "MKCOL": 201}  # fmt: skip
    for m in ("GET", "HEAD", "REPORT", "COPY", "MOVE", "PROPPATCH", "LOCK", "UNLOCK", "DELETE"):
        assert got[m] == 403, m
    photos = tree.root / "Photos"
    assert (photos / "beach.jpg").read_bytes() == b"sand" * 100 and (photos / "2024" / "x.txt").exists()

    first = requests.put(url + "beach.jpg", data=b"dropped once", timeout=10)
    second = requests.put(url + "beach.jpg", data=b"dropped twice", timeout=10)
    assert first.status_code == second.status_code == 201
    assert (photos / "beach.jpg").read_bytes() == b"sand" * 100
    assert (photos / "beach (2).jpg").read_bytes() == b"dropped once"
    assert (photos / "beach (3).jpg").read_bytes() == b"dropped twice"
    assert "Location" not in first.headers  # the name chosen would tell that beach.jpg exists
    assert requests.put(url + "2024/x.txt", data=b"y", timeout=10).status_code == 201
    assert (photos / "2024" / "x.txt").read_text() == "x" and (photos / "2024" / "x (2).txt").read_text() == "y"

    listing = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert listing.status_code == 207 and hrefs(listing.content) == [urlsplit(url).path]
    assert requests.request("PROPFIND", url + "beach.jpg", headers={"Depth": "0"}, timeout=10).status_code == 404
    allow = requests.options(url, timeout=10).headers["Allow"]
    assert "DELETE" not in allow and "GET" not in allow and "PUT" in allow
    page = requests.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 200 and "Upload only" in page.text and "beach" not in page.text


def test_a_drop_link_answers_the_same_whether_or_not_a_name_is_taken(tree) -> None:
    url, _ = link(tree, mode="drop")  # Photos holds the file beach.jpg and the folder 2024

    def seen(r: requests.Response) -> tuple:
        return r.status_code, r.content, r.headers.get("Content-Type"), r.headers.get("Location")

    for taken, free in (("beach.jpg", "nosuch.jpg"), ("2024", "nosuchdir")):
        for depth in ("0", "1"):
            a, b = (requests.request("PROPFIND", url + name + "/", headers={"Depth": depth}, timeout=10)
                    for name in (taken, free))  # fmt: skip
            assert seen(a) == seen(b), (taken, depth, seen(a), seen(b))
        a, b = (requests.request("MKCOL", url + name + "/", timeout=10) for name in (taken, free))
        assert seen(a) == seen(b) and a.status_code == 201, (taken, seen(a), seen(b))
        a, b = (requests.put(url + name + "/sub/a.txt", data=name.encode(), timeout=10) for name in (taken, free))
        assert seen(a) == seen(b) and a.status_code == 201, (taken, seen(a), seen(b))
    photos = tree.root / "Photos"
    assert (photos / "beach.jpg").read_bytes() == b"sand" * 100  # a file's name is never made a folder
    assert (photos / "beach (2).jpg" / "sub" / "a.txt").read_bytes() == b"beach.jpg"
    assert (photos / "nosuch.jpg" / "sub" / "a.txt").read_bytes() == b"nosuch.jpg"
    assert (photos / "2024" / "sub" / "a.txt").read_bytes() == b"2024"
    assert (photos / "nosuchdir" / "sub" / "a.txt").read_bytes() == b"nosuchdir"
    assert (photos / "2024" / "x.txt").read_text() == "x"


# --- hrefs stay under the link ---------------------------------------------------------------


def test_hrefs_depth_1_and_sync_collection_stay_under_the_prefix(tree) -> None:
    url, token = link(tree, mode="read-write")
    prefix = f"/s/{token}/"
    for folder in ("", "2024/"):
        r = requests.request("PROPFIND", url + folder, headers={"Depth": "1"}, data=MD5_BODY, timeout=10)
        assert r.status_code == 207
        found = hrefs(r.content)
        assert found and all(h.startswith(prefix + folder) for h in found), found
    listing = requests.request("PROPFIND", url, headers={"Depth": "1"}, data=MD5_BODY, timeout=10)
    assert f"MD5:{hashlib.md5(b'sand' * 100).hexdigest()}".encode() in listing.content  # checksums are served
    assert sorted(hrefs(listing.content)) == [prefix, prefix + "2024/", prefix + "beach.jpg"]
    token_el = etree.fromstring(listing.content).find(".//{DAV:}sync-token")
    sync_token = token_el.text

    first = requests.request("REPORT", url, data=SYNC_BODY.format(""), headers={"Depth": "0"}, timeout=10)
    assert set(hrefs(first.content)) == {prefix + "2024/", prefix + "2024/x.txt", prefix + "beach.jpg"}
    # changes inside the folder show up, changes elsewhere in the share do not
    (tree.root / "Other" / "new elsewhere.txt").write_text("no")
    requests.put(url + "2024/fresh.txt", data=b"fresh", timeout=10)
    requests.delete(url + "beach.jpg", timeout=10)
    tree.wait_indexed()
    later = requests.request("REPORT", url, data=SYNC_BODY.format(sync_token), headers={"Depth": "0"}, timeout=10)
    tree_el = etree.fromstring(later.content)
    changed = {unquote(r.findtext("{DAV:}href")): r.findtext("{DAV:}status") for r in tree_el.iter("{DAV:}response")}
    assert changed == {prefix + "2024/fresh.txt": None, prefix + "beach.jpg": "HTTP/1.1 404 Not Found"}
    assert tree_el.findtext("{DAV:}sync-token").startswith("urn:davsync:sync:")


def test_lockroot_and_lock_table_are_shared_with_the_share(tree) -> None:
    url, token = link(tree, mode="read-write")
    r = requests.request("LOCK", url + "beach.jpg", data=LOCK_BODY, headers={"Timeout": "Second-60"}, timeout=10)
    assert r.status_code == 200
    root = etree.fromstring(r.content).findtext(".//{DAV:}lockroot/{DAV:}href")
    assert unquote(root) == f"/s/{token}/beach.jpg"
    # the same file through the share itself is locked too
    assert tree.request("PUT", "Photos/beach.jpg", data=b"overwrite").status_code == 423


# --- nothing leaves the folder ----------------------------------------------------------------


def test_escapes_are_refused(tree) -> None:
    url, token = link(tree, mode="read-write")
    p = f"/s/{token}"
    for target in (f"{p}/../secret.txt", f"{p}/%2e%2e/secret.txt", f"{p}/2024/..%2f..%2fsecret.txt",
                   f"{p}/..%5csecret.txt", f"{p}/2024/%2e%2e/%2e%2e/Other/private.txt", f"{p}/./beach.jpg"):  # fmt: skip
        r = raw(tree, "GET", target)
        assert r.status in (400, 403, 404), (target, r.status)
    os.symlink(tree.root / "Other", tree.root / "Photos" / "escape")
    os.symlink(tree.root / "secret.txt", tree.root / "Photos" / "secret-link.txt")
    assert requests.get(url + "escape/private.txt", timeout=10).status_code in (403, 404)
    assert requests.get(url + "secret-link.txt", timeout=10).status_code in (403, 404)
    listing = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert not any("private" in h or "secret" in h for h in hrefs(listing.content))

    outside = [tree.url + "secret-copy.txt", tree.url + "Other/x.jpg", f"{tree.url}s/{'B' * 27}/x.jpg",
               f"{url}../secret-copy.txt", f"{url}2024/%2e%2e/%2e%2e/Other/x.jpg", "http://127.0.0.1:1/x"]  # fmt: skip
    for dest in outside:
        r = raw(tree, "COPY", f"{p}/beach.jpg", {"Destination": dest})
        assert r.status in (400, 403, 502), (dest, r.status)
    assert not (tree.root / "secret-copy.txt").exists() and not (tree.root / "Other" / "x.jpg").exists()
    moved = raw(tree, "MOVE", f"{p}/beach.jpg", {"Destination": f"{url}2024/beach.jpg"})
    assert moved.status == 201 and (tree.root / "Photos" / "2024" / "beach.jpg").exists()


def answer(share, method: str, target: str, body: bytes = b"") -> tuple[int, str]:
    """Status and body of a request sent exactly as written."""
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    conn.putrequest(method, target, skip_accept_encoding=True)
    conn.putheader("Content-Length", str(len(body)))
    conn.endheaders(body)
    resp = conn.getresponse()
    text = resp.read().decode("utf-8", "replace")
    conn.close()
    return resp.status, text


def test_encoded_separators_are_400_in_every_link_and_dots_are_not_called_an_escape(tree) -> None:
    _, drop = link(tree, mode="drop")
    _, folder = link(tree)
    one_file = LinkStore(tree.state_dir).create("Photos/beach.jpg", "read-write", kind="file", expires_in=3600,
                                                password=None).token  # fmt: skip
    for token, method in ((drop, "PUT"), (folder, "GET"), (folder, "PUT"), (one_file, "GET"), (one_file, "PUT")):
        for tail in ("..%2fesc.txt", "..%2Fesc.txt", "a%2fb.txt", "..%5cesc.txt", "2024%2Fx.txt"):
            status, _ = answer(tree, method, f"/s/{token}/{tail}", b"x" if method == "PUT" else b"")
            assert status == 400, (method, token == drop, tail, status)
    assert not [p for p in tree.root.rglob("*") if "%" in p.name or "esc" in p.name]
    for tail in ("beach.jpg/.", "./beach.jpg", "2024/../beach.jpg"):  # refused, but they do not leave the folder
        status, text = answer(tree, "GET", f"/s/{folder}/{tail}")
        assert status == 400 and "not accepted in a link" in text and "leaves" not in text, (tail, text)


def test_link_errors_are_one_plain_sentence_without_the_server_version(tree) -> None:
    _, folder = link(tree, mode="read-write")
    _, drop = link(tree, mode="drop")
    report = (b'<?xml version="1.0"?><d:sync-collection xmlns:d="DAV:"><d:sync-token/><d:sync-level>1</d:sync-level>'
              b"<d:prop><d:getetag/></d:prop></d:sync-collection>")  # fmt: skip
    cases = [
        ("GET", f"/s/{folder}/nosuch.txt", {}, b"", 404),
        ("PUT", f"/s/{folder}/nosuchdir/a.txt", {}, b"x", 409),
        ("PUT", f"/s/{drop}/.~davsync-share", {}, b"x", 403),
        ("REPORT", f"/s/{folder}/", {"Depth": "1"}, report, 400),
    ]
    for method, target, headers, body, status in cases:
        conn = http.client.HTTPConnection("127.0.0.1", tree.server.port, timeout=30)
        conn.request(method, target, body=body, headers=headers)
        resp = conn.getresponse()
        text = resp.read().decode("utf-8", "replace")
        conn.close()
        assert resp.status == status, (method, target, resp.status, text)
        assert "WsgiDAV" not in text and "<" not in text, (method, target, text)
        assert text.count("\n") == 1 and text.strip().endswith("."), (method, target, text)
        assert resp.getheader("Content-Type", "").startswith("text/plain"), (method, target)


def test_a_link_page_gives_the_cli_s_explorer_address_and_says_log_in_only_with_a_password(tree) -> None:
    from lxml import html

    port = tree.server.port
    for password in (None, "pw"):
        url, token = link(tree, password=password)
        s = requests.Session()
        if password:
            assert s.post(url, data={"password": password}, allow_redirects=False, timeout=10).status_code == 303
        page = s.get(url, headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200
        mount = html.fromstring(page.content).get_element_by_id("mount").text_content()
        assert f"\\\\127.0.0.1@{port}\\s\\{token}" in mount and "DavWWWRoot" not in mount, mount
        assert ("log in" in mount.lower()) == (password is not None), (password, mount)


def test_a_folder_swapped_for_a_symlink_is_not_served(tree) -> None:
    url, _ = link(tree, path="Photos")
    assert requests.get(url + "beach.jpg", timeout=10).status_code == 200
    os.rename(tree.root / "Photos", tree.root / "Photos-old")
    os.symlink(tree.root / "Other", tree.root / "Photos")
    r = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert r.status_code == 404 and b"private" not in r.content


# --- passwords ----------------------------------------------------------------------------------


def test_password_basic_any_user_digest_and_rate_limit_per_address(tree) -> None:
    url, token = link(tree, password="open sesame")
    r = requests.get(url + "beach.jpg", timeout=10)
    assert r.status_code == 401
    challenges = r.headers["WWW-Authenticate"]
    assert "Basic" in challenges and "Digest" in challenges
    for user in ("anyone", "phone", ""):
        assert requests.get(url + "beach.jpg", auth=(user, "open sesame"), timeout=10).status_code == 200
    assert requests.get(url + "beach.jpg", auth=HTTPDigestAuth("share", "open sesame"), timeout=10).status_code == 200
    assert requests.get(url + "beach.jpg", auth=HTTPDigestAuth("share", "wrong"), timeout=10).status_code == 401

    for _ in range(12):
        requests.get(url, auth=("x", "guess"), timeout=10)
    blocked = requests.get(url + "beach.jpg", auth=("x", "open sesame"), timeout=10)
    assert blocked.status_code == 429 and int(blocked.headers["Retry-After"]) > 0
    # someone else (another address) still gets in: the link is not locked for everyone
    basic = "Basic " + __import__("base64").b64encode(b"me:open sesame").decode()
    other = raw(tree, "GET", f"/s/{token}/beach.jpg", {"Authorization": basic}, source="127.0.0.2")
    assert other.status == 200


def test_login_form_sets_an_httponly_samesite_cookie(tree) -> None:
    url, token = link(tree, password="pw for friends", label="Holiday")
    s = requests.Session()
    page = s.get(url, headers={"Accept": "text/html"}, timeout=10)
    assert page.status_code == 401 and "<form" in page.text and "Holiday" in page.text
    assert "Basic" not in page.headers.get("WWW-Authenticate", "")  # no browser pop-up over the form
    wrong = s.post(url, data={"password": "nope"}, headers={"Accept": "text/html"}, allow_redirects=False, timeout=10)
    assert wrong.status_code == 401 and "Wrong password" in wrong.text and "Set-Cookie" not in wrong.headers
    ok = s.post(url, data={"password": "pw for friends"}, allow_redirects=False, timeout=10)
    assert ok.status_code == 303 and ok.headers["Location"] == f"/s/{token}/"
    cookie = ok.headers["Set-Cookie"]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie and f"Path=/s/{token}/" in cookie
    assert s.get(url + "beach.jpg", timeout=10).status_code == 200
    listing = s.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert listing.status_code == 207
    # a reissued token (new link) does not accept the old cookie
    LinkStore(tree.state_dir).reissue(LinkStore(tree.state_dir).links()[-1].id)
    assert s.get(url + "beach.jpg", timeout=10).status_code == 404


def test_link_answers_carry_privacy_headers_and_tokens_stay_out_of_logs(start_share, tmp_path: Path) -> None:
    share = start_share(verbose=True)
    (share.root / "Photos").mkdir()
    (share.root / "Photos" / "a.txt").write_text("a")
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if not record.name.startswith("urllib3"):  # the test's own client logs its URLs
                records.append(self.format(record))

    handler = Keep(level=logging.DEBUG)
    loggers = [logging.getLogger(), logging.getLogger("wsgidav"), logging.getLogger("davsync.server")]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        url, token = link(share, password="pw", mode="read-write")
        answers = [
            requests.request("COPY", url + "a.txt", auth=("u", "pw"), headers={"Destination": url + "c.txt"}, timeout=10),
            requests.request("MOVE", url + "c.txt", auth=("u", "pw"), headers={"Destination": url + "../x"}, timeout=10),
            requests.get(url + "a.txt", timeout=10),
            requests.get(url + "a.txt", auth=("u", "pw"), timeout=10),
            requests.get(url + "a.txt", auth=("u", "bad"), timeout=10),
            requests.request("PROPFIND", url, auth=("u", "pw"), headers={"Depth": "1"}, timeout=10),
            requests.put(url + "b.txt", auth=("u", "pw"), data=b"b", timeout=10),
            requests.request("LOCK", url + "b.txt", auth=("u", "pw"), data=LOCK_BODY, timeout=10),
            requests.get(url + "missing", auth=("u", "pw"), timeout=10),
        ]
    finally:
        for lg, level in zip(loggers, old, strict=True):
            lg.removeHandler(handler)
            lg.setLevel(level)
    for r in answers:
        assert r.headers["Referrer-Policy"] == "no-referrer", r.status_code
        assert "private" in r.headers["Cache-Control"], r.status_code
    text = "\n".join(records)
    assert f"/s/{token[:4]}…" in text  # the requests were logged...
    assert token not in text  # ...but never with the whole token


def test_doctor_through_a_link_reports_rights_and_expiry(tree) -> None:
    from davsync.client.doctor import run_checks
    from davsync.client.transport import ConnectionSettings

    url, _ = link(tree, mode="read-only", expires_in=2 * 86400, password="pw")
    checks = {c.name: c for c in run_checks(ConnectionSettings(url, "anyone", "pw"))}
    assert checks["share link"].ok and "read-only" in checks["share link"].detail
    assert "expires" in checks["share link"].detail and "(in 2.0 days)" in checks["share link"].detail
    assert checks["access"].detail.startswith("read-only")
    assert checks["sync-collection (RFC 6578)"].ok and checks["checksums (oc:checksums)"].ok
    drop_url, _ = link(tree, mode="drop", expires_in=None)
    drop = {c.name: c for c in run_checks(ConnectionSettings(drop_url))}
    assert "upload only" in drop["share link"].detail and "never expires" in drop["share link"].detail
    # honest about the one thing a drop link cannot do: Windows Explorer needs LOCK to write
    assert [c.name for c in drop.values() if not c.ok] == ["DAV class and locking"]


def test_a_link_to_the_whole_share_and_a_real_folder_named_s(tree) -> None:
    (tree.root / "s" / "notes").mkdir(parents=True)
    (tree.root / "s" / "notes" / "n.txt").write_text("mine")
    tree.wait_indexed()
    url, token = link(tree, path="")
    listing = requests.request("PROPFIND", url, headers={"Depth": "1"}, timeout=10)
    assert sorted(hrefs(listing.content)) == [f"/s/{token}/{n}" for n in ("", "Other/", "Photos/", "s/", "secret.txt")]
    assert requests.get(url + "secret.txt", timeout=10).text == "top secret"
    # the share's own folder "s" still works for its users; token-shaped names belong to links
    assert tree.request("GET", "s/notes/n.txt").text == "mine"
    assert requests.get(tree.url + "s/notes/n.txt", timeout=10).status_code == 401


def test_limiter_counts_per_address_and_ipv6_network() -> None:
    from davsync.server.limiter import FailureLimiter, client_key

    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::2") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.7") == "192.0.2.7"
    limiter = FailureLimiter(max_failures=3, window=60)
    for _ in range(3):
        assert limiter.retry_after("192.0.2.7") == 0
        limiter.failed("192.0.2.7")
    assert 0 < limiter.retry_after("192.0.2.7") <= 60
    assert limiter.retry_after("192.0.2.8") == 0
    limiter.succeeded("192.0.2.7")
    assert limiter.retry_after("192.0.2.7") == 0


def test_concurrent_drops_of_one_name_never_overwrite_each_other(tree) -> None:
    import threading

    url, _ = link(tree, mode="drop")
    started, release = threading.Event(), threading.Event()
    results: dict[str, requests.Response] = {}

    def slow_body() -> Any:
        yield b"slow "
        started.set()
        release.wait(20)
        yield b"upload"

    slow = threading.Thread(target=lambda: results.update(slow=requests.put(url + "beach.jpg", data=slow_body(), timeout=30)))
    slow.start()
    assert started.wait(10)
    # The name is reserved before the server opens its temp file: once that exists, the slow one is first.
    photos = tree.root / "Photos"
    wait_until(lambda: any(p.name.startswith(TEMP_PREFIX) for p in photos.iterdir()), 20, "the slow upload to start")
    fast = requests.put(url + "beach.jpg", data=b"fast upload", timeout=10)
    release.set()
    slow.join(30)
    assert fast.status_code == results["slow"].status_code == 201
    contents = {p.name: p.read_bytes() for p in photos.iterdir() if p.name.startswith("beach")}
    assert contents == {"beach.jpg": b"sand" * 100, "beach (2).jpg": b"slow upload", "beach (3).jpg": b"fast upload"}


def test_proppatch_answers_stay_under_the_prefix(tree) -> None:
    url, token = link(tree, mode="read-write")
    r = requests.request("PROPPATCH", url + "2024/x.txt", data=PROPPATCH_BODY, timeout=10)
    assert r.status_code == 207 and hrefs(r.content) == [f"/s/{token}/2024/x.txt"]
    got = requests.request("PROPFIND", url + "2024/x.txt", headers={"Depth": "0"},
                           data=b'<d:propfind xmlns:d="DAV:"><d:prop><z:color xmlns:z="urn:x"/></d:prop></d:propfind>',
                           timeout=10)  # fmt: skip
    assert b"blue" in got.content
    # the dead property is the file's, whichever way it is reached
    via_share = tree.request("PROPFIND", "Photos/2024/x.txt", headers={"Depth": "0"},
                             data=b'<d:propfind xmlns:d="DAV:"><d:prop><z:color xmlns:z="urn:x"/></d:prop></d:propfind>')  # fmt: skip
    assert b"blue" in via_share.content


def test_a_damaged_shares_file_fails_closed_with_a_clear_message(tree) -> None:
    from typer.testing import CliRunner

    from davsync.cli import app

    url, _ = link(tree)
    (tree.state_dir / "shares.json").write_text("{ not json")
    r = requests.get(url + "beach.jpg", timeout=10)
    assert r.status_code == 503 and b"sand" not in r.content and r.headers["Referrer-Policy"] == "no-referrer"
    assert tree.request("GET", "Photos/beach.jpg").status_code == 200  # the share itself keeps working
    listed = CliRunner().invoke(app, ["share", "list", "--state-dir", str(tree.state_dir)])
    assert listed.exit_code == 2 and "unreadable or damaged" in listed.output and "Traceback" not in listed.output


# --- real clients through a link ------------------------------------------------------------


def test_litmus_passes_everything_through_a_read_write_link_with_digest(tree) -> None:
    import re
    import subprocess

    from conftest import require_tool

    exe = require_tool("litmus")
    url, _ = link(tree, path="Other", mode="read-write", password="lit pw")
    out = subprocess.run([exe, url, "share", "lit pw"], capture_output=True, text=True, timeout=600,
                         cwd=tree.state_dir).stdout  # fmt: skip
    summaries = re.findall(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed", out)
    assert [s[0] for s in summaries] == ["basic", "copymove", "props", "locks", "http"], out
    assert (sum(int(s[2]) for s in summaries), sum(int(s[1]) for s in summaries)) == (104, 104), out
    assert sorted(shown_in(tree.root)) == ["Other", "Photos", "secret.txt"]  # all inside Other


def test_rclone_reads_md5s_through_a_read_only_link(tree) -> None:
    import subprocess

    from conftest import require_tool

    exe = require_tool("rclone")
    url, _ = link(tree, password="rc pw")
    obscured = subprocess.run([exe, "obscure", "rc pw"], capture_output=True, text=True, check=True).stdout.strip()
    out = subprocess.run([exe, "md5sum", ":webdav:", "--webdav-url", url, "--webdav-user", "rclone", "--webdav-pass",
                          obscured, "--webdav-vendor", "owncloud", "--config", "/dev/null"],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode == 0, out.stderr
    sums = dict(reversed(line.split("  ", 1)) for line in out.stdout.splitlines())
    assert sums == {"beach.jpg": hashlib.md5(b"sand" * 100).hexdigest(), "2024/x.txt": hashlib.md5(b"x").hexdigest()}


def test_fuzzed_link_paths_never_reach_outside_the_folder(tree) -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    url, token = link(tree, mode="read-write")
    os.symlink(tree.root / "Other", tree.root / "Photos" / "out")
    pieces = st.sampled_from(["..", ".", "%2e%2e", "%2E%2e", "%2f", "%2F", "%5c", "\\", "/", "//", "%00", "%c0%af",
                              "secret.txt", "Other", "private.txt", "out", "2024", "s", token, "%252e%252e"])  # fmt: skip
    secrets_on_disk = (os.urandom(8).hex().encode(), os.urandom(8).hex().encode())
    (tree.root / "secret.txt").write_bytes(secrets_on_disk[0])
    (tree.root / "Other" / "private.txt").write_bytes(secrets_on_disk[1])

    @settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(pieces, min_size=1, max_size=7), st.sampled_from(["GET", "PROPFIND", "COPY"]))
    def probe(parts: list[str], method: str) -> None:
        target = f"/s/{token}/" + "/".join(parts)
        headers = {"Depth": "1"} if method == "PROPFIND" else {}
        if method == "COPY":
            headers["Destination"] = f"{url}{'/'.join(parts)}-copy"
            target = f"/s/{token}/beach.jpg"
        conn = http.client.HTTPConnection("127.0.0.1", tree.server.port, timeout=30)
        conn.putrequest(method, target, skip_accept_encoding=True)
        for k, v in headers.items():
            conn.putheader(k, v)
        conn.putheader("Content-Length", "0")
        conn.endheaders()
        resp = conn.getresponse()
        body = resp.read()
        conn.close()
        assert resp.status < 500, (method, target, resp.status)
        assert not any(s in body for s in secrets_on_disk), (method, target)
        for href in (hrefs(body) if resp.status == 207 else []):
            assert href.startswith(f"/s/{token}/"), href

    probe()
    outside = sorted(p.relative_to(tree.root).as_posix() for p in tree.root.rglob("*")
                     if "Photos" not in p.parts and p.name != SHARE_MARKER)  # fmt: skip
    assert outside == ["Other", "Other/private.txt", "secret.txt"]  # no copy landed outside the folder


# --- Windows Explorer on its way to a link -------------------------------------------------------

EXPLORER = {"User-Agent": "Microsoft-WebDAV-MiniRedir/10.0.19045", "translate": "f"}
EXPLORER_PROPS = (
    b'<?xml version="1.0" encoding="utf-8" ?><D:propfind xmlns:D="DAV:"><D:prop><D:name/><D:parentname/>'
    b"<D:href/><D:ishidden/><D:isroot/><D:iscollection/><D:getlastmodified/><D:creationdate/>"
    b"<D:getcontentlength/><D:resourcetype/></D:prop></D:propfind>"
)


def response_hrefs(xml: bytes) -> list[str]:
    return [unquote(h.text) for h in etree.fromstring(xml).findall("{DAV:}response/{DAV:}href")]


def explorer(share, method: str, target: str, depth: str | None = None, auth: str | None = None) -> Any:
    headers = dict(EXPLORER)
    if depth is not None:
        headers["Depth"] = depth
    if auth is not None:
        headers["Authorization"] = auth
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    body = EXPLORER_PROPS if method == "PROPFIND" else b""
    conn.request(method, target, body=body, headers=headers)
    resp = conn.getresponse()
    resp.body = resp.read()
    conn.close()
    return resp


def test_explorer_maps_a_link_without_the_share_login(tree) -> None:
    """The Mini-Redirector's sequence for `\\\\host@port\\s\\<token>`: OPTIONS of the server root and of
    /s, PROPFIND Depth 0 of /s and of the link, then the listing. None of it may ask for the
    share's own login (Explorer would show a login box a friend cannot fill in)."""
    url, token = link(tree)
    steps = [("OPTIONS", "/", None), ("OPTIONS", "/s", None), ("PROPFIND", "/s", "0"), ("PROPFIND", "/s/", "0"),
             ("OPTIONS", f"/s/{token}", None), ("PROPFIND", f"/s/{token}", "0"), ("PROPFIND", f"/s/{token}/", "1"),
             ("GET", f"/s/{token}/beach.jpg", None)]  # fmt: skip
    answers = [explorer(tree, method, target, depth) for method, target, depth in steps]
    assert [a.status for a in answers] == [200, 200, 207, 207, 200, 207, 207, 200], [
        (s[:2], a.status) for s, a in zip(steps, answers, strict=True)]  # fmt: skip
    assert not any(a.getheader("WWW-Authenticate") for a in answers)
    assert "2" in answers[0].getheader("DAV") and "LOCK" in answers[0].getheader("Allow")
    assert response_hrefs(answers[2].body) == ["/s/"]  # an empty collection: no link, no token
    assert token not in answers[2].body.decode()
    listed = response_hrefs(answers[6].body)
    assert f"/s/{token}/beach.jpg" in listed and not any("secret" in h for h in listed)
    assert answers[7].body == b"sand" * 100


def test_explorer_probes_open_nothing_of_the_share(tree) -> None:
    url, token = link(tree, password="for friends")
    for agent in (EXPLORER, {}):  # the share's root still needs its login, whoever asks
        conn = http.client.HTTPConnection("127.0.0.1", tree.server.port, timeout=30)
        conn.request("PROPFIND", "/", body=EXPLORER_PROPS, headers={**agent, "Depth": "0"})
        root = conn.getresponse()
        body = root.read()
        conn.close()
        assert root.status == 401 and b"secret" not in body and b"Photos" not in body
    for target, depth in (("/s/", "1"), ("/s/", "infinity"), ("/", "1")):
        r = explorer(tree, "PROPFIND", target, depth)
        assert r.status in (401, 404) and token.encode() not in r.body and b"Photos" not in r.body
    assert explorer(tree, "GET", "/secret.txt").status == 401
    assert requests.options(tree.url, timeout=10).status_code == 401  # other clients: unchanged
    # a password link asks for its own password (its own realm), not the share's login
    challenge = explorer(tree, "PROPFIND", f"/s/{token}/", "0")
    assert challenge.status == 401 and 'realm="davsync"' not in challenge.getheader("WWW-Authenticate")
    s = requests.Session()
    s.auth = HTTPDigestAuth("share", "for friends")
    assert s.request("PROPFIND", url, headers={**EXPLORER, "Depth": "1"}, timeout=10).status_code == 207


def test_folder_page_heading_names_the_folder_not_the_token(tree) -> None:
    url, token = link(tree)
    for sub, shown in (("", "Photos"), ("2024/", "2024")):  # davsync's own page (davsync/server/pages)
        page = requests.get(url + sub, headers={"Accept": "text/html"}, timeout=10)
        assert page.status_code == 200
        heading = re.sub(r"<[^>]*>", "", page.text.split('<h1 id="title">', 1)[1].split("</h1>", 1)[0])
        title = page.text.split("<title>", 1)[1].split("</title>", 1)[0]
        crumbs = re.sub(r"<[^>]*>", " ", page.text.split('<ol class="crumbs">', 1)[1].split("</ol>", 1)[0]).split()
        assert heading == shown and title.startswith(shown) and crumbs[0] == "Photos"
        assert token not in heading and token not in title and token not in " ".join(crumbs)


def test_drop_link_only_ever_creates_and_tells_nothing_about_what_is_there(tree) -> None:
    """Issue 23 item 1: a PUT whose URL ends in '/' replaced the named file, and the answers
    (Location, MKCOL's status) told a stranger with a drop link which names exist."""
    url, _ = link(tree, mode="drop")
    photos = tree.root / "Photos"
    for target in ("beach.jpg/", "beach.jpg//", "2024/x.txt/"):
        r = requests.put(url + target, data=b"overwritten?", timeout=10)
        assert r.status_code == 400, (target, r.status_code)
        assert "overwritten?" not in r.text
    assert (photos / "beach.jpg").read_bytes() == b"sand" * 100 and (photos / "2024" / "x.txt").read_text() == "x"
    assert not [p for p in photos.rglob("*") if p.is_file() and p.read_bytes() == b"overwritten?"]

    def answer(r: requests.Response) -> tuple:
        return r.status_code, r.text, {k: v for k, v in r.headers.items() if k.lower() not in ("date", "x-davsync-link")}

    taken = requests.put(url + "beach.jpg", data=b"a", timeout=10)
    free = requests.put(url + "unused-name.jpg", data=b"b", timeout=10)
    assert answer(taken) == answer(free) and taken.status_code == 201
    assert "Location" not in taken.headers  # 'beach (2).jpg' would say that beach.jpg exists
    assert (photos / "beach.jpg").read_bytes() == b"sand" * 100 and (photos / "beach (2).jpg").read_bytes() == b"a"
    # a new folder: the same answer whether the name is free, a folder, or a file
    answers = [answer(requests.request("MKCOL", url + name, timeout=10)) for name in ("Fresh", "2024", "beach.jpg")]
    assert answers[0][0] == 201 and answers[0] == answers[1] == answers[2]
    assert (photos / "Fresh").is_dir() and (photos / "beach.jpg").read_bytes() == b"sand" * 100
