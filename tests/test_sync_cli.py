"""`davsync sync`, `push` and two-way `status` end to end against a real `davsync serve`: each
command path once, with the invariants issue 12 asks of every run (nothing lost, a base only for
a version on both sides, and an immediate second run that sends no write and exits 0).

The wider scenario suite (kill loops, hypothesis, rclone) lives in its own files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import PASSWORDS, wait_until

from davsync import osfs
from davsync.client import journal as journal_mod
from davsync.client.engine import RunOptions, run_once
from davsync.client.plan import Kind, Mode
from davsync.client.results import RunResult
from davsync.client.steps import SilentReporter
from davsync.client.transport import ConnectionSettings
from davsync.server.names import is_internal_name

WRITES = {"PUT", "GET", "MOVE", "DELETE", "MKCOL", "COPY"}


def conn(share, user: str = "alice") -> ConnectionSettings:  # type: ignore[no-untyped-def]
    return ConnectionSettings(share.url, user, PASSWORDS[user])


def sync(share, dest: Path, mode: Mode = Mode.SYNC, user: str = "alice", **kw) -> RunResult:  # type: ignore[no-untyped-def]
    """One run through the library (files written by the test count as settled)."""
    return run_once(conn(share, user), dest, RunOptions(mode=mode, settle_s=0, **kw))


def counting(share) -> Callable[[], dict[str, int]]:  # type: ignore[no-untyped-def]
    before = dict(share.server.app.counts)
    return lambda: {k: v - before.get(k, 0) for k, v in share.server.app.counts.items() if v - before.get(k, 0)}


def files(root: Path) -> dict[str, bytes]:
    """Relative path -> content, without davsync's own state."""
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and ".davsync" not in p.relative_to(root).parts and not is_internal_name(p.name)
    }


def settle(*paths: Path) -> None:
    """Age files past the two-second 'still being written' window, as a file saved a while ago."""
    old = time.time() - 10
    for p in paths:
        os.utime(p, (old, old))


def quiet_second_run(share, dest: Path, mode: Mode = Mode.SYNC) -> RunResult:  # type: ignore[no-untyped-def]
    """The invariant after any run that exited 0: the next one sends no write and exits 0."""
    delta = counting(share)
    again = sync(share, dest, mode)
    assert again.exit_code == 0, again.as_json()
    assert not set(delta()) & WRITES, delta()
    assert not again.plan.changes, again.plan.explain()
    return again


def test_first_sync_merges_both_sides_and_a_second_run_sends_nothing(share, tmp_path: Path) -> None:
    (share.root / "s.txt").write_bytes(b"from the server")
    (share.root / "sd").mkdir()
    (share.root / "sd" / "x.txt").write_bytes(b"x")
    share.wait_indexed()
    dest = tmp_path / "pc"
    (dest / "ld").mkdir(parents=True)
    (dest / "l.txt").write_bytes(b"from the pc")
    (dest / "ld" / "y.txt").write_bytes(b"y" * 100_000)
    (dest / "empty").mkdir()
    result = sync(share, dest)
    assert result.exit_code == 0, result.as_json()
    assert files(share.root) == files(dest) and len(files(dest)) == 4
    assert (share.root / "empty").is_dir() and (dest / "sd").is_dir()
    assert result.count(Kind.UPLOAD) == 2 and result.count(Kind.DOWNLOAD) == 2
    # X-OC-Mtime: the server's copy keeps the PC's modification time (to the second).
    assert int((share.root / "l.txt").stat().st_mtime) == int((dest / "l.txt").stat().st_mtime)
    quiet_second_run(share, dest)


def test_one_sided_changes_go_both_ways_and_deletions_are_recoverable(share, tmp_path: Path) -> None:
    for name in ("edit-here", "edit-there", "rm-here", "rm-there"):
        (share.root / f"{name}.txt").write_bytes(name.encode())
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (dest / "edit-here.txt").write_bytes(b"edited on the pc")
    (dest / "rm-here.txt").unlink()
    assert share.request("PUT", "/edit-there.txt", data=b"edited on the server").status_code == 204
    assert share.request("DELETE", "/rm-there.txt").status_code == 204
    result = sync(share, dest)
    assert result.exit_code == 0, result.as_json()
    assert files(share.root) == files(dest) == {
        "edit-here.txt": b"edited on the pc", "edit-there.txt": b"edited on the server",
    }  # fmt: skip
    assert {k: v for k, v in result.done.items() if k not in (Kind.REFRESH,)} == {
        Kind.UPLOAD_EDIT: ["edit-here.txt"], Kind.UPDATE: ["edit-there.txt"],
        Kind.REMOTE_DELETE: ["rm-here.txt"], Kind.DELETE: ["rm-there.txt"],
    }  # fmt: skip
    trashed = list((dest / ".davsync" / "trash").rglob("rm-there.txt"))
    assert [p.read_bytes() for p in trashed] == [b"rm-there"]  # the server's deletion: to the local trash
    quiet_second_run(share, dest)


def test_conflict_keeps_the_server_version_and_uploads_yours_exit_3(share, tmp_path: Path) -> None:
    (share.root / "report.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (dest / "report.txt").write_bytes(b"mine, written on the pc")
    settle(dest / "report.txt")
    assert share.request("PUT", "/report.txt", data=b"theirs, from a phone").status_code == 204
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    cmd = [sys.executable, "-m", "davsync", "sync", share.url, str(dest), "--user", "alice", "--json"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 3, r.stdout + r.stderr
    out = json.loads(r.stdout)
    (conflict,) = out["conflicts"]
    copy = conflict["local_copy"]
    assert conflict["path"] == "report.txt" and conflict["uploaded"] is True
    assert copy.startswith("report.sync-conflict-") and copy.endswith(".txt")
    # The server's version keeps the name on both sides; yours is on both sides under the conflict name.
    assert files(share.root) == files(dest) == {"report.txt": b"theirs, from a phone", copy: b"mine, written on the pc"}
    quiet_second_run(share, dest)


def test_renames_here_are_moves_on_the_server_not_uploads(share, tmp_path: Path) -> None:
    (share.root / "docs").mkdir()
    for i in range(3):
        (share.root / "docs" / f"d{i}.txt").write_bytes(b"doc %d" % i)
    (share.root / "photo.jpg").write_bytes(os.urandom(50_000))
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    before = files(share.root)
    os.rename(dest / "docs", dest / "papers")
    os.rename(dest / "photo.jpg", dest / "holiday.jpg")
    delta = counting(share)
    result = sync(share, dest)
    assert result.exit_code == 0, result.as_json()
    sent = delta()
    assert sent.get("MOVE") == 2 and "PUT" not in sent and "DELETE" not in sent, sent
    assert sorted(files(share.root).values()) == sorted(before.values())
    assert files(share.root) == files(dest) and (share.root / "papers" / "d2.txt").exists()
    quiet_second_run(share, dest)


class ThirdWriter(SilentReporter):
    """A phone writing the same file the moment davsync starts sending it (the 412 race)."""

    def __init__(self, share, path: str, data: bytes) -> None:  # type: ignore[no-untyped-def]
        self.share, self.path, self.data, self.fired = share, path, data, False

    def file_started(self, path: str, size: int) -> None:
        if path == self.path and not self.fired:
            self.fired = True
            assert self.share.request("PUT", "/" + path, data=self.data).status_code == 204


def test_a_write_on_the_server_during_the_upload_is_a_412_and_planned_again(share, tmp_path: Path) -> None:
    (share.root / "notes.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (dest / "notes.txt").write_bytes(b"edited on the pc")
    phone = ThirdWriter(share, "notes.txt", b"edited on the phone meanwhile")
    result = run_once(conn(share), dest, RunOptions(mode=Mode.SYNC, settle_s=0), phone)
    assert phone.fired and result.exit_code == 3, result.as_json()
    (conflict,) = result.conflicts
    # Nothing overwritten: the phone's edit keeps the name, the PC's is the uploaded conflict copy.
    assert files(share.root) == files(dest) == {
        "notes.txt": b"edited on the phone meanwhile", conflict.local_copy: b"edited on the pc",
    }  # fmt: skip
    planned = [path for paths in result.as_json()["plan"].values() for path in paths]
    assert planned.count("notes.txt") == 1, result.as_json()["plan"]  # the re-plan replaces the refused upload
    assert "conflict" in result.as_json()["plan"], result.as_json()["plan"]
    quiet_second_run(share, dest)


class Crash(BaseException):
    """A kill -9 at one exact moment: nothing after it runs (not even the journal's settle)."""


def test_a_crash_after_the_upload_is_no_false_conflict(share, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (share.root / "a.txt").write_bytes(b"v1")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (dest / "a.txt").write_bytes(b"v2 from the pc")
    (dest / "new.txt").write_bytes(b"new from the pc")
    real_settle = journal_mod.Journal.settle

    def crash_after_put(self, path: str, entry) -> None:  # type: ignore[no-untyped-def]
        if entry is not None and entry.remote_etag is not None:
            raise Crash()  # the PUT landed; its answer is never recorded
        real_settle(self, path, entry)

    monkeypatch.setattr(journal_mod.Journal, "settle", crash_after_put)
    with pytest.raises(Crash):
        sync(share, dest, jobs=1)
    monkeypatch.setattr(journal_mod.Journal, "settle", real_settle)
    # The first upload landed (a.txt, in plan order) and its answer was lost; new.txt never went.
    assert (share.root / "a.txt").read_bytes() == b"v2 from the pc" and not (share.root / "new.txt").exists()
    delta = counting(share)
    result = sync(share, dest)
    assert result.exit_code == 0 and not result.conflicts, result.as_json()
    assert files(share.root) == files(dest) == {"a.txt": b"v2 from the pc", "new.txt": b"new from the pc"}
    assert delta().get("PUT", 0) <= 1, delta()  # only the file whose PUT never went out is sent
    quiet_second_run(share, dest)


def test_a_crash_before_a_download_is_placed_never_deletes_on_the_server(share, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    (share.root / "keep.txt").write_bytes(b"keep")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (share.root / "arrived.txt").write_bytes(b"new on the server")
    share.wait_indexed()
    real_replace = osfs.replace

    def crash_on_place(src, dst) -> None:  # type: ignore[no-untyped-def]
        if str(dst).endswith("arrived.txt"):
            raise Crash()  # the intent is committed, the rename never happens
        real_replace(src, dst)

    monkeypatch.setattr(osfs, "replace", crash_on_place)
    with pytest.raises(Crash):
        sync(share, dest)
    monkeypatch.setattr(osfs, "replace", real_replace)
    assert not (dest / "arrived.txt").exists()
    delta = counting(share)
    result = sync(share, dest)
    assert result.exit_code == 0, result.as_json()
    assert "DELETE" not in delta() and (share.root / "arrived.txt").read_bytes() == b"new on the server"
    assert files(dest) == files(share.root)
    quiet_second_run(share, dest)


def test_a_read_only_account_syncs_as_a_pull_and_keeps_local_changes(share, tmp_path: Path) -> None:
    (share.root / "shared.txt").write_bytes(b"from the server")
    share.wait_indexed()
    dest = tmp_path / "pc"
    dest.mkdir()
    (dest / "mine.txt").write_bytes(b"only here")
    delta = counting(share)
    result = sync(share, dest, user="bob")
    assert result.read_only and any("cannot write" in w for w in result.warnings), result.as_json()
    assert result.exit_code == 0 and result.done.get(Kind.LOCAL_ONLY) == ["mine.txt"]
    assert not {"PUT", "MKCOL", "DELETE", "MOVE"} & set(delta())
    assert files(dest) == {"shared.txt": b"from the server", "mine.txt": b"only here"}
    assert files(share.root) == {"shared.txt": b"from the server"}


def test_push_never_overwrites_a_server_file_changed_since_the_last_push(share, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "a.txt").write_bytes(b"a1")
    (src / "b.txt").write_bytes(b"b1")
    assert sync(share, src, Mode.PUSH).exit_code == 0
    assert files(share.root) == files(src)
    (src / "a.txt").write_bytes(b"a2 from the pc")
    (src / "b.txt").write_bytes(b"b2 from the pc")
    assert share.request("PUT", "/a.txt", data=b"a edited on the server").status_code == 204
    (src / "b.txt").unlink()
    result = sync(share, src, Mode.PUSH)
    assert result.exit_code == 3 and result.done.get(Kind.SERVER_CHANGED) == ["a.txt"], result.as_json()
    assert (share.root / "a.txt").read_bytes() == b"a edited on the server"  # never overwritten
    assert (share.root / "b.txt").read_bytes() == b"b1"  # deleted here, kept there without --delete
    assert (src / "a.txt").read_bytes() == b"a2 from the pc"  # push never changes the local side
    delta = counting(share)
    again = sync(share, src, Mode.PUSH)  # still reported, and no PUT tried over it (nor a 412 needed)
    assert again.exit_code == 3 and again.done.get(Kind.SERVER_CHANGED) == ["a.txt"] and "PUT" not in delta()
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    cmd = [sys.executable, "-m", "davsync", "push", share.url, str(src), "--user", "alice"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 3, r.stdout + r.stderr  # and the way out is said, not only the path
    assert "changed on the server, not overwritten:\n  a.txt\n" in r.stdout, r.stdout
    assert f"run `davsync sync {share.url} {src} --user alice` to take the server's changes in" in r.stdout, r.stdout
    result = sync(share, src, Mode.PUSH, delete=True)
    assert not (share.root / "b.txt").exists() and result.done.get(Kind.REMOTE_DELETE) == ["b.txt"]


def test_status_shows_the_two_way_view_of_a_synced_folder(share, tmp_path: Path) -> None:
    (share.root / "s.txt").write_bytes(b"s")
    share.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(share, dest).exit_code == 0
    (dest / "up.txt").write_bytes(b"to upload")
    settle(dest / "up.txt")
    (share.root / "down.txt").write_bytes(b"to download")
    (dest / "s.txt").unlink()  # deleted here while it changed on the server: it comes back, said as such
    assert share.request("PUT", "/s.txt", data=b"s, edited on the server").status_code == 204
    share.wait_indexed()
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    cmd = [sys.executable, "-m", "davsync", "status", share.url, str(dest), "--user", "alice"]
    delta = counting(share)
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "to upload (new here): 1\n  up.txt" in r.stdout and "to download (new on the server): 1\n  down.txt" in r.stdout
    assert "to download (changed on the server; deleted here): 1\n  s.txt" in r.stdout, r.stdout
    assert not set(delta()) & WRITES
    assert not (share.root / "up.txt").exists() and not (dest / "down.txt").exists()


def test_sync_against_a_server_without_checksums_survives_a_lost_upload_answer(rclone_webdav, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """rclone serve webdav: no MD5s, no sync-collection. The intent journaled before the PUT is
    what tells 'my upload landed' from 'someone else changed it' after a crash."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "s.txt").write_bytes(b"server")
    url = rclone_webdav(served)
    remote = ConnectionSettings(url)
    dest = tmp_path / "pc"
    dest.mkdir()
    (dest / "l.txt").write_bytes(b"pc")
    first = run_once(remote, dest, RunOptions(mode=Mode.SYNC, settle_s=0))
    assert first.exit_code == 0 and files(served) == files(dest), first.as_json()
    (dest / "l.txt").write_bytes(b"pc, edited")
    settle(dest / "l.txt")
    real_settle = journal_mod.Journal.settle

    def crash_after_put(self, path: str, entry) -> None:  # type: ignore[no-untyped-def]
        if entry is not None and entry.remote_etag is not None:
            raise Crash()
        real_settle(self, path, entry)

    monkeypatch.setattr(journal_mod.Journal, "settle", crash_after_put)
    with pytest.raises(Crash):
        run_once(remote, dest, RunOptions(mode=Mode.SYNC, settle_s=0))
    monkeypatch.setattr(journal_mod.Journal, "settle", real_settle)
    assert (served / "l.txt").read_bytes() == b"pc, edited"
    again = run_once(remote, dest, RunOptions(mode=Mode.SYNC, settle_s=0))
    assert again.exit_code == 0 and not again.conflicts, again.as_json()
    assert files(served) == files(dest) == {"s.txt": b"server", "l.txt": b"pc, edited"}
    third = run_once(remote, dest, RunOptions(mode=Mode.SYNC, settle_s=0))
    assert third.exit_code == 0 and not third.plan.changes, third.plan.explain()


def test_sync_watch_carries_a_local_write_up_and_a_server_change_down(share, tmp_path: Path) -> None:
    import io
    import threading

    from davsync.client.watch import watch_loop

    (share.root / "start.txt").write_bytes(b"start")
    share.wait_indexed()
    dest = tmp_path / "pc"
    stop = threading.Event()
    out = io.StringIO()
    options = RunOptions(mode=Mode.SYNC)
    loop = threading.Thread(
        target=watch_loop, args=(conn(share), dest, options), kwargs={"interval": 0.3, "out": out, "stop": stop}
    )
    loop.start()
    try:
        wait_until(lambda: (dest / "start.txt").exists(), 20, "the first round")
        (dest / "typed.txt").write_bytes(b"typed on the pc")  # a fresh write: it waits to settle, then goes
        wait_until(lambda: (share.root / "typed.txt").exists(), 20, "the local write to reach the share")
        assert (share.root / "typed.txt").read_bytes() == b"typed on the pc"
        assert share.request("PUT", "/phone.txt", data=b"from the phone").status_code == 201
        wait_until(lambda: (dest / "phone.txt").exists(), 20, "the server change to arrive")
        (dest / "typed.txt").unlink()
        wait_until(lambda: not (share.root / "typed.txt").exists(), 20, "the local deletion to reach the share")
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive() and "stopped" in out.getvalue()
    assert files(dest) == files(share.root) == {"start.txt": b"start", "phone.txt": b"from the phone"}


def test_a_folder_last_synced_with_another_share_is_merged_never_deleted(start_share, tmp_path: Path) -> None:
    first = start_share(tmp_path / "root1", state_dir=tmp_path / "state1")
    for name, data in (("same.txt", b"same"), ("differs.txt", b"share one"), ("only-one.txt", b"1")):
        (first.root / name).write_bytes(data)
    first.wait_indexed()
    dest = tmp_path / "pc"
    assert sync(first, dest).exit_code == 0
    second = start_share(tmp_path / "root2", state_dir=tmp_path / "state2")
    (second.root / "same.txt").write_bytes(b"same")
    (second.root / "differs.txt").write_bytes(b"share two")
    (second.root / "only-two.txt").write_bytes(b"2")
    second.wait_indexed()
    result = sync(second, dest)
    # The journal's history belongs to the first share: nothing is deleted on either side (only-one.txt
    # would otherwise look deleted on the server), and what differs is kept both ways.
    assert any("history does not match" in w for w in result.warnings), result.as_json()
    assert not result.done.get(Kind.DELETE) and not result.done.get(Kind.REMOTE_DELETE)
    (conflict,) = result.conflicts
    assert result.exit_code == 3 and conflict.path == "differs.txt"
    expected = {"same.txt": b"same", "differs.txt": b"share two", conflict.local_copy: b"share one",
                "only-one.txt": b"1", "only-two.txt": b"2"}  # fmt: skip
    assert files(dest) == files(second.root) == expected
    quiet_second_run(second, dest)  # a new history starts from the union


def test_push_from_a_folder_that_is_not_there_is_refused_and_creates_nothing(share, tmp_path: Path) -> None:
    """push only sends: a missing (mistyped) SRC is a usage error, before the server is asked, and
    the same with -n and with --delete (which would otherwise plan deleting the share)."""
    (share.root / "keep.txt").write_bytes(b"k")
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    missing = tmp_path / "does-not-exist"
    asked = counting(share)
    for extra in ([], ["-n"], ["--delete"], ["--delete", "--json"]):
        r = subprocess.run([sys.executable, "-m", "davsync", "push", share.url, str(missing), "-u", "alice", *extra],
                           capture_output=True, text=True, env=env)  # fmt: skip
        assert r.returncode == 2, (extra, r.stdout, r.stderr)
        assert not missing.exists(), extra
        said = (r.stderr if "--json" not in extra else json.loads(r.stdout)["fatal"]).strip()
        assert "does not exist; push sends a folder that is there" in said and len(said.splitlines()) == 1, said
    a_file = tmp_path / "notes.txt"
    a_file.write_bytes(b"n")
    r = subprocess.run([sys.executable, "-m", "davsync", "push", share.url, str(a_file), "-u", "alice"],
                       capture_output=True, text=True, env=env)  # fmt: skip
    assert r.returncode == 2 and "is a file, not a folder" in r.stderr, r.stderr
    assert asked() == {} and (share.root / "keep.txt").exists()
