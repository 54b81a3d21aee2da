"""What happens when...: the decision table, as data. Read this first.

Each side of a path is judged only against its own half of the base (the version both sides last
agreed on): it is *absent*, *same*, *modified*, *new* or *deleted* (or *renamed*). The planner
works out that situation and, where the rows need it, one more fact (`Also`: is the content the
same on both sides? is anything left inside a deleted folder?). This table gives the action, per
mode: `sync` (both ways), `pull` (mirror the server), `push` (the server follows this folder) and
a `sync` whose account is read-only. A cell that differs with `--delete` (pull and push, where
deletions are opt-in) says so. The guards below then hold deletions back when a run looks unsafe.

The README's "What happens when..." section is generated from this module (readme.py):
`python -m davsync.client.plan --markdown` rewrites it, and a test fails when they differ.
Every row has a stable id, and a test per id (tests/test_plan_table.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from .kinds import Kind, Mode

K = Kind


class Change(str, Enum):
    """One side of a path, against its own half of the base."""

    ABSENT = "absent"  # not there, and no base
    SAME = "same"
    MODIFIED = "modified"
    NEW = "new"  # there, and no base (of this type)
    DELETED = "deleted"
    RENAMED = "renamed"  # gone here, and the same content appeared at another path


class Also(str, Enum):
    """The one more fact some rows need."""

    ANY = ""
    EQUAL = "same content"  # both sides hold the same bytes (MD5, or size and mtime without one)
    DIFFERENT = "different content"
    UNCHANGED = "file unchanged"  # file against folder: the file is still the base
    CHANGED = "file new or changed"
    REFILLED = "refilled"  # a deleted folder: something inside will exist on the side that deleted it
    KEEPS = "keeps content"  # a deleted folder: something inside stays on the side that kept it
    EMPTY = "empty"  # a deleted folder: nothing inside stays anywhere
    FOLDER = "a folder, with a file inside"


@dataclass(frozen=True)
class Do:
    """One cell: the action (None: nothing to do) and the reason a run shows for it."""

    kind: Kind | None
    why: str = ""
    delete: Do | None = None  # with --delete (pull and push), when that differs


def do(kind: Kind | None, why: str = "", *, delete: Do | None = None) -> Do:
    return Do(kind, why, delete)


NOTHING = Do(None)
NEVER = Do(None, "never met in this mode")  # shown as n/a; the planner would do nothing


@dataclass(frozen=True)
class Row:
    id: str
    what: str  # "file", "folder", "file vs folder", "rename"
    here: Change
    there: Change
    also: Also
    sync: Do
    pull: Do
    push: Do
    read_only: Do  # sync with an account that cannot write


S, M, N, D, A, R = Change.SAME, Change.MODIFIED, Change.NEW, Change.DELETED, Change.ABSENT, Change.RENAMED
ANY, EQ, DIFF = Also.ANY, Also.EQUAL, Also.DIFFERENT
KEPT_NO_DELETE = do(K.KEPT_HERE, "deleted on the server; kept (use --delete to remove)")

# fmt: off
ROWS: tuple[Row, ...] = (
    # -- files -------------------------------------------------------------------------------
    Row("in-sync", "file", S, S, ANY,
        sync=do(K.REFRESH, "metadata changed, content same"),
        pull=do(K.REFRESH, "metadata changed, content same"),
        push=do(K.REFRESH, "metadata changed, content same"),
        read_only=do(K.REFRESH, "metadata changed, content same")),
    Row("edited-here", "file", M, S, DIFF,
        sync=do(K.UPLOAD_EDIT, "modified here"),
        pull=do(K.LOCAL_MODIFIED, "modified locally; the server's version is unchanged"),
        push=do(K.UPLOAD_EDIT, "modified here"),
        read_only=do(K.LOCAL_MODIFIED, "modified here; the account cannot upload: kept")),
    Row("edited-here-equal", "file", M, S, EQ,
        sync=do(K.UPLOAD_EDIT, "modified here"),
        pull=do(K.ADOPT, "local edit equals the remote"),
        push=do(K.UPLOAD_EDIT, "modified here"),
        read_only=do(K.LOCAL_MODIFIED, "modified here; the account cannot upload: kept")),
    Row("edited-there", "file", S, M, DIFF,
        sync=do(K.UPDATE, "changed on the server"),
        pull=do(K.UPDATE, "changed on the server"),
        push=do(K.SERVER_CHANGED, "changed on the server since the last push: not overwritten"),
        read_only=do(K.UPDATE, "changed on the server")),
    Row("edited-there-equal", "file", S, M, EQ,
        sync=do(K.REFRESH, "server metadata changed, content same"),
        pull=do(K.REFRESH, "remote metadata changed, content same"),
        push=do(K.SERVER_CHANGED, "changed on the server since the last push: not overwritten"),
        read_only=do(K.REFRESH, "server metadata changed, content same")),
    Row("edited-both", "file", M, M, DIFF,
        sync=do(K.CONFLICT, "changed on both sides, with different content"),
        pull=do(K.CONFLICT, "changed both locally and on the server"),
        push=do(K.SERVER_CHANGED, "changed on the server since the last push: not overwritten"),
        read_only=do(K.CONFLICT, "changed on both sides, with different content")),
    Row("edited-both-equal", "file", M, M, EQ,
        sync=do(K.ADOPT, "both sides hold the same content"),
        pull=do(K.ADOPT, "local edit equals the remote"),
        push=do(K.ADOPT, "both sides hold the same content"),
        read_only=do(K.ADOPT, "both sides hold the same content")),
    Row("new-both", "file", N, N, DIFF,
        sync=do(K.CONFLICT, "new on both sides, with different content"),
        pull=do(K.CONFLICT, "an unsynced local file differs from the remote"),
        push=do(K.SERVER_CHANGED, "changed on the server since the last push: not overwritten"),
        read_only=do(K.CONFLICT, "new on both sides, with different content")),
    Row("new-both-equal", "file", N, N, EQ,
        sync=do(K.ADOPT, "both sides hold the same content"),
        pull=do(K.ADOPT, "local file already has the remote content"),
        push=do(K.ADOPT, "both sides hold the same content"),
        read_only=do(K.ADOPT, "both sides hold the same content")),
    Row("deleted-here", "file", D, S, ANY,
        sync=do(K.REMOTE_DELETE, "deleted here"),
        pull=do(K.DOWNLOAD, "missing locally"),
        push=do(K.KEPT_ON_SERVER, "deleted here; kept on the server (use --delete)",
                delete=do(K.REMOTE_DELETE, "deleted here")),
        read_only=do(K.DOWNLOAD, "deleted here, but the account cannot delete on the server: restored")),
    Row("deleted-there", "file", S, D, ANY,
        sync=do(K.DELETE, "deleted on the server"),
        pull=do(K.KEPT_HERE, KEPT_NO_DELETE.why, delete=do(K.DELETE, "deleted on the server")),
        push=do(K.UPLOAD, "deleted on the server: uploaded again"),
        read_only=do(K.DELETE, "deleted on the server")),
    Row("edited-here-deleted-there", "file", M, D, ANY,
        sync=do(K.UPLOAD, "deleted on the server, but modified here: uploaded again"),
        pull=do(K.KEPT_HERE, "deleted on the server, but modified locally: kept"),
        push=do(K.UPLOAD, "deleted on the server: uploaded again"),
        read_only=do(K.KEPT_HERE, "deleted on the server, but modified here: kept")),
    Row("deleted-here-edited-there", "file", D, M, ANY,
        sync=do(K.DOWNLOAD, "deleted here, but changed on the server: restored"),
        pull=do(K.DOWNLOAD, "missing locally"),
        push=do(K.SERVER_CHANGED, "changed on the server since the last push: not overwritten"),
        read_only=do(K.DOWNLOAD, "deleted here, but changed on the server: restored")),
    Row("deleted-both", "file", D, D, ANY,
        sync=do(K.FORGET, "deleted on both sides"),
        pull=do(K.FORGET, "gone on both sides"),
        push=do(K.FORGET, "deleted on both sides"),
        read_only=do(K.FORGET, "deleted on both sides")),
    Row("new-here", "file", N, A, ANY,
        sync=do(K.UPLOAD, "new here"),
        pull=do(K.FORGET, "no longer the folder davsync made"),  # (pull looks only at paths it tracks)
        push=do(K.UPLOAD, "new here"),
        read_only=do(K.LOCAL_ONLY, "new here; the account cannot upload")),
    Row("new-there", "file", A, N, ANY,
        sync=do(K.DOWNLOAD, "new on the server"),
        pull=do(K.DOWNLOAD, "new"),
        push=do(None, delete=do(K.SERVER_CHANGED, "on the server only, never pushed from here: not deleted")),
        read_only=do(K.DOWNLOAD, "new on the server")),
    Row("forgotten", "file", A, A, ANY,  # (a row the union guard does not trust)
        sync=do(K.FORGET, "gone on both sides"),
        pull=NEVER,  # (pull always trusts what it placed)
        push=do(K.FORGET, "gone on both sides"),
        read_only=do(K.FORGET, "gone on both sides")),
    # -- a file against a folder: keep both (the local one takes a conflict name) ---------------
    Row("file-here-folder-there", "file vs folder", S, N, Also.UNCHANGED,
        sync=do(K.CONFLICT, "a file here, a folder on the server: both kept"),
        pull=do(K.CONFLICT, "the remote replaced this file with a folder"),
        push=do(K.BLOCKED, "a file on one side, a folder on the other: left alone"),
        read_only=do(K.CONFLICT, "a file here, a folder on the server: both kept")),
    Row("new-file-here-folder-there", "file vs folder", N, N, Also.CHANGED,
        sync=do(K.CONFLICT, "a file here, a folder on the server: both kept"),
        pull=do(K.CONFLICT, "a local file stands where the remote has a folder"),
        push=do(K.BLOCKED, "a file on one side, a folder on the other: left alone"),
        read_only=do(K.CONFLICT, "a file here, a folder on the server: both kept")),
    Row("folder-here-file-there", "folder vs file", N, N, ANY,
        sync=do(K.CONFLICT, "a folder here, a file on the server: both kept"),
        pull=do(K.BLOCKED, "a local folder stands where the remote has a file"),
        push=do(K.BLOCKED, "a file on one side, a folder on the other: left alone"),
        read_only=do(K.CONFLICT, "a folder here, a file on the server: both kept")),
    # -- folders (decided after their content) ---------------------------------------------------
    Row("folder-in-sync", "folder", S, S, ANY,
        sync=NOTHING, pull=NOTHING, push=NOTHING, read_only=NOTHING),
    Row("folder-new-both", "folder", N, N, ANY,
        sync=do(K.REFRESH, "a folder on both sides"),
        pull=do(K.REFRESH, "folder exists"),
        push=do(K.REFRESH, "a folder on both sides"),
        read_only=do(K.REFRESH, "a folder on both sides")),
    Row("folder-new-here", "folder", N, A, ANY,
        sync=do(K.REMOTE_MKDIR, "new here"),
        pull=NOTHING,
        push=do(K.REMOTE_MKDIR, "new here"),
        read_only=do(K.LOCAL_ONLY, "new here; the account cannot create folders")),
    Row("folder-new-there", "folder", A, N, ANY,
        sync=do(K.MKDIR, "new on the server"),
        pull=do(K.MKDIR, "new"),
        push=NOTHING,
        read_only=do(K.MKDIR, "new on the server")),
    Row("folder-deleted-there-refilled", "folder", S, D, Also.REFILLED,
        sync=do(K.REMOTE_MKDIR, "deleted on the server, but content inside changed here: made again"),
        pull=do(K.KEPT_HERE, KEPT_NO_DELETE.why, delete=do(K.RMDIR, "folder deleted on the server")),
        push=do(K.REMOTE_MKDIR, "deleted on the server: made again"),
        read_only=NEVER),  # (a read-only account puts nothing on the server)
    Row("folder-deleted-there-keeps", "folder", S, D, Also.KEEPS,
        sync=do(K.KEPT_HERE, "deleted on the server; kept: files inside stay here"),
        pull=do(K.KEPT_HERE, KEPT_NO_DELETE.why, delete=do(K.RMDIR, "folder deleted on the server")),
        push=do(K.REMOTE_MKDIR, "deleted on the server: made again"),
        read_only=do(K.KEPT_HERE, "deleted on the server; kept: files inside stay here")),
    Row("folder-deleted-there", "folder", S, D, Also.EMPTY,
        sync=do(K.RMDIR, "folder deleted on the server"),
        pull=do(K.KEPT_HERE, KEPT_NO_DELETE.why, delete=do(K.RMDIR, "folder deleted on the server")),
        push=do(K.REMOTE_MKDIR, "deleted on the server: made again"),
        read_only=do(K.RMDIR, "folder deleted on the server")),
    Row("folder-deleted-here-refilled", "folder", D, S, Also.REFILLED,
        sync=do(K.MKDIR, "deleted here, but content inside changed on the server: made again"),
        pull=do(K.MKDIR, "missing locally"),
        push=NEVER,  # (push never downloads)
        read_only=do(K.MKDIR, "deleted here, but content inside changed on the server: made again")),
    Row("folder-deleted-here-keeps", "folder", D, S, Also.KEEPS,
        sync=do(K.KEPT_ON_SERVER, "deleted here; kept: files inside stay on the server"),
        pull=do(K.MKDIR, "missing locally"),
        push=do(K.KEPT_ON_SERVER, "deleted here; kept: files inside stay on the server"),
        read_only=do(K.MKDIR, "deleted here, but the account cannot delete on the server: made again")),
    Row("folder-deleted-here", "folder", D, S, Also.EMPTY,
        sync=do(K.REMOTE_RMDIR, "folder deleted here"),
        pull=do(K.MKDIR, "missing locally"),
        push=do(K.KEPT_ON_SERVER, "deleted here; kept on the server (use --delete)",
                delete=do(K.REMOTE_RMDIR, "folder deleted here")),
        read_only=do(K.MKDIR, "deleted here, but the account cannot delete on the server: made again")),
    Row("folder-deleted-both", "folder", D, D, ANY,
        sync=do(K.FORGET, "gone on both sides"),
        pull=do(K.FORGET, "gone on both sides"),
        push=do(K.FORGET, "gone on both sides"),
        read_only=do(K.FORGET, "gone on both sides")),
    # -- renames (found before any guard counts deletions; never a delete + transfer) -----------
    Row("renamed-here", "rename", R, S, ANY,
        sync=do(K.REMOTE_MOVE, "renamed here"),
        pull=NOTHING,  # the old name comes back (deleted-here), the new one is not pull's
        push=do(K.UPLOAD, "new here", delete=do(K.REMOTE_MOVE, "renamed here")),
        read_only=do(K.LOCAL_ONLY, "new here; the account cannot upload")),
    Row("renamed-there", "rename", S, R, ANY,
        sync=do(K.LOCAL_MOVE, "renamed on the server"),
        pull=do(K.DOWNLOAD, "new"),
        push=do(None, delete=do(K.SERVER_CHANGED, "on the server only, never pushed from here: not deleted")),
        read_only=do(K.DOWNLOAD, "new on the server")),
    # (a single file renamed here while edited on the server stays two files: edited-there at
    # the old name, new-here at the new one; a folder moves, and the edit follows it)
    Row("folder-renamed-here-edited-there", "rename", R, M, Also.FOLDER,
        sync=do(K.REMOTE_MOVE, "renamed here (edited on the server)"),  # then the edit comes down
        pull=NOTHING,
        push=do(K.UPLOAD, "new here"),
        read_only=do(K.LOCAL_ONLY, "new here; the account cannot upload")),
)
# fmt: on


@dataclass(frozen=True)
class Guard:
    """A rule that holds deletions back (they become kept-here / kept-on-server reports)."""

    id: str
    holds: str  # whose deletions: "here" (local ones), "server", "both", or "all" (the base itself)
    modes: str
    reason: str  # said in the kept file's reason ("... kept: <reason>")
    when: str


GUARDS: tuple[Guard, ...] = (
    Guard("failed-listing", "both", "all", "a listing failed this run",
          "a folder could not be listed on either side (its subtree is frozen: nothing below it is judged)"),
    Guard("remote-empty", "here", "all", "the server's share looks empty",
          "the server lists an empty share while the journal tracks more than one file"),
    Guard("local-empty", "server", "sync, push", "the local folder is empty or missing",
          "the local folder is empty or missing while the journal tracks more than one file"),
    Guard("max-delete-local", "here", "all", "more than --max-delete {limit}",
          "more local files would go than --max-delete (N, or P% of the tracked files; at least 1)"),
    Guard("max-delete-remote", "server", "sync, push", "more than --max-delete {limit}",
          "more server files would go than --max-delete"),
    Guard("union", "all", "sync, push", "no shared history: nothing is deleted",
          "a lost journal or a changed server identity: the base is ignored, so every difference is new on "
          "both sides (a conflict copy, never a deletion)"),
    Guard("excluded", "all", "all", "excluded",
          "an excluded path (--exclude, .davsyncignore) is not judged at all: left alone on both sides"),
)  # fmt: skip

# What a deletion becomes when a guard holds it.
HELD: dict[Kind, Kind] = {K.DELETE: K.KEPT_HERE, K.RMDIR: K.KEPT_HERE,
                          K.REMOTE_DELETE: K.KEPT_ON_SERVER, K.REMOTE_RMDIR: K.KEPT_ON_SERVER}  # fmt: skip
LOCAL_DELETIONS = frozenset({K.DELETE, K.RMDIR})
REMOTE_DELETIONS = frozenset({K.REMOTE_DELETE, K.REMOTE_RMDIR})

_INDEX: dict[tuple[str, Change, Change, Also], Row] = {(r.what, r.here, r.there, r.also): r for r in ROWS}
ROW_BY_ID: dict[str, Row] = {r.id: r for r in ROWS}
GUARD_BY_ID: dict[str, Guard] = {g.id: g for g in GUARDS}


def row(what: str, here: Change, there: Change, also: Also = Also.ANY) -> Row:
    """The row for a situation; one without `also` in the table ignores it."""
    hit = _INDEX.get((what, here, there, also)) or _INDEX.get((what, here, there, Also.ANY))
    if hit is None:
        raise KeyError(f"no rule for a {what}: {here.value} here, {there.value} on the server, {also.value!r}")
    return hit


def cell(r: Row, mode: Mode, *, read_only: bool = False, delete: bool = False) -> Do:
    """The row's action in this mode (a read-only account turns sync into its own column)."""
    if mode == Mode.PULL:
        d = r.pull
    elif mode == Mode.PUSH:
        d = r.push
    else:
        d = r.read_only if read_only else r.sync
    return d.delete if delete and d.delete is not None else d


def decide(what: str, here: Change, there: Change, also: Also, mode: Mode, *, read_only: bool = False,
           delete: bool = False) -> Do:  # fmt: skip
    return cell(row(what, here, there, also), mode, read_only=read_only, delete=delete)


# What each action means (the README lists it under the table).
LEGEND: dict[Kind, str] = {
    K.REFRESH: "nothing moves; the journal notes new metadata",
    K.UPLOAD: "uploaded (`If-None-Match: *`)",
    K.UPLOAD_EDIT: "uploaded over the version judged (`If-Match`)",
    K.DOWNLOAD: "downloaded",
    K.UPDATE: "the server's version replaces the unchanged local one",
    K.ADOPT: "already equal: recorded, nothing transferred",
    K.CONFLICT: "both kept: the local one as NAME.sync-conflict-YYYYMMDD-HHMMSS.EXT (uploaded too in sync)",
    K.SERVER_CHANGED: "not overwritten; reported (exit 3)",
    K.LOCAL_MODIFIED: "left alone, reported",
    K.LOCAL_ONLY: "left alone, reported",
    K.DELETE: "moved to DEST/.davsync/trash/",
    K.RMDIR: "local folder removed once empty",
    K.REMOTE_DELETE: "deleted on the server with `If-Match` (the server keeps a version)",
    K.REMOTE_RMDIR: "deleted on the server once it lists the folder empty",
    K.KEPT_HERE: "deleted on the server, kept here, reported",
    K.KEPT_ON_SERVER: "deleted here, kept on the server, reported",
    K.FORGET: "the journal forgets the path",
    K.MKDIR: "folder made here",
    K.REMOTE_MKDIR: "folder made on the server (MKCOL)",
    K.BLOCKED: "left alone, reported",
    K.REMOTE_MOVE: "one MOVE on the server",
    K.LOCAL_MOVE: "one rename here",
}
