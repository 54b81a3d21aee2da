"""The dashboard never shows green before the work is done, against a real server and real folders:
after "Keep mine" until the server has my version, and while a file is still being written."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from apphelp import memory_keyring, start_app  # noqa: F401  (fixtures)
from conftest import PASSWORDS, wait_until
from proxy import Faults, Proxy

from davsync.app.config import FolderPair
from davsync.client import credentials


def test_keep_mine_is_uploading_until_the_server_has_it(share, start_app, memory_keyring, tmp_path: Path) -> None:
    (share.root / "report.txt").write_bytes(b"v1")
    share.wait_indexed()
    proxy = Proxy(share.server.port, Faults())
    url = f"http://127.0.0.1:{proxy.port}/"
    dest = tmp_path / "pc"
    credentials.save_password(url, "alice", PASSWORDS["alice"])
    try:
        running = start_app([FolderPair(url, str(dest), user="alice", mode="sync", interval=0.3)])
        c = running.client()
        pid = running.pair()["id"]
        wait_until(lambda: (dest / "report.txt").exists() and running.state()["overall"]["state"] == "ok", 20, "sync")
        c.post(f"/api/pairs/{pid}/pause")
        wait_until(lambda: running.pair()["state"] == "paused", 10, "paused")
        mine, theirs = b"my local edit", b"the server's edit"
        (dest / "report.txt").write_bytes(mine)
        old = time.time() - 10  # saved a while ago, not still being written
        os.utime(dest / "report.txt", (old, old))
        (share.root / "report.txt").write_bytes(theirs)
        share.wait_indexed()
        c.post(f"/api/pairs/{pid}/resume")
        conflict = wait_until(lambda: running.pair()["conflicts"], 20, "the conflict")[0]
        proxy.faults.rate = 300  # the server answers slowly: the upload takes seconds, not milliseconds
        r = c.post(f"/api/pairs/{pid}/resolve", {"local_copy": conflict["local_copy"], "choice": "mine"})
        assert r.status_code == 200, r.text
        state = running.state()
        assert state["overall"]["state"] == "syncing" and state["overall"]["colour"] != "green"
        assert [u["path"] for u in state["pairs"][0]["uploading"]] == ["report.txt"]
        assert state["overall"]["label"] == "Uploading 1 file"
        assert (share.root / "report.txt").read_bytes() == theirs  # indeed not there yet
        proxy.faults.rate = None

        def green_and_uploaded() -> bool:
            s = running.state()
            if s["overall"]["state"] != "ok":
                return False
            assert (share.root / "report.txt").read_bytes() == mine, "green before the server had my version"
            return True

        wait_until(green_and_uploaded, 30, "Up to date once the server has my version")
        assert running.pair()["uploading"] == []
    finally:
        proxy.close()


def test_a_file_still_being_written_is_not_up_to_date(share, start_app, memory_keyring, tmp_path: Path) -> None:
    dest = tmp_path / "pc"
    dest.mkdir()
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", mode="sync", interval=0.3)])
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "the first sync")
    writing = threading.Event()
    writing.set()

    def writer() -> None:
        with open(dest / "video.bin", "wb") as f:
            while writing.is_set():
                f.write(os.urandom(1000))
                f.flush()
                time.sleep(0.1)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    try:
        wait_until(lambda: running.pair()["deferred"] == ["video.bin"], 20, "the file to be deferred")
        # several runs later it still is not green while the writer goes on
        seen = running.pair()["last_check"]
        deadline = time.monotonic() + 20
        while running.pair()["last_check"] == seen:
            assert time.monotonic() < deadline, "no run completed"
            time.sleep(0.05)
        s = running.state()
        if s["pairs"][0]["deferred"]:  # the writer may have been starved; then the next test is moot
            assert s["overall"]["state"] == "syncing", s["overall"]
            assert s["overall"]["label"] == "Waiting for 1 file still being written"
            assert "still being written" in s["pairs"][0]["words"]
    finally:
        writing.clear()
        t.join(5)
    size = (dest / "video.bin").stat().st_size

    def green_and_complete() -> bool:
        if running.state()["overall"]["state"] != "ok":
            return False
        assert (share.root / "video.bin").stat().st_size == size, "green before the file was uploaded"
        return True

    wait_until(green_and_complete, 30, "Up to date with the whole file on the server")


def test_held_deletions_list_the_files(share, start_app, memory_keyring, tmp_path: Path) -> None:
    """The server's share looks empty: nothing is deleted here, and the page can show which files
    would have gone (and where), beside what to do."""
    for name in ("a.txt", "Photos/b.jpg"):
        (share.root / name).parent.mkdir(parents=True, exist_ok=True)
        (share.root / name).write_bytes(b"x")
    share.wait_indexed()
    dest = tmp_path / "pc"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", delete=True, interval=0.3)])
    wait_until(lambda: (dest / "Photos" / "b.jpg").exists() and running.state()["overall"]["state"] == "ok", 20,
               "the first sync")  # fmt: skip
    (share.root / "a.txt").unlink()
    (share.root / "Photos" / "b.jpg").unlink()
    (share.root / "Photos").rmdir()
    held = wait_until(lambda: [e for e in running.pair()["errors"] if e["path"] == "(deletions)"], 20, "the guard")
    assert {(f["path"], f["where"]) for f in held[0]["files"]} >= {("a.txt", "here"), ("Photos/b.jpg", "here")}
    assert "mounted" in held[0]["fix"]
    assert not held[0]["can_accept"] and not held[0]["can_restore"]  # the server's disk: check it there
    assert running.state()["overall"]["state"] == "attention"
    assert (dest / "a.txt").exists() and (dest / "Photos" / "b.jpg").exists()


def _sync_with_held_deletions(share, start_app, tmp_path: Path):  # type: ignore[no-untyped-def]
    """A two-way pair where 3 of 4 files were deleted here: more than half, so the guard holds the
    deletions on the server (as `davsync sync` does without --max-delete)."""
    names = ["a.txt", "b.txt", "c.txt", "d.txt"]
    for name in names:
        (share.root / name).write_bytes(name.encode())
    share.wait_indexed()
    dest = tmp_path / "pc"
    credentials.save_password(share.url, "alice", PASSWORDS["alice"])
    running = start_app([FolderPair(share.url, str(dest), user="alice", mode="sync", interval=0.3)])
    wait_until(lambda: all((dest / n).exists() for n in names) and running.state()["overall"]["state"] == "ok", 20,
               "the first sync")  # fmt: skip
    for name in names[:3]:
        (dest / name).unlink()
    held = wait_until(lambda: [e for e in running.pair()["errors"] if e["path"] == "(deletions)"], 20, "the guard")[0]
    assert sorted(f["path"] for f in held["files"]) == names[:3] and {f["where"] for f in held["files"]} == {"server"}
    assert held["can_accept"] and held["can_restore"]
    assert all((share.root / n).exists() for n in names)
    return running, dest, names


def test_held_deletions_restored_from_the_page(share, start_app, memory_keyring, tmp_path: Path) -> None:
    running, dest, names = _sync_with_held_deletions(share, start_app, tmp_path)
    c = running.client()
    r = c.post(f"/api/pairs/{running.pair()['id']}/deletions", {"choice": "restore"})
    assert r.status_code == 200, r.text
    wait_until(lambda: all((dest / n).exists() for n in names), 20, "the files back here")
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date")
    assert all((share.root / n).read_bytes() == n.encode() for n in names)
    assert [(dest / n).read_bytes() for n in names] == [n.encode() for n in names]


def test_held_deletions_accepted_from_the_page(share, start_app, memory_keyring, tmp_path: Path) -> None:
    running, dest, names = _sync_with_held_deletions(share, start_app, tmp_path)
    c = running.client()
    r = c.post(f"/api/pairs/{running.pair()['id']}/deletions", {"choice": "accept"})
    assert r.status_code == 200, r.text
    wait_until(lambda: not any((share.root / n).exists() for n in names[:3]), 20, "the deletions on the server")
    wait_until(lambda: running.state()["overall"]["state"] == "ok", 20, "Up to date")
    assert (share.root / "d.txt").exists() and (dest / "d.txt").exists()
    assert not any((dest / n).exists() for n in names[:3])
    # nothing held any more: a second choice is refused with the reason
    r = c.post(f"/api/pairs/{running.pair()['id']}/deletions", {"choice": "accept"})
    assert r.status_code == 409 and "no deletions" in r.json()["error"]


def test_a_choice_not_yet_uploaded_survives_a_restart(share, start_app, memory_keyring, tmp_path: Path) -> None:
    """Quit right after "Keep mine": started again, the app still says it is uploading until a run
    has confirmed it (it does not start green from the last good check on disk)."""
    (share.root / "report.txt").write_bytes(b"v1")
    share.wait_indexed()
    proxy = Proxy(share.server.port, Faults())
    url = f"http://127.0.0.1:{proxy.port}/"
    dest = tmp_path / "pc"
    credentials.save_password(url, "alice", PASSWORDS["alice"])
    try:
        running = start_app([FolderPair(url, str(dest), user="alice", mode="sync", interval=0.3)])
        c = running.client()
        pid = running.pair()["id"]
        wait_until(lambda: (dest / "report.txt").exists() and running.state()["overall"]["state"] == "ok", 20, "sync")
        c.post(f"/api/pairs/{pid}/pause")
        wait_until(lambda: running.pair()["state"] == "paused", 10, "paused")
        (dest / "report.txt").write_bytes(b"mine")
        old = time.time() - 10
        os.utime(dest / "report.txt", (old, old))
        (share.root / "report.txt").write_bytes(b"theirs")
        share.wait_indexed()
        c.post(f"/api/pairs/{pid}/resume")
        conflict = wait_until(lambda: running.pair()["conflicts"], 20, "the conflict")[0]
        c.post(f"/api/pairs/{pid}/pause")  # the choice is made, but nothing runs before the quit
        wait_until(lambda: running.pair()["paused"], 10, "paused")
        r = c.post(f"/api/pairs/{pid}/resolve", {"local_copy": conflict["local_copy"], "choice": "mine"})
        assert r.status_code == 200, r.text
        running.app.stop()
        running.dash.stop()
        proxy.faults.rate = 300  # the restarted app's first run takes seconds
        again = start_app()
        assert [u["path"] for u in again.pair()["uploading"]] == ["report.txt"]
        assert again.state()["overall"]["state"] != "ok"
        c2 = again.client()
        c2.post(f"/api/pairs/{pid}/resume")
        proxy.faults.rate = None
        wait_until(lambda: again.state()["overall"]["state"] == "ok", 30, "Up to date")
        assert (share.root / "report.txt").read_bytes() == b"mine" and again.pair()["uploading"] == []
    finally:
        proxy.close()
