"""Resumable uploads on the server (resumable.py): a real `davsync serve` on a thread, real HTTP."""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import time

from conftest import PASSWORDS, wait_until

from davsync.server.names import SHARE_MARKER
from davsync.server.resumable import EXPIRES, SessionStore

AUTH = "Basic " + base64.b64encode(f"alice:{PASSWORDS['alice']}".encode()).decode()
DATA = os.urandom(3 * 1024 * 1024 + 17)
MD5 = hashlib.md5(DATA).hexdigest()


def create(share, path: str, **headers: str):
    base = {"Upload-Complete": "?0", "Upload-Length": str(len(DATA)), "OC-Checksum": f"MD5:{MD5}"}
    return share.request("POST", path, headers={**base, **headers}, data=b"")


def patch(share, location: str, offset: int, body: bytes, complete: bool, user: str = "alice"):
    headers = {"Content-Type": "application/partial-upload", "Upload-Offset": str(offset),
               "Upload-Complete": "?1" if complete else "?0"}  # fmt: skip
    return share.request("PATCH", location, user=user, headers=headers, data=body)


def offset_of(share, location: str, user: str = "alice") -> int:
    resp = share.request("HEAD", location, user=user)
    assert resp.status_code == 204, resp.status_code
    assert resp.headers["Cache-Control"] == "no-store"
    return int(resp.headers["Upload-Offset"])


def test_options_advertises_to_writers_only(share) -> None:
    assert "X-Davsync-Resumable" in share.request("OPTIONS", "/").headers
    assert "X-Davsync-Resumable" not in share.request("OPTIONS", "/", user="bob").headers


def test_upload_in_parts_commits_like_a_put(share) -> None:
    resp = create(share, "/big.bin", **{"If-None-Match": "*", "X-OC-Mtime": "1600000000"})
    assert resp.status_code == 201, resp.text
    location = resp.headers["Location"]
    assert int(resp.headers["Upload-Offset"]) == 0
    assert offset_of(share, location) == 0
    assert not (share.root / "big.bin").exists()

    half = len(DATA) // 2
    resp = patch(share, location, 0, DATA[:half], complete=False)
    assert resp.status_code == 204 and int(resp.headers["Upload-Offset"]) == half
    assert offset_of(share, location) == half

    wrong = patch(share, location, half - 10, DATA[half - 10 :], complete=True)
    assert wrong.status_code == 409 and int(wrong.headers["Upload-Offset"]) == half

    done = patch(share, location, half, DATA[half:], complete=True)
    assert done.status_code == 201, done.text
    assert done.headers["OC-Checksum"] == f"MD5:{MD5}"
    assert (share.root / "big.bin").read_bytes() == DATA
    assert (share.root / "big.bin").stat().st_mtime == 1600000000
    assert share.index.fresh_md5("big.bin", (share.root / "big.bin").stat()) == MD5
    assert share.request("HEAD", location).status_code == 404  # the session ended
    assert not list((share.state_dir / "uploads").iterdir())


def test_a_part_cut_off_keeps_what_arrived(share) -> None:
    location = create(share, "/cut.bin").headers["Location"]
    sent = 1024 * 1024 + 5
    with socket.create_connection(("127.0.0.1", share.server.port), timeout=10) as s:
        head = (f"PATCH {location} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {AUTH}\r\n"
                f"Content-Type: application/partial-upload\r\nUpload-Offset: 0\r\nUpload-Complete: ?1\r\n"
                f"Content-Length: {len(DATA)}\r\n\r\n")  # fmt: skip
        s.sendall(head.encode() + DATA[:sent])
    wait_until(lambda: offset_of(share, location) == sent, 15, "the cut part to be kept")
    assert not (share.root / "cut.bin").exists()
    done = patch(share, location, sent, DATA[sent:], complete=True)
    assert done.status_code == 201, done.text
    assert (share.root / "cut.bin").read_bytes() == DATA


def test_a_third_writer_meanwhile_gives_412_not_an_overwrite(share) -> None:
    f = share.root / "edit.bin"
    f.write_bytes(b"base version")
    share.wait_indexed()
    etag = share.request("HEAD", "/edit.bin").headers["ETag"]
    location = create(share, "/edit.bin", **{"If-Match": etag}).headers["Location"]
    assert patch(share, location, 0, DATA[:1000], complete=False).status_code == 204
    assert share.request("PUT", "/edit.bin", data=b"third writer", headers={"If-Match": etag}).status_code == 204
    resp = patch(share, location, 1000, DATA[1000:], complete=True)
    assert resp.status_code == 412
    assert f.read_bytes() == b"third writer"
    assert share.request("HEAD", location).status_code == 404
    assert not [p for p in share.root.iterdir() if p.name.startswith(".~davsync-") and p.name != SHARE_MARKER]


def test_stale_precondition_is_refused_at_creation(share) -> None:
    (share.root / "there.bin").write_bytes(b"x")
    share.wait_indexed()
    assert create(share, "/there.bin", **{"If-None-Match": "*"}).status_code == 412


def test_md5_mismatch_places_nothing(share) -> None:
    location = create(share, "/bad.bin", **{"OC-Checksum": "MD5:" + "0" * 32}).headers["Location"]
    resp = patch(share, location, 0, DATA, complete=True)
    assert resp.status_code == 400
    assert not (share.root / "bad.bin").exists()
    assert share.request("HEAD", location).status_code == 404


def test_sessions_belong_to_their_user_and_cancel(share) -> None:
    location = create(share, "/mine.bin").headers["Location"]
    assert share.request("HEAD", location, user="bob").status_code == 404
    assert share.request("PATCH", location, user="bob", data=b"x").status_code in (403, 404)
    assert share.request("DELETE", location).status_code == 204
    assert share.request("HEAD", location).status_code == 404


def test_a_read_only_user_cannot_create(share) -> None:
    resp = share.request("POST", "/ro.bin", user="bob", headers={"Upload-Complete": "?0"}, data=b"")
    assert resp.status_code == 403
    assert not list((share.state_dir / "uploads").iterdir())


def test_idle_sessions_are_swept(share) -> None:
    location = create(share, "/old.bin").headers["Location"]
    store = SessionStore(share.state_dir / "uploads")
    assert store.sweep(now=time.time() + 60) == 0
    assert store.sweep(now=time.time() + EXPIRES + 60) == 1
    assert share.request("HEAD", location).status_code == 404


def test_plain_put_is_unaffected(share) -> None:
    assert share.request("PUT", "/plain.bin", data=DATA).status_code == 201
    assert (share.root / "plain.bin").read_bytes() == DATA


def test_overwriting_keeps_the_previous_version(share) -> None:
    (share.root / "kept.bin").write_bytes(b"the old version")
    share.wait_indexed()
    location = create(share, "/kept.bin").headers["Location"]
    assert patch(share, location, 0, DATA, complete=True).status_code == 204
    assert (share.root / "kept.bin").read_bytes() == DATA
    kept = share.server.state.versions.files("kept.bin")
    assert [v.md5 for v in kept] == [hashlib.md5(b"the old version").hexdigest()]


def test_a_webdav_lock_is_respected(share) -> None:
    (share.root / "locked.bin").write_bytes(b"locked")
    share.wait_indexed()
    body = ('<?xml version="1.0"?><d:lockinfo xmlns:d="DAV:"><d:lockscope><d:exclusive/></d:lockscope>'
            "<d:locktype><d:write/></d:locktype><d:owner>t</d:owner></d:lockinfo>")  # fmt: skip
    r = share.request("LOCK", "/locked.bin", data=body, headers={"Timeout": "Second-60"})
    assert r.status_code == 200, r.text
    token = r.headers["Lock-Token"].strip("<>")
    assert create(share, "/locked.bin").status_code == 423
    location = create(share, "/locked.bin", If=f"<{share.url}locked.bin> (<{token}>)").headers["Location"]
    assert patch(share, location, 0, DATA, complete=True).status_code == 204
    assert (share.root / "locked.bin").read_bytes() == DATA


def test_a_name_with_spaces_and_non_ascii_letters(share) -> None:
    (share.root / "Vidéos 2026").mkdir()
    resp = create(share, "/Vid%C3%A9os%202026/f%C3%BCr%20Oma%20%2B%20Opa.bin")
    assert resp.status_code == 201, resp.text
    assert patch(share, resp.headers["Location"], 0, DATA, complete=True).status_code == 201
    assert (share.root / "Vidéos 2026" / "für Oma + Opa.bin").read_bytes() == DATA


def test_the_md5_may_come_with_the_last_part(share) -> None:
    """One pass on the client (hash while sending): the session is made without an MD5 and the
    last, empty part carries it; the commit still checks it and the precondition."""
    location = create(share, "/onepass.bin", **{"OC-Checksum": "", "If-None-Match": "*"}).headers["Location"]
    assert patch(share, location, 0, DATA, complete=False).status_code == 204
    headers = {"Content-Type": "application/partial-upload", "Upload-Offset": str(len(DATA)),
               "Upload-Complete": "?1", "OC-Checksum": f"MD5:{MD5}"}  # fmt: skip
    done = share.request("PATCH", location, headers=headers, data=b"")
    assert done.status_code == 201, done.text
    assert done.headers["OC-Checksum"] == f"MD5:{MD5}"
    assert (share.root / "onepass.bin").read_bytes() == DATA


def test_an_md5_at_the_last_part_that_does_not_match_places_nothing(share) -> None:
    location = create(share, "/onepass-bad.bin", **{"OC-Checksum": ""}).headers["Location"]
    assert patch(share, location, 0, DATA, complete=False).status_code == 204
    wrong = hashlib.md5(DATA + b"x").hexdigest()
    headers = {"Content-Type": "application/partial-upload", "Upload-Offset": str(len(DATA)),
               "Upload-Complete": "?1", "OC-Checksum": f"MD5:{wrong}"}  # fmt: skip
    refused = share.request("PATCH", location, headers=headers, data=b"")
    assert refused.status_code == 400, refused.text
    assert not (share.root / "onepass-bad.bin").exists()
    assert share.request("HEAD", location).status_code == 404  # the session ended: its bytes are gone
    assert not list((share.state_dir / "uploads").iterdir())


def test_an_md5_at_the_last_part_must_agree_with_the_first(share) -> None:
    location = create(share, "/twice.bin").headers["Location"]  # made with the right MD5
    assert patch(share, location, 0, DATA, complete=False).status_code == 204
    other = hashlib.md5(b"other").hexdigest()
    headers = {"Content-Type": "application/partial-upload", "Upload-Offset": str(len(DATA)),
               "Upload-Complete": "?1", "OC-Checksum": f"MD5:{other}"}  # fmt: skip
    refused = share.request("PATCH", location, headers=headers, data=b"")
    assert refused.status_code == 400, refused.text
    assert not (share.root / "twice.bin").exists()
