"""PUT is atomic: an interrupted, short, broken or mismatched upload keeps the original."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
from pathlib import Path

from conftest import PASSWORDS, upload_temps, wait_until
from davhelp import checksums, md5_bytes

AUTH = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
ORIGINAL = b"the original content\n" * 100


def raw_put(port: int, path: str, head_extra: str, body: bytes, *, close_early: bool) -> bytes:
    """Send a PUT by hand so the body can be cut off; returns whatever the server answered."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        head = f"PUT {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n{head_extra}\r\n"
        s.sendall(head.encode() + body)
        if close_early:
            s.shutdown(socket.SHUT_WR)
        try:
            return s.recv(65536)
        except OSError:
            return b""


def no_temp_files(root: Path) -> bool:
    return not upload_temps(root)


def setup_original(share) -> Path:
    f = share.root / "doc.txt"
    f.write_bytes(ORIGINAL)
    return f


def test_disconnect_mid_body_keeps_original(share) -> None:
    f = setup_original(share)
    raw_put(share.server.port, "/doc.txt", "Content-Length: 100000\r\n", b"x" * 5000, close_early=True)
    wait_until(lambda: no_temp_files(share.root), 10, "temp file cleanup")
    assert f.read_bytes() == ORIGINAL


def test_short_body_is_an_error(share) -> None:
    f = setup_original(share)
    answer = raw_put(share.server.port, "/doc.txt", "Content-Length: 100\r\n", b"short", close_early=True)
    assert answer == b"" or b" 400 " in answer.split(b"\r\n")[0]
    wait_until(lambda: no_temp_files(share.root), 10, "temp file cleanup")
    assert f.read_bytes() == ORIGINAL


def test_new_file_aborted_upload_leaves_nothing(share) -> None:
    raw_put(share.server.port, "/new.txt", "Content-Length: 100000\r\n", b"x" * 10, close_early=True)
    wait_until(lambda: no_temp_files(share.root), 10, "temp file cleanup")
    assert not (share.root / "new.txt").exists()


def test_broken_chunked_upload_keeps_original(share) -> None:
    f = setup_original(share)
    body = b"5\r\nhello\r\nZZZ-not-a-size\r\nmore\r\n"
    answer = raw_put(share.server.port, "/doc.txt", "Transfer-Encoding: chunked\r\n", body, close_early=True)
    assert b" 20" not in answer.split(b"\r\n")[0]
    wait_until(lambda: no_temp_files(share.root), 10, "temp file cleanup")
    assert f.read_bytes() == ORIGINAL


def test_chunked_upload_cut_off_keeps_original(share) -> None:
    f = setup_original(share)
    raw_put(share.server.port, "/doc.txt", "Transfer-Encoding: chunked\r\n", b"1000\r\n" + b"y" * 100, close_early=True)
    wait_until(lambda: no_temp_files(share.root), 10, "temp file cleanup")
    assert f.read_bytes() == ORIGINAL


def test_complete_chunked_upload_works(share) -> None:
    f = setup_original(share)
    body = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    answer = raw_put(share.server.port, "/doc.txt", "Transfer-Encoding: chunked\r\n", body, close_early=False)
    assert b" 204 " in answer.split(b"\r\n")[0]
    assert f.read_bytes() == b"hello world"


def test_checksum_mismatch_is_400_and_replaces_nothing(share) -> None:
    f = setup_original(share)
    r = share.request("PUT", "/doc.txt", data=b"new content", headers={"OC-Checksum": "MD5:" + "0" * 32})
    assert r.status_code == 400
    assert "mismatch" in r.text
    assert f.read_bytes() == ORIGINAL
    assert no_temp_files(share.root)


def test_checksum_match_is_accepted_and_served_without_rereading(share) -> None:
    data = os.urandom(300_000)
    md5 = hashlib.md5(data).hexdigest()
    r = share.request("PUT", "/up.bin", data=data, headers={"OC-Checksum": f"SHA1:abc MD5:{md5}"})
    assert r.status_code == 201
    hashed_before = share.index.files_hashed
    assert checksums(share)["/up.bin"] == f"MD5:{md5}"
    assert share.index.files_hashed == hashed_before, "uploaded file was re-read to hash it"


def test_x_oc_mtime_is_honoured(share) -> None:
    r = share.request("PUT", "/old.txt", data=b"from 2001", headers={"X-OC-Mtime": "1000000000"})
    assert r.status_code == 201 and r.headers.get("X-OC-MTime") == "accepted"
    assert (share.root / "old.txt").stat().st_mtime == 1000000000
    assert checksums(share)["/old.txt"] == "MD5:" + md5_bytes(b"from 2001")


def test_proppatch_lastmodified_sets_mtime_keeping_hash(share) -> None:
    share.request("PUT", "/t.txt", data=b"t")
    hashed = share.index.files_hashed
    for prop, value in (("lastmodified", "1500000000"), ("getlastmodified", "Wed, 21 Oct 2015 07:28:00 GMT")):
        body = (
            f'<d:propertyupdate xmlns:d="DAV:"><d:set><d:prop><d:{prop}>{value}</d:{prop}>'
            "</d:prop></d:set></d:propertyupdate>"
        )
        r = share.request("PROPPATCH", "/t.txt", data=body)
        assert r.status_code == 207 and "200 OK" in r.text, r.text
    assert (share.root / "t.txt").stat().st_mtime == 1445412480
    assert checksums(share)["/t.txt"] == "MD5:" + md5_bytes(b"t")
    assert share.index.files_hashed == hashed


def test_temp_files_are_invisible_and_unfetchable(share) -> None:
    (share.root / ".~davsync-abc.part").write_bytes(b"in flight")
    (share.root / "real.txt").write_text("real")
    listing = share.request("PROPFIND", "/", headers={"Depth": "1"})
    assert "davsync-abc" not in listing.text and "real.txt" in listing.text
    page = share.request("GET", "/")
    assert "davsync-abc" not in page.text and "real.txt" in page.text
    assert share.request("GET", "/.~davsync-abc.part").status_code == 404
    assert share.request("PUT", "/.~davsync-x.part", data=b"no").status_code == 403


def test_disk_full_is_507_and_keeps_original(serve_process, tmp_path: Path) -> None:
    """A real write limit (RLIMIT_FSIZE) on the server process: the kernel refuses the bytes."""
    import resource

    import requests

    root = tmp_path / "root"
    root.mkdir()
    (root / "doc.txt").write_bytes(ORIGINAL)

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))

    sp = serve_process(root, preexec=limit)
    r = requests.put(sp.url + "doc.txt", data=b"z" * 3_000_000, auth=("alice", PASSWORDS["alice"]), timeout=30)
    assert r.status_code == 507 and "disk is full" in r.text
    assert (root / "doc.txt").read_bytes() == ORIGINAL
    assert no_temp_files(root)
    ok = requests.put(sp.url + "small.txt", data=b"fits", auth=("alice", PASSWORDS["alice"]), timeout=30)
    assert ok.status_code == 201


def test_put_then_get_roundtrip_large(share) -> None:
    data = os.urandom(5 * 1024 * 1024 + 17)
    assert share.request("PUT", "/big.bin", data=data).status_code == 201
    got = share.request("GET", "/big.bin")
    assert got.content == data
    r = share.request("GET", "/big.bin", headers={"Range": "bytes=100-199", "If-Range": got.headers["ETag"]})
    assert r.status_code == 206 and r.content == data[100:200]
