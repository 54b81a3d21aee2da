"""The planning core: base + local snapshot + remote snapshot + options -> a typed plan. No I/O.

Every rule that protects data (design.md, "Rules that protect data" and "Two-way sync") is
decided here, so it can be tested exhaustively. `pull`, `sync` and `push` share this one core.

The model
- **Base** (`JournalEntry`, one per path): the version both sides last agreed on, with each
  side's own view of it (local size, mtime_ns, file id, MD5; remote etag, MD5, size, mtime).
  Each side is compared only with its own half of the base: a local mtime is never compared
  with a server one. A side is *same*, *modified*, *new* or *deleted* relative to the base.
- **Snapshots** (`LocalView`, `RemoteView`): a complete listing (absent = gone), or only the
  changes (a sync-collection REPORT, a watcher's events) with every other path taken as
  unchanged, i.e. as the base says. A folder whose listing failed is *frozen*: nothing at or
  below it is judged, and no deletion happens anywhere in that run.
- **Decision** per path from (local status, remote status) and the mode:
  `pull` mirrors the server (today's behaviour, unchanged); `sync` carries changes both ways;
  `push` makes the server follow the local folder but never overwrites or deletes a server
  version it has not seen. Identical content is never a conflict. Modify beats delete, both
  ways. Both changed and different: the server's version keeps the name on both sides, the
  local one becomes NAME.sync-conflict-YYYYMMDD-HHMMSS.EXT and is uploaded too (sync). A file
  against a folder keeps both, the local one renamed.
- **Renames** (sync, push): a local path gone plus a new one with the same file id (or size
  and mtime), confirmed by MD5, is a server MOVE; a server delete plus add with the same MD5 is
  a local rename. A folder whose whole content moved the same way is one MOVE. Renames are
  found before the deletion guards count anything.
- **Guards**, decided before anything runs, turn deletions into reports ("held"): a failed
  listing (all deletions), an empty server listing while the base is not (local deletions),
  an empty or missing DEST while the base is not (server deletions), more than --max-delete
  (N or a percentage of tracked files) on a side (that side's deletions). A lost journal or a
  changed server identity is *union only*: the base is ignored (and dropped: `reset_journal`),
  so nothing is deleted and differences become conflict copies. Excluded paths are not judged at all (a newly excluded
  path is left alone on both sides, and so is its journal row).
- **Actions** say per side what changes (`local_ops`, `remote_ops`), why (`reason`), and what
  the journal records when they succeed (`journal`, `to_record`/`entry_after`, `extra`): a base
  is recorded only for a version present on both sides. They come in execution order: a file
  against a folder, folders and moves (shallow first), transfers, deletions, folder removals
  (deepest first), reports. `exit_code` turns a plan and its results into the
  process's exit status, in one place.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import Enum

from ...exitcodes import Exit
from . import table
from .kinds import Kind, Mode
from .table import Also, Change


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    path: str  # relative, NFC, '' is the root
    is_dir: bool
    size: int | None = None
    mtime: float | None = None  # unix seconds (from getlastmodified)
    etag: str | None = None
    md5: str | None = None
    href: str = ""  # how to ask the server for it


@dataclass(frozen=True, slots=True)
class LocalEntry:
    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    md5: str | None = None  # only filled when the stat differs from the journal, or for untracked files
    ctime_ns: int = 0  # osfs.change_time_ns: 0 where unknown (then the stat alone is not sure)


@dataclass(frozen=True, slots=True)
class JournalEntry:
    """The base: what both sides held when they last agreed (for pull: what davsync placed)."""

    is_dir: bool
    size: int = 0
    mtime_ns: int = 0
    ino: int = 0
    md5: str | None = None
    remote_etag: str | None = None
    remote_size: int | None = None
    remote_mtime: float | None = None
    remote_md5: str | None = None
    # The server's own spelling of the path when it differs from this NFC one (NFD names from a Mac).
    remote_name: str | None = None
    # Set while a placement is in flight: what was there before. If a crash stopped the
    # rename, the local file still matches this, and this is what the journal means.
    prev: JournalEntry | None = None
    # The file's ctime when recorded (0: unknown, a row from before davsync kept it): a silent
    # edit (same size, mtime restored) changes only this.
    ctime_ns: int = 0

    def matches_local(self, local: LocalEntry) -> bool:
        return (
            not local.is_dir
            and (self.size, self.mtime_ns, self.ino) == (local.size, local.mtime_ns, local.ino)
            and same_ctime(self.ctime_ns, local.ctime_ns)
        )


def same_ctime(a: int, b: int) -> bool:
    """Equal change times, where both are known (0 is unknown: a FAT volume, an old journal row)."""
    return a == b or not a or not b


def resolve_in_flight(journal: JournalEntry | None, local: LocalEntry | None) -> JournalEntry | None:
    """The journal entry that describes the local file, given a placement that may not have happened."""
    if journal is None or journal.prev is None:
        return journal
    if local is not None and not journal.matches_local(local) and journal.prev.matches_local(local):
        return journal.prev  # the crash came before the rename: the old file is still there
    return journal


def complete(entry: JournalEntry, local: LocalEntry | None = None, remote: RemoteEntry | None = None) -> JournalEntry:
    """A planned base with what only the run learns: the placed file's stat, the server's new etag."""
    if local is not None and not entry.is_dir:
        entry = replace(entry, size=local.size, mtime_ns=local.mtime_ns, ino=local.ino, md5=local.md5 or entry.md5,
                        ctime_ns=local.ctime_ns)  # fmt: skip
    if remote is not None and not entry.is_dir:
        entry = replace(
            entry,
            remote_etag=remote.etag,
            remote_size=remote.size,
            remote_mtime=remote.mtime,
            remote_md5=remote.md5 or entry.remote_md5,
        )
    return replace(entry, prev=None)



class LocalOp(str, Enum):
    MKDIR = "mkdir"
    WRITE = "write"  # place a downloaded version (temp + rename)
    SET_ASIDE = "set-aside"  # rename the local version to its conflict name
    RENAME = "rename"
    TRASH = "trash"
    RMDIR = "rmdir"


class RemoteOp(str, Enum):
    MKCOL = "mkcol"
    PUT_NEW = "put-new"  # If-None-Match: *
    PUT_EDIT = "put-edit"  # If-Match: base etag
    MOVE = "move"
    DELETE = "delete"  # If-Match: base etag
    DELETE_FOLDER = "delete-folder"


class JournalOp(str, Enum):
    KEEP = "keep"  # leave the row as it is
    PUT = "put"  # write `record` at the path
    DROP = "drop"  # remove the row at the path (a folder's rows below go with their own actions)


_LOCAL_OPS: dict[Kind, tuple[LocalOp, ...]] = {
    Kind.MKDIR: (LocalOp.MKDIR,),
    Kind.DOWNLOAD: (LocalOp.WRITE,),
    Kind.UPDATE: (LocalOp.WRITE,),
    Kind.DELETE: (LocalOp.TRASH,),
    Kind.RMDIR: (LocalOp.RMDIR,),
    Kind.LOCAL_MOVE: (LocalOp.RENAME,),
    Kind.RENAME: (LocalOp.RENAME,),
}
_REMOTE_OPS: dict[Kind, tuple[RemoteOp, ...]] = {
    Kind.UPLOAD: (RemoteOp.PUT_NEW,),
    Kind.UPLOAD_EDIT: (RemoteOp.PUT_EDIT,),
    Kind.REMOTE_MKDIR: (RemoteOp.MKCOL,),
    Kind.REMOTE_DELETE: (RemoteOp.DELETE,),
    Kind.REMOTE_RMDIR: (RemoteOp.DELETE_FOLDER,),
    Kind.REMOTE_MOVE: (RemoteOp.MOVE,),
}
_JOURNAL_OPS: dict[Kind, JournalOp] = {
    Kind.MKDIR: JournalOp.PUT,
    Kind.DOWNLOAD: JournalOp.PUT,
    Kind.UPDATE: JournalOp.PUT,
    Kind.CONFLICT: JournalOp.PUT,
    Kind.ADOPT: JournalOp.PUT,
    Kind.REFRESH: JournalOp.PUT,
    Kind.UPLOAD: JournalOp.PUT,
    Kind.UPLOAD_EDIT: JournalOp.PUT,
    Kind.REMOTE_MKDIR: JournalOp.PUT,
    Kind.REMOTE_MOVE: JournalOp.PUT,
    Kind.LOCAL_MOVE: JournalOp.PUT,
    Kind.DELETE: JournalOp.DROP,
    Kind.RMDIR: JournalOp.DROP,
    Kind.FORGET: JournalOp.DROP,
    Kind.REMOTE_DELETE: JournalOp.DROP,
    Kind.REMOTE_RMDIR: JournalOp.DROP,
}

TRANSFERS = {Kind.DOWNLOAD, Kind.UPDATE, Kind.CONFLICT}
UPLOADS = {Kind.UPLOAD, Kind.UPLOAD_EDIT}
# Kinds that leave the run needing a person's attention (exit 3), whatever else went well.
ATTENTION = {Kind.CONFLICT, Kind.BLOCKED, Kind.SERVER_CHANGED}


@dataclass(frozen=True, slots=True)
class Action:
    kind: Kind
    path: str
    remote: RemoteEntry | None = None  # the server's version judged (If-Match sends its etag)
    local: LocalEntry | None = None  # the local version judged (a change since means: plan again)
    reason: str = ""
    base: JournalEntry | None = None  # the base it was judged against
    src: str | None = None  # moves: where from
    conflict_copy: str | None = None  # conflicts (sync, push): the local version's new name
    upload_copy: bool = False  # conflicts (sync): the conflict copy is uploaded too
    record: JournalEntry | None = None  # the base at `path` once done (complete() adds run-time facts)
    extra: tuple[tuple[str, JournalEntry | None], ...] = ()  # other rows: a move's source (None: drop)
    guarded: bool = False  # a deletion a guard held back: only a complete listing may confirm it later

    @property
    def local_ops(self) -> tuple[LocalOp, ...]:
        """What changes in DEST, in order."""
        if self.kind == Kind.CONFLICT:
            if self.local is None:
                return (LocalOp.WRITE,)
            then = LocalOp.MKDIR if self.remote is not None and self.remote.is_dir else LocalOp.WRITE
            return (LocalOp.SET_ASIDE, then)
        return _LOCAL_OPS.get(self.kind, ())

    @property
    def remote_ops(self) -> tuple[RemoteOp, ...]:
        """What changes on the server, in order."""
        if self.kind == Kind.CONFLICT:
            return (RemoteOp.PUT_NEW,) if self.upload_copy else ()
        return _REMOTE_OPS.get(self.kind, ())

    @property
    def journal(self) -> JournalOp:
        return _JOURNAL_OPS.get(self.kind, JournalOp.KEEP)

    @property
    def changes_something(self) -> bool:
        return bool(self.local_ops or self.remote_ops)

    @property
    def to_record(self) -> JournalEntry | None:
        """The row to write at `path` once this succeeded (None unless `journal` is PUT).

        Two-way actions carry it in `record`; a pull's follows from what the action saw, and is
        built only when asked (a first pull of 100,000 files plans 100,000 downloads)."""
        if self.record is not None or self.journal != JournalOp.PUT:
            return self.record
        r, loc = self.remote, self.local
        if self.kind == Kind.MKDIR or r is None or r.is_dir:
            return JournalEntry(True)
        if self.kind in (Kind.ADOPT, Kind.REFRESH) and loc is not None:
            return _file_record(r, loc, loc.md5 or r.md5 or (self.base.md5 if self.base else None))
        return _file_record(r)

    def entry_after(self, local: LocalEntry | None = None, remote: RemoteEntry | None = None) -> JournalEntry | None:
        """The row to write at `path` once this succeeded, with the run's facts filled in."""
        entry = self.to_record
        return None if entry is None else complete(entry, local, remote)

    def explain(self) -> str:
        where = f"{self.src} -> {self.path}" if self.src else self.path
        copy = f" (local version kept as {self.conflict_copy})" if self.conflict_copy else ""
        return f"{self.kind.value}: {where}: {self.reason}{copy}"


@dataclass(frozen=True)
class Options:
    delete: bool = False  # pull and push: deletions are opt-in (sync always propagates them)
    max_delete: int | None = None  # refuse a side's deletions when more files than this would go
    max_delete_percent: float | None = None  # ... or more than this share of the tracked files
    mode: Mode = Mode.PULL
    read_only: bool = False  # the account cannot write: sync behaves as pull, local changes reported
    union: bool = False  # lost journal or changed server identity: ignore the base, delete nothing

    def delete_limit(self, tracked_files: int) -> int | None:
        limits = []
        if self.max_delete is not None:
            limits.append(self.max_delete)
        if self.max_delete_percent is not None:
            # One file is never a mass deletion: a share (or folder) of one file may lose it.
            limits.append(max(1, int(tracked_files * self.max_delete_percent / 100)))
        return min(limits) if limits else None


def parse_max_delete(text: str) -> tuple[int | None, float | None]:
    """`--max-delete` as given: "N" files or "P%" of the tracked files."""
    value = text.strip()
    try:
        if value.endswith("%"):
            percent = float(value[:-1])
            if not 0 <= percent <= 100:
                raise ValueError
            return None, percent
        count = int(value)
        if count < 0:
            raise ValueError
        return count, None
    except ValueError:
        raise ValueError(f"--max-delete takes a file count or a percentage such as 50%, not {text!r}.") from None


@dataclass(frozen=True)
class LocalView:
    """The local snapshot: a full walk, or only what changed (then the rest is as the base says)."""

    entries: Mapping[str, LocalEntry | None]
    complete: bool = True
    failed: frozenset[str] = frozenset()  # folders that could not be read: frozen


@dataclass(frozen=True)
class RemoteView:
    """The server's snapshot: a full listing, or the changes from a sync-collection REPORT."""

    entries: Mapping[str, RemoteEntry]
    complete: bool = True
    removed: frozenset[str] = frozenset()  # incremental: paths the server reports gone
    failed: frozenset[str] = frozenset()  # folders whose listing failed: frozen
    looks_empty: bool | None = None  # incremental: would the share be empty afterwards?


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    guards: list[str] = field(default_factory=list)  # names of the guards that tripped
    refused_deletions: int = 0  # deletions a guard refused: files left out of sync, reported as a problem
    # Union only: the old rows are not trusted. The executor drops them all before recording
    # this run's bases, so a later run does not judge against them.
    reset_journal: bool = False

    def of(self, *kinds: Kind) -> list[Action]:
        return [a for a in self.actions if a.kind in kinds]

    @property
    def in_sync(self) -> bool:
        return not any(a.kind not in (Kind.REFRESH, Kind.FORGET) for a in self.actions)

    @property
    def changes(self) -> list[Action]:
        """Actions that change a file or folder on either side."""
        return [a for a in self.actions if a.changes_something]

    @property
    def needs_attention(self) -> bool:
        return any(a.kind in ATTENTION for a in self.actions)

    def explain(self) -> list[str]:
        return [a.explain() for a in self.actions]


def exit_code(
    plan: Plan, *, errors: int = 0, conflicts: int = 0, skipped: int = 0, ran: bool = True, status: bool = False
) -> Exit:
    """The exit status of a run, a dry run (`ran=False`) or `status`, from its plan and results:
    the one place this is decided. Fatal errors (connection, local disk, usage) are decided where
    they are caught."""
    if status:
        return Exit.OK if plan.in_sync and not errors else Exit.OUT_OF_SYNC
    if errors or conflicts or skipped or plan.refused_deletions:
        return Exit.PARTIAL  # files left out of sync
    if plan.of(Kind.SERVER_CHANGED):
        return Exit.PARTIAL  # push kept a server version it had not seen
    if not ran and plan.of(Kind.CONFLICT, Kind.BLOCKED):
        return Exit.PARTIAL  # a dry run's conflicts and blocks are not yet results
    return Exit.OK


def remote_changed(journal: JournalEntry, remote: RemoteEntry) -> bool:
    """Has the remote file changed since the base? MD5 decides when both sides have one."""
    if journal.remote_md5 and remote.md5:
        return journal.remote_md5 != remote.md5
    if journal.remote_etag and remote.etag:
        return journal.remote_etag != remote.etag or journal.remote_size != remote.size
    return (journal.remote_size, journal.remote_mtime) != (remote.size, remote.mtime)


def same_content(local: LocalEntry, remote: RemoteEntry) -> bool:
    """Does an untracked or edited local file already hold the remote content?"""
    if local.is_dir:
        return False
    if local.md5 and remote.md5:
        return local.md5 == remote.md5
    # Without a server MD5, equal size and mtime (to the second) is the best evidence there is.
    return (
        remote.size == local.size
        and remote.mtime is not None
        and abs(remote.mtime - local.mtime_ns / 1e9) < 1.0
    )


def learns_ctime(j: JournalEntry, loc: LocalEntry) -> bool:
    """A row from before the journal kept ctime, for a file whose ctime is known: record it once."""
    return not j.ctime_ns and bool(loc.ctime_ns) and not loc.is_dir


def _local_unchanged(j: JournalEntry, loc: LocalEntry) -> bool:
    """A known local MD5 decides; otherwise an unchanged stat means unchanged content."""
    if loc.md5 is not None:
        return loc.md5 == j.md5
    return j.matches_local(loc)


def _under(path: str, folder: str) -> bool:
    return folder == "" or path == folder or path.startswith(folder + "/")


def _parents(path: str) -> Iterable[str]:
    while "/" in path:
        path = path.rsplit("/", 1)[0]
        yield path


def conflict_name(rel: str, now: datetime) -> str:
    """NAME.sync-conflict-YYYYMMDD-HHMMSS.EXT (Syncthing's convention)."""
    stamp = now.strftime("%Y%m%d-%H%M%S")
    folder, _, name = rel.rpartition("/")
    stem, dot, ext = name.rpartition(".")
    if not stem:  # no extension, or a dotfile like ".bashrc"
        stem, dot, ext = name, "", ""
    new = f"{stem}.sync-conflict-{stamp}{dot}{ext}"
    return f"{folder}/{new}" if folder else new


def _free_conflict_name(rel: str, now: datetime, taken: set[str]) -> str:
    """A conflict name no path on either side uses (numbered like keep_as_conflict does)."""
    base = conflict_name(rel, now)
    candidate, n = base, 1
    while candidate in taken:
        n += 1
        stem, dot, ext = base.rpartition(".")
        candidate = f"{stem}-{n}.{ext}" if dot and "/" not in ext else f"{base}-{n}"
    taken.add(candidate)
    return candidate


# --- the entry point -------------------------------------------------------------------


def reconcile(
    base: Mapping[str, JournalEntry],
    local: LocalView | Mapping[str, LocalEntry | None],
    remote: RemoteView | Mapping[str, RemoteEntry],
    options: Options = Options(),
    *,
    now: datetime | None = None,
    excluded: Callable[[str, bool], bool] | None = None,
    tracked_files: int | None = None,
) -> Plan:
    """Decide one run of pull, sync or push.

    base: the journal rows for every path in question (all of them for complete views; for
        incremental views at least the changed paths and the rows below removed folders).
    now: names conflict copies (required by sync and push).
    excluded: paths not to judge at all (their journal rows stay as they are). The views should
        still hold them: a folder whose only content is excluded must not look empty.
    tracked_files: files in the whole journal, when `base` holds only part of it (for
        --max-delete percentages and the empty-side guards).
    """
    lv = local if isinstance(local, LocalView) else LocalView(local)
    rv = remote if isinstance(remote, RemoteView) else RemoteView(remote)
    if options.mode == Mode.PULL:
        return _plan_pull(base, lv, rv, options, tracked_files)
    if now is None:
        raise ValueError("sync and push need the time to name conflict copies")
    return _TwoWay(base, lv, rv, options, now, excluded, tracked_files).plan()


def plan(
    remote: dict[str, RemoteEntry],
    local: dict[str, LocalEntry | None],
    journal: dict[str, JournalEntry],
    *,
    failed_folders: frozenset[str] | set[str] = frozenset(),
    options: Options = Options(),
    remote_looks_empty: bool | None = None,
) -> Plan:
    """Decide what a pull does (the core in pull mode, with pull's own argument order).

    remote: every path listed (below folders that listed successfully), or for an incremental
        pull only the changed ones, with `journal` holding just the rows in question.
    local: the stat of every path in remote or journal (None when absent).
    failed_folders: folders whose listing failed; nothing below them is judged.
    remote_looks_empty: for an incremental plan, whether the share would be empty afterwards;
        computed from `remote` when None.
    """
    view = RemoteView(remote, failed=frozenset(failed_folders), looks_empty=remote_looks_empty)
    return reconcile(journal, LocalView(local), view, replace(options, mode=Mode.PULL))


# --- pull: the mirror, exactly as it always behaved -----------------------------------------


def _file_record(r: RemoteEntry, loc: LocalEntry | None = None, md5: str | None = None) -> JournalEntry:
    """The base after a download (local stat filled in by complete()) or an adoption (stat known)."""
    if loc is None:
        return JournalEntry(False, r.size or 0, 0, 0, r.md5, r.etag, r.size, r.mtime, r.md5)
    return JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, r.etag, r.size, r.mtime, r.md5,
                        ctime_ns=loc.ctime_ns)  # fmt: skip


def _plan_pull(
    journal: Mapping[str, JournalEntry], lv: LocalView, rv: RemoteView, options: Options, tracked: int | None = None
) -> Plan:
    remote, failed_folders = rv.entries, rv.failed
    result = Plan()
    deletions: list[Action] = []
    paths = sorted(set(remote) | set(journal))
    for path in paths:
        if path == "":
            continue
        r, j, loc = remote.get(path), journal.get(path), lv.entries.get(path)
        if r is None and any(_under(path, f) for f in failed_folders):
            continue  # unknown: its folder did not list
        action = _decide_pull(path, r, j, loc, options.delete)
        if action is None:
            continue
        if action.kind in (Kind.DELETE, Kind.RMDIR):
            deletions.append(action)
        else:
            result.actions.append(action)

    remote_looks_empty = rv.looks_empty
    if remote_looks_empty is None:
        remote_looks_empty = not any(p for p in remote if p != "")
    if tracked is None:
        tracked = sum(1 for j in journal.values() if not j.is_dir)
    guarded = _guard_pull_deletions(deletions, remote_looks_empty, tracked, failed_folders, options, result)
    result.refused_deletions = sum(1 for a in guarded if a.reason.startswith("deletion refused"))
    result.actions += guarded
    return result


def _pulled(
    j: JournalEntry | None,
    kind: Kind,
    path: str,
    r: RemoteEntry | None,
    loc: LocalEntry | None = None,
    reason: str = "",
) -> Action:
    """A pull's action, with the base it was judged against (its record is derived when asked)."""
    return Action(kind, path, r, loc, reason, j)


def _decide_pull(path: str, r: RemoteEntry | None, j: JournalEntry | None, loc: LocalEntry | None,
                 delete: bool = False) -> Action | None:  # fmt: skip
    """Work out the situation (table.py's terms) and let the table decide."""
    situation = _pull_situation(r, j, loc)
    if situation is None:
        return None
    d = table.decide(*situation, Mode.PULL, delete=delete)
    if d.kind is None:
        return None
    return _pulled(j, d.kind, path, r, loc, d.why)


def _pull_situation(
    r: RemoteEntry | None, j: JournalEntry | None, loc: LocalEntry | None
) -> tuple[str, Change, Change, Also] | None:
    """pull's view of a path: the server's side, and what davsync last placed here (the base)."""
    A, S, M, N, D = Change.ABSENT, Change.SAME, Change.MODIFIED, Change.NEW, Change.DELETED
    if r is not None and r.is_dir:
        if loc is None:
            return ("folder", A, N, Also.ANY) if j is None else ("folder", D, S, Also.EMPTY)
        if not loc.is_dir:
            if j is not None and j.matches_local(loc):
                return "file vs folder", S, N, Also.UNCHANGED
            return "file vs folder", N, N, Also.CHANGED
        return ("folder", N, N, Also.ANY) if j is None or not j.is_dir else ("folder", S, S, Also.ANY)
    if r is not None:  # a remote file
        if loc is not None and loc.is_dir:
            return "folder vs file", N, N, Also.ANY
        if loc is None:
            return ("file", A, N, Also.ANY) if j is None else ("file", D, S, Also.ANY)
        if j is None or j.is_dir:
            return "file", N, N, Also.EQUAL if same_content(loc, r) else Also.DIFFERENT
        changed = remote_changed(j, r)
        if _local_unchanged(j, loc):
            if changed:
                equal = loc.md5 is not None and r.md5 is not None and loc.md5 == r.md5
                return "file", S, M, Also.EQUAL if equal else Also.DIFFERENT
            if not j.matches_local(loc) or j.remote_etag != r.etag or learns_ctime(j, loc):
                return "file", S, S, Also.ANY  # a refresh: metadata changed, content same
            return None
        equal = same_content(loc, r) and (loc.md5 is not None or not changed)
        return "file", M, M if changed else S, Also.EQUAL if equal else Also.DIFFERENT
    assert j is not None  # gone from the server
    if loc is None:
        return "folder" if j.is_dir else "file", D, D, Also.ANY
    if j.is_dir:
        return ("folder", S, D, Also.EMPTY) if loc.is_dir else ("file", N, A, Also.ANY)
    return "file", S if _local_unchanged(j, loc) else M, D, Also.ANY


def failed_where(here: Iterable[str], there: Iterable[str], limit: int = 3) -> str:
    """Which folders failed to list, and on which side (`on this computer: Photos; on the server: a, b, c
    and 2 more`): a warning that names none leaves the user nothing to check."""

    def few(folders: Iterable[str]) -> str:
        names = sorted(f or "/" for f in folders)  # "" is the top folder itself
        shown = ", ".join(names[:limit])
        return f"{shown} and {len(names) - limit} more" if len(names) > limit else shown

    sides = (("on this computer", here), ("on the server", there))
    return "; ".join(f"{side}: {few(folders)}" for side, folders in sides if folders)


def _guard_pull_deletions(
    deletions: list[Action],
    remote_empty: bool,
    tracked: int,
    failed_folders: frozenset[str],
    options: Options,
    plan: Plan,
) -> list[Action]:
    """Turn deletions into kept files unless every guard allows them (design.md rule 4)."""
    files = [a for a in deletions if a.kind == Kind.DELETE]

    def keep(guard: str, limit: int | None = None) -> list[Action]:
        # A held deletion is kept like a file deleted on the server without --delete (reported,
        # remembered, judged again next run). A refusal is counted (refused_deletions) by the
        # caller; a failed listing is reported by its own warning.
        plan.guards.append(guard)
        verb = "skipped" if guard == "failed-listing" else "refused"
        reason = f"deletion {verb}: " + table.GUARD_BY_ID[guard].reason.format(limit=limit)
        return [replace(a, kind=table.HELD[a.kind], reason=reason, record=None, guarded=True) for a in deletions]

    if not deletions:
        return []
    if failed_folders:
        plan.warnings.append(
            f"Deletions skipped: some folders could not be listed this run ({failed_where((), failed_folders)})."
        )
        return keep("failed-listing")
    if remote_empty and tracked > 1:  # (one file gone is that file's deletion, not a share gone)
        plan.warnings.append(
            "Deletions refused: the server lists an empty share while the mirror is not empty "
            "(an unmounted disk on the server?)."
        )
        return keep("remote-empty")
    limit = options.delete_limit(tracked)
    if limit is not None and len(files) > limit:
        plan.warnings.append(f"Deletions refused: {len(files)} files would go, more than --max-delete {limit}.")
        return keep("max-delete-local", limit)
    # Remove deeper folders first so parents can empty out.
    dirs = sorted((a for a in deletions if a.kind == Kind.RMDIR), key=lambda a: -a.path.count("/"))
    return files + dirs


# --- sync and push ---------------------------------------------------------------------------


_LOCAL_DELETIONS = table.LOCAL_DELETIONS
_REMOTE_DELETIONS = table.REMOTE_DELETIONS
# Where each kind leaves its path: (exists locally, exists on the server) afterwards.
# Kinds not listed leave both sides as they are.
_PRESENCE: dict[Kind, tuple[bool, bool]] = {
    **{k: (True, True) for k in _JOURNAL_OPS if _JOURNAL_OPS[k] == JournalOp.PUT},
    **{k: (False, False) for k in _JOURNAL_OPS if _JOURNAL_OPS[k] == JournalOp.DROP},
}
_MISSING = object()


class _TwoWay:
    """One sync or push plan; lives for one call of reconcile()."""

    def __init__(
        self,
        base: Mapping[str, JournalEntry],
        lv: LocalView,
        rv: RemoteView,
        options: Options,
        now: datetime,
        excluded: Callable[[str, bool], bool] | None,
        tracked_files: int | None,
    ) -> None:
        self.raw_base = base
        self.base: Mapping[str, JournalEntry] = {} if options.union else base
        self.lv, self.rv, self.options, self.now = lv, rv, options, now
        self.excluded = excluded
        self.push = options.mode == Mode.PUSH
        self.ro = options.read_only and not self.push
        self.tracked = tracked_files if tracked_files is not None else sum(1 for j in base.values() if not j.is_dir)
        self.result = Plan(reset_journal=options.union)
        self.actions: dict[str, Action] = {}
        self.set_aside: dict[str, str] = {}  # local folder -> its conflict name
        self._local_cache: dict[str, LocalEntry | None] = {}
        self.blocked: set[str] = set()  # push: a file against a folder; nothing below is judged
        self.taken: set[str] = set(base) | set(lv.entries) | set(rv.entries)
        self.children: dict[str, set[str]] = {}  # built when a folder decision first needs it
        self.everything: set[str] = set()
        self.sources: set[str] = set()  # paths that moved away (renames)
        # Files renamed here (with their folder) while edited on the server: new path -> (the two
        # actions they replace, the server's edited version); see _moved_while_edited.
        self.edited_moves: dict[str, tuple[Action, Action, RemoteEntry]] = {}
        self.followups: list[Action] = []  # downloads after a folder MOVE (a path's second action)
        # Per-folder answers that every path below a folder would otherwise recompute.
        self._gone_memo: tuple[dict[str, bool], dict[str, bool]] = ({}, {})  # (local, remote)
        self._excluded_dirs: dict[str, bool] = {}

    # -- the two snapshots, resolved per path --

    def local(self, path: str) -> LocalEntry | None:
        hit = self._local_cache.get(path, _MISSING)
        if hit is not _MISSING:
            return hit  # type: ignore[return-value]
        found = self._local_view(path)
        for folder, copy in self.set_aside.items():
            if _under(path, folder):
                found = None  # set aside under its conflict name
            elif _under(path, copy):
                found = self._local_view(folder + path[len(copy) :])
        self._local_cache[path] = found
        return found

    def _local_view(self, path: str) -> LocalEntry | None:
        j = self.raw_base.get(path)
        if path in self.lv.entries:
            e = self.lv.entries[path]
            if e is not None and e.md5 is None and j is not None and j.md5 and j.matches_local(e):
                return replace(e, md5=j.md5)  # an unchanged stat: the journal knows
            return e
        if self.lv.complete or j is None or self._gone_above(path, here=True):
            return None
        return LocalEntry(True) if j.is_dir else LocalEntry(False, j.size, j.mtime_ns, j.ino, j.md5, j.ctime_ns)

    def remote(self, path: str) -> RemoteEntry | None:
        if path in self.rv.entries:
            return self.rv.entries[path]
        if self.rv.complete:
            return None
        j = self.raw_base.get(path)
        if path in self.rv.removed or j is None:
            return None
        if self._gone_above(path, here=False):
            return None
        if j.is_dir:
            return RemoteEntry(path, True)
        return RemoteEntry(path, False, j.remote_size, j.remote_mtime, j.remote_etag, j.remote_md5)

    def _gone_above(self, path: str, *, here: bool) -> bool:
        """In a changes-only view: is a folder above this path removed, or now a file? (per folder)"""
        folder = path.rpartition("/")[0]
        if not folder:
            return False
        memo = self._gone_memo[0 if here else 1]
        hit = memo.get(folder)
        if hit is None:
            if here:
                hit = _gone_above(path, self.lv.entries, frozenset())
            else:
                hit = _gone_above(path, self.rv.entries, self.rv.removed)
            memo[folder] = hit
        return hit

    def _frozen(self, path: str) -> bool:
        if not (self.rv.failed or self.lv.failed or self.blocked):
            return False
        return any(_under(path, f) for f in self.rv.failed | self.lv.failed | self.blocked)

    def _is_excluded(self, path: str) -> bool:
        if self.excluded is None:
            return False
        entries = (self.lv.entries.get(path), self.rv.entries.get(path), self.raw_base.get(path))
        is_dir = any(e is not None and e.is_dir for e in entries)
        if self.excluded(path, is_dir):
            return True
        folder = path.rpartition("/")[0]
        return bool(folder) and self._folder_excluded(folder)

    def _folder_excluded(self, folder: str) -> bool:
        """Is this folder, or one above it, excluded? (asked once per folder)"""
        hit = self._excluded_dirs.get(folder)
        if hit is None:
            assert self.excluded is not None
            parent = folder.rpartition("/")[0]
            hit = self.excluded(folder, True) or (bool(parent) and self._folder_excluded(parent))
            self._excluded_dirs[folder] = hit
        return hit

    # -- the run --

    def plan(self) -> Plan:
        candidates = set(self.raw_base) | set(self.lv.entries) | set(self.rv.entries)
        candidates.discard("")
        judged = {p for p in candidates if not self._frozen(p) and not self._is_excluded(p)}
        if self.rv.failed or self.lv.failed:
            self.result.warnings.append(
                f"Some folders could not be listed ({failed_where(self.lv.failed, self.rv.failed)}): they are "
                "left alone, and nothing is deleted this run."
            )
        self._type_clashes(sorted(judged))
        judged = {p for p in judged if not self._frozen(p)} | self._set_aside_paths()
        self.everything = candidates | judged
        folders = []
        for path in sorted(judged):
            if path in self.actions or self._untouched(path):
                continue
            loc, r = self.local(path), self.remote(path)
            if (loc is not None and loc.is_dir) or (r is not None and r.is_dir):
                folders.append(path)
            else:
                self._add(self._decide_file(path))
        if not self.options.union:  # (no base: nothing to rename from)
            if self._renames("folder-renamed-here-edited-there") == Kind.REMOTE_MOVE:
                self._moved_while_edited()
            self._find_renames()
        for path in sorted(folders, key=lambda p: (-p.count("/"), p)):
            self._add(self._decide_folder(path))
        if not self.ro and not self.options.union:
            self._collapse_folder_moves()
            self._settle_edited_moves()
        self._guard()
        self.result.actions = sorted([*self.actions.values(), *self.followups], key=_order)
        return self.result

    def _untouched(self, path: str) -> bool:
        """The common case, answered from the views alone: a file unchanged on both sides."""
        j = self.base.get(path)
        if j is None or j.is_dir or j.prev is not None or self.set_aside:
            return False
        e, r = self.lv.entries.get(path), self.rv.entries.get(path)
        if e is None or not j.matches_local(e) or (e.md5 is not None and e.md5 != j.md5) or learns_ctime(j, e):
            return False
        if r is None:
            # A changes-only listing that does not name it: unchanged on the server since the
            # token, unless it or a folder above it was removed there.
            return not self.rv.complete and path not in self.rv.removed and not self._gone_above(path, here=False)
        return not r.is_dir and (j.remote_etag, j.remote_size, j.remote_mtime, j.remote_md5) == (
            r.etag, r.size, r.mtime, r.md5,
        )  # fmt: skip

    def _add(self, action: Action | None) -> None:
        if action is not None:
            self.actions[action.path] = action

    def _act(self, kind: Kind, path: str, reason: str, **kw: object) -> Action:
        fields: dict[str, object] = {
            "remote": self.remote(path),
            "local": self.local(path),
            "base": self.base.get(path),
        }
        fields.update(kw)
        return Action(kind, path, reason=reason, **fields)  # type: ignore[arg-type]

    # -- statuses --

    def _status(self, path: str, want_dir: bool, here: bool) -> Change:
        entry: LocalEntry | RemoteEntry | None = self.local(path) if here else self.remote(path)
        j = self.base.get(path)
        if j is not None and j.is_dir != want_dir:
            j = None  # the base was the other type: this one is new
        if entry is None:
            return Change.ABSENT if j is None else Change.DELETED
        if j is None:
            return Change.NEW
        if want_dir:
            return Change.SAME
        if isinstance(entry, LocalEntry):
            return Change.SAME if _local_unchanged(j, entry) else Change.MODIFIED
        return Change.MODIFIED if remote_changed(j, entry) else Change.SAME

    # -- records --

    def _local_md5(self, path: str) -> str | None:
        loc = self.local(path)
        return loc.md5 if loc is not None else None

    def _upload_record(self, path: str) -> JournalEntry:
        """The base after an upload; complete() adds the etag the server gives the new version."""
        loc = self.local(path)
        assert loc is not None
        md5 = self._local_md5(path)
        return JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, None, loc.size, loc.mtime_ns / 1e9, md5,
                            ctime_ns=loc.ctime_ns)  # fmt: skip

    def _both_record(self, path: str) -> JournalEntry:
        loc, r, j = self.local(path), self.remote(path), self.base.get(path)
        assert loc is not None and r is not None
        return _file_record(r, loc, loc.md5 or r.md5 or (j.md5 if j is not None else None))

    # -- files --

    def _decide_file(self, path: str) -> Action | None:
        """Work out the situation (table.py's terms) and let the table decide."""
        ls, rs = self._status(path, False, True), self._status(path, False, False)
        if ls == Change.ABSENT and rs == Change.ABSENT:
            j = self.raw_base.get(path)
            if j is None:
                return None
            if j.is_dir and j is self.base.get(path):  # a folder gone on both sides
                return self._do(path, self._decide("folder", Change.DELETED, Change.DELETED))
        return self._do(path, self._decide("file", ls, rs, self._equal(path, ls, rs)))

    def _decide(self, what: str, ls: Change, rs: Change, also: Also = Also.ANY) -> table.Do:
        return table.decide(what, ls, rs, also, self.options.mode, read_only=self.ro, delete=self.options.delete)

    def _equal(self, path: str, ls: Change, rs: Change) -> Also:
        """Do both sides hold the same content? The evidence each mode asks for (MD5s, or for new
        files in sync the size and mtime); only the rows that split on it read the answer."""
        loc, r = self.local(path), self.remote(path)
        if loc is None or r is None:
            return Also.ANY
        md5s = loc.md5 is not None and r.md5 is not None
        if self.push or ls == Change.SAME:
            equal = md5s and loc.md5 == r.md5
        else:
            equal = same_content(loc, r) and (md5s or ls == Change.NEW)
        return Also.EQUAL if equal else Also.DIFFERENT

    def _do(self, path: str, d: table.Do) -> Action | None:
        """The table's cell as an action at this path, with the base it records once done."""
        kind, why = d.kind, d.why
        if kind is None:
            return None
        if self.options.union and not self.push and kind in (Kind.CONFLICT, Kind.UPLOAD, Kind.DOWNLOAD):
            why += f" ({table.GUARD_BY_ID['union'].reason})"
        r = self.remote(path)
        if kind == Kind.REFRESH and r is not None and r.is_dir:
            return self._act(kind, path, why, record=JournalEntry(True))  # a folder the base did not know
        if kind == Kind.REFRESH:
            return self._refresh(path, why)
        if kind == Kind.CONFLICT:
            return self._conflict(path, why)
        if kind in (Kind.UPLOAD, Kind.UPLOAD_EDIT):
            return self._act(kind, path, why, record=self._upload_record(path))
        if kind in (Kind.DOWNLOAD, Kind.UPDATE) and r is not None:
            return self._act(kind, path, why, record=_file_record(r))
        if kind == Kind.ADOPT:
            return self._act(kind, path, why, record=self._both_record(path))
        if kind in (Kind.MKDIR, Kind.REMOTE_MKDIR):
            return self._act(kind, path, why, record=JournalEntry(True))
        return self._act(kind, path, why)

    def _refresh(self, path: str, why: str) -> Action | None:
        j, loc, r = self.base[path], self.local(path), self.remote(path)
        assert loc is not None and r is not None
        if (
            j.prev is None
            and j.matches_local(loc)
            and not learns_ctime(j, loc)
            and (j.remote_etag, j.remote_size, j.remote_mtime, j.remote_md5) == (r.etag, r.size, r.mtime, r.md5)
            and (loc.md5 or r.md5 or j.md5) == j.md5
        ):
            return None  # the common case, checked without building a record
        return self._act(Kind.REFRESH, path, why, record=self._both_record(path))

    def _conflict(self, path: str, reason: str) -> Action:
        """The server's version keeps the name on both sides; the local one is set aside (and uploaded)."""
        loc, r = self.local(path), self.remote(path)
        assert loc is not None and r is not None
        copy = _free_conflict_name(path, self.now, self.taken)
        upload = not self.ro and not loc.is_dir
        extra: tuple[tuple[str, JournalEntry | None], ...] = ()
        if upload:
            md5 = self._local_md5(path)
            extra = ((copy, JournalEntry(False, loc.size, loc.mtime_ns, loc.ino, md5, None, loc.size,
                                         loc.mtime_ns / 1e9, md5, ctime_ns=loc.ctime_ns)),)  # fmt: skip
        record = JournalEntry(True) if r.is_dir else _file_record(r)
        return self._act(
            Kind.CONFLICT, path, reason, conflict_copy=copy, upload_copy=upload, record=record, extra=extra
        )

    # -- a file against a folder --

    def _type_clashes(self, paths: list[str]) -> None:
        """A file against a folder (table.py's "file vs folder" rows): keep both, the local one
        under a conflict name (a folder with all its content), or block the path and all below it."""
        for path in paths:
            e, r0 = self.lv.entries.get(path), self.rv.entries.get(path)
            if e is not None and not self.set_aside:
                if r0 is not None and e.is_dir == r0.is_dir:
                    continue  # the common case, without resolving the views
                if r0 is None and not self.rv.complete:
                    j = self.raw_base.get(path)
                    if j is None or j.is_dir == e.is_dir:
                        continue  # not in the changes: the server holds the base's type, or nothing
            loc, r = self.local(path), self.remote(path)
            if loc is None or r is None or loc.is_dir == r.is_dir:
                continue
            if any(_under(path, f) for f in self.set_aside):
                continue
            if loc.is_dir:
                situation = ("folder vs file", Change.NEW, Change.NEW, Also.ANY)
            else:
                j = self.base.get(path)
                unchanged = j is not None and not j.is_dir and j.matches_local(loc)
                situation = ("file vs folder", Change.SAME, Change.NEW, Also.UNCHANGED) if unchanged else (
                    "file vs folder", Change.NEW, Change.NEW, Also.CHANGED)  # fmt: skip
            action = self._do(path, self._decide(*situation))
            self._add(action)
            if action is not None and action.kind == Kind.BLOCKED:
                self.blocked.add(path)  # nothing below it is judged
            elif action is not None and loc.is_dir:
                assert action.conflict_copy is not None
                self.set_aside[path] = action.conflict_copy
                self._local_cache.clear()

    def _set_aside_paths(self) -> set[str]:
        out = set()
        for folder, copy in self.set_aside.items():
            out.add(copy)
            out.update(copy + p[len(folder) :] for p in self.lv.entries if p.startswith(folder + "/"))
            if not self.lv.complete:
                out.update(copy + p[len(folder) :] for p in self.raw_base if p.startswith(folder + "/"))
        return {p for p in out if not self._is_excluded(p) and self.local(p) is not None}

    # -- folders --

    def _presence(self, path: str) -> tuple[bool, bool]:
        """Will this path exist afterwards, locally and on the server?"""
        a = self.actions.get(path)
        if a is not None:
            return _PRESENCE.get(a.kind, (a.local is not None, a.remote is not None))
        if path in self.sources:
            return False, False
        if self._frozen(path) or self._is_excluded(path):
            return self._local_view(path) is not None, self.remote(path) is not None
        return self.local(path) is not None, self.remote(path) is not None

    def _stays(self, folder: str) -> tuple[bool, bool]:
        """Will anything inside this folder exist afterwards, locally and on the server?"""
        if not self.children:
            for p in self.everything:
                self.children.setdefault(p.rpartition("/")[0], set()).add(p)
        here = there = False
        for child in self.children.get(folder, ()):
            h, t = self._presence(child)
            here, there = here or h, there or t
        return here, there

    def _decide_folder(self, path: str) -> Action | None:
        """Work out the situation (after the folder's content is decided) and let the table decide."""
        if path in self.actions:
            return None
        loc, r, j = self.local(path), self.remote(path), self.base.get(path)
        A, S, N, D = Change.ABSENT, Change.SAME, Change.NEW, Change.DELETED
        if loc is not None and r is not None:
            ls = rs = S if j is not None and j.is_dir else N
            return self._do(path, self._decide("folder", ls, rs))
        if loc is None and r is None:
            return self._do(path, self._decide("folder", D, D)) if path in self.raw_base else None
        here, there = self._stays(path)
        if loc is not None:  # only here: new, or deleted on the server
            if self._status(path, True, True) == N:
                return self._do(path, self._decide("folder", N, A))
            return self._do(path, self._decide("folder", S, D, _inside(refilled=there, keeps=here)))
        if self._status(path, True, False) == N:  # only on the server
            return self._do(path, self._decide("folder", A, N))
        return self._do(path, self._decide("folder", D, S, _inside(refilled=here, keeps=there)))

    # -- renames --

    def _find_renames(self) -> None:
        """A delete plus a new path with the same content is a rename (found before any guard counts)."""
        if self._renames("renamed-here") == Kind.REMOTE_MOVE:
            self._pair(Kind.REMOTE_DELETE, Kind.UPLOAD, self._local_rename, on_server=True)
        if self._renames("renamed-there") == Kind.LOCAL_MOVE:
            self._pair(Kind.DELETE, Kind.DOWNLOAD, self._remote_rename, on_server=False)

    def _renames(self, row_id: str) -> Kind | None:
        """What the table makes of a rename in this mode (a move, or the delete + new it stays)."""
        r = table.ROW_BY_ID[row_id]
        return table.cell(r, self.options.mode, read_only=self.ro, delete=self.options.delete).kind

    def _pair(self, gone_kind: Kind, new_kind: Kind, rank: Callable[[str, str], int], on_server: bool) -> None:
        by_md5: dict[str, list[str]] = {}
        for p, a in self.actions.items():
            if a.kind == gone_kind and a.base is not None and a.base.md5:
                by_md5.setdefault(a.base.md5, []).append(p)
        if not by_md5:
            return
        new = sorted(p for p, a in self.actions.items() if a.kind == new_kind and a.base is None)
        for q in new:
            entry = self.local(q) if on_server else self.remote(q)
            md5 = entry.md5 if entry is not None else None
            ranked = sorted((r, p) for p in by_md5.get(md5 or "", ()) for r in [rank(p, q)] if r)
            if not ranked:
                continue
            p = ranked[0][1]
            by_md5[md5 or ""].remove(p)
            del self.actions[p]
            self.sources.add(p)
            self.actions[q] = self._move(p, q, on_server)

    def _moved_while_edited(self) -> None:
        """A file renamed here (its folder renamed, most often) while the phone edited it on the
        server: the edit would be restored at the old path and the old content uploaded at the new
        one, splitting the file in two. Pair them as a rename instead: the server's version moves
        (with its folder), then comes down at the new path. The local file must be the base's
        content, else it is a true conflict and stays one."""
        restored = {
            p: a for p, a in self.actions.items()
            if a.kind == Kind.DOWNLOAD and a.base is not None and not a.base.is_dir and a.base.md5
            and self.local(p) is None and a.remote is not None and not a.remote.is_dir
        }  # fmt: skip
        if not restored:
            return
        for q in sorted(p for p, a in self.actions.items() if a.kind == Kind.UPLOAD and a.base is None):
            loc = self.local(q)
            if loc is None or loc.is_dir or not loc.md5:
                continue
            ranked = sorted(
                (r, p) for p, a in restored.items() if a.base is not None and a.base.md5 == loc.md5
                for r in [self._local_rename(p, q)] if r
            )  # fmt: skip
            if not ranked:
                continue
            p = ranked[0][1]
            down, up = restored.pop(p), self.actions[q]
            j, r = self.base[p], self.remote(p)
            assert r is not None
            del self.actions[p]
            self.sources.add(p)
            # The base moves along, its server half unchanged: if the download after the MOVE
            # does not happen, the next run still sees the server's edit and brings it down.
            record = replace(j, size=loc.size, mtime_ns=loc.mtime_ns, ino=loc.ino, prev=None)
            self.actions[q] = Action(Kind.REMOTE_MOVE, q, r, loc, "renamed here (edited on the server)", base=j,
                                     src=p, record=record, extra=((p, None),))  # fmt: skip
            self.edited_moves[q] = (down, up, r)

    def _settle_edited_moves(self) -> None:
        """A pair of _moved_while_edited that became part of a folder MOVE: its edit comes down at
        the new path after it. One that did not (a single file) goes back to what it was."""
        for q, (down, up, r) in sorted(self.edited_moves.items()):
            move = self.actions.get(q)
            if move is not None and move.kind == Kind.REMOTE_MOVE and move.src == down.path:
                del self.actions[q]
                self.sources.discard(down.path)
                self.actions[down.path], self.actions[q] = down, up
                continue
            moved = replace(r, path=q, href="")  # (its href is the old path's; the new one is asked by path)
            j = self.base[down.path]
            base = replace(j, size=up.local.size, mtime_ns=up.local.mtime_ns, ino=up.local.ino) if up.local else j
            self.followups.append(Action(Kind.UPDATE, q, moved, up.local, "changed on the server (moved here with "
                                         "its folder)", base=base, record=_file_record(moved)))  # fmt: skip

    def _local_rename(self, p: str, q: str) -> int:
        """A rank (1 best, 0 no match): the same file id, else the same size and mtime (MD5 already equal)."""
        j, new = self.base[p], self.local(q)
        assert new is not None
        if new.ino and new.ino == j.ino:
            return 1
        return 2 if (new.size, new.mtime_ns) == (j.size, j.mtime_ns) else 0

    def _remote_rename(self, p: str, q: str) -> int:
        """Equal MD5 is the evidence; the same name in another folder ranks first."""
        return 1 if p.rsplit("/", 1)[-1] == q.rsplit("/", 1)[-1] else 2

    def _move(self, p: str, q: str, on_server: bool) -> Action:
        j = self.base[p]
        if on_server:  # renamed here: MOVE on the server
            loc, r = self.local(q), self.remote(p)
            assert loc is not None and r is not None
            record = _file_record(r, loc, j.md5)  # complete() adds the etag the server gives after the MOVE
            return Action(Kind.REMOTE_MOVE, q, r, loc, "renamed here", base=j, src=p, record=record,
                          extra=((p, None),))  # fmt: skip
        r, loc = self.remote(q), self.local(p)
        assert r is not None and loc is not None
        record = _file_record(r, loc, j.md5)  # a rename keeps the file's stat
        return Action(Kind.LOCAL_MOVE, q, r, loc, "renamed on the server", base=j, src=p, record=record,
                      extra=((p, None),))  # fmt: skip

    def _collapse_folder_moves(self) -> None:
        """A folder whose whole content moved to one new folder is one MOVE, not one per file."""
        for gone_kind, new_kind, move_kind in (
            (Kind.REMOTE_RMDIR, Kind.REMOTE_MKDIR, Kind.REMOTE_MOVE),
            (Kind.RMDIR, Kind.MKDIR, Kind.LOCAL_MOVE),
        ):
            folders = sorted(
                (p for p, a in self.actions.items() if a.kind == gone_kind), key=lambda p: (p.count("/"), p)
            )
            if not folders:
                continue
            moves = {a.src: a for a in self.actions.values() if a.kind == move_kind and a.src is not None}
            rows = sorted(self.base.items())
            keys = [p for p, _ in rows]
            for p in folders:
                gone = self.actions.get(p)
                if gone is not None and gone.kind == gone_kind:
                    lo = bisect_left(keys, p + "/")
                    hi = bisect_left(keys, p + "0")  # '0' sorts right after '/'
                    self._collapse(p, rows[lo:hi], moves, new_kind, move_kind)

    def _collapse(
        self,
        p: str,
        rows: list[tuple[str, JournalEntry]],
        moves: dict[str, Action],
        new_kind: Kind,
        move_kind: Kind,
    ) -> None:
        gone_kind = self.actions[p].kind
        q: str | None = None
        for c, j in rows:
            if j.is_dir:
                continue
            a, suffix = moves.get(c), c[len(p) :]
            if a is None or not a.path.endswith(suffix):
                return
            target = a.path[: -len(suffix)]
            if q is not None and target != q:
                return
            q = target
        if q is None or _under(q, p) or _under(p, q):
            return
        made = self.actions.get(q)
        if made is None or made.kind != new_kind:
            return
        for c, j in rows:
            if j.is_dir:
                a, b = self.actions.get(c), self.actions.get(q + c[len(p) :])
                if a is None or a.kind != gone_kind or b is None or b.kind != new_kind:
                    return
        moved_side = self.lv.entries if move_kind == Kind.REMOTE_MOVE else self.rv.entries
        inside = {c for c, _ in rows}
        if any(c.startswith(p + "/") and c not in inside for c in moved_side):
            return  # something new inside the old folder would be carried along: move file by file
        extra: list[tuple[str, JournalEntry | None]] = [(p, None)]
        for c, j in rows:
            new = q + c[len(p) :]
            extra.append((c, None))
            if j.is_dir:
                extra.append((new, JournalEntry(True)))
                del self.actions[c]
            else:
                extra.append((new, self.actions[new].record))
            del self.actions[new]
        del self.actions[p]
        self.sources.add(p)
        on_server = move_kind == Kind.REMOTE_MOVE
        self.actions[q] = Action(
            move_kind, q, self.remote(p if on_server else q), self.local(q if on_server else p),
            "folder renamed here" if on_server else "folder renamed on the server",
            base=self.base.get(p), src=p, record=JournalEntry(True), extra=tuple(extra),
        )  # fmt: skip

    # -- guards --

    def _guard(self) -> None:
        """Hold deletions (they become reports) when a guard of table.GUARDS trips; renames are already out."""
        local_del = [a for a in self.actions.values() if a.kind == Kind.DELETE]
        remote_del = [a for a in self.actions.values() if a.kind == Kind.REMOTE_DELETE]
        if not any(a.kind in _LOCAL_DELETIONS | _REMOTE_DELETIONS for a in self.actions.values()):
            return
        warn = self.result.warnings.append
        tripped = self.result.guards
        if self.rv.failed or self.lv.failed:
            tripped.append("failed-listing")
        remote_empty = self.rv.looks_empty
        if remote_empty is None:
            remote_empty = self.rv.complete and not any(p for p in self.rv.entries if p != "")
        # The journal's view: one tracked file gone is that file's deletion, not a share gone.
        if remote_empty and self.tracked > 1:
            tripped.append("remote-empty")
            warn("Deletions refused: the server lists an empty share while the journal is not empty "
                 "(an unmounted disk on the server?).")  # fmt: skip
        local_empty = self.lv.complete and not any(e is not None and not e.is_dir for e in self.lv.entries.values())
        if local_empty and self.tracked > 1:
            tripped.append("local-empty")
            warn("Deletions refused: the local folder is empty or missing while the journal is not "
                 "(an unplugged drive?).")  # fmt: skip
        limit = self.options.delete_limit(self.tracked)
        if limit is not None and len(local_del) > limit:
            tripped.append("max-delete-local")
            warn(f"Deletions refused: {len(local_del)} local files would go, more than --max-delete {limit}.")
        if limit is not None and len(remote_del) > limit:
            tripped.append("max-delete-remote")
            warn(f"Deletions refused: {len(remote_del)} files on the server would go, more than --max-delete {limit}.")
        guards = [table.GUARD_BY_ID[g] for g in tripped]
        hold_local = next((g.reason.format(limit=limit) for g in guards if g.holds in ("here", "both")), None)
        hold_remote = next((g.reason.format(limit=limit) for g in guards if g.holds in ("server", "both")), None)
        for path, a in list(self.actions.items()):
            if a.kind in _LOCAL_DELETIONS and hold_local:
                reason = f"deleted on the server; kept: {hold_local}"
            elif a.kind in _REMOTE_DELETIONS and hold_remote:
                reason = f"deleted here; kept on the server: {hold_remote}"
            else:
                continue
            held = table.HELD[a.kind]
            self.actions[path] = replace(a, kind=held, reason=reason, record=None, guarded=held == Kind.KEPT_HERE)
            self.result.refused_deletions += 1  # held by a guard: left out of sync, a problem to report


def _inside(*, refilled: bool, keeps: bool) -> Also:
    """A deleted folder: will something inside exist on the side that deleted it (refilled), or
    stay on the side that kept it?"""
    return Also.REFILLED if refilled else Also.KEEPS if keeps else Also.EMPTY


def _gone_above(path: str, entries: Mapping[str, object], removed: frozenset[str]) -> bool:
    """In a changes-only view: is a folder above this path removed, or now a file?"""
    for parent in _parents(path):
        e = entries.get(parent, _MISSING)
        if e is _MISSING:
            if parent in removed:
                return True
            continue
        if e is None or not getattr(e, "is_dir", True):
            return True
    return False


_PHASE = {
    Kind.CONFLICT: 1,
    Kind.DOWNLOAD: 1,
    Kind.UPDATE: 1,
    Kind.UPLOAD: 1,
    Kind.UPLOAD_EDIT: 1,
    Kind.ADOPT: 1,
    Kind.REFRESH: 1,
    Kind.DELETE: 2,
    Kind.REMOTE_DELETE: 2,
    Kind.RMDIR: 3,
    Kind.REMOTE_RMDIR: 3,
}
_STRUCTURE = {Kind.MKDIR, Kind.REMOTE_MKDIR, Kind.LOCAL_MOVE, Kind.REMOTE_MOVE}


def _order(a: Action) -> tuple[int, int, int, str]:
    """Execution order: a file against a folder, folders and moves (shallow first), transfers,
    deletions, folder removals (deepest first), then reports."""
    depth = a.path.count("/")
    if a.kind == Kind.CONFLICT and any(e is not None and e.is_dir for e in (a.local, a.remote)):
        return (0, depth, 0, a.path)
    if a.kind in _STRUCTURE:
        return (0, depth, 1, a.path)
    phase = _PHASE.get(a.kind, 4)
    return (phase, -depth if phase == 3 else depth, 0, a.path)
