"""`davsync sync` / `push` with small files in batches, both ways (issue 13): uploads in bulk POSTs
to a davsync server (PUT elsewhere, and for large files), downloads in bundles.

Every member of a bulk request must behave as its own PUT: its preconditions, a 412 from a third
writer re-planned into a conflict, a refusal failing that file alone with a clean sentence, and
the base recorded so that a second run sends nothing. A kill at any moment of a batch, then a
rerun, converges with nothing lost. A bundle placed in sync mode never overwrites a local edit
that raced it.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import pytest
from conftest import KILLED, PASSWORDS, kill_hard
from synchelp import Exchange, SyncWorld, conflict_copies, files_only, md5, read_journal
from test_pull_hostile import Handler, hostile  # noqa: F401 (a fixture)

from davsync.client import bulk, bundle
from davsync.client.engine import RunOptions, run_once
from davsync.client.plan import Mode
from davsync.client.remote import Remote
from davsync.client.transport import ConnectionSettings, RemoteError


def agreed(world: SyncWorld, n: int = 10) -> dict[str, bytes]:
    files = {f"docs/f{i:02}.txt": f"docs file {i}\n".encode() for i in range(n)}
    world.seed(dict(files))
    world.settle()
    return files


def bulk_posts(run_requests: list[Exchange]) -> list[Exchange]:
    return [ex for ex in run_requests if ex.method == "POST"]


def puts(run_requests: list[Exchange], *, in_bulk: bool) -> list[Exchange]:
    return [ex for ex in run_requests if ex.method == "PUT" and (ex.in_bulk is not None) == in_bulk]


def test_sync_and_push_send_small_files_in_bulk_and_large_ones_by_put(world: SyncWorld) -> None:
    files = agreed(world)
    new = {f"new/n{i:02}.txt": f"new here {i}\n".encode() for i in range(20)}
    for rel, data in new.items():
        world.write(rel, data)
    for i in range(5):
        world.write(f"docs/f{i:02}.txt", f"edited here {i}\n")
    world.write("big.bin", os.urandom(bulk.BATCH_BYTES // 10))  # over the 1 MiB bulk threshold
    run = world.sync()
    assert run.code == 0, run
    assert len(bulk_posts(run.requests)) == 1, run
    assert len(run.of("OPTIONS")) == 1, "one OPTIONS tells both whether we may write and what the server offers"
    members = puts(run.requests, in_bulk=True)
    assert {ex.path for ex in members} == set(new) | {f"docs/f{i:02}.txt" for i in range(5)}, run
    for ex in members:
        assert ex.status in (201, 204), f"{ex}: {run}"
        assert ex.headers["oc-checksum"].startswith("MD5:") and len(ex.headers["oc-checksum"]) == 36
        if ex.path.startswith("new/"):
            assert ex.headers.get("if-none-match") == "*" and "if-match" not in ex.headers, ex.headers
        else:
            assert ex.headers.get("if-match") and "if-none-match" not in ex.headers, ex.headers
    assert [ex.path for ex in puts(run.requests, in_bulk=False)] == ["big.bin"], run
    world.check(run)  # converged, honest bases, and a second run sends nothing
    assert {k: v for k, v in files_only(world.share_tree()).items() if k in new} == {k: md5(v) for k, v in new.items()}

    for i in range(12):
        world.write(f"pushed/p{i:02}.txt", f"pushed {i}\n")
    world.write("docs/f07.txt", "edited for push\n")
    pushed = world.push()
    assert pushed.code == 0, pushed
    assert len(bulk_posts(pushed.requests)) == 1 and not puts(pushed.requests, in_bulk=False), pushed
    assert len(puts(pushed.requests, in_bulk=True)) == 13, pushed
    world.check(pushed, verb="push")
    assert len(files) == 10


def test_a_third_writers_412_is_replanned_and_the_other_members_land(world: SyncWorld) -> None:
    """The phone edits a file right before the bulk request that edits it too: that member gets
    412, is read again and becomes a conflict (the phone's version keeps the name, ours is kept
    as a conflict copy and uploaded); every other member lands."""
    agreed(world)
    for i in range(10):
        world.write(f"new/n{i}.txt", f"new {i}\n")
    world.write("docs/f03.txt", "mine\n")
    assert world.proxy is not None
    world.proxy.on("POST", action=lambda ex: world.phone.put("docs/f03.txt", b"theirs\n"))
    run = world.sync()
    assert run.code == 3, run
    raced = [ex for ex in puts(run.requests, in_bulk=True) if ex.path == "docs/f03.txt"]
    assert [ex.status for ex in raced] == [412], run
    share = files_only(world.share_tree())
    assert share["docs/f03.txt"] == md5(b"theirs\n")
    assert list(conflict_copies(share, "docs/f03.txt").values()) == [md5(b"mine\n")], run
    assert all(share[f"new/n{i}.txt"] == md5(f"new {i}\n".encode()) for i in range(10))
    world.check(run, converged=True)


def test_refused_members_fail_alone_with_one_sentence(world: SyncWorld, monkeypatch: pytest.MonkeyPatch) -> None:
    """A member whose bytes do not match its MD5 (corrupted on the way) and one the server refuses
    (403: a name it reserves) fail alone, with clean messages; the others land and are recorded."""
    agreed(world)
    for i in range(10):
        world.write(f"new/n{i}.txt", f"new {i}\n")
    world.write("new/garbled.txt", "what I wrote\n")
    world.write("new/.~davsync-reserved.txt", "a name the server keeps for itself\n")
    real = bulk.member_bytes

    def garbled_on_the_way(path: str, data: bytes, mtime: float | None = None, **attrs: str) -> bytes:
        return real(path, b"what I did not write\n" if path == "new/garbled.txt" else data, mtime, **attrs)

    monkeypatch.setattr(bulk, "member_bytes", garbled_on_the_way)
    world.snapshot()
    # (such names are a default exclude; a user's negation sends it anyway, and the server refuses it)
    result = run_once(ConnectionSettings(world.url, "alice", PASSWORDS["alice"]), world.dest,
                      RunOptions(mode=Mode.SYNC, excludes=("!.~davsync-*",)))  # fmt: skip
    assert result.exit_code == 3, result.as_json()
    errors = {e.path: e.error for e in result.errors}
    assert set(errors) == {"new/garbled.txt", "new/.~davsync-reserved.txt"}, errors
    assert errors["new/garbled.txt"].startswith("PUT 'new/garbled.txt' failed: HTTP 400 (the server says: MD5 mismatch")
    assert errors["new/.~davsync-reserved.txt"].startswith("the server refused PUT of 'new/.~davsync-reserved.txt' (HTTP 403)")
    for message in errors.values():
        assert message.endswith(".") and "\n" not in message and "Traceback" not in message
    share = files_only(world.share_tree())
    assert "new/garbled.txt" not in share and not any("reserved" in p for p in share)
    assert all(share[f"new/n{i}.txt"] == md5(f"new {i}\n".encode()) for i in range(10))
    world.rm("new/.~davsync-reserved.txt")  # (the checker takes such a name for a temp file)
    world.check(None, converged=False, second=False)  # nothing lost; a base only for what is on both sides
    monkeypatch.undo()
    final = world.sync()
    assert final.code == 0 and [ex.path for ex in final.of("PUT")] == ["new/garbled.txt"], final
    world.check(final)


def test_an_account_made_read_only_mid_run_is_told_file_by_file(sync_world: Callable[..., SyncWorld],
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """The operator makes the account read-only while a sync runs: the bulk request is refused as
    a whole, the files go on by PUT, and each is reported with the read-only sentence; nothing
    lands, no base is recorded, and once the account may write again the next run sends them."""
    from dataclasses import replace

    from davsync.users import Users

    loaded: list[Users] = []
    real = Users.load.__func__  # type: ignore[attr-defined]
    monkeypatch.setattr(Users, "load", classmethod(lambda cls, path: loaded.append(real(cls, path)) or loaded[-1]))
    world = sync_world()
    agreed(world)
    for i in range(10):
        world.write(f"new/n{i}.txt", f"new {i}\n")
    alice = loaded[-1].users["alice"]

    def revoke(ex: Exchange) -> None:
        loaded[-1].users["alice"] = replace(alice, read_only=True)

    assert world.proxy is not None
    world.proxy.on("POST", action=revoke)
    run = world.sync()
    assert run.code == 3, run
    assert [ex.status for ex in bulk_posts(run.requests)] == [403], run
    by_put = puts(run.requests, in_bulk=False)
    assert len(by_put) == 10 and {ex.status for ex in by_put} == {403}, run
    errors = {e["path"]: e["error"] for e in run.json["errors"]}
    assert errors == {f"new/n{i}.txt": f"cannot change 'new/n{i}.txt': your access to this share is read-only; "
                      "ask the operator for a read-write account." for i in range(10)}, run  # fmt: skip
    assert not any(p.startswith("new/") for p in files_only(world.share_tree()))
    world.check(run, converged=False, second=False)
    loaded[-1].users["alice"] = alice
    final = world.sync()
    assert final.code == 0, final
    world.check(final)


def _kill_during_bulk(world: SyncWorld, phase: str, after: int = 0, nth: int = 1) -> bool:
    """Start a sync and SIGKILL it at `phase` of its `nth` bulk POST; True if it was killed there."""
    assert world.proxy is not None
    holder: list[subprocess.Popen[bytes]] = []

    def kill(ex: Exchange) -> None:
        if holder and holder[0].poll() is None:
            kill_hard(holder[0].pid)

    world.proxy.clear_triggers()
    world.proxy.on("POST", phase=phase, after=after, nth=nth, action=kill)
    proc = world.popen("sync")
    holder.append(proc)
    try:
        proc.wait(120)
    finally:
        world.kill(proc)
        world.proxy.clear_triggers()
    return proc.returncode == KILLED


def test_a_kill_during_a_bulk_upload_then_a_rerun_converges(world: SyncWorld) -> None:
    """Killed mid-body (nothing placed) and after the server placed a batch but before the client
    heard (intents settled by the server's MD5): nothing lost, no false conflict, a journal that
    matches the server, and then nothing more to send."""
    agreed(world)
    want = files_only(world.share_tree())
    for round_, phase in enumerate(("body", "response")):
        for i in range(30):
            data = f"round {round_} file {i}\n".encode() * (i + 1)
            world.write(f"up{round_}/n{i:02}.txt", data)
            want[f"up{round_}/n{i:02}.txt"] = md5(data)
        assert _kill_during_bulk(world, phase, after=2000), f"the client was not killed at the bulk POST's {phase}"
        world.check(None, converged=False, second=False, journal="loose")
    final = world.sync()
    assert final.code == 0, final
    # the second kill came after the server placed everything: the intents are settled by MD5
    assert not final.of("PUT") and not bulk_posts(final.requests), final
    assert not conflict_copies(world.share_tree()), final
    assert files_only(world.share_tree()) == want
    world.check(final)


def test_a_lost_bulk_answer_goes_on_by_put_without_a_false_conflict(world: SyncWorld) -> None:
    """The connection drops after the server placed a batch, before the client heard: the files
    go on by PUT, whose 412 (the file is already there) is read again and found identical."""
    agreed(world)
    for i in range(12):
        world.write(f"new/n{i:02}.txt", f"new {i}\n")
    assert world.proxy is not None
    world.proxy.on("POST", phase="response", cut=True)
    run = world.sync()
    assert run.code == 0, run
    assert len(run.of("PUT")) == 24 and all(ex.status == 412 for ex in puts(run.requests, in_bulk=False)), run
    assert not conflict_copies(world.share_tree()), run
    world.check(run)


class _Killed(BaseException):
    """A kill -9 at one exact moment: nothing after it runs."""


def test_a_server_error_after_placing_keeps_the_intents_until_settled(world: SyncWorld,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """The server renamed a batch into place and then failed (500): the members may be there, so
    their intents stay. Killed before the PUTs begin and then edited here, the next run
    settles them by the server's MD5 and uploads the edit: no false conflict copy. The
    server's index never learns of the batch here (its tracker misses the events, as a server
    relying on rescans would), so the change list does not name the members: the client asks
    for them itself (it used to take them for uploads that never arrived, and, after the
    batch's 412s, the edit for a conflict; a tracker slower than the next run did the same)."""
    from wsgidav.dav_error import DAVError

    from davsync.client import journal as journal_mod
    from davsync.server import index as index_mod

    agreed(world)
    blind = pytest.MonkeyPatch()
    blind.setattr(world.server.tracker, "notice", lambda abs_path: None)
    for i in range(12):
        world.write(f"new/n{i:02}.txt", f"new {i}\n")

    def fail_after_placing(self, items):  # type: ignore[no-untyped-def]
        raise DAVError(500, "the index could not be written")  # answered as a 500 (not a dropped connection)

    def killed(*args, **kw):  # type: ignore[no-untyped-def]
        raise _Killed

    monkeypatch.setattr(index_mod.HashIndex, "record_many", fail_after_placing)
    monkeypatch.setattr(journal_mod.Journal, "intend", killed)  # the PUT path's first step: killed before it
    with pytest.raises(_Killed):
        run_once(ConnectionSettings(world.url, "alice", PASSWORDS["alice"]), world.dest, RunOptions(mode=Mode.SYNC))
    monkeypatch.undo()
    assert files_only(world.share_tree())["new/n03.txt"] == md5(b"new 3\n"), "the server placed the batch"
    world.write("new/n03.txt", "edited here after the crash\n")
    final = world.sync()
    assert final.code == 0, final
    assert not conflict_copies(world.share_tree()) and not conflict_copies(world.dest_tree()), final
    assert files_only(world.share_tree())["new/n03.txt"] == md5(b"edited here after the crash\n")
    assert [ex.path for ex in final.of("PUT")] == ["new/n03.txt"] and not bulk_posts(final.requests), final
    world.check(final)
    blind.undo()


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_kill_loop_during_bulk_uploads(world: SyncWorld) -> None:
    """Many kills at random moments of random batches (new files and edits, several batches per
    run), each followed by the checks; then one run converges."""
    rng = random.Random(13)
    agreed(world)
    want = files_only(world.share_tree())
    killed = 0
    for round_ in range(10):
        many = round_ % 4 == 0  # more than one batch (bulk.BATCH_FILES): kill during the second
        for i in range(700 if many else rng.randint(20, 300)):
            rel = f"r{round_ % 3}/n{i:03}.txt"
            data = rng.randbytes(rng.randint(1, 3000))  # (an empty file is never versioned: not "content")
            world.write(rel, data)
            want[rel] = md5(data)
        phase = rng.choice(["request", "body", "body", "response"])
        killed += _kill_during_bulk(world, phase, after=rng.randint(0, 30_000), nth=2 if many else 1)
        world.check(None, converged=False, second=False, journal="loose")
    final = world.sync()
    assert final.code == 0, final
    assert files_only(world.share_tree()) == want
    assert not conflict_copies(world.share_tree()), final
    world.check(final)
    print(f"\nbulk upload kills survived: {killed}")
    assert killed >= 8


def test_a_local_edit_racing_a_bundle_placement_in_sync_is_kept(world: SyncWorld) -> None:
    """Sync fetches server edits in a bundle; the user saves one of those files locally while the
    bundle is on its way: that file is not overwritten, and the next run makes it a conflict
    (the server's version keeps the name, the local edit is kept as a conflict copy and uploaded)."""
    agreed(world, n=12)
    for i in range(12):
        world.rput(f"docs/f{i:02}.txt", f"edited on the server {i}\n")
    assert world.proxy is not None
    raced: list[Exchange] = []

    def save_locally(ex: Exchange) -> None:
        if ex.status == 200 and not raced:  # the bundle's answer, not a change list
            raced.append(ex)
            world.write("docs/f05.txt", "saved here meanwhile\n", age=0)

    world.proxy.on("REPORT", phase="response", times=10, action=save_locally)
    run = world.sync()
    assert raced, f"no bundle was used: {run}"
    assert run.code == 3, run
    assert (world.dest / "docs/f05.txt").read_bytes() == b"saved here meanwhile\n"
    assert any(e["path"] == "docs/f05.txt" and "changed locally" in e["error"] for e in run.json["errors"]), run
    for i in range(12):
        if i != 5:
            assert (world.dest / f"docs/f{i:02}.txt").read_bytes() == f"edited on the server {i}\n".encode()
    world.check(run, converged=False, second=False)
    os.utime(world.dest / "docs/f05.txt", (1e9, 1e9))  # settled (not still being written)
    after = world.sync()
    assert after.code == 3, after
    dest = files_only(world.dest_tree())
    assert dest["docs/f05.txt"] == md5(b"edited on the server 5\n")
    assert list(conflict_copies(dest, "docs/f05.txt").values()) == [md5(b"saved here meanwhile\n")]
    world.check(after, converged=True)


def test_sync_to_a_server_without_bulk_uploads_uses_put(sync_world: Callable[..., SyncWorld]) -> None:
    """rclone serve webdav offers no bulk upload: many small files go by PUT, as before."""
    w = sync_world(backend="rclone")
    w.seed({"docs/a.txt": "a"})
    assert w.sync().code == 0
    for i in range(10):
        w.write(f"docs/n{i}.txt", f"n{i}")
    run = w.sync()
    assert run.code == 0, run
    assert not bulk_posts(run.requests) and len(run.of("PUT")) == 10, run
    w.check(run)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q", "-n", "0"]))


def test_new_folders_at_one_depth_are_made_side_by_side(world: SyncWorld) -> None:
    """MKCOLs of sibling folders are independent round trips: sync sends them together (each
    level after its parents), so 200 new folders are not 200 waits in a row."""
    for top in ("a", "b"):
        for i in range(6):
            world.write(f"{top}/s{i}/f.txt", f"{top}{i}\n")
    assert world.proxy is not None
    lock = threading.Condition()
    in_flight, overlapped = [0], [0]

    def hold_until_a_sibling_comes(ex: Exchange) -> None:
        with lock:
            in_flight[0] += 1
            lock.notify_all()
            if overlapped[0] < 2 and lock.wait_for(lambda: in_flight[0] > 1 or overlapped[0] > 0, timeout=5):
                overlapped[0] += 1
                lock.notify_all()
            in_flight[0] -= 1

    world.proxy.on("MKCOL", phase="request", times=100, action=hold_until_a_sibling_comes)
    run = world.sync()
    assert run.code == 0, run
    made = [ex.path for ex in run.of("MKCOL")]
    assert len(made) == 14, run
    for path in made:  # a parent before its children
        parent = path.rstrip("/").rpartition("/")[0]
        assert not parent or made.index(parent) < made.index(path), made
    assert overlapped[0] >= 2, f"no two MKCOLs were in flight together: {made}"
    world.check(run)


def test_a_bulk_answer_without_end_is_not_read_into_memory(hostile, tmp_path: Path) -> None:  # noqa: F811
    """A server whose 207 answer to a bulk upload goes on and on (here 128 MiB of padding) is
    read only as far as an answer for that many files can reach; the request then fails as a
    cut connection does (no status: the caller keeps the members' intents and checks each)."""
    sent = [0]

    def endless() -> Iterator[bytes]:
        yield (b'<?xml version="1.0"?><d:multistatus xmlns:d="DAV:" xmlns:ds="urn:davsync:"><d:response>'
               b"<d:href>/share/a.txt</d:href><d:status>HTTP/1.1 201 Created</d:status><ds:path>a.txt</ds:path>"
               b"</d:response>")  # fmt: skip
        chunk = b" " * (1 << 20)
        for _ in range(128):
            sent[0] += len(chunk)
            yield chunk
        yield b"</d:multistatus>"

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes | Iterable[bytes]]:
        if environ["REQUEST_METHOD"] == "OPTIONS":
            limits = "max-files=1000; max-file-size=1048576; max-bytes=9999999"
            return "200 OK", [("X-Davsync-Bulk-Upload", limits), ("DAV", "1")], b""
        if environ["REQUEST_METHOD"] == "POST":
            environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            return "207 Multi-Status", [("Content-Type", "application/xml")], endless()
        return "405 Method Not Allowed", [], b""

    (tmp_path / "a.txt").write_bytes(b"a")
    remote = Remote(ConnectionSettings(hostile(handler)))
    try:
        with pytest.raises(RemoteError) as raised:
            bulk.bulk_upload(remote, [bulk.BulkItem("a.txt", tmp_path / "a.txt")])
    finally:
        remote.close()
    assert raised.value.status is None and not raised.value.fatal
    assert "bulk upload" in str(raised.value)
    assert sent[0] < 32 * 1024 * 1024, f"{sent[0]} bytes of answer were read for one file"


def lying_front(target: str, hostile: Callable[[Handler], str], methods: list[str]) -> str:  # noqa: F811
    """A server in front of `target` (a real davsync server) that passes everything through but
    answers each upload, PUT or bulk member, with another MD5 than the one it was sent. The
    methods it relays go into `methods`."""
    import re

    import requests

    other = md5(b"not what you sent")
    session = requests.Session()

    def handler(environ: dict) -> tuple[str, list[tuple[str, str]], bytes | Iterable[bytes]]:
        method = environ["REQUEST_METHOD"]
        methods.append(method)
        url = target.rstrip("/") + environ["PATH_INFO"] + (f"?{environ['QUERY_STRING']}" if environ.get("QUERY_STRING") else "")
        headers = {k[5:].replace("_", "-").title(): v for k, v in environ.items() if k.startswith("HTTP_")}
        headers.pop("Host", None)
        headers["Accept-Encoding"] = "identity"
        for key in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            if environ.get(key):
                headers[key.replace("_", "-").title()] = environ[key]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        resp = session.request(method, url, data=body, headers=headers, allow_redirects=False)
        out = [(k, v) for k, v in resp.headers.items()
               if k.lower() not in ("connection", "keep-alive", "transfer-encoding", "content-length")]  # fmt: skip
        content = resp.content
        if method == "PUT":
            out = [(k, f"MD5:{other}" if k.lower() == "oc-checksum" else v) for k, v in out]
        elif method == "POST" and resp.status_code == 207:
            content = re.sub(rb"<ds:md5>[0-9a-f]{32}</ds:md5>", f"<ds:md5>{other}</ds:md5>".encode(), content)
        return f"{resp.status_code} {resp.reason}", out, content

    return hostile(handler).replace("/share/", "/")


def test_an_upload_answered_with_another_md5_is_not_recorded_as_synced(world: SyncWorld, hostile) -> None:  # noqa: F811
    """The server says, in its answer to a PUT or to a bulk member, that it holds content with
    another MD5 than the one sent: that is no base to record (the next run would take the two
    sides as equal). Each such file fails with one sentence; nothing is deleted or overwritten;
    the next run against an honest server finds both sides equal and records them."""
    agreed(world, 2)
    small = {f"new/n{i:02}.txt": f"new here {i}\n".encode() for i in range(bundle.MIN_FILES)}
    for rel, data in small.items():
        world.write(rel, data)
    big = os.urandom(bundle.MAX_FILE + 1)  # too large for a bulk request: a PUT
    world.write("big.bin", big)
    methods: list[str] = []
    url = lying_front(world.server_url, hostile, methods)
    result = run_once(ConnectionSettings(url, "alice", PASSWORDS["alice"]), world.dest,
                      RunOptions(mode=Mode.SYNC, settle_s=0))  # fmt: skip
    errors = {e.path: e.error for e in result.errors}
    assert set(errors) == {*small, "big.bin"}, result.as_json()
    assert "POST" in methods and "PUT" in methods  # a bulk member and a PUT were both answered so
    for message in errors.values():
        assert "another MD5" in message and message.endswith(".") and "\n" not in message, message
    assert not set(read_journal(world.dest)) & set(errors), "recorded as synced"
    assert all((world.dest / rel).read_bytes() == data for rel, data in small.items())
    assert (world.dest / "big.bin").read_bytes() == big
    again = world.sync()  # straight to the server: it does hold what was sent
    assert again.code == 0 and not again.of("PUT") and not again.of("POST"), again
    assert set(read_journal(world.dest)) >= {*small, "big.bin"}
    world.check(again)
