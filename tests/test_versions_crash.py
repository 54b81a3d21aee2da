"""Crash safety of versioning: a kill at any instant leaves the old file in place, or in the
versions area with the new one in place; start-up recovery settles what was half done."""

from __future__ import annotations

import hashlib
import os
import random
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import requests
from conftest import PASSWORDS, wait_until

from davsync.server.names import SHARE_MARKER
from davsync.server.version_keeper import Who
from davsync.server.versions import VersionStore

WHO = Who("alice", "PUT")


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


@pytest.fixture
def store(tmp_path: Path) -> VersionStore:
    (tmp_path / "root").mkdir()
    s = VersionStore(tmp_path / "root", tmp_path / "state")
    s._ensure_dir()
    return s


def pending_rows(store: VersionStore) -> int:
    return store._db.execute("SELECT COUNT(*) FROM blobs WHERE state != 'kept'").fetchone()[0]


def test_killed_after_the_link_before_the_replace_keeps_the_old_file_only(store: VersionStore) -> None:
    live = Path(store.root) / "f.txt"
    live.write_bytes(b"old")
    vid = store._begin("f.txt", False, WHO, "link", True, (3, live.stat().st_mtime_ns, None))
    os.link(live, store.blob_path(vid))  # ...and the process dies here
    assert store.recover() == 1
    assert live.read_bytes() == b"old" and os.listdir(store.dir) == [] and store.files() == []


def test_killed_after_the_replace_keeps_both(store: VersionStore) -> None:
    live = Path(store.root) / "f.txt"
    live.write_bytes(b"old")
    vid = store._begin("f.txt", False, WHO, "link", True, (3, live.stat().st_mtime_ns, None))
    os.link(live, store.blob_path(vid))
    (Path(store.root) / "tmp").write_bytes(b"new")
    os.replace(Path(store.root) / "tmp", live)  # ...dies before marking the version kept
    store.recover()
    assert live.read_bytes() == b"new"
    [v] = store.files()
    assert store.blob_path(v.id).read_bytes() == b"old" and pending_rows(store) == 0


def test_killed_between_the_two_renames_puts_the_old_one_back(store: VersionStore) -> None:
    """No hard links (FAT, exFAT): the old file is renamed aside before the new one arrives."""
    live = Path(store.root) / "f.txt"
    live.write_bytes(b"old")
    vid = store._begin("f.txt", False, WHO, "rename", True, (3, live.stat().st_mtime_ns, None))
    os.rename(live, store.blob_path(vid))  # ...dies before the new file is renamed in
    store.recover()
    assert live.read_bytes() == b"old" and store.files() == [] and os.listdir(store.dir) == []


def test_killed_mid_folder_delete_finishes_the_version(store: VersionStore) -> None:
    folder = Path(store.root) / "album"
    folder.mkdir()
    for i in range(5):
        (folder / f"{i}.jpg").write_bytes(bytes([i]) * 10)
    vid = store._begin("album", True, Who("alice", "DELETE"), "rename", False, None)
    os.rename(folder, store.blob_path(vid))  # ...dies before the members are recorded
    store.recover()
    assert not folder.exists()
    [f] = store.folders()
    assert (f.path, f.files, f.bytes) == ("album", 5, 50)
    assert sorted(v.path for v in store.files()) == [f"album/{i}.jpg" for i in range(5)]


def test_nothing_moved_yet_or_half_pruned(store: VersionStore) -> None:
    live = Path(store.root) / "f.txt"
    live.write_bytes(b"stays")
    store._begin("f.txt", False, WHO, "link", True, (5, 0, None))  # dies before the link
    gone = store._begin("g.txt", False, WHO, "rename", False, (1, 0, None))
    store.blob_path(gone).write_bytes(b"g")
    store._set_state(gone, "pruning")  # dies while pruning
    store.recover()
    assert live.read_bytes() == b"stays" and os.listdir(store.dir) == [] and pending_rows(store) == 0


def test_killed_while_a_deleted_folder_gathers_its_files_loses_none(store: VersionStore) -> None:
    """A folder deleted after its files (as sync does) takes their versions in; a kill halfway
    leaves each file in the folder's version or in its own, never in neither or both."""
    root = Path(store.root)
    (root / "d").mkdir()
    who = Who("alice", "DELETE")
    for name in ("a", "b"):
        (root / "d" / name).write_bytes(name.encode())
        store.remove(f"d/{name}", str(root / "d" / name), who, replaced=False)
    [a_id] = [v.id for v in store.files() if v.path == "d/a"]
    folder = store._begin("d", True, who, "rename", False, None)
    os.rename(root / "d", store.blob_path(folder))
    assert store._claim(a_id, "restoring")
    os.rename(store.blob_path(a_id), store.blob_path(folder) / "a")  # ...and the process dies here
    store.recover()
    assert pending_rows(store) == 0
    assert sorted((v.path, v.folder) for v in store.files()) == [("d/a", "d"), ("d/b", None)]
    assert [(f.path, f.files) for f in store.folders()] == [("d", 1)]


# --- kill -9 of a real server during a burst of versioning writes -------------------


def _hash_tree(top: Path) -> set[str]:
    out = set()
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            out.add(md5((Path(dirpath) / name).read_bytes()))
    return out


@pytest.mark.parametrize("rounds", [3, pytest.param(12, marks=pytest.mark.slow)])
def test_kill_9_during_versioning_loses_nothing(serve_process: Any, tmp_path: Path, rounds: int) -> None:
    root = tmp_path / "share"
    root.mkdir()
    state = tmp_path / "serve-state"
    rng = random.Random(1604)
    acked: set[str] = set()  # every body the server answered 2xx for
    sent: set[str] = set()  # every body ever sent (in flight at the kill, too)
    lock = threading.Lock()
    names = [f"f{i}.bin" for i in range(3)]

    for _round in range(rounds):
        sp = serve_process(root, "--no-qr", state_dir=state)
        stop = threading.Event()
        count = [0]

        def writer(seed: int) -> None:
            r = random.Random(seed)
            s = requests.Session()
            s.auth = ("alice", PASSWORDS["alice"])
            while not stop.is_set():
                name = r.choice(names)
                try:
                    if r.random() < 0.15:
                        resp = s.delete(sp.url + name, timeout=10)
                    else:
                        body = os.urandom(r.randint(1, 300_000))
                        with lock:
                            sent.add(md5(body))
                        resp = s.put(sp.url + name, data=body, timeout=10)
                        if resp.status_code in (201, 204):
                            with lock:
                                acked.add(md5(body))
                    with lock:
                        count[0] += 1
                except requests.RequestException:
                    return  # the server died under us

        threads = [threading.Thread(target=writer, args=(rng.random(),)) for _ in range(4)]
        for t in threads:
            t.start()
        target = count[0] + rng.randint(5, 60)
        wait_until(lambda: count[0] >= target, 60, "some writes to land")
        sp.proc.kill()  # SIGKILL, by PID
        sp.proc.wait(10)
        stop.set()
        for t in threads:
            t.join(30)

    sp = serve_process(root, "--no-qr", state_dir=state)  # recovery runs at start-up
    wait_until(lambda: not any(n.startswith(".~davsync") and n != SHARE_MARKER for n in os.listdir(root)), 30,
               "the start-up scan to remove cut-off uploads")  # fmt: skip
    sp.stop()
    versions_dir = state / "versions"
    in_share = {md5((root / n).read_bytes()) for n in names if (root / n).exists()}
    kept = _hash_tree(versions_dir)
    assert acked, "no write was acknowledged"
    assert acked <= in_share | kept, "an acknowledged version was lost"
    assert in_share <= sent, "a partial or foreign file is in the share"
    db = sqlite3.connect(state / "versions.sqlite")
    assert db.execute("SELECT COUNT(*) FROM blobs WHERE state != 'kept'").fetchone()[0] == 0
    rows = {r[0] for r in db.execute("SELECT id FROM blobs")}
    assert rows == set(os.listdir(versions_dir)), "the versions index and the versions area disagree"
    print(f"\n{rounds} kills: {len(acked)} writes acknowledged, {len(rows)} versions kept")


def test_unknown_md5s_are_filled_in_later_and_prune_goes_oldest_first(store: VersionStore) -> None:
    live = Path(store.root)
    for i in range(3):
        (live / f"{i}.txt").write_bytes(bytes([65 + i]) * 100)
        store.remove(f"{i}.txt", str(live / f"{i}.txt"), Who("alice", "DELETE"), replaced=False)
    assert [v.md5 for v in store.files()] == [None, None, None]  # no hash index here
    assert store.fill_hashes() == 3
    assert {v.path: v.md5 for v in store.files()} == {f"{i}.txt": md5(bytes([65 + i]) * 100) for i in range(3)}
    store.max_bytes = 150
    assert store.prune() == (2, 200)
    assert [v.path for v in store.files()] == ["2.txt"]
    assert store.prune(now_ns=(store.files()[0].time_ns + int(store.keep_seconds * 1e9) + 1)) == (1, 100)
    assert store.files() == [] and os.listdir(store.dir) == []


def test_a_restore_waits_for_a_placement_in_flight(store: VersionStore) -> None:
    """The server's placements share a lock a command-line restore takes alone: a restore never
    renames over a file a request is placing at that instant (both are kept)."""
    live = Path(store.root) / "f.txt"
    live.write_bytes(b"old")
    store.remove("f.txt", str(live), WHO, replaced=False)
    other = VersionStore(Path(store.root), store._state_dir)  # as the CLI opens it
    done = threading.Event()
    with store.placement():  # a request mid-placement, in the server
        t = threading.Thread(target=lambda: (other.restore("f.txt", Who("root", "RESTORE")), done.set()))
        t.start()
        assert not done.wait(0.3)
    t.join(10)
    assert done.is_set() and live.read_bytes() == b"old"
