"""Issue 24, the client's side of trust at the edges: silent local edits (same size and mtime),
Unicode twins on the server, default excludes, honest exits. Real server, real client process."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
import unicodedata
from pathlib import Path

import pytest
from conftest import PASSWORDS, free_port, wait_until
from proxy import Faults, Proxy
from synchelp import conflict_copies, md5, read_journal

from davsync.client.engine import RunOptions, run_once
from davsync.client.plan import RemoteEntry
from davsync.client.transfer import Downloaded, Raced, move_to_trash, place, stat_entry
from davsync.client.transport import ConnectionSettings


def silent_edit(path: Path, data: bytes) -> None:
    """Rewrite a file in place with content of the same size, then restore its mtime, as some
    editors and `cp --preserve=timestamps` do: size, mtime and inode all stay as they were."""
    st = os.stat(path)
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(path)
    assert (after.st_size, after.st_mtime_ns, after.st_ino) == (st.st_size, st.st_mtime_ns, st.st_ino)


def old_world(sync_world, files: dict[str, str]):  # type: ignore[no-untyped-def]
    """A world whose share holds `files`, last modified an hour ago (written before the server
    starts, so its first scan indexes them so): a silent edit then restores an old mtime, as it
    does for a user (a file modified in the last seconds counts as still being written)."""
    world = sync_world(start=False)
    t = time.time() - 3600
    for rel, text in files.items():
        (world.root / rel).parent.mkdir(parents=True, exist_ok=True)
        (world.root / rel).write_text(text)
        os.utime(world.root / rel, (t, t))
    world.start_server()
    return world


def test_sync_keeps_a_silent_local_edit_as_a_conflict_copy_when_the_server_changes_too(sync_world) -> None:  # type: ignore[no-untyped-def]
    world = old_world(sync_world, {"a.txt": "version one", "b.txt": "other"})
    first = world.sync()
    assert first.code == 0, first
    silent_edit(world.dest / "a.txt", b"LOCAL EDIT!")
    world.rput("a.txt", "server edit, longer")
    run = world.sync()
    tree = world.dest_tree()
    copies = conflict_copies(tree, "a.txt")
    assert tree["a.txt"] == md5(b"server edit, longer"), run
    assert list(copies.values()) == [md5(b"LOCAL EDIT!")], f"the silent local edit was overwritten: {tree}\n{run}"
    world.check(run, converged=False, second=False)


def test_sync_uploads_a_silent_local_edit(sync_world) -> None:  # type: ignore[no-untyped-def]
    world = old_world(sync_world, {"a.txt": "version one"})
    assert world.sync().code == 0
    silent_edit(world.dest / "a.txt", b"LOCAL EDIT!")
    run = world.sync()
    assert run.code == 0, run
    assert (world.root / "a.txt").read_bytes() == b"LOCAL EDIT!", run


def test_pull_keeps_a_silent_local_edit_as_a_conflict_copy(sync_world) -> None:  # type: ignore[no-untyped-def]
    world = old_world(sync_world, {"a.txt": "version one"})
    assert world.pull().code == 0
    silent_edit(world.dest / "a.txt", b"LOCAL EDIT!")
    world.rput("a.txt", "server edit, longer")
    run = world.pull()
    tree = world.dest_tree()
    assert tree["a.txt"] == md5(b"server edit, longer"), run
    assert list(conflict_copies(tree, "a.txt").values()) == [md5(b"LOCAL EDIT!")], f"overwritten: {tree}\n{run}"


def test_place_sets_aside_a_file_edited_after_planning_with_its_stat_restored(tmp_path: Path) -> None:
    """The executor's last look before a rename: the planned version is checked with ctime too,
    and a file that is no longer it is kept as a conflict copy, never replaced unread."""
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / "a.txt"
    target.write_bytes(b"base version")
    os.utime(target, (time.time() - 3600, time.time() - 3600))  # settled long ago, not being written
    planned = stat_entry(target)
    assert planned is not None
    silent_edit(target, b"EDITED AFTER")
    partial = tmp_path / "download.tmp"
    partial.write_bytes(b"the server's new version")
    got = Downloaded(partial, md5(b"the server's new version"), partial.stat().st_size, partial.stat().st_size, 0)
    entry = RemoteEntry("a.txt", False, got.size, None, '"e2"', got.md5)
    copies: list[str] = []
    placed = place(got, dest, "a.txt", entry, planned, set_aside=copies.append)
    kept = {p.name: p.read_bytes() for p in dest.iterdir()}
    assert len(copies) == 1 and kept.get(copies[0]) == b"EDITED AFTER", f"the edit was replaced unread: {kept}"
    assert copies[0].startswith("a.sync-conflict-") and copies[0].endswith(".txt")
    assert kept["a.txt"] == b"the server's new version"
    assert placed == stat_entry(target), "the stat returned is not the placed file's as it is now (after the rename)"


def test_trash_refuses_a_file_edited_after_planning_with_its_stat_restored(tmp_path: Path) -> None:
    dest = tmp_path / "dest"
    dest.mkdir()
    target = dest / "a.txt"
    target.write_bytes(b"base version")
    planned = stat_entry(target)
    silent_edit(target, b"EDITED AFTER")
    with pytest.raises(Raced):
        move_to_trash(dest, "a.txt", planned, "stamp")
    assert target.read_bytes() == b"EDITED AFTER"


def _drop_ctime_column(dest: Path) -> None:
    """Make DEST's journal look as davsync wrote it before it kept ctime."""
    conn = sqlite3.connect(dest / ".davsync" / "state.db")
    conn.execute("ALTER TABLE placed DROP COLUMN ctime_ns")
    conn.commit()
    conn.close()


def test_a_journal_from_before_ctime_still_never_replaces_a_silent_edit(sync_world) -> None:  # type: ignore[no-untyped-def]
    """Old rows have no ctime: the stat cannot be sure, so the file is read before it is replaced."""
    world = old_world(sync_world, {"a.txt": "version one", "b.txt": "other"})
    assert world.pull().code == 0
    _drop_ctime_column(world.dest)
    again = world.pull()
    assert again.code == 0 and not again.transfers, again
    silent_edit(world.dest / "a.txt", b"LOCAL EDIT!")
    world.rput("a.txt", "server edit, longer")
    run = world.pull()
    tree = world.dest_tree()
    assert tree["a.txt"] == md5(b"server edit, longer"), run
    assert list(conflict_copies(tree, "a.txt").values()) == [md5(b"LOCAL EDIT!")], f"overwritten: {tree}\n{run}"


def test_a_journal_from_before_ctime_learns_it_on_a_full_look_without_a_transfer(sync_world) -> None:  # type: ignore[no-untyped-def]
    world = old_world(sync_world, {"a.txt": "version one", "b.txt": "other"})
    assert world.sync().code == 0
    _drop_ctime_column(world.dest)
    again = world.sync()
    assert again.code == 0 and not again.transfers, again
    rows = read_journal(world.dest)
    assert all(rows[p]["ctime_ns"] == os.stat(world.dest / p).st_ctime_ns for p in ("a.txt", "b.txt")), (rows, again.stdout)
    silent_edit(world.dest / "b.txt", b"OTHER")
    run = world.sync()
    assert run.code == 0 and (world.root / "b.txt").read_bytes() == b"OTHER", run


# --- item 3: Unicode twins on the server -------------------------------------------------------

NFC_NAME = unicodedata.normalize("NFC", "café.txt")
NFD_NAME = unicodedata.normalize("NFD", "café.txt")


@pytest.mark.parametrize("verb", ["pull", "sync"])
@pytest.mark.parametrize("deleted", ["NFD", "NFC"])
def test_the_survivor_of_unicode_twins_appears_here_when_one_is_deleted(world, verb: str, deleted: str) -> None:  # type: ignore[no-untyped-def]
    args = ("--delete",) if verb == "pull" else ()
    world.seed({NFC_NAME: "composed", "other.txt": "other"})
    assert world.run(verb, *args).code == 0
    (world.root / NFD_NAME).write_bytes(b"decomposed")  # a Mac wrote the same name in NFD
    world.wait_indexed()
    twins = world.run(verb, *args)
    assert twins.code in (0, 3), twins
    assert (world.dest / NFC_NAME).read_bytes() == b"composed", "a twin replaced the file while both exist"
    gone, survivor = (NFD_NAME, b"composed") if deleted == "NFD" else (NFC_NAME, b"decomposed")
    world.rrm(gone)
    world.wait_indexed()
    run = world.run(verb, *args)
    assert run.code == 0, run
    here = [p for p in world.dest.iterdir() if unicodedata.normalize("NFC", p.name) == NFC_NAME]
    assert [p.read_bytes() for p in here] == [survivor], f"{[p.name for p in here]}\n{run}"
    again = world.run(verb, *args)
    assert again.code == 0 and not again.transfers, again
    assert [p.read_bytes() for p in world.dest.iterdir() if unicodedata.normalize("NFC", p.name) == NFC_NAME] == [survivor]


@pytest.mark.parametrize("verb", ["pull", "sync"])
def test_a_twin_born_and_its_sibling_deleted_between_two_runs_replaces_the_file_here(world, verb: str) -> None:  # type: ignore[no-untyped-def]
    """Found by the sync model: a Mac writes the NFD spelling and the NFC file is deleted before
    the next run, so no run ever saw both. The survivor must come down, not the deletion alone."""
    args = ("--delete",) if verb == "pull" else ()
    world.seed({NFC_NAME: "composed", "other.txt": "other"})
    assert world.run(verb, *args).code == 0
    world.rput(NFD_NAME, "decomposed")
    world.rrm(NFC_NAME)
    world.wait_indexed()
    run = world.run(verb, *args)
    assert run.code == 0, run
    here = [p for p in world.dest.iterdir() if unicodedata.normalize("NFC", p.name) == NFC_NAME]
    assert [p.read_bytes() for p in here] == [b"decomposed"], f"{[p.name for p in here]}\n{run}"


# --- item 7: default excludes ------------------------------------------------------------------

CLUTTER = {
    "~$Report.docx": "Office",
    ".~lock.notes.odt#": "LibreOffice",
    "~WRL0001.tmp": "Office",
    "notes.txt~": "backup",
    ".notes.txt.swp": "vim",
    "Thumbs.db": "thumbnail",
    "desktop.ini": "Explorer",
    ".DS_Store": "Finder",
    "._photo.jpg": "AppleDouble",
    "movie.mkv.part": "download",
    "sub/setup.exe.crdownload": "download",
    "big.iso.filepart": "transfer",
    "@eaDir/photo.jpg/SYNOPHOTO_THUMB_M.jpg": "Synology",
    ".Trash-1000/files/old.txt": "trash",
    "$RECYCLE.BIN/S-1-5-21/desktop.ini": "Recycle Bin",
    "sub/DESKTOP.INI": "Explorer",  # any letter case (status once listed only the lower-case name)
    ".~davsync-share": "server's own",  # the share's marker, in a folder copied from the Pi: failed every sync
    "old/.~Davsync-7f3a": "server's own",
}


def test_clutter_is_never_uploaded_and_status_says_why(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"Report.docx": "the real document"})
    assert world.sync().code == 0
    for rel in CLUTTER:
        world.write(rel, f"clutter {rel}")
    run = world.sync()
    assert run.code == 0, run
    on_server = set(world.share_tree())
    assert not on_server & set(CLUTTER), f"clutter uploaded: {sorted(on_server & set(CLUTTER))}\n{run}"
    assert "Report.docx" in on_server
    status = world.run("status", "--excluded", json_out=False)
    assert status.code == 0, status
    for rel, why in CLUTTER.items():
        top = rel.split("/")[0] if rel.startswith(("@eaDir", ".Trash-", "$RECYCLE")) else rel
        line = next((ln for ln in status.stdout.splitlines() if ln.startswith(top + ":")), None)
        assert line is not None and why.lower() in line.lower(), f"{rel}: {line!r}\n{status.stdout}"


def test_a_default_exclude_is_overridden_by_a_negation_in_davsyncignore(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "a"})
    assert world.sync().code == 0
    world.write(".davsyncignore", "!desktop.ini\n")
    world.write("desktop.ini", "[.ShellClassInfo]\n")
    world.write("Thumbs.db", "thumbs")
    run = world.sync()
    assert run.code == 0, run
    assert (world.root / "desktop.ini").exists(), run
    assert not (world.root / "Thumbs.db").exists(), run
    status = world.run("status", "--excluded", json_out=False)
    assert "Thumbs.db:" in status.stdout and "desktop.ini" not in status.stdout, status


@pytest.mark.parametrize("verb", ["pull", "sync"])
def test_a_synced_file_that_becomes_excluded_is_never_deleted(world, verb: str) -> None:  # type: ignore[no-untyped-def]
    args = ("--delete",) if verb == "pull" else ()
    world.seed({"desktop.ini": "[.ShellClassInfo]\n", "Thumbs.db": "thumbs", "a.txt": "a"})
    first = world.run(verb, *args, "--exclude", "!desktop.ini", "--exclude", "!Thumbs.db")
    assert first.code == 0 and (world.dest / "desktop.ini").exists() and (world.dest / "Thumbs.db").exists(), first
    world.rrm("desktop.ini")  # gone on the server: the copy here is not judged any more
    if verb == "sync":
        world.rm("Thumbs.db")  # gone here: the server's is not judged any more
    world.wait_indexed()
    run = world.run(verb, *args)
    assert run.code == 0, run
    assert (world.dest / "desktop.ini").read_bytes() == b"[.ShellClassInfo]\n", run
    assert (world.root / "Thumbs.db").read_bytes() == b"thumbs", run


# --- item 10: the server killed mid-download ---------------------------------------------------


def test_a_server_killed_mid_download_ends_the_run_as_unreachable(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One file downloading when the server goes away: exit 4 with the README's sentence, not
    'gave up after N attempts' and exit 3 (which says the server is fine and one file failed)."""
    (share.root / "big.bin").write_bytes(os.urandom(24 * 1024 * 1024))
    share.wait_indexed()
    dest = tmp_path / "mirror"
    proxy = Proxy(share.server.port, Faults(rate=2 * 1024 * 1024))
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "davsync", "pull", proxy.url, str(dest), "-u", "alice"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        partial = dest / ".davsync" / "partial"
        wait_until(lambda: any(p.stat().st_size > 0 for p in partial.glob("*.part")) if partial.exists() else False,
                   60, "the download to start")  # fmt: skip
        proxy.close()  # the server's port goes away mid-body, as when the Pi loses power
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proxy.close()
    assert proc.returncode == 4, out + err
    assert "stopped answering" in err and "run again when it is back" in err, err
    assert "gave up after" not in out + err and "Traceback" not in err, out + err


# --- item 13: bytes count only for files placed --------------------------------------------------


def test_bytes_of_a_download_that_was_not_placed_are_not_counted(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A file of the same name appears here while the download runs: the download is not placed
    (the local file is left alone), so the summary must not count its bytes as downloaded."""
    (share.root / "small.txt").write_bytes(b"small one")
    (share.root / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    share.wait_indexed()
    dest = tmp_path / "mirror"
    proxy = Proxy(share.server.port, Faults(rate=2 * 1024 * 1024))
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    try:
        proc = subprocess.Popen([sys.executable, "-m", "davsync", "pull", proxy.url, str(dest), "-u", "alice", "--json"],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
        partial = dest / ".davsync" / "partial"
        wait_until(lambda: any(p.stat().st_size > 0 for p in partial.glob("*.part")) if partial.exists() else False,
                   60, "the download to start")  # fmt: skip
        (dest / "big.bin").write_bytes(b"mine, made meanwhile")
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        proxy.close()
    assert (dest / "big.bin").read_bytes() == b"mine, made meanwhile", out + err
    data = json.loads(out)
    assert "big.bin" not in data["done"].get("download", []), out
    assert data["bytes_downloaded"] == len(b"small one"), f"bytes of a file not placed were counted: {out}"


# --- item 14: a file changing on the server between listing and download ----------------------


@pytest.mark.parametrize("verb", ["pull", "sync"])
def test_a_file_changed_on_the_server_after_listing_is_listed_again_in_the_same_run(world, verb: str) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "one", "b.txt": "b"})
    assert world.run(verb).code == 0
    world.rput("a.txt", "two, listed")
    world.wait_indexed()
    world.proxy.on("GET", "a.txt", action=lambda ex: world.phone.put("a.txt", b"three, saved by a phone"))
    run = world.run(verb)
    assert run.code == 0, run
    assert (world.dest / "a.txt").read_bytes() == b"three, saved by a phone", run


def test_a_file_that_keeps_changing_on_the_server_is_reported(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "one", "b.txt": "b"})
    assert world.pull().code == 0
    world.rput("a.txt", "two, listed")
    world.wait_indexed()
    saves = iter(range(100))
    world.proxy.on("GET", "a.txt", times=100, action=lambda ex: world.phone.put("a.txt", f"save {next(saves)}".encode()))
    run = world.pull()
    assert run.code == 3, run
    (error,) = run.json["errors"]
    assert error["path"] == "a.txt" and "keeps changing on the server" in error["error"], run
    assert (world.dest / "a.txt").read_bytes() == b"one", run
    assert 2 <= len(run.of("GET", "a.txt")) <= 4, run  # listed again a bounded number of times


def test_a_small_file_changed_on_the_server_after_listing_is_retried_out_of_a_bundle(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({f"f{i}.txt": f"file {i}" for i in range(10)})
    assert world.pull().code == 0
    for i in range(10):
        world.rput(f"f{i}.txt", f"file {i}, second version")
    world.wait_indexed()
    world.proxy.on("REPORT", nth=2, action=lambda ex: world.phone.put("f3.txt", b"f3 saved by a phone meanwhile"))
    run = world.pull()
    assert run.code == 0, run
    assert (world.dest / "f3.txt").read_bytes() == b"f3 saved by a phone meanwhile", run
    assert (world.dest / "f4.txt").read_bytes() == b"file 4, second version", run


# --- item 12: a .davsync folder that cannot be written ------------------------------------------


def _immutable(path: Path, on: bool) -> None:
    """chattr +i: even root cannot write there (a read-only folder as a user meets it)."""
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed (e2fsprogs)")
    r = subprocess.run(["chattr", "+i" if on else "-i", str(path)], capture_output=True, text=True)
    if r.returncode != 0 and on:
        pytest.skip(f"this filesystem has no immutable flag: {r.stderr.strip()}")


@pytest.mark.parametrize("what", ["folder", "state.db"])
def test_a_state_folder_that_cannot_be_written_is_diagnosed_as_such(world, what: str) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "a"})
    assert world.pull().code == 0
    world.rput("b.txt", "b")
    state = world.dest / ".davsync"
    target = state if what == "folder" else state / "state.db"
    _immutable(target, True)
    try:
        run = world.pull(json_out=False)
    finally:
        _immutable(target, False)
    said = run.stdout + run.stderr
    assert run.code == 5, run
    assert "damaged" not in said and "move it aside" not in said, said
    assert "cannot write" in said and ".davsync" in said, said
    assert "Traceback" not in said
    assert world.pull().code == 0  # the journal was fine all along


def test_a_state_file_that_is_really_damaged_is_still_called_damaged(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "a"})
    assert world.pull().code == 0
    for extra in (world.dest / ".davsync").glob("state.db-*"):
        extra.unlink()
    (world.dest / ".davsync" / "state.db").write_bytes(b"this is not a database, just garbage " * 200)
    env = {**os.environ, "DAVSYNC_PASSWORD": PASSWORDS["alice"]}
    run = subprocess.run([sys.executable, "-m", "davsync", "pull", world.url, str(world.dest), "-u", "alice"],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 5 and "is damaged" in run.stderr and "cannot write" not in run.stderr, run


# --- item 11: doctor checks the server before asking for a password ------------------------------


def test_doctor_says_the_server_is_unreachable_before_asking_for_a_password(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there
    env = {k: v for k, v in os.environ.items() if k != "DAVSYNC_PASSWORD"}
    run = subprocess.run([sys.executable, "-m", "davsync", "doctor", f"http://127.0.0.1:{port}/", "-u", "alice"],
                         input="", capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    said = run.stdout + run.stderr
    assert run.returncode == 4, said
    assert "FAIL  reachable" in said and "nothing is listening" in said, said
    assert "password" not in said.lower(), f"asked for a password before checking the server: {said}"


# --- item 9: letter-case twins on the server, a case-insensitive PC -----------------------------


def test_case_twins_on_the_server_one_is_synced_by_the_stated_rule_and_the_other_reported(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"Report.txt": "upper", "report.txt": "lower", "other.txt": "o"})
    run = world.pull("--name-rules", "windows")
    assert run.code == 3, run
    here = sorted(p.name for p in world.dest.iterdir() if p.name.lower() == "report.txt")
    assert here == ["Report.txt"] and (world.dest / "Report.txt").read_bytes() == b"upper", run  # code-point order
    (skip,) = run.json["skipped"]
    assert skip["path"] == "report.txt", run
    assert "Report.txt" in skip["reason"] and "synced here instead" in skip["reason"] and "rename" in skip["reason"], run


def test_a_case_twin_appearing_later_never_displaces_the_file_already_synced(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"report.txt": "synced first", "other.txt": "o"})
    assert world.pull("--name-rules", "windows").code == 0
    world.rput("Report.txt", "a twin, later")
    world.wait_indexed()
    run = world.pull("--name-rules", "windows")
    assert run.code == 3, run
    here = sorted(p.name for p in world.dest.iterdir() if p.name.lower() == "report.txt")
    assert here == ["report.txt"] and (world.dest / "report.txt").read_bytes() == b"synced first", run
    assert [s["path"] for s in run.json["skipped"]] == ["Report.txt"], run
    assert "report.txt" in run.json["skipped"][0]["reason"], run


# --- item 8: a read-only account ---------------------------------------------------------------


def test_a_file_deleted_here_in_a_read_only_pair_is_restored_from_the_server(world) -> None:  # type: ignore[no-untyped-def]
    world.seed({"a.txt": "a", "b.txt": "b"})
    assert world.sync(user="bob").code == 0
    world.rm("a.txt")
    run = world.sync(user="bob")
    assert run.code == 0, run
    assert (world.dest / "a.txt").read_bytes() == b"a", f"left missing: {run}"
    assert (world.root / "a.txt").read_bytes() == b"a"
    again = world.sync(user="bob")
    assert again.code == 0 and not again.transfers, again


def test_the_change_time_moves_on_a_silent_edit_and_fits_the_journal(tmp_path: Path) -> None:
    """fileid.change_time_ns: st_ctime_ns on POSIX, the NTFS ChangeTime on Windows (run there by the
    Windows lane; checked by hand under wine's real CPython 3.11.9, where the raw FILETIME times
    100 did not fit SQLite's INTEGER)."""
    from davsync import fileid

    p = tmp_path / "a.txt"
    p.write_bytes(b"version one")
    before = fileid.change_time_ns(p, os.stat(p))
    assert before == fileid.change_time_ns(p, os.stat(p)) and 0 < before < 2**63
    # File times come from a coarse clock (a few ms) on older kernels: let it move past the write.
    wait_until(lambda: time.time_ns() > before + 50_000_000, 5, "the clock to move past the first write")
    silent_edit(p, b"VERSION ONE")
    after = fileid.change_time_ns(p, os.stat(p))
    assert after != before and 0 < after < 2**63
    assert abs(after - time.time_ns()) < 3600 * 10**9  # ns since 1970, as st_ctime_ns


class _Counting:
    """A reporter that adds up the bytes the progress display would show."""

    def __init__(self) -> None:
        self.shown = 0
        self.lock = threading.Lock()

    def begin(self, files: int, total_bytes: int) -> None: ...
    def file_started(self, path: str, size: int) -> None: ...
    def advance(self, nbytes: int) -> None:
        with self.lock:
            self.shown += nbytes

    def file_done(self, action: object, note: str = "") -> None: ...
    def warn(self, message: str) -> None: ...
    def end(self) -> None: ...


def test_progress_takes_back_the_bytes_of_a_download_that_was_not_placed(share, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    (share.root / "small.txt").write_bytes(b"small one")
    (share.root / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    share.wait_indexed()
    dest = tmp_path / "mirror"
    proxy = Proxy(share.server.port, Faults(rate=2 * 1024 * 1024))
    reporter = _Counting()
    partial = dest / ".davsync" / "partial"

    def meanwhile() -> None:
        wait_until(lambda: any(p.stat().st_size > 0 for p in partial.glob("*.part")) if partial.exists() else False,
                   60, "the download to start")  # fmt: skip
        (dest / "big.bin").write_bytes(b"mine, made meanwhile")

    writer = threading.Thread(target=meanwhile)
    writer.start()
    try:
        result = run_once(ConnectionSettings(proxy.url, "alice", PASSWORDS["alice"]), dest, RunOptions(),
                          reporter=reporter)  # type: ignore[arg-type]  # fmt: skip
    finally:
        writer.join(60)
        proxy.close()
    assert (dest / "big.bin").read_bytes() == b"mine, made meanwhile"
    assert result.bytes_downloaded == len(b"small one")
    assert reporter.shown == len(b"small one"), f"the progress still counts {reporter.shown} bytes"


def test_a_silent_edit_under_an_old_journal_row_is_set_aside_in_the_bundle_path_too(sync_world) -> None:  # type: ignore[no-untyped-def]
    """Many small files come in bundles; one was edited silently and its row has no ctime: the
    file is read before it is replaced, and kept as a conflict copy (not refused every run)."""
    world = old_world(sync_world, {f"f{i}.txt": f"file {i}" for i in range(10)})
    assert world.pull().code == 0
    _drop_ctime_column(world.dest)
    silent_edit(world.dest / "f3.txt", b"FILE 3")
    for i in range(10):
        world.rput(f"f{i}.txt", f"file {i}, second version")
    world.wait_indexed()
    run = world.pull()
    tree = world.dest_tree()
    assert tree["f3.txt"] == md5(b"file 3, second version"), run
    assert list(conflict_copies(tree, "f3.txt").values()) == [md5(b"FILE 3")], f"{tree}\n{run}"
    assert tree["f4.txt"] == md5(b"file 4, second version"), run


def test_an_mtime_only_touch_on_the_servers_disk_reaches_the_index_and_the_change_feed(share) -> None:  # type: ignore[no-untyped-def]
    """`touch` on the Pi (same size, same content, a new mtime): a client that mirrors mtimes
    must hear of it, and the index must describe the file as it now is (issue 24, noticed)."""
    from test_sync_collection import parse, report

    p = share.root / "touched.txt"
    p.write_text("same bytes")
    os.utime(p, (1_600_000_000, 1_600_000_000))
    share.wait_indexed()
    _changed, _removed, token = parse(report(share))
    os.utime(p, (1_700_000_000, 1_700_000_000))  # what `touch -d` does: IN_ATTRIB, no write
    wait_until(lambda: share.index.fresh_md5("touched.txt", os.stat(p)) is not None, 15,
               "the index to take the new mtime")  # fmt: skip
    changed, _removed, _token = parse(report(share, token))
    assert any(href.endswith("/touched.txt") for href in changed), changed
