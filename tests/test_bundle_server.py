"""The server's many-files-per-request extension: the bundle REPORT and the bulk POST.

Hostile member paths, scopes (read-only accounts, anonymous guests, share links), changed and
missing members, MD5 and precondition checks per member, cut bodies. Real server on 127.0.0.1.
"""

from __future__ import annotations

import hashlib
import io
import os
import socket
import tarfile
import threading
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

import pytest
import requests
from conftest import PASSWORDS, upload_temps, wait_until

from davsync.client.bulk import BulkItem, BulkUnsupported, bulk_upload
from davsync.client.remote import Remote
from davsync.client.transport import ConnectionSettings
from davsync.paxstream import END_OF_ARCHIVE, PaxReader, member_bytes
from davsync.server.links import LinkStore


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def bundle_body(*paths: str | tuple[str, str]) -> bytes:
    items = []
    for p in paths:
        path, etag = p if isinstance(p, tuple) else (p, None)
        attr = f" etag={quoteattr(etag)}" if etag else ""
        items.append(f"<ds:file{attr}>{escape(path)}</ds:file>")
    return f'<ds:bundle xmlns:ds="urn:davsync:">{"".join(items)}</ds:bundle>'.encode()


def fetch(session: requests.Session, url: str, *paths: str | tuple[str, str]) -> list[tuple[str, int, dict, bytes]]:
    r = session.request("REPORT", url, data=bundle_body(*paths), timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["Content-Type"] == "application/x-tar"
    reader = PaxReader(io.BytesIO(r.content).read)
    out = []
    while (m := reader.next()) is not None:
        out.append((m.path, m.status, m.attrs, reader.data(m, 1 << 30) or b""))
    assert reader.ended
    return out


@pytest.fixture
def tree(share):  # type: ignore[no-untyped-def]
    root = share.root
    (root / "docs" / "deep").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"alpha")
    (root / "docs" / "deep" / "ünï b.txt").write_bytes(b"beta" * 100)
    (root / "top.txt").write_bytes(b"top")
    (root / "%2e%2e").write_bytes(b"a file literally named %2e%2e")
    (root.parent / "outside.txt").write_bytes(b"SECRET outside the share")
    os.symlink(root.parent / "outside.txt", root / "link.txt")
    os.symlink(root.parent, root / "linkdir")
    share.wait_indexed()
    return share


def test_bundle_carries_each_member_with_path_size_mtime_etag_and_md5(tree) -> None:
    s = tree.session()
    got = fetch(s, tree.url, "docs/a.txt", "docs/deep/ünï b.txt", "top.txt")
    assert [(p, st, data) for p, st, _, data in got] == [
        ("docs/a.txt", 200, b"alpha"), ("docs/deep/ünï b.txt", 200, b"beta" * 100), ("top.txt", 200, b"top")]
    for path, _, attrs, data in got:
        assert attrs["md5"] == md5(data)
        st = os.stat(tree.root / path)
        assert attrs["etag"] == tree.request("HEAD", path).headers["ETag"].strip('"')
    # a generic tar reader reads the same stream (pax path, size and mtime)
    raw = s.request("REPORT", tree.url, data=bundle_body("docs/a.txt", "top.txt"), timeout=30).content
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r|") as t:
        names = [(m.name, m.size, int(m.mtime), t.extractfile(m).read()) for m in t]  # type: ignore[union-attr]
    st = os.stat(tree.root / "top.txt")
    assert names == [("docs/a.txt", 5, int(os.stat(tree.root / "docs/a.txt").st_mtime), b"alpha"),
                     ("top.txt", 3, int(st.st_mtime), b"top")]
    # relative to the collection asked
    assert [p for p, *_ in fetch(s, tree.url + "docs/", "a.txt", "deep/ünï b.txt")] == ["a.txt", "deep/ünï b.txt"]


def test_advertised_in_options_and_as_properties_by_scope(tree) -> None:
    alice = tree.request("OPTIONS", "")
    assert "max-files=" in alice.headers["X-Davsync-Bundle"] and "max-files=" in alice.headers["X-Davsync-Bulk-Upload"]
    bob = tree.request("OPTIONS", "", user="bob")  # read-only: bundles yes, bulk upload no
    assert "X-Davsync-Bundle" in bob.headers and "X-Davsync-Bulk-Upload" not in bob.headers
    body = ('<d:propfind xmlns:d="DAV:" xmlns:ds="urn:davsync:"><d:prop><ds:bundle/><ds:bulk-upload/></d:prop>'
            "</d:propfind>")
    r = tree.request("PROPFIND", "", data=body, headers={"Depth": "0"})
    assert r.status_code == 207 and "bundle max-files" in r.text and "bulk-upload max-files" in r.text
    r = tree.request("PROPFIND", "", user="bob", data=body, headers={"Depth": "0"})
    assert "bundle max-files" in r.text and "bulk-upload max-files" not in r.text
    # allprop (what generic clients ask) never shows them
    assert "urn:davsync:" not in tree.request("PROPFIND", "", headers={"Depth": "1"}).text


HOSTILE = ["../outside.txt", "/etc/passwd", "docs/../../outside.txt", "docs\\a.txt", "docs//a.txt", "./top.txt",
           "link.txt", "linkdir/outside.txt", ".~davsync-versions/x", "docs/.~davsync-upload.part", ""]


def test_hostile_members_fail_alone_and_nothing_outside_is_read(tree) -> None:
    asked = [x for h in HOSTILE for x in (h, "top.txt")]
    got = fetch(tree.session(), tree.url, *asked)
    assert [p for p, *_ in got] == asked
    for (path, status, attrs, data), hostile in zip(got[::2], HOSTILE, strict=True):
        assert path == hostile and status in (403, 404) and data == b"" and "error" in attrs, (hostile, status)
    assert all(st == 200 and data == b"top" for _, st, _, data in got[1::2])  # the good ones between still arrive
    assert not any(b"SECRET" in data for *_, data in got)


def test_encoded_names_are_names_not_escapes(tree) -> None:
    [(path, status, _, data)] = fetch(tree.session(), tree.url, "%2e%2e")
    assert (path, status, data) == ("%2e%2e", 200, b"a file literally named %2e%2e")


def test_missing_folder_and_changed_members_fail_alone(tree) -> None:
    s = tree.session()
    etag = tree.request("HEAD", "top.txt").headers["ETag"].strip('"')
    got = fetch(s, tree.url, "gone.txt", "docs", ("top.txt", etag), ("docs/a.txt", "stale-etag"), "docs/a.txt")
    assert [(p, st) for p, st, _, _ in got] == [("gone.txt", 404), ("docs", 404), ("top.txt", 200),
                                                ("docs/a.txt", 412), ("docs/a.txt", 200)]  # fmt: skip
    assert got[3][2]["etag"] == s.head(tree.url + "docs/a.txt").headers["ETag"].strip('"')


def test_scopes_are_those_of_get(tree, start_share) -> None:
    # a read-only account may read in bundles, a guest needs a login, a bad password is refused
    assert fetch(tree.session("bob"), tree.url, "top.txt")[0][1] == 200
    assert requests.request("REPORT", tree.url, data=bundle_body("top.txt"), timeout=30).status_code == 401
    wrong = requests.request("REPORT", tree.url, data=bundle_body("top.txt"), auth=("alice", "nope"), timeout=30)
    assert wrong.status_code == 401
    # a read-only share link of docs/: members are relative to it, and nothing above it is reachable
    issued = LinkStore(tree.state_dir).create("docs", "read-only", expires_in=3600, password=None)
    url = f"{tree.url}s/{issued.token}/"
    got = fetch(requests.Session(), url, "a.txt", "../top.txt", "deep/ünï b.txt")
    assert [(p, st) for p, st, _, _ in got] == [("a.txt", 200), ("../top.txt", 403), ("deep/ünï b.txt", 200)]
    # a drop box is write-only: no bundles
    drop = LinkStore(tree.state_dir).create("docs", "drop", expires_in=3600, password=None)
    r = requests.request("REPORT", f"{tree.url}s/{drop.token}/", data=bundle_body("a.txt"), timeout=30)
    assert r.status_code == 403
    assert "X-Davsync-Bundle" not in requests.options(f"{tree.url}s/{drop.token}/", timeout=30).headers
    offered = requests.options(url, timeout=30).headers
    assert "X-Davsync-Bundle" in offered and "X-Davsync-Bulk-Upload" not in offered
    # bulk uploads go through no link
    body = member_bytes("new.txt", b"x", None, md5=md5(b"x")) + END_OF_ARCHIVE
    r = requests.post(url, data=body, headers={"Content-Type": "application/x-tar"}, timeout=30)
    assert r.status_code in (403, 405) and not (tree.root / "docs" / "new.txt").exists()


def test_too_many_members_is_refused_whole(tree) -> None:
    r = tree.request("REPORT", "", data=bundle_body(*["top.txt"] * 1001))
    assert r.status_code == 413


# --- bulk upload ------------------------------------------------------------------------------------


def remote_for(share, user: str = "alice") -> Remote:
    return Remote(ConnectionSettings(share.url, user, PASSWORDS[user]))


def test_bulk_upload_places_each_file_verified_with_preconditions(tree, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = {"new one.txt": b"brand new", "docs/a.txt": b"alpha v2", "top.txt": b"top v2", "docs/deep/n.txt": b"n"}
    for i, data in enumerate(files.values()):
        (src / f"{i}").write_bytes(data)
    os.chmod(tree.root / "docs/a.txt", 0o640)
    etag_a = tree.request("HEAD", "docs/a.txt").headers["ETag"].strip('"')
    items = [
        BulkItem("new one.txt", src / "0", mtime=1_600_000_000, if_none_match=True),
        BulkItem("docs/a.txt", src / "1", if_match=etag_a),
        BulkItem("top.txt", src / "2", if_match="not-the-etag"),  # changed meanwhile: refused
        BulkItem("docs/deep/n.txt", src / "3", md5=md5(b"something else")),  # not what the caller hashed
        BulkItem("missing/x.txt", src / "0"),
        BulkItem("docs/a.txt", src / "0", if_none_match=True),  # exists now: refused
        BulkItem("../escape.txt", src / "0"),
        BulkItem(".~davsync-versions/x", src / "0"),
    ]
    remote = remote_for(tree)
    try:
        results = bulk_upload(remote, items)
    finally:
        remote.close()
    assert [r.status for r in results] == [201, 204, 412, 0, 409, 412, 403, 403]
    assert (tree.root / "new one.txt").read_bytes() == b"brand new"
    assert os.stat(tree.root / "new one.txt").st_mtime == 1_600_000_000
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(tree.root / "new one.txt").st_mode & 0o777 == 0o666 & ~umask
    assert os.stat(tree.root / "docs/a.txt").st_mode & 0o777 == 0o640  # a replacement keeps the permissions
    assert (tree.root / "docs/a.txt").read_bytes() == b"alpha v2"
    assert (tree.root / "top.txt").read_bytes() == b"top"
    assert not (tree.root / "docs/deep/n.txt").exists() and not (tree.root.parent / "escape.txt").exists()
    assert results[0].md5 == md5(b"brand new") and results[1].md5 == md5(b"alpha v2")
    for r, path in ((results[0], "new one.txt"), (results[1], "docs/a.txt")):
        assert r.etag == tree.request("HEAD", path).headers["ETag"].strip('"')
    assert "412" not in results[2].error and results[2].error  # a sentence, not a bare code
    # the overwritten version is kept, like a PUT's
    kept = tree.server.state.versions.files("docs/a.txt")
    assert [(v.path, v.md5, v.method) for v in kept] == [("docs/a.txt", md5(b"alpha"), "POST")]
    # and the index serves the new MD5s at once
    wait_until(lambda: tree.index.fresh_md5("new one.txt", os.stat(tree.root / "new one.txt")) == md5(b"brand new"))
    assert not upload_temps(tree.root)  # no temp files left


def test_bulk_member_with_a_wrong_md5_is_refused_alone(tree) -> None:
    body = (member_bytes("good.txt", b"good", None, md5=md5(b"good"))
            + member_bytes("top.txt", b"corrupt", None, md5=md5(b"what was meant"))
            + member_bytes("nomd5.txt", b"x", None) + END_OF_ARCHIVE)  # fmt: skip
    r = tree.request("POST", "", data=body, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 207
    assert [s.split()[1] for s in r.text.split("<d:status>")[1:]] == ["201", "400", "400"]
    assert (tree.root / "good.txt").read_bytes() == b"good" and (tree.root / "top.txt").read_bytes() == b"top"
    assert not (tree.root / "nomd5.txt").exists()


def test_a_cut_bulk_body_places_nothing(tree) -> None:
    body = (member_bytes("one.txt", b"1" * 5000, None, md5=md5(b"1" * 5000))
            + member_bytes("top.txt", b"2" * 5000, None, md5=md5(b"2" * 5000)) + END_OF_ARCHIVE)  # fmt: skip
    sock = socket.create_connection(("127.0.0.1", tree.server.port), timeout=30)
    import base64

    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    head = (f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-tar\r\n"
            f"Content-Length: {len(body)}\r\n\r\n")  # fmt: skip
    sock.sendall(head.encode() + body[: len(body) - 2000])
    wait_until(lambda: upload_temps(tree.root), 10, "the body to arrive")
    sock.close()
    wait_until(lambda: not upload_temps(tree.root), 10, "temp files to go")
    assert not (tree.root / "one.txt").exists() and (tree.root / "top.txt").read_bytes() == b"top"
    # malformed: a body that is no tar at all
    r = tree.request("POST", "", data=b"x" * 1024, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 400 and not (tree.root / "one.txt").exists()


def test_bulk_preconditions_are_checked_again_right_before_the_rename(tree) -> None:
    """Another client replaces the file while the bulk body is still arriving: the member,
    sent with the etag it had before, is refused (an early check alone would have passed)."""
    import base64

    etag = tree.request("HEAD", "top.txt").headers["ETag"].strip('"')
    first = member_bytes("top.txt", b"mine", None, md5=md5(b"mine"), **{"if-match": f'"{etag}"'})
    rest = member_bytes("other.txt", b"o", None, md5=md5(b"o")) + END_OF_ARCHIVE
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    sock = socket.create_connection(("127.0.0.1", tree.server.port), timeout=30)
    sock.sendall((f"POST / HTTP/1.1\r\nHost: x\r\nAuthorization: Basic {auth}\r\nContent-Type: application/x-tar\r\n"
                  f"Content-Length: {len(first) + len(rest)}\r\n\r\n").encode() + first)  # fmt: skip
    wait_until(lambda: upload_temps(tree.root), 10, "the body to arrive")
    assert tree.request("PUT", "top.txt", data=b"theirs").status_code == 204
    sock.sendall(rest)
    answer = b""
    while b"</d:multistatus>" not in answer:
        chunk = sock.recv(65536)
        assert chunk, answer
        answer += chunk
    sock.close()
    assert b"412 Precondition Failed" in answer and b"201 Created" in answer
    assert (tree.root / "top.txt").read_bytes() == b"theirs" and (tree.root / "other.txt").read_bytes() == b"o"


def test_bulk_is_refused_to_read_only_accounts(tree, tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"f")
    remote = remote_for(tree, "bob")
    try:
        with pytest.raises(BulkUnsupported):
            bulk_upload(remote, [BulkItem("f.txt", tmp_path / "f")])
    finally:
        remote.close()
    body = member_bytes("f.txt", b"f", None, md5=md5(b"f")) + END_OF_ARCHIVE
    r = tree.request("POST", "", user="bob", data=body, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 403 and not (tree.root / "f.txt").exists()


def test_bulk_upload_of_many_files_in_several_requests(tree, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from davsync.client import bulk

    monkeypatch.setattr(bulk, "BATCH_FILES", 40)
    src = tmp_path / "many"
    src.mkdir()
    items = []
    for i in range(150):
        p = src / f"{i}.bin"
        p.write_bytes(os.urandom(i * 7))
        items.append(BulkItem(f"docs/f{i:03}.bin", p, if_none_match=True))
    remote = remote_for(tree)
    try:
        before = tree.server.app.counts["POST"] if hasattr(tree.server.app, "counts") else None
        results = bulk_upload(remote, items, jobs=3)
        if before is not None:
            assert tree.server.app.counts["POST"] - before == 4
    finally:
        remote.close()
    assert all(r.status == 201 for r in results)
    for i in range(150):
        assert (tree.root / f"docs/f{i:03}.bin").read_bytes() == (src / f"{i}.bin").read_bytes()
    _ = threading  # (no timing here)


def test_bulk_members_respect_webdav_locks(tree) -> None:
    body = ('<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope>'
            "<d:locktype><d:write/></d:locktype><d:owner>t</d:owner></d:lockinfo>")  # fmt: skip
    r = tree.request("LOCK", "top.txt", data=body, headers={"Timeout": "Second-60"})
    assert r.status_code == 200, r.text
    token = r.headers["Lock-Token"].strip("<>")
    upload = member_bytes("top.txt", b"new", None, md5=md5(b"new")) + END_OF_ARCHIVE
    r = tree.request("POST", "", data=upload, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 207 and "423" in r.text and (tree.root / "top.txt").read_bytes() == b"top"
    r = tree.request("POST", "", data=upload, headers={"Content-Type": "application/x-tar",
                                                      "If": f"<{tree.url}top.txt> (<{token}>)"})  # fmt: skip
    assert r.status_code == 207 and "204 No Content" in r.text and (tree.root / "top.txt").read_bytes() == b"new"


def test_a_placement_failing_unexpectedly_leaves_no_temp_files_in_the_share(
    tree, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The versions store's database refusing (disk full is an sqlite error, not an OSError)
    fails the request; the members not yet placed must not stay behind as temp files in the
    user's folders (visible to everything on the Pi until the server restarts)."""
    import sqlite3

    provider = tree.server.state.provider

    def refuse(*args: object) -> bool:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(provider, "replace", refuse)
    etag = tree.request("HEAD", "top.txt").headers["ETag"].strip('"')
    body = (member_bytes("top.txt", b"mine", None, md5=md5(b"mine"), **{"if-match": f'"{etag}"'})
            + member_bytes("docs/later.txt", b"later", None, md5=md5(b"later")) + END_OF_ARCHIVE)  # fmt: skip
    r = tree.request("POST", "", data=body, headers={"Content-Type": "application/x-tar"})
    assert r.status_code >= 500
    assert (tree.root / "top.txt").read_bytes() == b"top"
    assert not upload_temps(tree.root), "temp files left in the share"


def _member_with_mtime(path: str, data: bytes, mtime: str) -> bytes:
    """A member whose pax mtime is `mtime` as written (member_bytes writes numbers only)."""
    info = tarfile.TarInfo(path)
    info.size = len(data)
    info.pax_headers = {"mtime": mtime, "DAVSYNC.md5": md5(data)}
    return info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512)


BAD_MTIMES = ["inf", "-inf", "nan", "1e300", "-1e300", str(2**40)]


def test_a_bulk_member_with_an_impossible_mtime_fails_alone_like_a_put(tree) -> None:
    """An mtime no file can have (infinite, not a number, beyond any clock) fails that member
    with 400, as the same X-OC-Mtime fails a PUT; the other members land, nothing is left behind.
    A time before 1970 is a time a file can have: taken by both."""
    body = member_bytes("good.txt", b"good", 1_600_000_000, md5=md5(b"good"))
    for i, bad in enumerate(BAD_MTIMES):
        body += _member_with_mtime(f"bad{i}.txt", b"bad", bad)
    body += _member_with_mtime("old.txt", b"old", "-86400") + END_OF_ARCHIVE
    r = tree.request("POST", "", data=body, headers={"Content-Type": "application/x-tar"})
    assert r.status_code == 207, r.text
    assert [s.split()[1] for s in r.text.split("<d:status>")[1:]] == ["201", *["400"] * len(BAD_MTIMES), "201"]
    assert "mtime" in r.text
    assert (tree.root / "good.txt").read_bytes() == b"good"
    assert os.stat(tree.root / "old.txt").st_mtime == -86400
    assert not [p for p in tree.root.iterdir() if p.name.startswith("bad")]
    assert not upload_temps(tree.root), "temp files left in the share"
    for bad in BAD_MTIMES:
        r = tree.request("PUT", "put.txt", data=b"x", headers={"X-OC-Mtime": bad})
        assert r.status_code == 400, (bad, r.status_code)
    r = tree.request("PUT", "put.txt", data=b"x", headers={"X-OC-Mtime": "-86400"})
    assert r.status_code == 201 and os.stat(tree.root / "put.txt").st_mtime == -86400
    # the same rule for a modification time set by PROPPATCH (Windows Explorer, rclone)
    for bad in BAD_MTIMES:
        prop = ('<?xml version="1.0"?><d:propertyupdate xmlns:d="DAV:"><d:set><d:prop>'
                f"<d:lastmodified>{bad}</d:lastmodified></d:prop></d:set></d:propertyupdate>")  # fmt: skip
        r = tree.request("PROPPATCH", "top.txt", data=prop)
        assert r.status_code in (207, 400) and "500" not in r.text, (bad, r.status_code, r.text)


# --- large members are streamed (issue 23 item 4) -----------------------------------------------


def _slow_bundle(share, paths: list[str], got: dict, key: str, started: threading.Event | None = None,
                 pause: threading.Event | None = None) -> None:  # fmt: skip
    """A bundle read 64 KiB at a time (like a client on a slow line), kept raw in got[key];
    `started` is set after the first read, then `pause` (when given) is waited for."""
    import base64

    body = bundle_body(*paths)
    auth = base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
    with socket.create_connection(("127.0.0.1", share.server.port), timeout=30) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        s.sendall(b"REPORT /big/ HTTP/1.1\r\nHost: x\r\nAuthorization: Basic " + auth.encode()
                  + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body)  # fmt: skip
        data = got[key] = bytearray()
        while chunk := s.recv(64 * 1024):
            data += chunk
            if started is not None:
                started.set()
                started = None
                if pause is not None:
                    pause.wait(30)


def _answer(raw: bytearray) -> tuple[int, bytes, dict]:
    """(Content-Length, body as received, {path: (status, md5 header, data)})."""
    head, _, rest = bytes(raw).partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    members = {}
    if len(rest) == length:
        reader = PaxReader(io.BytesIO(rest).read)
        while (m := reader.next()) is not None:
            members[m.path] = (m.status, m.attrs.get("md5"), reader.data(m, 1 << 30))
    return length, rest, members


def test_large_members_are_streamed_not_held_whole(share) -> None:
    """Two slow readers of 4 x 6 MiB: the server held each member whole (and once more encoded),
    so its memory grew with the members and the readers; streamed, it stays near a few blocks."""
    import tracemalloc

    (share.root / "big").mkdir()
    files = {f"f{i}.bin": os.urandom(6 * 1024 * 1024) for i in range(4)}
    for name, data in files.items():
        (share.root / "big" / name).write_bytes(data)
    share.wait_indexed()
    got: dict = {}
    tracemalloc.start()
    try:
        readers = [threading.Thread(target=_slow_bundle, args=(share, list(files), got, str(i))) for i in range(2)]
        for t in readers:
            t.start()
        for t in readers:
            t.join(120)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    for raw in got.values():
        length, body, members = _answer(raw)
        assert len(body) == length
        assert {p: (st, md5) for p, (st, md5, _) in members.items()} == {
            p: (200, hashlib.md5(d).hexdigest()) for p, d in files.items()}  # fmt: skip
        assert all(members[p][2] == d for p, d in files.items())
    # the readers' own buffers (2 x 24 MiB, grown in place) are this test's; the server's part is small
    assert peak - 2 * 24 * 1024 * 1024 < 12 * 1024 * 1024, peak


def test_a_member_changed_in_place_while_sent_is_never_sent_torn(share) -> None:
    """Streamed, a member's bytes go out after its MD5: a file edited in place meanwhile must cut
    the answer short (the client drops it), never complete it with bytes that do not match."""
    (share.root / "big").mkdir()
    victim = share.root / "big" / "v.bin"
    victim.write_bytes(b"a" * (15 * 1024 * 1024))  # more than the socket buffers hold
    share.wait_indexed()
    got: dict = {}
    started, pause = threading.Event(), threading.Event()
    reader = threading.Thread(target=_slow_bundle, args=(share, ["v.bin"], got, "r", started, pause))
    reader.start()
    try:
        assert started.wait(30)
        with open(victim, "r+b") as f:  # edited in place on the Pi's disk, same size
            f.seek(14 * 1024 * 1024)
            f.write(b"b" * 1024)
    finally:
        pause.set()
        reader.join(60)
    length, body, members = _answer(got["r"])
    if len(body) == length:  # complete: then it must be whole and true to its header
        status, md5, data = members["v.bin"]
        assert status != 200 or hashlib.md5(data).hexdigest() == md5
    else:
        assert len(body) < length
