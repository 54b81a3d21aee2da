"""The server's fast paths answer exactly as the general WsgiDAV path would, only cheaper.

Each fast path is checked against the slow one on the same files (parsed, not byte-compared),
and where it takes a shortcut (sendfile, a watch mask) the shortcut is shown to hold.
"""

from __future__ import annotations

import base64
import os
import random
import re
import socket
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PASSWORDS, Share, wait_until
from davhelp import WEIRD_NAMES
from hypothesis import given, settings
from hypothesis import strategies as st
from lxml import etree
from watchdog.events import FileSystemEvent

from davsync.server import fastget, fastpropfind, http, sendfile, watcher


def test_reads_do_not_wake_the_change_tracker(start_share, monkeypatch: pytest.MonkeyPatch) -> None:
    """Opening and reading a file is not a change: inotify is not even asked to report it (every
    GET would otherwise cost the server an event handled in Python)."""
    seen: list[tuple[str, str]] = []
    original = watcher._Handler.on_any_event

    def record(self: watcher._Handler, event: FileSystemEvent) -> None:
        seen.append((event.event_type, os.fsdecode(event.src_path)))
        original(self, event)

    monkeypatch.setattr(watcher._Handler, "on_any_event", record)
    share: Share = start_share()
    (share.root / "read-me.txt").write_bytes(b"x" * 100)
    share.wait_indexed()
    seen.clear()
    for _ in range(3):
        assert share.request("GET", "read-me.txt").content == b"x" * 100
        (share.root / "read-me.txt").read_bytes()
    (share.root / "written.txt").write_bytes(b"new")  # inotify delivers in order: this comes after the reads
    wait_until(lambda: any(p.endswith("written.txt") for _, p in seen), what="the write to be seen")
    assert [kind for kind, p in seen if Path(p).name == "read-me.txt"] == []


# --- GET: sendfile, ranges, HEAD -------------------------------------------------------------


def _big(share: Share, size: int = 3 * 1024 * 1024 + 17) -> bytes:
    data = random.Random(5).randbytes(size)
    (share.root / "big é.bin").write_bytes(data)
    return data


BIG = "big%20%C3%A9.bin"
COMPARED = ("Content-Length", "Content-Range", "Content-Type", "ETag", "Last-Modified", "Accept-Ranges")


def _fast_and_slow(share: Share, method: str, headers: dict[str, str]) -> tuple[requests.Response, requests.Response]:
    """The same request through the fast path and through WsgiDAV (`If-Match: *` always holds
    for an existing file, and sends the request the general way)."""
    fast = share.request(method, BIG, headers=headers)
    slow = share.request(method, BIG, headers={**headers, "If-Match": "*"})
    return fast, slow


RANGES = [None, "bytes=0-0", "bytes=1000-", "bytes=100-199", "bytes=-5000", "bytes=3000000-99999999", "bytes=-99999999"]


def test_fast_get_answers_like_wsgidav(share: Share, monkeypatch: pytest.MonkeyPatch) -> None:
    data = _big(share)
    sent: list[int] = []
    original = sendfile.SendfileGateway.send_file
    monkeypatch.setattr(sendfile.SendfileGateway, "send_file",
                        lambda self, f: (sent.append(self.remaining_bytes_out), original(self, f))[-1])  # fmt: skip
    for method in ("GET", "HEAD"):
        for range_ in RANGES:
            sent.clear()
            fast, slow = _fast_and_slow(share, method, {"Range": range_} if range_ else {})
            assert fast.status_code == slow.status_code == (206 if range_ else 200)
            for name in COMPARED:
                assert fast.headers.get(name) == slow.headers.get(name), (method, range_, name)
            assert fast.content == slow.content
            if method == "HEAD":
                assert fast.content == b"" and sent == []
                continue
            span = (fast.headers.get("Content-Range") or f"bytes 0-{len(data) - 1}/").split()[1]
            start, _, end = span.partition("/")[0].partition("-")
            assert fast.content == data[int(start) : int(end) + 1]
            big_enough = len(fast.content) > fastget.SMALL
            assert sent == ([len(fast.content)] if big_enough else []), "the fast path has the kernel send big bodies"
    for name in ("notes.txt", "page.HTML", "archive.tar.gz", "noext"):
        (share.root / name).write_text("text")
        fast, slow = share.request("GET", name), share.request("GET", name, headers={"If-Match": "*"})
        assert [fast.headers.get(h) for h in COMPARED] == [slow.headers.get(h) for h in COMPARED], name


def test_fast_get_if_range_and_what_it_leaves_to_wsgidav(share: Share) -> None:
    """A resumed download: If-Range with the current ETag gets the rest; any other gets the whole
    file. Unsatisfiable, overlapping or backwards ranges are WsgiDAV's to answer (several
    ascending ranges are answered as multipart/byteranges: test_delta_pull.py)."""
    data = _big(share)
    etag = share.request("HEAD", BIG).headers["ETag"]
    for if_range, status in ((etag, 206), ('"0-0-0-0"', 200), (f"W/{etag}", 200)):
        fast, slow = _fast_and_slow(share, "GET", {"Range": "bytes=1000-", "If-Range": if_range})
        assert fast.status_code == slow.status_code == status
        assert fast.content == slow.content == (data[1000:] if status == 206 else data)
    for range_ in ("bytes=99999999-", "bytes=0-9,5-19", "bytes=5-1"):
        fast, slow = _fast_and_slow(share, "GET", {"Range": range_})
        assert (fast.status_code, fast.headers.get("Content-Range")) == (slow.status_code, slow.headers.get("Content-Range"))
        if fast.ok:
            assert fast.content == slow.content


def test_big_get_over_tls_writes_straight_to_the_socket(start_share, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    trustme = pytest.importorskip("trustme", reason="trustme is in the test extras")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    key_file, cert_file, ca_file = tmp_path / "key.pem", tmp_path / "cert.pem", tmp_path / "ca.pem"
    cert.private_key_pem.write_to_path(str(key_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    ca.cert_pem.write_to_path(str(ca_file))
    share = start_share(tls_cert=cert_file, tls_key=key_file)
    data = _big(share, 9 * 1024 * 1024 + 3)  # more than one 4 MiB block
    blocks: list[int] = []
    original = sendfile._send_blocks
    monkeypatch.setattr(sendfile, "_send_blocks", lambda sock, f, n: (blocks.append(n), original(sock, f, n))[-1])
    session = share.session()
    whole = session.get(share.url + BIG, timeout=30, verify=str(ca_file))
    part = session.get(share.url + BIG, headers={"Range": "bytes=5000000-"}, timeout=30, verify=str(ca_file))
    assert whole.content == data and (part.status_code, part.content) == (206, data[5000000:])
    assert blocks == [len(data), len(data) - 5000000]


def test_a_file_that_shrinks_while_sent_closes_the_connection(share: Share, monkeypatch: pytest.MonkeyPatch) -> None:
    """The client sees a short body and a closed connection, never a wait for bytes that will not come."""
    _big(share)
    original = sendfile.SendfileGateway.send_file

    def shrink_first(self: sendfile.SendfileGateway, f: Any) -> None:
        os.truncate(share.root / "big é.bin", 1000)
        original(self, f)

    monkeypatch.setattr(sendfile.SendfileGateway, "send_file", shrink_first)
    session = share.session()
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        session.get(share.url + BIG, timeout=10)
    monkeypatch.setattr(sendfile.SendfileGateway, "send_file", original)
    assert session.get(share.url + BIG, timeout=10).content == (share.root / "big é.bin").read_bytes()


# --- PROPFIND: a folder's listing from one scandir and one index query ----------------------------

PROP_SETS = {
    "davsync": ["d:resourcetype", "d:getcontentlength", "d:getlastmodified", "d:getetag", "oc:checksums"],
    "rclone": ["d:displayname", "d:getlastmodified", "d:getcontentlength", "d:resourcetype", "oc:checksums",
               "oc:permissions"],
    "cadaver": ["d:getcontentlength", "d:resourcetype", "d:getlastmodified", "ap:executable", "d:checked-in",
                "d:checked-out"],
    "gio": ["d:creationdate", "d:displayname", "d:getcontentlength", "d:getcontenttype", "d:getetag",
            "d:getlastmodified", "d:resourcetype"],
    "explorer": ["d:name", "d:parentname", "d:href", "d:ishidden", "d:isreadonly", "d:getcontenttype",
                 "d:contentclass", "d:getcontentlanguage", "d:creationdate", "d:lastaccessed", "d:getlastmodified",
                 "d:getcontentlength", "d:iscollection", "d:isstructureddocument", "d:defaultdocument",
                 "d:displayname", "d:isroot", "d:resourcetype", "z:Win32LastModifiedTime", "z:Win32FileAttributes"],
    "dead and odd": ["x:color", "oc:checksums", "z:Win32LastModifiedTime", "nons", "x:color"],
}  # fmt: skip
NAMESPACES = ('xmlns:d="DAV:" xmlns:oc="http://owncloud.org/ns" xmlns:ap="http://apache.org/dav/props/" '
              'xmlns:z="urn:schemas-microsoft-com:" xmlns:x="urn:x-test"')  # fmt: skip


def _propfind_body(names: list[str]) -> str:
    props = "".join(f"<{n}/>" if ":" in n else f'<{n} xmlns=""/>' for n in names)
    return f'<?xml version="1.0" encoding="utf-8"?><d:propfind {NAMESPACES}><d:prop>{props}</d:prop></d:propfind>'


def _canonical(body: bytes) -> list[tuple]:
    """A multistatus as data: per response, its href and (status, [(tag, text, children)]) per propstat."""
    root = etree.fromstring(body, etree.XMLParser(resolve_entities=False, no_network=True))
    assert root.tag == "{DAV:}multistatus"

    def el(e: Any) -> tuple:
        return e.tag, (e.text or "").strip(), [el(c) for c in e], dict(e.attrib)

    return [
        (r.findtext("{DAV:}href"), [(ps.findtext("{DAV:}status"), [el(p) for p in ps.find("{DAV:}prop")])
                                    for ps in r.findall("{DAV:}propstat")])
        for r in root.findall("{DAV:}response")
    ]  # fmt: skip


def _listing_tree(share: Share) -> Path:
    folder = share.root / "Fotos & Notizen"
    (folder / "sub dir").mkdir(parents=True)
    (folder / "sub dir" / "inner.txt").write_text("inner")
    names = [*WEIRD_NAMES, "a&b<c>.txt", "quote'\"s.md", "archive.tar.gz", "noext", "UPPER.JPG", "cr\rname.txt",
             "tab\tname.txt", "dollar$(1).pdf", "pipe|plus+.bin", "~tilde.txt", "emoji 📷.heic"]  # fmt: skip
    for i, name in enumerate(names):
        (folder / name).write_bytes(b"x" * i)
    share.wait_indexed()
    (folder / "linked.txt").symlink_to(folder / "noext")
    (folder / ".~davsync-upload.part").write_bytes(b"hidden")
    (folder / "noext").write_bytes(b"changed after indexing")  # its MD5 is computed while listing
    return folder


def test_fast_propfind_answers_like_wsgidav(share: Share, monkeypatch: pytest.MonkeyPatch) -> None:
    """For the property sets real clients send, Depth 0 and 1, the folder, its root and a folder
    with dead properties: the same multistatus as WsgiDAV's (parsed, namespace-aware), 200 first."""
    _listing_tree(share)
    for target, body in (("Fotos%20%26%20Notizen/sub%20dir", '<x:color xmlns:x="urn:x-test">teal</x:color>'),
                         ("Fotos%20%26%20Notizen/noext", "<x:color xmlns:x=\"urn:x-test\">red<x:b>!</x:b></x:color>"),
                         ("Fotos%20%26%20Notizen/sub%20dir", '<oc:checksums xmlns:oc="http://owncloud.org/ns">dead</oc:checksums>')):  # fmt: skip
        patch = f'<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>{body}</d:prop></d:set></d:propertyupdate>'
        assert share.request("PROPPATCH", target, data=patch).status_code == 207
    rendered: list[int] = []
    original = fastpropfind._Listing.render
    monkeypatch.setattr(fastpropfind._Listing, "render", lambda self, m: (rendered.append(len(m)), original(self, m))[-1])
    session = share.session()
    for label, names in PROP_SETS.items():
        for path, depth in (("Fotos%20%26%20Notizen/", "1"), ("Fotos%20%26%20Notizen", "1"), ("", "1"),
                            ("Fotos%20%26%20Notizen/sub%20dir", "0")):  # fmt: skip
            kw: dict[str, Any] = {"data": _propfind_body(names).encode(), "timeout": 30}
            fast = session.request("PROPFIND", share.url + path, headers={"Depth": depth}, **kw)
            slow = session.request("PROPFIND", share.url + path, headers={"Depth": depth, "If-Match": "*"}, **kw)
            assert fast.status_code == slow.status_code == 207, (label, path)
            assert fast.headers["Content-Type"] == slow.headers["Content-Type"]
            assert _canonical(fast.content) == _canonical(slow.content), (label, path, depth)
            for response in _canonical(fast.content):
                assert all(" 200 " not in status for status, _ in response[1][1:]), "200 comes first"
    assert len(rendered) == len(PROP_SETS) * 4, "every one of those went the fast way"
    assert rendered[0] == 19, "the symlink and the upload temp file are not listed"


def test_digest_logins_take_the_fast_paths_once_the_gate_checked_them(start_share,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Windows' mini-redirector and many phone apps log in with Digest: once FrontGate accepted the
    login, a GET or PROPFIND is as cheap as with Basic. A wrong password never gets that far."""
    share: Share = start_share(anonymous="off")
    (share.root / "f.txt").write_text("digest")
    share.wait_indexed()
    fast: list[str] = []
    original = fastget.FastGet._try
    monkeypatch.setattr(fastget.FastGet, "_try",
                        lambda self, env, sr: (r := original(self, env, sr), r is not None and fast.append("GET"))[0])  # fmt: skip
    render = fastpropfind._Listing.render
    monkeypatch.setattr(fastpropfind._Listing, "render", lambda self, m: (fast.append("PROPFIND"), render(self, m))[-1])
    session = requests.Session()
    session.auth = requests.auth.HTTPDigestAuth("alice", PASSWORDS["alice"])
    got = session.get(share.url + "f.txt", timeout=30)
    assert (got.status_code, got.content, fast) == (200, b"digest", ["GET"])
    body = _propfind_body(PROP_SETS["davsync"]).encode()
    listed = session.request("PROPFIND", share.url, data=body, headers={"Depth": "1"}, timeout=30)
    assert listed.status_code == 207 and fast == ["GET", "PROPFIND"]
    session.auth = requests.auth.HTTPDigestAuth("alice", "wrong")
    assert session.get(share.url + "f.txt", timeout=30).status_code == 401
    assert fast == ["GET", "PROPFIND"]


LEFT_TO_WSGIDAV = [
    (b"", {"Depth": "1"}, "alice"),  # allprop
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:allprop/></d:propfind>', {"Depth": "1"}, "alice"),
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:propname/></d:propfind>', {"Depth": "1"}, "alice"),
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:lockdiscovery/></d:prop></d:propfind>',
     {"Depth": "1"}, "alice"),
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:sync-token/></d:prop></d:propfind>',
     {"Depth": "0"}, "alice"),
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>', {}, "alice"),
    (b'<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/></d:prop></d:propfind>',
     {"Depth": "1"}, None),  # a guest on a private share
    (b"<d:propfind xmlns:d='DAV:'><d:prop><d:getetag/></d:prop>", {"Depth": "1"}, "alice"),  # not XML
]  # fmt: skip


def test_propfinds_the_fast_path_leaves_to_wsgidav(start_share, monkeypatch: pytest.MonkeyPatch) -> None:
    """allprop, propname, lock and sync properties, no Depth, no login, broken XML: WsgiDAV's."""
    share: Share = start_share(anonymous="off")
    (share.root / "f.txt").write_text("f")
    rendered: list[int] = []
    monkeypatch.setattr(fastpropfind._Listing, "render", lambda self, m: rendered.append(1))
    for body, headers, user in LEFT_TO_WSGIDAV:
        r = share.request("PROPFIND", "", user=user, data=body, headers=headers)
        assert rendered == [] and r.status_code in (207, 400, 401, 403), (body, r.status_code)


def test_a_big_folder_is_streamed_and_complete(share: Share) -> None:
    folder = share.root / "many"
    folder.mkdir()
    for i in range(fastpropfind.STREAM_AFTER * 2 + 7):
        (folder / f"f{i:04}.txt").write_bytes(b"%d" % i)
    share.wait_indexed()
    body = _propfind_body(PROP_SETS["davsync"]).encode()
    fast = share.request("PROPFIND", "many/", data=body, headers={"Depth": "1"})
    slow = share.request("PROPFIND", "many/", data=body, headers={"Depth": "1", "If-Match": "*"})
    assert "Content-Length" not in fast.headers, "sent chunked, batch by batch"
    assert _canonical(fast.content) == _canonical(slow.content)
    assert len(_canonical(fast.content)) == fastpropfind.STREAM_AFTER * 2 + 8


def test_content_types_remembered_per_extension_are_wsgidavs() -> None:
    from wsgidav import util

    config = {"default_charset": "utf-8"}
    names = [*WEIRD_NAMES, "a.tar.gz", "b.TGZ", "c.svgz", "d.Z", "e.br", ".profile", "..x", "x.", "A.JPG", "a.jpg",
             "noext", "x.unknownext", "notes.txt", "data.JSON", "dir.d/file", "v1.2/readme", "page.HTML"]  # fmt: skip
    for _ in range(2):  # the second time from the cache
        for name in names:
            path = f"/some folder/{name}"
            assert fastget.mime_type(path, config) == util.guess_mime_type(path, config), name


# --- the request reader on plain http -------------------------------------------------------------


def _run_reader(make: Any, payload: bytes, chunks: list[int], ops: list[tuple[str, int]]) -> list[bytes]:
    a, b = socket.socketpair()
    a.settimeout(10)

    def send() -> None:
        pos = 0
        for size in chunks:
            b.sendall(payload[pos : pos + size])
            pos += size
        b.sendall(payload[pos:])
        b.shutdown(socket.SHUT_WR)

    sender = threading.Thread(target=send)
    sender.start()
    reader = make(a)
    try:
        out = [getattr(reader, op)(size) for op, size in ops]
        out.append(reader.read(-1))
    finally:
        sender.join(10)
        a.close()
        b.close()
    return out


@settings(max_examples=60, deadline=None)
@given(
    payload=st.lists(st.binary(max_size=300), max_size=12).map(b"\r\n".join),
    chunks=st.lists(st.integers(1, 700), max_size=6),
    ops=st.lists(st.tuples(st.sampled_from(["read", "readline"]), st.integers(-1, 900)), max_size=12),
)
def test_the_line_reader_reads_like_cheroots(payload: bytes, chunks: list[int], ops: list[tuple[str, int]]) -> None:
    """Any sequence of read(n)/readline(n) over any chunking of the stream gives what cheroot's own
    buffered reader gives (the reference), including at the end of the stream."""
    from cheroot.makefile import MakeFile

    ours = _run_reader(lambda s: http.LineReader(s, 64), payload, chunks, ops)
    theirs = _run_reader(lambda s: MakeFile(s, "rb", 64), payload, chunks, ops)
    assert ours == theirs


def test_pipelined_requests_and_a_chunked_upload_on_plain_http(share: Share) -> None:
    """Two requests in one packet are both answered (the second waits in the reader's buffer), and
    a chunked PUT arrives whole."""
    (share.root / "one.txt").write_bytes(b"first")
    (share.root / "two.txt").write_bytes(b"second")
    port = share.server.port
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        auth = b"Authorization: Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()) + b"\r\n"
        s.sendall(b"GET /one.txt HTTP/1.1\r\nHost: x\r\n" + auth + b"\r\n"
                  b"GET /two.txt HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" + auth + b"\r\n")  # fmt: skip
        answer = b""
        while chunk := s.recv(65536):
            answer += chunk
    assert answer.count(b"HTTP/1.1 200 OK") == 2 and answer.endswith(b"second") and b"\r\n\r\nfirst" in answer
    body = random.Random(9).randbytes(300_000)
    r = share.request("PUT", "up.bin", data=iter([body[:1000], body[1000:200_000], body[200_000:]]))
    assert r.status_code == 201 and (share.root / "up.bin").read_bytes() == body


@pytest.mark.contract("cheroot")
def test_cheroot_asks_its_reader_only_what_the_line_reader_does() -> None:
    """cheroot reads a connection through read, readline, has_data and close (and counts bytes_read):
    a new use upstream would find LineReader lacking it."""
    import cheroot

    used = {m for f in Path(cheroot.__file__).parent.glob("*.py") for m in re.findall(r"rfile\.(\w+)", f.read_text())}
    assert used <= {"read", "readline", "has_data", "close", "bytes_read"}, used
    assert all(hasattr(http.LineReader, m) or m == "bytes_read" for m in used)
