"""The client's WebDAV writes (Remote.put_file, mkcol, delete, move, stat, can_write) against a
real davsync server on 127.0.0.1 and against `rclone serve webdav` (no checksums, no preconditions).

What the two-way executor builds on: conditional writes answer 412 as PreconditionFailed and
change nothing, a lost answer is not a failure, a file changing while it streams is caught.
"""

from __future__ import annotations

import hashlib
import os
import threading
import tracemalloc
import unicodedata
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import PASSWORDS, Share, shown, wait_until
from proxy import Faults, Proxy

from davsync.client.refusals import NotFound, ParentMissing, PreconditionFailed, SourceChanged, WriteRefused
from davsync.client.remote import PutRequest, Remote
from davsync.client.transport import ConnectionSettings, RemoteError, Stopped

MTIME_NS = 1_700_000_000_123_456_789


def md5_of(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def remote_for() -> Iterator[object]:
    made: list[Remote] = []

    def make(url: str, user: str | None = "alice") -> Remote:
        password = PASSWORDS[user] if user else None
        remote = Remote(ConnectionSettings(url, user=user, password=password, timeout=10))
        made.append(remote)
        return remote

    yield make
    for remote in made:
        remote.close()


@pytest.fixture
def alice(share: Share, remote_for) -> Remote:  # type: ignore[no-untyped-def]
    return remote_for(share.url)


def local(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / "local" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# --- davsync serve ----------------------------------------------------------------


def test_put_new_then_edit_with_the_right_and_a_stale_etag(share: Share, alice: Remote, tmp_path: Path) -> None:
    src = local(tmp_path, "a.txt", b"first")
    up = alice.put_file(PutRequest("a.txt", src, md5=md5_of(src), mtime_ns=MTIME_NS, if_none_match=True))
    assert (share.root / "a.txt").read_bytes() == b"first"
    assert up.sent_md5 == md5_of(src) == up.entry.md5
    listed = alice.stat("a.txt")
    assert listed is not None
    # What the PUT's answer said is exactly what a listing says (the executor journals it).
    assert (up.entry.etag, up.entry.md5, up.entry.size, up.entry.mtime) == (
        listed.etag, listed.md5, 5, listed.mtime,
    )  # fmt: skip
    assert int(os.stat(share.root / "a.txt").st_mtime) == MTIME_NS // 10**9

    src.write_bytes(b"second")
    edit = alice.put_file(PutRequest("a.txt", src, md5=md5_of(src), if_match=up.entry.etag))
    assert (share.root / "a.txt").read_bytes() == b"second"
    assert edit.entry.etag != up.entry.etag and edit.entry.md5 == md5_of(src)
    assert alice.stat("a.txt") == edit.entry  # learnt by PROPFIND when no mtime was sent

    src.write_bytes(b"third, from a stale base")
    with pytest.raises(PreconditionFailed) as e:
        alice.put_file(PutRequest("a.txt", src, md5=md5_of(src), if_match=up.entry.etag))
    assert e.value.status == 412 and "412" in str(e.value)
    assert (share.root / "a.txt").read_bytes() == b"second"

    empty = local(tmp_path, "empty", b"")
    up = alice.put_file(PutRequest("empty", empty, md5=md5_of(empty), if_none_match=True))
    assert up.entry.size == 0 and up.entry.md5 == up.sent_md5 == "d41d8cd98f00b204e9800998ecf8427e"


def test_if_none_match_on_an_existing_file_and_if_match_on_a_missing_one_are_412(
    share: Share, alice: Remote, tmp_path: Path
) -> None:
    (share.root / "taken.txt").write_bytes(b"someone else's")
    src = local(tmp_path, "taken.txt", b"mine")
    with pytest.raises(PreconditionFailed):
        alice.put_file(PutRequest("taken.txt", src, md5=md5_of(src), if_none_match=True))
    with pytest.raises(PreconditionFailed):
        alice.put_file(PutRequest("gone.txt", src, md5=md5_of(src), if_match="1-2-3-4"))
    assert (share.root / "taken.txt").read_bytes() == b"someone else's"
    assert not (share.root / "gone.txt").exists()


def test_a_large_file_is_streamed_in_blocks_and_hashed_as_sent(share: Share, alice: Remote, tmp_path: Path) -> None:
    data = os.urandom(4 * 1024 * 1024 + 17)
    src = local(tmp_path, "big.bin", data)
    seen: list[int] = []
    declared = md5_of(src)
    tracemalloc.start()
    try:
        up = alice.put_file(PutRequest("big.bin", src, md5=declared, if_none_match=True), progress=seen.append)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert sum(seen) == len(data) and len(seen) > 4 and max(seen) < len(data) // 4
    assert peak < len(data) // 2  # client and server together never held the file whole
    assert up.sent_md5 == hashlib.md5(data).hexdigest() == up.entry.md5
    assert (share.root / "big.bin").read_bytes() == data

    with pytest.raises(PreconditionFailed):  # refused before the body: still a clean 412
        alice.put_file(PutRequest("big.bin", src, md5=md5_of(src), if_match="stale"))


def test_a_file_changing_while_it_streams_replaces_nothing(share: Share, alice: Remote, tmp_path: Path) -> None:
    (share.root / "doc.bin").write_bytes(b"server version")
    data = os.urandom(1024 * 1024)
    src = local(tmp_path, "doc.bin", data)
    declared = md5_of(src)

    def edit_behind(n: int) -> None:  # same size, other bytes: only the MD5 can tell
        with open(src, "r+b") as f:
            f.seek(len(data) - 10)
            f.write(b"0123456789")

    with pytest.raises(SourceChanged) as e:
        alice.put_file(PutRequest("doc.bin", src, md5=declared), progress=edit_behind)
    assert e.value.sent_md5 not in (None, declared)
    assert "changed while it was being uploaded" in str(e.value)
    assert (share.root / "doc.bin").read_bytes() == b"server version"

    src.write_bytes(data)

    def shrink(n: int) -> None:
        os.truncate(src, 1000)

    with pytest.raises(SourceChanged, match="got shorter"):
        alice.put_file(PutRequest("doc.bin", src, md5=declared), progress=shrink)
    assert (share.root / "doc.bin").read_bytes() == b"server version"


def test_stop_cuts_the_body_and_the_server_keeps_nothing(share: Share, alice: Remote, tmp_path: Path) -> None:
    src = local(tmp_path, "s.bin", os.urandom(1024 * 1024))
    stop = threading.Event()
    with pytest.raises(Stopped):
        req = PutRequest("s.bin", src, md5=md5_of(src), if_none_match=True)
        alice.put_file(req, progress=lambda n: stop.set(), stop=stop)
    assert alice.stat("s.bin") is None
    wait_until(lambda: shown(share.root) == [], 10, "the server to drop the cut upload's temp file")


def test_mkcol_twice_and_missing_parents(share: Share, alice: Remote, tmp_path: Path) -> None:
    alice.mkcol("dir")
    alice.mkcol("dir")  # already there: success
    assert (share.root / "dir").is_dir()
    with pytest.raises(ParentMissing):
        alice.mkcol("no/such")
    src = local(tmp_path, "x.txt", b"x")
    with pytest.raises(ParentMissing):
        alice.put_file(PutRequest("no/x.txt", src, md5=md5_of(src), if_none_match=True))
    (share.root / "file").write_bytes(b"")
    with pytest.raises(WriteRefused, match="a file has that name"):
        alice.mkcol("file")


def test_delete_needs_the_current_etag_and_missing_is_done(share: Share, alice: Remote, tmp_path: Path) -> None:
    src = local(tmp_path, "d.txt", b"one")
    first = alice.put_file(PutRequest("d.txt", src, md5=md5_of(src), if_none_match=True)).entry
    src.write_bytes(b"two")
    second = alice.put_file(PutRequest("d.txt", src, md5=md5_of(src), if_match=first.etag)).entry
    with pytest.raises(PreconditionFailed):
        alice.delete("d.txt", if_match=first.etag)
    assert (share.root / "d.txt").exists()
    alice.delete("d.txt", if_match=second.etag)
    assert not (share.root / "d.txt").exists()
    alice.delete("d.txt")  # already gone
    alice.delete("never/was.txt", if_match=second.etag)
    (share.root / "folder" / "sub").mkdir(parents=True)
    alice.delete("folder")
    assert not (share.root / "folder").exists()


def test_move_keeps_its_preconditions(share: Share, alice: Remote, tmp_path: Path) -> None:
    src = local(tmp_path, "m.txt", b"moving")
    moved = alice.put_file(PutRequest("m.txt", src, md5=md5_of(src), if_none_match=True)).entry
    (share.root / "taken.txt").write_bytes(b"keep me")
    with pytest.raises(PreconditionFailed):
        alice.move("m.txt", "taken.txt")  # Overwrite: F
    with pytest.raises(PreconditionFailed):
        alice.move("m.txt", "free.txt", if_match="stale")
    assert (share.root / "taken.txt").read_bytes() == b"keep me" and (share.root / "m.txt").exists()

    odd = "dir #1/100% what?.txt"  # the Destination header must be percent-encoded
    (share.root / "dir #1").mkdir()
    entry = alice.move("m.txt", odd, if_match=moved.etag)
    assert entry is not None and entry.path == odd and entry.md5 == moved.md5 and not entry.is_dir
    assert (share.root / odd).read_bytes() == b"moving" and not (share.root / "m.txt").exists()

    entry = alice.move(odd, "taken.txt", overwrite=True)
    assert entry is not None and (share.root / "taken.txt").read_bytes() == b"moving"
    folder = alice.move("dir #1", "renamed")
    assert folder is not None and folder.is_dir and (share.root / "renamed").is_dir()
    with pytest.raises(NotFound):
        alice.move("m.txt", "elsewhere.txt")
    with pytest.raises(ParentMissing):
        alice.move("taken.txt", "no/such/place.txt")


def test_stat_of_a_file_a_folder_and_nothing(share: Share, alice: Remote) -> None:
    (share.root / "f.txt").write_bytes(b"12345")
    (share.root / "sub").mkdir()
    f = alice.stat("f.txt")
    assert f is not None and not f.is_dir and f.size == 5 and f.md5 == hashlib.md5(b"12345").hexdigest() and f.etag
    d = alice.stat("sub")
    assert d is not None and d.is_dir
    assert alice.stat("nothing.txt") is None
    assert alice.stat("sub/nothing/deeper") is None


def test_a_read_only_account_cannot_write_and_is_told(share: Share, remote_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bob = remote_for(share.url, "bob")
    assert bob.can_write() is False
    assert remote_for(share.url, "alice").can_write() is True
    src = local(tmp_path, "r.txt", b"nope")
    with pytest.raises(WriteRefused) as e:
        bob.put_file(PutRequest("r.txt", src, md5=md5_of(src), if_none_match=True))
    assert str(e.value) == (
        "cannot change 'r.txt': your access to this share is read-only; ask the operator for a read-write account."
    )
    for write in (lambda: bob.mkcol("d"), lambda: bob.delete("r.txt"), lambda: bob.move("a", "b")):
        with pytest.raises(WriteRefused):
            write()
    assert shown(share.root) == []


def test_a_name_the_server_spells_in_nfd_is_addressed_by_its_href(share: Share, alice: Remote, tmp_path: Path) -> None:
    nfd = unicodedata.normalize("NFD", "café.txt")
    (share.root / nfd).write_bytes(b"from a Mac")
    listed = alice.list_folder("").entries
    assert [e.path for e in listed] == ["café.txt"]
    entry = listed[0]
    src = local(tmp_path, "café.txt", b"edited on the PC")
    up = alice.put_file(PutRequest("café.txt", src, md5=md5_of(src), if_match=entry.etag, href=entry.href))
    assert shown(share.root) == [nfd]  # no NFC twin
    assert (share.root / nfd).read_bytes() == b"edited on the PC"
    again = alice.stat("café.txt", href=entry.href)
    assert again is not None and again.md5 == up.sent_md5
    moved = alice.move("café.txt", "cafe.txt", src_href=entry.href, if_match=up.entry.etag)
    assert moved is not None and shown(share.root) == ["cafe.txt"]
    alice.delete("cafe.txt", if_match=moved.etag)
    assert shown(share.root) == []


def test_a_lost_put_answer_is_retried_and_recognised(
    share: Share, remote_for, tmp_path: Path, no_backoff: list[float]
) -> None:  # type: ignore[no-untyped-def]
    proxy = Proxy(share.server.port, Faults(cut_after=1, cuts_left=1))
    try:
        remote = remote_for(proxy.url)
        src = local(tmp_path, "lost.txt", b"answer lost on the way back")
        up = remote.put_file(PutRequest("lost.txt", src, md5=md5_of(src), if_none_match=True))
        # The first PUT landed; its answer was cut; the retry met If-None-Match (412) and found our MD5.
        assert up.entry.md5 == up.sent_md5 == md5_of(src) and len(no_backoff) == 1
        assert remote.requests_sent == 3  # PUT (answer lost), PUT (412), PROPFIND (our MD5 is there)
    finally:
        proxy.close()


def test_503_is_retried_when_safe_and_an_unconditional_put_is_not(
    share: Share, remote_for, tmp_path: Path, no_backoff: list[float]
) -> None:  # type: ignore[no-untyped-def]
    proxy = Proxy(share.server.port, Faults(fail_paths=("/flaky",), fails_left=2))
    try:
        remote = remote_for(proxy.url)
        src = local(tmp_path, "flaky.txt", b"x")
        remote.put_file(PutRequest("flaky.txt", src, md5=md5_of(src), if_none_match=True))
        assert len(no_backoff) == 2 and (share.root / "flaky.txt").exists()
        proxy.faults.fails_left = 1
        remote.delete("flaky.txt")
        assert len(no_backoff) == 3 and not (share.root / "flaky.txt").exists()
        proxy.faults.fails_left = 1
        with pytest.raises(RemoteError) as e:
            remote.put_file(PutRequest("flaky.txt", src, md5=md5_of(src)))
        assert e.value.status == 503 and len(no_backoff) == 3
    finally:
        proxy.close()


# --- rclone serve webdav: no checksums, and (1.60) no If-Match / If-None-Match on PUT or DELETE -----


def test_writes_against_rclone_serve_webdav(rclone_webdav, remote_for, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = tmp_path / "rclone-root"
    root.mkdir()
    remote = remote_for(rclone_webdav(root), None)
    assert remote.can_write() is True
    src = local(tmp_path, "r.txt", b"to rclone")
    up = remote.put_file(PutRequest("r.txt", src, md5=md5_of(src), mtime_ns=MTIME_NS, if_none_match=True))
    assert (root / "r.txt").read_bytes() == b"to rclone"
    assert up.entry.md5 is None and up.sent_md5 == md5_of(src) and up.entry.etag and up.entry.size == 9
    assert remote.stat("r.txt") == up.entry

    remote.mkcol("d")
    remote.mkcol("d")
    d = remote.stat("d")
    assert d is not None and d.is_dir and remote.stat("missing") is None
    with pytest.raises(ParentMissing):
        remote.put_file(PutRequest("no/r.txt", src, md5=md5_of(src)))

    (root / "other.txt").write_bytes(b"keep")
    with pytest.raises(PreconditionFailed):
        remote.move("r.txt", "other.txt")
    moved = remote.move("r.txt", "d/r #2.txt")
    assert moved is not None and (root / "d" / "r #2.txt").read_bytes() == b"to rclone"

    # rclone takes a body whose MD5 is not the declared one: the caller learns it from sent_md5.
    data = os.urandom(600_000)
    big = local(tmp_path, "big.bin", data)

    def edit_behind(n: int) -> None:
        with open(big, "r+b") as f:
            f.seek(len(data) - 4)
            f.write(b"!!!!")

    changed = remote.put_file(PutRequest("big.bin", big, md5=hashlib.md5(data).hexdigest()), progress=edit_behind)
    assert changed.sent_md5 != hashlib.md5(data).hexdigest() == hashlib.md5(data).hexdigest()
    assert changed.sent_md5 == md5_of(root / "big.bin")

    remote.delete("d/r #2.txt")
    remote.delete("d/r #2.txt")
    assert not (root / "d" / "r #2.txt").exists()


@pytest.mark.parametrize("keep", ["30d", "0"], ids=["versions-kept", "no-versions"])
def test_a_folder_is_deleted_only_while_it_is_empty(start_share, remote_for, keep: str) -> None:  # type: ignore[no-untyped-def]
    """sync deletes a folder it saw empty; a WebDAV DELETE takes everything inside, so a file a
    phone put there after the listing went with it (found by the fast model). With
    X-Davsync-If-Empty the server refuses (412) and the file stays; an empty folder still goes."""
    share = start_share(keep_versions=keep)
    (share.root / "d").mkdir()
    (share.root / "e").mkdir()
    share.wait_indexed()
    remote = remote_for(share.url)
    assert remote.list_folder("d").entries == []  # what the client saw
    assert share.request("PUT", "d/phone.jpg", data=b"from the phone").status_code == 201
    with pytest.raises(PreconditionFailed):
        remote.delete("d", if_empty=True)
    assert (share.root / "d" / "phone.jpg").read_bytes() == b"from the phone"
    remote.delete("e", if_empty=True)
    assert not (share.root / "e").exists()
