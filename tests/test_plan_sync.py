"""The planning core in sync and push modes: one table row per rule, each run through the
in-memory world, so every row also checks that nothing is lost and a second run is quiet."""

from __future__ import annotations

from datetime import datetime

import pytest
from planmodel import (
    NOW,
    World,
    add_local,
    add_remote,
    agreed,
    check_run,
    edit_local,
    edit_remote,
    mv_local,
    mv_remote,
    rm_local,
    rm_remote,
    touch_local,
)

from davsync.client.plan import (
    JournalEntry,
    Kind,
    LocalEntry,
    LocalOp,
    LocalView,
    Mode,
    Options,
    RemoteOp,
    RemoteView,
    conflict_name,
    exit_code,
    parse_max_delete,
    reconcile,
)
from davsync.exitcodes import Exit

A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32
SYNC = Options(mode=Mode.SYNC)
PUSH = Options(mode=Mode.PUSH)
PUSH_DELETE = Options(mode=Mode.PUSH, delete=True)
STAMP = "sync-conflict-20261122-013000"


def kinds(plan) -> dict[str, Kind]:  # type: ignore[no-untyped-def]
    return {a.path: a.kind for a in plan.actions}


def world3() -> World:
    """Three files, one in a folder, all in agreement."""
    return agreed({"f.txt": A, "g.txt": B, "d/x.txt": C})


# --- one-sided changes ---------------------------------------------------------------------


def test_in_agreement_nothing_to_do() -> None:
    p, _ = check_run(world3(), SYNC)
    assert p.actions == []


@pytest.mark.parametrize(
    "change,expected,op",
    [
        (lambda w: edit_local(w, "f.txt", D), Kind.UPLOAD_EDIT, RemoteOp.PUT_EDIT),
        (lambda w: add_local(w, "new.txt", D), Kind.UPLOAD, RemoteOp.PUT_NEW),
        (lambda w: add_local(w, "n/new.txt", D), Kind.UPLOAD, RemoteOp.PUT_NEW),
        (lambda w: rm_local(w, "f.txt"), Kind.REMOTE_DELETE, RemoteOp.DELETE),
        (lambda w: add_local(w, "empty"), Kind.REMOTE_MKDIR, RemoteOp.MKCOL),
    ],
    ids=["edit", "new", "new-in-new-folder", "delete", "new-empty-folder"],
)
def test_local_change_goes_to_the_server(change, expected, op) -> None:  # type: ignore[no-untyped-def]
    w = world3()
    change(w)
    p, _ = check_run(w, SYNC)
    changed = [a for a in p.actions if a.kind == expected]
    assert len(changed) == 1 and changed[0].remote_ops == (op,) and not changed[0].local_ops
    assert all(not a.local_ops for a in p.actions), "a local change came back to the local side"


def test_an_edit_is_sent_with_the_base_etag() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    (a,) = w.plan(SYNC).actions
    assert a.remote is not None and a.remote.etag == w.remote["f.txt"].etag  # If-Match: the version judged
    assert a.record is not None and a.record.md5 == D and a.record.remote_etag is None  # the server gives the new one


@pytest.mark.parametrize(
    "change,expected,op",
    [
        (lambda w: edit_remote(w, "f.txt", D), Kind.UPDATE, LocalOp.WRITE),
        (lambda w: add_remote(w, "new.txt", D), Kind.DOWNLOAD, LocalOp.WRITE),
        (lambda w: rm_remote(w, "f.txt"), Kind.DELETE, LocalOp.TRASH),
        (lambda w: add_remote(w, "empty"), Kind.MKDIR, LocalOp.MKDIR),
    ],
    ids=["edit", "new", "delete", "new-empty-folder"],
)
def test_server_change_comes_here(change, expected, op) -> None:  # type: ignore[no-untyped-def]
    w = world3()
    change(w)
    p, _ = check_run(w, SYNC)
    (a,) = p.actions
    assert a.kind == expected and a.local_ops == (op,) and not a.remote_ops


def test_metadata_only_changes_are_recorded_not_transferred() -> None:
    w = world3()
    touch_local(w, "f.txt")
    w.remote["g.txt"] = w.remote["g.txt"].__class__("g.txt", False, w.remote["g.txt"].size, 5.0, "e-new", B)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"f.txt": Kind.REFRESH, "g.txt": Kind.REFRESH}
    assert not p.changes


def test_a_folder_deleted_here_goes_with_its_files() -> None:
    w = world3()
    rm_local(w, "d")
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"d/x.txt": Kind.REMOTE_DELETE, "d": Kind.REMOTE_RMDIR}
    assert [a.path for a in p.actions] == ["d/x.txt", "d"]  # the file first, then the folder


def test_a_folder_deleted_on_the_server_goes_to_trash() -> None:
    w = world3()
    rm_remote(w, "d")
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"d/x.txt": Kind.DELETE, "d": Kind.RMDIR}
    assert after.trash == [C]


# --- both sides changed --------------------------------------------------------------------


def test_both_changed_identically_is_no_conflict() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    edit_remote(w, "f.txt", D)
    p, _ = check_run(w, SYNC)
    (a,) = p.actions
    assert a.kind == Kind.ADOPT and not a.changes_something


def test_both_new_identically_is_no_conflict() -> None:
    w = world3()
    add_local(w, "n.txt", D)
    add_remote(w, "n.txt", D)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"n.txt": Kind.ADOPT}


def test_both_changed_differently_keeps_both_versions_on_both_sides() -> None:
    w = world3()
    edit_local(w, "d/x.txt", D)
    edit_remote(w, "d/x.txt", B)
    p, after = check_run(w, SYNC)
    (a,) = p.actions
    assert a.kind == Kind.CONFLICT and a.conflict_copy == f"d/x.{STAMP}.txt"
    assert a.local_ops == (LocalOp.SET_ASIDE, LocalOp.WRITE) and a.remote_ops == (RemoteOp.PUT_NEW,)
    assert after.local["d/x.txt"].md5 == after.remote["d/x.txt"].md5 == B  # the server's keeps the name
    assert after.local[a.conflict_copy].md5 == after.remote[a.conflict_copy].md5 == D
    assert exit_code(p, ran=False) == Exit.PARTIAL and exit_code(p, conflicts=1) == Exit.PARTIAL


def test_both_new_differently_is_a_conflict() -> None:
    w = world3()
    add_local(w, "n", D)
    add_remote(w, "n", B)
    p, _ = check_run(w, SYNC)
    assert p.actions[0].conflict_copy == f"n.{STAMP}"


def test_a_taken_conflict_name_gets_a_number() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    edit_remote(w, "f.txt", B)
    add_remote(w, f"f.{STAMP}.txt", C)
    p, _ = check_run(w, SYNC)
    assert p.of(Kind.CONFLICT)[0].conflict_copy == f"f.{STAMP}-2.txt"


def test_conflict_names() -> None:
    now = datetime(2026, 1, 2, 3, 4, 5)
    assert conflict_name("a/report.final.pdf", now) == "a/report.final.sync-conflict-20260102-030405.pdf"
    assert conflict_name(".bashrc", now) == ".bashrc.sync-conflict-20260102-030405"
    assert conflict_name("Makefile", now) == "Makefile.sync-conflict-20260102-030405"


@pytest.mark.parametrize("side", ["local-edit-remote-delete", "remote-edit-local-delete"])
def test_modify_beats_delete(side: str) -> None:
    w = world3()
    if side == "local-edit-remote-delete":
        edit_local(w, "f.txt", D)
        rm_remote(w, "f.txt")
        expected = Kind.UPLOAD
    else:
        rm_local(w, "f.txt")
        edit_remote(w, "f.txt", D)
        expected = Kind.DOWNLOAD
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"f.txt": expected}
    assert after.local["f.txt"].md5 == after.remote["f.txt"].md5 == D


def test_modify_beats_a_folder_delete_and_the_folder_is_made_again() -> None:
    w = agreed({"d/x": A, "d/y": B, "keep": D})
    rm_remote(w, "d")
    edit_local(w, "d/x", C)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"d": Kind.REMOTE_MKDIR, "d/x": Kind.UPLOAD, "d/y": Kind.DELETE}
    assert p.actions[0].path == "d"  # the folder before the upload into it


def test_modify_beats_a_local_folder_delete() -> None:
    w = agreed({"d/x": A, "d/y": B, "keep": D})
    rm_local(w, "d")
    edit_remote(w, "d/x", C)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"d": Kind.MKDIR, "d/x": Kind.DOWNLOAD, "d/y": Kind.REMOTE_DELETE}


def test_deleted_on_both_sides_is_forgotten() -> None:
    w = world3()
    rm_local(w, "f.txt")
    rm_remote(w, "f.txt")
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"f.txt": Kind.FORGET} and "f.txt" not in after.base


# --- folder against file -------------------------------------------------------------------


def test_local_file_against_server_folder_keeps_both() -> None:
    w = agreed({"g": B})
    add_local(w, "x", A)
    add_remote(w, "x/inside", C)
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"x": Kind.CONFLICT, "x/inside": Kind.DOWNLOAD}
    copy = p.of(Kind.CONFLICT)[0].conflict_copy
    assert after.local[copy].md5 == after.remote[copy].md5 == A and after.local["x"].is_dir


def test_local_folder_against_server_file_keeps_both() -> None:
    w = agreed({"g": B})
    add_local(w, "x/inside", A)
    add_local(w, "x/sub/deep", D)
    add_remote(w, "x", C)
    p, after = check_run(w, SYNC)
    copy = f"x.{STAMP}"
    assert kinds(p) == {
        "x": Kind.CONFLICT,
        copy: Kind.REMOTE_MKDIR,
        f"{copy}/inside": Kind.UPLOAD,
        f"{copy}/sub": Kind.REMOTE_MKDIR,
        f"{copy}/sub/deep": Kind.UPLOAD,
    }
    assert after.local["x"].md5 == C and after.remote[f"{copy}/sub/deep"].md5 == D


def test_server_replaced_a_tracked_folder_with_a_file() -> None:
    w = agreed({"x/a": A})
    rm_remote(w, "x")
    add_remote(w, "x", B)
    p, after = check_run(w, SYNC)
    assert p.of(Kind.CONFLICT) and after.local["x"].md5 == B
    assert after.local[f"x.{STAMP}/a"].md5 == A


# --- renames -------------------------------------------------------------------------------


def test_a_local_rename_is_one_move() -> None:
    w = world3()
    mv_local(w, "f.txt", "renamed.txt")
    p, _ = check_run(w, SYNC)
    (a,) = p.actions
    assert (a.kind, a.src, a.path) == (Kind.REMOTE_MOVE, "f.txt", "renamed.txt")
    assert a.remote_ops == (RemoteOp.MOVE,) and a.remote is not None and a.remote.path == "f.txt"


def test_a_local_move_into_a_new_folder() -> None:
    w = world3()
    mv_local(w, "f.txt", "new/f.txt")
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"new": Kind.REMOTE_MKDIR, "new/f.txt": Kind.REMOTE_MOVE}
    assert [a.path for a in p.actions] == ["new", "new/f.txt"]


def test_a_copy_then_delete_with_a_new_stat_is_not_a_rename() -> None:
    """Same MD5 but neither the file id nor size+mtime: delete + upload, as the rules say."""
    w = world3()
    rm_local(w, "f.txt")
    add_local(w, "other.txt", A)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"f.txt": Kind.REMOTE_DELETE, "other.txt": Kind.UPLOAD}


def test_a_rename_by_size_and_mtime_when_the_file_id_changed() -> None:
    """FAT and exFAT give a renamed file a new id: size + mtime + MD5 still find it."""
    w = world3()
    old = w.local.pop("f.txt")
    w.local["moved.txt"] = LocalEntry(False, old.size, old.mtime_ns, 424242, old.md5)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"moved.txt": Kind.REMOTE_MOVE}


def test_a_renamed_and_edited_file_is_not_a_rename() -> None:
    w = world3()
    mv_local(w, "f.txt", "g2.txt")
    edit_local(w, "g2.txt", D)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"f.txt": Kind.REMOTE_DELETE, "g2.txt": Kind.UPLOAD}


def test_a_local_folder_rename_is_one_move() -> None:
    w = agreed({f"photos/{i}.jpg": md5 for i, md5 in enumerate([A, B, C, D])} | {"photos/sub/e.jpg": A})
    mv_local(w, "photos", "Pictures")
    p, after = check_run(w, SYNC)
    (a,) = p.actions
    assert (a.kind, a.src, a.path) == (Kind.REMOTE_MOVE, "photos", "Pictures")
    assert "Pictures/sub/e.jpg" in after.base and "photos/0.jpg" not in after.base


def test_a_folder_rename_with_a_new_file_inside() -> None:
    w = agreed({"p/a": A, "p/b": B})
    mv_local(w, "p", "q")
    add_local(w, "q/c", C)
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"q": Kind.REMOTE_MOVE, "q/c": Kind.UPLOAD}
    assert [a.path for a in p.actions] == ["q", "q/c"]


def test_a_server_rename_is_a_local_rename() -> None:
    w = world3()
    mv_remote(w, "d/x.txt", "e/x.txt")
    p, _ = check_run(w, SYNC)
    assert kinds(p) == {"e": Kind.MKDIR, "e/x.txt": Kind.LOCAL_MOVE}  # d stays on the server, empty
    assert p.of(Kind.LOCAL_MOVE)[0].local_ops == (LocalOp.RENAME,)


def test_a_server_folder_rename_is_one_local_rename() -> None:
    w = agreed({"p/a": A, "p/b": B, "p/s/c": C})
    mv_remote(w, "p", "q")
    p, after = check_run(w, SYNC)
    (a,) = p.actions
    assert (a.kind, a.src, a.path) == (Kind.LOCAL_MOVE, "p", "q")
    assert after.local["q/s/c"].md5 == C


@pytest.mark.parametrize("where", ["local", "remote"])
def test_case_only_rename_is_one_rename(where: str) -> None:
    w = world3()
    (mv_local if where == "local" else mv_remote)(w, "f.txt", "F.txt")
    p, _ = check_run(w, SYNC)
    (a,) = p.actions
    assert a.kind == (Kind.REMOTE_MOVE if where == "local" else Kind.LOCAL_MOVE)
    assert (a.src, a.path) == ("f.txt", "F.txt")


def test_renames_are_not_counted_as_deletions() -> None:
    """A folder of 10 renamed: 0 deletions, so --max-delete 1 lets it through (rclone #8685)."""
    w = agreed({f"big/{i}": f"{i:032x}" for i in range(10)})
    mv_local(w, "big", "huge")
    p, _ = check_run(w, Options(mode=Mode.SYNC, max_delete=1))
    assert not p.guards and kinds(p) == {"huge": Kind.REMOTE_MOVE}


def test_renames_file_by_file_are_not_counted_either() -> None:
    w = agreed({f"f{i}": f"{i:032x}" for i in range(6)})
    for i in range(6):
        mv_local(w, f"f{i}", f"g{i}")
    p, _ = check_run(w, Options(mode=Mode.SYNC, max_delete_percent=10))
    assert not p.guards and set(kinds(p).values()) == {Kind.REMOTE_MOVE}


# --- guards --------------------------------------------------------------------------------


def test_empty_dest_deletes_nothing_on_the_server() -> None:
    w = world3()
    w.local.clear()
    p, after = check_run(w, SYNC)
    assert "local-empty" in p.guards and not p.of(Kind.REMOTE_DELETE, Kind.REMOTE_RMDIR)
    assert after.remote == w.remote


def test_empty_server_listing_deletes_nothing_here() -> None:
    w = world3()
    w.remote.clear()
    p, after = check_run(w, SYNC)
    assert "remote-empty" in p.guards and not p.of(Kind.DELETE, Kind.RMDIR)
    assert after.local == w.local


@pytest.mark.parametrize("side", ["local", "remote"])
def test_max_delete_holds_that_side(side: str) -> None:
    w = agreed({f"f{i}": f"{i:032x}" for i in range(10)})
    for i in range(6):
        (rm_local if side == "local" else rm_remote)(w, f"f{i}")
    add_remote(w, "new", A)
    p, _ = check_run(w, Options(mode=Mode.SYNC, max_delete_percent=50))
    assert (f"max-delete-{'remote' if side == 'local' else 'local'}") in p.guards
    assert not p.of(Kind.DELETE, Kind.REMOTE_DELETE) and p.of(Kind.DOWNLOAD)  # the rest goes on
    held = Kind.KEPT_ON_SERVER if side == "local" else Kind.KEPT_HERE
    assert len(p.of(held)) == 6 and "--max-delete 5" in p.of(held)[0].reason
    fine, _ = check_run(w, Options(mode=Mode.SYNC, max_delete=6))
    assert not fine.guards


def test_max_delete_percent_is_of_tracked_files() -> None:
    assert Options(max_delete_percent=50).delete_limit(10) == 5
    assert Options(max_delete=3, max_delete_percent=50).delete_limit(10) == 3
    assert parse_max_delete("50%") == (None, 50.0) and parse_max_delete("7") == (7, None)
    for bad in ("-1", "x", "150%"):
        with pytest.raises(ValueError, match="--max-delete takes"):
            parse_max_delete(bad)


def test_a_failed_listing_freezes_its_subtree_and_holds_every_deletion() -> None:
    w = agreed({"d/x": A, "d/y": B, "f": C, "g": D})
    edit_local(w, "d/x", B)  # would upload, but d is frozen
    rm_local(w, "f")  # would delete on the server, but a listing failed
    edit_remote(w, "g", A)  # unrelated: still updated
    p, _ = check_run(w, SYNC, failed_remote=frozenset({"d"}))
    assert "failed-listing" in p.guards and p.warnings
    assert kinds(p) == {"f": Kind.KEPT_ON_SERVER, "g": Kind.UPDATE}
    assert "could not be listed (on the server: d)" in p.warnings[0]  # which folder, and on which side


def test_the_failed_listing_warning_names_a_few_folders_and_each_side() -> None:
    from davsync.client.plan import failed_where

    assert failed_where({"Photos"}, ()) == "on this computer: Photos"
    many = failed_where({"", "b"}, {"s1", "s2", "s3", "s4", "s5"})
    assert many == "on this computer: /, b; on the server: s1, s2, s3 and 2 more"


def test_a_failed_local_folder_is_frozen_too() -> None:
    w = agreed({"d/x": A, "g": D})
    rm_remote(w, "d")
    p, _ = check_run(w, SYNC, failed_local=frozenset({"d"}))
    assert p.actions == []
    assert p.warnings == [
        "Some folders could not be listed (on this computer: d): they are left alone, and nothing is deleted this run."
    ]


def test_lost_journal_is_union_only() -> None:
    """No base: nothing is deleted anywhere; differences become conflict copies."""
    w = world3()
    edit_local(w, "f.txt", D)
    rm_local(w, "g.txt")
    rm_remote(w, "d/x.txt")
    w.base.clear()
    p, _ = check_run(w, Options(mode=Mode.SYNC, union=True))
    assert kinds(p) == {"f.txt": Kind.CONFLICT, "g.txt": Kind.DOWNLOAD, "d/x.txt": Kind.UPLOAD, "d": Kind.REFRESH}
    assert not p.of(Kind.DELETE, Kind.REMOTE_DELETE)


def test_changed_server_identity_is_union_only_even_with_a_journal() -> None:
    w = world3()
    rm_remote(w, "f.txt")
    edit_remote(w, "g.txt", D)
    p, _ = check_run(w, Options(mode=Mode.SYNC, union=True))
    assert kinds(p)["f.txt"] == Kind.UPLOAD and kinds(p)["g.txt"] == Kind.CONFLICT


def test_newly_excluded_paths_are_untouched_on_both_sides() -> None:
    w = world3()
    rm_local(w, "d")  # the user excluded d/ and removed it here: the server keeps it
    edit_remote(w, "g.txt", D)

    def excluded(path: str, is_dir: bool) -> bool:
        return path == "d"

    p, after = check_run(w, SYNC, excluded=excluded)
    assert kinds(p) == {"g.txt": Kind.UPDATE} and "d/x.txt" in after.base and "d/x.txt" in after.remote


# --- read-only accounts and push --------------------------------------------------------


def test_read_only_account_syncs_as_pull_and_reports_local_changes() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    add_local(w, "mine.txt", C)
    rm_local(w, "d/x.txt")
    edit_remote(w, "g.txt", D)
    p, after = check_run(w, Options(mode=Mode.SYNC, read_only=True))
    assert not any(a.remote_ops for a in p.actions)
    assert kinds(p) == {
        "f.txt": Kind.LOCAL_MODIFIED,
        "mine.txt": Kind.LOCAL_ONLY,
        "d/x.txt": Kind.DOWNLOAD,  # deleted here: restored from the server (issue 24, item 8)
        "g.txt": Kind.UPDATE,
    }
    assert after.local["f.txt"].md5 == D


def test_read_only_conflict_keeps_the_copy_here_only() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    edit_remote(w, "f.txt", B)
    p, after = check_run(w, Options(mode=Mode.SYNC, read_only=True))
    (a,) = p.actions
    assert a.kind == Kind.CONFLICT and not a.upload_copy and not a.remote_ops
    assert a.conflict_copy in after.local and a.conflict_copy not in after.remote


def test_push_uploads_local_changes() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    add_local(w, "n/new", C)
    p, _ = check_run(w, PUSH)
    assert kinds(p) == {"f.txt": Kind.UPLOAD_EDIT, "n": Kind.REMOTE_MKDIR, "n/new": Kind.UPLOAD}
    assert not any(a.local_ops for a in p.actions)


def test_push_never_overwrites_a_server_change() -> None:
    w = world3()
    edit_local(w, "f.txt", D)
    edit_remote(w, "f.txt", B)
    edit_remote(w, "g.txt", C)
    rm_local(w, "d/x.txt")
    edit_remote(w, "d/x.txt", A)
    p, after = check_run(w, PUSH_DELETE)
    assert set(kinds(p).values()) == {Kind.SERVER_CHANGED}
    assert after.remote["f.txt"].md5 == B and exit_code(p) == Exit.PARTIAL


def test_push_restores_a_file_deleted_on_the_server() -> None:
    w = world3()
    rm_remote(w, "d")
    p, _ = check_run(w, PUSH)
    assert kinds(p) == {"d": Kind.REMOTE_MKDIR, "d/x.txt": Kind.UPLOAD}


def test_push_deletions_are_opt_in() -> None:
    w = world3()
    rm_local(w, "f.txt")
    p, _ = check_run(w, PUSH)
    assert kinds(p) == {"f.txt": Kind.KEPT_ON_SERVER}
    p, _ = check_run(w, PUSH_DELETE)
    assert kinds(p) == {"f.txt": Kind.REMOTE_DELETE}


def test_push_leaves_server_only_files_and_reports_them_with_delete() -> None:
    w = world3()
    add_remote(w, "theirs", D)
    assert check_run(w, PUSH)[0].actions == []
    p, after = check_run(w, PUSH_DELETE)
    assert kinds(p) == {"theirs": Kind.SERVER_CHANGED} and "theirs" in after.remote


def test_push_moves_a_renamed_folder() -> None:
    w = agreed({"p/a": A, "p/b": B})
    mv_local(w, "p", "q")
    p, _ = check_run(w, PUSH_DELETE)
    assert kinds(p) == {"q": Kind.REMOTE_MOVE}


def test_push_blocks_a_file_against_a_folder() -> None:
    w = agreed({"g": B})
    add_local(w, "x/inside", A)
    add_remote(w, "x", C)
    p, _ = check_run(w, PUSH)
    assert kinds(p) == {"x": Kind.BLOCKED}


# --- snapshots that carry only changes -------------------------------------------------------


def test_changes_only_remote_view_plans_like_a_full_listing() -> None:
    w = agreed({"d/x": A, "d/y": B, "f": C, "keep/k": D})
    rm_remote(w, "d")
    edit_remote(w, "f", A)
    add_remote(w, "n/new", B)
    full = reconcile(w.base, w.local_view(), w.remote_view(), SYNC, now=NOW)
    changes = reconcile(w.base, w.local_view(), w.changes_view(), SYNC, now=NOW)
    assert [(a.kind, a.path) for a in full.actions] == [(a.kind, a.path) for a in changes.actions]


def test_changes_only_local_view() -> None:
    """A watcher reports only what it saw; everything else is as the base says."""
    w = world3()
    edit_local(w, "f.txt", D)
    view = LocalView({"f.txt": w.local["f.txt"], "gone.txt": None}, complete=False)
    p = reconcile(w.base, view, w.remote_view(), SYNC, now=NOW)
    assert kinds(p) == {"f.txt": Kind.UPLOAD_EDIT}


def test_incremental_removal_of_a_folder_reaches_the_rows_below() -> None:
    w = world3()
    view = RemoteView({}, complete=False, removed=frozenset({"d"}), looks_empty=False)
    p = reconcile(w.base, w.local_view(), view, SYNC, now=NOW)
    assert kinds(p) == {"d/x.txt": Kind.DELETE, "d": Kind.RMDIR}


def test_tracked_files_drive_the_percentage_for_partial_bases() -> None:
    w = world3()
    view = RemoteView({}, complete=False, removed=frozenset({"f.txt", "g.txt"}), looks_empty=False)
    base = {"f.txt": w.base["f.txt"], "g.txt": w.base["g.txt"]}
    local = LocalView({}, complete=False)
    held = reconcile(base, local, view, Options(mode=Mode.SYNC, max_delete_percent=50), now=NOW,
                     tracked_files=3)  # fmt: skip
    assert held.guards == ["max-delete-local"]
    ok = reconcile(base, local, view, Options(mode=Mode.SYNC, max_delete_percent=50), now=NOW,
                   tracked_files=1000)  # fmt: skip
    assert kinds(ok) == {"f.txt": Kind.DELETE, "g.txt": Kind.DELETE}


def test_one_tracked_file_deleted_is_not_a_mass_deletion() -> None:
    """A share (or journal) of one file may lose it: the percentage never forbids one file."""
    w = world3()
    view = RemoteView({}, complete=False, removed=frozenset({"f.txt"}), looks_empty=True)
    ok = reconcile({"f.txt": w.base["f.txt"]}, LocalView({}, complete=False), view,
                   Options(mode=Mode.SYNC, max_delete_percent=50), now=NOW, tracked_files=1)  # fmt: skip
    assert kinds(ok) == {"f.txt": Kind.DELETE} and not ok.guards


# --- explanations and exit codes -------------------------------------------------------------


def test_every_action_explains_itself() -> None:
    w = world3()
    mv_local(w, "f.txt", "h.txt")
    edit_remote(w, "g.txt", D)
    p = w.plan(SYNC)
    assert p.explain() == ["remote-move: f.txt -> h.txt: renamed here", "update: g.txt: changed on the server"]


def test_exit_codes_in_one_place() -> None:
    w = world3()
    quiet = w.plan(SYNC)
    assert exit_code(quiet) == Exit.OK and exit_code(quiet, status=True) == Exit.OK
    assert exit_code(quiet, errors=1) == Exit.PARTIAL
    assert exit_code(quiet, errors=1, ran=False) == Exit.PARTIAL
    edit_remote(w, "f.txt", D)
    busy = w.plan(SYNC)
    assert exit_code(busy, status=True) == Exit.OUT_OF_SYNC and exit_code(busy) == Exit.OK
    assert exit_code(busy, conflicts=1) == Exit.PARTIAL and exit_code(busy, skipped=2) == Exit.PARTIAL
    assert exit_code(busy, ran=False) == Exit.OK  # a dry run with work to do is not a failure
    edit_local(w, "f.txt", A + "x")
    conflicted = w.plan(SYNC)
    assert exit_code(conflicted, ran=False) == Exit.PARTIAL  # a dry run: the plan's conflicts count
    assert exit_code(conflicted) == Exit.OK  # a run: its results count (conflicts=, errors=)


def test_sync_needs_the_time_for_conflict_names() -> None:
    with pytest.raises(ValueError):
        reconcile({}, {}, {}, SYNC)


def test_journal_entries_are_complete_only_with_run_facts() -> None:
    w = world3()
    add_remote(w, "new", D)
    (a,) = w.plan(SYNC).actions
    placed = LocalEntry(False, 11, 5, 77, None)
    entry = a.entry_after(local=placed)
    assert entry == JournalEntry(False, 11, 5, 77, D, a.remote.etag, a.remote.size, a.remote.mtime, D)  # type: ignore[union-attr]


def test_a_watcher_reporting_only_a_removed_folder_reaches_the_files_in_it() -> None:
    w = world3()
    view = LocalView({"d": None}, complete=False)
    p = reconcile(w.base, view, w.remote_view(), SYNC, now=NOW)
    assert kinds(p) == {"d/x.txt": Kind.REMOTE_DELETE, "d": Kind.REMOTE_RMDIR}


def test_a_folder_renamed_here_while_a_file_inside_is_edited_on_the_server() -> None:
    """Issue 24 item 4: one folder MOVE on the server, then the server's edit at the new path
    (never the edit restored in a recreated old folder and the old content uploaded anew)."""
    w = agreed({"d/x.txt": A, "d/y.txt": B, "o.txt": C})
    mv_local(w, "d", "e")
    edit_remote(w, "d/x.txt", D)
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"e": Kind.REMOTE_MOVE, "e/x.txt": Kind.UPDATE, "d": Kind.REMOTE_RMDIR} or kinds(p) == {
        "e": Kind.REMOTE_MOVE, "e/x.txt": Kind.UPDATE}, p.explain()
    assert after.content_here("e/x.txt") == D and "d/x.txt" not in after.local and "d/x.txt" not in after.remote


def test_a_file_renamed_here_and_edited_on_the_server_alone_keeps_the_old_behaviour() -> None:
    w = agreed({"x.txt": A, "o.txt": C})
    mv_local(w, "x.txt", "z.txt")
    edit_remote(w, "x.txt", D)
    p, after = check_run(w, SYNC)
    assert kinds(p) == {"x.txt": Kind.DOWNLOAD, "z.txt": Kind.UPLOAD}, p.explain()
