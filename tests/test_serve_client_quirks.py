"""Requests exactly as real clients send them: webdav4/fsspec (no Depth), Windows Explorer
(Win32 times, guest mount first), lftp (Digest PUT that asks to close the connection)."""

from __future__ import annotations

import calendar
import hashlib
import http.client
import re
import socket

import pytest
import requests
from conftest import PASSWORDS
from davhelp import PROPFIND_MD5, checksums, parse_multistatus
from requests.auth import HTTPDigestAuth

EXPLORER = {"User-Agent": "Microsoft-WebDAV-MiniRedir/10.0.19045", "translate": "f"}
WIN32_NS = "urn:schemas-microsoft-com:"
LOCK_BODY = (
    '<?xml version="1.0" encoding="utf-8" ?><D:lockinfo xmlns:D="DAV:"><D:lockscope><D:exclusive/></D:lockscope>'
    "<D:locktype><D:write/></D:locktype><D:owner><D:href>PC\\user</D:href></D:owner></D:lockinfo>"
)


def win32_times(created: str, accessed: str | None, modified: str, attrs: str = "00000020") -> str:
    props = f"<Z:Win32CreationTime>{created}</Z:Win32CreationTime>"
    if accessed:
        props += f"<Z:Win32LastAccessTime>{accessed}</Z:Win32LastAccessTime>"
    props += f"<Z:Win32LastModifiedTime>{modified}</Z:Win32LastModifiedTime>"
    props += f"<Z:Win32FileAttributes>{attrs}</Z:Win32FileAttributes>"
    return (
        f'<?xml version="1.0" encoding="utf-8" ?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="{WIN32_NS}">'
        f"<D:set><D:prop>{props}</D:prop></D:set></D:propertyupdate>"
    )


# --- item 3: PROPFIND without Depth on a file ----------------------------------------


def test_propfind_without_depth_on_a_file_is_depth_0(share) -> None:
    """fsspec/webdav4 sends no Depth header, even on files (cat, get, open, exists, size)."""
    (share.root / "f.txt").write_bytes(b"webdav4")
    (share.root / "dir").mkdir()
    (share.root / "dir" / "g.txt").write_bytes(b"g")
    for path, depth in [("f.txt", None), ("f.txt", "infinity"), ("dir/g.txt", None), ("dir/g.txt", "infinity")]:
        headers = {"Depth": depth} if depth else {}
        r = share.request("PROPFIND", path, data=PROPFIND_MD5, headers=headers)
        assert r.status_code == 207, (path, depth, r.status_code, r.text)
        listing = parse_multistatus(r.content)
        assert list(listing) == ["/" + path], listing
        md5 = hashlib.md5((share.root / path).read_bytes()).hexdigest()
        assert listing["/" + path]["{http://owncloud.org/ns}checksums"] == f"MD5:{md5}"
    allprop = share.request("PROPFIND", "f.txt")  # no body, no Depth
    assert allprop.status_code == 207 and "getcontentlength>7<" in allprop.text


def test_propfind_without_depth_on_a_folder_is_still_refused(share) -> None:
    (share.root / "dir").mkdir()
    for headers in ({}, {"Depth": "infinity"}):
        r = share.request("PROPFIND", "dir/", headers=headers)
        assert r.status_code == 403 and "propfind-finite-depth" in r.text
    assert share.request("PROPFIND", "missing.txt").status_code == 404


# --- item 4: Windows Explorer's file times -------------------------------------------


def test_explorer_copy_keeps_the_source_mtime(share) -> None:
    """The mini-redirector's sequence for a file copied in (wsgidav issue #112 has a trace):
    PUT 0 bytes, LOCK, PROPPATCH the Win32 times, HEAD, PUT the content under the lock,
    PROPPATCH the modification time again, UNLOCK."""
    s = requests.Session()
    s.auth = HTTPDigestAuth("alice", PASSWORDS["alice"])  # Explorer's default over http
    s.headers.update(EXPLORER)
    url = share.url + "Report%202019.docx"
    body = b"PK\x03\x04 a word document" * 100
    created, modified = "Tue, 05 Mar 2019 08:00:00 GMT", "Wed, 06 Mar 2019 17:45:30 GMT"
    assert s.put(url, data=b"", timeout=30).status_code == 201
    lock = s.request("LOCK", url, data=LOCK_BODY, headers={"Timeout": "Second-3600"}, timeout=30)
    assert lock.status_code == 200, lock.text
    token = lock.headers["Lock-Token"]
    times = win32_times(created, "Fri, 22 Nov 2024 10:00:00 GMT", modified)
    first = s.request("PROPPATCH", url, data=times, headers={"If": f"({token})"}, timeout=30)
    assert first.status_code == 207 and first.text.count("200 OK") >= 1 and "403" not in first.text, first.text
    assert s.head(url, timeout=30).status_code == 200
    put = s.put(url, data=body, headers={"If": f"({token})"}, timeout=30)
    assert put.status_code == 204, put.text
    second = s.request("PROPPATCH", url, data=win32_times(created, None, modified), headers={"If": f"({token})"}, timeout=30)
    assert second.status_code == 207 and "403" not in second.text and "423" not in second.text, second.text
    assert s.request("UNLOCK", url, headers={"Lock-Token": token}, timeout=30).status_code == 204

    placed = share.root / "Report 2019.docx"
    assert placed.read_bytes() == body
    expected = calendar.timegm((2019, 3, 6, 17, 45, 30))
    assert placed.stat().st_mtime == expected
    # The MD5 stays correct, and the other Win32 properties are kept as dead properties.
    assert checksums(share)["/Report 2019.docx"] == f"MD5:{hashlib.md5(body).hexdigest()}"
    names = "".join(f"<Z:{n}/>" for n in ("Win32CreationTime", "Win32FileAttributes", "Win32LastModifiedTime"))
    found = s.request(
        "PROPFIND", url, headers={"Depth": "0"}, timeout=30,
        data=f'<D:propfind xmlns:D="DAV:" xmlns:Z="{WIN32_NS}"><D:prop>{names}<D:getlastmodified/></D:prop></D:propfind>',
    ).text  # fmt: skip
    assert created in found and "00000020" in found and found.count(modified) == 2, found


def test_win32_mtime_alone_and_a_bad_date(share) -> None:
    f = share.root / "a.txt"
    f.write_bytes(b"a")
    body = (f'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="{WIN32_NS}"><D:set><D:prop>'
            "<Z:Win32LastModifiedTime>{}</Z:Win32LastModifiedTime></D:prop></D:set></D:propertyupdate>")  # fmt: skip
    ok = share.request("PROPPATCH", "a.txt", data=body.format("Sat, 01 Jan 2000 00:00:00 GMT"), headers=EXPLORER)
    assert ok.status_code == 207 and "200 OK" in ok.text
    assert f.stat().st_mtime == 946684800
    bad = share.request("PROPPATCH", "a.txt", data=body.format("yesterday-ish"), headers=EXPLORER)
    assert "200 OK" not in bad.text and f.stat().st_mtime == 946684800


# --- item 6: a guest sees what logging in would allow ------------------------------------


def test_guest_options_advertise_what_a_login_allows(start_share, tmp_path) -> None:
    share = start_share(anonymous="read")
    (share.root / "f.txt").write_bytes(b"f")
    root = requests.options(share.url, headers=EXPLORER, timeout=30)
    assert root.status_code == 200
    assert "2" in root.headers["DAV"], root.headers
    assert {"LOCK", "MOVE", "DELETE", "PROPPATCH"} <= set(root.headers["Allow"].split(", "))
    new = requests.options(share.url + "new.txt", timeout=30)
    assert {"PUT", "MKCOL", "LOCK"} <= set(new.headers["Allow"].split(", "))
    # Writing still needs the login: a challenge, not a silent refusal.
    put = requests.put(share.url + "new.txt", data=b"x", timeout=30)
    assert put.status_code == 401 and "digest" in put.headers["WWW-Authenticate"].lower()
    assert not (share.root / "new.txt").exists()
    assert requests.get(share.url + "f.txt", timeout=30).content == b"f"


def test_guest_options_stay_read_only_when_no_login_can_write(start_share, tmp_path) -> None:
    from davsync.users import Users

    readers = tmp_path / "readers.json"
    db = Users({})
    db.add("bob", PASSWORDS["bob"], read_only=True)
    db.save(readers)
    share = start_share(anonymous="read", users=readers)
    r = requests.options(share.url, timeout=30)
    assert r.headers["DAV"].replace(" ", "") == "1"
    assert not {"PUT", "DELETE", "MKCOL", "LOCK", "MOVE"} & set(r.headers["Allow"].split(", "))


# --- item 5: Digest PUT and the connection ----------------------------------------------


def _digest_header(share, method: str, path: str, nc: int, nonce: str) -> str:
    h = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    ha1 = h(f"alice:davsync:{PASSWORDS['alice']}")
    response = h(f"{ha1}:{nonce}:{nc:08x}:c0ffee:auth:{h(f'{method}:{path}')}")
    return (f'Digest username="alice",realm="davsync",nonce="{nonce}",uri="{path}",response="{response}",'
            f'algorithm="MD5",qop=auth,cnonce="c0ffee",nc={nc:08x}')  # fmt: skip


def test_digest_put_keeps_the_connection_unless_the_client_closes_it(share) -> None:
    """lftp's PUT says `Connection: close` itself (lftp never asks keep-alive for uploads),
    and the server honours it; the same Digest PUT without it keeps the connection, and a
    PROPPATCH follows on it with credentials."""
    challenge = requests.put(share.url + "x.txt", data=b"", timeout=30)
    nonce = re.search(r'nonce="([^"]+)"', challenge.headers["WWW-Authenticate"]).group(1)
    conn = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    conn.request("PUT", "/up.txt", body=b"hello lftp", headers={
        "Authorization": _digest_header(share, "PUT", "/up.txt", 1, nonce), "X-OC-MTime": "1577934245"})  # fmt: skip
    put = conn.getresponse()
    put.read()
    assert put.status == 201 and put.getheader("Connection") is None and put.getheader("X-OC-MTime") == "accepted"
    sock = conn.sock
    body = ('<?xml version="1.0" ?><propertyupdate xmlns="DAV:"><set><prop><getlastmodified>'
            "Thu,  2 Jan 2020 03:04:05 GMT</getlastmodified></prop></set></propertyupdate>")  # fmt: skip
    conn.request("PROPPATCH", "/up.txt", body=body, headers={
        "Authorization": _digest_header(share, "PROPPATCH", "/up.txt", 2, nonce), "Content-Type": "text/xml"})  # fmt: skip
    patched = conn.getresponse()
    patched.read()
    assert patched.status == 207 and conn.sock is sock  # same connection, still authorised
    assert (share.root / "up.txt").stat().st_mtime == 1577934245
    conn.close()

    closing = http.client.HTTPConnection("127.0.0.1", share.server.port, timeout=30)
    closing.request("PUT", "/up2.txt", body=b"x", headers={
        "Authorization": _digest_header(share, "PUT", "/up2.txt", 3, nonce), "Connection": "close"})  # fmt: skip
    answer = closing.getresponse()
    assert answer.status == 201 and answer.getheader("Connection") == "close"
    closing.close()
    with socket.create_connection(("127.0.0.1", share.server.port), timeout=5):
        pass


def test_webdav4_fsspec_calls_on_files(share, tmp_path) -> None:
    """The real webdav4 client (fsspec): its file calls PROPFIND the file with no Depth."""
    pytest.importorskip("webdav4", reason="webdav4[fsspec] is a test dependency: pip install -e '.[test]'")
    from webdav4.fsspec import WebdavFileSystem

    data = b"read by fsspec " * 1000
    (share.root / "dir 1").mkdir()
    (share.root / "dir 1" / "naïve café.txt").write_bytes(data)
    fs = WebdavFileSystem(share.url, auth=("alice", PASSWORDS["alice"]))
    path = "dir 1/naïve café.txt"  # webdav4 does not escape "#" itself
    assert fs.exists(path) and not fs.exists("dir 1/missing.txt")
    assert fs.size(path) == len(data)
    assert fs.cat(path) == data
    with fs.open(path, "rb") as f:
        assert f.read(15) == b"read by fsspec "
    fs.get(path, str(tmp_path / "got.txt"))
    assert (tmp_path / "got.txt").read_bytes() == data
    assert fs.info(path)["type"] == "file"
    fs.pipe("dir 1/up.txt", b"written by fsspec")
    assert (share.root / "dir 1" / "up.txt").read_bytes() == b"written by fsspec"


def test_webdavclient3_set_property_sends_depth_1_and_is_accepted(share) -> None:
    """RFC 4918 gives PROPPATCH no Depth semantics; webdavclient3's set_property sends Depth: 1."""
    from webdav3.client import Client

    (share.root / "notes.txt").write_text("hello")
    client = Client({"webdav_hostname": share.url, "webdav_login": "alice", "webdav_password": PASSWORDS["alice"]})
    client.set_property("notes.txt", {"namespace": "urn:example", "name": "colour", "value": "blue"})
    assert client.get_property("notes.txt", {"namespace": "urn:example", "name": "colour"}) == "blue"
    assert (share.root / "notes.txt").read_text() == "hello"
